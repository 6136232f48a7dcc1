// Citizens' reports on the city map (issue 11): 12345 hotline tickets and grid workers' reports, each
// a magenta pin with its category's letter; a report linked to a sensor alert gets a white ring, so
// a duty officer sees at a glance where people on the street back up (or contradict) the sensors.
//
// A layer of CityMap (map.layers), fed by the situation feed: the snapshot's `reports` (placed
// reports of the past hours) and each delta's `reports` entries ({action: "reported", report}).
// Reports older than the snapshot's window drop off at the next snapshot. Tens to a few thousand:
// one pass per frame, and each pin joins the map's hit-test items with its tooltip.

import { mercX, mercY } from "./model.js";
import { language } from "./i18n.js";

export const REPORT_COLOUR = "#f778ba";

const LABELS = {
  en: {
    report: "Citizen report",
    flooding: "flooding", blocked_drain: "blocked drain", open_manhole: "open manhole",
    gas_smell: "gas smell", road_collapse: "road collapse", other: "other",
    linked: "linked to alert",
  },
  zh: {
    report: "市民上报",
    flooding: "积水内涝", blocked_drain: "排水堵塞", open_manhole: "井盖缺失",
    gas_smell: "燃气异味", road_collapse: "路面塌陷", other: "其他",
    linked: "关联告警",
  },
};
const LETTER = { flooding: "W", blocked_drain: "D", open_manhole: "M", gas_smell: "G", road_collapse: "R" };

function label(key) {
  const lang = String(language() || "en").startsWith("zh") ? "zh" : "en";
  return LABELS[lang][key] ?? LABELS.en[key] ?? key;
}

/** The legend's entry for report pins. */
export function reportLegend() {
  return `<span><i style="background:${REPORT_COLOUR}"></i>${label("report")}</span>`;
}

export class ReportLayer {
  constructor(map) {
    this.map = map;
    this.reports = new Map();   // id -> the API's ReportView
    this.drawn = new Map();     // id -> {x, y, colour, linked}
  }

  /** A snapshot replaces what is known. */
  load(snap) {
    this.reports.clear();
    for (const r of snap.reports || []) this.reports.set(r.id, r);
    this.map.invalidate();
  }

  /** A delta adds the reports made since. */
  apply(delta) {
    if (!delta.reports?.length) return;
    for (const e of delta.reports) if (e.report) this.reports.set(e.report.id, e.report);
    this.map.invalidate();
  }

  /** Pins over the device markers; each joins the map's hit-test items. */
  over(ctx, map) {
    const s = map.scale, ox = map.w / 2 - map.cx * s, oy = map.h / 2 - map.cy * s, ui = map.ui;
    const r = (map.z < 14 ? 6 : 8) * ui, pad = 3 * r;
    this.drawn.clear();
    ctx.textAlign = "center"; ctx.textBaseline = "middle";
    ctx.font = `800 ${r * 1.1}px system-ui, sans-serif`;
    for (const rep of this.reports.values()) {
      if (rep.lat == null || rep.lon == null) continue;
      const x = mercX(rep.lon) * s + ox, y = mercY(rep.lat) * s + oy;
      if (x < -pad || y < -pad || x > map.w + pad || y > map.h + pad) continue;
      const tip = y - r * 2.2;                      // the pin's head sits above the point
      ctx.beginPath();
      ctx.moveTo(x, y);
      ctx.lineTo(x - r * 0.7, tip + r * 0.6);
      ctx.arc(x, tip, r, Math.PI * 0.8, Math.PI * 0.2);
      ctx.closePath();
      ctx.fillStyle = REPORT_COLOUR; ctx.fill();
      const linked = (rep.links || []).some((l) => l.kind === "alert");
      ctx.lineWidth = (linked ? 2.5 : 1.5) * ui;
      ctx.strokeStyle = linked ? "#ffffff" : "#0b121a";
      ctx.stroke();
      ctx.fillStyle = "#0b121a";
      ctx.fillText(LETTER[rep.category] || "?", x, tip + 0.5 * ui);
      this.drawn.set(rep.id, { x, y: tip, r, colour: REPORT_COLOUR, linked });
      const when = new Date(rep.at).toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
      const text = rep.text ? ` · ${rep.text.slice(0, 60)}` : "";
      const links = linked ? ` · ${label("linked")}` : "";
      map.items.push({
        kind: "report", id: rep.id, x, y: tip, r: r + 2 * ui,
        tip: `${label("report")} #${rep.id} · ${label(rep.category)} · ${rep.source} · ${when}${text}${links}`,
      });
    }
  }

  /** Where a report was drawn in the last frame (for tests too). */
  markerOf(id) { return this.drawn.get(id) || null; }
}
