// The command screen: logs in, reads its settings and the area outlines, then follows the situation
// feed. Every panel reads the one Model; frames and REST answers change the model, and the model's
// change events only mark panels dirty (each redraws at most once per animation frame).

import { api, login, token, takeTokenFromFragment, onLoginNeeded, needLogin } from "./api.js";
import { Model, COLOURS, CAMERA_COLOURS, CAMERA_STATES, LEVELS, districtOf, mercX, mercY } from "./model.js";
import { Live } from "./feed.js";
import { CityMap } from "./map.js";
import { AlertList } from "./alerts.js";
import { DistrictPanel } from "./districts.js";
import { DevicePanel } from "./device.js";
import { CameraPanel } from "./camera.js";
import { AlertCameras } from "./alertcams.js";
import { Cue } from "./cue.js";
import { ResponseState, IncidentPanel, WarningBand, UNIT_STATUSES, warningBadge } from "./response.js";
import { ResponseLayer, UNIT_COLOURS } from "./responsemap.js";
import { ReportLayer, reportLegend } from "./reports.js";
import { t, pick, applyStatic, setLanguage, language, onLanguage, clock } from "./i18n.js";

const $ = (sel) => document.querySelector(sel);
const status = $("#screen-status");
const model = new Model();
const response = new ResponseState();   // incidents, units, warnings (feed protocol §11)
const areaProps = new Map();    // area path -> {name, name_zh}
let config = null;
let map, alerts, districts, device, camera, alertCams, cue, live;
let incidents, band, responseLayer, reportLayer;

takeTokenFromFragment();
applyStatic(document);

// -- names --------------------------------------------------------------------------------------
function areaName(path) {
  if (!path) return "";
  const d = districtOf(path);
  const dn = areaProps.has(d) ? pick(areaProps.get(d)) : d.split("/").pop();
  if (path === d) return dn;
  const street = path.split("/").slice(0, 3).join("/");
  const sn = areaProps.has(street) ? pick(areaProps.get(street)) : path.split("/")[2];
  return `${dn} · ${sn}`;
}

// -- login --------------------------------------------------------------------------------------
const loginBox = $("#login");
onLoginNeeded(() => { live?.stop(); loginBox.hidden = false; });
loginBox.querySelector("form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const f = new FormData(ev.target);
  try {
    await login(f.get("username"), f.get("password"));
    loginBox.hidden = true;
    boot();
  } catch (e) {
    loginBox.querySelector(".err").textContent = e.message;
  }
});
for (const b of [$("#logout"), $("#staff-logout")]) {
  b.addEventListener("click", async () => { try { await api("/api/v1/auth/logout", { method: "POST" }); } catch { /* gone anyway */ } $("#staff-only").hidden = true; needLogin(); });
}
$("#lang").addEventListener("click", () => setLanguage(language() === "zh" ? "en" : "zh"));

// -- the screen ---------------------------------------------------------------------------------
let booted = false;
async function boot() {
  if (!token()) { needLogin(); return; }
  try {
    config = await api("/api/v1/screen/config");
  } catch (e) {
    if (e.status === 403) $("#staff-only").hidden = false;
    return;
  }
  $("#who").textContent = `${config.user} · ${config.role}`;
  if (!booted) { build(); booted = true; }
  alerts.actions = config.actions;
  camera.setRole(config.role);
  map.setTiles(config.tile_url, config.tile_attribution);
  try {
    const areas = await api("/api/v1/areas/geojson");
    for (const f of areas.features) if (f.properties?.area) areaProps.set(f.properties.area, f.properties);
    map.setAreas(areas);
    districts.setDistricts(areas.features.filter((f) => f.properties?.kind === "district").map((f) => f.properties.area));
  } catch (e) { console.warn("areas", e); }
  try {   // names above the districts, for warnings for a whole city or province
    for (const level of ["province", "city"]) for (const a of await api(`/api/v1/areas/tree?level=${level}`)) areaProps.set(a.path, a);
  } catch (e) { console.warn("area names", e); }
  live.filter = urlFilter();
  if (live.filter.area) map.focusArea(live.filter.area);
  live.start();
  districts.loadHistory().catch((e) => console.warn("history", e));
}

