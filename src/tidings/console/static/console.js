// Tidings console: nothing runs inline (the pages' Content-Security-Policy forbids it).
// A session that ended while a page polled: htmx follows HX-Redirect to the sign-in page.
document.addEventListener("htmx:responseError", function (event) {
  var status = event.detail.xhr.status;
  var target = event.detail.target;
  if (target && status >= 500) {
    target.setAttribute("data-stale", "true");
  }
});

// The template editor: after each live preview, post the editor's fields into the
// sandboxed email preview frame (its HTML never enters a console page).
document.addEventListener("htmx:afterSwap", function (event) {
  if (!event.detail.target || event.detail.target.id !== "preview") {
    return;
  }
  var form = document.getElementById("editor");
  var submit = document.getElementById("preview-submit");
  if (form && submit && document.querySelector("iframe[name=email-preview]")) {
    form.requestSubmit(submit);
  }
});

// Desktop and mobile widths of the email preview.
document.addEventListener("click", function (event) {
  var choice = event.target.closest ? event.target.closest("[data-width]") : null;
  var wrap = document.getElementById("framewrap");
  if (!choice || !wrap) {
    return;
  }
  event.preventDefault();
  wrap.className = "framewrap " + choice.getAttribute("data-width");
  choice.parentNode.querySelectorAll("[data-width]").forEach(function (other) {
    other.classList.toggle("active", other === choice);
  });
});
