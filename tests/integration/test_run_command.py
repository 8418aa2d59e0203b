"""`procexec run`, the installed command run as a subprocess with no service anywhere: a run's
phases and log printed as they happen, its outcome as the exit status, every mistake one line
(exit 2), and no write to the store the settings name; and the README's process, saved from the
README into a fresh folder (and into the checkout's root), runs with `procexec run` and passes
its own pytest."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from procexec.engine.store.sqlite import SQLiteStore
from tests.docs.test_docs import ROOT, parse
from tests.integration.harness import PROCEXEC

USAGE = 2


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without procexec's settings or `PYTHONPATH`: a reader's shell."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("PROCEXEC_") and key != "PYTHONPATH"
    }
    env.update(PYTHONDONTWRITEBYTECODE="1", **extra)
    return env


def procexec_run(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PROCEXEC, "run", *args],
        cwd=cwd,
        env=env or clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    assert result.returncode == USAGE, output
    assert result.stdout == "", output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("procexec: "), output
    return lines[0]


# --- outcomes ------------------------------------------------------------------------------


def test_a_successful_run_prints_its_phases_and_log_and_exits_0(tmp_path: Path) -> None:
    done = procexec_run("DEMO", "--param", "sleep=0", "--param", "log_lines=2", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("DEMO ") and lines[0].endswith(" (production)")
    assert lines[1:6] == [
        "EXTRACT started",
        "  EXTRACT | info EXTRACT line 1 of 2",
        "  EXTRACT | info EXTRACT line 2 of 2",
        "  EXTRACT | info Completed EXTRACT",
        "EXTRACT success: Completed EXTRACT",
    ]
    assert [line for line in lines if line.endswith(" started")] == [
        f"{phase} started" for phase in ("EXTRACT", "TRANSFORM", "SEND", "LOAD")
    ]
    assert lines[-1] == "DEMO success: Completed Successfully"
    assert list(tmp_path.iterdir()) == []  # nothing written where it ran


def test_a_failed_run_exits_1_with_its_traceback_in_the_log(tmp_path: Path) -> None:
    done = procexec_run("DEMO", "--param", "fail_in=LOAD", cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "  LOAD | error Traceback (most recent call last):" in done.stdout
    assert "  LOAD | RuntimeError: failure requested in LOAD (fail_in=LOAD)" in done.stdout
    assert done.stdout.splitlines()[-1] == (
        "DEMO failed: Failed in LOAD: RuntimeError: failure requested in LOAD (fail_in=LOAD)"
    )


def test_phases_and_lines_are_printed_while_the_run_goes_on(tmp_path: Path) -> None:
    command = [PROCEXEC, "run", "DEMO", "--param", "sleep=1", "--param", "log_lines=2"]
    with subprocess.Popen(
        command, cwd=tmp_path, env=clean_env(), stdout=subprocess.PIPE, text=True
    ) as process:
        assert process.stdout is not None
        seen = []
        for line in process.stdout:
            seen.append(line.rstrip("\n"))
            if line.startswith("  EXTRACT | info EXTRACT line 1 of 2"):
                still_running = process.poll() is None
                break
        rest = process.stdout.read()
        assert process.wait(60) == 0
    assert still_running, seen  # three phases and more to go: printed as it happened
    assert "DEMO success: Completed Successfully" in rest


# --- mistakes, one line each ----------------------------------------------------------------


def test_an_unknown_process_is_one_line(tmp_path: Path) -> None:
    line = one_line(procexec_run("NOPE", cwd=tmp_path))
    assert line.startswith("procexec: unknown process 'NOPE' (known here: DEMO, ECB_FX,")


def test_a_module_that_cannot_be_imported_is_one_line_naming_it(tmp_path: Path) -> None:
    line = one_line(procexec_run("HELLO", "--module", "helo", cwd=tmp_path))
    assert line == "procexec: --module: cannot import module 'helo': No module named 'helo'"
    (tmp_path / "broken.py").write_text("import nowhere_to_be_found\n")
    line = one_line(procexec_run("HELLO", "--module", "broken", cwd=tmp_path))
    assert line == (
        "procexec: --module: cannot import module 'broken': No module named 'nowhere_to_be_found'"
    )
    line = one_line(procexec_run("HELLO", "--module", "broken.py", cwd=tmp_path))
    assert line.startswith("procexec: --module: cannot import module 'broken.py': ")
    assert line.endswith(" (an import path: 'broken', not a file)")
    (tmp_path / "empty.py").write_text("X = 1\n")
    line = one_line(procexec_run("HELLO", "--module", "empty", cwd=tmp_path))
    assert line == "procexec: --module: module 'empty' defines no Process"


@pytest.mark.parametrize(
    ("params", "why"),
    [
        (
            ["sleep=-1"],
            "procexec: DEMO: body.sleep: Input should be greater than or equal to 0 (got -1)",
        ),
        (["sleep=fast"], "procexec: DEMO: body.sleep: Input should be a valid number"),
        (["slep=1"], "procexec: DEMO: body.slep: unknown parameter (did you mean 'sleep'?)"),
        (["sleep"], "procexec: --param 'sleep': expected KEY=VALUE"),
        (["=1"], "procexec: --param '=1': expected KEY=VALUE"),
    ],
)
def test_a_parameter_refused_is_one_line(tmp_path: Path, params: list[str], why: str) -> None:
    argv = [arg for param in params for arg in ("--param", param)]
    assert one_line(procexec_run("DEMO", *argv, cwd=tmp_path)).startswith(why)


def test_a_store_url_of_another_kind_is_one_line(tmp_path: Path) -> None:
    line = one_line(procexec_run("DEMO", "--store", "postgres://db/x", cwd=tmp_path))
    assert line.startswith("procexec: --store: unsupported store URL")


def test_process_list_tells_a_misspelt_module_before_a_missing_store(tmp_path: Path) -> None:
    env = clean_env(PROCEXEC_DATA_DIR=str(tmp_path / "data"), PROCEXEC_PROCESSES="helo")
    done = subprocess.run(
        [PROCEXEC, "process", "list"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == USAGE and done.stdout == ""
    assert done.stderr.strip() == (
        "procexec: PROCEXEC_PROCESSES: cannot import module 'helo': No module named 'helo'"
    )
    assert not (tmp_path / "data").exists()


# --- stores ---------------------------------------------------------------------------------


def test_the_store_of_the_settings_is_never_touched(tmp_path: Path) -> None:
    absent = tmp_path / "absent" / "procexec.db"
    data_dir = tmp_path / "data"
    env = clean_env(PROCEXEC_STORE_URL=f"sqlite:///{absent}", PROCEXEC_DATA_DIR=str(data_dir))
    assert procexec_run("DEMO", cwd=tmp_path, env=env).returncode == 0
    assert not absent.parent.exists() and not data_dir.exists()

    existing = tmp_path / "service.db"
    SQLiteStore(existing).close()
    before = {path.name: (path.stat().st_mtime_ns, path.read_bytes()) for path in [existing]}
    env["PROCEXEC_STORE_URL"] = f"sqlite:///{existing}"
    assert procexec_run("DEMO", cwd=tmp_path, env=env).returncode == 0
    after = {path.name: (path.stat().st_mtime_ns, path.read_bytes()) for path in [existing]}
    assert after == before
    assert sorted(path.name for path in tmp_path.iterdir()) == ["service.db"]


def test_store_keeps_the_run_there(tmp_path: Path) -> None:
    kept = tmp_path / "kept" / "runs.db"
    kept.parent.mkdir()
    done = procexec_run(
        "DEMO", "--store", f"sqlite:///{kept}", "--environment", "dev", cwd=tmp_path
    )
    assert done.returncode == 0, done.stdout + done.stderr
    execution_id = done.stdout.splitlines()[0].split()[1]
    store = SQLiteStore(kept)
    try:
        doc = store.get(execution_id)
        assert doc is not None
        assert (doc["status"], doc["environment"], doc["reason"]) == (
            "success",
            "dev",
            "procexec run",
        )
    finally:
        store.close()


# --- the README's process, from the README alone -------------------------------------------


def readme_files() -> dict[str, str]:
    """The files the README's "Writing a process" asks the reader to save, as it shows them."""
    files = {block.file: block.text for block in parse(ROOT / "README.md").blocks if block.file}
    assert {"hello.py", "test_hello.py"} <= set(files), sorted(files)
    return {name: text for name, text in files.items() if name.endswith(".py")}


