// The demo page: draw on the pad, send it to /api/predict, paint the answer. No libraries, no build step.
// Every image the network sees is prepared by the server (src.data.images.to_mnist_format), never here.
"use strict";

const STROKE = 22;          // px on the 280 px pad: ~10% of a digit's height, as MNIST's pen strokes are
const THROTTLE_MS = 50;     // at most ~20 predictions a second while drawing, one more at each stroke's end
const MAP_SCALE = { 28: 3, 14: 4, 10: 5, 5: 8 };  // CSS px per activation pixel, by map side

const $ = (id) => document.getElementById(id);
const pad = $("pad");
const ctx = pad.getContext("2d");
let model = null;           // /api/model's answer
let mode = "empty";         // empty | drawing | test | upload
let drawing = null;         // the pointer drawing a stroke: {id, x, y}
let seq = 0, shown = 0;     // request numbers: a late answer never replaces a newer one
let inflight = false, pending = false, lastSent = 0, timer = null;
const stageViews = [];      // per stage: {canvases, range}
let rbfView = null;         // with an RBF output layer (LeNet1998): {limit, bitmaps: [{figure, distance}]}

// -- colour scales ---------------------------------------------------------------------------------------------
function lut(stops) {  // 256 RGB entries interpolated between evenly spaced stops
  const out = new Uint8ClampedArray(256 * 3);
  for (let i = 0; i < 256; i++) {
    const t = (i / 255) * (stops.length - 1), k = Math.min(Math.floor(t), stops.length - 2), f = t - k;
    for (let c = 0; c < 3; c++) out[i * 3 + c] = stops[k][c] + (stops[k + 1][c] - stops[k][c]) * f;
  }
  return out;
}
const VIRIDIS = lut([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]]);
const RDBU = lut([[33, 102, 172], [146, 197, 222], [247, 247, 247], [244, 165, 130], [178, 24, 43]]);
const GRAY = lut([[0, 0, 0], [255, 255, 255]]);
const INK = lut([[255, 255, 255], [29, 35, 48]]);  // the paper's bitmaps: paper (-1) light, ink (+1) dark

function decode(b64) {
  const text = atob(b64), bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
  return bytes;
}

function paint(canvas, bytes, offset, colours) {  // one tile: canvas.width x canvas.height bytes from offset
  const c = canvas.getContext("2d"), n = canvas.width * canvas.height, img = c.createImageData(canvas.width, canvas.height);
  for (let i = 0; i < n; i++) {
    const q = bytes[offset + i] * 3;
    img.data[i * 4] = colours[q]; img.data[i * 4 + 1] = colours[q + 1]; img.data[i * 4 + 2] = colours[q + 2];
    img.data[i * 4 + 3] = 255;
  }
  c.putImageData(img, 0, 0);
}

function steps(rows, lo, hi) {  // a picture of numbers (rows of values) as 0..255 steps from lo to hi, as decode gives
  const values = rows.flat(), bytes = new Uint8Array(values.length), k = hi > lo ? 255 / (hi - lo) : 0;
  values.forEach((v, i) => { bytes[i] = Math.max(0, Math.min(255, Math.round((v - lo) * k))); });
  return bytes;
}

function tile(w, h, cssW, cssH, title) {
  const canvas = document.createElement("canvas");
  canvas.width = w; canvas.height = h;
  canvas.style.width = cssW + "px"; canvas.style.height = cssH + "px";
  if (title) canvas.title = title;
  return canvas;
}

// -- the page's frame, from the model's description ----------------------------------------------------------------
function short(name) { return name.split(" - ")[0]; }
function pct(p) { return (100 * p).toFixed(p > 0.999 || p < 0.001 ? 2 : 1) + "%"; }

