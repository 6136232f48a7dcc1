// The district panel: per district, devices online/offline/never seen, active alerts by level, and
// two trends: alerts raised per hour over the last 24 h (history from the alerts API, then counted
// live) and the online share against a quarter of an hour ago (sampled while the screen runs).

import { api } from "./api.js";
import { districtOf, LEVEL_RANK } from "./model.js";
import { t } from "./i18n.js";
import { esc } from "./alerts.js";

const HOUR = 3600e3;
const SAMPLE_MS = 60e3;
const SAMPLES = 30;

export class DistrictPanel {
  constructor(root, model, { areaName, onPick, onTotals, badge }) {
    this.root = root;
    this.body = root.querySelector("tbody");
    this.model = model;
    this.areaName = areaName;
    this.onPick = onPick;
    this.onTotals = onTotals;
    this.badge = badge;              // area -> HTML after its name (a warning in force, response.js)
    this.known = [];                 // district paths from the area outlines
    this.raised = new Map();         // district -> Map(hour bucket -> alerts raised)
    this.seen = new Set();           // alert ids counted in `raised`
    this.samples = [];               // [{at, share: Map(district -> online share)}]
    this.last = 0;
    this.timer = null;
    this.ranks = new Uint8Array(0);
    this.body.addEventListener("click", (e) => {
      const tr = e.target.closest("tr[data-area]");
      if (tr) this.onPick?.(tr.dataset.area);
    });
    setInterval(() => this.sample(), SAMPLE_MS);
  }

  setDistricts(paths) { this.known = paths; this.invalidate(); }

  /** Count alerts raised in the last 24 h per district and hour (then `countRaised` keeps it live). */
  async loadHistory() {
    const since = new Date(Date.now() - 24 * HOUR).toISOString();
    for (let offset = 0; offset < 2500; offset += 500) {
      const page = await api(`/api/v1/alerts?since=${encodeURIComponent(since)}&sort=newest&limit=500&offset=${offset}`);
      for (const a of page.items) this.countRaised(a);
      if (page.items.length < 500) break;
    }
    this.invalidate();
  }

  countRaised(a) {
    if (this.seen.has(a.id)) return;
    this.seen.add(a.id);
    const d = this.districtOfAlert(a);
    if (!d) return;
    if (!this.raised.has(d)) this.raised.set(d, new Map());
    const bins = this.raised.get(d);
    const b = Math.floor(Date.parse(a.first_at) / HOUR);
    bins.set(b, (bins.get(b) || 0) + 1);
  }

  districtOfAlert(a) {
    if (a.area) return districtOf(a.area);
    const i = a.device != null ? this.model.index.get(a.device) : undefined;
    return i !== undefined ? districtOf(this.model.areas[i]) : "";
  }

  invalidate() {
    const wait = Math.max(0, 500 - (performance.now() - this.last));
    if (this.timer) return;
    this.timer = setTimeout(() => { this.timer = null; this.last = performance.now(); this.render(); }, wait);
  }

  /** Per-district counts from the model, in one pass over the devices. */
  counts() {
    const m = this.model;
    if (this.ranks.length !== m.n) this.ranks = new Uint8Array(m.n);
    const ranks = m.stateRanks(this.ranks);
    const rows = new Map();
    const row = (d) => {
      let r = rows.get(d);
      if (!r) { r = { devices: 0, online: 0, offline: 0, unknown: 0, alerts: { blue: 0, yellow: 0, orange: 0, red: 0 } }; rows.set(d, r); }
      return r;
    };
    for (const d of this.known) row(d);
    const cache = new Map();
    for (let i = 0; i < m.n; i++) {
      const area = m.areas[i];
      let d = cache.get(area);
      if (d === undefined) { d = districtOf(area); cache.set(area, d); }
      const r = row(d);
      r.devices++;
      const k = ranks[i];
      if (k === 0) r.unknown++; else if (k === 2) r.offline++; else if (k === 1 || k >= 3) {
        if (m.online[i] === 0) r.offline++; else r.online++;
      }
    }
    for (const a of m.alerts.values()) {
      const d = this.districtOfAlert(a);
      if (d && a.level in row(d).alerts) row(d).alerts[a.level]++;
    }
    return rows;
  }

  sample() {
    const share = new Map();
    for (const [d, r] of this.counts()) share.set(d, r.devices ? r.online / r.devices : 0);
    this.samples.push({ at: Date.now(), share });
    if (this.samples.length > SAMPLES) this.samples.shift();
  }

  render() {
    const rows = this.counts();
    const nowBin = Math.floor(Date.now() / HOUR);
    const before = this.samples.find((s) => Date.now() - s.at <= 16 * 60e3 && Date.now() - s.at >= 14 * 60e3) || this.samples[0];
    const order = [...rows.keys()].sort((a, b) => worst(rows.get(b)) - worst(rows.get(a)) || a.localeCompare(b));
    const total = { devices: 0, online: 0, offline: 0, unknown: 0 };
    this.body.innerHTML = order.map((d) => {
      const r = rows.get(d);
      for (const k of Object.keys(total)) total[k] += r[k];
      const bins = this.raised.get(d) || new Map();
      const series = Array.from({ length: 24 }, (_, k) => bins.get(nowBin - 23 + k) || 0);
      const recent = series.slice(21).reduce((x, y) => x + y, 0), prior = series.slice(18, 21).reduce((x, y) => x + y, 0);
      const share = r.devices ? r.online / r.devices : 0;
      const was = before?.share.get(d);
      const shareArrow = was == null ? "" : share > was + 0.01 ? "▲" : share < was - 0.01 ? "▼" : "";
      const chips = ["red", "orange", "yellow", "blue"].filter((lv) => r.alerts[lv]).map((lv) => `<b class="n lv-${lv}" title="${t("level." + lv)}">${r.alerts[lv]}</b>`).join("");
      return `<tr data-area="${esc(d)}">
        <th>${esc(this.areaName(d))}${this.badge?.(d) || ""}</th>
        <td class="num">${r.devices}</td>
        <td class="num ok" title="${Math.round(share * 100)}%">${r.online}<small class="pct">${r.devices ? ` ${Math.round(share * 100)}%` : ""}</small>${shareArrow ? `<small class="${shareArrow === "▲" ? "up" : "down"}">${shareArrow}</small>` : ""}</td>
        <td class="num off">${r.offline}</td>
        <td class="num dim">${r.unknown}</td>
        <td class="lv"><span>${chips}</span></td>
        <td class="trend" title="${t("trend24")}">${spark(series)}<span class="${recent > prior ? "up" : recent < prior ? "down" : ""}">${recent > prior ? "▲" : recent < prior ? "▼" : ""}</span></td>
      </tr>`;
    }).join("");
    this.onTotals?.(total);
    this.root.querySelector("tfoot").innerHTML = `<tr><th>${t("total")}</th><td class="num">${total.devices}</td><td class="num ok">${total.online}</td><td class="num off">${total.offline}</td><td class="num dim">${total.unknown}</td><td></td><td></td></tr>`;
  }
}

function worst(r) {
  for (const lv of ["red", "orange", "yellow", "blue"]) if (r.alerts[lv]) return LEVEL_RANK[lv];
  return 0;
}

/** A 24-bar sparkline as inline SVG. */
function spark(series) {
  const max = Math.max(1, ...series);
  const bars = series.map((v, k) => v ? `<rect x="${k * 4}" y="${16 - (v / max) * 16}" width="3" height="${(v / max) * 16}"/>` : "").join("");
  return `<svg class="spark" viewBox="0 0 96 16" preserveAspectRatio="none">${bars}</svg>`;
}
