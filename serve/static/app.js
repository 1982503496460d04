// The digit page: draw on a canvas or pick/drop an image, POST it to the public /predict API
// (multipart field "image", ?debug=1 for the 28x28 image the model saw) and show the answer.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const predictUrl = $("app").dataset.predictUrl;
  const pad = $("pad");
  const ctx = pad.getContext("2d");
  const drop = $("drop");
  const fileInput = $("file");
  const preview = $("upload-preview");

  let hasInk = false;
  let stroke = null; // the pointer drawing now: {id, x, y}
  let latest = 0; // number of the newest request; older answers are dropped
  let previewUrl = null;

  // ---- drawing: dark ink on an opaque white canvas, exported as PNG ----

  function resetPad() {
    ctx.fillStyle = "#ffffff";
    ctx.fillRect(0, 0, pad.width, pad.height);
    ctx.strokeStyle = "#000000";
    ctx.fillStyle = "#000000";
    ctx.lineWidth = Math.max(4, Math.round(pad.width / 14)); // ~7% of the side, like a pen on paper
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    hasInk = false;
  }

  function at(e) {
    // Pointer position in canvas pixels: the canvas is scaled by CSS and has a border.
    const r = pad.getBoundingClientRect();
    return {
      x: ((e.clientX - r.left - pad.clientLeft) * pad.width) / pad.clientWidth,
      y: ((e.clientY - r.top - pad.clientTop) * pad.height) / pad.clientHeight,
    };
  }

  function dot(p) {
    ctx.beginPath();
    ctx.arc(p.x, p.y, ctx.lineWidth / 2, 0, 2 * Math.PI);
    ctx.fill();
  }

  function segment(from, to) {
    ctx.beginPath();
    ctx.moveTo(from.x, from.y);
    ctx.lineTo(to.x, to.y);
    ctx.stroke();
  }

  pad.addEventListener("pointerdown", (e) => {
    if (stroke || (e.pointerType === "mouse" && e.button !== 0)) return;
    e.preventDefault();
    pad.setPointerCapture(e.pointerId);
    const p = at(e);
    stroke = { id: e.pointerId, ...p };
    dot(p);
    hasInk = true;
  });

  pad.addEventListener("pointermove", (e) => {
    if (!stroke || e.pointerId !== stroke.id) return;
    e.preventDefault();
    const events = (e.getCoalescedEvents && e.getCoalescedEvents()) || [];
    for (const ev of events.length ? events : [e]) {
      const p = at(ev);
      segment(stroke, p);
      stroke.x = p.x;
      stroke.y = p.y;
    }
  });

  function endStroke(e) {
    if (!stroke || e.pointerId !== stroke.id) return;
    stroke = null;
    recogniseDrawing();
  }
  pad.addEventListener("pointerup", endStroke);
  pad.addEventListener("pointercancel", endStroke);

  function recogniseDrawing() {
    if (!hasInk) {
      showError("Draw a digit on the canvas first.");
      return;
    }
    pad.toBlob((blob) => send(blob, "drawing.png", "your drawing"), "image/png");
  }

  $("recognise").addEventListener("click", recogniseDrawing);
  $("clear").addEventListener("click", () => {
    resetPad();
    latest += 1; // an answer still on its way is for the old drawing
    setBusy(false);
    showIdle();
  });

  // ---- files: picker and drag-and-drop ----

  function sendFile(file) {
    if (previewUrl) URL.revokeObjectURL(previewUrl);
    previewUrl = null;
    preview.hidden = true;
    if (/^image\//.test(file.type)) {
      previewUrl = URL.createObjectURL(file);
      preview.src = previewUrl;
      preview.alt = "The image you chose: " + file.name;
      preview.hidden = false;
    }
    // Whatever it is, the server decides: its error message says what is wrong with it.
    send(file, file.name, file.name);
  }

  fileInput.addEventListener("change", () => {
    if (fileInput.files.length) sendFile(fileInput.files[0]);
  });

  // A file dropped outside the drop zone must not make the browser navigate away.
  for (const type of ["dragover", "drop"]) {
    window.addEventListener(type, (e) => e.preventDefault());
  }
  drop.addEventListener("dragover", (e) => {
    e.preventDefault();
    if (e.dataTransfer) e.dataTransfer.dropEffect = "copy";
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", (e) => {
    if (!drop.contains(e.relatedTarget)) drop.classList.remove("over");
  });
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    const files = e.dataTransfer ? e.dataTransfer.files : [];
    if (files.length) sendFile(files[0]);
    else showError("Drop an image file (PNG or JPEG).");
  });

  // ---- the API call ----

  async function send(blob, filename, source) {
    const mine = ++latest;
    setBusy(true);
    const form = new FormData();
    form.append("image", blob, filename);
    let response;
    let body = null;
    try {
      response = await fetch(predictUrl, { method: "POST", body: form, headers: { Accept: "application/json" } });
      body = await response.json().catch(() => null);
    } catch (err) {
      if (mine === latest) {
        setBusy(false);
        showError("Could not reach the server. Check the connection and try again.", String(err.message || err));
      }
      return;
    }
    if (mine !== latest) return;
    setBusy(false);
    if (response.ok && body && (typeof body.digit === "number" || body.not_a_digit === true)) {
      showResult(body, source);
    } else if (body && body.error && body.error.message) {
      showError(body.error.message, `HTTP ${response.status} · ${body.error.code || "error"}`);
    } else {
      showError(`The server answered HTTP ${response.status} without an explanation.`);
    }
  }

  // ---- showing the answer ----

  const percent = (p) => (100 * p).toFixed(1) + "%";

  function setQuick(text, kind) {
    const quick = $("quick");
    quick.textContent = text;
    quick.className = "quick" + (kind ? " " + kind : "");
  }

  function setBusy(busy) {
    $("status").setAttribute("aria-busy", String(busy));
    $("busy-text").hidden = !busy;
  }

  function showIdle() {
    $("idle-text").hidden = false;
    $("summary").hidden = true;
    $("details").hidden = true;
    $("error").hidden = true;
    setQuick("");
  }

  function showError(message, detail) {
    const box = $("error");
    box.replaceChildren();
    const line = document.createElement("p");
    const label = document.createElement("strong");
    label.textContent = "Error: ";
    line.append(label, message);
    box.append(line);
    if (detail) {
      const small = document.createElement("p");
      small.className = "help";
      small.textContent = detail;
      box.append(small);
    }
    $("summary").hidden = true;
    $("details").hidden = true;
    $("idle-text").hidden = true;
    box.hidden = false;
    setQuick("Error: see below", "error-result");
  }

  function showResult(r, source) {
    $("error").hidden = true;
    $("idle-text").hidden = true;
    $("digit").textContent = r.not_a_digit ? "—" : String(r.digit);
    $("confidence").textContent = `Confidence: ${percent(r.confidence)}`;
    $("uncertain").hidden = !r.uncertain;
    $("summary").classList.toggle("uncertain-result", Boolean(r.uncertain));
    $("summary").dataset.uncertain = String(Boolean(r.uncertain));

    const list = $("probs");
    list.replaceChildren();
    r.probabilities.forEach((p, digit) => {
      const item = document.createElement("li");
      if (digit === r.digit) item.className = "top";
      const label = document.createElement("span");
      label.className = "label";
      label.textContent = String(digit);
      const track = document.createElement("span");
      track.className = "track";
      track.setAttribute("aria-hidden", "true");
      const bar = document.createElement("span");
      bar.className = "bar";
      bar.style.width = (100 * Math.min(Math.max(p, 0), 1)).toFixed(2) + "%";
      track.append(bar);
      const value = document.createElement("span");
      value.className = "value";
      value.textContent = percent(p);
      item.append(label, track, value);
      list.append(item);
    });

    const seen = $("seen");
    if (r.input_image) {
      seen.src = r.input_image;
      seen.parentElement.hidden = false;
    } else {
      seen.removeAttribute("src");
      seen.parentElement.hidden = true;
    }
    $("model").textContent = `Result for ${source} · model ${r.model.name} version ${r.model.version}`;
    $("summary").hidden = false;
    $("details").hidden = false;
    const closest = r.top_k && r.top_k.length ? r.top_k[0].digit : r.digit;
    setQuick(r.not_a_digit ? `Not a digit? (closest: ${closest}, ${percent(r.confidence)})`
             : r.uncertain ? `Uncertain: ${r.digit}? (${percent(r.confidence)})` : `Digit ${r.digit} (${percent(r.confidence)})`,
             r.uncertain ? "uncertain-result" : "");
  }

  resetPad();

  // ---- read a number: POST the picture to /read, draw a box per digit over it ----

  const readUrl = $("app").dataset.readUrl;
  const numberFile = $("number-file");
  let numberUrl = null;
  let numberLatest = 0;

  numberFile.addEventListener("change", async () => {
    const file = numberFile.files && numberFile.files[0];
    if (!file) return;
    const mine = ++numberLatest;
    if (numberUrl) URL.revokeObjectURL(numberUrl);
    numberUrl = URL.createObjectURL(file);
    $("number-error").hidden = true;
    $("number-result").hidden = true;
    $("number-busy").hidden = false;
    const form = new FormData();
    form.append("image", file, file.name || "number.png");
    let body = null;
    let ok = false;
    try {
      const response = await fetch(readUrl, { method: "POST", body: form, headers: { Accept: "application/json" } });
      ok = response.ok;
      body = await response.json();
    } catch (err) {
      body = { error: { message: "the server did not answer: " + err } };
    }
    if (mine !== numberLatest) return; // a newer picture was chosen meanwhile
    $("number-busy").hidden = true;
    if (!ok) {
      const e = $("number-error");
      e.textContent = (body && body.error && body.error.message) || "the picture could not be read";
      e.hidden = false;
      return;
    }
    showNumber(body, numberUrl);
  });

  function showNumber(r, url) {
    $("number-text").textContent = r.text.replace(/\n/g, " / ");
    $("number-uncertain").hidden = !r.uncertain;
    const img = $("number-picture");
    const boxes = $("number-boxes");
    const list = $("number-digits");
    boxes.replaceChildren();
    list.replaceChildren();
    img.onload = () => {
      // Boxes are in the picture's own pixels: placed in percent, they follow the scaled image.
      const w = img.naturalWidth, h = img.naturalHeight;
      r.digits.forEach((d, i) => {
        const b = document.createElement("div");
        b.className = "box";
        const [x, y, bw, bh] = d.box;
        Object.assign(b.style, { left: (100 * x) / w + "%", top: (100 * y) / h + "%",
                                 width: (100 * bw) / w + "%", height: (100 * bh) / h + "%" });
        const label = document.createElement("span");
        label.textContent = String(d.digit);
        b.appendChild(label);
        boxes.appendChild(b);
      });
    };
    img.src = url;
    r.digits.forEach((d) => {
      const li = document.createElement("li");
      if (d.uncertain) li.classList.add("uncertain");
      const seen = document.createElement("img");
      seen.alt = "What the model saw for this digit (28×28 pixels)";
      if (d.input_image && d.input_image.startsWith("data:image/png;base64,")) seen.src = d.input_image;
      const digit = document.createElement("strong");
      digit.textContent = String(d.digit);
      const conf = document.createElement("span");
      conf.className = "help";
      conf.textContent = " " + Math.round(d.confidence * 100) + "%";
      li.append(seen, digit, conf);
      list.appendChild(li);
    });
    $("number-result").hidden = false;
  }
})();
