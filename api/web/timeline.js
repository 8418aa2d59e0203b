// A run's phases as a timeline (a bar each, placed in the run's span) and its log.
import { duration, fmtClock, fmtTime, h } from "./core.js";

function moment(iso) { return iso ? Date.parse(iso) : NaN; }

// The timeline of `phases` between the run's start and its end (or now).
export function timeline(run, phases) {
  const first = Math.min(moment(run.start), ...phases.map((p) => moment(p.start)).filter(Number.isFinite));
  const ends = phases.map((p) => moment(p.end || (p.status === "running" ? null : p.start)));
  const last = Math.max(run.end ? moment(run.end) : Date.now(), ...ends.filter(Number.isFinite), first + 1);
  const span = last - first;
  if (!phases.length) return h("p", { class: "muted", id: "timeline" }, "No phase has begun yet.");
  return h("div", { class: "timeline", id: "timeline" }, phases.map((phase, index) => {
    const start = moment(phase.start);
    const end = phase.end ? moment(phase.end) : Date.now();
    const bar = h("span", { class: `bar st-${phase.status}` });
    const left = Number.isFinite(start) ? ((start - first) / span) * 100 : 0;
    bar.style.left = `${Math.max(0, Math.min(left, 99.5))}%`;
    bar.style.width = `${Math.max(0.5, Math.min(((end - start) / span) * 100, 100 - left))}%`;
    return h("div", { class: "phase", dataset: { index, status: phase.status } },
      h("span", { class: "phase-name" }, phase.name),
      h("span", { class: "track" }, bar),
      h("span", { class: "phase-times" },
        `${fmtClock(phase.start)} – ${phase.end ? fmtClock(phase.end) : "…"}`,
        h("b", {}, ` ${duration(phase.start, phase.end)}`)),
      h("span", { class: "phase-message", title: fmtTime(phase.start) }, phase.message || ""));
  }));
}

function level(line) {
  const found = / (debug|info|warning|error|critical) /.exec(line.slice(0, 60));
  return found ? found[1] : "info";
}

// The log's element, and a function adding lines of one phase to it.
export function logPane() {
  const pre = h("pre", { class: "log", id: "log" });
  const follow = h("input", { type: "checkbox", checked: true, id: "follow" });
  const element = h("section", { class: "card" },
    h("div", { class: "card-head" }, h("h2", {}, "Log"),
      h("label", { class: "inline" }, follow, " follow")),
    pre);
  function add(phaseName, lines) {
    for (const line of lines) {
      pre.append(h("span", { class: `line lv-${level(line)}` },
        h("span", { class: "lp" }, (phaseName || "").padEnd(10)), line), "\n");
    }
    if (follow.checked) pre.scrollTop = pre.scrollHeight;
  }
  function clear() { pre.replaceChildren(); }
  return { element, add, clear };
}
