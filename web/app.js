// cnn serve: the page. Plain JavaScript, no dependencies; it talks to the JSON API only.
'use strict';

const $ = (id) => document.getElementById(id);
const state = {
  model: null,        // GET /api/model
  last: null,         // the last POST /api/predict answer
  weights: new Map(), // layer index -> GET /api/weights answer (for state.model.version)
  selected: null,     // { layer, k, y, x }: the cell explained
  busy: false,        // a prediction is under way
  again: false,       // the pad changed while it was
  lastBlob: null,     // the image last sent
  epochs: [],
};

async function getJSON(url, options) {
  const r = await fetch(url, options);
  let body;
  try { body = await r.json(); } catch (e) { body = { error: r.status + ' ' + r.statusText }; }
  if (!r.ok) throw new Error(body.error || String(r.status));
  return body;
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') e.className = v; else if (k === 'text') e.textContent = v; else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}

const SELFTEST = new URLSearchParams(location.search).has('selftest');
const fmt = (v, d = 4) => (Number.isFinite(v) ? v.toFixed(d) : String(v));

// ------------------------------------------------------------------ the model

async function loadModel() {
  const m = await getJSON('/api/model');
  state.model = m;
  state.weights.clear();
  $('model-file').textContent = `${m.file} — input ${m.input.join('×')}, ${m.classes.length} classes (model version ${m.version})`;
  const err = $('reload-error');
  err.hidden = !m.reload_error;
  err.textContent = m.reload_error ? `The newest model file did not load, the previous one is shown: ${m.reload_error}` : '';
  $('summary').textContent = m.summary;
  buildLayers();
  await drawFilters();
  $('confusion-block').hidden = !m.has_data;
  if (m.has_data) loadConfusion();
}

async function weightsOf(i) {
  if (!state.weights.has(i)) state.weights.set(i, getJSON(`/api/weights?layer=${i}`));
  return state.weights.get(i);
}

async function drawFilters() {
  const box = $('filters');
  box.replaceChildren();
  const conv = state.model.layers.find((l) => l.conv);
  if (!conv) { box.textContent = 'The model has no convolution.'; return; }
  const w = await weightsOf(conv.index);
  const [K, C, kh, kw] = w.weight_shape;
  const per = C * kh * kw;
  for (let k = 0; k < K; k++) {
    const f = w.weight.slice(k * per, (k + 1) * per);
    const c = mapCanvas(kw, kh, 48 / Math.max(kh, kw));
    paintPlane(c, f.slice(0, kh * kw), kh, kw, Math.max(...f.map(Math.abs)) || 1);
    box.append(el('div', { class: 'map-box' }, c, `filter ${k}`));
  }
}

// ------------------------------------------------------------------ drawing pad

const pad = $('pad');
const pen = pad.getContext('2d');

function clearPad() {
  pen.fillStyle = '#000';
  pen.fillRect(0, 0, pad.width, pad.height);
}

function padPoint(e) {
  const r = pad.getBoundingClientRect();
  return [(e.clientX - r.left) * pad.width / r.width, (e.clientY - r.top) * pad.height / r.height];
}

let drawing = null;
pad.addEventListener('pointerdown', (e) => {
  drawing = padPoint(e);
  pad.setPointerCapture?.(e.pointerId);
  dot(drawing);
});
pad.addEventListener('pointermove', (e) => {
  if (!drawing) return;
  const p = padPoint(e);
  pen.strokeStyle = '#fff';
  pen.lineWidth = 16;
  pen.lineCap = 'round';
  pen.beginPath();
  pen.moveTo(...drawing);
  pen.lineTo(...p);
  pen.stroke();
  drawing = p;
  predictPad();
});
for (const end of ['pointerup', 'pointercancel', 'pointerleave']) {
  pad.addEventListener(end, () => { if (drawing) { drawing = null; predictPad(); } });
}
function dot([x, y]) {
  pen.fillStyle = '#fff';
  pen.beginPath();
  pen.arc(x, y, 8, 0, 2 * Math.PI);
  pen.fill();
}

$('clear').addEventListener('click', () => { clearPad(); predictPad(); });
$('center').addEventListener('change', () => predictPad());
$('sample').addEventListener('click', () => sampleStroke());
$('file').addEventListener('change', (e) => { if (e.target.files[0]) predictFile(e.target.files[0]); });
pad.addEventListener('dragover', (e) => e.preventDefault());
pad.addEventListener('drop', (e) => {
  e.preventDefault();
  if (e.dataTransfer.files[0]) predictFile(e.dataTransfer.files[0]);
});

// A stroke drawn through the pad's own pointer events: a "7" (also the browser test's input).
function sampleStroke() {
  clearPad();
  const r = pad.getBoundingClientRect();
  const pts = [[80, 70], [200, 70], [190, 110], [160, 170], [135, 230]];
  const at = ([x, y]) => ({ clientX: r.left + x * r.width / pad.width, clientY: r.top + y * r.height / pad.height, pointerId: 1, bubbles: true });
  pad.dispatchEvent(new PointerEvent('pointerdown', at(pts[0])));
  for (let i = 1; i < pts.length; i++) {
    for (let t = 1; t <= 8; t++) {
      const p = [pts[i - 1][0] + (pts[i][0] - pts[i - 1][0]) * t / 8, pts[i - 1][1] + (pts[i][1] - pts[i - 1][1]) * t / 8];
      pad.dispatchEvent(new PointerEvent('pointermove', at(p)));
    }
  }
  pad.dispatchEvent(new PointerEvent('pointerup', at(pts[pts.length - 1])));
}

// The pad scaled to the model's input: the ink's bounding box scaled so that its longer side
// is 20/28 of the input and centred (as MNIST's digits are), or the whole pad.
function padToInput() {
  const [, h, w] = state.model.input;
  const out = el('canvas', { width: w, height: h });
  const g = out.getContext('2d');
  g.fillStyle = '#000';
  g.fillRect(0, 0, w, h);
  g.imageSmoothingQuality = 'high';
  if (!$('center').checked) { g.drawImage(pad, 0, 0, w, h); return out; }
  const img = pen.getImageData(0, 0, pad.width, pad.height).data;
  let x0 = pad.width, y0 = pad.height, x1 = -1, y1 = -1;
  for (let y = 0; y < pad.height; y++) {
    for (let x = 0; x < pad.width; x++) {
      if (img[(y * pad.width + x) * 4] > 20) {
        if (x < x0) x0 = x; if (x > x1) x1 = x; if (y < y0) y0 = y; if (y > y1) y1 = y;
      }
    }
  }
  if (x1 < 0) return out; // nothing drawn
  const bw = x1 - x0 + 1, bh = y1 - y0 + 1;
  const s = (20 / 28) * Math.min(w, h) / Math.max(bw, bh);
  const dw = bw * s, dh = bh * s;
  g.drawImage(pad, x0, y0, bw, bh, (w - dw) / 2, (h - dh) / 2, dw, dh);
  return out;
}

function predictPad() {
  if (!state.model) return;
  if (state.busy) { state.again = true; return; }
  state.busy = true; // from now: toBlob calls back later
  padToInput().toBlob((blob) => send(blob, false), 'image/png');
}

function predictFile(file) {
  // A chosen image shows on the pad too, scaled to fit.
  const url = URL.createObjectURL(file);
  const img = new Image();
  img.onload = () => { clearPad(); pen.drawImage(img, 0, 0, pad.width, pad.height); URL.revokeObjectURL(url); };
  img.src = url;
  send(file, true);
}

async function send(blob, resize) {
  state.busy = true;
  const err = $('predict-error');
  try {
    const p = await getJSON('/api/predict?layers=1' + (resize ? '&resize=1' : ''), { method: 'POST', body: blob });
    state.lastBlob = blob;
    err.hidden = true;
    if (p.version !== state.model.version) await loadModel();
    state.last = p;
    showPrediction(p);
    showLayers(p);
    if (state.selected) await explain(state.selected);
  } catch (e) {
    err.hidden = false;
    err.textContent = e.message;
  } finally {
    state.busy = false;
    if (state.again) { state.again = false; predictPad(); }
  }
}

// ------------------------------------------------------------------ prediction

function showPrediction(p) {
  $('predicted').textContent = `${p.class} (${(100 * p.probabilities[p.index]).toFixed(1)}%)`;
  const bars = $('bars');
  bars.replaceChildren();
  p.classes.forEach((name, i) => {
    const v = p.probabilities[i];
    const bar = el('div', { class: 'bar' + (i === p.index ? ' best' : ''), role: 'meter', 'aria-valuemin': '0', 'aria-valuemax': '1', 'aria-valuenow': String(v), 'aria-label': name });
    bar.append(el('div', { style: `width:${(100 * v).toFixed(2)}%` }));
    bars.append(el('span', { text: name }), bar, el('span', { class: 'num', text: (100 * v).toFixed(1) + '%' }));
  });
  const view = $('input-view');
  const [c, h, w] = p.input.shape;
  const g = view.getContext('2d');
  const small = el('canvas', { width: w, height: h });
  const raw = rawPixels(p.input.values, c, h, w);
  small.getContext('2d').putImageData(raw, 0, 0);
  g.imageSmoothingEnabled = false;
  g.clearRect(0, 0, view.width, view.height);
  g.drawImage(small, 0, 0, view.width, view.height);
  drawReceptiveField();
}

// The normalised input back to 0..255 grey (or RGB) for display.
function rawPixels(values, c, h, w) {
  const { mean, std } = state.model;
  const img = new ImageData(w, h);
  for (let i = 0; i < h * w; i++) {
    for (let ch = 0; ch < 3; ch++) {
      const src = c >= 3 ? ch : 0;
      img.data[4 * i + ch] = 255 * (values[src * h * w + i] * std[src] + mean[src]);
    }
    img.data[4 * i + 3] = 255;
  }
  return img;
}

// ------------------------------------------------------------------ layers

function mapCanvas(w, h, scale) {
  const c = el('canvas', { width: w, height: h, class: 'map' });
  c.style.width = `${Math.round(w * scale)}px`;
  c.style.height = `${Math.round(h * scale)}px`;
  return c;
}

// One plane: 0 black, +max white, negative values red.
function paintPlane(canvas, values, h, w, max) {
  const img = new ImageData(w, h);
  for (let i = 0; i < h * w; i++) {
    const v = values[i] / max;
    const a = Math.min(1, Math.abs(v)) * 255;
    img.data[4 * i] = a;
    img.data[4 * i + 1] = v >= 0 ? a : 0;
    img.data[4 * i + 2] = v >= 0 ? a : 0;
    img.data[4 * i + 3] = 255;
  }
  canvas.getContext('2d').putImageData(img, 0, 0);
}

function buildLayers() {
  const box = $('layers');
  box.replaceChildren();
  const m = state.model;
  const edges = graphEdges(m);
  m.layers.forEach((l, i) => {
    const last = i === m.layers.length - 1;
    const title = `Layer ${i}: ${l.label} → ${l.output.join('×')}` + (last ? ' (logits, one per class)' : '');
    const h3 = el('h3', { text: title });
    // Where the layer's output goes besides the line below: the arcs at the side, in words.
    const later = edges.filter((e) => e.arc && e.from === i).map((e) => e.to);
    if (later.length) h3.append(el('span', { class: 'also-read', text: ` — also read by layer ${later.join(', ')}` }));
    const div = el('div', { class: 'layer', id: `layer-${i}` }, h3);
    // The layer's own account of its shape and arithmetic (`cnn summary --explain`).
    if (l.explain && l.explain.length) div.append(el('p', { class: 'muted layer-explain', text: l.explain.join('\n') }));
    if (l.output.length === 3) {
      const [C, H, W] = l.output;
      const maps = el('div', { class: 'maps' });
      const scale = Math.max(2, Math.floor(72 / Math.max(H, W)));
      for (let k = 0; k < C; k++) {
        const c = mapCanvas(W, H, scale);
        c.tabIndex = 0;
        c.dataset.layer = i; c.dataset.k = k;
        c.setAttribute('aria-label', `layer ${i} channel ${k}: press Enter to explain a cell`);
        c.addEventListener('click', (e) => {
          const r = c.getBoundingClientRect();
          const x = Math.min(W - 1, Math.floor((e.clientX - r.left) * W / r.width));
          const y = Math.min(H - 1, Math.floor((e.clientY - r.top) * H / r.height));
          select({ layer: i, k, y, x });
        });
        c.addEventListener('keydown', (e) => onMapKey(e, i, k, H, W));
        maps.append(el('div', { class: 'map-box' }, c, `${k}`));
      }
      div.append(maps);
    } else {
      div.append(el('div', { class: 'flat-box' }));
    }
    box.append(div);
  });
  const graph = edges.some((e) => e.arc);
  box.classList.toggle('graph', graph);
  $('graph-legend').hidden = !graph;
  state.edges = edges;
  drawGraph();
}

// ------------------------------------------------------------------ the graph beside the layers

// Every value each layer reads: { from (a layer, or -1 for the network's input), to, kind,
// arc }. kind says what the reader does with it: `add` (Shortcut), `concat` (a Route of
// several layers), `branch` (a Route of one: it reads an earlier layer again) or `chain`
// (any other layer, which reads the line above). An edge from the line above runs along the
// column; any other is an arc.
function graphEdges(m) {
  const edges = [];
  m.layers.forEach((l, i) => {
    const kind = l.kind === 'Shortcut' ? 'add' : l.kind === 'Route' ? (l.reads.length > 1 ? 'concat' : 'branch') : 'chain';
    for (const j of l.reads) {
      const from = j === null ? -1 : j;
      edges.push({ from, to: i, kind, arc: from !== i - 1 });
    }
  });
  return edges;
}

const EDGE_COLORS = { add: '#2f855a', concat: '#2b6cb0', branch: '#805ad5', chain: '#718096' };
const EDGE_WORDS = { add: 'added to the line above by', concat: 'concatenated along channels by', branch: 'read again by' };
const LANE = 14;      // pixels between two arcs side by side
const SPINE_PAD = 14; // from the column's line to the layers' text

// Draws the edges in a gutter left of the layers: a line down the column from each layer to
// the next one that reads it, and an arc for each value read from further up, on a lane of
// its own wherever arcs overlap, with an arrow into its reader. A chain draws nothing, so
// that its page stays as it was.
function drawGraph() {
  const box = $('layers');
  box.querySelector('svg.graph-edges')?.remove();
  const edges = state.edges || [];
  if (!box.classList.contains('graph')) { box.style.paddingLeft = ''; return; }
  // Lanes: shorter arcs nearer the column; two arcs that overlap or touch get two lanes.
  const arcs = edges.filter((e) => e.arc).sort((a, b) => (a.to - a.from) - (b.to - b.from) || a.from - b.from);
  const lanes = [];
  for (const a of arcs) {
    let lane = 0;
    while (lanes[lane]?.some((b) => a.from <= b.to && b.from <= a.to)) lane++;
    (lanes[lane] ??= []).push(a);
    a.lane = lane;
  }
  const gutter = SPINE_PAD + 8 + lanes.length * LANE;
  box.style.paddingLeft = `${gutter}px`;
  const spine = gutter - SPINE_PAD;
  const top = box.getBoundingClientRect().top;
  const y = (i) => {
    if (i < 0) return 4;
    const h = $(`layer-${i}`)?.querySelector('h3');
    if (!h) return 0;
    const r = h.getBoundingClientRect();
    return r.top - top + Math.min(r.height, 22) / 2;
  };
  const NS = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(NS, 'svg');
  svg.setAttribute('class', 'graph-edges');
  svg.setAttribute('width', String(gutter));
  svg.setAttribute('height', String(box.scrollHeight));
  svg.setAttribute('aria-hidden', 'true');
  const node = (tag, attrs, title) => {
    const e = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
    if (title) { const t = document.createElementNS(NS, 'title'); t.textContent = title; e.append(t); }
    svg.append(e);
    return e;
  };
  const defs = document.createElementNS(NS, 'defs');
  for (const [kind, color] of Object.entries(EDGE_COLORS)) {
    const mk = document.createElementNS(NS, 'marker');
    for (const [k, v] of Object.entries({ id: `arrow-${kind}`, viewBox: '0 0 8 8', refX: 7, refY: 4, markerWidth: 7, markerHeight: 7, orient: 'auto' })) mk.setAttribute(k, String(v));
    const tip = document.createElementNS(NS, 'path');
    tip.setAttribute('d', 'M0,0 L8,4 L0,8 z');
    tip.setAttribute('fill', color);
    mk.append(tip);
    defs.append(mk);
  }
  svg.append(defs);
  const name = (i) => (i < 0 ? 'the input' : `layer ${i}`);
  for (const e of edges) {
    const attrs = { class: `edge ${e.kind}${e.arc ? ' arc' : ''}`, 'data-from': e.from, 'data-to': e.to, 'data-kind': e.kind, fill: 'none', stroke: EDGE_COLORS[e.arc ? e.kind : 'chain'], 'stroke-width': e.arc ? 2 : 1.5 };
    const y0 = y(e.from), y1 = y(e.to);
    if (!e.arc) {
      node('path', { ...attrs, d: `M${spine},${y0} V${y1}` }, `${name(e.to)} reads ${name(e.from)}`);
      continue;
    }
    const x = spine - (e.lane + 1) * LANE;
    const r = Math.min(8, LANE - 2, (y1 - y0) / 2);
    node('path', {
      ...attrs,
      d: `M${spine},${y0} H${x + r} Q${x},${y0} ${x},${y0 + r} V${y1 - r} Q${x},${y1} ${x + r},${y1} H${spine - 9}`,
      'marker-end': `url(#arrow-${e.kind})`,
    }, `${name(e.from)}'s output, ${EDGE_WORDS[e.kind]} ${name(e.to)}`);
  }
  // A dot per layer on the column; a Shortcut's is a +, a concatenating Route's a ‖.
  state.model.layers.forEach((l, i) => {
    const kind = edges.find((e) => e.to === i)?.kind;
    const cy = y(i);
    if (kind === 'add' || kind === 'concat') {
      node('circle', { cx: spine, cy, r: 7, fill: '#fff', stroke: EDGE_COLORS[kind], 'stroke-width': 2, class: `join ${kind}` },
        kind === 'add' ? `layer ${i} adds its inputs` : `layer ${i} concatenates its inputs`);
      const t = node('text', { x: spine, y: cy + 4, 'text-anchor': 'middle', 'font-size': 12, 'font-weight': 700, fill: EDGE_COLORS[kind] });
      t.textContent = kind === 'add' ? '+' : '‖';
    } else {
      node('circle', { cx: spine, cy, r: 3, fill: EDGE_COLORS[kind === 'branch' ? 'branch' : 'chain'] });
    }
  });
  box.prepend(svg);
}

function onMapKey(e, layer, k, H, W) {
  const s = state.selected && state.selected.layer === layer && state.selected.k === k
    ? { ...state.selected } : { layer, k, y: H >> 1, x: W >> 1 };
  const moves = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1] };
  if (e.key === 'Enter' || e.key === ' ') {
    e.preventDefault();
    select(s);
  } else if (moves[e.key] && state.selected) {
    e.preventDefault();
    s.y = Math.max(0, Math.min(H - 1, s.y + moves[e.key][0]));
    s.x = Math.max(0, Math.min(W - 1, s.x + moves[e.key][1]));
    select(s);
  }
}

