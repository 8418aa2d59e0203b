"""The documentation runs as written: every shell and Python block of the README, `docs/*.md`
and `bench/README.md`, against a real `procexec standalone`.

One standalone serves the whole module: `.venv/bin/procexec` (beside this interpreter) on a
free port, with a temporary `PROCEXEC_DATA_DIR`, started in a work folder that stands for the
reader's clone (`.venv` linked into it, `bench/` copied, the files the docs ask the reader to
save written into it, and on `PYTHONPATH` with `PROCEXEC_PROCESSES` naming them, as the docs
tell the reader to restart `make run`). The blocks then run in that folder, in the order of the
pages, with the two variables the README sets: `PROCEXEC_URL` (the server's root) and `TOKEN`
(the token standalone printed). Nothing in a block's text is rewritten.

Markers, on the line right before a block's opening fence:

- `<!-- not run: REASON -->`: the block is not run (`make run` itself, which this standalone
  replaces; long-running servers; Docker; a million-execution benchmark); the reason is required;
- `<!-- file: PATH -->`: the block is saved as PATH in the work folder before the service starts
  (a Python one is then also run, as a script, in its turn, and named in `PROCEXEC_PROCESSES`;
  but a test module, `test_*.py`, is neither: a later block runs pytest on it).

`bash`, `sh`, `console` (its `$ ` lines) and `python` blocks run; a non-zero exit fails the
test. Other languages (`json`, `text`, `xml`, …) are shown, not run; a fence without a language
is refused, so that no command escapes by lacking one.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "bench" / "README.md"]
SHELL = {"bash", "sh", "console"}
RUN = SHELL | {"python"}
#: the seconds one block may take: a hang is caught, a machine half as fast as ours is not
#: (the slowest blocks, bench/README.md's quick runs, take about 30 s here)
BLOCK_TIMEOUT = 120

_FENCE = re.compile(r"^(`{3,})\s*(\S*)\s*$")
_MARKER = re.compile(r"^<!--\s*(not run|file)\b\s*:?(.*?)-->\s*$")
_LINK = re.compile(r"\]\(([^)\s]+)\)")


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # of the opening fence, 1-based
    lang: str
    text: str
    skip: str | None = None  # the reason, "" when the marker gave none
    file: str | None = None

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}-{self.lang or 'none'}"


@dataclass(frozen=True)
class Page:
    blocks: list[Block]
    #: markers not followed by a fence, as (line, text)
    stray_markers: list[tuple[int, str]]


def parse(page: Path) -> Page:
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    stray: list[tuple[int, str]] = []
    index = 0
    while index < len(lines):
        marker = _MARKER.match(lines[index].strip())
        if marker and not (index + 1 < len(lines) and _FENCE.match(lines[index + 1])):
            stray.append((index + 1, lines[index]))
        fence = _FENCE.match(lines[index])
        if not fence:
            index += 1
            continue
        ticks, lang = fence.group(1), fence.group(2).lower()
        end = index + 1
        while end < len(lines) and lines[end].strip() != ticks:
            end += 1
        before = _MARKER.match(lines[index - 1].strip()) if index else None
        skip = file = None
        if before and before.group(1) == "not run":
            skip = before.group(2).strip()
        elif before:
            file = before.group(2).strip()
        text = "\n".join(lines[index + 1 : end]) + "\n"
        blocks.append(Block(page, index + 1, lang, text, skip, file))
        index = end + 1
    return Page(blocks, stray)


PARSED = {page: parse(page) for page in PAGES if page.exists()}
BLOCKS = [block for page in PARSED.values() for block in page.blocks]
FILES = [block for block in BLOCKS if block.file]


def _is_test(path: str | None) -> bool:
    """Whether a saved file is a test module, which pytest runs (never a script, nor a module
    of processes)."""
    return path is not None and Path(path).name.startswith("test_") and path.endswith(".py")


RUNNABLE = [
    block
    for block in BLOCKS
    if block.lang in RUN and block.skip is None and not _is_test(block.file)
]


def _module(path: str) -> str | None:
    """The module a saved file is, if it is a Python module: `mycompany/processes.py` →
    `mycompany.processes`."""
    if not path.endswith(".py") or _is_test(path):
        return None
    return path[: -len(".py")].replace("/", ".")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _clean_env() -> dict[str, str]:
    """This environment without procexec's settings or the docs' variables."""
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("PROCEXEC_") and key not in ("TOKEN", "PYTHONPATH")
    }


@dataclass
class Standalone:
    work: Path
    url: str
    token: str
    data_dir: Path

    def env(self) -> dict[str, str]:
        """What a block runs with: the reader's second terminal after the README's exports."""
        return {
            **_clean_env(),
            "PROCEXEC_URL": self.url,
            "TOKEN": self.token,
            "PROCEXEC_DATA_DIR": str(self.data_dir),
        }


def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"standalone ended with {process.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=5) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"standalone not ready within {timeout} s:\n{log.read_text()}")


@pytest.fixture(scope="module")
def standalone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Standalone]:
    work = tmp_path_factory.mktemp("clone")
    venv = Path(sys.executable).parent.parent
    (work / ".venv").symlink_to(venv, target_is_directory=True)
    shutil.copytree(ROOT / "bench", work / "bench", ignore=shutil.ignore_patterns("__pycache__"))
    for block in FILES:
        assert block.file
        target = work / block.file
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(block.text, encoding="utf-8")
    modules = [name for block in FILES if block.file and (name := _module(block.file))]
    data_dir = work / ".procexec"
    port = _free_port()
    env = {
        **_clean_env(),
        "PROCEXEC_DATA_DIR": str(data_dir),
        "PROCEXEC_PROCESSES": ",".join(modules),
        "PYTHONPATH": str(work),
    }
    log = work / "standalone.log"
    procexec = Path(sys.executable).parent / "procexec"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [str(procexec), "standalone", "--host", "127.0.0.1", "--port", str(port)],
            cwd=work,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        token = None
        while token is None:  # the banner shows the token's beginning; its file, the token
            found = re.search(r"^  token:\s+(pe_[A-Za-z0-9_-]+)…\s", log.read_text(), re.M)
            token_file = data_dir / "admin-token"
            if found and token_file.exists():
                token = token_file.read_text().strip()
                assert token.startswith(found[1])
            if token is None and (process.poll() is not None or time.monotonic() > deadline):
                raise RuntimeError(f"standalone printed no token:\n{log.read_text()}")
            time.sleep(0.1)
        url = f"http://127.0.0.1:{port}"
        _wait_ready(url, process, log, timeout=60)
        yield Standalone(work, url, token, data_dir)
    finally:
        process.send_signal(signal.SIGTERM)  # standalone stops its worker and beat
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


def run(block: Block, service: Standalone) -> subprocess.CompletedProcess[str]:
    """Run one block as written, in the work folder, with the docs' variables set."""
    if block.lang == "python":
        argv = [sys.executable, block.file] if block.file else [sys.executable, "-c", block.text]
    else:
        text = block.text
        if block.lang == "console":  # the commands are the `$ ` lines; the rest is output
            text = "\n".join(line[2:] for line in text.splitlines() if line.startswith("$ "))
        argv = ["bash", "-e", "-o", "pipefail", "-c", text]
    return subprocess.run(
        argv,
        cwd=service.work,
        env=service.env(),
        capture_output=True,
        text=True,
        timeout=BLOCK_TIMEOUT,
        check=False,
    )


