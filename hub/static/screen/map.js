// The city map on canvas: Web Mercator, area outlines from /api/v1/areas/geojson (offline), optional
// XYZ tiles, devices and cameras as markers coloured by state, clustered on a screen grid when dense.
//
// Why canvas and not DOM markers: 10,000 devices. One frame is one pass over typed arrays (project,
// bin into grid cells, keep the worst state per cell) and one fill per colour (a Path2D per state),
// so a frame costs a few milliseconds; frames are asked for with requestAnimationFrame and coalesced,
// so a burst of updates is one redraw. Alerting devices are never hidden inside a cluster.
// Cameras (6,000 of them) are squares the same way: one pass, one fill per standing.

import { COLOURS, CAMERA_COLOURS, STATES, LEVEL_RANK, mercX, mercY, districtOf } from "./model.js";
import { pick } from "./i18n.js";

const MIN_ZOOM = 3, MAX_ZOOM = 19;
const CLUSTER_BELOW_ZOOM = 16.5;   // from here on every device is drawn on its own
const CELL_PX = 40;                // cluster grid cell, CSS px at ui scale 1
const CAMERA_CELL_PX = 24;         // below street zoom, one quiet camera per cell of this size
const THIN_CAMERAS_ABOVE = 200;    // ... when there are more cameras than this
// Drawn last so they sit on top: a camera that needs attention is never under a quiet one.
const CAMERA_ORDER = ["disabled", "unknown", "ok", "lost", "fault"];
const QUIET = new Set(["ok", "unknown", "disabled"]);
const TRAFFIC = new Set(["traffic_flow", "gateway"]);
// Blue and yellow barely tint a district (they are routine); orange and red colour it.
const DISTRICT_TINT = { 0: "rgba(120,150,180,0.05)", 1: "rgba(47,129,247,0.07)", 2: "rgba(227,179,65,0.08)", 3: "rgba(240,136,62,0.16)", 4: "rgba(248,81,73,0.22)" };

export class CityMap {
  constructor(container, model, { onSelect, onDrawn, onHover }) {
    this.el = container;
    this.model = model;
    this.onSelect = onSelect;
    this.onDrawn = onDrawn;
    this.onHover = onHover;
    this.base = container.querySelector("canvas.base");
    this.overlay = container.querySelector("canvas.overlay");
    this.ctx = this.base.getContext("2d");
    this.octx = this.overlay.getContext("2d");
    this.cx = mercX(120.175); this.cy = mercY(30.27); this.z = 12;
    this.w = 1; this.h = 1; this.dpr = 1; this.ui = 1;
    this.features = [];
    this.tileUrl = null; this.tileAttribution = ""; this.tiles = new Map();
    this.selected = null;                 // device id
    this.selectedCamera = null;           // camera id
    this.alertLink = null;                // {mx, my, ids}: an alert's place and its nearest cameras
    this.camX = new Float32Array(0); this.camY = new Float32Array(0);
    this.camShown = new Uint8Array(0);    // per camera (model.cameras order): drawn in the last frame
    this.camerasDrawn = 0;
    this.highlightArea = null;
    this.pending = false;
    this.frames = 0;
    this.lastMs = 0;
    this.ranks = new Uint8Array(0);
    this.drawnAs = new Int32Array(0);     // per device: -2 hidden, -1 drawn alone, k: in cluster k
    this.sx = new Float32Array(0); this.sy = new Float32Array(0);
    this.items = [];                      // what the last frame drew, for hit tests
    this.clusters = [];
    this.animating = false;
    this.fitted = false;
    this.touched = false;                 // the user has panned or zoomed
    this.layers = [];                     // more to draw (responsemap.js): under(), over() the markers, overlay()
    new ResizeObserver(() => this.resize()).observe(container);
    this.bindPointer();
    this.resize();
  }

