// The alert list: active alerts in level colours, sortable, filterable by level, with the actions
// the logged-in role may take in each alert's state (the table comes from /api/v1/screen/config,
// which asks the lifecycle itself). Dispatch asks for the unit in a small dialog. Clicking a row
// selects it (again: unselects it); the selected row carries `detail.el` (the alert's cameras).

import { api } from "./api.js";
import { LEVEL_RANK } from "./model.js";
import { t, ago, language } from "./i18n.js";

const BUTTONS = ["acknowledge", "dispatch", "resolve", "close"];
const PATH = { acknowledge: "ack", dispatch: "dispatch", resolve: "resolve", close: "close" };
const STATE_ORDER = { raised: 0, acknowledged: 1, dispatched: 2, resolved: 3 };
const MAX_ROWS = 400;
const RENDER_MS = 200;

const SORTS = {
  severity: (a, b) => (LEVEL_RANK[b.level] - LEVEL_RANK[a.level]) || (Date.parse(b.first_at) - Date.parse(a.first_at)),
  newest: (a, b) => Date.parse(b.first_at) - Date.parse(a.first_at),
  state: (a, b) => (STATE_ORDER[a.state] - STATE_ORDER[b.state]) || (LEVEL_RANK[b.level] - LEVEL_RANK[a.level]),
  area: (a, b) => (a.area || "").localeCompare(b.area || "") || (LEVEL_RANK[b.level] - LEVEL_RANK[a.level]),
};

export class AlertList {
  constructor(root, model, { actions, areaName, onPick, onActed, onError, dialog, detail }) {
    this.root = root;
    this.list = root.querySelector("ol");
    this.chips = root.querySelector(".level-chips");
    this.sortSel = root.querySelector("select");
    this.model = model;
    this.actions = actions;       // state -> {firing: [...], cleared: [...]}
    this.areaName = areaName;
    this.onPick = onPick;
    this.onActed = onActed;
    this.onError = onError;
    this.dialog = dialog;
    this.detail = detail;         // {el, show(id), hide()}: what the selected row shows under it
    this.selected = null;         // the selected alert's id
    this.sort = localStorage.getItem("hub-alert-sort") || "severity";
    this.hidden = new Set();      // levels filtered out
    this.timer = null;
    this.last = 0;
    this.rows = new Map();        // alert id -> {li, sig, first}: the rows on screen
    this.sortSel.value = this.sort;
    this.sortSel.addEventListener("change", () => { this.sort = this.sortSel.value; localStorage.setItem("hub-alert-sort", this.sort); this.render(); });
    this.chips.addEventListener("click", (e) => {
      const lv = e.target.closest("[data-level]")?.dataset.level;
      if (!lv) return;
      if (this.hidden.has(lv)) this.hidden.delete(lv); else this.hidden.add(lv);
      this.render();
    });
    this.list.addEventListener("click", (e) => this.click(e));
    setInterval(() => this.updateTimes(), 10000);
  }

  /** Re-render soon: at most every RENDER_MS, however many changes arrive (a storm brings hundreds). */
  invalidate() {
    if (this.timer) return;
    const wait = Math.max(0, RENDER_MS - (performance.now() - this.last));
    this.timer = setTimeout(() => { this.timer = null; this.last = performance.now(); this.render(); }, wait);
  }

  allowed(a) { return (this.actions?.[a.state]?.[a.condition] || []).filter((x) => BUTTONS.includes(x)); }

  /** Everything a row shows but its age: a row is rebuilt only when this changes. */
  signature(a) {
    const who = this.model.lastActor.get(a.id);
    return [a.level, a.state, a.condition, a.summary, a.unit, a.device, a.area, who?.actor, language(), this.allowed(a).join()].join("|");
  }