function showLayers(p) {
  const m = state.model;
  p.layers.forEach((t, i) => {
    const div = $(`layer-${i}`);
    if (!div) return;
    const max = Math.max(1e-12, ...t.values.map((v) => Math.abs(v)).filter(Number.isFinite));
    if (t.shape.length === 3) {
      const [C, H, W] = t.shape;
      div.querySelectorAll('canvas.map').forEach((c, k) => {
        paintPlane(c, t.values.slice(k * H * W, (k + 1) * H * W), H, W, max);
        c.classList.toggle('selected', !!state.selected && state.selected.layer === i && state.selected.k === k);
      });
      markSelected(div, i, H, W);
    } else {
      const box = div.querySelector('.flat-box');
      box.replaceChildren();
      if (i === m.layers.length - 1) {
        // Logits: each bar from a zero line, negative ones to its left.
        const bars = el('div', { class: 'bars logits' });
        for (const [j, span] of signedBars(t.values).entries()) {
          const bar = el('div', { class: 'bar signed' });
          bar.append(
            el('div', { class: 'zero', style: `left:${span.zero.toFixed(2)}%` }),
            el('div', { class: 'value' + (t.values[j] < 0 ? ' neg' : ''), style: `left:${span.left.toFixed(2)}%;width:${span.width.toFixed(2)}%` }),
          );
          bars.append(el('span', { text: m.classes[j] ?? String(j) }), bar, el('span', { class: 'num', text: fmt(t.values[j], 3) }));
        }
        box.append(bars);
      } else {
        const flat = el('div', { class: 'flat', title: `${t.values.length} units` });
        for (const v of t.values.slice(0, 2048)) {
          flat.append(el('div', { class: v < 0 ? 'neg' : '', style: `height:${(80 * Math.abs(v) / max).toFixed(1)}px` }));
        }
        box.append(flat);
      }
    }
  });
  drawGraph(); // the layers' heights may have changed
}

