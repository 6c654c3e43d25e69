// Copy buttons: <button data-copy="ID" data-copy-status="ID"> copies the text of the
// element #data-copy and announces the result in the live region #data-copy-status.
(() => {
  const announce = (region, text) => {
    if (!region) return;
    region.textContent = "";
    // A fresh text node after a tick, so screen readers announce a repeated "Copied".
    setTimeout(() => { region.textContent = text; }, 50);
    clearTimeout(region.copyTimer);
    region.copyTimer = setTimeout(() => { region.textContent = ""; }, 4000);
  };

  const selectText = (source) => {
    source.focus();
    if (typeof source.select === "function") {
      source.select();
    } else {
      const range = document.createRange();
      range.selectNodeContents(source);
      const selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
    }
  };

  document.addEventListener("click", async (event) => {
    const button = event.target.closest("button[data-copy]");
    if (!button) return;
    const source = document.getElementById(button.dataset.copy);
    if (!source) return;
    const region = document.getElementById(button.dataset.copyStatus);
    const text = "value" in source ? source.value : source.textContent;
    try {
      await navigator.clipboard.writeText(text);
      announce(region, "Copied");
      return;
    } catch {
      // No clipboard API (plain http, old browser, permission denied): select instead.
    }
    selectText(source);
    let copied = false;
    try {
      copied = document.execCommand("copy");
    } catch {
      copied = false;
    }
    announce(region, copied ? "Copied" : "Selected: press Ctrl+C (⌘C on a Mac) to copy");
  });
})();
