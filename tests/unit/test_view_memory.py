"""The view shares the repeated strings of the records it holds (issue 14) without changing them."""
from __future__ import annotations

import copy

import msgpack

from topology.store import PORT, Change
from topology.view import TopologyView


def _decoded(pid: str) -> dict:
    """A port as the SQLite store hands it over: decoded from msgpack, its own string objects."""
    port = {"id": pid, "tenant_id": "t" * 32, "network_id": "n" * 36, "status": "ACTIVE", "_key": 0,
            "fixed_ips": [{"subnet_id": "s" * 36, "ip_address": "10.0.0.5"}], "tags": [], "name": ""}
    return msgpack.unpackb(msgpack.packb(port, use_bin_type=True), raw=False)


def test_view_shares_strings_and_keeps_values():
    view = TopologyView()
    a, b = _decoded("p" * 36), _decoded("q" * 36)
    a["_key"], b["_key"] = 1, 2
    assert a["tenant_id"] is not b["tenant_id"]
    want = copy.deepcopy([a, b])
    for rev, rec in enumerate((a, b), 1):
        view.apply(Change(rev, PORT, rec["id"], None, rec))
    got = [view.get(PORT, "p" * 36), view.get(PORT, "q" * 36)]
    assert got == want
    for k in ("tenant_id", "network_id", "status"):
        assert got[0][k] is got[1][k]
    assert got[0]["fixed_ips"][0]["subnet_id"] is got[1]["fixed_ips"][0]["subnet_id"]
    assert view.ports_of_network("n" * 36) and len(view.ports_of_network("n" * 36)) == 2
