// SEEM demo page: plain JS, no build step. Talks to the JSON API under /v1 (see seem.server).
"use strict";
const $ = (sel) => document.querySelector(sel);
const el = {
  file: $("#file"), canvas: $("#canvas"), overlay: $("#overlay"), draft: $("#draft"), objects: $("#objects"),
  segments: $("#segments"), latency: $("#latency"), status: $("#status"), text: $("#text"), hint: $("#next-hint"),
  refFile: $("#ref-file"), refCanvas: $("#ref-canvas"), refGo: $("#ref-go"), vocab: $("#vocab"), kind: $("#kind"),
};

const state = {
  imageId: null, width: 0, height: 0, name: "image", sessionId: null,
  objects: [], segments: [],      // server state: session objects, panoptic segments
  current: null,                  // object id that the next round refines; null = a new object
  tool: "pos", gesture: null,     // the stroke being drawn
  marks: [], past: [], future: [],  // what the rounds drew ({object, kind, ...}); snapshots mirror undo/redo
  ref: { imageId: null, img: null, mode: "polygon", pts: [], closed: false, drawing: false },
};

// ---------------------------------------------------------------- HTTP
let queue = Promise.resolve();    // rounds are sent one at a time, in order
function api(method, path, body) {
  const run = async () => {
    document.body.dataset.state = "busy";
    const t0 = performance.now();
    try {
      const init = { method, headers: {} };
      if (body instanceof FormData) init.body = body;
      else if (body !== undefined) { init.body = JSON.stringify(body); init.headers["Content-Type"] = "application/json"; }
      const res = await fetch(path, init);
      const data = await res.json().catch(() => ({}));
      if (!res.ok) throw new Error(errorText(res, data));
      if (typeof data.latency_ms === "number") showLatency(data.latency_ms, performance.now() - t0);
      setStatus("");
      return data;
    } finally { document.body.dataset.state = "idle"; }
  };
  const p = queue.then(run, run);
  queue = p.catch(() => {});
  return p;
}
function errorText(res, data) {
  const d = data && data.detail;
  if (Array.isArray(d)) return d.map((e) => `${(e.loc || []).slice(1).join(".")}: ${e.msg}`).join("; ");
  return d ? String(d) : `${res.status} ${res.statusText}`;
}
function setStatus(msg, isError = false) { el.status.textContent = msg; el.status.classList.toggle("error", isError); }
const report = (err) => { setStatus(err.message || String(err), true); };
function showLatency(model, roundTrip) {
  el.latency.textContent = `${Math.round(model)} ms model · ${Math.round(roundTrip)} ms round-trip`;
}

// ---------------------------------------------------------------- COCO RLE
// pycocotools rleToString: each count is split in 5-bit groups, low first, as chars 48 + (group | 0x20 if more);
// the last group's bit 0x10 is the sign; counts after the second are stored as differences to count[i-2].
function rleCounts(s) {
  const counts = [];
  for (let p = 0; p < s.length;) {
    let x = 0, k = 0, more = true;
    while (more) {
      const c = s.charCodeAt(p++) - 48;
      x |= (c & 0x1f) << (5 * k);
      more = (c & 0x20) !== 0;
      k++;
      if (!more && (c & 0x10)) x |= -1 << (5 * k);
    }
    if (counts.length > 2) x += counts[counts.length - 2];
    counts.push(x);
  }
  return counts;
}
// Calls fn(offset) for every foreground pixel; offsets are column-major (x * h + y), runs start with zeros.
function rleForEach(rle, fn) {
  const counts = typeof rle.counts === "string" ? rleCounts(rle.counts) : rle.counts;
  let pos = 0;
  counts.forEach((n, i) => { if (i % 2) for (let j = pos; j < pos + n; j++) fn(j); pos += n; });
}
function rleArea(rle) { let a = 0; rleForEach(rle, () => a++); return a; }

