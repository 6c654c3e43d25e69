// The "Print" button of the printable pages (the CSP allows no inline onclick).
document.addEventListener("click", (event) => {
  if (event.target.closest("[data-print]")) window.print();
});
