"""Meters declared by the flows that use them, reconciled by diff against a fake switch that
applies meter-mods as OVS does (flows/qos.py, controller/reconciler.py MeterTable)."""
from __future__ import annotations

import pytest

from controller import wire
from controller.reconciler import Reconciler
from flows import qos
from flows.flow import Controller, Flow, FlowError, GotoTable, Output, SetField, make_match
from flows.tables import Owner, cookie
from tests.unit.fakeswitch import FakeSwitch


def metered(key: int, kbps: int | None, ingress: int | None = None) -> frozenset[Flow]:
    ck = cookie(Owner.PORT, key)
    out = {Flow(0, 100, make_match(in_port=key), (SetField("reg6", key), GotoTable(10)), ck),
           Flow(60, 100, make_match(reg7=key), (Output(key),), ck)}
    if kbps:
        m = qos.kbps_meter(qos.PURPOSE_EGRESS, key, kbps, 0)
        out.add(Flow(0, 105, make_match(in_port=key), (m, SetField("reg6", key), GotoTable(10)), ck))
    if ingress:
        m = qos.kbps_meter(qos.PURPOSE_INGRESS, key, ingress, 1000)
        out.add(Flow(60, 110, make_match(reg7=key), (m, Output(key)), ck))
    return frozenset(out)


@pytest.fixture
def rig():
    rec = Reconciler("test-dp", timeout=2)
    sw = FakeSwitch.for_reconciler(rec)
    rec.attach(sw.send)
    return rec, sw


def egress_id(key: int) -> int:
    return qos.meter_id(qos.PURPOSE_EGRESS, key)


def test_meter_added_before_its_flow_then_nothing(rig):
    rec, sw = rig
    rec.set_owner(cookie(Owner.PORT, 1), metered(1, 20000))
    rec.resync()
    assert sw.meters == {egress_id(1): (qos.OFPMF_KBPS | qos.OFPMF_BURST, 20000, 16000)}
    assert len(sw.table) == 3  # the metered flow was accepted: its meter existed first
    assert rec.stats.errors == 0 and rec.stats.meter_mods == 1
    assert rec.flush() == 0 and rec.resync() == 0
    assert rec.stats.meter_mods == 1  # reconnect with identical state: no meter-mod


def test_modify_delete_and_untouched_others(rig):
    rec, sw = rig
    for k in (1, 2):
        rec.set_owner(cookie(Owner.PORT, k), metered(k, 20000, ingress=5000))
    rec.resync()
    assert len(sw.meters) == 4
    sw.meter_mods.clear()
    rec.set_owner(cookie(Owner.PORT, 1), metered(1, 30000, ingress=5000))
    rec.flush()
    assert sw.meter_mods == [(wire.OFPMC_MODIFY, egress_id(1), (5, 30000, 24000))]
    assert sw.last_mods() == []  # the flow body is the same bytes: no flow-mod for a new rate
    sw.meter_mods.clear()
    rec.set_owner(cookie(Owner.PORT, 1), metered(1, None))
    rec.flush()
    assert sw.meter_mods == [(wire.OFPMC_DELETE, egress_id(1), None),
                             (wire.OFPMC_DELETE, qos.meter_id(qos.PURPOSE_INGRESS, 1), None)]
    assert set(sw.meters) == {egress_id(2), qos.meter_id(qos.PURPOSE_INGRESS, 2)}
    assert len(sw.table) == 2 + 4 and rec.stats.errors == 0
    sw.meter_mods.clear()
    rec.set_owner(cookie(Owner.PORT, 2), ())
    rec.flush()
    assert sw.meters == {} and len(sw.table) == 2 and {m[0] for m in sw.meter_mods} == {wire.OFPMC_DELETE}


def test_resync_diffs_the_switch_meters(rig):
    rec, sw = rig
    sw.meters = {egress_id(1): (5, 999, 999), egress_id(7): (5, 1, 1), 300000: (5, 1, 1)}
    rec.set_owner(cookie(Owner.PORT, 1), metered(1, 20000))
    rec.resync()
    assert sorted(sw.meter_mods) == sorted([(wire.OFPMC_MODIFY, egress_id(1), (5, 20000, 16000)),
                                            (wire.OFPMC_DELETE, egress_id(7), None)])
    assert 300000 in sw.meters  # outside our id space: someone else's, left alone


