// What the screen knows: devices in typed arrays (10,000 of them must stay cheap to update and
// draw), cameras, and active alerts. Feed frames and REST answers are applied here; panels read it.
// Changes only set dirty flags; the panels redraw at most once per animation frame.

export const LEVELS = ["info", "blue", "yellow", "orange", "red"];
export const LEVEL_RANK = Object.fromEntries(LEVELS.map((l, i) => [l, i]));

// Marker states, worst last: a cluster shows its worst member.
export const STATES = ["unknown", "online", "offline", "blue", "yellow", "orange", "red"];
export const STATE_RANK = Object.fromEntries(STATES.map((s, i) => [s, i]));
export const COLOURS = {
  unknown: "#4a5a6c", online: "#3fb950", offline: "#8b949e",
  blue: "#2f81f7", yellow: "#e3b341", orange: "#f0883e", red: "#f85149", info: "#8aa0b4",
};
// Camera standings (video/status.py CameraState): a usable picture, a picture with confirmed
// findings, the signal lost, not checked yet, not patrolled. "offline" is kept as lost's old name.
export const CAMERA_STATES = ["ok", "fault", "lost", "unknown", "disabled"];
export const CAMERA_COLOURS = {
  ok: "#3fb950", fault: "#c678dd", lost: "#8b949e", unknown: "#4a5a6c", disabled: "#1f2933", offline: "#8b949e",
};

const ONLINE_WINDOW_MS = 15 * 60 * 1000; // no status from the hub: seen this recently counts as online

/** Web Mercator at zoom 0: lon/lat to a 256-unit world square. */
export function mercX(lon) { return (lon + 180) / 360 * 256; }
export function mercY(lat) {
  const s = Math.sin(Math.max(-85.05, Math.min(85.05, lat)) * Math.PI / 180);
  return (0.5 - Math.log((1 + s) / (1 - s)) / (4 * Math.PI)) * 256;
}

/** The district of an area path: its first two segments ("demo/riverside/x/y" -> "demo/riverside"). */
export function districtOf(area) {
  if (!area) return "";
  const parts = area.split("/");
  return parts.length >= 2 ? `${parts[0]}/${parts[1]}` : area;
}

function ms(iso) { return iso == null ? null : typeof iso === "number" ? iso : Date.parse(iso); }

export class Model {
  constructor() {
    this.reset();
    this.listeners = new Set();
  }

  reset() {
    this.n = 0;
    this.ids = [];
    this.index = new Map();
    this.types = [];
    this.typeCode = new Map();
    this.vendors = [];
    this.areas = [];
    this.lat = new Float64Array(0); this.lon = new Float64Array(0);
    this.mx = new Float64Array(0); this.my = new Float64Array(0);
    this.type = new Uint16Array(0);
    this.online = new Int8Array(0);      // -1 unknown, 0 offline, 1 online (the hub's word)
    this.lastSeen = new Float64Array(0); // epoch ms, 0 never
    this.level = new Uint8Array(0);      // worst firing alert level on the device, 0 none
    this.values = [];                    // per device: {metric: [value, ts]}
    this.cameras = [];                   // {id, name, lat, lon, mx, my, area, status, findings, k: its index}
    this.cameraIndex = new Map();
    this.alerts = new Map();             // id -> alert body (active only)
    this.lastActor = new Map();          // alert id -> {actor, action, at}
    this.seq = null;
    this.version = 0;                    // bumped on every change, for tests and panels
  }

  on(fn) { this.listeners.add(fn); return () => this.listeners.delete(fn); }
  emit(what) { this.version++; for (const fn of this.listeners) fn(what); }

  // -- snapshot ---------------------------------------------------------------------------------
  /** Replace everything with a snapshot frame (feed protocol §2) or its REST equivalent. */
  loadSnapshot(snap) {
    const devices = snap.devices || [];
    const n = devices.length;
    this.n = n;
    this.ids = new Array(n);
    this.index = new Map();
    this.areas = new Array(n);
    this.vendors = new Array(n);
    this.lat = new Float64Array(n); this.lon = new Float64Array(n);
    this.mx = new Float64Array(n); this.my = new Float64Array(n);
    this.type = new Uint16Array(n);
    this.online = new Int8Array(n);
    this.lastSeen = new Float64Array(n);
    this.level = new Uint8Array(n);
    this.values = new Array(n);
    for (let i = 0; i < n; i++) {
      const d = devices[i];
      this.ids[i] = d.id;
      this.index.set(d.id, i);
      this.areas[i] = d.area || "";
      this.vendors[i] = d.vendor || "";
      const placed = d.lat != null && d.lon != null;
      this.lat[i] = placed ? d.lat : NaN;
      this.lon[i] = placed ? d.lon : NaN;
      this.mx[i] = placed ? mercX(d.lon) : NaN;
      this.my[i] = placed ? mercY(d.lat) : NaN;
      this.type[i] = this.typeId(d.type || "");
      this.online[i] = d.online === true ? 1 : d.online === false ? 0 : -1;
      this.lastSeen[i] = ms(d.last_seen) || 0;
      const vals = {};
      const ts = this.lastSeen[i];
      for (const [m, v] of Object.entries(d.values || {})) vals[m] = Array.isArray(v) ? v : [v, ts];
      this.values[i] = vals;
    }
    this.cameras = [];
    this.cameraIndex = new Map();
    for (const c of snap.cameras || []) this.putCamera(c);
    this.alerts = new Map();
    for (const a of snap.alerts || []) if (a.state !== "closed") this.alerts.set(a.id, a);
    this.recomputeLevels();
    this.seq = snap.seq ?? null;
    this.emit("snapshot");
  }

