"""A rerun on real processes: a run whose LOAD failed is rerun with `procexec rerun` while two
Celery workers run, the worker running the rerun's LOAD is SIGKILLed mid-phase, and the rerun
is resumed by the other (the beat's lost-run machinery) and ends `success`, its document
reading as a whole run: EXTRACT, TRANSFORM and SEND carried over from the old run and never run
again (their side effects counted in a file the phases append to), LOAD run again.
"""

from __future__ import annotations

import os
import signal
import textwrap
import time
from pathlib import Path

import pytest

from procexec.engine.plugins import load_registry
from procexec.engine.settings import Settings
from procexec.engine.trigger_service import TriggerService
from procexec.workers.celery_app import celery_dispatch
from tests.integration.harness import run_cli, wait_worker_ready
from tests.reliability.conftest import (
    LOST_RUN_TIMEOUT,
    Cluster,
    logged,
    wait_beat_ready,
)

pytestmark = [pytest.mark.redis, pytest.mark.e2e]

PHASES = ["EXTRACT", "TRANSFORM", "SEND", "LOAD"]
#: what the lost-run detection may take beyond the timeout (as tests/reliability/test_faults.py)
SLACK = 6.0

#: a process whose phases append `<execution id> <phase>` to `calls` (their side effect), whose
#: LOAD fails while the file `load-fails` exists and runs on while `load-hangs` exists
SOURCE = """
from pathlib import Path

from procexec import PhaseContext, Process

MARKS = Path({marks!r})
RERUN_ME = Process("RERUN_ME")


def _phase(ctx: PhaseContext, previous: object) -> int:
    with open(MARKS / "calls", "a") as calls:
        calls.write(f"{{ctx.execution_id}} {{ctx.phase}}\\n")
    if ctx.phase == "LOAD":
        if (MARKS / "load-fails").exists():
            raise RuntimeError("the target is down")
        while (MARKS / "load-hangs").exists():
            ctx.sleep(0.05)
    ctx.info(f"{{ctx.phase}} done")
    return 1


for _name in ("EXTRACT", "TRANSFORM", "SEND", "LOAD"):
    RERUN_ME.phase(_name)(_phase)
"""


def worker_pid(token: object) -> int:
    """The process id in a claim token, `host:pid#nonce`."""
    return int(str(token).split("#")[0].rsplit(":", 1)[1])


def calls(marks: Path) -> list[tuple[str, str]]:
    path = marks / "calls"
    text = path.read_text() if path.exists() else ""
    return [(line.split()[0], line.split()[1]) for line in text.splitlines()]


def test_a_rerun_whose_worker_is_killed_mid_load_ends_as_a_whole_run(
    cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    modules = tmp_path / "modules"
    modules.mkdir()
    (modules / "rerun_me_processes.py").write_text(textwrap.dedent(SOURCE.format(marks=str(marks))))
    paths = [str(modules), *filter(None, [cluster.env.get("PYTHONPATH")])]
    cluster.env.update(PROCEXEC_PROCESSES="rerun_me_processes", PYTHONPATH=os.pathsep.join(paths))
    monkeypatch.syspath_prepend(str(modules))
    registry = load_registry(Settings.from_env(cluster.env))
    triggers = TriggerService(
        cluster.store, registry, celery_dispatch(cluster.settings, cluster.app)
    )

    beat = cluster.beat(wait=False)
    workers = [cluster.worker(wait=False), cluster.worker(wait=False)]
    for worker in workers:
        wait_worker_ready(worker)
    wait_beat_ready(beat)

    (marks / "load-fails").touch()
    old_id = str(triggers.trigger("RERUN_ME", run_as="alice", environment="production")["_id"])
    old = cluster.wait_terminal(old_id)
    assert (old["status"], old["message"]) == (
        "failed",
        "Failed in LOAD: RuntimeError: the target is down",
    )
    (marks / "load-fails").unlink()
    (marks / "load-hangs").touch()

    result = run_cli("rerun", old_id, "--user", "carol", env=cluster.env)
    assert result.returncode == 0, result.stderr
    old_shown, arrow, new_id, word, phase_name = result.stdout.split()
    assert (old_shown, arrow, word, phase_name) == (old_id, "->", "from", "LOAD")

    # the rerun's LOAD under way on one of the workers: kill that worker, whole
    deadline = time.monotonic() + 30
    while (new_id, "LOAD") not in calls(marks):
        assert time.monotonic() < deadline, "the rerun's LOAD never started"
        time.sleep(0.05)
    token = cluster.store.get_meta(new_id)["worker"]
    [victim] = [worker for worker in workers if worker.pid == worker_pid(token)]
    os.killpg(victim.pid, signal.SIGKILL)
    killed = time.monotonic()
    victim.proc.wait(10)
    assert cluster.doc(new_id)["status"] == "running"
    (marks / "load-hangs").unlink()

    cluster.wait_doc(
        new_id,
        lambda doc: cluster.store.get_meta(new_id)["recoveries"] == 1,
        "lost-run recovery",
        timeout=LOST_RUN_TIMEOUT + SLACK - (time.monotonic() - killed),
    )
    done = cluster.wait_terminal(new_id, timeout=30)

    assert (done["status"], done["message"]) == ("success", "Completed Successfully"), done
    assert (done["trigger"], done["runAs"], done["reason"]) == (
        "manual",
        "carol",
        f"Rerun of {old_id} from LOAD",
    )
    assert [(p["name"], p["status"]) for p in done["phases"]] == [(p, "success") for p in PHASES]
    for before, after in zip(old["phases"][:3], done["phases"][:3], strict=True):
        # carried over as the old run wrote them, with one line saying so
        assert {**after, "log": after["log"][:-1]} == before
        assert after["log"][-1].endswith(f" info Carried over from {old_id}: not run again")
    assert logged(done, "LOAD", "LOAD done") == 1
    assert any("Resuming LOAD on" in line for line in done["phases"][3]["log"])
    assert done["start"] <= done["phases"][3]["start"] <= done["end"]
    # EXTRACT, TRANSFORM and SEND ran once, in the old run; LOAD in the old run, then in the
    # rerun on the killed worker and again on the survivor
    assert calls(marks) == [
        *((old_id, phase) for phase in PHASES),
        (new_id, "LOAD"),
        (new_id, "LOAD"),
    ]
    assert cluster.doc(old_id) == old  # the old run is not changed
