"""The README's "Writing a process" as a new user follows it, with nothing of ours but the
wheel: a fresh folder, a fresh virtual environment holding the wheel alone and pytest, the
README's process run with `procexec run` and tested by its own pytest through
`procexec.testing`, no service running and the settings' broker unreachable."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.installed.conftest import Installed, completed
from tests.integration.test_run_command import readme_files

pytestmark = pytest.mark.e2e


def test_the_readme_process_runs_and_passes_its_tests_from_the_wheel_alone(
    installed: Installed, tmp_path: Path
) -> None:
    venv = tmp_path / "venv"
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PROCEXEC_", "PYTHON")) and key != "VIRTUAL_ENV"
    }
    made = completed([sys.executable, "-m", "venv", venv], tmp_path, env)
    assert made.returncode == 0, made.stderr
    pip = [venv / "bin" / "python", "-m", "pip", "install", "--quiet"]
    added = completed(
        [*pip, "--disable-pip-version-check", installed.wheel, "pytest"], tmp_path, env
    )
    assert added.returncode == 0, added.stdout + added.stderr
    folder = tmp_path / "project"
    folder.mkdir()
    for name, text in readme_files().items():
        (folder / name).write_text(text, encoding="utf-8")
    # a service's settings in the reader's shell: a store folder and a broker, neither reachable
    data = tmp_path / "service-data"
    env.update(
        PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        VIRTUAL_ENV=str(venv),
        PROCEXEC_DATA_DIR=str(data),
        PROCEXEC_BROKER_URL="redis://127.0.0.1:1/0",
    )
    procexec = venv / "bin" / "procexec"
    done = completed(
        [procexec, "run", "HELLO", "--module", "hello", "--param", "who=procexec"], folder, env
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "  EXTRACT | info hello, procexec" in done.stdout
    assert done.stdout.splitlines()[-2:] == [
        "HELLO success: Completed Successfully",
        "loaderMessage: Greeted procexec",
    ]
    tests = completed([venv / "bin" / "python", "-m", "pytest", "-q", "test_hello.py"], folder, env)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "1 passed" in tests.stdout
    refused = completed(
        [procexec, "run", "HELLO", "--module", "hello", "--param", "whoo=x"], folder, env
    )
    assert (refused.returncode, refused.stdout) == (2, "")
    assert refused.stderr.startswith("procexec: HELLO: body.whoo: unknown parameter")
    assert not data.exists()
    assert sorted(path.name for path in folder.iterdir() if path.suffix == ".py") == [
        "hello.py",
        "test_hello.py",
    ]