function build() {
  cue = new Cue({ banner: $("#banner"), button: $("#sound"), status });
  alertCams = new AlertCameras({
    onPick: (id) => openCamera(id, true),
    onPlace: (place) => map.linkAlert(place?.lat, place?.lon, place?.ids || []),
  });
  map = new CityMap($("#map"), model, {
    onSelect: ({ device: id, camera, incident, unit }) => {
      if (id) selectDevice(id);
      else if (camera) openCamera(camera);
      else if (incident != null) { incidents.selected = incident; incidents.render(); showTab("incidents"); }
      else if (unit != null) showTab("incidents");
    },
    onDrawn: report,
    onHover: hover,
  });
  alerts = new AlertList($("#alerts-panel"), model, {
    actions: config.actions, areaName,
    onPick: (a) => {
      const cam = a.source?.startsWith("camera:") ? a.source.slice(7) : null;   // a camera's own alert
      if (cam && model.cameraIndex.has(cam)) openCamera(cam, true);
      else if (a.device && model.index.has(a.device)) selectDevice(a.device, true);
      else if (a.area) map.focusArea(districtOf(a.area));
    },
    onActed: (view, action) => {
      model.lastActor.set(view.id, { actor: config.user, action, at: Date.now() });
      model.putAlert(view);
      if (action !== "dispatch" || view.state !== "raised") cue.clear(view.id);
    },
    onError: toast,
    dialog: askUnit,
    detail: alertCams,
  });
  districts = new DistrictPanel($("#district-panel"), model, {
    areaName,
    onPick: (area) => map.focusArea(area),
    onTotals: header,
    badge: (area) => warningBadge(response, area),
  });
  responseLayer = new ResponseLayer(response);
  map.layers.push(responseLayer);
  reportLayer = new ReportLayer(map);   // citizens' reports (reports.js)
  map.layers.push(reportLayer);
  incidents = new IncidentPanel($("#incident-panel"), response, {
    areaName,
    onPick: (i) => { if (i?.lat != null) focusPoint(i.lat, i.lon); else if (i) map.focusArea(districtOf(i.area)); },
    onCount: incidentCount,
  });
  band = new WarningBand($("#warnings"), response, { areaName });
  response.on(() => { map.invalidate(); incidents.invalidate(); band.render(); districts.invalidate(); });
  device = new DevicePanel($("#device-panel"), model, { areaName, onClose: () => { map.select(null); showTab("districts"); } });
  camera = new CameraPanel($("#camera-panel"), model, {
    areaName, onError: toast, onClose: () => { map.selectCamera(null); showTab("districts"); },
  });
  live = new Live({
    onSnapshot: (snap) => {
      model.loadSnapshot(snap);
      response.load(snap);
      reportLayer.load(snap);
      for (const a of model.alerts.values()) districts.countRaised(a);
      if (!map.fitted) map.fit();
    },
    onDelta: (delta) => {
      const changes = model.applyDelta(delta);
      response.apply(delta);
      reportLayer.apply(delta);
      if (delta.readings?.length) device.onReadings(delta.readings);
      if (delta.cameras?.length) onCameraChanges(delta.cameras);
      for (const ch of changes) onAlertChange(ch);
    },
    onStatus: (mode) => {
      const pill = $("#live");
      pill.dataset.mode = mode;
      pill.querySelector(".label").textContent = t(`live.${mode}`);
      status.dataset.mode = mode;
    },
  });
  // Readings touch the map and the counts; alert changes touch everything. The open device's panel
  // follows its own readings (device.onReadings), not every delta's.
  model.on((what) => {
    map.invalidate();
    districts.invalidate();
    if (what !== "values") { alerts.invalidate(); device.invalidate(); }
  });
  onLanguage(() => { map.invalidate(); alerts.render(); districts.render(); device.render(); camera.render(); alertCams.render(); incidents.render(); band.render(); cue.label(); legend(); live.setMode(live.mode); });
  $("#zoom-in").addEventListener("click", () => map.zoomAt(map.w / 2, map.h / 2, 1));
  $("#zoom-out").addEventListener("click", () => map.zoomAt(map.w / 2, map.h / 2, -1));
  $("#fit").addEventListener("click", () => { map.highlightArea = null; map.fit(); });
  for (const b of document.querySelectorAll(".tabs [data-show]")) b.addEventListener("click", () => showTab(b.dataset.show));
  setInterval(() => {
    $("#clock").textContent = clock(Date.now());
    incidents.tick();
    if (band.render()) { map.invalidate(); districts.invalidate(); }   // a warning's validity began or ended
  }, 1000);
  legend();
  window.hubScreen = {
    model, map, live, cue, alerts, districts, device, camera, alertCams,
    marker: (id) => map.markerOf(id),
    cameraMarker: (id) => map.cameraMarkerOf(id),
    select: (id) => selectDevice(id, true),
    openCamera: (id) => openCamera(id, true),
    response, incidents, responseLayer,
    incidentMarker: (id) => responseLayer.markerOf("incident", id),
    unitMarker: (id) => responseLayer.markerOf("unit", id),
    reports: reportLayer,
    reportMarker: (id) => reportLayer.markerOf(id),
  };
}