// Where each value's bar lies, in percent of the track: a zero line at `zero`, positive
// values to its right and negative ones to its left, all on one scale.
function signedBars(values) {
  const finite = values.filter(Number.isFinite);
  const pos = Math.max(0, ...finite), neg = Math.max(0, ...finite.map((v) => -v));
  const span = pos + neg || 1;
  const zero = (100 * neg) / span;
  return values.map((v) => {
    const width = Number.isFinite(v) ? (100 * Math.abs(v)) / span : 0;
    return { zero, left: v < 0 ? zero - width : zero, width };
  });
}

function markSelected(div, i, H, W) {
  const s = state.selected;
  if (!s || s.layer !== i) return;
  const c = div.querySelectorAll('canvas.map')[s.k];
  if (!c) return;
  const g = c.getContext('2d');
  g.fillStyle = 'rgba(255, 200, 0, 0.85)';
  g.fillRect(s.x, s.y, 1, 1);
}

async function select(s) {
  state.selected = s;
  if (state.last) showLayers(state.last);
  await explain(s);
  const c = $(`layer-${s.layer}`)?.querySelectorAll('canvas.map')[s.k];
  if (c && document.activeElement !== c && document.activeElement?.classList.contains('map')) c.focus();
}

// ------------------------------------------------------------------ explain one number

