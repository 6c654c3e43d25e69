// The approval page's signature: draw on a canvas with a mouse, finger or pen (pointer
// events), or type it. Without JavaScript the "Draw" choice stays hidden and typing works.
(() => {
  const form = document.querySelector("form[data-signature-form]");
  if (!form) return;
  const canvas = form.querySelector(".signature-pad");
  const stored = form.querySelector("[data-signature-value]");
  const panels = form.querySelectorAll("[data-signature-panel]");
  const ctx = canvas.getContext("2d");
  let inked = false;
  let drawing = false;

  form.querySelectorAll("[data-needs-js]").forEach((el) => { el.hidden = false; });

  const chosen = () => {
    const radio = form.querySelector('input[name="signature_kind"]:checked');
    return radio ? radio.value : "typed";
  };
  const showPanel = () => {
    panels.forEach((panel) => { panel.hidden = panel.dataset.signaturePanel !== chosen(); });
  };
  form.addEventListener("change", (event) => {
    if (event.target.name === "signature_kind") showPanel();
  });
  showPanel();

  const pen = () => {
    ctx.lineWidth = 3;
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    ctx.strokeStyle = "#1d2330";
  };
  const point = (event) => {
    const box = canvas.getBoundingClientRect();
    return {
      x: ((event.clientX - box.left) * canvas.width) / box.width,
      y: ((event.clientY - box.top) * canvas.height) / box.height,
    };
  };

  // A drawing kept by the server after another field's error is shown again.
  if (stored.value.startsWith("data:image/png;base64,")) {
    const image = new Image();
    image.onload = () => { ctx.drawImage(image, 0, 0); inked = true; };
    image.src = stored.value;
  }

  canvas.addEventListener("pointerdown", (event) => {
    event.preventDefault();
    canvas.setPointerCapture(event.pointerId);
    drawing = true;
    pen();
    const p = point(event);
    ctx.beginPath();
    ctx.moveTo(p.x, p.y);
    ctx.lineTo(p.x + 0.1, p.y + 0.1);
    ctx.stroke();
    inked = true;
  });
  canvas.addEventListener("pointermove", (event) => {
    if (!drawing) return;
    const p = point(event);
    ctx.lineTo(p.x, p.y);
    ctx.stroke();
  });
  const stop = () => { drawing = false; };
  canvas.addEventListener("pointerup", stop);
  canvas.addEventListener("pointercancel", stop);

  form.querySelector("[data-signature-clear]").addEventListener("click", () => {
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    stored.value = "";
    inked = false;
  });

  form.addEventListener("submit", () => {
    stored.value = chosen() === "drawn" && inked ? canvas.toDataURL("image/png") : "";
  });
})();
