"""Store-maintained record indexes (SqliteTxn.index) and WriteTx's overlays on them.

Why these tests: a write transaction no longer rescans every port; it trusts indexes the store
keeps across transactions. They must equal a rebuild from the records after every commit, after a
failed transaction, after another process wrote the file, and inside a transaction that has
already written — and WriteTx must answer exactly what the list-built path (etcd) answers.
"""
from __future__ import annotations

import random

import pytest

from topology.model.service import Service
from topology.store.sqlite import RecordIndex, SqliteStore
from topology.store import NETWORK, PORT, SECURITY_GROUP, SUBNET
from topology.store.writetx import INDEXES, KEYED_KINDS, WriteTx


def _by_net(rec):
    return [(rec.get("network_id"), rec["id"])]


def rebuilt(store: SqliteStore, kind: str, entries) -> dict:
    index = RecordIndex(kind, entries)
    for rec in store.list(kind):
        index.update(rec, 1)
    return index.buckets


def committed(store: SqliteStore, name: str, kind: str, entries) -> dict:
    with store.transaction() as t:
        return {b: dict(items) for b, items in t.index(name, kind, entries).items()}


@pytest.fixture()
def store(tmp_path):
    s = SqliteStore(str(tmp_path / "tf.db"))
    yield s
    s.close()


def test_txn_reads_see_own_writes_lazily(store):
    with store.transaction() as t:
        for i in range(5):
            t.put(PORT, {"id": f"p{i}", "network_id": "n"})
    with store.transaction() as t:
        assert t.get(PORT, "p3") == {"id": "p3", "network_id": "n"}
        t.put(PORT, {"id": "p3", "network_id": "m"})
        t.delete(PORT, "p1")
        t.put(PORT, {"id": "p9", "network_id": "n"})
        assert t.get(PORT, "p3")["network_id"] == "m"
        assert t.get(PORT, "p1") is None
        assert [p["id"] for p in t.list(PORT)] == ["p0", "p2", "p3", "p4", "p9"]
        t.delete(PORT, "p9")
        assert t.get(PORT, "p9") is None and "p9" not in [p["id"] for p in t.list(PORT)]
    assert sorted(p["id"] for p in store.list(PORT)) == ["p0", "p2", "p3", "p4"]
    assert store.get(PORT, "p3")["network_id"] == "m"


def test_decoded_records_are_not_shared_between_transactions(store):
    with store.transaction() as t:
        t.put(PORT, {"id": "p", "tags": []})
    with store.transaction() as t:
        t.get(PORT, "p")["tags"].append("mutated-but-not-written")
    with store.transaction() as t:
        assert t.get(PORT, "p")["tags"] == []


def test_index_follows_commits_and_ignores_failed_transactions(store):
    idx = ("t.port.net", PORT, _by_net)
    with store.transaction() as t:
        t.index(*idx)  # built empty
        t.put(PORT, {"id": "a", "network_id": "n1"})
        # the index is the committed state: own writes are not in it
        assert t.index(*idx) == {}
    assert committed(store, *idx) == {"n1": {"a": 1}}
    with pytest.raises(RuntimeError):
        with store.transaction() as t:
            t.put(PORT, {"id": "b", "network_id": "n1"})
            t.delete(PORT, "a")
            raise RuntimeError("boom")
    assert committed(store, *idx) == {"n1": {"a": 1}} == rebuilt(store, PORT, _by_net)
    with store.transaction() as t:
        t.put(PORT, {"id": "a", "network_id": "n2"})
        t.put(PORT, {"id": "b", "network_id": "n2"})
    assert committed(store, *idx) == {"n2": {"a": 1, "b": 1}} == rebuilt(store, PORT, _by_net)
    with store.transaction() as t:
        t.delete(PORT, "a")
        t.delete(PORT, "b")
    assert committed(store, *idx) == {}


def test_index_follows_another_process_writing_the_file(tmp_path):
    path = str(tmp_path / "tf.db")
    one, two = SqliteStore(path), SqliteStore(path)
    idx = ("t.port.net", PORT, _by_net)
    try:
        assert committed(one, *idx) == {}
        with two.transaction() as t:
            t.put(PORT, {"id": "x", "network_id": "n"})
        assert committed(one, *idx) == {"n": {"x": 1}}
        with two.transaction() as t:
            t.delete(PORT, "x")
            t.put(PORT, {"id": "y", "network_id": "m"})
        assert committed(one, *idx) == {"m": {"y": 1}} == rebuilt(one, PORT, _by_net)
    finally:
        one.close()
        two.close()


def test_index_rebuilt_after_reload(tmp_path):
    path = str(tmp_path / "tf.db")
    one, two = SqliteStore(path, keep_changes=2), SqliteStore(path, keep_changes=2)
    idx = ("t.port.net", PORT, _by_net)
    try:
        committed(one, *idx)
        for i in range(10):  # compacts the log past `one`'s revision → `one` reloads everything
            with two.transaction() as t:
                t.put(PORT, {"id": f"p{i}", "network_id": f"n{i % 3}"})
        assert committed(one, *idx) == rebuilt(one, PORT, _by_net)
        assert sum(len(v) for v in committed(one, *idx).values()) == 10
    finally:
        one.close()
        two.close()