// ---------------------------------------------------------------- colours and mask layers
function colour(i) {  // distinct hues (golden angle), as [r, g, b]
  const h = (i * 137.508) % 360, s = 0.75, l = 0.55, f = (n) => {
    const k = (n + h / 30) % 12;
    return Math.round(255 * (l - s * Math.min(l, 1 - l) * Math.max(-1, Math.min(k - 3, 9 - k, 1))));
  };
  return [f(0), f(8), f(4)];
}
const css = (rgb, a = 1) => `rgba(${rgb[0]},${rgb[1]},${rgb[2]},${a})`;
const layerCache = new Map();
function maskLayer(rle, rgb, alpha) {  // an offscreen canvas with the mask painted in one colour
  const key = `${rgb}|${alpha}|${rle.counts}`;
  if (layerCache.has(key)) return layerCache.get(key);
  const [h, w] = rle.size, c = document.createElement("canvas");
  c.width = w; c.height = h;
  const ctx = c.getContext("2d"), img = ctx.createImageData(w, h), d = img.data, a = Math.round(alpha * 255);
  rleForEach(rle, (j) => {
    const o = ((j % h) * w + Math.floor(j / h)) * 4;
    d[o] = rgb[0]; d[o + 1] = rgb[1]; d[o + 2] = rgb[2]; d[o + 3] = a;
  });
  ctx.putImageData(img, 0, 0);
  if (layerCache.size > 200) layerCache.clear();
  layerCache.set(key, c);
  return c;
}

// ---------------------------------------------------------------- rendering
function render() {
  const ctx = el.overlay.getContext("2d");
  ctx.clearRect(0, 0, el.overlay.width, el.overlay.height);
  state.segments.forEach((s, i) => ctx.drawImage(maskLayer(s.rle, colour(i + 50), 0.4), 0, 0));
  state.objects.forEach((o) => ctx.drawImage(maskLayer(o.rle, colour(o.object), o.object === state.current ? 0.6 : 0.45), 0, 0));
  el.overlay.dataset.version = String(Number(el.overlay.dataset.version) + 1);
  renderDraft();
  renderLists();
}
function renderDraft() {
  const ctx = el.draft.getContext("2d"), lw = Math.max(2, state.width / 300);
  ctx.clearRect(0, 0, el.draft.width, el.draft.height);
  ctx.lineWidth = lw; ctx.lineJoin = ctx.lineCap = "round";
  for (const m of [...state.marks, state.gesture].filter(Boolean)) drawMark(ctx, m, lw);
  ctx.font = `bold ${Math.round(lw * 7)}px system-ui`;
  for (const o of state.objects) {
    const [x, y] = o.bbox || [0, 0];
    ctx.fillStyle = css(colour(o.object));
    ctx.fillText(`${o.object}: ${o.label ?? ""}`, x + lw, Math.max(y - lw, lw * 7));
  }
}
function drawMark(ctx, m, lw) {
  const rgb = m.object === undefined || m.object === null ? [255, 255, 255] : colour(m.object);
  ctx.strokeStyle = css(rgb); ctx.fillStyle = css(rgb, 0.25);
  if (m.kind === "point") {
    ctx.beginPath(); ctx.arc(m.x, m.y, lw * 3, 0, 2 * Math.PI);
    ctx.fillStyle = m.label ? "#2ecc71" : "#ff4d4d"; ctx.fill();
    ctx.strokeStyle = "#fff"; ctx.stroke();
  } else if (m.kind === "box") {
    ctx.strokeRect(m.box[0], m.box[1], m.box[2] - m.box[0], m.box[3] - m.box[1]);
  } else if (m.kind === "scribble" || m.kind === "polygon") {
    ctx.beginPath();
    m.pts.forEach(([x, y], i) => (i ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
    if (m.kind === "polygon" && m.closed) { ctx.closePath(); ctx.fill(); }
    ctx.stroke();
  }
}
function renderLists() {
  el.objects.replaceChildren(...state.objects.map((o) => listItem(o, colour(o.object), `#${o.object} ${o.label ?? "object"}`,
    () => { state.current = o.object; render(); })));
  el.objects.querySelectorAll("li").forEach((li, i) => li.classList.toggle("current", state.objects[i].object === state.current));
  el.segments.replaceChildren(...state.segments.map((s, i) => listItem(s, colour(i + 50), s.label ?? "segment", null)));
  el.hint.textContent = state.current === null ? "next prompt starts a new object" : `next prompt refines object #${state.current}`;
}
function listItem(o, rgb, text, onclick) {
  const li = document.createElement("li"), sw = document.createElement("span"), lab = document.createElement("span");
  const sc = document.createElement("span");
  sw.className = "swatch"; sw.style.background = css(rgb);
  lab.className = "label"; lab.textContent = text; lab.title = text;
  sc.className = "score"; sc.textContent = typeof o.score === "number" ? o.score.toFixed(2) : "";
  li.append(sw, lab, sc);
  if (onclick) li.addEventListener("click", onclick);
  return li;
}

// ---------------------------------------------------------------- image upload and session
async function openImage(file) {
  if (!file) return;
  setStatus(`uploading ${file.name}…`);
  const form = new FormData();
  form.append("file", file, file.name);
  try {
    const info = await api("POST", "/v1/images", form);
    const { session_id } = await api("POST", "/v1/sessions", { image_id: info.image_id });
    const img = await loadImage(file);
    Object.assign(state, { imageId: info.image_id, width: info.width, height: info.height, name: file.name,
      sessionId: session_id, objects: [], segments: [], current: null, marks: [], past: [], future: [], gesture: null });
    for (const c of [el.canvas, el.overlay, el.draft]) { c.width = info.width; c.height = info.height; }
    el.canvas.getContext("2d").drawImage(img, 0, 0, info.width, info.height);
    document.body.classList.add("has-image");
    $("#image-info").textContent = `${file.name} · ${info.width}×${info.height}`;
    render();
  } catch (err) { report(err); }
}
function loadImage(file) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error(`the browser cannot display ${file.name}`));
    img.src = URL.createObjectURL(file);
  });
}
function applyState(data) {
  const known = new Set(state.objects.map((o) => o.object));
  state.objects = data.objects || [];
  const added = state.objects.filter((o) => !known.has(o.object)).pop();
  state.current = "current_object" in data ? data.current_object : added ? added.object : state.current;
  if (!state.objects.some((o) => o.object === state.current)) state.current = null;
  $("#undo").disabled = data.can_undo === false;
  $("#redo").disabled = data.can_redo === false;
  render();
}