  typeId(name) {
    let k = this.typeCode.get(name);
    if (k === undefined) { k = this.types.length; this.types.push(name); this.typeCode.set(name, k); }
    return k;
  }

  putCamera(c) {
    const have = this.cameraIndex.get(c.id);
    const cam = have || { id: c.id };
    Object.assign(cam, c);
    const placed = cam.lat != null && cam.lon != null;
    cam.mx = placed ? mercX(cam.lon) : NaN;
    cam.my = placed ? mercY(cam.lat) : NaN;
    if (!have) { cam.k = this.cameras.length; this.cameraIndex.set(c.id, cam); this.cameras.push(cam); }
  }

  // -- deltas -----------------------------------------------------------------------------------
  /** Apply a delta frame (feed protocol §3). Returns the alert changes, for the red-alert cue. */
  applyDelta(delta) {
    let touched = false;
    for (const r of delta.readings || []) {
      const i = this.index.get(r[0]);
      if (i === undefined) continue;
      const ts = r[3];
      const vals = this.values[i];
      const old = vals[r[1]];
      if (!old || old[1] <= ts) vals[r[1]] = [r[2], ts];
      if (ts > this.lastSeen[i]) this.lastSeen[i] = ts;
      touched = true;
    }
    for (const s of delta.status || []) {
      const i = this.index.get(s.id);
      if (i === undefined) continue;
      this.online[i] = s.online ? 1 : 0;
      touched = true;
    }
    for (const c of delta.cameras || []) { this.putCamera(c); touched = true; }
    const changes = delta.alerts || [];
    for (const ch of changes) this.applyAlertChange(ch);
    if (changes.length) this.recomputeLevels();
    if (delta.seq != null) this.seq = delta.seq;
    if (touched || changes.length) this.emit(changes.length ? "alerts" : "values");
    return changes;
  }

  applyAlertChange(ch) {
    const a = ch.alert;
    if (!a) return;
    if (a.state === "closed") this.alerts.delete(a.id);
    else this.alerts.set(a.id, a);
    if (ch.actor) this.lastActor.set(a.id, { actor: ch.actor, action: ch.action, at: ms(ch.at) });
  }

  /** An alert as the REST API returned it after an action (the feed will confirm it too). */
  putAlert(a) {
    if (a.state === "closed") this.alerts.delete(a.id);
    else this.alerts.set(a.id, a);
    this.recomputeLevels();
    this.emit("alerts");
  }

  recomputeLevels() {
    this.level.fill(0);
    for (const a of this.alerts.values()) {
      if (a.condition !== "firing" || !a.device) continue;
      const i = this.index.get(a.device);
      if (i === undefined) continue;
      const rank = LEVEL_RANK[a.level] || 0;
      if (rank > this.level[i]) this.level[i] = rank;
    }
  }

  // -- reading ----------------------------------------------------------------------------------
  /** The marker state of device i: its worst firing alert level, else online/offline/unknown. */
  stateOf(i, now = Date.now()) {
    const lv = this.level[i];
    if (lv >= 1) return LEVELS[lv];
    const on = this.online[i];
    if (on === 1) return "online";
    if (on === 0) return "offline";
    const seen = this.lastSeen[i];
    if (!seen) return "unknown";
    return now - seen < ONLINE_WINDOW_MS ? "online" : "offline";
  }

  /** Marker state ranks of every device at once (the map's per-frame input). */
  stateRanks(out, now = Date.now()) {
    for (let i = 0; i < this.n; i++) {
      const lv = this.level[i];
      if (lv >= 1) { out[i] = 2 + lv; continue; }
      const on = this.online[i];
      if (on === 1) out[i] = 1;
      else if (on === 0) out[i] = 2;
      else { const seen = this.lastSeen[i]; out[i] = !seen ? 0 : now - seen < ONLINE_WINDOW_MS ? 1 : 2; }
    }
    return out;
  }

  device(id) {
    const i = this.index.get(id);
    if (i === undefined) return null;
    return {
      i, id, type: this.types[this.type[i]], vendor: this.vendors[i], area: this.areas[i],
      lat: this.lat[i], lon: this.lon[i], lastSeen: this.lastSeen[i] || null,
      online: this.online[i], state: this.stateOf(i), values: this.values[i],
    };
  }

  alertsOfDevice(id) {
    const out = [];
    for (const a of this.alerts.values()) if (a.device === id) out.push(a);
    return out;
  }
}