class ListOnlyTxn:
    """A Txn without `index` (like EtcdTxn): WriteTx builds its indexes from list()."""

    def __init__(self, txn) -> None:
        self._t = txn

    def get(self, kind, rid):
        return self._t.get(kind, rid)

    def list(self, kind):
        return self._t.list(kind)

    def put(self, kind, rec):
        self._t.put(kind, rec)

    def delete(self, kind, rid):
        self._t.delete(kind, rid)


def answers(tx: WriteTx, store_txn) -> dict:
    """Everything WriteTx derives from all records, in comparable form."""
    subnets = store_txn.list(SUBNET)
    nets = store_txn.list(NETWORK)
    return {
        "keys": {k: set(tx.keys(k).used) for k in KEYED_KINDS},
        "ips": {s["id"]: tx.ips_in_use(s["id"]) for s in subnets},
        "macs": {n["id"]: set(tx.macs(n["id"])) for n in nets},
        "ports": {n["id"]: sorted(p["id"] for p in tx.ports_of(n["id"])) for n in nets},
        "subnets": {n["id"]: [s["id"] for s in tx.subnets_of(n["id"])] for n in nets},
        "segments": {k: set(v) for k, v in tx.segments().items() if v},
        "default_sgs": dict(tx.default_sgs()),
    }


def check_equivalent(store: SqliteStore, svc: Service, write=None) -> None:
    with pytest.raises(_Rollback):
        with store.transaction() as t:
            indexed = WriteTx(t, svc.settings)
            assert indexed._overlays, "SqliteTxn offers store indexes"
            if write is not None:
                write(indexed)
            listed = WriteTx(ListOnlyTxn(t), svc.settings)
            assert not listed._overlays
            assert answers(indexed, t) == answers(listed, t)
            raise _Rollback()


class _Rollback(Exception):
    pass


def test_writetx_overlay_answers_like_the_list_built_indexes(store):
    random.seed(7)
    svc = Service(store)
    check_equivalent(store, svc)
    nets = svc.create_bulk(NETWORK, [{"name": f"n{i}"} for i in range(3)])
    nets.append(svc.create_network({"name": "v", "provider:network_type": "vlan",
                                    "provider:physical_network": "physnet1"}))
    subs = [svc.create_subnet({"network_id": n["id"], "cidr": f"10.0.{i}.0/24", "ip_version": 4})
            for i, n in enumerate(nets)]
    check_equivalent(store, svc)
    ports = svc.create_bulk(PORT, [{"network_id": nets[i % 4]["id"]} for i in range(12)])
    check_equivalent(store, svc)
    svc.delete(PORT, ports[3]["id"])
    sub_of = {s["network_id"]: s for s in subs}
    svc.update(PORT, ports[4]["id"], {"fixed_ips": [{"subnet_id": sub_of[ports[4]["network_id"]]["id"],
                                                     "ip_address": "10.0.%d.200" % subs.index(
                                                         sub_of[ports[4]["network_id"]])}]})
    check_equivalent(store, svc)
    for p in ports:
        if p["network_id"] == nets[2]["id"] and p["id"] != ports[3]["id"]:
            svc.delete(PORT, p["id"])
    svc.delete(NETWORK, nets[2]["id"])
    sg = svc.create("security_group", {"name": "web"})
    check_equivalent(store, svc)
    svc.delete(SECURITY_GROUP, sg["id"])
    check_equivalent(store, svc)

    # inside a transaction that already wrote (pending deltas before a bucket is first read)
    def writes(tx: WriteTx) -> None:
        net = tx.get(NETWORK, nets[0]["id"])
        p = tx.get(PORT, ports[0]["id"])
        tx.remove(PORT, p)
        new = dict(tx.get(PORT, ports[1]["id"]), mac_address="fa:16:3e:99:99:99")
        tx.replace(PORT, tx.get(PORT, ports[1]["id"]), new)
        tx.insert(PORT, dict(p, id="extra", mac_address="fa:16:3e:88:88:88", _key=4000,
                             network_id=net["id"]))
        tx.remove(SUBNET, tx.get(SUBNET, subs[3]["id"]))
    check_equivalent(store, svc, writes)


def test_every_writetx_index_is_maintained_by_the_store(store):
    svc = Service(store)
    net = svc.create_network({"name": "n"})
    svc.create_subnet({"network_id": net["id"], "cidr": "10.1.0.0/24", "ip_version": 4})
    for _ in range(3):
        svc.create_port({"network_id": net["id"]})
    with store.transaction() as t:
        for name, (kind, entries) in INDEXES.items():
            assert {b: dict(v) for b, v in t.index(name, kind, entries).items()} == rebuilt(store, kind, entries), name
