// Browser-side attention explorer (a Streamlit st.components.v2 component).
// The server sends the image and one layer's post-RoPE q and k once (rope_viz/explorer.py packs them);
// here softmax(q_i K^T * scale) is computed for the patch under the mouse and the maps repainted,
// with no server round trip. A click pins the query and tells the server (trigger "pinned").
// What was drawn is exposed on window.ropeExplorer[key] so a browser test can compare it with
// capture.attention_rows.

const INFERNO = [[0, 0, 4], [31, 12, 72], [85, 15, 109], [136, 34, 106], [186, 54, 85],
  [227, 89, 51], [249, 140, 10], [249, 201, 50], [252, 255, 164]];

const LUT = (() => {  // 256 RGB entries, piecewise linear between the stops above
  const lut = new Uint8ClampedArray(256 * 3);
  for (let i = 0; i < 256; i++) {
    const t = (i / 255) * (INFERNO.length - 1);
    const a = Math.floor(t), b = Math.min(a + 1, INFERNO.length - 1), f = t - a;
    for (let c = 0; c < 3; c++) lut[3 * i + c] = INFERNO[a][c] * (1 - f) + INFERNO[b][c] * f;
  }
  return lut;
})();

function readHeader(bytes) {
  const magic = String.fromCharCode(bytes[0], bytes[1], bytes[2], bytes[3]);
  if (magic !== "RVX1") throw new Error("not an explorer payload");
  const size = new DataView(bytes.buffer, bytes.byteOffset, 8).getUint32(4, true);
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + size)));
  return { header, blobStart: 8 + size };
}