const activations = {
  none: (z) => z,
  relu: (z) => Math.max(0, z),
  relu6: (z) => Math.min(Math.max(0, z), 6),
  leaky_relu: (z, a) => (z > 0 ? z : a * z),
  sigmoid: (z) => 1 / (1 + Math.exp(-z)),
  tanh: (z) => Math.tanh(z),
};

// A value of the last prediction: the normalised image (null) or layer j's output.
function valuesOf(j) {
  return j === null ? state.last.input.values : state.last.layers[j].values;
}

// The layer's input for the last prediction: the first (for most layers the only) value it
// reads, the line above's output or, after the first line, the normalised image.
function layerInput(i) {
  return valuesOf(state.model.layers[i].reads[0]);
}

// The (C, H, W) of a value: the network's input (null) or layer j's output.
const shapeOf = (j) => (j === null ? state.model.input : state.model.layers[j].output);
const valueName = (j) => (j === null ? 'the input' : `layer ${j}`);

// The page's own computation of one cell, from the weights and the layer's input:
// { value, parts } where parts describe the arithmetic for display.
async function computeCell(s) {
  const l = state.model.layers[s.layer];
  const [C, H, W] = l.input;
  const [, OH, OW] = l.output;
  const x = layerInput(s.layer);
  const at = (c, y, xx) => (y < 0 || y >= H || xx < 0 || xx >= W ? null : x[(c * H + y) * W + xx]);
  if (l.conv) {
    const { kh, kw, stride, pad_top: pt, pad_left: pl } = l.conv;
    const w = await weightsOf(s.layer);
    const channels = [];
    let total = 0;
    for (let c = 0; c < C; c++) {
      const patch = [], kernel = [], products = [];
      let sum = 0;
      for (let a = 0; a < kh; a++) {
        for (let b = 0; b < kw; b++) {
          const v = at(c, s.y * stride + a - pt, s.x * stride + b - pl);
          const k = w.weight[((s.k * C + c) * kh + a) * kw + b];
          const prod = (v ?? 0) * k;
          patch.push(v); kernel.push(k); products.push(prod);
          sum += prod;
        }
      }
      total += sum;
      channels.push({ patch, kernel, products, sum });
    }
    const bias = w.bias[s.k];
    const z = total + bias;
    const alpha = l.alpha ?? 0;
    const f = activations[l.activation] || ((v) => NaN);
    return { kind: 'conv', channels, total, bias, z, value: f(z, alpha), kh, kw };
  }
  if (l.pool) {
    const { ph, pw, stride, max } = l.pool;
    const window = [];
    for (let a = 0; a < ph; a++) for (let b = 0; b < pw; b++) window.push(at(s.k, s.y * stride + a, s.x * stride + b));
    let win = 0;
    window.forEach((v, j) => { if (v > window[win]) win = j; }); // the first maximum, as the layer
    const value = max ? window[win] : window.reduce((p, v) => p + v, 0) / window.length;
    return { kind: max ? 'max' : 'avg', window, win, value, kh: ph, kw: pw };
  }
  if (l.kind === 'Shortcut') {
    // y = act(a + b): the same cell of both values, added in float32 as the layer does.
    const at = (s.k * OH + s.y) * OW + s.x;
    const terms = l.reads.map((j) => ({ layer: j, value: valuesOf(j)[at] }));
    const z = terms.reduce((sum, t) => Math.fround(sum + t.value), 0);
    const f = activations[l.activation] || ((v) => NaN);
    return { kind: 'add', terms, z, value: f(z, l.alpha ?? 0) };
  }
  if (l.kind === 'Route') {
    // The values' channels one after another: find the one channel k falls in.
    let k = s.k;
    for (const [n, j] of l.reads.entries()) {
      const [Cj, Hj, Wj] = shapeOf(j);
      if (k < Cj) {
        return { kind: 'route', layer: j, nth: n, channel: k, value: valuesOf(j)[(k * Hj + s.y) * Wj + s.x] };
      }
      k -= Cj;
    }
    return { kind: 'none', value: NaN };
  }
  // A layer without parameters that only applies its activation (ReLU, Dropout at inference,
  // ...); BatchNorm and the others with parameters have no explanation here.
  if (activations[l.activation] && l.kind !== 'Dense' && !l.params) {
    const v = at(s.k, s.y, s.x);
    return { kind: 'act', input: v, value: activations[l.activation](v, l.alpha ?? 0) };
  }
  return { kind: 'none', value: NaN };
}

