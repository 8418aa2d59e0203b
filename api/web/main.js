// The page: log in and out, and show the view the address's hash names.
import { V1, api, session, ApiError } from "./core.js";
import { listView } from "./list.js";
import { runView } from "./run.js";
import { processesView } from "./processes.js";

const view = document.getElementById("view");
const login = document.getElementById("login");
const form = document.getElementById("login-form");
const tokenInput = document.getElementById("token");
const loginError = document.getElementById("login-error");
const logout = document.getElementById("logout");
const nav = document.getElementById("nav");
let current = null; // the view shown: { stop() }

function stopView() {
  if (current) current.stop();
  current = null;
  view.replaceChildren();
}

function showLogin(message) {
  stopView();
  session.clear();
  view.hidden = true;
  nav.hidden = logout.hidden = true;
  document.getElementById("live").hidden = true;
  login.hidden = false;
  loginError.textContent = message || "";
  tokenInput.value = "";
  tokenInput.focus();
}

function route() {
  if (!session.token) return showLogin("");
  stopView();
  login.hidden = true;
  view.hidden = false;
  nav.hidden = logout.hidden = false;
  const hash = location.hash.replace(/^#\/?/, "");
  const [page, ...rest] = hash.split("/");
  for (const link of nav.querySelectorAll("a")) {
    link.classList.toggle("active", link.dataset.view === (page === "processes" ? "processes" : "list"));
  }
  if (page === "run" && rest.length) current = runView(view, decodeURIComponent(rest.join("/")));
  else if (page === "processes") current = processesView(view);
  else current = listView(view);
}

session.onUnauthorized = (message) => showLogin(message || "Your token was refused: log in again.");

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const token = tokenInput.value.trim();
  if (!token) return;
  session.token = token;
  loginError.textContent = "";
  try {
    await api(`${V1}?_limit=1&_project=_id`); // a 401 brings the form back with its message
  } catch (error) {
    if (!(error instanceof ApiError) || error.status !== 401) {
      loginError.textContent = error.message;
    }
    if (error instanceof ApiError && error.status === 401) return;
  }
  route();
});

logout.addEventListener("click", () => {
  showLogin("");
  loginError.textContent = "Logged out.";
});

window.addEventListener("hashchange", route);
route();
