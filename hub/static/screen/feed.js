// Live data: the situation feed over a websocket (/ws/situation, the protocol in
// notes/feed-protocol.md), and REST polling only while the feed cannot be reached at all.
//
// Feed: hello {token, since, filter} -> snapshot, then deltas with seq+1 each. A gap in seq sends a
// new hello with `since` (the server replays or sends a fresh snapshot); close 4408 ("too slow")
// reconnects at once with `since`; 4401 means the token is no good (log in again); anything else
// reconnects with a growing pause. Every frame goes to the handlers as it is: the model applies it.

import { api, token, needLogin } from "./api.js";

const BACKOFF_MS = [500, 1000, 2000, 5000, 10000];
const FALLBACK_AFTER = 2;        // failed opens in a row before polling REST meanwhile
const POLL_ALERTS_MS = 1000;
const POLL_DEVICES_MS = 5000;

export class Live {
  /**
   * @param {{onSnapshot: Function, onDelta: Function, onStatus: Function}} handlers
   */
  constructor(handlers) {
    this.h = handlers;
    this.ws = null;
    this.seq = null;
    this.filter = { area: null, types: null, levels: null };
    this.failures = 0;
    this.mode = "connecting";   // connecting | feed | polling | down
    this.frames = 0;
    this.resyncs = 0;
    this.stopped = false;
    this.pollTimers = [];
    this.polledAlerts = null;
  }

  start() { this.stopped = false; this.connect(); }

  stop() {
    this.stopped = true;
    this.stopPolling();
    if (this.ws) { this.ws.onclose = null; this.ws.close(1000); this.ws = null; }
  }

  setMode(mode, detail = "") {
    this.mode = mode;
    this.h.onStatus(mode, detail);
  }

  // -- websocket --------------------------------------------------------------------------------
  connect() {
    if (this.stopped) return;
    const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws/situation`;
    let ws;
    try { ws = new WebSocket(url); } catch (e) { this.retry(false); return; }
    this.ws = ws;
    let served = false;   // a socket that closes before any frame counts as a failed attempt
    ws.onopen = () => this.hello(this.seq);
    ws.onmessage = (ev) => {
      let frame;
      try { frame = JSON.parse(ev.data); } catch { return; }
      served = true;
      this.frames++;
      this.onFrame(frame);
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.ws = null;
      if (this.stopped) return;
      if (ev.code === 4401) { this.setMode("down", "token"); needLogin(); return; }
      if (ev.code === 4403) { this.setMode("down", "forbidden"); this.retry(true, 10000); return; }
      if (ev.code === 4408) { this.setMode("connecting", "too slow"); this.connect(); return; }
      this.retry(served);
    };
  }

  hello(since) {
    this.send({ type: "hello", token: token(), since, filter: this.filter });
  }

  send(obj) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(obj));
  }

  /** Narrow the feed (area, types, levels); the server answers with a fresh snapshot. */
  setFilter(filter) {
    this.filter = { area: null, types: null, levels: null, ...filter };
    this.send({ type: "filter", filter: this.filter });
  }

  onFrame(f) {
    if (f.type === "snapshot") {
      this.failures = 0;
      this.seq = f.seq;
      this.stopPolling();
      this.setMode("feed");
      this.h.onSnapshot(f);
    } else if (f.type === "delta") {
      if (this.mode !== "feed") { this.stopPolling(); this.setMode("feed"); }
      // A merged frame (a screen that fell behind) stands for first_seq..seq.
      const first = f.first_seq ?? f.seq;
      if (this.seq !== null && f.seq <= this.seq) return;           // a replay we already have
      if (this.seq !== null && first > this.seq + 1) {               // a gap: ask for what we missed
        this.resyncs++;
        this.hello(this.seq);
        return;
      }
      this.seq = f.seq;
      this.h.onDelta(f);
    }
  }

  retry(served, pause) {
    this.failures = served ? 1 : this.failures + 1;
    const wait = pause ?? BACKOFF_MS[Math.min(this.failures - 1, BACKOFF_MS.length - 1)];
    if (!served && this.failures >= FALLBACK_AFTER && this.pollTimers.length === 0) this.startPolling();
    else if (this.mode !== "polling") this.setMode("connecting");
    setTimeout(() => this.connect(), wait);
  }

  // -- REST polling while the feed is unreachable ---------------------------------------------
  startPolling() {
    this.setMode("polling");
    this.seq = null;
    const devices = async () => {
      try { this.h.onSnapshot(await restSnapshot(await this.pollAlerts(true))); } catch (e) { console.warn("poll", e); }
    };
    const alerts = async () => {
      try { await this.pollAlerts(false); } catch (e) { console.warn("poll", e); }
    };
    devices();
    this.pollTimers.push(setInterval(devices, POLL_DEVICES_MS), setInterval(alerts, POLL_ALERTS_MS));
  }

  stopPolling() {
    for (const id of this.pollTimers) clearInterval(id);
    this.pollTimers = [];
    this.polledAlerts = null;
  }

  /** Active alerts by REST; the differences from the last poll become alert changes (a delta). */
  async pollAlerts(forSnapshot) {
    const page = await api("/api/v1/alerts?active=true&sort=severity&limit=500");
    const now = new Map(page.items.map((a) => [a.id, a]));
    if (forSnapshot || this.polledAlerts === null) { this.polledAlerts = now; return [...now.values()]; }
    const changes = [];
    for (const [id, a] of now) {
      const before = this.polledAlerts.get(id);
      if (!before) changes.push({ change: "created", alert: a, to_level: a.level });
      else if (before.level !== a.level) changes.push({ change: "level_changed", alert: a, from_level: before.level, to_level: a.level });
      else if (before.state !== a.state || before.condition !== a.condition || before.unit !== a.unit) changes.push({ change: "state_changed", alert: a });
    }
    for (const [id, a] of this.polledAlerts) if (!now.has(id)) changes.push({ change: "state_changed", alert: { ...a, state: "closed" } });
    this.polledAlerts = now;
    if (changes.length) this.h.onDelta({ type: "delta", seq: null, alerts: changes });
    return [...now.values()];
  }
}

/** A snapshot built from REST pages (the shape of the feed's snapshot). */
async function restSnapshot(alerts) {
  const devices = [];
  const limit = 1000;
  const first = await api(`/api/v1/devices?status=active&limit=${limit}&offset=0`);
  const pages = [first];
  const rest = [];
  for (let off = limit; off < first.total; off += limit) rest.push(api(`/api/v1/devices?status=active&limit=${limit}&offset=${off}`));
  pages.push(...(await Promise.all(rest)));
  for (const page of pages) {
    for (const d of page.items) {
      const values = {};
      for (const [m, x] of Object.entries(d.latest || {})) values[m] = [x.value, Date.parse(x.ts)];
      devices.push({ id: d.id, vendor: d.vendor, type: d.type, lat: d.lat, lon: d.lon, area: d.area, online: d.online, last_seen: d.last_seen, values });
    }
  }
  // Cameras from their compact map listing (its `state` is the feed's `status`).
  let cameras = [];
  try {
    cameras = (await api("/api/v1/cameras/map")).map(({ state, ...c }) => ({ ...c, status: state }));
  } catch (e) { console.warn("cameras", e); }
  return { type: "snapshot", seq: null, ts: Date.now(), devices, alerts, cameras, counts: {} };
}
