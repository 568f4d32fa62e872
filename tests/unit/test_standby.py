"""Standby share (issue 10): each member keeps warm — compiled, never flushed — the chassis it
would inherit if their owner died, so a takeover is a pure diff; and a duplicate
--controller-id makes one of the two processes step down loudly."""
from __future__ import annotations

import time

import pytest

from controller.ownership import EtcdOwnership, balance, standby_share
from controller.roles import RoleKeeper
from tests.unit.test_core_faults import DPID_A, DPID_B
from tests.unit.test_ha_compile import bundles, ha  # noqa: F401 — the fixture
from tests.unit.test_ownership_etcd import DPIDS, Switch, etcd, member, rounds  # noqa: F401 — fixture
from tests.unit.test_store_etcd import needs_etcd

MEMBERS = ["a", "b", "c"]


def _everywhere(n: int) -> dict[int, set[str]]:
    return {d: set(MEMBERS) for d in range(n)}


def test_standby_is_exactly_what_balance_gives_the_heir():
    elig = _everywhere(20)
    current = balance({}, MEMBERS, elig)
    share = {m: standby_share(current, MEMBERS, elig, m) for m in MEMBERS}
    for dead in MEMBERS:
        rest = [m for m in MEMBERS if m != dead]
        after = balance(current, rest, {d: s - {dead} for d, s in elig.items()})
        for d, o in current.items():
            if o == dead:
                assert d in share[after[d]], (dead, d)
    for m in MEMBERS:
        mine = {d for d, o in current.items() if o == m}
        assert not share[m] & mine                        # never our own chassis
    # every chassis has exactly one heir per possible death of its owner: ≈ one more share each
    assert sum(len(s) for s in share.values()) == len(current)
    assert all(len(s) <= 8 for s in share.values())  # ≈ C/N each (6, 6, 8 here)


def test_standby_respects_connectivity_and_single_member():
    elig = {1: {"a", "b"}, 2: {"a", "b", "c"}, 3: {"c"}}
    current = {1: "a", 2: "b", 3: "c"}
    assert 1 not in standby_share(current, MEMBERS, elig, "c")  # c has no connection to 1
    assert standby_share(current, MEMBERS, elig, "b") >= {1}
    assert not any(3 in standby_share(current, MEMBERS, elig, m) for m in MEMBERS)  # no heir
    assert standby_share({1: "a"}, ["a"], {1: {"a"}}, "a") == set()


def test_standby_chassis_is_compiled_but_never_flushed(ha):  # noqa: F811
    r, roles = ha
    warm: set[int] = {DPID_B}
    r.core.standby = lambda dpid: dpid in warm
    r.core.compiles = lambda dpid: dpid in roles.owned or dpid in roles.master or dpid in warm
    roles.owned.add(DPID_A)
    roles.master.add(DPID_A)
    sa = r.connect(DPID_A, r.ports[:2])
    sb = r.connect(DPID_B, r.ports[2:])
    r.settle()
    r.wait_healthy(DPID_A)
    eb = r.core.registry.get(DPID_B)
    assert eb.compiled and eb.reconciler.desired_count() > 0
    r.service.create_port({"network_id": r.ports[2]["network_id"]})  # kept current incrementally
    r.settle()
    assert sb.sent == [], "a standby chassis is never sent to"
    assert sa.table == r.expected(DPID_A)
    sb.table = dict(r.expected(DPID_B))       # what its (now dead) owner had installed
    warm.discard(DPID_B)                       # we inherit it
    roles.owned.add(DPID_B)
    roles.master.add(DPID_B)
    compiles = eb.engine.compiles
    r.core.request_resync(DPID_B)
    r.settle()
    r.wait_healthy(DPID_B)
    assert bundles(sb) == 0 and eb.reconciler.stats.flow_mods == 0  # a pure diff: nothing to send
    assert eb.engine.compiles == compiles, "warm: the takeover compiles nothing afresh"
    roles.owned.discard(DPID_B)                # no longer ours nor standby: dropped
    roles.master.discard(DPID_B)
    r.service.create_port({"network_id": r.ports[0]["network_id"]})
    r.settle()
    assert not eb.compiled and eb.reconciler.desired_count() == 0


def _bare(member_id: str = "a") -> EtcdOwnership:
    own = EtcdOwnership.__new__(EtcdOwnership)  # no etcd: only the last-read state matters here
    own.member_id, own.members, own.roles = member_id, {}, RoleKeeper()
    own.owners, own.standby, own.instance, own.duplicate = {}, set(), "mine", None
    own.fenced, own._foreign_since, own.ttl, own.interval = False, None, 2, 0.1
    return own


