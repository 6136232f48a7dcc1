// An alert's nearest working cameras, shown under the selected alert in the list: each with its
// newest picture, name, standing and distance, from GET /api/v1/alerts/{id}/cameras (the hub finds
// the alert's place: its camera, its device, its evidence's devices or its area). Clicking one opens
// the camera panel. The list is asked again when cameras change on the feed (a camera that lost its
// picture drops out, one that got it back comes in) and every REFRESH_MS.

import { api } from "./api.js";
import { CAMERA_COLOURS } from "./model.js";
import { t } from "./i18n.js";
import { esc } from "./alerts.js";
import { showPicture } from "./snapshots.js";

const K = 5;                 // cameras shown
const RADIUS_M = 1000;       // the API's default: a street's worth of cameras, not a district's
const REFRESH_MS = 30000;
const AFTER_CHANGE_MS = 1500;

export class AlertCameras {
  constructor({ onPick, onPlace }) {
    this.onPlace = onPlace;  // ({lat, lon, ids} | null): for the map's link from the alert to them
    this.el = document.createElement("div");
    this.el.className = "alert-cams";
    this.alertId = null;
    this.result = null;
    this.state = "idle";     // loading | ok | noplace | error
    this.timer = null;
    this.el.addEventListener("click", (e) => {
      const b = e.target.closest("[data-camera]");
      if (b) onPick?.(b.dataset.camera, this.result);
    });
    setInterval(() => { if (this.alertId != null) this.load(); }, REFRESH_MS);
  }

  /** Show the cameras of alert `id`. */
  show(id) {
    if (id === this.alertId) return;
    this.alertId = id;
    this.result = null;
    this.state = "loading";
    this.onPlace?.(null);
    this.render();
    this.load();
  }

  hide() {
    this.alertId = null;
    this.result = null;
    this.el.remove();
    this.onPlace?.(null);
  }

  /** Cameras changed on the feed: ask again shortly (a burst of changes is one request). */
  onCameraChanges() {
    if (this.alertId == null || this.timer) return;
    this.timer = setTimeout(() => { this.timer = null; if (this.alertId != null) this.load(); }, AFTER_CHANGE_MS);
  }

  async load() {
    const id = this.alertId;
    try {
      const r = await api(`/api/v1/alerts/${Number(id)}/cameras?k=${K}&radius_m=${RADIUS_M}`);
      if (this.alertId !== id) return;
      this.result = r;
      this.state = "ok";
      this.onPlace?.({ lat: r.lat, lon: r.lon, ids: r.cameras.map((n) => n.camera.id) });
    } catch (e) {
      if (this.alertId !== id) return;
      this.state = e.status === 404 ? "noplace" : "error";
      this.error = e.message;
      this.onPlace?.(null);
    }
    this.render();
  }

  render() {
    const el = this.el;
    el.dataset.alert = this.alertId ?? "";
    el.dataset.state = this.state;
    if (this.state === "loading") { el.innerHTML = `<div class="dim">${t("loading")}</div>`; return; }
    if (this.state === "noplace") { el.innerHTML = `<div class="dim">${t("noPlace")}</div>`; return; }
    if (this.state === "error") { el.innerHTML = `<div class="dim">${t("camerasFailed")}: ${esc(this.error)}</div>`; return; }
    const near = this.result?.cameras || [];
    if (!near.length) { el.innerHTML = `<div class="dim">${t("noNearCameras")}</div>`; return; }
    el.innerHTML = `<h4>${t("nearCameras")}</h4><div class="strip">${near.map((n) => {
      const c = n.camera;
      const colour = CAMERA_COLOURS[c.state] || CAMERA_COLOURS.unknown;
      return `<button type="button" class="cam" data-camera="${esc(c.id)}" data-status="${esc(c.state)}" title="${esc(c.name || c.id)}">
        <img class="thumb missing" alt="">
        <span class="name">${esc(c.name || c.id)}</span>
        <span class="meta"><i style="background:${colour}"></i>${esc(t("cam." + c.state))} · ${Math.round(n.distance_m)} ${t("metres")}</span>
      </button>`;
    }).join("")}</div>`;
    el.querySelectorAll("img.thumb").forEach((img, k) => showPicture(img, near[k].camera.snapshot_url));
  }
}
