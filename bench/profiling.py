"""py-spy for the benchmarks: find it, record a process, and summarize a speedscope profile.

`summarize` reads py-spy's speedscope JSON (one sampled profile per thread, named after it)
and prints, for the threads whose name contains `thread` and the samples whose stack holds a
frame matching `within` (a function name, or `name (file)`), the frames that take most of
those samples: inclusive (the frame is anywhere on the stack) and self (the frame is the leaf,
where the time is spent). Percentages are of those samples.
"""

from __future__ import annotations

import json
import linecache
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def py_spy() -> str:
    """The py-spy command: on the PATH, or beside this interpreter (the virtual environment)."""
    found = shutil.which("py-spy")
    beside = Path(sys.executable).parent / "py-spy"
    if found or beside.exists():
        return found or str(beside)
    raise SystemExit("--profile needs py-spy (.venv/bin/pip install py-spy)")


def output_path(name: str) -> Path:
    """Where a profile goes: the temporary folder (kept: its path is printed)."""
    return Path(tempfile.gettempdir()) / f"procexec-{name}-{os.getpid()}.speedscope.json"


def run(argv: list[str], output: Path, rate: int = 250) -> None:
    """Run `argv` (a Python command) under py-spy, into a speedscope file."""
    record = [py_spy(), "record", "--rate", str(rate), "--format", "speedscope", "--output"]
    subprocess.run([*record, str(output), "--", *argv], check=True)


def record(
    pid: int, output: Path, seconds: float, rate: int = 200, gil: bool = False
) -> subprocess.Popen[bytes]:
    """Start recording process `pid` for `seconds` into a speedscope file; returns py-spy.
    With `gil`, only the samples of the thread holding the interpreter's lock are kept."""
    return subprocess.Popen(
        [
            py_spy(),
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(max(1, round(seconds))),
            "--rate",
            str(rate),
            "--format",
            "speedscope",
            "--output",
            str(output),
            "--nonblocking",
            *(["--gil"] if gil else []),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _short(file: str) -> str:
    file = re.sub(r"^.*/(site-packages|lib/python3\.\d+)/", "", file)
    return file[len(str(ROOT)) + 1 :] if file.startswith(str(ROOT)) else file


def _frame_names(frame: dict[str, Any]) -> tuple[str, str]:
    """A frame as `function (file)`, and as `function (file:line) the line's source`."""
    file, line = str(frame.get("file") or ""), int(frame.get("line") or 0)
    source = linecache.getline(file, line).strip()[:60] if line else ""
    where = f"{frame.get('name')} ({_short(file)}"
    return f"{where})", f"{where}:{line}) {source}".rstrip()


#: leaves of a thread waiting for work (py-spy counts them as active)
IDLE = ("Condition.wait (", "Event.wait (")
#: frames under every sample of a thread (its start, the server's loop): left out of the
#: inclusive list, which would otherwise open with them
PLUMBING: tuple[str, ...] = ("(<frozen runpy>)", "(threading.py)", "(src/procexec/cli.py)")
PLUMBING += ("(uvicorn/main.py)", "(uvicorn/server.py)", "(uvicorn/_compat.py)")
PLUMBING += ("(asyncio/runners.py)", "WorkerThread.run (anyio", "execute.<locals>.one (bench/")


def summarize(
    path: Path, *, thread: str = "", within: str = "", top: int = 12
) -> tuple[int, float, list[tuple[str, float]], list[tuple[str, float]]]:
    """The samples kept (but those of a thread waiting for work), and the `top` frames by
    inclusive and by self share of them."""
    data = json.loads(path.read_text())
    named = [_frame_names(frame) for frame in data["shared"]["frames"]]
    inclusive: Counter[str] = Counter()
    leaf: Counter[str] = Counter()
    kept, samples = 0.0, 0  # the samples' seconds (py-spy's weights), and their number
    for profile in data["profiles"]:
        if thread and thread not in str(profile.get("name", "")):
            continue
        for stack, weight in zip(profile["samples"], profile["weights"], strict=True):
            names = [named[index][0] for index in stack]
            if within and not any(within in name for name in names):
                continue
            if names and names[-1].startswith(IDLE):
                continue
            kept += weight
            samples += 1
            for name in set(names):
                if not name.endswith(PLUMBING) and not name.startswith(PLUMBING):
                    inclusive[name] += weight
            if stack:
                leaf[named[stack[-1]][1]] += weight
    if not kept:
        return 0, 0.0, [], []

    def shares(counter: Counter[str]) -> list[tuple[str, float]]:
        return [(name, 100 * count / kept) for name, count in counter.most_common(top)]

    return samples, kept, shares(inclusive), shares(leaf)


def print_summary(
    title: str, path: Path, *, thread: str = "", within: str = "", also: tuple[str, ...] = ()
) -> None:
    """The summary of `summarize`, and the inclusive share of each frame named in `also`."""
    count, seconds, inclusive, leaf = summarize(path, thread=thread, within=within, top=10_000)
    shown = inclusive[:12] + [(n, v) for n, v in inclusive[12:] if n.startswith(also)]
    inclusive, leaf = shown, leaf[:12]
    print(f"\n{title}: {count} samples, {seconds:.2f} s (profile: {path})")
    if not count:
        print("  no samples matched")
        return
    print("  inclusive (on the stack):")
    for name, share in inclusive:
        print(f"    {share:5.1f}%  {name}")
    print("  self (the leaf):")
    for name, share in leaf:
        print(f"    {share:5.1f}%  {name}")
