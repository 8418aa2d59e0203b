// A run's page: its status, message and details, its parameters, the timeline of its phases,
// its log following live, and the buttons to cancel it or rerun it.
import { TERMINAL, V1, api, badge, duration, errorBox, fmtTime, h } from "./core.js";
import { followRun } from "./stream.js";
import { logPane, timeline } from "./timeline.js";

function details(doc) {
  const rows = [
    ["Message", doc.message], ["Reason", doc.reason], ["Trigger", doc.trigger],
    ["Environment", doc.environment], ["Run as", doc.runAs], ["Start", fmtTime(doc.start)],
    ["End", fmtTime(doc.end)], ["Duration", duration(doc.start, doc.end)],
    ["Loader message", doc.loaderMessage],
  ];
  const list = h("dl", { class: "details", id: "details" });
  for (const [term, value] of rows) {
    if (value) list.append(h("dt", {}, term), h("dd", { dataset: { field: term } }, value));
  }
  const data = doc.data || {};
  for (const kind of ["series", "curves"]) {
    for (const [date, ids] of Object.entries(data[kind] || {})) {
      list.append(h("dt", {}, `Data updated: ${kind} ${date}`),
        h("dd", {}, h("details", {}, h("summary", {}, `${ids.length} ${kind}`),
          h("div", { class: "ids" }, ids.join(" ")))));
    }
  }
  return list;
}

function parameters(values) {
  if (!values || !Object.keys(values).length) return h("p", { class: "muted" }, "No parameters.");
  return h("table", { class: "params", id: "parameters" }, Object.entries(values).map(([name, value]) =>
    h("tr", {}, h("th", {}, name), h("td", {}, h("code", {}, JSON.stringify(value))))));
}

export function runView(root, id) {
  const controller = new AbortController();
  const signal = controller.signal;
  const state = { doc: null, phases: [], replaying: false };
  const title = h("h1", {}, "Execution");
  const status = h("span", { id: "run-status" });
  const connection = h("span", { class: "muted", id: "connection" });
  const actions = h("div", { class: "actions" });
  const actionError = h("div", { id: "action-error" });
  const info = h("div", {});
  const params = h("div", {});
  const phasesBox = h("div", {});
  const log = logPane();
  root.append(
    h("section", { class: "card" },
      h("div", { class: "card-head" }, h("a", { href: "#/" }, "← Executions"), connection),
      h("div", { class: "run-head" }, title, status, actions), actionError, info),
    h("section", { class: "card" }, h("h2", {}, "Phases"), phasesBox),
    log.element,
    h("section", { class: "card" }, h("h2", {}, "Parameters"), params));

  function drawStatus() {
    const doc = state.doc;
    status.replaceChildren(badge(doc));
    info.replaceChildren(details(doc));
    phasesBox.replaceChildren(timeline(doc, state.phases));
    drawActions();
  }

  function act(label, path, describe) {
    const button = h("button", { type: "button", id: `${label.toLowerCase()}-button` }, label);
    button.addEventListener("click", async () => {
      button.disabled = true;
      actionError.replaceChildren();
      try {
        const { data } = await api(path(), { method: "POST", signal });
        if (data && data._id && data._id !== id) location.hash = `#/run/${encodeURIComponent(data._id)}`;
        else await reload();
      } catch (error) {
        if (signal.aborted) return;
        actionError.replaceChildren(errorBox(`${describe}: ${error.message}`));
        if (error.status !== 403) button.disabled = false; // a 403 holds for this token
      }
    });
    return button;
  }

  const from = h("select", { id: "rerun-from", title: "the phase the rerun starts from" });
  const cancel = act("Cancel", () => `${V1}/${encodeURIComponent(id)}/cancel`, "Cancel refused");
  const rerun = act("Rerun", () => {
    const chosen = from.value ? `?from=${encodeURIComponent(from.value)}` : "";
    return `${V1}/${encodeURIComponent(id)}/rerun${chosen}`;
  }, "Rerun refused");

  function drawActions() {
    const ended = TERMINAL.has(state.doc.status);
    const failed = state.doc.status === "failed";
    const options = [failed ? h("option", { value: "" }, "from the failed phase") : null,
      h("option", { value: "start" }, "from the start"),
      ...state.phases.map((phase) => h("option", { value: phase.name }, `from ${phase.name}`))].filter(Boolean);
    if (from.options.length !== options.length) from.replaceChildren(...options);
    actions.replaceChildren(...(ended ? [from, rerun] : [cancel]));
  }

  async function reload() {
    const { data } = await api(`${V1}/${encodeURIComponent(id)}?_params=true`, { signal });
    state.doc = data;
    state.phases = (data.phases || []).map((phase) => ({ ...phase }));
    title.textContent = data.name;
    document.title = `${data.name} · procexec`;
    params.replaceChildren(parameters(data.parameters));
    log.clear();
    for (const phase of state.phases) log.add(phase.name, phase.log || []);
    drawStatus();
  }

  function onEvent(kind, data) {
    if (state.replaying) { // the stream tells the run's history from its start: it replaces the read
      state.replaying = false;
      state.phases = [];
      log.clear();
    }
    if (kind === "phase") {
      const { index, ...fields } = data;
      state.phases[index] = { ...(state.phases[index] || {}), ...fields };
    } else if (kind === "log") {
      log.add((state.phases[data.phase] || {}).name, data.lines || []);
    } else if (kind === "status" || kind === "end") {
      // a field the event does not know (a null status, before the journal told one) stays
      for (const [name, value] of Object.entries(data)) if (value != null) state.doc[name] = value;
    }
    if (kind === "end") {
      reload().catch(() => {}); // the finished document: loader message, data updated
    }
    drawStatus();
  }

  const ticker = setInterval(() => {
    if (state.doc && !TERMINAL.has(state.doc.status)) {
      phasesBox.replaceChildren(timeline(state.doc, state.phases));
      info.replaceChildren(details(state.doc));
    }
  }, 1000);

  (async () => {
    try {
      await reload();
    } catch (error) {
      if (!signal.aborted) info.replaceChildren(errorBox(error.message));
      return;
    }
    if (TERMINAL.has(state.doc.status)) return;
    state.replaying = true;
    await followRun(id, {
      signal,
      onEvent,
      onState: (text) => { connection.textContent = text === "live" ? "following live" : text; },
    });
    if (!signal.aborted) connection.textContent = "";
  })();

  return { stop() { clearInterval(ticker); controller.abort(); } };
}
