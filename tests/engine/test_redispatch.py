"""Housekeeping: the document is the outbox. A trigger whose dispatch failed is kept and sent
later, a run not taken by a worker is sent again, a delayed one not before it is due
(the bench: tests/engine/runs.py).
"""

from __future__ import annotations

from tests.engine.runs import ENV, REDISPATCH_AFTER, Bench, later


def test_a_trigger_whose_dispatch_failed_is_accepted_and_sent_later(bench: Bench) -> None:
    bench.broker.down = True
    doc = bench.triggers.trigger("DEMO", run_as="alice", environment=ENV)
    execution_id = doc["_id"]

    assert doc["status"] == "triggered"
    assert bench.broker.failures == 1
    assert bench.doc(execution_id) == doc
    assert bench.store.get_meta(execution_id)["dispatched"] is None  # for the next pass

    # The broker is still down: the next pass tries, fails, and keeps it for the one after.
    assert bench.housekeeper.run_once().redispatched == []
    assert bench.broker.failures == 2
    assert bench.status(execution_id) == "triggered"

    bench.broker.down = False
    assert bench.housekeeper.run_once().redispatched == [execution_id]
    assert bench.broker.calls == [(execution_id, 0.0)]
    assert bench.broker.processes == {execution_id: "DEMO"}  # its name read from the store
    # Sent: not again until `redispatch_after` has passed without a worker taking it.
    assert bench.housekeeper.run_once().redispatched == []
    assert bench.housekeeper.run_once(later(REDISPATCH_AFTER + 1)).redispatched == [execution_id]

    assert bench.runner().run(execution_id) == "success"
    assert bench.housekeeper.run_once(later(REDISPATCH_AFTER * 10)).redispatched == []
    assert len(bench.broker.calls) == 2


def test_a_delayed_run_is_not_redispatched_before_it_is_due(bench: Bench) -> None:
    bench.broker.down = True
    delayed = bench.triggers.trigger("DEMO", run_as="alice", environment=ENV, delay=120)
    bench.broker.down = False
    sent = bench.triggers.trigger("DEMO", run_as="alice", environment=ENV, delay=120)
    assert bench.broker.calls == [(sent["_id"], 120)]

    for seconds in (0, REDISPATCH_AFTER + 1, 100):
        assert bench.housekeeper.run_once(later(seconds)).redispatched == [], seconds
    due = bench.housekeeper.run_once(later(121)).redispatched
    assert sorted(due) == sorted([delayed["_id"], sent["_id"]])
