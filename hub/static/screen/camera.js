// The camera panel: one camera's standing, findings with scores, stream format, last check and its
// newest picture, from GET /api/v1/cameras/{id} (the feed carries only a camera's standing). It is
// read again when the feed says the camera changed and every REFRESH_MS while open (a check that
// changes nothing still leaves a newer picture). Duty staff may ask for a check now.

import { api } from "./api.js";
import { t, ago, clock } from "./i18n.js";
import { esc } from "./alerts.js";
import { showPicture } from "./snapshots.js";

const REFRESH_MS = 30000;
const DUTY = new Set(["admin", "commander", "officer"]);   // who may POST .../check (video/api.py)

export class CameraPanel {
  constructor(root, model, { areaName, onClose, onError }) {
    this.root = root;
    this.model = model;
    this.areaName = areaName;
    this.onError = onError;
    this.id = null;
    this.detail = null;
    this.role = null;
    this.img = root.querySelector("img");
    this.checkBtn = root.querySelector("button.check");
    root.querySelector(".close").addEventListener("click", () => { this.show(null); onClose?.(); });
    this.checkBtn.addEventListener("click", () => this.checkNow());
    this.img.addEventListener("load", () => { root.dataset.picture = this.img.dataset.src; });
    setInterval(() => { if (this.id) this.load(); }, REFRESH_MS);
  }

  /** The logged-in role: duty staff get the check-now button. */
  setRole(role) { this.role = role; this.render(); }

  /** Show camera `id` (null hides the panel). */
  show(id) {
    this.id = id;
    this.detail = null;
    this.root.dataset.camera = id || "";
    this.root.dataset.loaded = "";
    this.root.classList.toggle("empty", !id);
    this.render();
    if (id) this.load();
  }

  /** The feed says a camera changed: the open one is read again. */
  onCameraChanges(changes) {
    if (this.id && changes.some((c) => c.id === this.id)) this.load();
  }

  async load() {
    const id = this.id;
    try {
      const detail = await api(`/api/v1/cameras/${encodeURIComponent(id)}`);
      if (this.id !== id) return;
      this.detail = detail;
      this.root.dataset.loaded = "1";
      this.render();
    } catch (e) {
      if (this.id === id) this.onError?.(`${t("camera")} ${id}: ${e.message}`);
    }
  }

  async checkNow() {
    const id = this.id;
    this.checkBtn.disabled = true;
    this.checkBtn.textContent = t("checking");
    try {
      const detail = await api(`/api/v1/cameras/${encodeURIComponent(id)}/check`, { method: "POST" });
      if (this.id === id) { this.detail = detail; this.render(); }
    } catch (e) {
      this.onError?.(`${t("actionFailed")}: ${e.message}`);
    } finally {
      this.checkBtn.disabled = false;
      this.checkBtn.textContent = t("checkNow");
    }
  }

  render() {
    const head = this.root.querySelector(".head"), facts = this.root.querySelector(".facts");
    const findings = this.root.querySelector(".findings"), caption = this.root.querySelector("figcaption");
    this.checkBtn.hidden = !this.id || !DUTY.has(this.role);
    if (!this.id) {
      head.innerHTML = `<span class="dim">${t("pickCamera")}</span>`;
      facts.innerHTML = findings.innerHTML = caption.textContent = "";
      showPicture(this.img, null);
      return;
    }
    // Until the detail comes, what the feed knows; the detail is fresher once it is here.
    const c = this.detail || this.model.cameraIndex.get(this.id) || { id: this.id };
    const status = this.detail ? this.detail.state : c.status || "unknown";
    this.root.dataset.status = status;
    const sub = [t("camera"), c.id, c.department, c.area ? this.areaName(c.area) : ""].filter(Boolean).map(esc).join(" · ");
    head.innerHTML = `<b class="name">${esc(c.name || c.id)}</b><span class="badge cam-${esc(status)}" data-status="${esc(status)}">${esc(t("cam." + status))}</span><div class="sub">${sub}</div>`;
    const d = this.detail;
    if (!d) { facts.innerHTML = findings.innerHTML = ""; caption.textContent = t("loading"); return; }
    showPicture(this.img, d.snapshot_url);
    caption.textContent = d.snapshot_url
      ? `${t("picture")} · ${d.last_picture_at ? when(d.last_picture_at) : ""}`
      : t("noPicture");
    const s = d.stream;
    const rows = [
      ["resolution", s ? `${s.width} × ${s.height}` : "–", "resolution"],
      ["frameRate", s?.fps ? `${fmt1(s.fps)} fps` : "–", "fps"],
      ["codec", s?.codec || "–", "codec"],
      ["firstFrame", s ? `${Math.round(s.ttff_ms)} ms` : "–", "ttff"],
      ["lastCheck", d.last_check_at ? when(d.last_check_at) : t("never"), "checked"],
      ["stateSince", d.since ? when(d.since) : "–", "since"],
    ];
    facts.innerHTML = rows.map(([k, v, key]) => `<tr data-fact="${key}"><th>${esc(t(k))}</th><td>${esc(v)}</td></tr>`).join("");
    const confirmed = new Set(d.confirmed.map((f) => f.kind));
    const seenOnly = d.seen.filter((f) => !confirmed.has(f.kind));
    findings.innerHTML = `<h3>${t("findings.confirmed")}</h3>` +
      (d.confirmed.length ? `<ul>${d.confirmed.map((f) => finding(f, "confirmed")).join("")}</ul>` : `<div class="dim none">${t("noFindings")}</div>`) +
      (seenOnly.length ? `<h3>${t("findings.seen")}</h3><ul>${seenOnly.map((f) => finding(f, "seen")).join("")}</ul>` : "");
  }
}

/** One finding: its name, its score as a bar and a number (0.5 at the threshold), what was measured. */
function finding(f, how) {
  const score = Math.max(0, Math.min(1, Number(f.score) || 0));
  return `<li class="finding ${how}" data-kind="${esc(f.kind)}" data-score="${score.toFixed(2)}">
    <span class="kind">${esc(t("finding." + f.kind))}</span>
    <span class="score" title="${esc(t("scoreHelp"))}"><i style="width:${(score * 100).toFixed(0)}%"></i></span>
    <b class="n">${score.toFixed(2)}</b>
    <div class="detail">${esc(f.detail)}</div>
  </li>`;
}

function when(iso) {
  const ms = Date.parse(iso);
  return `${ago(ms)} · ${clock(ms)}`;
}

function fmt1(x) { return Number.isInteger(x) ? String(x) : x.toFixed(1); }
