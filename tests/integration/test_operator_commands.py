"""The installed `procexec` command on a running API's store: `process backfill` and `audit`,
and every operator action (through the command and through HTTP) in the trail with who took it.

One `procexec api` (the embedded broker, no worker: the runs made stay `triggered`) makes the
store; the commands run against it as an operator would, with its `PROCEXEC_DATA_DIR`."""

from __future__ import annotations

import getpass
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from procexec.engine.crontab import crontab_reason
from procexec.engine.timeutil import parse_iso
from tests.integration.harness import (
    BASE_PATH,
    Service,
    api_client,
    create_token,
    run_cli,
    service_env,
    start_api,
    stop_all,
    trigger,
)

pytestmark = pytest.mark.e2e

CLI_USER = f"cli:{getpass.getuser()}"
WEEK = ("--from", "2021-07-05", "--to", "2021-07-12")
WEEK_FIRES = [f"2021-07-{day:02d}T16:30:00.000Z" for day in range(5, 10)]
LINE = re.compile(r"^(\S+)  ([0-9a-f-]{36})  (made|existed already|to make)$")


class Api:
    def __init__(self, service: Service, url: str, env: dict[str, str]) -> None:
        self.service, self.url, self.env = service, url, env
        self.root = url.removesuffix(BASE_PATH)
        self.admin = create_token(env, "root", "admin")


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    root = tmp_path_factory.mktemp("operator")
    env = service_env(root / "data")
    service, url = start_api(env, root)
    try:
        yield Api(service, url, env)
    finally:
        stop_all(service)


def cli(api: Api, *args: str, status: int = 0) -> str:
    result = run_cli(*args, env=api.env)
    assert result.returncode == status, (result.stdout, result.stderr)
    return result.stdout if status == 0 else result.stderr


def lines(output: str) -> list[tuple[str, str, str]]:
    found = []
    for line in output.splitlines():
        match = LINE.match(line)
        assert match, line
        found.append(match.groups())
    return found


def trail(api: Api, *args: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = json.loads(cli(api, "audit", "--json", *args))
    return items


def test_backfill_dry_run_then_made_then_existed(api: Api) -> None:
    dry = lines(cli(api, "process", "backfill", "ECB_FX", *WEEK, "--dry-run"))
    assert [(fire, state) for fire, _, state in dry] == [(f, "to make") for f in WEEK_FIRES]
    with api_client(api.url, api.admin) as client:
        assert client.get(f"v1/{dry[0][1]}").status_code == 404
        made = lines(cli(api, "process", "backfill", "ECB_FX", *WEEK))
        assert made == [(fire, id_, "made") for fire, id_, _ in dry]
        for fire, execution_id, _ in made:
            doc = client.get(f"v1/{execution_id}").json()
            assert (doc["trigger"], doc["reason"], doc["runAs"]) == (
                "scheduled",
                crontab_reason("ECB_FX", parse_iso(fire)),
                "scheduler",
            )
        # the API's backfill of the same week finds them all
        response = httpx2.post(
            f"{api.root}/service/process/v1/ECB_FX/backfill",
            json={"from": "2021-07-05", "to": "2021-07-12"},
            headers={"Authorization": f"Bearer {api.admin}"},
            trust_env=False,
        )
        assert response.json()["existed"] == 5, response.text
    again = lines(cli(api, "process", "backfill", "ECB_FX", *WEEK))
    assert [state for _, _, state in again] == ["existed already"] * 5
    entries = trail(api, "--action", "backfill", "--target", "ECB_FX")
    assert [(e["who"], e["details"]["made"]) for e in entries] == [
        (CLI_USER, 0),
        ("root", 0),
        (CLI_USER, 5),
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("NOPE", *WEEK), "procexec: unknown process 'NOPE'\n"),
        (("DEMO", *WEEK), "procexec: process DEMO has no schedule: nothing to backfill\n"),
        (
            ("ECB_FX", "--from", "2015-01-01", "--to", "2021-01-01"),
            "procexec: from, to: ECB_FX's schedule fires more than 1000 times from "
            "2015-01-01T00:00:00.000Z to 2021-01-01T00:00:00.000Z; a backfill makes at most "
            "1000 runs: split the range\n",
        ),
    ],
)
def test_backfill_refusals_are_one_line(api: Api, args: tuple[str, ...], message: str) -> None:
    assert cli(api, "process", "backfill", *args, status=2) == message


