// The processes: schedules in words and crontab, next fire, enabled, last runs, and a trigger
// form generated from each process's parameters.
import { PROCESSES, V1, api, badge, errorBox, fmtTime, h } from "./core.js";
import { cronWords, readFields, schemaFields } from "./schema_form.js";

const LAST_RUNS = 5;

function triggerForm(process, signal) {
  const fields = schemaFields(process.parameters, h);
  const reason = h("input", { name: "_reason", placeholder: "why (optional)", maxlength: 1000 });
  const error = h("div", { class: "trigger-error" });
  const submit = h("button", { type: "submit" }, `Trigger ${process.name}`);
  const form = h("form", { class: "trigger-form", dataset: { process: process.name } },
    h("h3", {}, `Trigger ${process.name}`),
    fields.length ? null : h("p", { class: "muted" }, "This process takes no parameters."),
    fields.map(({ name, label, input, help }) => h("label", { class: "field" },
      h("span", { class: "field-name" }, label, h("code", {}, ` ${name}`)), input,
      help ? h("small", {}, help) : null)),
    h("label", { class: "field" }, h("span", { class: "field-name" }, "Reason"), reason),
    h("div", { class: "form-actions" }, submit), error);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.replaceChildren();
    submit.disabled = true;
    const body = { name: process.name, body: readFields(fields) };
    if (reason.value.trim()) body._reason = reason.value.trim();
    try {
      const { data } = await api(V1, { method: "POST", body, signal });
      location.hash = `#/run/${encodeURIComponent(data._id)}`;
    } catch (failure) {
      if (!signal.aborted) error.replaceChildren(errorBox(failure.message));
    } finally {
      submit.disabled = false;
    }
  });
  return form;
}

function lastRuns(runs) {
  if (!runs) return h("span", { class: "muted" }, "…");
  if (!runs.length) return h("span", { class: "muted" }, "none");
  return h("span", { class: "last-runs" }, runs.map((run) =>
    h("a", { href: `#/run/${encodeURIComponent(run._id)}`, title: `${fmtTime(run.start)}: ${run.message || ""}` }, badge(run))));
}

export function processesView(root) {
  const controller = new AbortController();
  const signal = controller.signal;
  const body = h("tbody");
  const error = h("div");
  root.append(h("section", { class: "card" }, h("h1", {}, "Processes"), error,
    h("table", { class: "processes" },
      h("thead", {}, h("tr", {}, ["Process", "Enabled", "Schedule", "Next fire (UTC)", "Last runs", ""]
        .map((title) => h("th", {}, title)))),
      body)));

  function draw(process, runs) {
    const formRow = h("tr", { class: "form-row", hidden: true }, h("td", { colspan: 6 }));
    const open = h("button", { type: "button", class: "trigger", dataset: { process: process.name } }, "Trigger");
    open.addEventListener("click", () => {
      formRow.hidden = !formRow.hidden;
      if (!formRow.hidden && !formRow.firstChild.firstChild) formRow.firstChild.append(triggerForm(process, signal));
      if (!formRow.hidden) formRow.querySelector("input, select, textarea, button").focus();
    });
    const runsCell = h("td", {}, lastRuns(runs));
    const schedule = process.schedule
      ? [h("div", {}, cronWords(process.schedule)),
        h("code", {}, `${process.schedule}${process.timezone ? ` (${process.timezone})` : ""}`)]
      : h("span", { class: "muted" }, "on demand");
    const row = h("tr", { dataset: { process: process.name } },
      h("td", {}, h("b", {}, process.name), h("div", { class: "muted" }, process.description || "")),
      h("td", {}, h("span", { class: `badge ${process.enabled ? "st-success" : "st-off"}` },
        process.enabled ? "enabled" : "disabled")),
      h("td", {}, schedule),
      h("td", { class: "time" }, process.nextFire ? fmtTime(process.nextFire) : "—"),
      runsCell,
      h("td", {}, open));
    return { rows: [row, formRow], runsCell };
  }

  (async () => {
    try {
      const { data } = await api(PROCESSES, { signal });
      const drawn = data.map((process) => ({ process, ...draw(process, null) }));
      body.replaceChildren(...drawn.flatMap((item) => item.rows));
      if (!data.length) body.append(h("tr", {}, h("td", { colspan: 6, class: "empty" }, "No process.")));
      await Promise.all(drawn.map(async ({ process, runsCell }) => {
        const query = new URLSearchParams({ name: process.name, _limit: String(LAST_RUNS), _project: "name,status,message,start" });
        const { data: runs } = await api(`${V1}?${query}`, { signal });
        runsCell.replaceChildren(lastRuns(runs));
      }));
    } catch (failure) {
      if (!signal.aborted) error.replaceChildren(errorBox(failure.message));
    }
  })();
  return { stop() { controller.abort(); } };
}
