// REST calls with the bearer token. The token comes from the login form or from the page's
// fragment (/#token=...: a wall screen's API token; the fragment never reaches the server's logs).

const KEY = "hub-token";
const loginHandlers = [];

export function takeTokenFromFragment() {
  const frag = new URLSearchParams(location.hash.slice(1));
  if (frag.get("token")) {
    sessionStorage.setItem(KEY, frag.get("token"));
    history.replaceState(null, "", location.pathname + location.search);
  }
}

export function token() { return sessionStorage.getItem(KEY); }
export function setToken(t) { sessionStorage.setItem(KEY, t); }
export function onLoginNeeded(fn) { loginHandlers.push(fn); }

export function needLogin() {
  sessionStorage.removeItem(KEY);
  for (const fn of loginHandlers) fn();
}

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.detail || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

/** fetch() with the token; JSON back. 401 asks for a login; other errors throw ApiError. */
export async function api(path, { method = "GET", body } = {}) {
  const t = token();
  if (!t) { needLogin(); throw new ApiError(401, { detail: "log in" }); }
  const headers = { Authorization: `Bearer ${t}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (r.status === 401) { needLogin(); throw new ApiError(401, await r.json().catch(() => null)); }
  if (r.status === 204) return null;
  const data = await r.json().catch(() => null);
  if (!r.ok) throw new ApiError(r.status, data);
  return data;
}

export async function login(username, password) {
  const r = await fetch("/api/v1/auth/login", {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ username, password }),
  });
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new ApiError(r.status, body);
  setToken(body.access_token);
  return body;
}