function describe(m) {
  const c = m.checkpoint, bits = [];
  bits.push("recipe " + (c.recipe || "unknown") + (c.overrides.length ? " (" + c.overrides.join(" ") + ")" : ""));
  bits.push("trained on " + m.dataset);
  bits.push(c.test_acc !== null ? "test accuracy " + pct(c.test_acc) + " (its run)" : "test accuracy not recorded");
  bits.push(m.test_set.misclassified + " of " + m.test_set.images.toLocaleString("en") + " test images misread here");
  $("model-info").textContent = "Checkpoint: " + bits.join(" · ");
  $("model-info").title = c.path;

  const bars = $("bars");
  m.classes.forEach((name, i) => {
    const li = document.createElement("li");
    li.dataset.index = i;
    li.innerHTML = '<span class="label"></span><span class="track"><span class="fill"></span></span><span class="pct"></span>';
    li.querySelector(".label").textContent = name;
    bars.appendChild(li);
  });

  const list = $("stage-list");
  m.stages.forEach((stage, s) => {
    const row = document.createElement("div"), title = document.createElement("div"), tiles = document.createElement("div");
    row.className = "stage"; title.className = "stage-title"; tiles.className = "tiles";
    row.dataset.stage = stage.name;
    const label = document.createElement("strong"), range = document.createElement("span");
    label.textContent = stage.name; range.className = "range";
    title.append(label, document.createElement("br"), document.createTextNode(stage.shape.join("×")), range);
    const canvases = [];
    if (stage.kind === "maps") {
      const [channels, h, w] = stage.shape, k = MAP_SCALE[w] || Math.max(2, Math.round(84 / w));
      for (let i = 0; i < channels; i++) {
        canvases.push(tile(w, h, w * k, h * k, stage.name + " #" + (i + 1) + fedBy(stage, m.stages[s - 1], i)));
      }
    } else {
      const [units] = stage.shape, k = Math.max(3, Math.floor(720 / units));
      canvases.push(tile(units, 1, units * k, 24, stage.name + ": " + units + " units"));
    }
    tiles.append(...canvases);
    row.append(title);
    if (s === 0) row.append(filterBlock(m.filters));  // conv1's filters beside its maps
    row.append(tiles);
    list.appendChild(row);
    stageViews.push({ canvases, range });
  });
  if (m.rbf) rbfBlock(m.rbf, m.classes);
}

function rbfBlock(r, classes) {  // F6's picture beside the ten bitmaps it is compared with, each with its distance
  const list = $("bitmaps"), f6 = $("f6"), k = 8;
  f6.width = r.width; f6.height = r.height;
  f6.style.width = r.width * 12 + "px"; f6.style.height = r.height * 12 + "px";
  rbfView = { limit: r.limit, bitmaps: [] };
  r.bitmaps.forEach((bitmap, i) => {
    const figure = document.createElement("figure"), caption = document.createElement("figcaption");
    const label = document.createElement("strong"), distance = document.createElement("span");
    figure.className = "code"; figure.dataset.index = i; distance.className = "distance";
    label.textContent = short(classes[i]);
    const canvas = tile(r.width, r.height, r.width * k, r.height * k, classes[i] + ": its bitmap");
    paint(canvas, steps(bitmap, -r.limit, r.limit), 0, INK);
    caption.append(label, distance);
    figure.append(canvas, caption);
    list.appendChild(figure);
    rbfView.bitmaps.push({ figure, distance });
  });
  $("f6-range").textContent = "scale " + (-r.limit).toPrecision(5) + " … " + r.limit.toPrecision(5);
  $("rbf-panel").hidden = false;
}

function fedBy(stage, previous, i) {  // a sparse layer's map (LeNet1998's C3): the maps Table I feeds it from
  if (!stage.inputs) return "";
  return " ← " + stage.inputs[i].map((j) => previous.name + " #" + (j + 1)).join(", ") + " (Table I)";
}

function filterBlock(f) {
  const block = document.createElement("div"), label = document.createElement("div"), tiles = document.createElement("div");
  block.className = "filters"; label.className = "block-label"; tiles.className = "tiles";
  const [out, , kh, kw] = f.shape, bytes = decode(f.data);
  label.textContent = f.layer + " filters (" + out + " of " + kh + "×" + kw + ")";
  for (let i = 0; i < out; i++) {  // a first conv has one input channel: one kernel per filter
    const c = tile(kw, kh, kw * 10, kh * 10, f.layer + " filter #" + (i + 1));
    paint(c, bytes, i * kh * kw, RDBU);
    tiles.appendChild(c);
  }
  block.append(label, tiles);
  return block;
}