// One prompt round for the current object (or a new one); `mark` is what the draft layer keeps showing.
async function round(prompt, marks) {
  if (!state.sessionId) return setStatus("open an image first", true);
  const target = state.current === null ? { new_object: true } : { object: state.current };
  try {
    const data = await api("POST", `/v1/sessions/${state.sessionId}/prompts`, { ...target, ...prompt });
    state.past.push(state.marks);
    state.future = [];
    applyState(data);
    state.marks = [...state.marks, ...marks.map((m) => ({ ...m, object: state.current }))];
    renderDraft();
  } catch (err) { report(err); render(); }
}
async function history(action) {
  if (!state.sessionId) return;
  try {
    const data = await api("POST", `/v1/sessions/${state.sessionId}/${action}`);
    if (action === "reset") { state.past.push(state.marks); state.future = []; state.marks = []; }
    if (action === "undo" && state.past.length) { state.future.push(state.marks); state.marks = state.past.pop(); }
    if (action === "redo" && state.future.length) { state.past.push(state.marks); state.marks = state.future.pop(); }
    applyState(data);
  } catch (err) { report(err); }
}

// ---------------------------------------------------------------- drawing tools on the main image
function toImage(canvas, ev) {  // pointer -> continuous image coordinates (pixel (c, r) covers [c, c+1) x [r, r+1))
  const r = canvas.getBoundingClientRect(), clamp = (v, hi) => Math.round(Math.min(Math.max(v, 0), hi) * 10) / 10;
  return [clamp(((ev.clientX - r.left) * canvas.width) / r.width, canvas.width),
    clamp(((ev.clientY - r.top) * canvas.height) / r.height, canvas.height)];
}
function selectTool(tool) {
  state.tool = tool; state.gesture = null;
  document.querySelectorAll(".tool").forEach((b) => b.classList.toggle("active", b.dataset.tool === tool));
  renderDraft();
}
const near = (a, b, d = 3) => a && b && Math.abs(a[0] - b[0]) <= d && Math.abs(a[1] - b[1]) <= d;