function apiValue(s) {
  const [, OH, OW] = state.model.layers[s.layer].output;
  return state.last.layers[s.layer].values[(s.k * OH + s.y) * OW + s.x];
}

function grid(values, kh, kw, cls) {
  const t = el('table');
  for (let a = 0; a < kh; a++) {
    const tr = el('tr');
    for (let b = 0; b < kw; b++) {
      const v = values[a * kw + b];
      const td = el('td', { text: v === null ? '0 (pad)' : fmt(v, 3) });
      if (v === null) td.className = 'pad';
      if (cls && cls(a * kw + b)) td.className = 'win';
      tr.append(td);
    }
    t.append(tr);
  }
  return t;
}

const MAX_CHANNEL_TABLES = 3;
const MAX_CHANNEL_LINES = 24;

async function explain(s) {
  const box = $('explain');
  const l = state.model.layers[s.layer];
  if (!state.last) { box.textContent = 'Draw something first.'; return null; }
  const cell = await computeCell(s);
  const api = apiValue(s);
  box.replaceChildren(el('p', { text: `Layer ${s.layer} (${l.label}), channel ${s.k}, row ${s.y}, column ${s.x}.` }));
  const rf = receptiveField(s);
  if (rf) box.append(el('p', { class: 'muted', text: `Receptive field in the input: rows ${rf.y0}–${rf.y1}, columns ${rf.x0}–${rf.x1} (the yellow box on the input view).` }));
  if (cell.kind === 'conv') {
    const shown = cell.channels.slice(0, MAX_CHANNEL_TABLES);
    shown.forEach((ch, c) => {
      box.append(el('div', { class: 'tables' },
        el('figure', {}, el('figcaption', { text: `input channel ${c}` }), grid(ch.patch, cell.kh, cell.kw)),
        el('figure', {}, el('figcaption', { text: `× kernel ${s.k}, channel ${c}` }), grid(ch.kernel, cell.kh, cell.kw)),
        el('figure', {}, el('figcaption', { text: `= products, sum ${fmt(ch.sum)}` }), grid(ch.products, cell.kh, cell.kw))));
    });
    const lines = cell.channels.map((ch, c) => `channel ${String(c).padStart(3)}: sum of ${cell.kh}×${cell.kw} products = ${fmt(ch.sum, 6)}`);
    const listed = lines.slice(0, MAX_CHANNEL_LINES).join('\n') + (lines.length > MAX_CHANNEL_LINES ? `\n… ${lines.length - MAX_CHANNEL_LINES} more channels` : '');
    const act = l.activation === 'leaky_relu' ? `leaky_relu(α=${l.alpha})` : l.activation;
    box.append(el('div', { class: 'sum', text:
      `${listed}\nall channels: ${fmt(cell.total, 6)}\n+ bias ${fmt(cell.bias, 6)}\n= ${fmt(cell.z, 6)}\n${act}(${fmt(cell.z, 6)}) = ${fmt(cell.value, 6)}` }));
  } else if (cell.kind === 'max' || cell.kind === 'avg') {
    box.append(el('div', { class: 'tables' }, el('figure', {},
      el('figcaption', { text: cell.kind === 'max' ? `window of channel ${s.k}: the winner is highlighted` : `window of channel ${s.k}: the mean` }),
      grid(cell.window, cell.kh, cell.kw, cell.kind === 'max' ? (j) => j === cell.win : null))));
    box.append(el('div', { class: 'sum', text: cell.kind === 'max'
      ? `max of the window = ${fmt(cell.value, 6)} (row ${Math.floor(cell.win / cell.kw)}, column ${cell.win % cell.kw} of the window)`
      : `mean of the ${cell.window.length} values = ${fmt(cell.value, 6)}` }));
  } else if (cell.kind === 'add') {
    // a is the line above, b the layer `from` names (the arc on the left).
    const act = l.activation === 'leaky_relu' ? `leaky_relu(α=${l.alpha})` : l.activation;
    const names = ['a', 'b', 'c', 'd'];
    const lines = cell.terms.map((t, n) => `${names[n] ?? `x${n}`} = ${valueName(t.layer)}${n === 0 ? ' (the line above)' : ' (the arc on the left)'}, channel ${s.k}, row ${s.y}, column ${s.x}: ${fmt(t.value, 6)}`);
    const sum = cell.terms.map((_, n) => names[n] ?? `x${n}`).join(' + ');
    const applied = l.activation === 'none' ? `no activation: ${fmt(cell.value, 6)}` : `${act}(${fmt(cell.z, 6)}) = ${fmt(cell.value, 6)}`;
    box.append(el('div', { class: 'sum', text: `${lines.join('\n')}\n${sum} = ${cell.terms.map((t) => fmt(t.value, 6)).join(' + ')} = ${fmt(cell.z, 6)}\n${applied}` }));
  } else if (cell.kind === 'route') {
    const [Cj] = shapeOf(cell.layer);
    const many = l.reads.length > 1;
    const first = l.reads.slice(0, cell.nth).reduce((sum, j) => sum + shapeOf(j)[0], 0);
    box.append(el('div', { class: 'sum', text: many
      ? `channels ${first}–${first + Cj - 1} of this Route are ${valueName(cell.layer)}'s ${Cj} (input ${cell.nth + 1} of ${l.reads.length}, concatenated in order):\nchannel ${s.k} here is channel ${cell.channel} of ${valueName(cell.layer)}, row ${s.y}, column ${s.x}: ${fmt(cell.value, 6)}`
      : `this Route passes ${valueName(cell.layer)}'s output on as it is (a branch point: the next line reads it):\nchannel ${cell.channel} of ${valueName(cell.layer)}, row ${s.y}, column ${s.x}: ${fmt(cell.value, 6)}` }));
  } else if (cell.kind === 'act') {
    box.append(el('div', { class: 'sum', text: `${l.activation}(${fmt(cell.input, 6)}) = ${fmt(cell.value, 6)}` }));
  } else {
    box.append(el('p', { text: 'This layer has no per-cell explanation.' }));
    return null;
  }
  const diff = Math.abs(cell.value - api);
  const ok = diff <= 1e-4 * Math.max(1, Math.abs(api));
  box.append(el('p', {}, `The layer's value from the server: ${fmt(api, 6)}. Difference: ${diff.toExponential(2)} `,
    el('span', { class: ok ? 'ok' : 'bad', text: ok ? '✓ equal (float32 vs float64 rounding)' : '✗ not equal' })));
  drawReceptiveField();
  return { page: cell.value, api };
}

