"""The documents the store tests load: `DOCS`, executions in the seed's shape whose starts sit on
and just beside the day bounds of the seed's range, and `ALL`, DOCS with `EXTRA` (accents,
numbers, nested arrays, odd shapes), with the orders the stores must list them in."""

from __future__ import annotations

from typing import Any

PROD = "production"

ALL_PHASES = ("EXTRACT", "TRANSFORM", "SEND", "LOAD")


def _phase(name: str, status: str, start: str, end: str | None = None) -> dict[str, Any]:
    phase: dict[str, Any] = {
        "name": name,
        "start": start,
        "status": status,
        "message": f"Completed {name}" if status == "success" else f"{status} {name}",
        "log": [f"{start[:-1]}000000Z[UTC] info {name} {status}"],
    }
    if end is not None:
        phase["end"] = end
    return phase


def execution(
    _id: str,
    name: str,
    status: str,
    start: str,
    *,
    end: str | None = None,
    phases: tuple[tuple[str, str], ...] = (),
    environment: str = PROD,
    loader: str | None = None,
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "_id": _id,
        "service": "ETL",
        "name": name,
        "environment": environment,
        "trigger": "scheduled",
        "status": status,
        "message": f"{name} {status}",
        "reason": f"crontab({name})",
        "start": start,
        "runAs": "com_walkfares",
        "phases": [
            _phase(phase_name, phase_status, start, None if phase_status == "running" else start)
            for phase_name, phase_status in phases
        ],
    }
    if end is not None:
        doc["end"] = end
    if loader is not None:
        doc["loaderMessage"] = loader
        doc["data"] = {"curves": {}, "series": {start[:10]: [f"#{name}.X"]}}
    return doc


ALL_SUCCESS = tuple((name, "success") for name in ALL_PHASES)

#: the fixture documents; starts sit on and just beside the day bounds of the seed's range
DOCS = [
    execution(
        "e01",
        "ECB_FX",
        "success",
        "2021-07-19T00:00:00.000Z",
        end="2021-07-19T00:01:00.000Z",
        phases=ALL_SUCCESS,
        loader="Updated 32 series for 2021-07-19",
    ),
    execution(
        "e02",
        "ECB_FX",
        "failed",
        "2021-07-20T10:00:00.000Z",
        end="2021-07-20T10:00:05.000Z",
        phases=(("EXTRACT", "success"), ("TRANSFORM", "failed")),
    ),
    execution(
        "e03",
        "ECB_FX",
        "success",
        "2021-07-23T23:59:59.999Z",
        end="2021-07-24T00:00:30.000Z",
        phases=ALL_SUCCESS,
        loader="Updated 32 series for 2021-07-23",
    ),
    execution(
        "e04",
        "ECB_FX",
        "failed",
        "2021-07-24T00:00:00.000Z",
        end="2021-07-24T00:00:05.000Z",
        phases=(("EXTRACT", "failed"),),
    ),
    execution(
        "e05",
        "ECB_FX",
        "success",
        "2021-07-18T23:59:59.999Z",
        end="2021-07-19T00:00:10.000Z",
        phases=ALL_SUCCESS,
        loader="Updated 32 series for 2021-07-18",
    ),
    execution(
        "e06",
        "DEMO",
        "failed",
        "2021-07-21T08:00:00.000Z",
        end="2021-07-21T08:00:09.000Z",
        phases=(
            ("EXTRACT", "success"),
            ("TRANSFORM", "success"),
            ("SEND", "success"),
            ("LOAD", "failed"),
        ),
    ),
    execution(
        "e07",
        "DEMO",
        "running",
        "2021-07-22T12:00:00.000Z",
        phases=(("EXTRACT", "running"),),
    ),
    # same start as e07: the order among equals is by id
    execution("e08", "DEMO", "triggered", "2021-07-22T12:00:00.000Z"),
    execution(
        "e09",
        "ECB_FX",
        "failed",
        "2021-07-20T11:00:00.000Z",
        end="2021-07-20T11:00:01.000Z",
        phases=(("EXTRACT", "failed"),),
        environment="staging",
    ),
    execution(
        "e10",
        "FX_ECB",
        "success",
        "2021-07-10T09:00:00.000Z",
        end="2021-07-10T09:00:01.000Z",
        phases=(("LOAD", "success"),),
        loader="Updated 1 series for 2021-07-10",
    ),
]
BY_ID = {doc["_id"]: doc for doc in DOCS}
#: production documents, newest start first, ties by id descending
NEWEST_FIRST = ["e04", "e03", "e08", "e07", "e06", "e02", "e01", "e05", "e10"]

#: documents with what DOCS lacks: accents, numbers, nested arrays, odd shapes
EXTRA: list[dict[str, Any]] = [
    {
        "_id": "x01",
        "service": "ETL",
        "name": "BOE_RATES",
        "environment": PROD,
        "trigger": "manual",
        "status": "warning",
        "message": "Café closed: Ünïcödé naïve",
        "reason": "Manually triggered by alice",
        "start": "2021-06-01T08:00:00.000Z",
        "end": "2021-06-01T08:00:02.000Z",
        "runAs": "alice",
        "phases": [
            {
                "name": "EXTRACT",
                "start": "2021-06-01T08:00:00.000Z",
                "status": "success",
                "message": "Completed EXTRACT",
                "log": [
                    "2021-06-01T08:00:00.000000000Z[UTC] info Connection refused by host",
                    "2021-06-01T08:00:01.000000000Z[UTC] warning retrying after timeout",
                ],
                "end": "2021-06-01T08:00:01.000Z",
            }
        ],
        "data": {"series": {"2021-06-01": ["#BOE.A", "#BOE.B"]}, "count": 7, "ratio": 0.5},
    },
    {
        "_id": "x02",
        "service": "ETL",
        "name": "BOE_RATES",
        "environment": PROD,
        "trigger": "subscription",
        "status": "success",
        "message": "Completed Successfully",
        "reason": "Subscription: ECB_FX updated",
        "start": "2021-06-02T08:00:00.000Z",
        "runAs": "bob",
        "phases": [],
        "data": {"series": {"2021-06-02": []}, "count": "7"},
    },
]
ALL = [*DOCS, *EXTRA]
ALL_BY_ID = {doc["_id"]: doc for doc in ALL}
#: production documents, newest start first
ORDER = [*NEWEST_FIRST, "x02", "x01"]
