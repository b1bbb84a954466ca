// Tidings console: nothing runs inline (the pages' Content-Security-Policy forbids it).
// A session that ended while a page polled: htmx follows HX-Redirect to the sign-in page.
document.addEventListener("htmx:responseError", function (event) {
  var status = event.detail.xhr.status;
  var target = event.detail.target;
  if (target && status >= 500) {
    target.setAttribute("data-stale", "true");
  }
});