def test_each_action_is_in_the_trail_with_who_took_it(api: Api, tmp_path: Path) -> None:
    cli(api, "process", "disable", "ECB_FX")
    cli(api, "process", "enable", "ECB_FX")
    cli(api, "process", "schedule", "ECB_FX", "0 7 * * *", "--timezone", "Europe/London")
    create_token(api.env, "carol", "read")
    tokens = json.loads(cli(api, "token", "list", "--json"))
    carol = next(token["id"] for token in tokens if token["user"] == "carol")
    cli(api, "token", "revoke", carol)
    with api_client(api.url, api.admin) as client:
        first = trigger(client, "DEMO")
        second = trigger(client, "DEMO")
        assert client.post(f"v1/{first}/cancel").status_code == 200
        process = f"{api.root}/service/process/v1/DEMO"
        assert client.post(f"{process}/disable").status_code == 200
        assert client.put(f"{process}/schedule", json={"schedule": "0 8 * * *"}).is_success
        assert client.post(f"{process}/enable").status_code == 200
    cli(api, "cancel", second, "--user", "ops")
    wanted = [
        ("cancel", "ops", second),
        ("enable", "root", "DEMO"),
        ("schedule", "root", "DEMO"),
        ("disable", "root", "DEMO"),
        ("cancel", "root", first),
        ("token-revoke", CLI_USER, "carol"),
        ("token-create", CLI_USER, "carol"),
        ("schedule", CLI_USER, "ECB_FX"),
        ("enable", CLI_USER, "ECB_FX"),
        ("disable", CLI_USER, "ECB_FX"),
    ]
    items = trail(api, "--limit", str(len(wanted)))
    assert [(i["action"], i["who"], i["target"]) for i in items] == wanted
    # the same through HTTP, at both paths
    for base in ("/service/audit", "/api/audit"):
        response = httpx2.get(
            f"{api.root}{base}/v1",
            params={"_limit": len(wanted)},
            headers={"Authorization": f"Bearer {api.admin}"},
            trust_env=False,
        )
        assert response.status_code == 200, response.text
        assert response.json() == items
    # filters
    assert [i["target"] for i in trail(api, "--action", "cancel", "--limit", "2")] == [
        second,
        first,
    ]
    since = items[4]["at"]
    assert trail(api, "--since", since, "--target", "DEMO") == items[1:4]
    assert [i["action"] for i in trail(api, "--target", "carol")] == [
        "token-revoke",
        "token-create",
    ]
    # the table: a header, then one line per action
    table = cli(api, "audit", "--limit", "3").splitlines()
    assert re.match(r"^AT +WHO +ACTION +TARGET +DETAILS$", table[0])
    assert re.match(rf"^\S+Z +ops +cancel +{second} +was=triggered$", table[1])
    assert re.match(r"^\S+Z +root +schedule +DEMO +schedule=0 8 \* \* \* timezone=UTC$", table[3])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--limit", "0"), "procexec: --limit: '0' is not a whole number from 1 to 1000\n"),
        (
            ("--since", "monday"),
            "procexec: --since: 'monday' is not an ISO 8601 time, such as 2021-07-01T00:00:00Z\n",
        ),
    ],
)
def test_audit_refusals_are_one_line(api: Api, args: tuple[str, ...], message: str) -> None:
    assert cli(api, "audit", *args, status=2) == message