el.draft.addEventListener("pointerdown", (ev) => {
  if (!state.sessionId || ev.button !== 0) return;
  const p = toImage(el.draft, ev), tool = state.tool;
  if (tool === "pos" || tool === "neg") {
    const label = tool === "pos" && !ev.shiftKey ? 1 : 0;
    round({ points: [p], point_labels: [label] }, [{ kind: "point", x: p[0], y: p[1], label }]);
  } else if (tool === "box" || tool === "scribble") {
    el.draft.setPointerCapture(ev.pointerId);
    state.gesture = tool === "box" ? { kind: "box", start: p, box: [...p, ...p] } : { kind: "scribble", pts: [p] };
  } else if (tool === "polygon") {
    const g = state.gesture || (state.gesture = { kind: "polygon", pts: [] });
    if (!near(g.pts[g.pts.length - 1], p)) g.pts.push(p);  // a double-click's second click adds nothing
  }
  renderDraft();
});
el.draft.addEventListener("pointermove", (ev) => {
  const g = state.gesture;
  if (!g || g.kind === "polygon") return;
  const p = toImage(el.draft, ev);
  if (g.kind === "box") g.box = [Math.min(g.start[0], p[0]), Math.min(g.start[1], p[1]), Math.max(g.start[0], p[0]), Math.max(g.start[1], p[1])];
  else if (!near(g.pts[g.pts.length - 1], p, 1)) g.pts.push(p);
  renderDraft();
});
el.draft.addEventListener("pointerup", () => {
  const g = state.gesture;
  if (!g || g.kind === "polygon") return;
  state.gesture = null;
  if (g.kind === "box" && g.box[2] - g.box[0] > 2 && g.box[3] - g.box[1] > 2) round({ box: g.box }, [g]);
  else if (g.kind === "scribble" && g.pts.length > 1) round({ scribble: [g.pts] }, [g]);
  else renderDraft();
});
el.draft.addEventListener("dblclick", () => {
  const g = state.gesture;
  if (!g || g.kind !== "polygon" || g.pts.length < 3) return;
  state.gesture = null;
  round({ polygon: g.pts }, [{ ...g, closed: true }]);
});

// ---------------------------------------------------------------- reference image
async function openReference(file) {
  if (!file) return;
  const form = new FormData();
  form.append("file", file, file.name);
  try {
    const info = await api("POST", "/v1/images", form);
    const img = await loadImage(file);
    Object.assign(state.ref, { imageId: info.image_id, img, pts: [], closed: false });
    el.refCanvas.width = info.width; el.refCanvas.height = info.height;
    renderReference();
  } catch (err) { report(err); }
}
function renderReference() {
  const r = state.ref, c = el.refCanvas, ctx = c.getContext("2d");
  if (!r.img) return;
  ctx.drawImage(r.img, 0, 0, c.width, c.height);
  drawMark(ctx, { kind: "polygon", pts: r.pts, closed: r.closed, object: null }, Math.max(2, c.width / 150));
  el.refGo.disabled = !(r.closed && r.pts.length >= 3 && state.sessionId);
}
el.refCanvas.addEventListener("pointerdown", (ev) => {
  const r = state.ref, p = toImage(el.refCanvas, ev);
  if (!r.img) return;
  if (r.closed) Object.assign(r, { pts: [], closed: false });
  if (r.mode === "scribble") { r.drawing = true; r.pts = [p]; el.refCanvas.setPointerCapture(ev.pointerId); }
  else if (!near(r.pts[r.pts.length - 1], p)) r.pts.push(p);
  renderReference();
});
el.refCanvas.addEventListener("pointermove", (ev) => {
  const r = state.ref;
  if (r.drawing) { r.pts.push(toImage(el.refCanvas, ev)); renderReference(); }
});
el.refCanvas.addEventListener("pointerup", () => {
  const r = state.ref;
  if (r.drawing) { r.drawing = false; r.closed = r.pts.length >= 3; renderReference(); }  // a lasso closes itself
});
el.refCanvas.addEventListener("dblclick", () => { if (state.ref.pts.length >= 3) { state.ref.closed = true; renderReference(); } });
document.querySelectorAll("input[name=ref-mode]").forEach((i) => i.addEventListener("change", () => {
  Object.assign(state.ref, { mode: i.value, pts: [], closed: false }); renderReference();
}));
$("#ref-clear").addEventListener("click", () => { Object.assign(state.ref, { pts: [], closed: false }); renderReference(); });
el.refGo.addEventListener("click", () => {
  const r = state.ref;
  round({ reference: { image_id: r.imageId, polygon: r.pts } }, []);
});
el.refFile.addEventListener("change", () => openReference(el.refFile.files[0]));

