/* Portico embed loader: <script src="…/embed.js" data-widget="KEY" async></script> */
(function () {
  var me = document.currentScript;
  if (!me) return;
  var base = new URL(me.src).origin;
  var state = window.__portico || (window.__portico = { frames: [] });

  function mount(host) {
    var key = host.getAttribute("data-widget");
    if (!key || host.__porticoMounted) return;
    host.__porticoMounted = true;
    var frame = document.createElement("iframe");
    frame.src = base + "/embed/take-payment/" + encodeURIComponent(key);
    frame.title = host.getAttribute("data-title") || "Payment form";
    frame.style.cssText = "width:100%;border:0;min-height:480px;display:block";
    frame.setAttribute("allow", "payment");
    if (host.tagName === "SCRIPT") host.parentNode.insertBefore(frame, host.nextSibling);
    else host.appendChild(frame);
    state.frames.push({ frame: frame, base: base });
  }

  if (!state.listening) {
    state.listening = true;
    window.addEventListener("message", function (event) {
      var data = event.data;
      if (!data || data.type !== "portico:resize") return;
      state.frames.forEach(function (entry) {
        // Only the frame that sent it, and only from Portico's own origin.
        if (entry.frame.contentWindow === event.source && event.origin === entry.base) {
          entry.frame.style.minHeight = "0";
          entry.frame.style.height = Math.ceil(Number(data.height) || 0) + "px";
        }
      });
    });
  }
  var hosts = document.querySelectorAll("[data-widget]");
  for (var i = 0; i < hosts.length; i++) mount(hosts[i]);
})();