// -- painting an answer ---------------------------------------------------------------------------------------------
function showAnswer(a) {
  const box = $("prediction");
  if (a.blank) { showBlank(); return; }
  box.classList.remove("blank");
  box.dataset.index = a.prediction.index;
  $("prediction-short").textContent = short(a.prediction.class);
  $("prediction-name").textContent = a.prediction.class + " · " + pct(a.prediction.probability);
  document.querySelectorAll("#bars li").forEach((li, i) => {
    li.classList.toggle("top", i === a.prediction.index);
    li.querySelector(".fill").style.width = (100 * a.probabilities[i]).toFixed(1) + "%";
    li.querySelector(".pct").textContent = pct(a.probabilities[i]);
  });
  paint($("input"), decode(a.input.data), 0, GRAY);
  a.stages.forEach((stage, s) => {
    const view = stageViews[s], bytes = decode(stage.data);
    let offset = 0;
    for (const canvas of view.canvases) { paint(canvas, bytes, offset, VIRIDIS); offset += canvas.width * canvas.height; }
    view.range.textContent = "scale " + stage.min.toPrecision(3) + " … " + stage.max.toPrecision(3);
  });
  $("rubbish").hidden = a.rubbish === undefined;  // LeNet1998: what the ten probabilities leave to the rubbish class
  if (a.rubbish !== undefined) {
    const j = model.rbf && model.rbf.rubbish_penalty !== null ? " (penalty j = " + model.rbf.rubbish_penalty + ")" : "";
    $("rubbish").textContent = "rubbish" + j + ": " + pct(a.rubbish) + ", the share no digit claims";
  }
  if (rbfView && a.rbf) {
    paint($("f6"), steps(a.rbf.f6, -rbfView.limit, rbfView.limit), 0, INK);
    rbfView.bitmaps.forEach((b, i) => {
      const y = a.rbf.distances[i];
      b.figure.classList.toggle("top", i === a.prediction.index);
      b.distance.dataset.distance = y;
      b.distance.textContent = "y = " + y.toFixed(2);
    });
  }
}

function showBlank() {
  const box = $("prediction");
  box.classList.add("blank");
  box.dataset.index = "";
  $("prediction-short").textContent = "?";
  $("prediction-name").textContent = "nothing drawn";
  document.querySelectorAll("#bars li").forEach((li) => {
    li.classList.remove("top");
    li.querySelector(".fill").style.width = "0";
    li.querySelector(".pct").textContent = "";
  });
  $("input").getContext("2d").clearRect(0, 0, 28, 28);
  $("rubbish").hidden = true;
  if (rbfView) {
    $("f6").getContext("2d").clearRect(0, 0, $("f6").width, $("f6").height);
    rbfView.bitmaps.forEach((b) => {
      b.figure.classList.remove("top");
      b.distance.dataset.distance = "";
      b.distance.textContent = "";
    });
  }
}

async function ask(url, options, onAnswer) {
  const mine = ++seq;
  let answer;
  try {
    const response = await fetch(url, options);
    answer = await response.json();
    if (!response.ok) throw new Error(answer.error || response.status + " " + response.statusText);
  } catch (err) {
    if (mine >= shown) $("message").textContent = err.message;
    return;
  }
  if (mine < shown) return;  // a newer answer is already on screen
  shown = mine;
  $("message").textContent = "";
  showAnswer(answer);
  if (onAnswer) onAnswer(answer);
}

// -- drawing ----------------------------------------------------------------------------------------------------------
function clearPad() {
  ctx.fillStyle = "#000";
  ctx.fillRect(0, 0, pad.width, pad.height);
}

function point(e) {
  const r = pad.getBoundingClientRect();
  return { x: (e.clientX - r.left) * (pad.width / r.width), y: (e.clientY - r.top) * (pad.height / r.height) };
}

function line(a, b) {
  ctx.strokeStyle = "#fff"; ctx.lineWidth = STROKE; ctx.lineCap = "round"; ctx.lineJoin = "round";
  ctx.beginPath(); ctx.moveTo(a.x, a.y); ctx.lineTo(b.x, b.y); ctx.stroke();
}

pad.addEventListener("pointerdown", (e) => {
  if (drawing || !model) return;
  e.preventDefault();
  if (mode !== "drawing") {  // a test image or a picture was shown: start a fresh drawing
    clearPad(); mode = "drawing";
    $("truth").textContent = ""; $("truth").className = "note";
    $("source").textContent = "Your drawing (" + e.pointerType + ").";
  }
  pad.setPointerCapture(e.pointerId);
  const p = point(e);
  drawing = { id: e.pointerId, ...p };
  line(p, p);  // a tap is a dot
  requestPredict();
});

pad.addEventListener("pointermove", (e) => {
  if (!drawing || e.pointerId !== drawing.id) return;
  const events = e.getCoalescedEvents ? e.getCoalescedEvents() : [e];  // every sample, not one per frame
  for (const ev of events.length ? events : [e]) {
    const p = point(ev);
    line(drawing, p);
    drawing.x = p.x; drawing.y = p.y;
  }
  requestPredict();
});

