"""The struct-packed actions (controller/wire.py `_PACK`) are byte for byte what os-ken's classes
write, for every kind they cover, every action the compilers emit and random field values —
so a switch programmed before the change reads back equal and a restart sends nothing."""
from __future__ import annotations

import random
import struct

import pytest

from controller import wire
from flows.fields import FIELDS, full_mask
from flows.qos import MeteredController
from flows.flow import (CT, NAT, Conjunction, Controller, CTClear, DecTtl, Move, Output, PopVlan, PushVlan, Resubmit,
                        SetField)
from tests.unit.test_wire import CASES, _compiled_chassis


def _oskens_bytes(action) -> bytes:
    """os-ken's bytes; a controller action's meter_id appended as the last property, as OVS does."""
    b = wire._serialize(wire.to_oskenaction(action))
    if isinstance(action, Controller) and action.meter_id:
        b += struct.pack("!HHI", wire.NXAC2PT_METER_ID, 8, action.meter_id)
        b = b[:2] + struct.pack("!H", len(b)) + b[4:]
    return b


def _assert_same(action) -> None:
    pack = wire._PACK.get(type(action), wire._pack_controller)
    assert pack(action) == _oskens_bytes(action), action
    assert wire._serialize_action(action) == _oskens_bytes(action)


def test_every_packed_kind_is_covered_by_the_cases():
    seen = {type(a) for acts in CASES.values() for a in acts}
    for a in [x for acts in CASES.values() for x in acts if isinstance(x, CT)]:
        seen.update(type(i) for i in a.actions)
    assert set(wire._PACK) <= seen | {NAT}


@pytest.mark.parametrize("name", sorted(CASES))
def test_case_actions_pack_like_oskens(name):
    for a in CASES[name]:
        if type(a) in wire._PACK:
            _assert_same(a)


def test_every_compiled_action_packs_like_oskens():
    actions = {a for chassis in _compiled_chassis() for f in chassis for a in f.actions if type(a) in wire._PACK}
    assert {type(a) for a in actions} >= {Output, SetField, Move, Resubmit, CT, Conjunction}
    for a in actions:
        _assert_same(a)


def _settable(name: str) -> bool:
    try:
        SetField(name, 0)
    except ValueError:
        return False
    return True


def test_random_actions_pack_like_oskens():
    rnd = random.Random(14)
    settable = [n for n in sorted(FIELDS) if _settable(n)]
    regs = [f"reg{i}" for i in range(16)]
    movable = regs + ["eth_src", "eth_dst", "in_port", "metadata", "tunnel_id", "ipv4_src", "ipv4_dst"]
    for _ in range(400):
        field = rnd.choice(settable)
        _assert_same(SetField(field, rnd.randint(0, full_mask(field))))
        _assert_same(Output(rnd.choice((rnd.randint(1, 0xFFFFFF00), 0xFFFFFFFD, 0xFFFFFFF8, 0xFFFFFFFA))))
        _assert_same(Resubmit(rnd.randint(0, 255), rnd.choice((0xFFF8, rnd.randint(0, 0xFFFF)))))
        n = rnd.randint(2, 4)
        _assert_same(Conjunction(rnd.randint(0, 0xFFFFFFFF), rnd.randint(1, n), n))
        src, dst = rnd.choice(movable), rnd.choice(movable)
        width = min(FIELDS[src].bits if src in FIELDS else 32, FIELDS[dst].bits if dst in FIELDS else 32)
        bits = rnd.randint(1, width)
        try:
            move = Move(src, dst, bits, rnd.randint(0, width - bits), rnd.randint(0, width - bits))
        except ValueError:
            continue
        _assert_same(move)
        lo = rnd.randint(0, 0xFFFFFF00)
        nat = rnd.choice((NAT(), NAT("src", lo), NAT("dst", lo, lo + rnd.randint(0, 255))))
        _assert_same(nat)
        ct = rnd.choice((CT(zone=rnd.randint(0, 0xFFFF), table=rnd.choice((None, rnd.randint(0, 254)))),
                         CT(zone_reg=rnd.choice(regs), table=rnd.randint(0, 254), nat=rnd.choice((None, nat))),
                         CT(commit=True, zone=rnd.randint(0, 0xFFFF), nat=rnd.choice((None, nat)),
                            actions=rnd.choice(((), (SetField("ct_mark", rnd.randint(0, 0xFFFFFFFF)),))))))
        _assert_same(ct)
    for a in (PushVlan(), PushVlan(0x88A8), PopVlan(), DecTtl(), CTClear()):
        _assert_same(a)


def test_controller_actions_pack_like_oskens():
    """Every userdata length up to 24 (os-ken pads its property in a way of its own), with and
    without max_len and meter_id."""
    for n in range(25):
        for max_len in (0xFFFF, 0, 128):
            for meter_id in (0, 1, 0xFFFF0001):
                _assert_same(Controller(max_len=max_len, userdata=bytes(range(1, n + 1)), meter_id=meter_id))
    for n in (0, 3, 9):  # the metered punt of flows/qos.py: a Controller subclass, packed the same
        _assert_same(MeteredController(userdata=bytes(range(n)), meter_id=7, rate=100, burst=10))
