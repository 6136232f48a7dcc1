// A small time-series chart on canvas: the last 24 h of one metric as a min-max band with the mean
// line (from the readings API's buckets), plus the readings that arrived live since (dots joined on).

import { language } from "./i18n.js";

export class Chart {
  constructor(canvas) {
    this.c = canvas;
    this.ctx = canvas.getContext("2d");
    this.data = null;
    this.hover = null;
    this.pending = false;
    new ResizeObserver(() => this.invalidate()).observe(canvas);
    canvas.addEventListener("pointermove", (e) => { this.hover = e.offsetX; this.invalidate(); });
    canvas.addEventListener("pointerleave", () => { this.hover = null; this.invalidate(); });
  }

  /** data: {start, end, unit, ts[], min[], max[], mean[], live: [[ts, v], ...]} (times in ms). */
  set(data) { this.data = data; this.invalidate(); }

  addLive(ts, v) {
    if (!this.data) return;
    this.data.live.push([ts, v]);
    if (ts > this.data.end) this.data.end = ts;
    this.invalidate();
  }

  invalidate() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => { this.pending = false; this.draw(); });
  }

  draw() {
    const c = this.c, ctx = this.ctx, dpr = window.devicePixelRatio || 1;
    const w = c.clientWidth, h = c.clientHeight;
    if (!w || !h) return;
    if (c.width !== Math.round(w * dpr)) c.width = Math.round(w * dpr);
    if (c.height !== Math.round(h * dpr)) c.height = Math.round(h * dpr);
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    const d = this.data;
    const fs = parseFloat(getComputedStyle(c).fontSize) || 12;
    ctx.font = `${fs * 0.85}px system-ui, "Noto Sans CJK SC", sans-serif`;
    if (!d) return;
    const vals = [];
    for (let k = 0; k < d.ts.length; k++) { if (d.min[k] != null) vals.push(d.min[k]); if (d.max[k] != null) vals.push(d.max[k]); }
    for (const [, v] of d.live) if (v != null && isFinite(v)) vals.push(v);
    const padL = fs * 3.6, padR = fs * 0.8, padT = fs * 0.8, padB = fs * 1.8;
    const pw = w - padL - padR, ph = h - padT - padB;
    if (!vals.length) {
      ctx.fillStyle = "#8aa0b4"; ctx.textAlign = "center"; ctx.textBaseline = "middle";
      ctx.fillText(d.empty || "–", w / 2, h / 2);
      return;
    }
    let lo = Math.min(...vals), hi = Math.max(...vals);
    if (hi - lo < 1e-9) { lo -= 1; hi += 1; }
    const [t0, t1] = [d.start, d.end];
    const X = (t) => padL + ((t - t0) / (t1 - t0)) * pw;
    const ticks = niceTicks(lo, hi, Math.max(2, Math.floor(ph / (fs * 2.2))));
    lo = Math.min(lo, ticks[0]); hi = Math.max(hi, ticks[ticks.length - 1]);
    const Y = (v) => padT + (1 - (v - lo) / (hi - lo)) * ph;
    // grid and axes
    ctx.strokeStyle = "rgba(138,160,180,0.18)"; ctx.lineWidth = 1;
    ctx.fillStyle = "#8aa0b4"; ctx.textAlign = "right"; ctx.textBaseline = "middle";
    for (const v of ticks) { const y = Y(v); ctx.beginPath(); ctx.moveTo(padL, y); ctx.lineTo(w - padR, y); ctx.stroke(); ctx.fillText(fmt(v), padL - 4, y); }
    ctx.textAlign = "center"; ctx.textBaseline = "top";
    const hour = 3600e3, step = (t1 - t0) > 12 * hour ? 6 * hour : hour;
    for (let t = Math.ceil(t0 / step) * step; t <= t1; t += step) {
      const x = X(t);
      ctx.beginPath(); ctx.moveTo(x, padT); ctx.lineTo(x, padT + ph); ctx.stroke();
      ctx.fillText(new Date(t).toLocaleTimeString(language() === "zh" ? "zh-CN" : "en-GB", { hour: "2-digit", minute: "2-digit" }), x, padT + ph + 4);
    }
    // min-max band, then the mean
    ctx.fillStyle = "rgba(47,129,247,0.22)";
    ctx.beginPath();
    let open = false;
    const up = [];
    for (let k = 0; k < d.ts.length; k++) {
      if (d.min[k] == null) { if (open) { closeBand(ctx, up, X, Y); open = false; } continue; }
      const x = X(d.ts[k] + d.every / 2);
      if (!open) { ctx.moveTo(x, Y(d.max[k])); open = true; up.length = 0; } else ctx.lineTo(x, Y(d.max[k]));
      up.push([d.ts[k] + d.every / 2, d.min[k]]);
    }
    if (open) closeBand(ctx, up, X, Y);
    ctx.fill();
    ctx.strokeStyle = "#58a6ff"; ctx.lineWidth = 1.6; ctx.beginPath();
    let pen = false;
    for (let k = 0; k < d.ts.length; k++) {
      if (d.mean[k] == null) { pen = false; continue; }
      const x = X(d.ts[k] + d.every / 2), y = Y(d.mean[k]);
      if (pen) ctx.lineTo(x, y); else { ctx.moveTo(x, y); pen = true; }
    }
    ctx.stroke();
    // live readings
    ctx.fillStyle = "#f0f6fc";
    for (const [t, v] of d.live) { if (v == null || t < t0) continue; ctx.beginPath(); ctx.arc(X(t), Y(v), 2.5, 0, 2 * Math.PI); ctx.fill(); }
    if (this.hover != null && this.hover >= padL) {
      const t = t0 + ((this.hover - padL) / pw) * (t1 - t0);
      const v = valueAt(d, t);
      ctx.strokeStyle = "rgba(216,226,236,0.5)"; ctx.beginPath(); ctx.moveTo(this.hover, padT); ctx.lineTo(this.hover, padT + ph); ctx.stroke();
      if (v != null) {
        ctx.fillStyle = "#d8e2ec"; ctx.textAlign = this.hover > w / 2 ? "right" : "left"; ctx.textBaseline = "top";
        ctx.fillText(`${fmt(v)} ${d.unit || ""}  ${new Date(t).toLocaleTimeString()}`, this.hover + (this.hover > w / 2 ? -6 : 6), padT);
      }
    }
  }
}

function closeBand(ctx, up, X, Y) {
  for (let k = up.length - 1; k >= 0; k--) ctx.lineTo(X(up[k][0]), Y(up[k][1]));
  ctx.closePath();
}

function valueAt(d, t) {
  let best = null, bd = Infinity;
  for (const [lt, v] of d.live) { const dd = Math.abs(lt - t); if (dd < bd) { bd = dd; best = v; } }
  for (let k = 0; k < d.ts.length; k++) { if (d.mean[k] == null) continue; const dd = Math.abs(d.ts[k] + d.every / 2 - t); if (dd < bd) { bd = dd; best = d.mean[k]; } }
  return bd < 30 * 60e3 ? best : null;
}

export function fmt(v) {
  if (v == null || !isFinite(v)) return "–";
  const a = Math.abs(v);
  return a >= 1000 ? v.toFixed(0) : a >= 100 ? v.toFixed(1) : a >= 1 ? v.toFixed(2) : v.toFixed(3);
}

function niceTicks(lo, hi, count) {
  const span = hi - lo, raw = span / count, mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((k) => k * mag).find((s) => span / s <= count) || 10 * mag;
  const out = [];
  for (let v = Math.floor(lo / step) * step; v <= hi + step * 0.999; v += step) out.push(+v.toFixed(10));
  return out;
}