def test_rejected_meter_not_resent_until_changed(rig):
    rec, sw = rig
    sw.meters = {egress_id(1): (5, 1, 1)}
    rec.resync()  # nobody wants it: deleted
    sw.meters = {egress_id(1): (5, 1, 1)}  # the switch still has it (we think it is gone): ADD fails
    rec.set_owner(cookie(Owner.PORT, 1), metered(1, 20000))
    rec.flush()
    assert rec.stats.errors >= 1 and rec.meters.rejected_count() == 1
    n = len(sw.meter_mods)
    rec.set_owner(cookie(Owner.PORT, 1), metered(1, 20000) | {Flow(10, 1, (), (), cookie(Owner.PORT, 1))})
    rec.flush()
    assert len(sw.meter_mods) == n
    rec.resync()  # reading back heals it
    assert sw.meters[egress_id(1)] == (5, 20000, 16000)


def test_shared_meter_of_two_flows_lives_while_one_uses_it(rig):
    rec, sw = rig
    ck = cookie(Owner.PORT, 3)
    m = qos.kbps_meter(qos.PURPOSE_EGRESS, 3, 1000, 0)
    a = Flow(0, 110, make_match(in_port=3, eth_type=0x800), (m, SetField("ip_dscp", 26), GotoTable(10)), ck)
    b = Flow(0, 110, make_match(in_port=3, eth_type=0x86DD), (m, SetField("ip_dscp", 26), GotoTable(10)), ck)
    rec.set_owner(ck, [a, b])
    rec.resync()
    rec.set_owner(ck, [a])
    rec.flush()
    assert egress_id(3) in sw.meters and a.key in sw.table and b.key not in sw.table
    rec.set_owner(ck, [])
    rec.flush()
    assert sw.meters == {}


def test_punt_meters_and_ids():
    assert qos.dhcp_punt_meter(5).meter_id == 5
    assert qos.meter_id(qos.PURPOSE_ARP_PUNT, 65535) == 4 * 65536 - 1 < 262144  # reserved purpose, still in range
    punt = qos.punt(b"dhcp", 0, qos.dhcp_punt_meter(5))
    assert punt.ofctl() == "controller(max_len=65535,userdata=64.68.63.70,meter_id=5)"
    assert qos.punt(b"dhcp", 2, qos.dhcp_punt_meter(5)) == Controller(userdata=b"dhcp", meter_id=2)
    # the wire form is exactly the plain controller action with that meter id (OVS echoes it so)
    enc = wire.Encoder()
    assert enc.action(punt) == enc.action(Controller(userdata=b"dhcp", meter_id=5))
    with pytest.raises(FlowError):
        qos.meter_id(qos.PURPOSE_EGRESS, 0)
    with pytest.raises(FlowError):
        qos.MeterUse(1, rate=0, burst=1)
    f = Flow(0, 105, make_match(in_port=5), (qos.kbps_meter(1, 5, 10, 0), GotoTable(10)), 1)
    assert enc.instructions(f.actions)[:8] == wire.struct.pack("!HHI", 6, 8, 65536 + 5)


def test_punt_meter_reconciled_from_the_controller_action(rig):
    rec, sw = rig
    ck = cookie(Owner.PORT, 4)
    f = Flow(15, 300, make_match(reg6=4), (qos.punt(b"dhcp", 0, qos.dhcp_punt_meter(4)),), ck)
    rec.set_owner(ck, [f])
    rec.resync()
    assert sw.meters == {4: (qos.OFPMF_PKTPS | qos.OFPMF_BURST, qos.PUNT_DHCP_RATE, qos.PUNT_DHCP_BURST)}


def test_meter_config_round_trip():
    meters = {1: (5, 100, 200), 70000: (6, 10, 20)}
    assert wire.parse_meter_config(wire.meter_config_body(meters)) == meters
    assert wire.meter_mods_in(wire.meter_mod(9, wire.OFPMC_ADD, 3, (5, 1, 2))) == [(0, 3, (5, 1, 2))]


def test_two_owners_one_meter_id_lowest_owner_wins_and_release(rig, caplog):
    rec, sw = rig
    a, b = cookie(Owner.PORT, 1), cookie(Owner.PORT, 2)
    m1 = qos.kbps_meter(qos.PURPOSE_EGRESS, 9, 1000, 0)
    m2 = qos.kbps_meter(qos.PURPOSE_EGRESS, 9, 2000, 0)
    rec.set_owner(a, [Flow(0, 105, make_match(in_port=1), (m1, GotoTable(10)), a)])
    rec.set_owner(b, [Flow(0, 105, make_match(in_port=2), (m2, GotoTable(10)), b)])
    assert "declared differently" in caplog.text  # a compile bug, named
    rec.resync()
    assert sw.meters[egress_id(9)][1] == 1000  # the lowest owner's band
    rec.set_owner(a, [])
    rec.flush()
    assert sw.meters[egress_id(9)][1] == 2000  # the other declaration takes over: MODIFY
    rec.set_owner(b, [])
    rec.flush()
    assert sw.meters == {}
