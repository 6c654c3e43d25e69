// Inside payer forms: hosted card entry, height reports to the host page, result focus.
(function () {
  function report() {
    if (window.parent === window) return;
    // The content height: scrollHeight never drops below the frame, so a frame could not shrink.
    var height = Math.ceil(document.documentElement.getBoundingClientRect().height);
    window.parent.postMessage({ type: "portico:resize", height: height }, "*");
  }
  function focusResult() {
    var target = document.querySelector("[data-autofocus], .alert");
    if (target) { target.setAttribute("tabindex", "-1"); target.focus(); }
  }
  function field(form, name) { return form.querySelector('[name="' + name + '"]'); }

  // Card or bank fields go to the processor's hosted entry; Portico's form then carries
  // only the token. Any failure falls back to a plain post, which the server tokenizes.
  window.addEventListener("submit", function (event) {
    var form = event.target;
    var entry = form.getAttribute && form.getAttribute("data-hosted-entry");
    if (!entry || form.dataset.tokenized === "1") return;
    var saved = form.querySelector('[name="saved_method"]:checked');
    if (saved && saved.value !== "new") return;
    var choice = form.querySelector('[name="method"]:checked') || field(form, "method");
    var kind = choice ? choice.value : "card";
    var names = kind === "bank_account" ? ["routing_number", "account_number"] : ["card_number", "exp", "cvc"];
    var inputs = names.map(function (n) { return field(form, n); }).filter(Boolean);
    if (!inputs.length || inputs.some(function (i) { return !i.value.trim(); })) return;
    event.preventDefault();
    event.stopImmediatePropagation();
    var body = new FormData();
    body.set("method", kind);
    var holder = field(form, "name");
    if (holder) body.set("name", holder.value);
    inputs.forEach(function (i) { body.set(i.name, i.value); });
    function submitWith(token) {
      form.dataset.tokenized = "1";
      if (token) {
        var hidden = field(form, "payment_token") || form.appendChild(document.createElement("input"));
        hidden.type = "hidden"; hidden.name = "payment_token"; hidden.value = token;
        inputs.forEach(function (i) { i.value = ""; i.disabled = true; });
      }
      form.requestSubmit();
    }
    fetch(entry, { method: "POST", body: body, credentials: "omit" })
      .then(function (r) { return r.status === 201 ? r.json() : null; })
      .then(function (data) { submitWith(data && data.token); })
      .catch(function () { submitWith(null); });
  }, true);

  window.addEventListener("load", report);
  if (window.ResizeObserver) new ResizeObserver(report).observe(document.documentElement);
  document.addEventListener("htmx:after:swap", function () { report(); focusResult(); });
})();
