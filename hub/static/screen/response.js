// The emergency response on the command screen: open incidents with each one's step and its timer,
// the response units and their status, and the public warnings in force (feed protocol §11).
//
// ResponseState holds what the feed said (its snapshot's `incidents`, `units`, `warnings`, then each
// delta's changes, applied in order). The incident panel lists incidents, the one most at risk of
// overrunning its step first, and counts units by status; the warning band under the header names
// every warning in force for the screen's area in its colour. Timers tick once a second by touching
// only their own text (no list rebuild); the list itself is rebuilt at most every RENDER_MS, on change.
// Times are the hub's: the snapshot's `ts` gives the offset from this browser's clock.

import { LEVEL_RANK } from "./model.js";
import { t, language } from "./i18n.js";
import { esc } from "./alerts.js";

const RENDER_MS = 200;
export const WARNING_LEVELS = ["blue", "yellow", "orange", "red"];
export const UNIT_STATUSES = ["available", "dispatched", "on_scene", "off_duty"];

function ms(iso) { return iso == null ? null : Date.parse(iso); }

/** Whether area path `a` is `b` or below it. */
export function within(a, b) { return a === b || (a != null && b != null && a.startsWith(b + "/")); }

export class ResponseState {
  constructor() {
    this.incidents = new Map();   // id -> incident item (open ones only), with `_deadline` (ms)
    this.units = new Map();       // id -> unit item
    this.warnings = new Map();    // id -> warning item (active ones only)
    this.skew = 0;                // hub clock - this clock, ms
    this.version = 0;
    this.listeners = new Set();
  }

  on(fn) { this.listeners.add(fn); return () => this.listeners.delete(fn); }
  emit(what) { this.version++; for (const fn of this.listeners) fn(what); }

  /** The hub's time now. */
  now() { return Date.now() + this.skew; }

  /** A feed snapshot (a REST snapshot, while polling, has no response part: what we had stays). */
  load(snap) {
    if (snap.ts) this.skew = snap.ts - Date.now();
    if (!snap.incidents && !snap.units && !snap.warnings) return;
    this.incidents = new Map();
    this.units = new Map();
    this.warnings = new Map();
    for (const i of snap.incidents || []) this.putIncident(i);
    for (const u of snap.units || []) this.units.set(u.id, u);
    for (const w of snap.warnings || []) this.putWarning(w);
    this.emit("snapshot");
  }

  /** A delta's incident, unit and warning changes, in order; true when any came. */
  apply(delta) {
    const inc = delta.incidents || [], un = delta.units || [], wn = delta.warnings || [];
    if (!inc.length && !un.length && !wn.length) return false;
    for (const c of inc) this.putIncident(c.incident);
    for (const c of un) this.units.set(c.unit.id, c.unit);
    for (const c of wn) this.putWarning(c.warning);
    this.emit("delta");
    return true;
  }

  putIncident(i) {
    if (!i) return;
    if (i.state === "closed") { this.incidents.delete(i.id); return; }
    i._deadline = ms(i.deadline_at);
    this.incidents.set(i.id, i);
  }

  putWarning(w) {
    if (!w) return;
    if (w.state !== "active") this.warnings.delete(w.id);
    else { w._from = ms(w.valid_from); w._until = ms(w.valid_until); this.warnings.set(w.id, w); }
  }

  /** Warnings in force now, most severe first. */
  inForce(now = this.now()) {
    const out = [];
    for (const w of this.warnings.values()) if (w._from <= now && now < w._until) out.push(w);
    return out.sort((a, b) => LEVEL_RANK[b.level] - LEVEL_RANK[a.level] || a.area.localeCompare(b.area));
  }

  /** The most severe warning in force over `area` (for it or for an area above it), or null. */
  warningOver(area, now = this.now()) {
    let best = null;
    for (const w of this.inForce(now)) if (within(area, w.area) && (!best || LEVEL_RANK[w.level] > LEVEL_RANK[best.level])) best = w;
    return best;
  }

