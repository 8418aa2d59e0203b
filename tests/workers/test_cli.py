"""The `procexec` command, run as a real subprocess."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest

from procexec.engine.store import open_store
from procexec.engine.tokens import verify_token
from tests.integration.harness import (
    PROCEXEC,
    api_client,
    create_token,
    run_cli,
    service_env,
    start_api,
    start_worker,
    stop_all,
    trigger,
    wait_http,
    wait_terminal,
    wait_worker_ready,
)


def test_token_create_with_scope_read(env: dict[str, str], data_dir: Path) -> None:
    token = create_token(env, "bob", scope="read")
    store = open_store(f"sqlite:///{data_dir / 'procexec.db'}")
    try:
        record = verify_token(store, token)
        assert record is not None
        assert (record.user, record.scope) == ("bob", "read")
        assert verify_token(store, token + "x") is None
    finally:
        store.close()


def test_token_create_defaults_to_scope_run(env: dict[str, str], data_dir: Path) -> None:
    token = create_token(env, "carol@example.com")
    store = open_store(f"sqlite:///{data_dir / 'procexec.db'}")
    try:
        record = verify_token(store, token)
        assert record is not None and (record.user, record.scope) == ("carol@example.com", "run")
    finally:
        store.close()


@pytest.mark.parametrize("user", ["bad user", "x;rm -rf", "a" * 129])
def test_token_create_rejects_an_invalid_user(env: dict[str, str], user: str) -> None:
    result = run_cli("token", "create", "--user", user, env=env)
    assert result.returncode != 0
    assert result.stdout == ""
    assert "invalid user name" in result.stderr


def test_token_create_rejects_an_unknown_scope(env: dict[str, str]) -> None:
    result = run_cli("token", "create", "--user", "bob", "--scope", "owner", env=env)
    assert result.returncode == 2
    assert result.stdout == ""
    assert "invalid choice: 'owner'" in result.stderr


def test_token_create_requires_a_user(env: dict[str, str]) -> None:
    result = run_cli("token", "create", env=env)
    assert result.returncode == 2
    assert "--user" in result.stderr


def test_help_lists_the_commands(env: dict[str, str]) -> None:
    result = run_cli("--help", env=env)
    assert result.returncode == 0, result.stderr
    commands = re.search(r"\{([a-z,]+)\}", result.stdout)
    assert commands, result.stdout
    assert set(commands[1].split(",")) >= {"standalone", "api", "worker", "beat", "token"}
    for command in ("standalone", "api", "worker", "beat", "token"):
        assert re.search(rf"^\s+{command}\s+\S", result.stdout, re.MULTILINE), command


def test_no_command_is_an_error(env: dict[str, str]) -> None:
    result = run_cli(env=env)
    assert result.returncode == 2
    assert "required" in result.stderr


def test_worker_refuses_to_start_with_an_unknown_process_module(env: dict[str, str]) -> None:
    env = {**env, "PROCEXEC_PROCESSES": "procexec_no_such_module"}
    result = run_cli("worker", "--pool", "solo", env=env, timeout=60)
    assert result.returncode != 0
    assert "procexec_no_such_module" in result.stderr


#: a whole process, as a user writes one: four phases in about twenty lines
WORDS_MODULE = '''\
"""WORDS: counts the words of a text."""
from procexec import Process

WORDS = Process("WORDS", service="TEXT", defaults={"text": "to be or not to be"})


@WORDS.phase("EXTRACT")
def extract(ctx, _):
    ctx.info(f"read {len(ctx.params['text'])} characters")
    return ctx.params["text"]


@WORDS.phase("TRANSFORM")
def transform(ctx, text):
    return text.lower().split()


@WORDS.phase("SEND")
def send(ctx, words):
    return {word: words.count(word) for word in sorted(set(words))}


@WORDS.phase("LOAD")
def load(ctx, counts):
    ctx.series_updated("2024-01-02", [f"#WORDS.{word}" for word in counts])
    ctx.loader_message(f"Counted {sum(counts.values())} words, {len(counts)} distinct")
'''


@pytest.mark.e2e
def test_a_process_module_named_by_configuration_runs_end_to_end(
    env: dict[str, str], tmp_path: Path
) -> None:
    assert len([line for line in WORDS_MODULE.splitlines() if line.strip()]) <= 20
    modules = tmp_path / "modules"
    modules.mkdir()
    (modules / "procexec_test_words.py").write_text(WORDS_MODULE)
    path = os.pathsep.join(filter(None, [str(modules), env.get("PYTHONPATH")]))
    env = {**env, "PYTHONPATH": path, "PROCEXEC_PROCESSES": "procexec_test_words"}
    token = create_token(env, "dave")

    worker = start_worker(env, tmp_path, wait=False)
    api, url = start_api(env, tmp_path, wait=False)
    try:
        wait_worker_ready(worker)
        wait_http(api, url)
        with api_client(url, token) as client:
            execution_id = trigger(client, "WORDS", {"text": "The cat and the hat"})
            doc = wait_terminal(client, execution_id)
    finally:
        stop_all(api, worker)

    assert doc["status"] == "success", doc
    assert (doc["service"], doc["name"], doc["runAs"]) == ("TEXT", "WORDS", "dave")
    assert [phase["name"] for phase in doc["phases"]] == ["EXTRACT", "TRANSFORM", "SEND", "LOAD"]
    assert [phase["status"] for phase in doc["phases"]] == ["success"] * 4
    extract = doc["phases"][0]["log"]
    assert [line.split(" ", 2)[1:] for line in extract] == [
        ["info", "read 19 characters"],
        ["info", "Completed EXTRACT"],
    ]
    assert doc["phases"][3]["log"] == ["Counted 5 words, 4 distinct"]
    assert doc["loaderMessage"] == "Counted 5 words, 4 distinct"
    assert doc["data"] == {
        "curves": {},
        "series": {"2024-01-02": ["#WORDS.and", "#WORDS.cat", "#WORDS.hat", "#WORDS.the"]},
    }


def test_the_console_script_is_this_interpreters() -> None:
    assert Path(PROCEXEC).exists(), PROCEXEC
    assert Path(PROCEXEC).parent == Path(sys.executable).parent


def test_worker_options_pass_through_to_celery_with_procexec_defaults_for_the_rest() -> None:
    from procexec.celery_argv import worker_argv

    defaults = worker_argv("INFO", [], "loader")
    assert defaults == [
        "worker",
        "--loglevel=INFO",
        "--without-mingle",
        "--without-gossip",
        "--pool=prefork",
        "--concurrency=2",
        "--queues=procexec,loader",
    ]
    # without a loader queue (PROCEXEC_LOADER_QUEUE empty), the run queue alone
    assert worker_argv("INFO", [], "")[-1] == "--queues=procexec"
    given = ["-n", "w1@%h", "-Qprocexec,other", "-c", "8", "--pool=threads"]
    assert worker_argv("INFO", given, "loader") == [*defaults[:4], *given]
    autoscaled = worker_argv("DEBUG", ["--autoscale=10,2", "--max-tasks-per-child", "50"], "loader")
    assert "--concurrency=2" not in autoscaled
    assert autoscaled[-3:] == ["--autoscale=10,2", "--max-tasks-per-child", "50"]


def test_only_the_celery_commands_take_options_of_their_own(env: dict[str, str]) -> None:
    result = run_cli("token", "create", "--user", "alice", "--concurrency", "3", env=env)
    assert result.returncode == 2
    assert "unrecognized arguments: --concurrency 3" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize(
    "command",
    [
        ("token", "create", "--user", "alice"),
        ("process", "list"),
        ("cancel", "0d6e0b3c-1c1e-4c4e-9d51-6f1f8b7a2a11"),
        ("store", "check"),
    ],
)
def test_a_command_refuses_a_store_no_service_made(tmp_path: Path, command: tuple[str]) -> None:
    """Run from another folder than the service's, it would make an empty store of its own (and
    print a token the running API refuses): it names the store it did not find instead."""
    elsewhere = tmp_path / "elsewhere"
    result = run_cli(*command, env=service_env(elsewhere))
    assert result.returncode == 2, result.stdout
    assert result.stdout == ""
    assert f"no store at {elsewhere / 'procexec.db'}: the service makes it" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (elsewhere / "procexec.db").exists()


@pytest.mark.parametrize(
    "command",
    [
        ("token", "create", "--user", "alice"),
        ("process", "list"),
        ("worker", "--pool", "solo"),
        ("beat",),
        ("api", "--port", "1"),
        ("standalone", "--port", "1"),
    ],
)
def test_a_bad_setting_stops_a_command_in_one_line(
    env: dict[str, str], data_dir: Path, command: tuple[str]
) -> None:
    """Every command reads the settings first: a value it cannot use is one line naming the
    variable and the value, before anything starts."""
    env = {**env, "PROCEXEC_MAX_LOG_LINES": "5"}
    result = run_cli(*command, env=env)
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert result.stderr == "procexec: PROCEXEC_MAX_LOG_LINES: '5' must be at least 10\n"
    assert not (data_dir / "broker").exists()  # nothing started
