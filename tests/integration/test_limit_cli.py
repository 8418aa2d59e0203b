"""`procexec process limit NAME N|none|default`: kept in the store, shown by the process list,
recorded in the audit trail; a value or a process it does not take refused in one line."""

from __future__ import annotations

import json
from pathlib import Path

from procexec.engine.settings import Settings
from procexec.engine.store import open_store
from tests.integration.harness import run_cli, service_env


def test_the_operator_sets_and_clears_a_process_s_limit(tmp_path: Path) -> None:
    env = service_env(tmp_path / "data")
    store = open_store(Settings.from_env(env).store_url)  # as a service makes it
    try:
        said = []
        for value in ("2", "none", "default"):
            result = run_cli("process", "limit", "DEMO", value, env=env)
            assert result.returncode == 0, result.stderr
            said.append(result.stdout)
            if value == "2":
                listed = run_cli("process", "list", "--json", env=env)
                [demo] = [item for item in json.loads(listed.stdout) if item["name"] == "DEMO"]
                assert (demo["maxRunning"], demo["limitKey"]) == (2, None)
                table = run_cli("process", "list", env=env).stdout.splitlines()
                assert table[0].split() == [
                    "NAME",
                    "ENABLED",
                    "SCHEDULE",
                    "TIMEZONE",
                    "MAX",
                    "RUNNING",
                    "NEXT",
                    "FIRE",
                ]
                [row] = [line.split() for line in table if line.startswith("DEMO ")]
                assert row[4] == "2", table
                [row] = [line.split() for line in table if line.startswith("ECB_FX ")]
                assert row[8] == "-", table  # no limit: its schedule's 5 fields, then -
        assert said == [
            "DEMO: max_running 2\n",
            "DEMO: no limit\n",
            "DEMO: no limit (its definition)\n",
        ]
        assert store.process_states()["DEMO"].max_running is None
        limits = [action.details["limit"] for action in store.actions(action="limit")]
        assert limits == ["default", None, 2]  # newest first

        refused = run_cli("process", "limit", "DEMO", "0", env=env)
        assert refused.returncode == 2
        assert "'0' is neither a number of runs (1 or more) nor none or default" in refused.stderr
        unknown = run_cli("process", "limit", "NOPE", "1", env=env)
        assert unknown.returncode == 2 and "unknown process 'NOPE'" in unknown.stderr
    finally:
        store.close()