// ---------------------------------------------------------------- panoptic
$("#panoptic-go").addEventListener("click", async () => {
  if (!state.imageId) return setStatus("open an image first", true);
  const v = el.vocab.value.trim();
  const vocabulary = !v || v.toLowerCase() === "coco" ? "coco" : v.split(",").map((s) => s.trim()).filter(Boolean);
  try {
    const data = await api("POST", "/v1/panoptic", { image_id: state.imageId, vocabulary, kind: el.kind.value });
    state.segments = data.segments || [];
    render();
  } catch (err) { report(err); }
});
$("#panoptic-clear").addEventListener("click", () => { state.segments = []; render(); });

// ---------------------------------------------------------------- export
function download(name, href) {
  const a = document.createElement("a");
  a.href = href; a.download = name;
  document.body.append(a); a.click(); a.remove();
}
$("#export-png").addEventListener("click", () => {
  const stem = state.name.replace(/\.[^.]+$/, "");
  for (const o of state.objects) {
    const c = document.createElement("canvas"), ctx = c.getContext("2d");
    c.width = state.width; c.height = state.height;
    ctx.fillStyle = "#000"; ctx.fillRect(0, 0, c.width, c.height);
    ctx.drawImage(maskLayer(o.rle, [255, 255, 255], 1), 0, 0);
    download(`${stem}_object${o.object}.png`, c.toDataURL("image/png"));
  }
});
$("#export-coco").addEventListener("click", () => {
  const items = [...state.objects, ...state.segments], names = [...new Set(items.map((o) => o.label || "object"))];
  const coco = {
    images: [{ id: 1, file_name: state.name, width: state.width, height: state.height }],
    categories: names.map((name, i) => ({ id: i + 1, name })),
    annotations: items.map((o, i) => ({ id: i + 1, image_id: 1, category_id: names.indexOf(o.label || "object") + 1,
      segmentation: o.rle, area: rleArea(o.rle), bbox: o.bbox, iscrowd: 0, score: o.score })),
  };
  const blob = new Blob([JSON.stringify(coco)], { type: "application/json" });
  download(state.name.replace(/\.[^.]+$/, "") + "_coco.json", URL.createObjectURL(blob));
});

// ---------------------------------------------------------------- wiring
el.file.addEventListener("change", () => openImage(el.file.files[0]));
document.querySelectorAll(".tool").forEach((b) => b.addEventListener("click", () => selectTool(b.dataset.tool)));
$("#text-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const text = el.text.value.trim();
  if (text && $("#find-all").checked) findAll(text);  // find.js
  else if (text) round({ text }, []);
});
$("#undo").addEventListener("click", () => history("undo"));
$("#redo").addEventListener("click", () => history("redo"));
$("#reset").addEventListener("click", () => history("reset"));
$("#new-object").addEventListener("click", () => { state.current = null; render(); });
document.addEventListener("keydown", (ev) => {
  if (ev.target instanceof HTMLInputElement || ev.target instanceof HTMLSelectElement) return;
  const k = ev.key.toLowerCase();
  if ((ev.ctrlKey || ev.metaKey) && k === "z") { ev.preventDefault(); history(ev.shiftKey ? "redo" : "undo"); }
  else if ((ev.ctrlKey || ev.metaKey) && k === "y") { ev.preventDefault(); history("redo"); }
  else if (k === "n") { state.current = null; render(); }
  else if (k === "escape") { state.gesture = null; renderDraft(); }
  else if ("12345".includes(k) && k.length === 1) selectTool(["pos", "neg", "box", "scribble", "polygon"][Number(k) - 1]);
});
for (const type of ["dragenter", "dragover"]) document.addEventListener(type, (ev) => { ev.preventDefault(); document.body.classList.add("dragging"); });
document.addEventListener("dragleave", (ev) => { if (!ev.relatedTarget) document.body.classList.remove("dragging"); });
document.addEventListener("drop", (ev) => {
  ev.preventDefault();
  document.body.classList.remove("dragging");
  const file = [...(ev.dataTransfer?.files || [])].find((f) => f.type.startsWith("image/"));
  if (file) openImage(file);
});
fetch("/v1/models").then((r) => r.json()).then((m) => {
  const list = Array.isArray(m) ? m : m.models || [m];
  const first = list[0] || {};
  $("#model").textContent = typeof first === "string" ? first : first.name || first.id || "";
}).catch(() => {});
render();
