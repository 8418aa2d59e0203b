"""`procexec rerun`: one run by its id, or every failed run of a range, on the service's store
(a real `procexec` subprocess; the reruns dispatched through the embedded broker)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from procexec.engine.audit import command_user
from procexec.engine.process import ProcessRegistry
from procexec.engine.runner import PhaseRunner
from procexec.engine.store.sqlite import SQLiteStore
from procexec.engine.timeutil import iso_ms
from procexec.engine.trigger_service import TriggerService
from procexec.examples.demo import DEMO
from tests.integration.harness import run_cli


def demo_runs(data_dir: Path, *bodies: dict[str, Any]) -> list[str]:
    """DEMO runs of `bodies` in the service's store, each run to its end."""
    store = SQLiteStore(data_dir / "procexec.db")
    try:
        registry = ProcessRegistry([DEMO])
        triggers = TriggerService(store, registry, lambda *_: None)
        ids = []
        for body in bodies:
            time.sleep(0.002)  # each its own start
            doc = triggers.record("DEMO", run_as="alice", environment="production", body=body)
            PhaseRunner(store, registry, flush_interval=0.01).run(doc["_id"])
            ids.append(str(doc["_id"]))
        return ids
    finally:
        store.close()


def stored(data_dir: Path, execution_id: str) -> dict[str, Any]:
    store = SQLiteStore(data_dir / "procexec.db")
    try:
        doc = store.get(execution_id)
        assert doc is not None
        return doc
    finally:
        store.close()


def test_rerun_one_run_from_its_failed_phase(env: dict[str, str], data_dir: Path) -> None:
    [old_id] = demo_runs(data_dir, {"fail_in": "LOAD"})

    result = run_cli("rerun", old_id, "--user", "ops", env=env)

    assert result.returncode == 0, result.stderr
    old, arrow, new_id, word, phase = result.stdout.split()
    assert (old, arrow, word, phase) == (old_id, "->", "from", "LOAD")
    new = stored(data_dir, new_id)
    assert (new["status"], new["trigger"], new["runAs"]) == ("triggered", "manual", "ops")
    assert new["reason"] == f"Rerun of {old_id} from LOAD"
    assert [phase["name"] for phase in new["phases"]] == ["EXTRACT", "TRANSFORM", "SEND"]

    again = run_cli("rerun", new_id, env=env)  # still triggered: refused, in one line
    assert again.returncode == 2
    assert again.stderr == (
        f"procexec: execution '{new_id}' is still triggered: cancel it, or wait for it to end, "
        "before rerunning it\n"
    )
    start = run_cli("rerun", old_id, "--from", "start", env=env)
    assert start.returncode == 0, start.stderr
    assert start.stdout.endswith(" from EXTRACT\n")
    start_id = start.stdout.split()[2]
    assert stored(data_dir, start_id)["runAs"] == command_user()
    # both in the audit trail, as `procexec audit` lists it: who, the old run, the new one
    audit = run_cli("audit", "--action", "rerun", "--json", env=env)
    assert audit.returncode == 0, audit.stderr
    trail = [(i["who"], i["target"], i["details"]) for i in json.loads(audit.stdout)]
    who = command_user()  # without --user: the OS user, as the other commands on the store
    assert trail == [
        (who, old_id, {"rerun": start_id, "from_phase": "EXTRACT"}),
        ("ops", old_id, {"rerun": new_id, "from_phase": "LOAD"}),
    ]


def test_rerun_every_failed_run_since_a_time(env: dict[str, str], data_dir: Path) -> None:
    since = iso_ms()
    first, _, third = demo_runs(data_dir, {"fail_in": "LOAD"}, {}, {"fail_in": "SEND"})

    result = run_cli("rerun", "--failed", "--since", since, "--limit", "1", env=env)

    assert result.returncode == 0, result.stderr
    line, summary = result.stdout.splitlines()
    assert line.startswith(f"{first} -> ") and line.endswith(" from LOAD")
    assert summary.startswith("1 rerun, 0 refused, 0 rerun already; more remain: procexec rerun ")
    again = summary.split("more remain: procexec ", 1)[1].split()
    assert again[:4] == ["rerun", "--failed", "--since", since]

    rest = run_cli(*again, "--process", "DEMO", env=env)

    assert rest.returncode == 0, rest.stderr
    line, summary = rest.stdout.splitlines()
    assert line.startswith(f"{third} -> ") and line.endswith(" from SEND")
    assert summary == "1 rerun, 0 refused, 1 rerun already"


def test_rerun_usage_mistakes_are_one_line(env: dict[str, str]) -> None:
    for args, why in [
        (("rerun",), "give an execution's id, or --failed --since T, not both"),
        (("rerun", "--failed"), "--failed needs --since T (the start of the range)"),
        (("rerun", "abc", "--since", "2024-01-01"), "--since, --until, --process and"),
        (("rerun", "--failed", "--since", "yesterday"), "--since: 'yesterday' is not an ISO"),
        (("rerun", "nope"), "no execution 'nope'"),
    ]:
        result = run_cli(*args, env=env)
        assert result.returncode == 2, (args, result.stdout)
        assert result.stderr.startswith(f"procexec: {why}"), result.stderr
        assert "Traceback" not in result.stderr
