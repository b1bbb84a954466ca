// Syntax highlighting for the console's code fields (CodeMirror 5, vendored): a progressive
// enhancement. Each textarea.code stays in its form and receives every change (then an
// "input" event, so the editor's live preview keeps firing); without this script, or before
// it loads, the plain textarea works the same. CodeMirror is fetched only on pages with one.
(function () {
  "use strict";
  var areas = document.querySelectorAll("textarea.code");
  if (!areas.length) {
    return;
  }

  // Jinja tags over another mode: {{ expressions }}, {% statements %}, {# comments #}.
  var JINJA = {
    token: function (stream) {
      if (stream.match(/^\{\{.*?\}\}/)) { return "jinja jinja-expression"; }
      if (stream.match(/^\{%.*?%\}/)) { return "jinja jinja-statement"; }
      if (stream.match(/^\{#.*?#\}/)) { return "jinja jinja-comment"; }
      while (stream.next() != null && !stream.match(/^\{[{%#]/, false)) { /* plain text */ }
      return null;
    }
  };

  function modeOf(area) {
    var kind = area.getAttribute("data-mode");
    var form = area.form;
    var channel = form && form.id === "editor" ? form.action.split("/").slice(-2)[0] : "";
    if (!kind) {
      if (area.name === "ctxSchema") { kind = "json"; }
      else if (area.name === "html") { kind = "html"; }
      else if (area.name === "body" && channel === "webhook") { kind = "json-jinja"; }
      else { kind = "text"; }
    }
    if (kind === "json") { return {name: "javascript", json: true}; }
    if (kind === "json-jinja") { return "tidings-json"; }
    if (kind === "html") { return "tidings-html"; }
    return "jinja2";
  }

  function enhance() {
    // HTML or MJML, and JSON bodies, with Jinja tags over them.
    CodeMirror.defineMode("tidings-html", function (config) {
      return CodeMirror.overlayMode(CodeMirror.getMode(config, "htmlmixed"), JINJA);
    });
    CodeMirror.defineMode("tidings-json", function (config) {
      return CodeMirror.overlayMode(CodeMirror.getMode(config, {name: "javascript", json: true}), JINJA);
    });
    areas.forEach(function (area) {
      var rows = parseInt(area.getAttribute("rows") || "6", 10);
      var editor = CodeMirror.fromTextArea(area, {
        mode: modeOf(area),
        lineNumbers: rows > 4,
        lineWrapping: true,
        readOnly: area.hasAttribute("readonly"),
        tabSize: 2,
        indentUnit: 2,
        viewportMargin: Infinity
      });
      editor.getWrapperElement().classList.add("code-field");
      editor.getWrapperElement().setAttribute("data-field", area.name);
      editor.getScrollerElement().style.minHeight = (rows * 1.5 + 1) + "em";
      editor.on("change", function () {
        editor.save();
        area.dispatchEvent(new Event("input", {bubbles: true}));
      });
      editor.on("blur", function () {
        area.dispatchEvent(new Event("change", {bubbles: true}));
      });
    });
    document.documentElement.classList.add("code-enhanced");
  }

  var style = document.createElement("link");
  style.rel = "stylesheet";
  style.href = "/console/static/vendor/codemirror.css";
  document.head.appendChild(style);
  var script = document.createElement("script");
  script.src = "/console/static/vendor/codemirror.js";
  script.onload = enhance;
  document.head.appendChild(script);
})();