function onAlertChange(ch) {
  const a = ch.alert;
  if (!a) return;
  if (ch.change === "created") districts.countRaised(a);
  const becameRed = a.level === "red" && a.condition === "firing" && a.state === "raised" && (
    ch.change === "created" || ch.change === "refired" || ch.change === "escalated" ||
    (ch.change === "level_changed" && ch.from_level !== "red"));
  if (becameRed) cue.red(a, `${areaName(a.area || "")} ${a.device || ""} · ${a.summary}`);
  else if (a.state !== "raised" || a.condition !== "firing") cue.clear(a.id);
}

/** A screen for one district or one kind of sensor: /?area=demo/riverside&types=water_level&levels=red,orange */
function urlFilter() {
  const q = new URLSearchParams(location.search);
  const list = (k) => (q.get(k) ? q.get(k).split(",").map((x) => x.trim()).filter(Boolean) : null);
  return { area: q.get("area") || null, types: list("types"), levels: list("levels") };
}

function selectDevice(id, focus = false) {
  map.select(id);
  if (focus) map.focusDevice(id);
  device.show(id);
  showTab("device");
}

function showTab(name) { $("#side").dataset.tab = name; }

/** Centre the map on a place at street zoom (an incident picked in the list). */
function focusPoint(lat, lon) {
  map.touched = true;
  map.cx = mercX(lon); map.cy = mercY(lat);
  map.z = Math.max(map.z, 16);
  map.invalidate();
}

let overdueShown = -1;
/** The incidents tab's count (red while a step has overrun); the map redraws when that changes. */
function incidentCount(n, overdue) {
  const b = $("#incident-count");
  b.textContent = n ? String(n) : "";
  b.classList.toggle("over", overdue > 0);
  status.dataset.incidents = String(n);
  status.dataset.overdue = String(overdue);
  if (overdue !== overdueShown) { overdueShown = overdue; map.invalidate(); }
}

/** Open camera `id`'s panel and ring it on the map (`focus`: bring it into view first). */
function openCamera(id, focus = false) {
  if (focus) map.focusCamera(id, 16);
  map.selectCamera(id);
  camera.show(id);
  showTab("camera");
}

const placing = new Set();   // cameras whose place is being asked for
/**
 * Camera changes from the feed carry only the standing. A camera registered after the snapshot has
 * no place on the map yet: it is read once from the API. The open panel and the selected alert's
 * cameras follow the changes.
 */
function onCameraChanges(changes) {
  for (const ch of changes) {
    const c = model.cameraIndex.get(ch.id);
    if (!c || c.lat != null || placing.has(ch.id)) continue;
    placing.add(ch.id);
    api(`/api/v1/cameras/${encodeURIComponent(ch.id)}`)
      .then((d) => {
        const { id, name, department, lat, lon, heading, fov, area } = d;
        model.putCamera({ id, name, department, lat, lon, heading, fov, area });
        map.invalidate();
      })
      .catch((e) => console.warn("camera", ch.id, e))
      .finally(() => placing.delete(ch.id));
  }
  camera.onCameraChanges(changes);
  alertCams.onCameraChanges();
}