// The input pixels that can reach the selected cell: each conv or pool layer below it widens
// the window (y0 → y0·S − P, y1 → y1·S − P + k − 1), clipped to the input.
// In a graph each value a layer reads gets the window; a value read along several paths (a
// Shortcut's two) gets the box around all of theirs. Layers read only earlier layers, so one
// walk down the indices reaches every path.
function receptiveField(s) {
  if (!s || !state.model.layers[s.layer] || state.model.layers[s.layer].output.length !== 3) return null;
  const join = (a, b) => (a ? { y0: Math.min(a.y0, b.y0), y1: Math.max(a.y1, b.y1), x0: Math.min(a.x0, b.x0), x1: Math.max(a.x1, b.x1) } : b);
  const boxes = new Map([[s.layer, { y0: s.y, y1: s.y, x0: s.x, x1: s.x }]]);
  let input = null;
  for (let i = s.layer; i >= 0; i--) {
    const box = boxes.get(i);
    if (!box) continue;
    let { y0, y1, x0, x1 } = box;
    const l = state.model.layers[i];
    if (l.conv) {
      const { kh, kw, stride, pad_top: pt, pad_left: pl } = l.conv;
      y0 = y0 * stride - pt; y1 = y1 * stride - pt + kh - 1;
      x0 = x0 * stride - pl; x1 = x1 * stride - pl + kw - 1;
    } else if (l.pool) {
      const { ph, pw, stride } = l.pool;
      y0 *= stride; y1 = y1 * stride + ph - 1; x0 *= stride; x1 = x1 * stride + pw - 1;
    }
    for (const j of l.reads) {
      if (j === null) input = join(input, { y0, y1, x0, x1 });
      else boxes.set(j, join(boxes.get(j), { y0, y1, x0, x1 }));
    }
  }
  if (!input) return null;
  const [, H, W] = state.model.input;
  return { y0: Math.max(0, input.y0), y1: Math.min(H - 1, input.y1), x0: Math.max(0, input.x0), x1: Math.min(W - 1, input.x1) };
}