def test_compiles_includes_standby_and_is_standby_excludes_ours():
    own = _bare()
    own.owners = {1: ("a", 5), 2: ("b", 6), 3: ("c", 7)}
    own.standby = {2}
    assert [own.compiles(d) for d in (1, 2, 3)] == [True, True, False]
    assert [own.is_standby(d) for d in (1, 2, 3)] == [False, True, False]


def test_duplicate_member_id_steps_down_loudly(caplog):
    own = _bare()
    own.owners = {1: ("a", 5)}
    assert not own._claimed_elsewhere({"a": (3, {"instance": "mine"})})
    assert own.duplicate is None
    assert own._claimed_elsewhere({"a": (4, {"instance": "theirs"})})
    assert own.fenced and own.duplicate and "theirs" in own.duplicate
    assert "DUPLICATE --controller-id" in caplog.text


@pytest.mark.parametrize("gone_after", [1, None])
def test_joining_waits_for_a_predecessor_then_refuses_a_live_duplicate(monkeypatch, gone_after):
    own = _bare()
    reads = iter(range(100))
    clock = iter(float(t) for t in range(100))

    def read():
        n = next(reads)
        held = gone_after is None or n < gone_after
        return ({"a": (1, {"instance": "old"})} if held else {}), {}
    monkeypatch.setattr(own, "_read", read)
    monkeypatch.setattr("controller.ownership.time.monotonic", lambda: next(clock))
    results = [own._held_by_other() for _ in range(5)]
    if gone_after is not None:                 # a killed predecessor: its key expired
        assert results[0] and not results[1] and own.duplicate is None
    else:                                      # renewed beyond TTL + 2 rounds: a live duplicate
        assert all(results) and own.duplicate and own.fenced


@needs_etcd
def test_two_live_processes_with_one_id_on_real_etcd(etcd):  # noqa: F811
    """Against etcd: the second `a` waits for the key, finds it renewed, refuses; the first goes
    on. Members compute a standby share from the same snapshot."""
    switches = {d: Switch(d) for d in DPIDS}
    first = member(etcd, "a", switches, [])
    other = member(etcd, "b", switches, [])
    rounds(first, other)
    assert first.standby and other.standby and not first.standby & other.standby
    assert first.standby == {d for d, (o, _g) in first.owners.items() if o == "b"}
    twin = member(etcd, "a", {}, [])
    twin.interval = 0.05
    for _ in range(200):  # bounded: TTL 2 s + 2 rounds at most
        twin.tick()
        first.tick()
        if twin.duplicate:
            break
        time.sleep(0.02)
    assert twin.duplicate and twin.fenced and first.duplicate is None
    assert twin.stats()["duplicate_id"] and not twin.owners
    for m in (first, other, twin):
        m.stop()


def test_a_new_standby_share_waits_while_our_takeover_waits_for_master(ha):  # noqa: F811
    """A reassignment gives us a chassis (owned, MASTER not confirmed yet) and grows our standby
    share: the share, never compiled, must not hold up the takeover's resync, so it compiles
    only once no chassis of ours waits for MASTER."""
    r, roles = ha
    warm: set[int] = {DPID_B}
    r.core.standby = lambda dpid: dpid in warm
    r.core.compiles = lambda dpid: dpid in roles.owned or dpid in roles.master or dpid in warm
    roles.owned.add(DPID_A)                     # ours in etcd; the switch has not said MASTER yet
    r.connect(DPID_A, r.ports[:2])
    sb = r.connect(DPID_B, r.ports[2:])
    ea, eb = r.core.registry.get(DPID_A), r.core.registry.get(DPID_B)
    deadline = time.monotonic() + 0.6
    while time.monotonic() < deadline:
        assert not eb.compiled, "the standby share compiled while our takeover waited for MASTER"
        time.sleep(0.02)
    assert ea.compiled  # ours is compiled, ready for its resync
    roles.master.add(DPID_A)                    # the role reply
    r.core.request_resync(DPID_A)
    deadline = time.monotonic() + 5
    while not eb.compiled and time.monotonic() < deadline:
        time.sleep(0.02)
    assert eb.compiled and eb.reconciler.desired_count() > 0
    r.settle()
    r.wait_healthy(DPID_A)
    assert sb.sent == []
