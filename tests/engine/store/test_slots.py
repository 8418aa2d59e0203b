"""The slots of the concurrency limits, on every store (`engine.store.slots`): taken all or
none, never more than the limit, one a run, given back by holder; parked runs found and taken
back oldest first, and never among the runs the redelivery sends again."""

from __future__ import annotations

import threading

from procexec.engine.store.base import ExecutionStore, Update
from procexec.engine.store.slots import PARKED
from tests.engine.store.documents import execution

AT = "2024-01-01T00:00:00.000Z"


def park(store: ExecutionStore, execution_id: str, start: str, scope: str) -> None:
    store.insert(execution(execution_id, "DEMO", "triggered", start))
    assert store.update(
        execution_id,
        Update(set={"message": "Waiting"}, meta={"waiting": scope, "dispatched": PARKED}),
    )


def test_a_scope_s_slots_are_taken_up_to_its_limit(store: ExecutionStore) -> None:
    assert store.take_slots("a", [("DEMO", 2)], AT, AT) is None
    assert store.take_slots("a", [("DEMO", 2)], AT, AT) is None  # held already: taken
    assert store.take_slots("b", [("DEMO", 2)], AT, AT) is None
    assert store.take_slots("c", [("DEMO", 2)], AT, AT) == ("DEMO", 2)
    assert store.slots_held("DEMO") == 2
    assert sorted(store.slot_holders()) == [("DEMO", "a"), ("DEMO", "b")]
    assert store.release_slots("a") == ["DEMO"]
    assert store.release_slots("a") == []
    assert store.take_slots("c", [("DEMO", 2)], AT, AT) is None
    assert sorted(holder for _, holder in store.slot_holders()) == ["b", "c"]


def test_slots_are_taken_all_or_none(store: ExecutionStore) -> None:
    assert store.take_slots("a", [("*", 1)], AT, AT) is None
    assert store.take_slots("b", [("DEMO", 1), ("*", 1)], AT, AT) == ("*", 1)
    assert store.slots_held("DEMO") == 0  # the slot it took given back
    assert store.take_slots("b", [("DEMO", 1)], AT, AT) is None
    assert store.release_slots("b") == ["DEMO"]
    assert store.release_slots("a") == ["*"]
    assert store.take_slots("b", [("DEMO", 1), ("*", 1)], AT, AT) is None
    assert store.release_slots("b") == ["*", "DEMO"]


def test_a_lowered_limit_admits_no_one_until_the_runs_over_it_end(store: ExecutionStore) -> None:
    for holder in "abc":
        assert store.take_slots(holder, [("DEMO", 3)], AT, AT) is None
    store.release_slots("a")
    assert store.take_slots("d", [("DEMO", 1)], AT, AT) == ("DEMO", 2)
    store.release_slots("b")
    assert store.take_slots("d", [("DEMO", 1)], AT, AT) == ("DEMO", 1)
    store.release_slots("c")
    assert store.take_slots("d", [("DEMO", 1)], AT, AT) is None


def test_threads_racing_for_one_slot_let_one_through(store: ExecutionStore) -> None:
    won: list[str] = []
    barrier = threading.Barrier(8)

    def take(holder: str) -> None:
        try:
            barrier.wait(10)
            if store.take_slots(holder, [("DEMO", 1)], AT, AT) is None:
                won.append(holder)
        finally:
            store.release_thread()

    threads = [threading.Thread(target=take, args=(f"r{n}",)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert len(won) == 1
    assert store.slot_holders() == [("DEMO", won[0])]


def test_parked_runs_are_taken_back_oldest_first(store: ExecutionStore) -> None:
    park(store, "late", "2024-01-01T00:00:02.000Z", "DEMO")
    park(store, "early", "2024-01-01T00:00:01.000Z", "DEMO")
    park(store, "other", "2024-01-01T00:00:00.000Z", "*")
    assert store.waiting_scopes() == {"DEMO": 2, "*": 1}
    # never stale: the redelivery does not send a parked run again
    assert store.stale(["triggered"], "dispatched", "2999-01-01T00:00:00.000Z") == []

    assert store.unpark("DEMO", AT) == "early"
    meta = store.get_meta("early")
    assert (meta["waiting"], meta["dispatched"]) == (None, AT)
    assert store.waiting_scopes() == {"DEMO": 1, "*": 1}
    assert store.unpark("DEMO", AT) == "late"
    assert store.unpark("DEMO", AT) is None
    assert sorted(row[0] for row in store.stale(["triggered"], "dispatched", "2025-01-01")) == [
        "early",
        "late",
    ]


def test_an_earlier_parked_run_goes_first(store: ExecutionStore) -> None:
    park(store, "parked", "2024-01-01T00:00:01.000Z", "DEMO")
    later, earlier = "2024-01-01T00:00:02.000Z", "2024-01-01T00:00:00.000Z"
    assert store.take_slots("fresh", [("DEMO", 1)], later, AT) == ("DEMO", 0)
    assert store.take_slots("older", [("DEMO", 1)], earlier, AT) is None
    store.release_slots("older")
    assert store.unpark("DEMO", AT) == "parked"
    assert store.take_slots("fresh", [("DEMO", 1)], later, AT) is None


def test_a_cancelled_parked_run_is_not_taken_back(store: ExecutionStore) -> None:
    park(store, "gone", "2024-01-01T00:00:01.000Z", "DEMO")
    assert store.update("gone", Update(set={"status": "failed", "message": "Cancelled"}))
    assert store.waiting_scopes() == {}
    assert store.unpark("DEMO", AT) is None
