"""Chassis ownership: the pure balance() and the role state machine (controller/roles.py)."""
from __future__ import annotations

import itertools
import random

import pytest

from controller import wire
from controller.ownership import SoloOwnership, balance
from controller.roles import MASTER, SLAVE, RoleKeeper


def everyone(dpids, members):
    return {d: set(members) for d in dpids}


def loads(plan, members):
    return sorted(sum(1 for o in plan.values() if o == m) for m in members)


@pytest.mark.parametrize("c,n", [(c, n) for c in range(0, 12) for n in range(1, 5)] + [(100, 3), (101, 7)])
def test_balanced_floor_ceil_from_scratch(c, n):
    members = [f"m{i}" for i in range(n)]
    plan = balance({}, members, everyone(range(c), members))
    assert set(plan) == set(range(c))
    assert all(loads(plan, members)[i] in (c // n, -(-c // n)) for i in range(n)), loads(plan, members)


def test_deterministic_whatever_the_order():
    members = ["b", "a", "c"]
    elig = everyone(range(10), members)
    a = balance({}, members, elig)
    b = balance({}, list(reversed(members)), dict(reversed(list(elig.items()))))
    assert a == b


def test_survivors_take_the_dead_members_chassis_and_nothing_else_moves():
    members = ["a", "b", "c"]
    plan = balance({}, members, everyone(range(9), members))
    alive = ["a", "b"]
    after = balance(plan, alive, everyone(range(9), alive))
    moved = {d for d in plan if plan[d] != after[d]}
    assert moved == {d for d in plan if plan[d] == "c"}
    assert loads(after, alive) in ([4, 5], [5, 4])


def test_returning_member_takes_only_its_share():
    members = ["a", "b", "c"]
    two = balance({}, ["a", "b"], everyone(range(9), ["a", "b"]))
    back = balance(two, members, everyone(range(9), members))
    moved = {d for d in two if two[d] != back[d]}
    assert loads(back, members) == [3, 3, 3]
    assert len(moved) == 3 and all(back[d] == "c" for d in moved), (two, back)


def test_stable_when_balanced():
    members = ["a", "b"]
    plan = balance({}, members, everyone(range(7), members))
    assert balance(plan, members, everyone(range(7), members)) == plan


def test_only_connected_members_are_eligible():
    plan = balance({}, ["a", "b"], {1: {"a"}, 2: {"a"}, 3: {"a"}, 4: {"a", "b"}})
    assert plan[1] == plan[2] == plan[3] == "a" and plan[4] == "b"
    assert 5 not in balance({}, ["a"], {5: set()}), "a datapath nobody reaches gets no owner"


def test_dead_owner_is_replaced_even_when_that_unbalances():
    plan = balance({1: "gone", 2: "a"}, ["a"], {1: {"a"}, 2: {"a"}})
    assert plan == {1: "a", 2: "a"}


def test_random_histories_stay_balanced_and_minimal():
    rng = random.Random(7)
    pool = [f"m{i}" for i in range(4)]
    plan: dict[int, str] = {}
    for _ in range(200):
        members = rng.sample(pool, rng.randint(1, 4))
        dpids = range(rng.randint(0, 15))
        new = balance(plan, members, everyone(dpids, members))
        ls = loads(new, members)
        assert ls[-1] - ls[0] <= 1
        # a kept owner is never moved unless it is above the ceiling
        ceil = -(-len(dpids) // len(members))
        for d in dpids:
            if plan.get(d) in members and new[d] != plan[d]:
                assert sum(1 for o in plan.values() if o == plan[d]) > ceil - 1
        plan = new


# ------------------------------------------------------------------ roles
class FakeSwitch:
    def __init__(self) -> None:
        self.sent: list[tuple[int, int, int]] = []

    def send(self, buf: bytes) -> bool:
        self.sent.append(wire.parse_role(buf))
        return True


def test_master_only_after_the_switch_confirms_and_then_resyncs():
    resynced = []
    keeper = RoleKeeper(on_master=resynced.append)
    sw = FakeSwitch()
    keeper.connected(7, sw.send)
    assert not keeper.is_master(7)
    keeper.apply({7: (True, 42)})
    xid, role, gen = sw.sent[-1]
    assert (role, gen) == (MASTER, 42) and not keeper.is_master(7)
    keeper.on_reply(7, xid + 1, MASTER, 42)  # not our xid
    assert not keeper.is_master(7) and not resynced
    keeper.on_reply(7, xid, MASTER, 42)
    assert keeper.is_master(7) and resynced == [7]
    keeper.apply({7: (True, 42)})
    assert len(sw.sent) == 1, "nothing changed: no new role request"


def test_step_down_is_immediate_and_unknown_datapaths_are_slave():
    keeper = RoleKeeper()
    sw = FakeSwitch()
    keeper.connected(7, sw.send)
    keeper.apply({7: (True, 5)})
    keeper.on_reply(7, sw.sent[-1][0], MASTER, 5)
    keeper.apply({7: (False, 9)})
    assert not keeper.is_master(7) and sw.sent[-1][1:] == (SLAVE, 9)
    other = FakeSwitch()
    keeper.connected(8, other.send)
    keeper.apply({})
    assert other.sent[-1][1] == SLAVE, "never left EQUAL (OVS's 'other')"


def test_stale_refusal_is_not_master_and_is_asked_again():
    keeper = RoleKeeper()
    sw = FakeSwitch()
    keeper.connected(7, sw.send)
    keeper.apply({7: (True, 5)})
    xid = sw.sent[-1][0]
    assert keeper.on_error(7, wire.ErrorMsg(xid, wire.OFPET_ROLE_REQUEST_FAILED, wire.OFPRRFC_STALE, b""))
    assert not keeper.is_master(7)
    keeper.apply({7: (True, 6)})
    assert sw.sent[-1][1:] == (MASTER, 6)
    assert not keeper.on_error(7, wire.ErrorMsg(xid, 1, 10, b"")), "a flow-mod error is not a role error"


def test_reconnect_starts_from_equal():
    keeper = RoleKeeper()
    sw = FakeSwitch()
    keeper.connected(7, sw.send)
    keeper.apply({7: (True, 5)})
    keeper.on_reply(7, sw.sent[-1][0], MASTER, 5)
    keeper.disconnected(7, sw.send)
    assert not keeper.is_master(7)
    sw2 = FakeSwitch()
    keeper.connected(7, sw2.send)
    assert not keeper.is_master(7)
    keeper.apply({7: (True, 5)})
    assert sw2.sent and sw2.sent[-1][1:] == (MASTER, 5)


def test_role_request_bytes():
    buf = wire.role_request(0x80000001, MASTER, 2**63 + 5)
    assert len(buf) == 24 and buf[:2] == bytes([4, wire.OFPT_ROLE_REQUEST])
    assert wire.parse_role(buf) == (0x80000001, MASTER, 2**63 + 5)
    from os_ken.ofproto import ofproto_v1_3_parser as parser

    class _Dp:
        ofproto = parser.ofproto
        ofproto_parser = parser
    ref = parser.OFPRoleRequest(_Dp(), MASTER, 2**63 + 5)
    ref.set_xid(0x80000001)
    ref.serialize()
    assert bytes(ref.buf) == buf, "same bytes as os-ken's own encoder"


def test_solo_is_master_of_everything():
    solo = SoloOwnership()
    assert all(solo.is_master(d) for d in itertools.islice(itertools.count(1), 5))
    assert solo.stats() == {"mode": "single"}


# ------------------------------------------------------------------ configuration
def _load(*argv: str):
    from oslo_config import cfg

    from controller import config
    return config.load(list(argv), cfg.ConfigOpts())


def test_ha_is_on_with_etcd_and_off_with_sqlite():
    assert _load("--store", "memory://").ha.mode == "off"
    on = _load("--store", "etcd://127.0.0.1:2379/x", "--ofp-listen", "0.0.0.0:7000")
    assert on.ha.mode == "on" and on.ha.member_id.endswith(":7000") and on.ha.lease_ttl == 2
    assert _load("--store", "etcd://127.0.0.1:2379", "--ha", "off").ha.mode == "off"
    named = _load("--store", "etcd://h:1", "--controller-id", "east-1", "--ha-lease-ttl", "5")
    assert (named.ha.member_id, named.ha.lease_ttl) == ("east-1", 5)


def test_ha_refuses_what_cannot_work():
    with pytest.raises(ValueError, match="etcd"):
        _load("--store", "memory://", "--ha", "on")
    with pytest.raises(ValueError, match="controller-id"):
        _load("--store", "etcd://h:1", "--controller-id", "a/b")
