"""`procexec store check`: on SQLite as a real subprocess; on MongoDB in-process, on the
stand-in (mongomock through its adapter), since no server runs here.

Exit 0 healthy, 1 not answering or indexes missing, 2 no store there (test_cli.py holds it
to that with the other commands that need a service's store).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from procexec import cli
from procexec.engine.settings import Settings
from procexec.engine.store import ExecutionStore
from procexec.engine.store.mongo import MongoStore
from procexec.engine.store.mongo_query import TEXT_INDEX
from procexec.engine.store.sqlite import SQLiteStore
from procexec.engine.store.sqlite.schema import wanted_indexes
from tests.engine.conftest import mongo_database
from tests.integration.harness import run_cli


def test_a_healthy_sqlite_store(env: dict[str, str], data_dir: Path) -> None:
    store = SQLiteStore(data_dir / "procexec.db")
    store.insert({"_id": "a", "environment": "production", "status": "success"})
    store.insert({"_id": "b", "environment": "production", "status": "failed"})
    store.save_checkpoint("b", 1, b"x")
    store.close()
    result = run_cli("store", "check", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"store:       sqlite:///{data_dir / 'procexec.db'} (sqlite)"
    assert lines[1] == "reachable:   yes"
    count = len(wanted_indexes())
    assert lines[2] == f"indexes:     {count} of {count} present"
    assert "  present  executions        ix_list_start" in lines
    assert "executions:  2 (failed 1, success 1)" in lines
    assert "checkpoints: 1" in lines
    assert lines[-1] == "healthy"
    assert result.stderr == ""

    result = run_cli("store", "check", "--json", env=env)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["healthy"] is True and report["reachable"] is True
    assert report["executions"] == 2
    assert report["byStatus"] == {"failed": 1, "success": 1}
    assert report["checkpoints"] == 1
    assert {index["name"] for index in report["indexes"]} == {n for _, n in wanted_indexes()}


def test_a_missing_index_is_unhealthy_and_the_check_does_not_make_it(
    env: dict[str, str], data_dir: Path
) -> None:
    path = data_dir / "procexec.db"
    conn = sqlite3.connect(path)
    conn.execute("DROP INDEX ix_list_status")
    conn.close()
    for _ in range(2):  # the check made nothing: still missing the second time
        result = run_cli("store", "check", env=env)
        assert result.returncode == 1, result.stdout + result.stderr
        assert "  MISSING  executions        ix_list_status" in result.stdout.splitlines()
        assert result.stdout.splitlines()[-1].startswith("unhealthy: 1 index missing")


def test_a_file_that_is_not_a_database_is_not_reachable(
    env: dict[str, str], data_dir: Path
) -> None:
    (data_dir / "procexec.db").write_bytes(b"not a database " * 100)
    result = run_cli("store", "check", env=env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "reachable:   no" in result.stdout.splitlines()
    assert result.stdout.splitlines()[-1] == (
        "unhealthy: the store does not answer: file is not a database"
    )
    assert "Traceback" not in result.stderr


def test_a_mongodb_that_does_not_answer_is_reported_without_its_password(
    env: dict[str, str],
) -> None:
    url = "mongodb://bob:s3cret%21@127.0.0.1:1/procexec"  # nothing listens on port 1
    result = run_cli("store", "check", "--timeout", "0.5", env={**env, "PROCEXEC_STORE_URL": url})
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout.splitlines()[:2] == [
        "store:       mongodb://bob:***@127.0.0.1:1/procexec (mongodb)",
        "reachable:   no",
    ]
    assert result.stdout.splitlines()[-1].startswith("unhealthy: the store does not answer: ")
    assert "s3cret" not in result.stdout + result.stderr


def test_a_url_procexec_does_not_take_is_refused_without_its_password(
    env: dict[str, str],
) -> None:
    result = run_cli("store", "check", env={**env, "PROCEXEC_STORE_URL": "redis://bob:pw@x/0"})
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == (
        "procexec: PROCEXEC_STORE_URL: 'redis://bob:***@x/0' is no store URL procexec takes: "
        "use sqlite:///… or mongodb://…\n"
    )
    assert ":pw@" not in result.stderr


# --- MongoDB, in-process ------------------------------------------------------------------


@pytest.fixture
def mongo_url(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[MongoStore]:
    """The command's settings naming a MongoDB with a password; the store it opens is the
    stand-in's database (a service made it), opened as the command opens it."""
    with mongo_database() as mongo:
        url = f"mongodb://alice:hunter2@mongo.example:27017/{mongo.db.name}"
        monkeypatch.setenv("PROCEXEC_DATA_DIR", str(tmp_path))
        monkeypatch.setenv("PROCEXEC_STORE_URL", url)

        def existing_store(config: Settings, *, prepare: bool, timeout: float) -> ExecutionStore:
            assert config.store_url == url
            assert prepare is False  # the check writes nothing
            return MongoStore(config.store_url, client=mongo.client, prepare=prepare)

        monkeypatch.setattr(cli, "existing_store", existing_store)
        yield mongo


def test_a_healthy_mongodb_store(mongo_url: MongoStore, capsys: pytest.CaptureFixture[str]) -> None:
    mongo_url.insert({"_id": "a", "environment": "production", "status": "running"})
    assert cli.main(["store", "check"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert (
        out[0]
        == f"store:       mongodb://alice:***@mongo.example:27017/{mongo_url.db.name} (mongodb)"
    )
    assert "  present  executions    search_text" in out
    assert "  present  observations  environment_1_series_id_1_date_1" in out
    assert "executions:  1 (running 1)" in out
    assert out[-1] == "healthy"
    assert "hunter2" not in "\n".join(out)


def test_a_mongodb_store_missing_its_text_index(
    mongo_url: MongoStore, capsys: pytest.CaptureFixture[str]
) -> None:
    mongo_url.executions.drop_index(TEXT_INDEX)
    assert cli.main(["store", "check", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["healthy"] is False and report["reachable"] is True
    assert [index["name"] for index in report["indexes"] if not index["present"]] == [TEXT_INDEX]
    assert report["store"].startswith("mongodb://alice:***@mongo.example:27017/")
    assert TEXT_INDEX not in mongo_url.executions.index_information()
