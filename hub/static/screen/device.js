// The device panel: what one device is and says now (live from the feed), its active alerts, and a
// chart of the last 24 h of one metric from the readings API (5-minute buckets), extended live.

import { api } from "./api.js";
import { Chart, fmt } from "./chart.js";
import { t, ago } from "./i18n.js";
import { esc } from "./alerts.js";

const EVERY = "5m";

export class DevicePanel {
  constructor(root, model, { areaName, onClose }) {
    this.root = root;
    this.model = model;
    this.areaName = areaName;
    this.id = null;
    this.detail = null;
    this.metric = null;
    this.chart = new Chart(root.querySelector("canvas"));
    this.pending = false;
    root.querySelector(".close").addEventListener("click", () => { this.show(null); onClose?.(); });
    root.querySelector(".metrics").addEventListener("click", (e) => {
      const m = e.target.closest("[data-metric]")?.dataset.metric;
      if (m && m !== this.metric) { this.metric = m; this.loadChart(); this.render(); }
    });
    setInterval(() => { if (this.id) this.invalidate(); }, 5000);
  }

  /** Show device `id` (null hides the panel). */
  async show(id) {
    this.id = id;
    this.detail = null;
    this.root.dataset.device = id || "";
    this.root.classList.toggle("empty", !id);
    if (!id) { this.render(); return; }
    this.render();
    try {
      const detail = await api(`/api/v1/devices/${encodeURIComponent(id)}`);
      if (this.id !== id) return;
      this.detail = detail;
      const metrics = detail.profile_detail.metrics.map((m) => m.name);
      const skip = new Set([detail.profile_detail.battery_metric, detail.profile_detail.signal_metric]);
      this.metric = metrics.find((m) => !skip.has(m)) || metrics[0];
      this.render();
      await this.loadChart();
    } catch (e) {
      console.warn("device", e);
    }
  }

  async loadChart() {
    const id = this.id, metric = this.metric;
    if (!id || !metric) return;
    const end = Date.now();
    try {
      const b = await api(`/api/v1/devices/${encodeURIComponent(id)}/readings?metric=${encodeURIComponent(metric)}&every=${EVERY}`);
      if (this.id !== id || this.metric !== metric) return;
      this.chart.set({
        start: Date.parse(b.start), end: Math.max(end, Date.parse(b.end)), unit: b.unit, every: b.every_ms,
        ts: b.ts.map((x) => Date.parse(x)), min: b.min, max: b.max, mean: b.mean, live: [], empty: t("noData"),
      });
      this.root.dataset.chartPoints = String(b.count.reduce((x, y) => x + y, 0));
    } catch (e) {
      console.warn("readings", e);
    }
  }

  /** Readings from a feed delta: the open device's values and chart follow them. */
  onReadings(readings) {
    if (!this.id) return;
    let mine = false;
    for (const [dev, metric, value, ts] of readings) {
      if (dev !== this.id) continue;
      mine = true;
      if (metric === this.metric) {
        this.chart.addLive(ts, value);
        this.root.dataset.chartLive = String((Number(this.root.dataset.chartLive) || 0) + 1);
      }
    }
    if (mine) this.invalidate();
  }

  invalidate() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => { this.pending = false; this.render(); });
  }

  unitOf(metric) {
    const m = this.detail?.profile_detail.metrics.find((x) => x.name === metric);
    return m?.unit || this.detail?.latest?.[metric]?.unit || "";
  }

  render() {
    const head = this.root.querySelector(".head"), vals = this.root.querySelector(".values");
    const tabs = this.root.querySelector(".metrics"), alerts = this.root.querySelector(".device-alerts");
    this.root.querySelector(".chart-box").hidden = !this.id;
    if (!this.id) { head.innerHTML = `<span class="dim">${t("pickDevice")}</span>`; vals.innerHTML = tabs.innerHTML = alerts.innerHTML = ""; return; }
    const d = this.model.device(this.id);
    if (!d) { head.innerHTML = esc(this.id); return; }
    const name = this.detail?.name || "";
    head.innerHTML = `<b>${esc(name || d.id)}</b> <span class="badge st-${d.state}" data-state="${d.state}">${t(d.state === "online" || d.state === "offline" || d.state === "unknown" ? d.state : "level." + d.state)}</span>
      <div class="sub">${name ? esc(d.id) + " · " : ""}${esc(t("type." + d.type))} · ${esc(d.vendor)} · ${esc(this.areaName(d.area))}</div>
      <div class="sub">${t("lastSeen")}: ${d.lastSeen ? ago(d.lastSeen) : t("never")}</div>`;
    const metrics = this.detail ? this.detail.profile_detail.metrics.map((m) => m.name) : Object.keys(d.values);
    vals.innerHTML = metrics.map((m) => {
      const v = d.values[m];
      return `<tr data-metric="${esc(m)}"><th>${esc(t("metric." + m))}</th><td class="v">${v ? fmt(v[0]) : "–"}</td><td class="u">${esc(this.unitOf(m))}</td><td class="age">${v && v[1] ? ago(v[1]) : ""}</td></tr>`;
    }).join("");
    tabs.innerHTML = metrics.map((m) => `<button data-metric="${esc(m)}" class="${m === this.metric ? "on" : ""}">${esc(t("metric." + m))}</button>`).join("");
    const mine = this.model.alertsOfDevice(this.id);
    alerts.innerHTML = mine.length ? `<h3>${t("deviceAlerts")}</h3>` + mine.map((a) => `<div class="mini lv-${esc(a.level)}"><i></i>${esc(t("level." + a.level))} · ${esc(t("state." + a.state))} · ${esc(a.summary)}</div>`).join("") : "";
  }
}