function endStroke(e) {
  if (!drawing || e.pointerId !== drawing.id) return;
  drawing = null;
  requestPredict();  // the stroke's final state is always sent: throttling only ever delays it
}
pad.addEventListener("pointerup", endStroke);
pad.addEventListener("pointercancel", endStroke);

// Throttled: one request in flight; while it runs, changes are marked and sent when it returns.
// body[data-busy] says whether a drawing's answer is still to come (scripts and the browser tests wait on it).
function markBusy() { document.body.dataset.busy = inflight || pending || timer ? "1" : ""; }
function requestPredict() {
  requestPredictNow();
  markBusy();
}
function requestPredictNow() {
  if (inflight) { pending = true; return; }
  const wait = lastSent + THROTTLE_MS - performance.now();
  if (wait > 0) {
    if (!timer) timer = setTimeout(() => { timer = null; requestPredict(); }, wait);
    return;
  }
  inflight = true; pending = false; lastSent = performance.now();
  pad.toBlob(async (blob) => {
    await ask("/api/predict", { method: "POST", headers: { "Content-Type": "image/png" }, body: blob });
    inflight = false;
    if (pending) requestPredictNow();
    markBusy();
  }, "image/png");
}

// -- test images, pictures --------------------------------------------------------------------------------------------
function drawDigitOnPad(a) {  // a test image, scaled up smoothly onto the pad
  const small = document.createElement("canvas");
  small.width = 28; small.height = 28;
  paint(small, decode(a.input.data), 0, GRAY);
  ctx.imageSmoothingEnabled = true;
  ctx.drawImage(small, 0, 0, pad.width, pad.height);
}

function randomImage(misclassified) {
  ask(misclassified ? "/api/random/misclassified" : "/api/random", {}, (a) => {
    mode = "test";
    clearPad(); drawDigitOnPad(a);
    const right = a.prediction.index === a.label;
    $("source").textContent = "Test image #" + a.index + " of the " + model.dataset + " test set.";
    $("truth").textContent = "True class: " + a.true_class + (right ? " (read right)" : " (misread)");
    $("truth").className = right ? "note" : "note wrong";
    $("truth").dataset.label = a.label;
  });
}

async function sendPicture(file) {
  if (!file) return;
  mode = "upload";
  $("truth").textContent = ""; $("truth").className = "note";
  $("source").textContent = "Picture: " + file.name + " (" + Math.round(file.size / 1024) + " KB).";
  clearPad();
  try {  // a preview where the browser can decode it; the server reads the file itself either way
    const bmp = await createImageBitmap(file);
    const k = Math.min(pad.width / bmp.width, pad.height / bmp.height);
    ctx.drawImage(bmp, (pad.width - bmp.width * k) / 2, (pad.height - bmp.height * k) / 2, bmp.width * k, bmp.height * k);
    bmp.close();
  } catch (err) { /* no preview */ }
  ask("/api/predict", { method: "POST", headers: { "Content-Type": file.type || "application/octet-stream" }, body: file });
}

$("clear").addEventListener("click", () => {
  clearPad(); mode = "empty"; seq++; shown = seq;  // answers still on their way are dropped
  $("truth").textContent = ""; $("message").textContent = "";
  $("source").textContent = "Draw a digit with a mouse, a finger or a pen, or drop a picture onto the pad.";
  showBlank();
});
$("random").addEventListener("click", () => randomImage(false));
$("random-wrong").addEventListener("click", () => randomImage(true));
$("upload").addEventListener("change", (e) => { sendPicture(e.target.files[0]); e.target.value = ""; });
pad.addEventListener("dragover", (e) => { e.preventDefault(); pad.classList.add("drop"); });
pad.addEventListener("dragleave", () => pad.classList.remove("drop"));
pad.addEventListener("drop", (e) => {
  e.preventDefault(); pad.classList.remove("drop");
  sendPicture(e.dataTransfer.files[0]);
});

// -- start --------------------------------------------------------------------------------------------------------------
clearPad();
fetch("/api/model")
  .then((r) => r.json())
  .then((m) => {
    model = m;
    describe(m);
    showBlank();
    document.body.dataset.ready = "1";
  })
  .catch((err) => { $("model-info").textContent = "Could not load the model: " + err.message; });