  /** The most severe warning in force for `area`, above it or within it (a district row's badge). */
  warningTouching(area, now = this.now()) {
    let best = null;
    for (const w of this.inForce(now)) {
      if (!(within(area, w.area) || within(w.area, area))) continue;
      if (!best || LEVEL_RANK[w.level] > LEVEL_RANK[best.level]) best = w;
    }
    return best;
  }

  /** Units by status, for the panel's summary. */
  unitCounts() {
    const out = Object.fromEntries(UNIT_STATUSES.map((s) => [s, 0]));
    for (const u of this.units.values()) out[u.status] = (out[u.status] || 0) + 1;
    return out;
  }
}

/** "12:03" / "1:02:03" from ms. */
function span(d) {
  const s = Math.floor(Math.abs(d) / 1000);
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
  const two = (x) => String(x).padStart(2, "0");
  return h ? `${h}:${two(m)}:${two(sec)}` : `${two(m)}:${two(sec)}`;
}

/** The timer's text and whether the step overran. */
export function timerOf(i, now) {
  if (i._deadline == null) return { text: t("noLimit"), overdue: false };
  const left = i._deadline - now;
  if (left >= 0) return { text: language() === "zh" ? `${t("left")} ${span(left)}` : `${span(left)} ${t("left")}`, overdue: false };
  return { text: language() === "zh" ? `${t("overdue")} ${span(left)}` : `${t("overdue")} +${span(left)}`, overdue: true };
}

/** A warning's line: "Orange rainstorm warning · Riverside · until 18:00" / "滨江区 暴雨橙色预警 · 至18:00". */
export function warningText(w, areaName) {
  const until = new Date(w._until).toLocaleTimeString(language() === "zh" ? "zh-CN" : "en-GB", { hour: "2-digit", minute: "2-digit" });
  const place = areaName(w.area) || w.area;
  if (language() === "zh") return `${place} ${t("wkind." + w.kind)}${t("level." + w.level)}${t("warning")} · ${t("until")}${until}`;
  const lv = t("level." + w.level);
  return `${lv[0].toUpperCase()}${lv.slice(1)} ${t("wkind." + w.kind)} ${t("warning")} · ${place} · ${t("until")} ${until}`;
}

export class IncidentPanel {
  /**
   * @param {HTMLElement} root  the panel (an `ol` for incidents, a `.units` line)
   * @param {ResponseState} state
   */
  constructor(root, state, { areaName, onPick, onCount }) {
    this.root = root;
    this.list = root.querySelector("ol");
    this.summary = root.querySelector(".unit-summary");
    this.state = state;
    this.areaName = areaName;
    this.onPick = onPick;
    this.onCount = onCount;
    this.selected = null;
    this.timer = null;
    this.last = 0;
    this.list.addEventListener("click", (e) => {
      const li = e.target.closest("li[data-id]");
      if (!li) return;
      this.selected = Number(li.dataset.id);
      this.render();
      this.onPick?.(this.state.incidents.get(this.selected));
    });
  }

  invalidate() {
    if (this.timer) return;
    const wait = Math.max(0, RENDER_MS - (performance.now() - this.last));
    this.timer = setTimeout(() => { this.timer = null; this.last = performance.now(); this.render(); }, wait);
  }

  /** Overrun first (longest overrun on top), then the nearest deadline, then the most severe. */
  sorted(now) {
    const key = (i) => (i._deadline == null ? Infinity : i._deadline - now);
    return [...this.state.incidents.values()].sort((a, b) => key(a) - key(b) || LEVEL_RANK[b.level] - LEVEL_RANK[a.level] || b.id - a.id);
  }

