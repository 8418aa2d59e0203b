// The executions list: filters, counts by status, newest first, refreshed every 2 s.
import {
  PROCESSES, STATUSES, TRIGGERS, V1, api, badge, duration, errorBox, fmtTime, h,
} from "./core.js";

const POLL_MS = 2000;
const LIMIT = 50;
// the list's rows without what they do not show (the logs, the data updated)
const PROJECT = "-phases.log,-data";
// kept while the page lives, so that coming back from a run keeps the filters
const filters = { name: "", status: "", trigger: "", from: "", to: "", search: "", filter: "" };

// The query of the list call for these filters (docs/api.md, the query language).
export function query(values, { withStatus = true } = {}) {
  const params = new URLSearchParams();
  if (values.name) params.set("name", values.name);
  if (withStatus && values.status) params.set("status", values.status);
  if (values.trigger) params.set("trigger", values.trigger);
  if (values.from && values.to) params.set("start", `range(${values.from},${values.to})`);
  else if (values.from) params.set("start", `gte(${values.from})`);
  else if (values.to) params.set("start", `lte(${values.to})`);
  if (values.search.trim()) params.set("_search", values.search.trim());
  if (values.filter.trim()) params.set("_filter", values.filter.trim());
  return params;
}

function select(name, options, label) {
  return h("label", {}, label,
    h("select", { name }, h("option", { value: "" }, "any"),
      options.map((value) => h("option", { value }, value))));
}

function phaseStrip(doc) {
  return h("span", { class: "strip" }, (doc.phases || []).map((phase) =>
    h("span", { class: `cell st-${phase.status}`, title: `${phase.name}: ${phase.status}` })));
}

function row(doc) {
  const link = `#/run/${encodeURIComponent(doc._id)}`;
  return h("tr", { class: "run-row", dataset: { id: doc._id } },
    h("td", {}, badge(doc)),
    h("td", {}, h("a", { href: link, class: "name" }, doc.name)),
    h("td", {}, doc.trigger || ""),
    h("td", { class: "time" }, fmtTime(doc.start)),
    h("td", { class: "num" }, duration(doc.start, doc.end)),
    h("td", {}, phaseStrip(doc)),
    h("td", { class: "message" }, doc.message || ""),
    h("td", {}, h("a", { href: link, class: "id" }, doc._id.slice(0, 8))));
}

export function listView(root) {
  const controller = new AbortController();
  const error = h("div", { class: "list-error" });
  const counts = h("div", { class: "counts" });
  const total = h("span", { class: "total" });
  const tbody = h("tbody");
  const names = h("datalist", { id: "process-names" });
  const form = h("form", { class: "filters", id: "filters" },
    h("label", {}, "Process", h("input", { name: "name", list: "process-names", placeholder: "any" })),
    select("status", STATUSES, "Status"),
    select("trigger", TRIGGERS, "Trigger"),
    h("label", {}, "From", h("input", { name: "from", type: "date" })),
    h("label", {}, "To", h("input", { name: "to", type: "date" })),
    h("label", { class: "wide" }, "Search", h("input", { name: "search", type: "search", placeholder: "words in ids, names, messages, logs" })),
    h("label", { class: "wide" }, "Filter", h("input", { name: "filter", placeholder: "(status=failed or status=running) and name=ECB_FX" })),
    h("button", { type: "reset" }, "Clear"),
    names);
  for (const [name, value] of Object.entries(filters)) form.elements[name].value = value;
  root.append(
    h("section", { class: "card" }, form, h("div", { class: "summary" }, counts, total), error),
    h("section", { class: "card" },
      h("table", { class: "runs" },
        h("thead", {}, h("tr", {}, ["Status", "Process", "Trigger", "Start (UTC)", "Duration",
          "Phases", "Message", "Id"].map((title) => h("th", {}, title)))),
        tbody)));

  let timer = null;
  let busy = false;
  let again = false;

  async function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    const list = query(filters);
    list.set("_limit", String(LIMIT));
    list.set("_project", PROJECT);
    const byStatus = query(filters, { withStatus: false });
    byStatus.set("_fieldinfo", "status");
    try {
      const [rows, buckets] = await Promise.all([
        api(`${V1}?${list}`, { signal: controller.signal }),
        api(`${V1}?${byStatus}`, { signal: controller.signal }),
      ]);
      error.replaceChildren();
      tbody.replaceChildren(...rows.data.map(row));
      if (!rows.data.length) tbody.append(h("tr", {}, h("td", { colspan: 8, class: "empty" }, "No execution matches.")));
      const shown = rows.headers.get("x-total-count") || String(rows.data.length);
      total.textContent = `${shown} execution${shown === "1" ? "" : "s"}${Number(shown) > LIMIT ? `, the newest ${LIMIT} shown` : ""}`;
      showCounts(buckets.data);
    } catch (failure) {
      if (controller.signal.aborted) return;
      error.replaceChildren(errorBox(failure.message));
    } finally {
      busy = false;
    }
    if (again) { again = false; refresh(); }
  }

  function showCounts(buckets) {
    const found = Object.fromEntries(buckets.map((bucket) => [bucket._id, bucket.count]));
    counts.replaceChildren(...STATUSES.map((status) => h("button", {
      type: "button",
      class: `count st-${status}${filters.status === status ? " chosen" : ""}`,
      dataset: { status },
      onclick: () => {
        filters.status = filters.status === status ? "" : status;
        form.elements.status.value = filters.status;
        refresh();
      },
    }, `${status} ${found[status] || 0}`)));
  }

  let typing = null;
  function changed(event) {
    for (const name of Object.keys(filters)) filters[name] = form.elements[name].value;
    clearTimeout(typing);
    if (event && event.type === "input" && ["search", "filter", "name"].includes(event.target.name)) {
      typing = setTimeout(refresh, 400);
    } else refresh();
  }
  form.addEventListener("change", changed);
  form.addEventListener("input", changed);
  form.addEventListener("submit", (event) => { event.preventDefault(); changed(); });
  form.addEventListener("reset", () => setTimeout(changed, 0));

  api(PROCESSES, { signal: controller.signal }).then(({ data }) => {
    names.replaceChildren(...data.map((process) => h("option", { value: process.name })));
  }).catch(() => {});

  refresh();
  timer = setInterval(() => { if (!document.hidden) refresh(); }, POLL_MS);
  document.getElementById("live").hidden = false;
  return {
    stop() {
      clearInterval(timer);
      clearTimeout(typing);
      controller.abort();
      document.getElementById("live").hidden = true;
    },
  };
}
