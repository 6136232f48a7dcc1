// Camera pictures for <img> tags. An <img src> cannot send the Authorization header, and a token in
// a URL would land in access logs and the browser's history, so a picture is fetched with the header
// as a blob and shown through an object URL. A stored snapshot's name never changes
// (video/views.py: /cameras/{id}/snapshots/{name}), so each is fetched once and kept in a small LRU;
// object URLs that fall out of it are revoked, so a wall left on for weeks does not grow.

import { token, needLogin, ApiError } from "./api.js";

const KEEP = 120;                    // pictures kept: a camera panel and a few alerts' strips
const cache = new Map();             // path -> Promise<object URL>, oldest first

/** An object URL for the JPEG at `path` (an API path), fetched with the user's token. */
export function pictureUrl(path) {
  let p = cache.get(path);
  if (p) { cache.delete(path); cache.set(path, p); return p; }   // most recently used last
  p = load(path);
  cache.set(path, p);
  p.catch(() => cache.delete(path));                            // a failure is asked again next time
  while (cache.size > KEEP) {
    const [old, url] = cache.entries().next().value;
    cache.delete(old);
    url.then((u) => URL.revokeObjectURL(u), () => {});
  }
  return p;
}

async function load(path) {
  const t = token();
  if (!t) { needLogin(); throw new ApiError(401, { detail: "log in" }); }
  const r = await fetch(path, { headers: { Authorization: `Bearer ${t}` } });
  if (r.status === 401) { needLogin(); throw new ApiError(401, null); }
  if (!r.ok) throw new ApiError(r.status, await r.json().catch(() => null));
  return URL.createObjectURL(await r.blob());
}

/**
 * Show the picture at `path` in `img`; without a path, or when it cannot be had, the image gets the
 * class "missing" (the CSS shows a placeholder). A later call for the same image wins over an
 * earlier one still loading.
 */
export async function showPicture(img, path) {
  if (img.dataset.src === (path || "") && (img.src || !path)) return;
  img.dataset.src = path || "";
  if (!path) { img.removeAttribute("src"); img.classList.add("missing"); return; }
  img.classList.add("loading");
  try {
    const url = await pictureUrl(path);
    if (img.dataset.src !== path) return;
    img.src = url;
    img.classList.remove("missing");
  } catch (e) {
    if (img.dataset.src !== path) return;
    console.warn("picture", path, e);
    img.removeAttribute("src");
    img.classList.add("missing");
  } finally {
    if (img.dataset.src === path) img.classList.remove("loading");
  }
}