  render() {
    const now = this.state.now();
    const all = this.sorted(now);
    let overdue = 0;
    if (!all.length) this.list.innerHTML = `<li class="empty">${t("noIncidents")}</li>`;
    else {
      this.list.innerHTML = all.map((i) => {
        const tm = timerOf(i, now);
        if (tm.overdue) overdue++;
        const units = (i.units || []).map((id) => {
          const u = this.state.units.get(id);
          const st = u?.status || "dispatched";
          return `<span class="u ust-${esc(st)}" data-unit="${esc(id)}">${esc(u?.name || id)} <em>${esc(t("ustatus." + st))}</em></span>`;
        }).join("");
        const where = [this.areaName(i.area) || i.area, `#${i.id}`].map(esc).join(" · ");
        const up = i.escalations ? ` <span class="esc" title="${esc(i.owner)}">${esc(t("escalated"))} ×${i.escalations}</span>` : "";
        return `<li class="incident lv-${esc(i.level)}${tm.overdue ? " overdue" : ""}${i.id === this.selected ? " selected" : ""}" data-id="${i.id}">
          <span class="bar"></span>
          <div class="body">
            <div class="head"><b class="level">${esc(t("level." + i.level))}</b> <span class="title">${esc(i.title)}</span> <span class="istate">${esc(t("istate." + i.state))}</span>${up}</div>
            <div class="where">${where} · ${esc(t("itype." + i.type))}</div>
            <div class="step"><span class="await">${esc(t("awaiting"))} ${esc(t("step." + i.step))}</span> <span class="timer${tm.overdue ? " over" : ""}" data-id="${i.id}">${esc(tm.text)}</span></div>
            ${units ? `<div class="units">${units}</div>` : ""}
          </div>
        </li>`;
      }).join("");
    }
    const c = this.state.unitCounts();
    this.summary.innerHTML = `<b>${esc(t("unitsHead"))}</b> ` + UNIT_STATUSES.map((s) => `<span class="ust-${s}"><i></i>${esc(t("ustatus." + s))} <b>${c[s] || 0}</b></span>`).join("");
    this.onCount?.(all.length, overdue);
  }

  /** Once a second: the timers' text and colour, nothing else. */
  tick() {
    const now = this.state.now();
    let overdue = 0;
    for (const el of this.list.querySelectorAll(".timer")) {
      const i = this.state.incidents.get(Number(el.dataset.id));
      if (!i) continue;
      const tm = timerOf(i, now);
      if (tm.overdue) overdue++;
      if (el.textContent !== tm.text) el.textContent = tm.text;
      if (el.classList.contains("over") !== tm.overdue) {
        el.classList.toggle("over", tm.overdue);
        el.closest("li")?.classList.toggle("overdue", tm.overdue);
      }
    }
    this.onCount?.(this.state.incidents.size, overdue);
  }
}

/** The warnings in force, as coloured bands under the header (the worst first). */
export class WarningBand {
  constructor(el, state, { areaName }) {
    this.el = el;
    this.state = state;
    this.areaName = areaName;
    this.sig = "";
  }

  /** Redraw when what is in force changed (true then: a validity may begin or end between changes). */
  render() {
    const list = this.state.inForce();
    const sig = list.map((w) => `${w.id}:${w.level}:${w._until}`).join() + "|" + language();
    if (sig === this.sig) return false;
    this.sig = sig;
    this.el.hidden = list.length === 0;
    this.el.innerHTML = list.map((w) =>
      `<span class="wband lv-${esc(w.level)}" data-id="${w.id}" data-area="${esc(w.area)}" data-level="${esc(w.level)}" title="${esc(w.reason)}">${esc(warningText(w, this.areaName))}</span>`).join("");
    return true;
  }
}

/** A district's badge in the district panel: its worst warning in force, if any. */
export function warningBadge(state, area) {
  const w = state.warningTouching(area);
  return w ? ` <span class="wbadge lv-${esc(w.level)}" data-level="${esc(w.level)}" title="${esc(t("level." + w.level) + " " + t("wkind." + w.kind) + " " + t("warning"))}">${esc(t("warning"))}</span>` : "";
}

