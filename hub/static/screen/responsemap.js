// The response on the city map: warned areas outlined in their warning's colour (under the markers),
// response units as round badges with their kind's letter in their status colour, and open incidents
// as warning triangles in their level's colour (over the markers), an overrun step pulsing red.
//
// A layer of CityMap (map.layers): `under` and `over` are called in each frame, `overlay` with the
// overlay's pulse. There are tens to hundreds of these, not thousands: one pass each per frame, and
// each marker joins the map's hit-test items, so hover and click work as for devices.

import { COLOURS, mercX, mercY } from "./model.js";
import { t } from "./i18n.js";
import { within } from "./response.js";

export const UNIT_COLOURS = { available: "#56d4dd", dispatched: "#d2a8ff", on_scene: "#ffffff", off_duty: "#6e7681" };
const WARNING_RANK = { blue: 1, yellow: 2, orange: 3, red: 4 };

export class ResponseLayer {
  constructor(state) {
    this.state = state;
    this.drawn = new Map();     // "incident:<id>" | "unit:<id>" -> {x, y, colour}
    this.overdue = [];          // [x, y] of overrun incidents drawn in the last frame
    this.warnedDrawn = 0;
  }

  /** Warned areas: an area a warning is for, or a district under a warning for an area above it. */
  under(ctx, map) {
    const warns = this.state.inForce();
    this.warnedDrawn = 0;
    if (!warns.length) return;
    ctx.lineJoin = "round";
    for (const f of map.features) {
      if (f.kind !== "district" && f.kind !== "street") continue;
      let rank = 0, level = null;
      for (const w of warns) {
        const hit = f.kind === "district" ? within(f.area, w.area) : f.area === w.area;
        if (hit && WARNING_RANK[w.level] > rank) { rank = WARNING_RANK[w.level]; level = w.level; }
      }
      if (!level) continue;
      map.trace(ctx, f);
      ctx.strokeStyle = COLOURS[level];
      ctx.lineWidth = (f.kind === "district" ? 4 : 3) * map.ui;
      ctx.setLineDash([10 * map.ui, 5 * map.ui]);
      ctx.stroke();
      ctx.setLineDash([]);
      this.warnedDrawn++;
    }
  }

  /** Units, then incidents on top; each joins the map's hit-test items with its tooltip. */
  over(ctx, map) {
    const s = map.scale, ox = map.w / 2 - map.cx * s, oy = map.h / 2 - map.cy * s, ui = map.ui;
    const pad = 20 * ui;
    const inView = (x, y) => x > -pad && y > -pad && x < map.w + pad && y < map.h + pad;
    const now = this.state.now();
    this.drawn.clear();
    this.overdue = [];
    ctx.textAlign = "center"; ctx.textBaseline = "middle";
    const ur = (map.z < 14 ? 6 : 8) * ui;
    ctx.font = `700 ${ur * 1.1}px system-ui, "Noto Sans CJK SC", sans-serif`;
    for (const u of this.state.units.values()) {
      if (u.lat == null || u.lon == null) continue;
      const x = mercX(u.lon) * s + ox, y = mercY(u.lat) * s + oy;
      if (!inView(x, y)) continue;
      const colour = UNIT_COLOURS[u.status] || UNIT_COLOURS.off_duty;
      ctx.beginPath(); ctx.arc(x, y, ur, 0, 2 * Math.PI);
      ctx.fillStyle = colour; ctx.fill();
      ctx.lineWidth = 2 * ui; ctx.strokeStyle = "#0b121a"; ctx.stroke();
      ctx.fillStyle = "#0b121a";
      ctx.fillText(t("ukindShort." + u.kind), x, y + 0.5 * ui);
      this.drawn.set(`unit:${u.id}`, { x, y, colour, status: u.status });
      map.items.push({ kind: "unit", id: u.id, x, y, r: ur + 2 * ui, tip: `${u.name} · ${t("ukind." + u.kind)} · ${t("ustatus." + u.status)}` });
    }
    const r = (map.z < 14 ? 9 : 11) * ui;
    ctx.font = `800 ${r}px system-ui, sans-serif`;
    for (const i of this.state.incidents.values()) {
      if (i.lat == null || i.lon == null) continue;
      const x = mercX(i.lon) * s + ox, y = mercY(i.lat) * s + oy;
      if (!inView(x, y)) continue;
      const colour = COLOURS[i.level] || COLOURS.info;
      ctx.beginPath();
      ctx.moveTo(x, y - r); ctx.lineTo(x + r * 0.95, y + r * 0.7); ctx.lineTo(x - r * 0.95, y + r * 0.7); ctx.closePath();
      ctx.fillStyle = colour; ctx.fill();
      ctx.lineWidth = 2 * ui; ctx.strokeStyle = "#ffffff"; ctx.stroke();
      ctx.fillStyle = "#0b121a";
      ctx.fillText("!", x, y + r * 0.2);
      const late = i._deadline != null && now > i._deadline;
      if (late) this.overdue.push([x, y]);
      this.drawn.set(`incident:${i.id}`, { x, y, colour, level: i.level, overdue: late });
      map.items.push({ kind: "incident", id: i.id, x, y, r: r + 2 * ui, tip: `${t("incident")} #${i.id} · ${i.title} · ${t("istate." + i.state)}` });
    }
  }

  /** A red ring pulsing around each incident whose step overran; true while there is one. */
  overlay(ctx, map) {
    if (!this.overdue.length) return false;
    const phase = (performance.now() % 1400) / 1400;
    ctx.strokeStyle = `rgba(248,81,73,${1 - phase})`;
    ctx.lineWidth = 2.5 * map.ui;
    for (const [x, y] of this.overdue) {
      ctx.beginPath(); ctx.arc(x, y, (12 + phase * 18) * map.ui, 0, 2 * Math.PI); ctx.stroke();
    }
    return true;
  }

  /** Where an incident or unit was drawn in the last frame, and in which colour (for tests too). */
  markerOf(kind, id) { return this.drawn.get(`${kind}:${id}`) || null; }
}
