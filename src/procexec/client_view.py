"""What the client commands print (`procexec.client_cli`): tables of runs, one run whole, and a
run followed live, as a per-phase progress display on a terminal or as plain lines elsewhere.
Plain formatted text: no dependency."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from procexec.client import Event

#: the widest a table's cell gets (its end cut, `…`)
CELL = 60
#: a log line's time stamp (`2021-07-01T10:00:00.000000000Z[UTC] `), left out of the display
_STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\S+Z\[UTC\] ")


def _cell(value: Any) -> str:
    text = "-" if value is None or value == "" else str(value)
    text = " ".join(text.split())
    return text if len(text) <= CELL else text[: CELL - 1] + "…"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], out: TextIO) -> None:
    """A table of left-aligned columns, as wide as their widest cell."""
    cells = [[_cell(value) for value in row] for row in rows]
    widths = [max([len(h), *(len(row[i]) for row in cells)]) for i, h in enumerate(headers)]
    for row in [list(headers), *cells]:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip(), file=out)


def runs_table(docs: Sequence[dict[str, Any]], total: str | None, out: TextIO) -> None:
    rows = [
        (d.get("_id"), d.get("name"), d.get("status"), d.get("start"), d.get("message"))
        for d in docs
    ]
    table(("ID", "NAME", "STATUS", "START", "MESSAGE"), rows, out)
    if total is not None:
        print(f"{len(docs)} of {total}", file=out)


def run_whole(doc: dict[str, Any], out: TextIO) -> None:
    """One run: its fields, its parameters, its phases."""
    fields = ("_id", "name", "environment", "status", "message", "runAs", "reason", "start", "end")
    width = max(len(name) for name in fields)
    for name in fields:
        if name in doc:
            print(f"{name.lstrip('_'):<{width}}  {_cell(doc[name])}", file=out)
    parameters = doc.get("parameters")
    if isinstance(parameters, dict):
        print("parameters:", file=out)
        for key, value in parameters.items():
            print(f"  {key} = {json.dumps(value)}", file=out)
    phases = doc.get("phases") or []
    if phases:
        print("phases:", file=out)
        rows = [
            (i, p.get("name"), p.get("status"), p.get("start"), p.get("end"), p.get("message"))
            for i, p in enumerate(phases)
        ]
        table(("#", "PHASE", "STATUS", "START", "END", "MESSAGE"), rows, out)


class Follow:
    """A run's events shown as they come: JSON lines (`as_json`), a progress display redrawn
    in place on a terminal (`live`), or one plain line per change."""

    def __init__(self, execution_id: str, out: TextIO = sys.stdout, *, as_json: bool = False):
        self.execution_id = execution_id
        self.out = out
        self.as_json = as_json
        self.live = not as_json and out.isatty()
        self.status: str | None = None
        self.message: str | None = None
        self.phases: dict[int, dict[str, Any]] = {}
        self.last_line: dict[int, str] = {}
        self._drawn = 0

    def show(self, event: Event) -> None:
        if self.as_json:
            record = {"id": event.id, "event": event.kind, "data": event.data}
            print(json.dumps(record), file=self.out, flush=True)
        data = event.data
        if event.kind == "phase":
            index = int(data.get("index", len(self.phases)))
            phase = self.phases.setdefault(index, {})
            phase.update({k: v for k, v in data.items() if v is not None})
            self._plain(
                f"phase {phase.get('name')}: {phase.get('status')} ({_cell(data.get('message'))})"
            )
        elif event.kind in ("status", "end"):
            if (data.get("status"), data.get("message")) != (self.status, self.message):
                self.status, self.message = data.get("status"), data.get("message")
                self._plain(f"{self.execution_id}: {self.status} ({_cell(self.message)})")
        elif event.kind == "log":
            lines = data.get("lines") or []
            index = int(data.get("phase", 0))
            if lines:
                self.last_line[index] = _STAMP.sub("", str(lines[-1]))
            name = self.phases.get(index, {}).get("name", index)
            for line in lines:  # off a terminal, every line, as `tail -f` would
                self._plain(f"{name}  {line}")
        if self.live:
            self._draw()

    def _plain(self, line: str) -> None:
        if not self.as_json and not self.live:
            print(line, file=self.out, flush=True)

    def _draw(self) -> None:
        lines = [f"{self.execution_id}  {self.status or '-'}  {_cell(self.message)}"]
        for index in sorted(self.phases):
            phase = self.phases[index]
            mark = {"running": "…", "success": "✓", "warning": "!", "failed": "✗"}
            sign = mark.get(str(phase.get("status")), " ")
            lines.append(f"  {sign} {phase.get('name')!s:<14} {phase.get('status')!s:<9}")
            if phase.get("status") == "running" and index in self.last_line:
                lines[-1] += "  " + _cell(self.last_line[index])
        if self._drawn:
            self.out.write(f"\x1b[{self._drawn}F")  # back to the display's first line
        for line in lines:
            self.out.write("\x1b[2K" + line + "\n")
        self.out.flush()
        self._drawn = len(lines)