function drawReceptiveField() {
  const rf = receptiveField(state.selected);
  if (!rf || !state.last) return;
  const view = $('input-view');
  const [, H, W] = state.model.input;
  const g = view.getContext('2d');
  const sx = view.width / W, sy = view.height / H;
  g.strokeStyle = '#ecc94b';
  g.lineWidth = 2;
  g.strokeRect(rf.x0 * sx + 1, rf.y0 * sy + 1, (rf.x1 - rf.x0 + 1) * sx - 2, (rf.y1 - rf.y0 + 1) * sy - 2);
}

// ------------------------------------------------------------------ training curves

// Ticks from lo to at least hi at a "nice" step (1, 2 or 5 times a power of ten), about
// `count` of them: [0, 0.5, 1, 1.5, 2] rather than [0, 0.46, 0.92, 1.37, 1.83]. Returns the
// ticks and the decimals their labels need.
function niceTicks(lo, hi, count = 6) {
  const raw = (hi - lo) / Math.max(1, count - 1) || 1;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw * (1 - 1e-9));
  const first = Math.floor(lo / step + 1e-9) * step;
  const ticks = [];
  for (let v = first; ticks.length < 50; v += step) {
    ticks.push(Number(v.toFixed(12)));
    if (v >= hi - step * 1e-9) break;
  }
  return { ticks, decimals: Math.max(0, -Math.floor(Math.log10(step) + 1e-9)) };
}

function chart(canvas, title, series, yMin, yMax) {
  const g = canvas.getContext('2d');
  const W = canvas.width, H = canvas.height, L = 52, R = 12, T = 24, B = 34;
  g.clearRect(0, 0, W, H);
  g.fillStyle = '#fff'; g.fillRect(0, 0, W, H);
  g.fillStyle = '#1d2330'; g.font = '13px system-ui, sans-serif';
  g.fillText(title, L, 16);
  const all = series.flatMap((s) => s.points.map((p) => p[1])).filter(Number.isFinite);
  const n = Math.max(1, ...series.flatMap((s) => s.points.map((p) => p[0])));
  if (yMin === undefined) yMin = Math.min(0, ...all);
  if (yMax === undefined) yMax = Math.max(1e-9, ...all);
  // The axis runs from tick to tick, so that its ends are labelled numbers too.
  const { ticks, decimals } = niceTicks(yMin, yMax);
  yMin = ticks[0]; yMax = ticks[ticks.length - 1];
  (state.ticks ??= {})[title] = ticks;
  const px = (e) => L + (n === 1 ? 0.5 : (e - 1) / (n - 1)) * (W - L - R);
  const py = (v) => T + (1 - (v - yMin) / (yMax - yMin || 1)) * (H - T - B);
  g.strokeStyle = '#ccd'; g.fillStyle = '#667'; g.font = '11px system-ui, sans-serif';
  for (const v of ticks) {
    g.beginPath(); g.moveTo(L, py(v)); g.lineTo(W - R, py(v)); g.stroke();
    g.fillText(v.toFixed(decimals), 8, py(v) + 4);
  }
  const step = Math.max(1, Math.ceil(n / 10));
  for (let e = 1; e <= n; e += step) g.fillText(String(e), px(e) - 3, H - B + 14);
  g.fillText('epoch', W / 2 - 14, H - 6);
  series.forEach((s, j) => {
    g.strokeStyle = s.color; g.fillStyle = s.color; g.lineWidth = 2;
    g.beginPath();
    s.points.forEach(([e, v], i) => (i ? g.lineTo(px(e), py(v)) : g.moveTo(px(e), py(v))));
    g.stroke();
    for (const [e, v] of s.points) { g.beginPath(); g.arc(px(e), py(v), 3, 0, 7); g.fill(); }
    // The legend on the title's line, clear of the curves.
    g.fillRect(W - R - 250 + 125 * j, 8, 14, 3);
    g.fillText(s.name, W - R - 232 + 125 * j, 14);
  });
}

function drawCurves() {
  const ep = state.epochs;
  const pts = (key) => ep.filter((m) => m[key] !== null && m[key] !== undefined).map((m) => [m.epoch, m[key]]);
  // metrics.jsonl names the held-out figures test_loss/test_accuracy for a test set and
  // val_loss/val_accuracy for a validation split (and for any set, in older run folders).
  const test = ep.some((m) => 'test_loss' in m);
  const held = (what) => pts(`${test ? 'test' : 'val'}_${what}`);
  const heldName = test ? 'test' : 'held-out';
  $('training-status').textContent = ep.length
    ? `${ep.length} epoch${ep.length > 1 ? 's' : ''} so far (live: new epochs appear as cnn train writes them).`
    : (state.model && state.model.run ? 'No epoch finished yet; the curves appear as cnn train writes them.' : 'A model file has no training history; serve its run folder to see the curves.');
  chart($('loss-chart'), 'Loss', [
    { name: 'training loss', color: '#2b6cb0', points: pts('loss') },
    { name: `${heldName} loss`, color: '#dd6b20', points: held('loss') },
  ]);
  chart($('acc-chart'), 'Accuracy', [
    { name: 'training', color: '#2b6cb0', points: pts('accuracy') },
    { name: heldName, color: '#dd6b20', points: held('accuracy') },
  ], 0, 1);
}

async function watchTraining() {
  state.epochs = await getJSON('/api/metrics');
  drawCurves();
  // A headless browser's --dump-dom waits for the network to go quiet, which an open event
  // stream never does: the self-test reads the metrics once.
  if (SELFTEST) return;
  const events = new EventSource(`/api/events?after=${state.epochs.length}`);
  events.addEventListener('epoch', (e) => {
    state.epochs.push(JSON.parse(e.data));
    drawCurves();
    // The checkpoint of that epoch may be a new model: predict again (which reloads it).
    if (state.lastBlob) send(state.lastBlob, state.lastBlob instanceof File);
    if (state.model.has_data) loadConfusion();
  });
  events.addEventListener('reset', () => { state.epochs = []; drawCurves(); });
}

// ------------------------------------------------------------------ confusion matrix

