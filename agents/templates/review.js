// Keyboard shortcuts for the review page (served from this origin: the CSP allows no inline script).
// a: approve · r: reject (focuses the reason; Enter sends it) · j/n/→: next · k/p/←: previous · u: the queue
// Esc leaves the reason field. Keys typed into a field are the field's.
(function () {
  "use strict";
  function follow(selector) {
    var link = document.querySelector(selector);
    if (link) { link.click(); return true; }
    return false;
  }
  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey || event.defaultPrevented) { return; }
    var target = event.target;
    if (target && (target.tagName === "INPUT" || target.tagName === "TEXTAREA" || target.isContentEditable)) {
      if (event.key === "Escape") { target.blur(); }
      return;
    }
    var done = false;
    switch (event.key) {
      case "a": done = follow("#approve"); break;
      case "r": {
        var reason = document.getElementById("reason");
        if (reason) { reason.focus(); done = true; }
        break;
      }
      case "j": case "n": case "ArrowRight": done = follow("a[rel=next]"); break;
      case "k": case "p": case "ArrowLeft": done = follow("a[rel=prev]"); break;
      case "u": done = follow("a[rel=up]"); break;
    }
    if (done) { event.preventDefault(); }
  });
  // a decision in flight: a second press must not send it twice
  document.addEventListener("submit", function (event) {
    var button = event.target.querySelector("button[type=submit]");
    if (button) { button.disabled = true; }
  });
})();
