// What every view shares: the token, calls to the API, building elements, formatting.
export const V1 = "service/process-exec/v1";
export const PROCESSES = "service/process/v1";
export const STATUSES = ["triggered", "running", "waiting", "retrying", "success", "warning", "failed"];
export const TRIGGERS = ["scheduled", "manual", "subscription"];
export const TERMINAL = new Set(["success", "warning", "failed"]);
const KEY = "procexec.token";

export const session = {
  get token() { return sessionStorage.getItem(KEY); },
  set token(value) { sessionStorage.setItem(KEY, value); },
  clear() { sessionStorage.removeItem(KEY); },
  // set by main.js: what a 401 does (the login form, with the API's message)
  onUnauthorized: (message) => {},
};

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function errorText(response) {
  try {
    const body = await response.json();
    if (body && body.error) return body.error;
  } catch (_) { /* not JSON */ }
  return response.headers.get("x-odsl-error") || `${response.status} ${response.statusText}`;
}

export function authHeaders(extra = {}) {
  return { Authorization: `Bearer ${session.token}`, ...extra };
}

// A call to the API: its JSON answer and headers, or an ApiError with the API's message.
export async function api(path, { method = "GET", body, signal } = {}) {
  if (!session.token) {
    session.onUnauthorized("");
    throw new ApiError(401, "log in first");
  }
  const headers = authHeaders({ Accept: "application/json" });
  const init = { method, headers, signal, cache: "no-store" };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    headers["Content-Type"] = "application/json";
  }
  const response = await fetch(path, init);
  if (response.status === 401) {
    const message = await errorText(response);
    session.onUnauthorized(message);
    throw new ApiError(401, message);
  }
  if (!response.ok) throw new ApiError(response.status, await errorText(response));
  return { data: await response.json(), headers: response.headers, status: response.status };
}

export async function checkUnauthorized(response) {
  if (response.status === 401) {
    const message = await errorText(response);
    session.onUnauthorized(message);
    throw new ApiError(401, message);
  }
  if (!response.ok) throw new ApiError(response.status, await errorText(response));
}

// h("div", {class: "x", onclick: f}, "text", child): an element, its text never read as HTML
export function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else if (name === "class") element.className = value;
    else if (name === "dataset") Object.assign(element.dataset, value);
    else if (value === true) element.setAttribute(name, "");
    else element.setAttribute(name, String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

export function slotWaiting(doc) {
  return doc.status === "triggered" && (doc.message || "").startsWith("Waiting for a slot");
}

// The status as a coloured badge; a run waiting for a concurrency slot says so.
export function badge(doc) {
  const slot = slotWaiting(doc);
  const label = slot ? "waiting for a slot" : doc.status || "?";
  return h("span", { class: `badge st-${slot ? "slot" : doc.status}`, title: doc.message || "" }, label);
}

export function fmtTime(iso) {
  if (!iso) return "";
  return iso.replace("T", " ").replace(/\.\d+Z$|Z$/, "") + " UTC";
}

export function fmtClock(iso) {
  return iso ? iso.slice(11, 19) : "";
}

export function fmtSeconds(seconds) {
  if (!(seconds >= 0)) return "";
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 1 : 0)} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min ${Math.round(seconds % 60)} s`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return `${hours} h ${minutes % 60} min`;
  return `${Math.floor(hours / 24)} d ${hours % 24} h`;
}

// From start to end, or to now while it runs.
export function duration(start, end) {
  if (!start) return "";
  const until = end ? Date.parse(end) : Date.now();
  return fmtSeconds((until - Date.parse(start)) / 1000);
}

export function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    if (signal) signal.addEventListener("abort", () => { clearTimeout(timer); resolve(); });
  });
}

export function errorBox(message) {
  return h("p", { class: "error", role: "alert" }, message);
}