  // -- view -----------------------------------------------------------------------------------
  resize() {
    const r = this.el.getBoundingClientRect();
    this.w = Math.max(1, r.width); this.h = Math.max(1, r.height);
    this.dpr = window.devicePixelRatio || 1;
    this.ui = parseFloat(getComputedStyle(document.documentElement).fontSize) / 14 || 1;
    for (const c of [this.base, this.overlay]) {
      c.width = Math.round(this.w * this.dpr); c.height = Math.round(this.h * this.dpr);
      c.style.width = `${this.w}px`; c.style.height = `${this.h}px`;
    }
    // Until someone pans or zooms, the whole city stays in view whatever the window does.
    if (!this.fitted || !this.touched) this.fit(); else this.invalidate();
  }

  get scale() { return 2 ** this.z; }
  toScreen(mx, my) { const s = this.scale; return [(mx - this.cx) * s + this.w / 2, (my - this.cy) * s + this.h / 2]; }
  toWorld(x, y) { const s = this.scale; return [(x - this.w / 2) / s + this.cx, (y - this.h / 2) / s + this.cy]; }

  zoomAt(x, y, dz) {
    this.touched = true;
    const [wx, wy] = this.toWorld(x, y);
    this.z = Math.max(MIN_ZOOM, Math.min(MAX_ZOOM, this.z + dz));
    const s = this.scale;
    this.cx = wx - (x - this.w / 2) / s; this.cy = wy - (y - this.h / 2) / s;
    this.invalidate();
  }

  /** Show a box of world coordinates [x0, y0, x1, y1] with a margin. */
  showBox(b, maxZoom = 17) {
    if (!b || !isFinite(b[0])) return;
    const dx = Math.max(b[2] - b[0], 1e-6), dy = Math.max(b[3] - b[1], 1e-6);
    this.z = Math.max(MIN_ZOOM, Math.min(maxZoom, Math.log2(Math.min(this.w / dx, this.h / dy) * 0.9)));
    this.cx = (b[0] + b[2]) / 2; this.cy = (b[1] + b[3]) / 2;
    this.invalidate();
  }

  fit() {
    let box = null;
    for (const f of this.features) if (f.kind === "district") box = grow(box, f.box);
    if (!box) {
      const m = this.model;
      for (let i = 0; i < m.n; i++) if (isFinite(m.mx[i])) box = grow(box, [m.mx[i], m.my[i], m.mx[i], m.my[i]]);
    }
    if (box) { this.fitted = true; this.showBox(box); } else this.invalidate();
  }

  focusDevice(id, zoom = 17) {
    this.touched = true;
    const i = this.model.index.get(id);
    if (i === undefined || !isFinite(this.model.mx[i])) return;
    this.cx = this.model.mx[i]; this.cy = this.model.my[i];
    this.z = Math.max(this.z, zoom);
    this.invalidate();
  }

  focusArea(area) {
    this.touched = true;
    const f = this.features.find((x) => x.area === area);
    this.highlightArea = area;
    if (f) this.showBox(f.box, 16); else this.invalidate();
  }

  select(id) { this.selected = id; if (id != null) this.selectedCamera = null; this.invalidate(); }

  selectCamera(id) { this.selectedCamera = id; if (id != null) this.selected = null; this.invalidate(); }

  focusCamera(id, zoom = 17) {
    const c = this.model.cameraIndex.get(id);
    if (!c || !isFinite(c.mx)) return;
    this.touched = true;
    this.cx = c.mx; this.cy = c.my;
    this.z = Math.max(this.z, zoom);
    this.invalidate();
  }

  /** Link an alert's place to its nearest cameras on the map (null: none). */
  linkAlert(lat, lon, ids) {
    this.alertLink = lat == null ? null : { mx: mercX(lon), my: mercY(lat), ids: new Set(ids) };
    this.invalidate();
  }

