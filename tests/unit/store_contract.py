"""The Store contract every backend must keep (topology/store/__init__.py), as tests.

Backend test modules import these with `from tests.unit.store_contract import *` and provide a
`store` fixture; pytest then runs each test against that backend. Only what the contract
promises is asserted here (revisions strictly increase, the feed has old and new, a failed
transaction changes nothing); backend specifics stay in the backend's module.
"""
from __future__ import annotations

import threading
import time

import pytest

__all__ = ["test_put_get_list_delete_and_revisions", "test_failed_transaction_changes_nothing",
           "test_change_feed_records_old_and_new", "test_unchanged_put_is_not_a_change",
           "test_changes_blocks_until_a_commit", "test_changes_times_out_empty"]


def test_put_get_list_delete_and_revisions(store):
    assert store.revision() == 0
    with store.transaction() as t:
        t.put("network", {"id": "n1", "name": "a"})
        t.put("port", {"id": "p1", "network_id": "n1"})
        assert t.get("network", "n1")["name"] == "a"  # reads see own writes
    first = store.revision()
    assert first > 0
    assert store.get("network", "n1") == {"id": "n1", "name": "a"}
    assert [p["id"] for p in store.list("port")] == ["p1"]
    with store.transaction() as t:
        t.delete("port", "p1")
    assert store.get("port", "p1") is None
    assert store.revision() > first
    changes = store.changes(0)
    assert [c.revision for c in changes] == sorted({c.revision for c in changes}), "not strictly increasing"
    assert changes[-1].revision == store.revision()
    assert changes[1].revision == first  # revision() = the last change of the last commit


def test_failed_transaction_changes_nothing(store):
    with store.transaction() as t:
        t.put("network", {"id": "n1", "name": "a"})
    before = store.snapshot()
    with pytest.raises(RuntimeError):
        with store.transaction() as t:
            t.put("network", {"id": "n1", "name": "changed"})
            t.put("network", {"id": "n2"})
            raise RuntimeError("boom")
    assert store.snapshot() == before


def test_change_feed_records_old_and_new(store):
    for body in ({"id": "n1", "v": 1}, {"id": "n1", "v": 2}):
        with store.transaction() as t:
            t.put("network", body)
    with store.transaction() as t:
        t.delete("network", "n1")
    changes = store.changes(0)
    assert [(c.kind, c.id, c.old, c.new) for c in changes] == [
        ("network", "n1", None, {"id": "n1", "v": 1}),
        ("network", "n1", {"id": "n1", "v": 1}, {"id": "n1", "v": 2}),
        ("network", "n1", {"id": "n1", "v": 2}, None),
    ]
    assert store.changes(changes[-1].revision) == []
    assert store.changes(changes[0].revision) == changes[1:]


def test_unchanged_put_is_not_a_change(store):
    with store.transaction() as t:
        t.put("network", {"id": "n1", "v": 1})
    rev = store.revision()
    with store.transaction() as t:
        t.put("network", {"id": "n1", "v": 1})
    assert store.revision() == rev
    assert len(store.changes(0)) == 1


def test_changes_blocks_until_a_commit(store):
    got = []
    thread = threading.Thread(target=lambda: got.extend(store.changes(0, timeout=5)))
    thread.start()
    time.sleep(0.2)
    assert not got
    with store.transaction() as t:
        t.put("router", {"id": "r1"})
    thread.join(5)
    assert [c.id for c in got] == ["r1"]


def test_changes_times_out_empty(store):
    start = time.monotonic()
    assert store.changes(0, timeout=0.3) == []
    assert time.monotonic() - start >= 0.25