function askUnit(a) {
  const dlg = $("#dispatch");
  const form = dlg.querySelector("form");
  form.reset();
  dlg.querySelector(".summary").textContent = a.summary;
  dlg.showModal();
  return new Promise((resolve) => {
    dlg.addEventListener("close", () => {
      const f = new FormData(form);
      resolve(dlg.returnValue === "send" && f.get("unit") ? { unit: f.get("unit"), note: f.get("note") || "" } : null);
    }, { once: true });
  });
}

function toast(text) {
  const el = $("#toast");
  el.textContent = text;
  el.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { el.hidden = true; }, 6000);
}

function hover(it, x, y) {
  const tip = $("#tip");
  if (!it) { tip.hidden = true; return; }
  if (it.kind === "cluster") {
    const c = map.clusters[it.k];
    tip.textContent = `${c.count} ${t("devices")}`;
  } else if (it.tip) {
    tip.textContent = it.tip;   // a response marker (responsemap.js)
  } else if (it.kind === "device") {
    const d = model.device(model.ids[it.i]);
    const s = d.state;
    tip.textContent = `${d.id} · ${t("type." + d.type)} · ${t(LEVELS.includes(s) ? "level." + s : s)}`;
  } else {
    const c = model.cameraIndex.get(it.id);
    const found = c?.findings?.length ? ` · ${c.findings.map((f) => t("finding." + f)).join(", ")}` : "";
    tip.textContent = `${t("camera")} ${c?.name || it.id} · ${t("cam." + (c?.status || "unknown"))}${found}`;
  }
  tip.style.left = `${x + 14}px`; tip.style.top = `${y + 10}px`;
  tip.hidden = false;
}

function legend() {
  const dot = (c, label, sq = false) => `<span><i class="${sq ? "sq" : ""}" style="background:${c}"></i>${label}</span>`;
  $("#legend").innerHTML = [
    dot(COLOURS.online, t("online")), dot(COLOURS.offline, t("offline")), dot(COLOURS.unknown, t("unknown")),
    ...["blue", "yellow", "orange", "red"].map((lv) => dot(COLOURS[lv], t("level." + lv))),
    `<b>${t("cameras")}</b>`,
    ...CAMERA_STATES.map((st) => dot(CAMERA_COLOURS[st], t("cam." + st), true)),
    `<span><i class="tri"></i>${t("incident")}</span>`,
    reportLegend(),
    `<b>${t("unitsHead")}</b>`,
    ...UNIT_STATUSES.map((st) => dot(UNIT_COLOURS[st], t("ustatus." + st))),
  ].join("");
}

/** Header counts, from the district panel's pass over the devices. */
function header(total) {
  $("#h-devices").textContent = total.devices.toLocaleString();
  $("#h-online").textContent = total.online.toLocaleString();
  $("#h-offline").textContent = total.offline.toLocaleString();
  $("#h-unknown").textContent = total.unknown.toLocaleString();
  const by = { red: 0, orange: 0, yellow: 0, blue: 0 };
  for (const a of model.alerts.values()) if (a.level in by) by[a.level]++;
  $("#h-alerts").innerHTML = Object.entries(by).map(([lv, n]) => `<span class="chip lv-${lv}" title="${t("level." + lv)}"><i></i>${n}</span>`).join("");
}

/** What the last frame drew, for tests and for anyone debugging a wall screen. */
function report(m) {
  const d = status.dataset;
  d.devices = String(model.n);
  d.drawn = String(m.drawnCount || 0);
  d.clusters = String(m.clusters.length);
  d.cameras = String(m.camerasDrawn || 0);
  d.alerting = String(model.level.reduce((n, x) => n + (x > 0 ? 1 : 0), 0));
  d.alerts = String(model.alerts.size);
  d.frames = String(m.frames);
  d.drawMs = m.lastMs.toFixed(2);
  d.zoom = m.z.toFixed(2);
  d.seq = String(model.seq ?? "");
  d.version = String(model.version);
  d.areas = String(m.features.length);
  d.units = String(response.units.size);
  d.warnings = String(response.inForce().length);
  d.warned = String(responseLayer.warnedDrawn);
}

boot();
