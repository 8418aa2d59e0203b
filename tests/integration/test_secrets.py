"""Secrets never printed: the passwords of the broker's and the store's URLs, and the
notification webhook's URL and secret, appear in no banner, log line, error or HTTP answer, and
tokens in no log line; `procexec standalone` keeps one admin token across restarts."""

from __future__ import annotations

import json
import re
import stat
import subprocess
from pathlib import Path

import httpx2
import pytest

from procexec.token_cli import ADMIN_TOKEN_FILE
from tests.integration.harness import (
    PROCEXEC,
    Service,
    free_port,
    run_cli,
    service_env,
    start_standalone,
    stop_all,
)

pytestmark = [pytest.mark.e2e]

SECRET = "s3cret"
#: a broker that does not answer (nothing listens on port 1), with a password
BROKER = f"redis://:{SECRET}@127.0.0.1:1/0"
#: a MongoDB store that does not answer, with a password
MONGO = f"mongodb://u:{SECRET}@127.0.0.1:1/db"
FAKE_TOKEN = "pe_" + "Q" * 43
#: a webhook that does not answer, with a password, and a secret in its path and query
NOTIFY = f"https://hook:{SECRET}@127.0.0.1:1/services/{SECRET}?key={SECRET}"


def test_standalone_masks_passwords_and_keeps_one_admin_token(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    env = service_env(data_dir, BROKER, PROCEXEC_NOTIFY_URL=NOTIFY, PROCEXEC_NOTIFY_SECRET=SECRET)
    first, url, token = start_standalone(env, tmp_path / "logs")
    answers: list[str] = []
    try:
        banner = first.output()
        assert "  broker: redis://:***@127.0.0.1:1/0" in banner
        assert "  notify: https://127.0.0.1:1/… (on failed, json)\n" in banner
        path = data_dir / ADMIN_TOKEN_FILE
        assert f"  token:  {token[:8]}…  (user admin, scope admin; kept in {path})\n" in banner
        assert token not in banner  # nor in the "Try:" lines, which read the file
        assert f"  export TOKEN=$(cat {path})\n" in banner
        assert path.read_text() == token + "\n"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        root = url.removesuffix("/service/process-exec")
        with httpx2.Client(timeout=15, trust_env=False) as client:
            headers = {"Authorization": f"Bearer {token}"}
            for request in (
                client.build_request("GET", url),
                client.build_request("GET", f"{root}/readyz"),
                client.build_request("GET", f"{root}/healthz"),
                client.build_request("GET", f"{url}/v1", params={"token": FAKE_TOKEN}),
                client.build_request("GET", f"{url}/v1?access_token={token}", headers=headers),
                client.build_request("POST", f"{url}/v1", headers=headers, json={"name": "DEMO"}),
            ):
                response = client.send(request)
                answers.append(f"{response.status_code} {response.headers} {response.text}")
            ready = client.get(f"{root}/readyz").json()
            assert ready["checks"]["broker"]["ready"] is False  # it says why, without the URL
    finally:
        stop_all(first)
    output = first.output()
    assert SECRET not in output
    assert SECRET not in "\n".join(answers)
    assert FAKE_TOKEN not in output and f"access_token={token}" not in output
    assert "access_token=pe_***" in output  # the access log line, masked

    # a restart, the token printed whole for a script
    second, _, again = start_standalone(env, tmp_path / "logs", options=["--print-token"])
    try:
        assert again == token
        assert f"  token:  {token}  (user admin, scope admin; kept in " in second.output()
    finally:
        stop_all(second)
    listed = run_cli("token", "list", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    assert [(t["user"], t["scope"]) for t in json.loads(listed.stdout)] == [("admin", "admin")]
    assert SECRET not in second.output()


@pytest.mark.parametrize("command", ["standalone", "api"])
def test_an_unreachable_mongodb_is_reported_without_its_password(
    tmp_path: Path, command: str
) -> None:
    env = service_env(tmp_path / "data", BROKER, PROCEXEC_STORE_URL=MONGO)
    service = Service(
        command, [PROCEXEC, command, "--port", str(free_port())], env=env, log_dir=tmp_path
    )
    try:
        service.proc.wait(120)  # the store does not answer: it gives up (hang detection)
    except subprocess.TimeoutExpired:
        service.fail("did not give up on a MongoDB that does not answer")
    finally:
        stop_all(service)
    output = service.output()
    assert service.proc.returncode != 0
    assert "mongodb://u:***@127.0.0.1:1/db" in output
    assert SECRET not in output


@pytest.mark.parametrize(
    "args", [["store", "check"], ["token", "list"], ["token", "create", "--user", "x"]]
)
def test_commands_on_an_unreachable_mongodb_hide_its_password(
    tmp_path: Path, args: list[str]
) -> None:
    env = service_env(tmp_path / "data", BROKER, PROCEXEC_STORE_URL=MONGO)
    result = run_cli(*args, "--timeout", "1" if args[0] == "store" else "", env=env)
    if args[0] != "store":
        result = run_cli(*args, env=env)
    assert result.returncode != 0
    assert SECRET not in result.stdout + result.stderr
    assert re.search(r"MongoDB|mongodb", result.stdout + result.stderr)


def test_a_notification_url_refused_is_shown_without_its_secrets(tmp_path: Path) -> None:
    refused = NOTIFY.replace("https://", "ftp://")
    env = service_env(tmp_path / "data", BROKER, PROCEXEC_NOTIFY_URL=refused)
    result = run_cli("store", "check", env=env)
    assert result.returncode == 2
    assert "PROCEXEC_NOTIFY_URL: 'ftp://127.0.0.1:1/…' is no http:// or https:// URL" in (
        result.stderr
    )
    assert SECRET not in result.stdout + result.stderr
