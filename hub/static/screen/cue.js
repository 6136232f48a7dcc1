// The red-alert cue: a beep made with WebAudio (no sound file to ship) and a flashing frame with a
// banner that stays until someone dismisses it or the alert is acknowledged.
//
// Browsers start audio only after a click on the page; until then the sound button says so, and the
// first click anywhere unlocks it. A wall screen can be started with its browser's autoplay policy
// relaxed (chromium --autoplay-policy=no-user-gesture-required).

import { t } from "./i18n.js";

export class Cue {
  constructor({ banner, button, status }) {
    this.banner = banner;
    this.button = button;
    this.status = status;
    this.muted = localStorage.getItem("hub-muted") === "1";
    this.ctx = null;
    this.cues = 0;
    this.beeps = 0;
    this.current = null;   // the alert id the banner shows
    button.addEventListener("click", (e) => { e.stopPropagation(); this.unlock(); this.muted = !this.muted; localStorage.setItem("hub-muted", this.muted ? "1" : "0"); this.label(); });
    document.addEventListener("pointerdown", () => this.unlock(), { once: true });
    banner.querySelector("button").addEventListener("click", () => this.clear());
    this.unlock(true);
    this.label();
  }

  unlock(quiet = false) {
    try {
      if (!this.ctx) this.ctx = new AudioContext();
      if (this.ctx.state === "suspended") this.ctx.resume().then(() => this.label()).catch(() => {});
    } catch (e) { if (!quiet) console.warn("no audio", e); }
    this.label();
  }

  label() {
    const blocked = !this.ctx || this.ctx.state !== "running";
    this.button.textContent = this.muted ? t("soundOff") : blocked ? t("soundBlocked") : t("soundOn");
    this.button.classList.toggle("blocked", !this.muted && blocked);
  }

  /** A new red alert: flash, banner, and three two-tone beeps. */
  red(alert, text) {
    this.cues++;
    this.current = alert.id;
    this.banner.querySelector(".text").textContent = text;
    this.banner.hidden = false;
    document.body.classList.remove("flash");
    void document.body.offsetWidth; // restart the CSS animation
    document.body.classList.add("flash");
    if (!this.muted) this.beep();
    this.report();
  }

  beep() {
    const ctx = this.ctx;
    if (!ctx || ctx.state !== "running") return;
    const t0 = ctx.currentTime + 0.02;
    for (let k = 0; k < 6; k++) {
      const osc = ctx.createOscillator(), gain = ctx.createGain();
      osc.type = "square";
      osc.frequency.value = k % 2 ? 660 : 990;
      const at = t0 + k * 0.22;
      gain.gain.setValueAtTime(0.0001, at);
      gain.gain.exponentialRampToValueAtTime(0.25, at + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, at + 0.19);
      osc.connect(gain).connect(ctx.destination);
      osc.start(at); osc.stop(at + 0.2);
    }
    this.beeps++;
  }

  /** Take the banner down (dismissed, or its alert was acknowledged or closed). */
  clear(alertId) {
    if (alertId !== undefined && alertId !== this.current) return;
    this.banner.hidden = true;
    this.current = null;
    document.body.classList.remove("flash");
    this.report();
  }

  report() {
    this.status.dataset.cues = String(this.cues);
    this.status.dataset.beeps = String(this.beeps);
    this.status.dataset.banner = this.banner.hidden ? "" : String(this.current);
  }
}
