// Filter forms marked data-omit-empty send only the filters that are set, so htmx asks
// for (and pushes) /partner/?q=maple rather than /partner/?q=maple&status=&overdue=.
document.addEventListener("htmx:config:request", (event) => {
  const request = event.detail.ctx.request;
  if (!request.form?.matches("form[data-omit-empty]") || !request.body) return;
  for (const [name, value] of [...request.body]) {
    if (value === "") request.body.delete(name);
  }
});
