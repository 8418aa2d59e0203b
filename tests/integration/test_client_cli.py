"""The installed `procexec` as the API's client (`trigger`, `list`, `show`, `tail`, and
`cancel` and `rerun` through the API) against a running `procexec standalone` (the embedded
store and broker, a real worker), every command a subprocess of the real entry point."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from procexec.engine.audit import command_user
from tests.integration.harness import (
    api_client,
    create_token,
    free_port,
    run_cli,
    service_env,
    start_standalone,
    wait_terminal,
)

pytestmark = pytest.mark.e2e


SECRET = "cl1ent-s3cr3t-key"
#: a process with a secret parameter, which its phase logs (masked by pydantic)
KEYED = """
from pydantic import BaseModel, SecretStr

from procexec import Process


class KeyedParams(BaseModel):
    who: str = "world"
    api_key: SecretStr = SecretStr("default-key")


KEYED = Process("KEYED", params=KeyedParams)
KEYED.phase("EXTRACT")(lambda ctx, _: ctx.info(f"params: {ctx.params}"))
"""


class Api:
    def __init__(self, root: str, token: str, env: dict[str, str], data: Path) -> None:
        self.root = root
        self.data = data  # the service's data folder (for `procexec token create`)
        self.token = token
        self.env = env  # the client's: PROCEXEC_URL and PROCEXEC_TOKEN, nothing of the store

    def run(
        self, *args: str, timeout: float = 90, **extra: str
    ) -> subprocess.CompletedProcess[str]:
        return run_cli(*args, env={**self.env, **extra}, timeout=timeout)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    tmp = tmp_path_factory.mktemp("client")
    (tmp / "modules").mkdir()
    (tmp / "modules" / "keyed_client.py").write_text(KEYED, encoding="utf-8")
    env = service_env(
        tmp / "data", PYTHONPATH=str(tmp / "modules"), PROCEXEC_PROCESSES="keyed_client"
    )
    standalone, url, token = start_standalone(env, tmp)
    root = url.removesuffix("/service/process-exec")
    client_env = {k: v for k, v in env.items() if k != "PROCEXEC_DATA_DIR"}
    client_env.update(PROCEXEC_URL=root, PROCEXEC_TOKEN=token, HOME=str(tmp))
    try:
        yield Api(root, token, client_env, tmp / "data")
    finally:
        standalone.stop()


def _id_of(line: str) -> str:
    return line.split(":", 1)[0].strip()


def test_trigger_follow_exits_0_for_a_success_and_shows_each_phase(api: Api) -> None:
    result = api.run(
        "trigger", "DEMO", "--param", "log_lines=2", "--param", "sleep=0.1", "--follow"
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].endswith(": triggered (DEMO)")
    for phase in ("EXTRACT", "TRANSFORM", "SEND", "LOAD"):
        assert any(line.startswith(f"phase {phase}: success") for line in lines), lines
    assert "success" in lines[-1]
    assert api.token not in result.stdout + result.stderr


def test_trigger_follow_exits_1_for_a_failed_run(api: Api) -> None:
    result = api.run("trigger", "DEMO", "--param", "fail_in=TRANSFORM", "--follow")
    assert result.returncode == 1, result.stderr
    assert "phase TRANSFORM: failed" in result.stdout
    assert result.stdout.splitlines()[-1].split(": ", 1)[1].startswith("failed")


def test_trigger_follow_json_is_one_event_a_line(api: Api) -> None:
    result = api.run("trigger", "DEMO", "--param", "sleep=0", "--follow", "--json")
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert events[-1]["event"] == "end" and events[-1]["data"]["status"] == "success"
    assert {"phase", "status"} <= {e["event"] for e in events}


def test_list_takes_the_list_calls_parameters(api: Api) -> None:
    failed = api.run("trigger", "DEMO", "--param", "fail_in=EXTRACT", "--follow")
    assert failed.returncode == 1
    failed_id = _id_of(failed.stdout.splitlines()[0])
    result = api.run("list", "status=failed", "_limit=5", "--json")
    assert result.returncode == 0, result.stderr
    docs = json.loads(result.stdout)
    assert docs and len(docs) <= 5 and {d["status"] for d in docs} == {"failed"}
    assert failed_id in {d["_id"] for d in docs}
    table = api.run("list", "status=failed", "name=DEMO")
    assert table.returncode == 0, table.stderr
    header, *rows = table.stdout.splitlines()
    assert header.split() == ["ID", "NAME", "STATUS", "START", "MESSAGE"]
    assert any(row.startswith(failed_id) and " failed " in row for row in rows)
    assert rows[-1].split()[1] == "of"  # "3 of 3"


def test_show_has_the_runs_parameters(api: Api) -> None:
    made = api.run("trigger", "DEMO", "--param", "log_lines=3", "--follow")
    execution_id = _id_of(made.stdout.splitlines()[0])
    result = api.run("show", execution_id)
    assert result.returncode == 0, result.stderr
    assert f"id           {execution_id}" in result.stdout or execution_id in result.stdout
    assert "parameters:" in result.stdout and "log_lines = 3" in result.stdout
    assert "EXTRACT" in result.stdout and "LOAD" in result.stdout
    whole = json.loads(api.run("show", execution_id, "--json").stdout)
    assert whole["_id"] == execution_id and whole["parameters"]["log_lines"] == 3


def test_a_secret_parameter_is_masked_in_what_the_client_prints(api: Api) -> None:
    made = api.run("trigger", "KEYED", "--param", f"api_key={SECRET}", "--follow")
    assert made.returncode == 0, made.stdout + made.stderr
    assert "params: who='world' api_key=SecretStr('**********')" in made.stdout
    execution_id = _id_of(made.stdout.splitlines()[0])
    shown = api.run("show", execution_id)
    assert 'api_key = "**********"' in shown.stdout, shown.stdout
    whole = api.run("show", execution_id, "--json")
    assert json.loads(whole.stdout)["parameters"] == {"who": "world", "api_key": "**********"}
    printed = [made, shown, whole, api.run("tail", execution_id), api.run("list", "name=KEYED")]
    for done in printed:
        assert done.returncode == 0, done.stderr
        assert SECRET not in done.stdout + done.stderr


def test_a_refused_parameter_is_the_api_s_400_and_no_run(api: Api) -> None:
    before = api.run("list", "name=DEMO", "--json").stdout
    for param, told in (
        ("slep=1", "body.slep: unknown parameter (did you mean 'sleep'?)"),
        ("log_lines=1.5", "body.log_lines: Input should be a valid integer, got a number"),
    ):
        refused = api.run("trigger", "DEMO", "--param", param)
        assert refused.returncode == 2 and told in refused.stderr, refused.stderr
    assert api.run("list", "name=DEMO", "--json").stdout == before


def test_tail_follows_a_running_run_to_its_end(api: Api) -> None:
    made = api.run("trigger", "DEMO", "--param", "sleep=0.5", "--param", "log_lines=2")
    assert made.returncode == 0, made.stderr
    execution_id = _id_of(made.stdout)
    result = api.run("tail", execution_id)
    assert result.returncode == 0, result.stderr
    assert "phase LOAD: success" in result.stdout
    # each log line once, in order, named by its phase
    lines = result.stdout.splitlines()
    for phase in ("EXTRACT", "TRANSFORM", "SEND", "LOAD"):
        logged = [line for line in lines if line.startswith(f"{phase}  ") and " line " in line]
        assert [line.rsplit(" info ", 1)[-1] for line in logged] == [
            f"{phase} line 1 of 2",
            f"{phase} line 2 of 2",
        ], lines
    failed = api.run("trigger", "DEMO", "--param", "fail_in=SEND", "--follow")
    assert api.run("tail", _id_of(failed.stdout.splitlines()[0])).returncode == 1


def test_cancel_and_rerun_go_through_the_api(api: Api) -> None:
    made = api.run("trigger", "DEMO", "--param", "sleep=5")
    execution_id = _id_of(made.stdout)
    time.sleep(1)
    cancelled = api.run("cancel", execution_id)
    assert cancelled.returncode == 0, cancelled.stderr
    assert cancelled.stdout.startswith(f"{execution_id}: failed")
    with api_client(api.root + "/service/process-exec", api.token) as client:
        doc = wait_terminal(client, execution_id)
    assert doc["status"] == "failed"
    again = api.run("cancel", execution_id)
    assert again.returncode == 2 and again.stderr.startswith("procexec: 409: ")
    assert len(again.stderr.splitlines()) == 1

    failed = api.run("trigger", "DEMO", "--param", "fail_in=SEND", "--follow")
    failed_id = _id_of(failed.stdout.splitlines()[0])
    rerun = api.run("rerun", failed_id, "--json")
    assert rerun.returncode == 0, rerun.stderr
    new = json.loads(rerun.stdout)
    assert new["_id"] != failed_id and new["status"] == "triggered"
    followed = api.run("rerun", failed_id, "--from", "start", "--follow")
    assert followed.returncode == 1  # the same parameters: it fails in SEND again
    assert followed.stdout.startswith(f"{failed_id} -> ")


def test_a_bad_url_exits_2_in_one_line(api: Api) -> None:
    result = api.run("list", "--url", f"http://127.0.0.1:{free_port()}")
    assert result.returncode == 2
    assert result.stderr.startswith("procexec: cannot reach http://127.0.0.1:")
    assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr
    nothing = api.run("list", PROCEXEC_URL="")
    assert nothing.returncode == 2 and "PROCEXEC_URL" in nothing.stderr


def test_a_bad_token_exits_2_with_the_apis_message(api: Api) -> None:
    result = api.run("show", "nothing", "--token", "pe_not-a-token-at-all")
    assert result.returncode == 2
    assert result.stderr.startswith("procexec: 401: ")
    assert len(result.stderr.splitlines()) == 1
    assert "pe_not-a-token" not in result.stderr


def test_refusals_name_the_problem(api: Api) -> None:
    unknown = api.run("show", "no-such-run")
    assert unknown.returncode == 2 and unknown.stderr.startswith("procexec: 404: ")
    bad = api.run("list", "statuss=failed")
    assert bad.returncode == 2 and bad.stderr.startswith("procexec: 400: statuss")
    refused = api.run("trigger", "DEMO", "--param", "slep=1")
    assert refused.returncode == 2 and "slep" in refused.stderr
    assert api.run("list", "oops").returncode == 2


def test_a_read_token_cannot_trigger(api: Api) -> None:
    reader = create_token(service_env(api.data), "reader", "read")
    result = api.run("trigger", "DEMO", "--token", reader)
    assert result.returncode == 2 and result.stderr.startswith("procexec: 403: ")
    assert reader not in result.stderr


def test_cancel_with_the_url_alone_stays_on_the_store(api: Api) -> None:
    """`PROCEXEC_URL` set for curl, no token: `cancel` works on the store as before (its
    `--user` shown), the service's `PROCEXEC_DATA_DIR` naming it."""
    made = api.run("trigger", "DEMO", "--param", "sleep=5")
    execution_id = _id_of(made.stdout)
    store_env = {**service_env(api.data), "PROCEXEC_URL": api.root}
    result = run_cli("cancel", execution_id, "--user", "ops", env=store_env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{execution_id}: failed") and "ops" in result.stdout
    unknown = run_cli("cancel", "no-such-run", env={**store_env, "PROCEXEC_TOKEN": api.token})
    assert unknown.returncode == 2 and unknown.stderr.startswith("procexec: 404: ")


def test_on_the_store_rerun_refuses_what_only_the_api_does(api: Api) -> None:
    store_env = service_env(api.data)
    result = run_cli("rerun", "some-id", "--follow", env=store_env)
    assert result.returncode == 2 and "--follow and --json go through the API" in result.stderr
    made = api.run("trigger", "DEMO", "--param", "sleep=5")
    execution_id = _id_of(made.stdout)
    cancelled = run_cli("cancel", execution_id, "--json", env=store_env)
    assert cancelled.returncode == 0, cancelled.stderr
    doc = json.loads(cancelled.stdout)
    # without --user: the OS user, as every command on the store says who it is
    assert (doc["status"], doc["message"]) == ("failed", f"Cancelled by {command_user()}")
    audit = run_cli("audit", "--action", "cancel", "--json", env=store_env)
    newest = json.loads(audit.stdout)[0]
    assert (newest["who"], newest["target"]) == (command_user(), execution_id)
