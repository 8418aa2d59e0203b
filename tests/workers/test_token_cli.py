"""`procexec token create | list | revoke` as real subprocesses, two API processes refusing a
revoked token, and the admin token `procexec standalone` keeps."""

from __future__ import annotations

import json
import stat
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx2
import pytest

from procexec.engine.store import open_store
from procexec.engine.store.sqlite import SQLiteStore
from procexec.engine.timeutil import iso_ms, parse_iso
from procexec.engine.tokens import CACHE_SECONDS, create_token, hash_token, revoke, verify_token
from procexec.token_cli import ADMIN_TOKEN_FILE, standalone_token
from tests.integration.harness import run_cli, start_api, stop_all


def _listed(env: dict[str, str], *extra: str) -> list[dict[str, object]]:
    result = run_cli("token", "list", "--json", *extra, env=env)
    assert result.returncode == 0, result.stderr
    items: list[dict[str, object]] = json.loads(result.stdout)
    return items


def test_create_list_and_revoke(env: dict[str, str], data_dir: Path) -> None:
    created = run_cli(
        "token", "create", "--user", "carol", "--scope", "read", "--expires", "30d",
        "--environment", "staging", "--process", "DEMO", "--process", "ECB_FX", env=env,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    other = run_cli("token", "create", "--user", "dave", env=env).stdout.strip()
    items = _listed(env)
    assert {item["user"] for item in items} == {"carol", "dave"}
    carol = next(item for item in items if item["user"] == "carol")
    assert carol["id"] == hash_token(token)[:12]
    assert (carol["scope"], carol["state"], carol["revoked"]) == ("read", "active", None)
    assert (carol["environments"], carol["processes"]) == (["staging"], ["DEMO", "ECB_FX"])
    expires = parse_iso(str(carol["expires"]))
    assert timedelta(days=29, hours=23) < expires - datetime.now(UTC) <= timedelta(days=30)
    table = run_cli("token", "list", env=env)
    assert table.returncode == 0
    for secret in (token, other, hash_token(token), hash_token(other)):
        assert secret not in table.stdout and secret not in json.dumps(items)
    header, *rows = table.stdout.splitlines()
    assert header.split() == [
        "ID", "USER", "SCOPE", "STATE", "CREATED", "EXPIRES", "ENVIRONMENTS", "PROCESSES",
    ]  # fmt: skip
    assert len(rows) == 2 and any("staging" in row and "DEMO,ECB_FX" in row for row in rows)

    revoked = run_cli("token", "revoke", str(carol["id"])[:8], env=env)
    assert revoked.returncode == 0, revoked.stderr
    assert f"revoked {carol['id']} (user carol, scope read)" in revoked.stdout
    assert [item["user"] for item in _listed(env)] == ["dave"]  # active ones by default
    everything = {item["user"]: item for item in _listed(env, "--all")}
    assert everything["carol"]["state"] == "revoked" and everything["carol"]["revoked"]
    again = run_cli("token", "revoke", str(carol["id"]), env=env)
    assert again.returncode == 0 and "was revoked already" in again.stdout
    store = open_store(f"sqlite:///{data_dir / 'procexec.db'}")
    try:
        assert verify_token(store, token) is None
        assert verify_token(store, other) is not None
    finally:
        store.close()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--expires", "soon"], "--expires: 'soon' is neither a length of time"),
        (["--expires", "2001-01-01"], "--expires: '2001-01-01' is not in the future"),
        (["--environment", "a b"], "--environment: 'a b' is not a valid name"),
        (["--process", "NOPE"], "--process: unknown process(es) NOPE (known: "),
        (["--scope", "admin", "--process", "DEMO"], "an admin token takes no --environment"),
    ],
)
def test_create_refuses_bad_options(env: dict[str, str], args: list[str], message: str) -> None:
    result = run_cli("token", "create", "--user", "eve", *args, env=env)
    assert result.returncode == 2
    assert result.stdout == ""
    assert message in result.stderr
    assert _listed(env, "--all") == []


@pytest.mark.parametrize(
    ("token_id", "message"),
    [("abcdef", "no token with id 'abcdef'"), ("pe_x", "'pe_x' is not a token id")],
)
def test_revoke_refuses_an_unknown_id(env: dict[str, str], token_id: str, message: str) -> None:
    result = run_cli("token", "revoke", token_id, env=env)
    assert result.returncode == 2 and message in result.stderr


def test_two_api_processes_refuse_a_revoked_token(
    env: dict[str, str], data_dir: Path, tmp_path: Path
) -> None:
    """Revoked with the CLI, a token both API processes accepted (and cached) is refused by
    both, within the cache's lifetime (polled with a generous deadline)."""
    token = run_cli("token", "create", "--user", "alice", env=env).stdout.strip()
    first, first_url = start_api(env, tmp_path / "logs")
    second, second_url = start_api(env, tmp_path / "logs")
    try:
        headers = {"Authorization": f"Bearer {token}"}
        with httpx2.Client(timeout=15, trust_env=False, headers=headers) as client:
            for url in (first_url, second_url):
                assert client.get(f"{url}/v1").status_code == 200  # verified, and cached
            token_id = _listed(env)[0]["id"]
            assert run_cli("token", "revoke", str(token_id), env=env).returncode == 0
            pending = {first_url, second_url}
            deadline = time.monotonic() + CACHE_SECONDS + 60  # hang detection, not a timing
            while pending and time.monotonic() < deadline:
                for url in list(pending):
                    response = client.get(f"{url}/v1")
                    assert response.status_code in (200, 401), response.text
                    if response.status_code == 401:
                        assert response.json()["error"] == "invalid token"
                        pending.discard(url)
                time.sleep(0.2)
            assert not pending, f"still accepted by {pending}"
            for url in (first_url, second_url):  # and stays refused
                assert client.get(f"{url}/v1").status_code == 401
    finally:
        stop_all(first, second)
    for api in (first, second):
        assert token not in api.output()


def test_standalone_token_is_kept_in_a_private_file(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "procexec.db")
    try:
        token = standalone_token(store, tmp_path, "admin")
        path = tmp_path / ADMIN_TOKEN_FILE
        assert path.read_text() == token + "\n"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert standalone_token(store, tmp_path, "admin") == token  # kept
        record = verify_token(store, token)
        assert record is not None and (record.user, record.scope) == ("admin", "admin")
        assert len(store.token_records()) == 1
        path.chmod(0o644)  # loosened by hand: made private again
        assert standalone_token(store, tmp_path, "admin") == token
        assert stat.S_IMODE(path.stat().st_mode) == 0o600

        revoke(store, record.id)  # revoked: a new one replaces it
        renewed = standalone_token(store, tmp_path, "admin")
        assert renewed != token and verify_token(store, renewed) is not None
        assert path.read_text() == renewed + "\n"

        other = standalone_token(store, tmp_path, "ops")  # another user: the old one revoked
        assert verify_token(store, renewed) is None
        record = verify_token(store, other)
        assert record is not None and record.user == "ops"

        past = iso_ms(datetime.now(UTC) - timedelta(seconds=1))
        expired = create_token(store, "ops", "admin", expires=past)
        path.write_text(expired + "\n")  # an expired token in the file: replaced
        assert standalone_token(store, tmp_path, "ops") not in (expired, other)

        path.write_text("pe_forged\n")  # a token the store never made: replaced
        assert standalone_token(store, tmp_path, "ops").startswith("pe_")
        assert path.read_text() != "pe_forged\n"
    finally:
        store.close()
