"""EtcdOwnership against a real etcd: membership on leases, the assignment, generation ids,
fencing. Rounds are driven by hand (tick/_check_fence), switches are fakes that confirm roles,
so each step is deterministic; the real-OVS version is tests/integration/test_ha.py."""
from __future__ import annotations

import time

import pytest

from controller import wire
from controller.ownership import EtcdOwnership
from controller.roles import MASTER
from tests.unit.test_store_etcd import EtcdServer, needs_etcd

pytestmark = needs_etcd
DPIDS = [1, 2, 3, 4]


class Switch:
    """Confirms every role request like OVS does, refusing generations older than the newest."""

    def __init__(self, dpid: int) -> None:
        self.dpid = dpid
        self.newest = -1
        self.master: str | None = None
        self.members: dict[str, EtcdOwnership] = {}

    def sender(self, member: EtcdOwnership):
        self.members[member.member_id] = member

        def send(buf: bytes) -> bool:
            xid, role, gen = wire.parse_role(buf)
            if gen < self.newest:
                member.on_role_error(self.dpid, wire.ErrorMsg(xid, wire.OFPET_ROLE_REQUEST_FAILED,
                                                              wire.OFPRRFC_STALE, b""))
                return True
            self.newest = gen
            if role == MASTER:
                self.master = member.member_id
            elif self.master == member.member_id:
                self.master = None
            member.on_role_reply(self.dpid, xid, role, gen)
            return True
        return send


@pytest.fixture
def etcd():
    server = EtcdServer().start()
    yield server
    server.stop()


def member(etcd, name: str, switches: dict[int, Switch], resynced: list) -> EtcdOwnership:
    m = EtcdOwnership("127.0.0.1", etcd.port, "/t", name, ttl=2, interval=0.1,
                      on_master=lambda d, n=name: resynced.append((n, d)))
    for d, sw in switches.items():
        m.datapath_connected(d, sw.sender(m))
    return m


def rounds(*members: EtcdOwnership, n: int = 3) -> None:
    for _ in range(n):
        for m in members:
            m.tick()
            m._check_fence()


def owned(m: EtcdOwnership) -> set[int]:
    return {d for d in DPIDS if m.is_master(d)}


def test_share_takeover_fence_and_return(etcd):
    switches = {d: Switch(d) for d in DPIDS}
    resynced: list = []
    a, b = member(etcd, "a", switches, resynced), member(etcd, "b", switches, resynced)
    rounds(a, b)
    assert len(owned(a)) == 2 and len(owned(b)) == 2 and not owned(a) & owned(b)
    assert all(sw.master in ("a", "b") for sw in switches.values())
    assert {(sw.master, d) for d, sw in switches.items()} <= set(resynced), "a new master reads its switch"
    gens = {d: a.owners[d][1] for d in DPIDS}

    # a stops renewing (killed or cut from etcd): it fences itself before its lease can expire
    time.sleep(2 - 0.5 + 0.2)
    a._check_fence()
    assert a.fenced and not owned(a)
    time.sleep(1.5)  # the lease is gone on the server now
    rounds(b)
    assert owned(b) == set(DPIDS)
    moved = [d for d in DPIDS if d not in owned(b) or gens[d] != b.owners[d][1]]
    assert all(b.owners[d][1] > gens[d] for d in moved), "a new owner gets a newer generation"
    assert all(sw.master == "b" for sw in switches.values())

    # a is back: it takes two chassis again, b keeps the other two (same generation), one master each
    before = dict(b.owners)
    rounds(a, b)
    assert len(owned(a)) == 2 and len(owned(b)) == 2
    for d in owned(b):
        assert b.owners[d] == before[d], "a chassis that stays with b is not rewritten"
    assert all(sw.master == ("a" if d in owned(a) else "b") for d, sw in switches.items())


def test_stale_master_is_refused_by_the_switch(etcd):
    switches = {d: Switch(d) for d in DPIDS}
    a = member(etcd, "a", switches, [])
    rounds(a)
    assert owned(a) == set(DPIDS)
    sw = switches[1]
    old_gen = a.owners[1][1]
    sw.newest = old_gen + 10   # someone newer became master meanwhile
    a.roles.apply({1: (False, old_gen)})
    a.roles.apply({1: (True, old_gen)})
    assert not a.is_master(1), "a master request with an old generation must not count"


def test_orderly_stop_hands_over_at_once(etcd):
    switches = {d: Switch(d) for d in DPIDS}
    a, b = member(etcd, "a", switches, []), member(etcd, "b", switches, [])
    rounds(a, b)
    a.stop()  # revokes its lease: no TTL wait
    rounds(b, n=1)
    assert owned(b) == set(DPIDS)
