// Inside a widget iframe: tell the host page our height, and focus results for screen readers.
(function () {
  function report() {
    if (window.parent === window) return;
    var height = document.documentElement.scrollHeight;
    window.parent.postMessage({ type: "portico:resize", height: height }, "*");
  }
  function focusResult() {
    var target = document.querySelector("[data-autofocus], .alert");
    if (target) { target.setAttribute("tabindex", "-1"); target.focus(); }
  }
  window.addEventListener("load", report);
  if (window.ResizeObserver) new ResizeObserver(report).observe(document.documentElement);
  document.addEventListener("htmx:after:swap", function () { report(); focusResult(); });
})();
