// Send the CSRF token with every htmx request (htmx 4 event; plain forms carry a hidden field).
document.addEventListener("htmx:config:request", (event) => {
  const meta = document.querySelector('meta[name="csrf-token"]');
  if (meta) event.detail.ctx.request.headers["X-CSRFToken"] = meta.content;
});