@pytest.fixture(params=["fresh folder", "checkout root"])
def reader_folder(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path]:
    """Where a reader saves the README's files: a fresh folder, or the checkout's root."""
    folder = tmp_path if request.param == "fresh folder" else ROOT
    files = readme_files()
    taken = [name for name in files if (folder / name).exists()]
    if taken:
        pytest.skip(f"{', '.join(taken)} already in {folder}")
    try:
        for name, text in files.items():
            (folder / name).write_text(text, encoding="utf-8")
        yield folder
    finally:
        for name in files:
            (folder / name).unlink(missing_ok=True)


def test_the_readme_process_runs_and_passes_its_own_tests(reader_folder: Path) -> None:
    started = time.monotonic()
    done = procexec_run("HELLO", "--module", "hello", "--param", "who=procexec", cwd=reader_folder)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "  EXTRACT | info hello, procexec" in done.stdout
    assert done.stdout.splitlines()[-2:] == [
        "HELLO success: Completed Successfully",
        "loaderMessage: Greeted procexec",
    ]
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "test_hello.py"],
        cwd=reader_folder,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "1 passed" in tests.stdout
    assert time.monotonic() - started < 60


def test_the_readme_s_refused_parameter_is_the_line_it_shows(tmp_path: Path) -> None:
    """The README's misspelt `--param`: the command it shows prints the line it shows."""
    [block] = [
        block
        for block in parse(ROOT / "README.md").blocks
        if block.lang == "bash" and "--param whoo=" in block.text
    ]
    [command] = [line for line in block.text.splitlines() if "--param whoo=" in line]
    [shown] = [line[2:] for line in block.text.splitlines() if line.startswith("# procexec: ")]
    for name, text in readme_files().items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    args = command.split(" || ")[0].split()
    assert args[:3] == [".venv/bin/procexec", "run", "HELLO"]
    assert one_line(procexec_run(*args[2:], cwd=tmp_path)) == shown