function halfToFloat(h) {  // IEEE 754 binary16 -> number
  const s = h & 0x8000 ? -1 : 1, e = (h >> 10) & 0x1f, m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

function floats(blob, offset, count, dtype) {
  if (dtype === "float32") return new Float32Array(blob.buffer, offset, count);
  const half = new Uint16Array(blob.buffer, offset, count), out = new Float32Array(count);
  for (let i = 0; i < count; i++) out[i] = halfToFloat(half[i]);
  return out;
}

// One query's softmax rows for every head, summed in float64. q, k: (H, N, D) flat; segments (N,) or null:
// in a windowed layer a query sees only the keys of its own window (the others get weight 0).
function attentionRows(model, token) {
  const { heads: H, tokens: N, dim: D, scale, q, k, segments } = model;
  const rows = new Float64Array(H * N);
  for (let h = 0; h < H; h++) {
    const qo = (h * N + token) * D, base = h * N;
    let max = -Infinity;
    for (let j = 0; j < N; j++) {
      if (segments && segments[j] !== segments[token]) { rows[base + j] = -Infinity; continue; }
      const ko = (h * N + j) * D;
      let dot = 0;
      for (let d = 0; d < D; d++) dot += q[qo + d] * k[ko + d];
      const logit = dot * scale;
      rows[base + j] = logit;
      if (logit > max) max = logit;
    }
    let sum = 0;
    for (let j = 0; j < N; j++) { const e = Math.exp(rows[base + j] - max); rows[base + j] = e; sum += e; }
    for (let j = 0; j < N; j++) rows[base + j] /= sum;
  }
  return rows;
}

class Explorer {
  constructor(root) {
    this.root = root;
    this.container = root.querySelector(".rvx");
    this.modelsEl = root.querySelector(".rvx-models");
    this.readout = root.querySelector(".rvx-readout");
    this.zmaxEl = root.querySelector(".rvx-zmax");
    this.payloadId = null;
    this.hover = null;  // patch under the mouse, or null (then the pinned query is shown)
    this.repaints = 0;
    this.latencies = [];
    const bar = root.querySelector(".rvx-colorbar"), bctx = bar.getContext("2d");
    for (let x = 0; x < bar.width; x++) {
      const i = Math.round((x / (bar.width - 1)) * 255);
      bctx.fillStyle = `rgb(${LUT[3 * i]},${LUT[3 * i + 1]},${LUT[3 * i + 2]})`;
      bctx.fillRect(x, 0, 1, bar.height);
    }
  }

  load(bytes, header, blobStart) {
    this.header = header;
    if (header.payload_id !== this.payloadId) {  // new numbers: decode once, reuse while only the view changes
      const blob = bytes.slice(blobStart);  // own, aligned buffer
      const [gh, gw] = header.grid, [rh, rw] = header.resolution;
      this.models = header.models.map((m) => ({
        ...m,
        q: floats(blob, m.q, m.heads * m.tokens * m.dim, header.dtype),
        k: floats(blob, m.k, m.heads * m.tokens * m.dim, header.dtype),
        segments: m.segments === undefined ? null : new Int32Array(blob.buffer, m.segments, m.tokens),
      }));
      const image = document.createElement("canvas");
      image.width = rw; image.height = rh;
      const rgb = new Uint8Array(blob.buffer, header.image, rh * rw * 3), rgba = new ImageData(rw, rh);
      for (let p = 0; p < rh * rw; p++) {
        rgba.data[4 * p] = rgb[3 * p]; rgba.data[4 * p + 1] = rgb[3 * p + 1];
        rgba.data[4 * p + 2] = rgb[3 * p + 2]; rgba.data[4 * p + 3] = 255;
      }
      image.getContext("2d").putImageData(rgba, 0, 0);
      this.image = image;
      this.overlay = document.createElement("canvas");
      this.overlay.width = gw; this.overlay.height = gh;
      this.payloadId = header.payload_id;
      this.hover = null;
    }
    this.build();
  }

  panelsOf(model) {  // which heads a view draws: [label, head index or "mean"]
    const v = this.header.view, ids = model.head_ids;  // head_ids: the model's own numbers of a subset of heads
    const name = (h) => `head ${ids ? ids[h] : h}`;
    if (v === "heads") return Array.from({ length: model.heads }, (_, h) => [name(h), h]);
    if (v === "mean") return [[ids ? `mean over heads ${ids.join(", ")}` : "mean over heads", "mean"]];
    const at = ids ? ids.indexOf(this.header.head) : -1;
    const head = ids ? (at >= 0 ? at : 0) : Math.min(this.header.head, model.heads - 1);
    return [[name(head), head]];
  }

  build() {  // (re)create the canvases for the current view
    const { header } = this;
    const layoutKey = JSON.stringify([header.view, header.head, header.payload_id, header.panel_px]);
    if (layoutKey === this.layoutKey) { this.paint(null); return; }
    this.layoutKey = layoutKey;
    this.modelsEl.textContent = "";
    this.canvases = [];
    for (const model of this.models) {
      const panels = this.panelsOf(model);
      const cols = Math.min(panels.length, 4);
      const size = panels.length > 1 ? Math.floor(header.panel_px / 2) : header.panel_px;
      const box = document.createElement("div");
      box.className = "rvx-model";
      const title = document.createElement("h4");
      title.textContent = model.label;
      const grid = document.createElement("div");
      grid.className = "rvx-grid";
      grid.style.gridTemplateColumns = `repeat(${cols}, ${size}px)`;
      for (const [label, head] of panels) {
        const cell = document.createElement("div");
        cell.className = "rvx-panel";
        const canvas = document.createElement("canvas");
        canvas.width = size; canvas.height = size;
        canvas.dataset.model = model.label; canvas.dataset.panel = label;
        const caption = document.createElement("span");
        caption.textContent = label;
        cell.append(canvas, caption);
        grid.append(cell);
        this.canvases.push({ canvas, model, head, label });
        canvas.addEventListener("mousemove", (e) => this.onMove(e, canvas));
        canvas.addEventListener("mouseleave", () => { this.hover = null; this.paint(null); });
        canvas.addEventListener("click", (e) => this.onClick(e, canvas));
      }
      box.append(title, grid);
      this.modelsEl.append(box);
    }
    this.paint(null);
  }

  patchAt(e, canvas) {
    const [gh, gw] = this.header.grid, rect = canvas.getBoundingClientRect();
    const x = Math.floor(((e.clientX - rect.left) / rect.width) * gw);
    const y = Math.floor(((e.clientY - rect.top) / rect.height) * gh);
    return [Math.min(Math.max(x, 0), gw - 1), Math.min(Math.max(y, 0), gh - 1)];
  }

  onMove(e, canvas) {
    const [x, y] = this.patchAt(e, canvas);
    if (this.hover && this.hover[0] === x && this.hover[1] === y) return;
    this.hover = [x, y];
    this.paint(e.timeStamp);
  }

  onClick(e, canvas) {
    const [x, y] = this.patchAt(e, canvas);
    this.header.pinned = [x, y];
    this.hover = null;
    this.paint(e.timeStamp);
    if (this.setTrigger) this.setTrigger("pinned", { x, y });
  }

  // Compute every model's rows for the current query and redraw all panels on one colour scale.
  paint(eventTime) {
    const { header } = this;
    const [gh, gw] = header.grid, P = gh * gw;
    const [qx, qy] = this.hover || header.pinned;
    const state = { query: { x: qx, y: qy }, view: header.view, layer: header.layer, rows: {}, panels: {}, tokens: {} };
    const values = [];
    let zmax = 0;
    for (const model of this.models) {
      const fromCls = header.view === "cls" && model.prefix > 0;  // the CLS row does not follow the mouse
      const token = fromCls ? 0 : model.prefix + qy * gw + qx;
      const rows = attentionRows(model, token);
      state.rows[model.label] = rows;
      state.tokens[model.label] = token;
      state.panels[model.label] = {};
      for (const [label, head] of this.panelsOf(model)) {
        const grid = new Float64Array(P);
        for (let p = 0; p < P; p++) {
          if (head === "mean") {
            let s = 0;
            for (let h = 0; h < model.heads; h++) s += rows[h * model.tokens + model.prefix + p];
            grid[p] = s / model.heads;
          } else grid[p] = rows[head * model.tokens + model.prefix + p];
          if (grid[p] > zmax) zmax = grid[p];
        }
        state.panels[model.label][label] = grid;
        values.push(grid);
      }
    }
    zmax = zmax || 1;
    this.canvases.forEach(({ canvas }, i) => this.draw(canvas, values[i], zmax, qx, qy));
    this.zmaxEl.textContent = zmax.toPrecision(3);
    const where = header.view === "cls" ? "CLS token" : `query patch (${qx}, ${qy})${this.hover ? "" : ", pinned"}`;
    this.readout.textContent = `${where} · layer ${header.layer} · ` +
      (this.hover ? "click to pin this query" : "move the mouse over a map");
    this.repaints += 1;
    state.zmax = zmax;
    state.repaints = this.repaints;
    this.container.dataset.query = `${qx},${qy}`;
    this.container.dataset.repaints = String(this.repaints);
    const registry = (window.ropeExplorer = window.ropeExplorer || {});
    registry[header.key] = Object.assign(state, { latencies: this.latencies });
    if (eventTime != null) {  // input event -> drawn frame: after the next animation frame has been produced
      requestAnimationFrame(() => setTimeout(() => {
        this.latencies.push(performance.now() - eventTime);
        state.painted = this.repaints;
      }, 0));
    }
  }

  draw(canvas, grid, zmax, qx, qy) {
    const [gh, gw] = this.header.grid;
    const octx = this.overlay.getContext("2d"), pixels = octx.createImageData(gw, gh);
    for (let p = 0; p < gh * gw; p++) {
      const i = Math.max(0, Math.min(255, Math.round((grid[p] / zmax) * 255)));
      pixels.data[4 * p] = LUT[3 * i]; pixels.data[4 * p + 1] = LUT[3 * i + 1];
      pixels.data[4 * p + 2] = LUT[3 * i + 2]; pixels.data[4 * p + 3] = 255;
    }
    octx.putImageData(pixels, 0, 0);
    const ctx = canvas.getContext("2d"), W = canvas.width, H = canvas.height;
    ctx.globalAlpha = 1;
    ctx.imageSmoothingEnabled = true;
    ctx.drawImage(this.image, 0, 0, W, H);
    ctx.globalAlpha = this.header.opacity;
    ctx.imageSmoothingEnabled = false;  // one flat square per patch, as the server's heatmap
    ctx.drawImage(this.overlay, 0, 0, W, H);
    ctx.globalAlpha = 1;
    if (this.header.view !== "cls") {  // the query patch: a cyan cross
      const cw = W / gw, ch = H / gh, cx = (qx + 0.5) * cw, cy = (qy + 0.5) * ch, r = Math.max(4, 0.4 * Math.min(cw, ch));
      ctx.strokeStyle = "cyan"; ctx.lineWidth = 2;
      ctx.beginPath();
      ctx.moveTo(cx - r, cy - r); ctx.lineTo(cx + r, cy + r);
      ctx.moveTo(cx + r, cy - r); ctx.lineTo(cx - r, cy + r);
      ctx.stroke();
    }
  }
}

export default function (component) {
  const { data, parentElement, setTriggerValue } = component;
  if (!data) return;
  const bytes = data instanceof Uint8Array ? data : new Uint8Array(data);
  const { header, blobStart } = readHeader(bytes);
  let explorer = parentElement.__ropeExplorer;
  if (!explorer || !explorer.root.contains(explorer.container)) {
    explorer = new Explorer(parentElement);
    parentElement.__ropeExplorer = explorer;
  }
  explorer.setTrigger = setTriggerValue;
  explorer.load(bytes, header, blobStart);
}