async function loadConfusion() {
  const status = $('confusion-status');
  status.textContent = 'evaluating…';
  try {
    const cm = await getJSON('/api/confusion');
    status.textContent = `${cm.data}: ${cm.images} images, accuracy ${(100 * cm.accuracy).toFixed(2)}%. Rows: true class; columns: predicted. Click a cell to see its images.`;
    const t = el('table');
    const head = el('tr', {}, el('th'));
    cm.classes.forEach((c) => head.append(el('th', { text: c, title: c })));
    t.append(head);
    cm.counts.forEach((row, ti) => {
      const tr = el('tr', {}, el('th', { text: cm.classes[ti], title: cm.classes[ti] }));
      const total = row.reduce((a, b) => a + b, 0) || 1;
      row.forEach((n, pi) => {
        const share = n / total;
        const b = el('button', { class: 'cell', type: 'button', text: String(n), title: `${n} ${cm.classes[ti]} predicted as ${cm.classes[pi]}` });
        b.style.background = ti === pi ? `rgba(47,133,90,${0.15 + 0.85 * share})` : `rgba(197,48,48,${Math.min(1, 4 * share)})`;
        b.style.color = share > 0.5 ? '#fff' : '#1d2330';
        b.addEventListener('click', () => showCell(ti, pi, cm.classes));
        tr.append(el('td', {}, b));
      });
      t.append(tr);
    });
    $('confusion').replaceChildren(t);
  } catch (e) {
    status.textContent = e.message;
  }
}

async function showCell(t, p, classes) {
  const box = $('cell-images');
  const cell = await getJSON(`/api/misclassified?truth=${t}&predicted=${p}`);
  const [c, h, w] = cell.shape;
  box.replaceChildren(el('p', { text: `${cell.total} ${classes[t]} predicted as ${classes[p]}${cell.total > cell.images.length ? ` (first ${cell.images.length})` : ''}:`, style: 'flex-basis:100%' }));
  for (const im of cell.images) {
    const cv = el('canvas', { width: w, height: h, title: `image ${im.index}` });
    const img = new ImageData(w, h);
    for (let i = 0; i < h * w; i++) {
      for (let ch = 0; ch < 3; ch++) img.data[4 * i + ch] = im.pixels[(c >= 3 ? ch : 0) * h * w + i];
      img.data[4 * i + 3] = 255;
    }
    cv.getContext('2d').putImageData(img, 0, 0);
    box.append(cv);
  }
}

// ------------------------------------------------------------------ start, and the self-test

// `/?selftest`: draws the sample stroke, explains a cell of the first convolution and of the
// first pooling layer, and writes what it found as JSON into #selftest-result (read by the
// headless-browser test).
async function selftest() {
  const report = { ok: false };
  try {
    sampleStroke();
    for (let t = 0; t < 200 && (!state.last || state.busy || state.again); t++) await new Promise((r) => setTimeout(r, 50));
    report.predicted = $('predicted').textContent;
    report.class = state.last.class;
    report.grids = document.querySelectorAll('#layers canvas.map').length;
    report.layers = document.querySelectorAll('.layer').length;
    report.explained = [];
    // In each layer, the largest value of channel 1 (or 0): a cell where the sum is not zero.
    const pick = (l) => {
      const [C, H, W] = l.output;
      const k = Math.min(1, C - 1);
      const plane = state.last.layers[l.index].values.slice(k * H * W, (k + 1) * H * W);
      let best = 0;
      plane.forEach((v, j) => { if (v > plane[best]) best = j; });
      return { layer: l.index, k, y: Math.floor(best / W), x: best % W };
    };
    for (const l of state.model.layers.filter((l) => l.conv || l.pool).slice(0, 3)) {
      const s = pick(l);
      await select(s);
      const r = await explain(s);
      report.explained.push({ ...s, page: r.page, api: r.api });
    }
    // A graph: the edges drawn beside the layers, and a cell of the first Shortcut and of the
    // first Route explained.
    report.edges = [...document.querySelectorAll('#layers svg.graph-edges path.edge')].map((p) => ({
      from: Number(p.dataset.from), to: Number(p.dataset.to), kind: p.dataset.kind, arc: p.classList.contains('arc'),
    }));
    report.joins = [];
    for (const kind of ['Shortcut', 'Route']) {
      const l = state.model.layers.find((l) => l.kind === kind && l.output.length === 3);
      if (!l) continue;
      const s = pick(l);
      await select(s);
      const r = await explain(s);
      report.joins.push({ ...s, kind, page: r.page, api: r.api, text: $('explain').textContent });
    }
    // End on the first convolution's cell: its arithmetic is the one worth looking at.
    if (report.explained.length) await select(report.explained[0]);
    // The output layer's bars as drawn: each value's bar against the zero line.
    const last = document.querySelectorAll('.bars.logits .bar.signed');
    report.logit_bars = [...last].map((bar, j) => {
      const track = bar.getBoundingClientRect(), v = bar.querySelector('.value').getBoundingClientRect();
      const zero = bar.querySelector('.zero').getBoundingClientRect();
      return { value: state.last.layers[state.last.layers.length - 1].values[j], left: v.left - track.left, right: v.right - track.left, zero: zero.left - track.left };
    });
    report.ticks = state.ticks;
    const bytes = new Uint8Array(await state.lastBlob.arrayBuffer());
    report.sent_png = btoa(String.fromCharCode(...bytes));
    report.ok = true;
  } catch (e) {
    report.error = String(e && e.stack || e);
  }
  $('selftest-result').textContent = JSON.stringify(report);
  document.title = 'selftest done';
}

async function start() {
  clearPad();
  // The arcs beside the layers follow the layers' places, which move when the page reflows
  // (a narrower window wraps the maps onto more rows): redrawn before the next paint. Their
  // own drawing leaves the column's size as it is, so this does not repeat.
  new ResizeObserver(() => drawGraph()).observe($('layers'));
  try {
    await loadModel();
  } catch (e) {
    $('model-file').textContent = `cannot load the model: ${e.message}`;
    return;
  }
  watchTraining().catch((e) => { $('training-status').textContent = e.message; });
  if (SELFTEST) selftest();
}

start();