  // -- data -----------------------------------------------------------------------------------
  setAreas(geojson) {
    this.features = [];
    for (const f of geojson.features || []) {
      const p = f.properties || {};
      const g = f.geometry || {};
      const lines = g.type === "Polygon" ? g.coordinates : g.type === "LineString" ? [g.coordinates] : g.type === "MultiPolygon" ? g.coordinates.flat() : [];
      let box = null;
      const rings = lines.map((ring) => {
        const a = new Float64Array(ring.length * 2);
        ring.forEach(([lon, lat], k) => { a[2 * k] = mercX(lon); a[2 * k + 1] = mercY(lat); box = grow(box, [a[2 * k], a[2 * k + 1], a[2 * k], a[2 * k + 1]]); });
        return a;
      });
      const c = p.center ? [mercX(p.center[0]), mercY(p.center[1])] : box ? [(box[0] + box[2]) / 2, (box[1] + box[3]) / 2] : null;
      this.features.push({ kind: p.kind || "area", area: p.area || f.id, props: p, rings, box, center: c, closed: g.type !== "LineString" });
    }
    this.fitted = false;
    this.fit();
  }

  setTiles(url, attribution) { this.tileUrl = url || null; this.tileAttribution = attribution || ""; this.invalidate(); }

  // -- drawing --------------------------------------------------------------------------------
  invalidate() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => { this.pending = false; this.draw(); });
  }

  draw() {
    const t0 = performance.now();
    const ctx = this.ctx;
    ctx.setTransform(this.dpr, 0, 0, this.dpr, 0, 0);
    ctx.fillStyle = "#0b121a";
    ctx.fillRect(0, 0, this.w, this.h);
    if (this.tileUrl) this.drawTiles(ctx);
    this.drawAreas(ctx);
    for (const l of this.layers) l.under?.(ctx, this);
    this.drawMarkers(ctx);
    for (const l of this.layers) l.over?.(ctx, this);   // after drawMarkers: it resets this.items
    this.drawLabels(ctx);
    this.frames++;
    this.lastMs = performance.now() - t0;
    this.drawOverlay();
    this.onDrawn?.(this);
  }

  drawTiles(ctx) {
    const tz = Math.max(0, Math.min(19, Math.round(this.z)));
    const n = 2 ** tz, size = 256 / n, px = size * this.scale;
    const [x0, y0] = this.toWorld(0, 0), [x1, y1] = this.toWorld(this.w, this.h);
    for (let ty = Math.max(0, Math.floor(y0 / size)); ty <= Math.min(n - 1, Math.floor(y1 / size)); ty++) {
      for (let tx = Math.floor(x0 / size); tx <= Math.floor(x1 / size); tx++) {
        const img = this.tile(tz, ((tx % n) + n) % n, ty);
        if (img && img.complete && img.naturalWidth) {
          const [sx, sy] = this.toScreen(tx * size, ty * size);
          ctx.drawImage(img, sx, sy, px + 0.5, px + 0.5);
        }
      }
    }
    if (this.tileAttribution) {
      ctx.font = `${11 * this.ui}px system-ui, sans-serif`;
      ctx.fillStyle = "rgba(216,226,236,0.7)";
      ctx.textAlign = "right"; ctx.textBaseline = "bottom";
      ctx.fillText(this.tileAttribution, this.w - 6, this.h - 4);
    }
  }

  tile(z, x, y) {
    const key = `${z}/${x}/${y}`;
    let img = this.tiles.get(key);
    if (!img) {
      if (this.tiles.size > 400) this.tiles.delete(this.tiles.keys().next().value);
      img = new Image();
      const src = this.tileUrl.replace("{z}", z).replace("{x}", x).replace("{y}", y);
      // Ask for CORS first, so the canvas stays readable (screenshots, pixel checks); a tile
      // server that sends no CORS headers still gets its tiles drawn, by a plain second try.
      img.crossOrigin = "anonymous";
      img.onload = () => this.invalidate();
      img.onerror = () => { if (img.crossOrigin) { img.removeAttribute("crossorigin"); img.src = src; } };
      img.src = src;
      this.tiles.set(key, img);
    }
    return img;
  }

  /** Worst firing alert level per district path, for tinting outlines. */
  districtLevels() {
    const out = new Map();
    const m = this.model;
    for (const a of m.alerts.values()) {
      if (a.condition !== "firing") continue;
      let area = a.area;
      if (!area && a.device) { const i = m.index.get(a.device); if (i !== undefined) area = m.areas[i]; }
      if (!area) continue;
      const d = districtOf(area);
      out.set(d, Math.max(out.get(d) || 0, LEVEL_RANK[a.level] || 0));
    }
    return out;
  }

  trace(ctx, f) {
    const s = this.scale, ox = this.w / 2 - this.cx * s, oy = this.h / 2 - this.cy * s;
    ctx.beginPath();
    for (const r of f.rings) {
      ctx.moveTo(r[0] * s + ox, r[1] * s + oy);
      for (let k = 2; k < r.length; k += 2) ctx.lineTo(r[k] * s + ox, r[k + 1] * s + oy);
      if (f.closed) ctx.closePath();
    }
  }

  drawAreas(ctx) {
    const levels = this.districtLevels();
    ctx.lineJoin = "round";
    for (const f of this.features) {
      if (f.kind !== "district") continue;
      this.trace(ctx, f);
      ctx.fillStyle = DISTRICT_TINT[levels.get(f.area) || 0];
      ctx.fill();
      ctx.strokeStyle = f.area === this.highlightArea ? "#d8e2ec" : "rgba(140,170,200,0.55)";
      ctx.lineWidth = (f.area === this.highlightArea ? 2.5 : 1.2) * this.ui;
      ctx.stroke();
    }
    if (this.z >= 13) {
      ctx.setLineDash([4 * this.ui, 4 * this.ui]);
      ctx.strokeStyle = "rgba(140,170,200,0.28)";
      ctx.lineWidth = this.ui;
      for (const f of this.features) if (f.kind === "street") { this.trace(ctx, f); ctx.stroke(); }
      ctx.setLineDash([]);
    }
    for (const f of this.features) {
      if (f.kind !== "river") continue;
      this.trace(ctx, f);
      ctx.strokeStyle = "rgba(56,139,253,0.55)";
      ctx.lineWidth = Math.max(2, 0.00003 * this.scale) * this.ui;
      ctx.stroke();
    }
  }

  drawLabels(ctx) {
    ctx.textAlign = "center"; ctx.textBaseline = "middle";
    const big = this.z < 15.5;
    for (const f of this.features) {
      if (!f.center) continue;
      if (f.kind === "district" ? !big : f.kind === "street" ? this.z < 15 : true) continue;
      const [x, y] = this.toScreen(f.center[0], f.center[1]);
      if (x < -50 || y < -20 || x > this.w + 50 || y > this.h + 20) continue;
      ctx.font = f.kind === "district" ? `600 ${15 * this.ui}px system-ui, "Noto Sans CJK SC", sans-serif` : `${11 * this.ui}px system-ui, "Noto Sans CJK SC", sans-serif`;
      ctx.lineWidth = 3 * this.ui; ctx.strokeStyle = "rgba(11,18,26,0.85)";
      const label = pick(f.props) || f.area;
      ctx.strokeText(label, x, y);
      ctx.fillStyle = f.kind === "district" ? "rgba(216,226,236,0.85)" : "rgba(170,190,210,0.8)";
      ctx.fillText(label, x, y);
    }
  }

  drawMarkers(ctx) {
    const m = this.model, n = m.n;
    if (this.ranks.length !== n) {
      this.ranks = new Uint8Array(n); this.drawnAs = new Int32Array(n);
      this.sx = new Float32Array(n); this.sy = new Float32Array(n);
    }
    const ranks = m.stateRanks(this.ranks);
    const s = this.scale, ox = this.w / 2 - this.cx * s, oy = this.h / 2 - this.cy * s;
    const ui = this.ui, margin = 20 * ui;
    const clustering = this.z < CLUSTER_BELOW_ZOOM;
    const cell = CELL_PX * ui;
    const cols = Math.ceil((this.w + 2 * margin) / cell) + 1, rows = Math.ceil((this.h + 2 * margin) / cell) + 1;
    const cellCount = new Int32Array(cols * rows), cellFirst = new Int32Array(cols * rows);
    const cellOff = new Int32Array(cols * rows), cellUnk = new Int32Array(cols * rows), cellX = new Float64Array(cols * rows), cellY = new Float64Array(cols * rows);
    const touched = [];
    const drawnAs = this.drawnAs, sxa = this.sx, sya = this.sy;
    const alone = [];
    for (let i = 0; i < n; i++) {
      const x = m.mx[i] * s + ox, y = m.my[i] * s + oy;
      sxa[i] = x; sya[i] = y;
      if (!(x > -margin && y > -margin && x < this.w + margin && y < this.h + margin)) { drawnAs[i] = -2; continue; }
      const r = ranks[i];
      if (!clustering || r >= 3) { drawnAs[i] = -1; alone.push(i); continue; }
      const key = Math.floor((y + margin) / cell) * cols + Math.floor((x + margin) / cell);
      if (cellCount[key] === 0) { touched.push(key); cellFirst[key] = i; }
      cellCount[key]++; cellX[key] += x; cellY[key] += y;
      if (r === 2) cellOff[key]++; else if (r === 0) cellUnk[key]++;
      drawnAs[i] = key; // a cell key for now; turned into a cluster number or -1 below
    }
    // Cells holding one device draw it alone; others become clusters.
    const clusters = [];
    const clusterOfCell = new Int32Array(cols * rows).fill(-1);
    for (const key of touched) {
      if (cellCount[key] === 1) { const i = cellFirst[key]; drawnAs[i] = -1; alone.push(i); continue; }
      clusterOfCell[key] = clusters.length;
      const c = cellCount[key], off = cellOff[key], unk = cellUnk[key], on = c - off - unk;
      const main = on >= off && on >= unk ? 1 : off >= unk ? 2 : 0;
      clusters.push({ x: cellX[key] / c, y: cellY[key] / c, count: c, main, off: off / c, online: on, offline: off, unknown: unk });
    }
    if (clustering) for (let i = 0; i < n; i++) if (drawnAs[i] >= 0) drawnAs[i] = clusterOfCell[drawnAs[i]];
    // Alerting devices last, so they sit on top: sort the lone ones by rank.
    alone.sort((a, b) => ranks[a] - ranks[b]);
    const paths = STATES.map(() => new Path2D());
    const r0 = (this.z < 14 ? 3.2 : this.z < 16 ? 4.2 : 5.5) * ui;
    const items = [];
    for (const i of alone) {
      const x = sxa[i], y = sya[i], rank = ranks[i];
      const r = rank >= 3 ? r0 * 1.5 : r0;
      const p = paths[rank];
      if (TRAFFIC.has(m.types[m.type[i]])) { p.moveTo(x, y - r * 1.25); p.lineTo(x + r * 1.25, y); p.lineTo(x, y + r * 1.25); p.lineTo(x - r * 1.25, y); p.closePath(); }
      else { p.moveTo(x + r, y); p.arc(x, y, r, 0, 2 * Math.PI); }
      items.push({ kind: "device", i, x, y, r: Math.max(r, 6 * ui) });
    }
    // Clusters: a disc sized by count in the colour of most of its devices, a grey arc for the share
    // offline, the count on top. (Alerting devices are never in a cluster: they are drawn alone.)
    ctx.textAlign = "center"; ctx.textBaseline = "middle";
    ctx.font = `600 ${10.5 * ui}px system-ui, sans-serif`;
    clusters.forEach((c, k) => {
      const r = (7 + 2.6 * Math.log2(c.count)) * ui;
      ctx.beginPath(); ctx.arc(c.x, c.y, r, 0, 2 * Math.PI);
      ctx.fillStyle = COLOURS[STATES[c.main]] + "cc"; ctx.fill();
      ctx.lineWidth = 1.5 * ui; ctx.strokeStyle = "rgba(11,18,26,0.9)"; ctx.stroke();
      if (c.off > 0 && c.main !== 2) {
        ctx.beginPath(); ctx.arc(c.x, c.y, r + 1.5 * ui, -Math.PI / 2, -Math.PI / 2 + 2 * Math.PI * Math.max(c.off, 0.04));
        ctx.strokeStyle = COLOURS.offline; ctx.lineWidth = 2.5 * ui; ctx.stroke();
      }
      ctx.fillStyle = c.main === 0 ? "#d8e2ec" : "#0b121a";
      ctx.fillText(c.count >= 1000 ? `${(c.count / 1000).toFixed(1)}k` : String(c.count), c.x, c.y);
      items.push({ kind: "cluster", k, x: c.x, y: c.y, r });
    });
    ctx.lineWidth = ui;
    ctx.strokeStyle = "rgba(11,18,26,0.9)";
    STATES.forEach((st, k) => { ctx.fillStyle = COLOURS[st]; ctx.fill(paths[k]); if (k >= 3) ctx.stroke(paths[k]); });
    this.drawCameras(ctx, s, ox, oy);
    this.items = items;
    this.clusters = clusters;
    this.drawnCount = alone.length;
  }

  /**
   * Cameras as squares in their standing's colour, one Path2D per standing (6,000 cameras are one
   * pass and a handful of fills, not 12,000 canvas calls). Below street zoom and past
   * THIN_CAMERAS_ABOVE, quiet cameras (ok, not checked, not patrolled) thin out to one per grid
   * cell; faults, lost signals, the selected camera and the selected alert's cameras always show.
   * Where each camera was drawn stays in typed arrays, for hit tests and the overlay.
   */
  drawCameras(ctx, s, ox, oy) {
    const cams = this.model.cameras, n = cams.length, ui = this.ui;
    if (this.camX.length !== n) {
      this.camX = new Float32Array(n); this.camY = new Float32Array(n); this.camShown = new Uint8Array(n);
    }
    const camX = this.camX, camY = this.camY, shown = this.camShown;
    const half = this.cameraHalf(), pad = 2 * half;
    const thin = this.z < CLUSTER_BELOW_ZOOM && n > THIN_CAMERAS_ABOVE;
    const cell = CAMERA_CELL_PX * ui;
    const cols = Math.ceil(this.w / cell) + 2;
    const taken = thin ? new Uint8Array(cols * (Math.ceil(this.h / cell) + 2)) : null;
    const paths = {};
    for (const st of CAMERA_ORDER) paths[st] = new Path2D();
    const sel = this.selectedCamera, linked = this.alertLink?.ids;
    let drawn = 0;
    for (let k = 0; k < n; k++) {
      const c = cams[k];
      const x = c.mx * s + ox, y = c.my * s + oy;
      camX[k] = x; camY[k] = y; shown[k] = 0;
      if (!(x > -pad && y > -pad && x < this.w + pad && y < this.h + pad)) continue;   // NaN too
      const st = paths[c.status] ? c.status : c.status === "offline" ? "lost" : "unknown";
      if (taken && QUIET.has(st) && c.id !== sel && !linked?.has(c.id)) {
        const key = Math.floor((y + cell) / cell) * cols + Math.floor((x + cell) / cell);
        if (taken[key]) continue;
        taken[key] = 1;
      }
      paths[st].rect(x - half, y - half, 2 * half, 2 * half);
      shown[k] = 1;
      drawn++;
    }
    ctx.lineWidth = ui;
    ctx.strokeStyle = "rgba(216,226,236,0.75)";   // a light rim: a square on a dark map reads as a camera
    for (const st of CAMERA_ORDER) {
      ctx.fillStyle = CAMERA_COLOURS[st];
      ctx.fill(paths[st]);
      ctx.stroke(paths[st]);
    }
    this.camerasDrawn = drawn;
  }

  /** Half a camera square's side at this zoom (CSS px). */
  cameraHalf() { return (this.z < 14 ? 3 : this.z < 16 ? 4.5 : 6) * this.ui; }

  /** Where camera `id` was drawn in the last frame (CSS px in the map), and in which colour. For tests too. */
  cameraMarkerOf(id) {
    const c = this.model.cameraIndex.get(id);
    if (!c || c.k >= this.camShown.length) return null;
    const k = c.k;
    return {
      x: this.camX[k], y: this.camY[k], status: c.status, drawn: this.camShown[k] === 1,
      colour: CAMERA_COLOURS[c.status] || CAMERA_COLOURS.unknown,
    };
  }

  /** The selection ring and pulsing rings around red/orange devices, animated only while needed. */
  drawOverlay() {
    if (this.paintOverlay() && !this.animating) {
      this.animating = true;
      const tick = () => {
        if (!this.paintOverlay()) { this.animating = false; return; }
        setTimeout(() => requestAnimationFrame(tick), 50);   // 20 fps is plenty for a pulse
      };
      requestAnimationFrame(tick);
    }
  }

  /** Paint the overlay once; true while something on it pulses. */
  paintOverlay() {
    const ctx = this.octx, m = this.model;
    ctx.setTransform(this.dpr, 0, 0, this.dpr, 0, 0);
    ctx.clearRect(0, 0, this.w, this.h);
    const phase = (performance.now() % 1400) / 1400;
    let pulsing = false;
    for (const it of this.items) {
      if (it.kind !== "device") continue;
      const lv = m.level[it.i];
      if (lv < 3) continue;
      pulsing = true;
      ctx.beginPath(); ctx.arc(it.x, it.y, it.r + phase * 16 * this.ui, 0, 2 * Math.PI);
      ctx.strokeStyle = lv === 4 ? `rgba(248,81,73,${1 - phase})` : `rgba(240,136,62,${1 - phase})`;
      ctx.lineWidth = 2 * this.ui; ctx.stroke();
    }
    const sel = this.selected != null ? m.index.get(this.selected) : undefined;
    if (sel !== undefined && this.drawnAs[sel] === -1) {
      ctx.beginPath(); ctx.arc(this.sx[sel], this.sy[sel], 10 * this.ui, 0, 2 * Math.PI);
      ctx.strokeStyle = "#ffffff"; ctx.lineWidth = 2 * this.ui; ctx.stroke();
    }
    for (const l of this.layers) if (l.overlay?.(ctx, this)) pulsing = true;
    this.paintCameraLinks(ctx);
    return pulsing;
  }

  /** The selected alert's place linked to its nearest cameras, and a square ring on the selected camera. */
  paintCameraLinks(ctx) {
    const ui = this.ui, link = this.alertLink, cams = this.model.cameras;
    if (link) {
      const [ax, ay] = this.toScreen(link.mx, link.my);
      ctx.setLineDash([5 * ui, 4 * ui]);
      ctx.strokeStyle = "rgba(121,192,255,0.9)"; ctx.lineWidth = 1.5 * ui;
      ctx.beginPath();
      for (const id of link.ids) {
        const c = this.model.cameraIndex.get(id);
        if (!c || !this.camShown[c.k]) continue;
        ctx.moveTo(ax, ay); ctx.lineTo(this.camX[c.k], this.camY[c.k]);
      }
      ctx.stroke();
      ctx.setLineDash([]);
      ctx.beginPath(); ctx.arc(ax, ay, 5 * ui, 0, 2 * Math.PI);
      ctx.moveTo(ax - 9 * ui, ay); ctx.lineTo(ax + 9 * ui, ay); ctx.moveTo(ax, ay - 9 * ui); ctx.lineTo(ax, ay + 9 * ui);
      ctx.stroke();
    }
    const c = this.selectedCamera != null ? this.model.cameraIndex.get(this.selectedCamera) : null;
    if (c && c.k < cams.length && this.camShown[c.k]) {
      const r = 11 * ui;
      ctx.strokeStyle = "#ffffff"; ctx.lineWidth = 2 * ui;
      ctx.strokeRect(this.camX[c.k] - r, this.camY[c.k] - r, 2 * r, 2 * r);
    }
  }

  // -- hit tests and pointer ------------------------------------------------------------------
  hit(x, y) {
    let best = null, bestD = Infinity;
    for (const it of this.items) {
      const d = Math.hypot(it.x - x, it.y - y);
      if (d <= it.r + 2 && d < bestD) { best = it; bestD = d; }
    }
    // Cameras from the typed arrays: a square's half-diagonal, at least a finger's width.
    const reach = Math.max(this.cameraHalf() * 1.4, 6 * this.ui) + 2;
    const camX = this.camX, camY = this.camY, shown = this.camShown;
    for (let k = 0; k < shown.length; k++) {
      if (!shown[k]) continue;
      const dx = camX[k] - x, dy = camY[k] - y;
      if (Math.abs(dx) > reach || Math.abs(dy) > reach) continue;
      const d = Math.hypot(dx, dy);
      if (d <= reach && d < bestD) { best = { kind: "camera", id: this.model.cameras[k].id, x: camX[k], y: camY[k] }; bestD = d; }
    }
    return best;
  }

  /** Where device `id` was drawn in the last frame (CSS px in the map), and how. For tests too. */
  markerOf(id) {
    const i = this.model.index.get(id);
    if (i === undefined || i >= this.drawnAs.length) return null;
    const how = this.drawnAs[i];
    return {
      x: this.sx[i], y: this.sy[i], state: this.model.stateOf(i),
      colour: COLOURS[this.model.stateOf(i)],
      drawn: how === -1, cluster: how >= 0 ? how : null, visible: how !== -2,
    };
  }

  bindPointer() {
    const el = this.overlay;
    let down = null;
    el.addEventListener("pointerdown", (e) => { down = { x: e.offsetX, y: e.offsetY, cx: this.cx, cy: this.cy, moved: false }; el.setPointerCapture(e.pointerId); });
    el.addEventListener("pointermove", (e) => {
      if (down) {
        const dx = e.offsetX - down.x, dy = e.offsetY - down.y;
        if (Math.abs(dx) + Math.abs(dy) > 4) down.moved = true;
        if (down.moved) { this.touched = true; this.cx = down.cx - dx / this.scale; this.cy = down.cy - dy / this.scale; this.invalidate(); }
        return;
      }
      const it = this.hit(e.offsetX, e.offsetY);
      el.style.cursor = it ? "pointer" : "grab";
      this.onHover?.(it, e.offsetX, e.offsetY);
    });
    el.addEventListener("pointerup", (e) => {
      const d = down; down = null;
      if (!d || d.moved) return;
      const it = this.hit(e.offsetX, e.offsetY);
      if (!it) return;
      if (it.kind === "cluster") this.zoomAt(it.x, it.y, 2);
      else if (it.kind === "device") this.onSelect?.({ device: this.model.ids[it.i] });
      else if (it.kind === "camera") this.onSelect?.({ camera: it.id });
      else if (it.id != null) this.onSelect?.({ [it.kind]: it.id });   // a layer's marker
    });
    el.addEventListener("pointerleave", () => this.onHover?.(null));
    el.addEventListener("wheel", (e) => { e.preventDefault(); this.zoomAt(e.offsetX, e.offsetY, -e.deltaY * 0.0015); }, { passive: false });
    el.addEventListener("dblclick", (e) => this.zoomAt(e.offsetX, e.offsetY, 1));
  }
}

function grow(box, b) {
  if (!b) return box;
  if (!box) return [...b];
  return [Math.min(box[0], b[0]), Math.min(box[1], b[1]), Math.max(box[2], b[2]), Math.max(box[3], b[3])];
}