def test_the_pages_have_blocks() -> None:
    assert set(PARSED) == set(PAGES), "a documented page is missing"
    assert len(RUNNABLE) >= 20, [block.id for block in RUNNABLE]
    assert FILES, "the README's first process is saved as a file"


def test_the_readme_stays_short() -> None:
    """A newcomer's five minutes: the rest belongs in docs/."""
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 200


def test_the_readme_names_what_operators_do_to_runs() -> None:
    """Rerun, backfill, limits, notifications and the audit trail: their commands and settings
    named, each linking to the page that tells the rest."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for named in (
        "procexec rerun",
        "procexec process backfill",
        "procexec process limit",
        "max_running",
        "PROCEXEC_MAX_RUNNING",
        "PROCEXEC_NOTIFY_URL",
        "procexec audit",
        "docs/reliability.md#rerunning-a-run",
        "docs/schedules.md#backfill",
        "docs/schedules.md#concurrency-limits",
        "docs/operations.md#notifications",
        "docs/operations.md#the-audit-trail",
    ):
        assert named in readme, named


def test_every_fence_names_its_language() -> None:
    assert [block.id for block in BLOCKS if not block.lang] == []


def test_every_skipped_block_gives_a_reason() -> None:
    skipped = [block for block in BLOCKS if block.skip is not None]
    assert skipped, "the README's `make run` is not run"
    assert [block.id for block in skipped if not block.skip] == []


def test_every_marker_stands_right_before_a_block() -> None:
    stray = [
        f"{page.relative_to(ROOT)}:{line}: {text}"
        for page, parsed in PARSED.items()
        for line, text in parsed.stray_markers
    ]
    assert stray == []


def test_every_saved_file_has_a_path_in_the_clone() -> None:
    for block in FILES:
        assert block.file and not block.file.startswith("/") and ".." not in block.file, block.id


def test_links_stay_in_the_repository() -> None:
    """Relative links resolve to files of this repository (none to `../shared` or beyond)."""
    for page in PAGES:
        for target in _LINK.findall(page.read_text(encoding="utf-8")):
            if re.match(r"^[a-z]+:", target) or target.startswith("#"):
                continue
            path = (page.parent / target.split("#")[0]).resolve()
            assert path.is_relative_to(ROOT), f"{page.relative_to(ROOT)} links out: {target}"
            assert path.exists(), f"{page.relative_to(ROOT)} links to a missing {target}"


def test_a_failing_command_fails(standalone: Standalone) -> None:
    """The runner notices failures: a shell command, an HTTP error under curl -f, a Python
    exception."""
    page = ROOT / "README.md"
    failing = [
        Block(page, 0, "bash", "true\nfalse\necho not reached\n"),
        Block(page, 0, "bash", 'curl -fsS "$PROCEXEC_URL/service/process-exec/v1/nope"\n'),
        Block(page, 0, "console", "$ .venv/bin/procexec process enable NOPE\n"),
        Block(page, 0, "python", "raise SystemExit('broken')\n"),
    ]
    for block in failing:
        assert run(block, standalone).returncode != 0, block.text


@pytest.mark.parametrize("block", RUNNABLE, ids=[block.id for block in RUNNABLE])
def test_block_runs(block: Block, standalone: Standalone) -> None:
    done = run(block, standalone)
    assert done.returncode == 0, (
        f"{block.id} exited {done.returncode}\n--- block\n{block.text}"
        f"--- stdout\n{done.stdout}--- stderr\n{done.stderr}"
    )