  render() {
    const all = [...this.model.alerts.values()];
    const byLevel = { red: 0, orange: 0, yellow: 0, blue: 0, info: 0 };
    for (const a of all) byLevel[a.level] = (byLevel[a.level] || 0) + 1;
    this.chips.innerHTML = ["red", "orange", "yellow", "blue"].map((lv) =>
      `<button class="chip lv-${lv}${this.hidden.has(lv) ? " off" : ""}" data-level="${lv}" title="${t("level." + lv)}"><i></i>${t("level." + lv)} <b>${byLevel[lv]}</b></button>`).join("");
    this.root.querySelector(".count").textContent = all.length ? `(${all.length})` : "";
    const shown = all.filter((a) => !this.hidden.has(a.level)).sort(SORTS[this.sort] || SORTS.severity).slice(0, MAX_ROWS);
    if (this.selected != null && !shown.some((a) => a.id === this.selected)) this.unselect();
    if (!shown.length) { this.rows.clear(); this.list.innerHTML = `<li class="empty">${t("noAlerts")}</li>`; return; }
    this.list.querySelector("li.empty")?.remove();
    // Keyed update: unchanged rows stay (and keep their place in the DOM unless the order moved),
    // so a delta with one new alert costs one row, not four hundred.
    const keep = new Set();
    let prev = null;
    for (const a of shown) {
      const sig = this.signature(a);
      let rec = this.rows.get(a.id);
      if (!rec || rec.sig !== sig) {
        const tpl = document.createElement("template");
        tpl.innerHTML = this.row(a);
        const li = tpl.content.firstElementChild;
        if (rec) rec.li.replaceWith(li);
        rec = { li, sig, first: Date.parse(a.first_at) };
        this.rows.set(a.id, rec);
      }
      keep.add(a.id);
      if (a.id === this.selected) this.attachDetail(rec.li);
      const want = prev ? prev.nextSibling : this.list.firstChild;
      if (want !== rec.li) this.list.insertBefore(rec.li, want);
      prev = rec.li;
    }
    for (const [id, rec] of this.rows) if (!keep.has(id)) { rec.li.remove(); this.rows.delete(id); }
  }

  /** Select alert `id`'s row and show its detail under it. */
  select(id) {
    if (this.selected != null && this.selected !== id) this.rows.get(this.selected)?.li.classList.remove("selected");
    this.selected = id;
    const rec = this.rows.get(id);
    if (rec) this.attachDetail(rec.li);
    this.detail?.show(id);
  }

  unselect() {
    if (this.selected == null) return;
    this.rows.get(this.selected)?.li.classList.remove("selected");
    this.selected = null;
    this.detail?.hide();
  }

  attachDetail(li) {
    li.classList.add("selected");
    const main = li.querySelector(".main");
    if (this.detail && this.detail.el.parentNode !== main) main.appendChild(this.detail.el);
  }

  /** The "x min ago" of every row, without rebuilding rows. */
  updateTimes() {
    for (const rec of this.rows.values()) { const el = rec.li.querySelector("time"); if (el) el.textContent = ago(rec.first); }
  }

  row(a) {
    // Everything from the hub goes through esc(), the enums too: a row is HTML.
    const who = this.model.lastActor.get(a.id);
    const [lv, st, cond] = [esc(a.level), esc(a.state), esc(a.condition)];
    const where = [a.device, a.area ? this.areaName(a.area) : null].filter(Boolean).map(esc).join(" · ");
    const buttons = this.allowed(a).map((x) => `<button data-action="${x}">${t("action." + x)}</button>`).join("");
    const unit = a.unit ? ` · ${t("unit")}: ${esc(a.unit)}` : "";
    const whoLine = who && who.actor !== "system"
      ? `<div class="who">${esc(t("state." + a.state))} · ${t("by")} <b class="actor">${esc(who.actor)}</b>${unit}</div>`
      : a.unit ? `<div class="who">${t("unit")}: ${esc(a.unit)}</div>` : "";
    return `<li class="alert lv-${lv} st-${st} cond-${cond}" data-alert="${Number(a.id)}" data-level="${lv}" data-state="${st}">
      <div class="bar"></div>
      <div class="main">
        <div class="head"><b class="level">${esc(t("level." + a.level))}</b><span class="state">${esc(t("state." + a.state))}</span><span class="cond">${esc(t("cond." + a.condition))}</span><time>${ago(Date.parse(a.first_at))}</time></div>
        <div class="summary">${esc(a.summary)}</div>
        <div class="where">${where}</div>${whoLine}
      </div>
      <div class="actions">${buttons}</div>
    </li>`;
  }

  async click(e) {
    const li = e.target.closest("li[data-alert]");
    if (!li) return;
    const id = Number(li.dataset.alert);
    const a = this.model.alerts.get(id);
    if (!a) return;
    if (e.target.closest(".alert-cams")) return;   // the detail handles its own clicks
    const action = e.target.closest("button[data-action]")?.dataset.action;
    if (!action) {
      if (this.selected === id) { this.unselect(); return; }
      this.select(id);
      this.onPick?.(a);
      return;
    }
    let body = {};
    if (action === "dispatch") {
      body = await this.dialog(a);
      if (!body) return;
    }
    const btn = e.target.closest("button");
    btn.disabled = true;
    try {
      const view = await api(`/api/v1/alerts/${id}/${PATH[action]}`, { method: "POST", body });
      this.onActed?.(view, action);
    } catch (err) {
      this.onError?.(`${t("actionFailed")}: ${err.message}`);
    } finally {
      btn.disabled = false;
    }
  }
}

export function esc(s) {
  return String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}
