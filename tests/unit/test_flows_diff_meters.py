"""`tenantflow flows --diff` compares meters as well as flows (controller/inspect.py): a meter
that is missing, has another band, or is left over on the switch makes the chassis not in sync."""
from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest

from controller import inspect, wire
from controller.reconciler import Reconciler
from flows import qos
from flows.flow import Flow, GotoTable, SetField, make_match
from flows.tables import Owner, cookie
from tests.unit.fakeswitch import FakeSwitch

PORT1, PORT2 = cookie(Owner.PORT, 1), cookie(Owner.PORT, 2)
EGRESS1 = qos.meter_id(qos.PURPOSE_EGRESS, 1)


def metered(key: int, kbps: int) -> list[Flow]:
    m = qos.kbps_meter(qos.PURPOSE_EGRESS, key, kbps, 0)
    return [Flow(0, 105, make_match(in_port=key), (m, SetField("reg6", key), GotoTable(10)), cookie(Owner.PORT, key))]


@pytest.fixture
def rig():
    rec = Reconciler("test-dp", timeout=2)
    sw = FakeSwitch.for_reconciler(rec)
    rec.attach(sw.send)
    rec.set_owner(PORT1, metered(1, 20000))
    rec.set_owner(PORT2, [Flow(0, 100, make_match(in_port=2), (GotoTable(10),), PORT2)])
    rec.resync()
    entry = SimpleNamespace(reconciler=rec, dpid=1, connected=True)
    core = SimpleNamespace(registry=SimpleNamespace(by_chassis=lambda name: entry if name == "c1" else None),
                           desired_flows=lambda e, owner=None: rec.desired_flows(owner),
                           view_lock=threading.Lock(), view=None)
    return core, rec, sw


def diff(core, **kw) -> dict:
    return inspect.flows_report(core, "c1", diff=True, **kw)["diff"]


def test_in_sync_with_meters(rig):
    core, _rec, sw = rig
    assert sw.meters == {EGRESS1: (5, 20000, 16000)}
    d = diff(core)
    assert d["in_sync"] and d["meters"] == {"missing": [], "changed": [], "extra": []}


def test_a_changed_meter_is_not_in_sync(rig):
    core, _rec, sw = rig
    sw.meters[EGRESS1] = (5, 999, 999)   # drift on the switch; the flows are untouched
    d = diff(core)
    assert not d["in_sync"] and (d["missing"], d["changed"], d["extra"]) == ([], [], [])
    assert d["meters"]["changed"] == [{
        "desired": f"meter={EGRESS1} kbps burst bands=type=drop rate=20000 burst_size=16000",
        "installed": f"meter={EGRESS1} kbps burst bands=type=drop rate=999 burst_size=999"}]


def test_a_missing_meter_is_not_in_sync(rig):
    core, _rec, sw = rig
    del sw.meters[EGRESS1]
    d = diff(core)
    assert not d["in_sync"] and d["meters"]["missing"] == [
        f"meter={EGRESS1} kbps burst bands=type=drop rate=20000 burst_size=16000"]


def test_an_extra_meter_is_not_in_sync_and_belongs_to_its_owner(rig):
    core, _rec, sw = rig
    stale = qos.meter_id(qos.PURPOSE_INGRESS, 2)
    sw.meters[stale] = (5, 1, 1)
    sw.meters[300000] = (5, 1, 1)          # outside our meter ids: someone else's, never "extra"
    d = diff(core)
    assert not d["in_sync"]
    assert d["meters"]["extra"] == [f"meter={stale} kbps burst bands=type=drop rate=1 burst_size=1"]
    assert diff(core, owner_type="pipeline", owner_id=None)["meters"]["extra"] == []  # not the pipeline's
    assert inspect.meter_owner(stale) == PORT2
    assert inspect.meter_owner(qos.meter_id(qos.PURPOSE_ARP_PUNT, 7)) == cookie(Owner.NETWORK, 7)


def test_switch_without_meters_answers_an_error(rig):
    core, rec, sw = rig
    real = sw.send

    def no_meter_support(buf: bytes) -> bool:
        for mtype, xid, msg in wire.iter_messages(buf):
            if mtype == wire.OFPT_MULTIPART_REQUEST and msg[8:10] == wire.struct.pack("!H", wire.OFPMP_METER_CONFIG):
                sw.on_error(wire.ErrorMsg(xid, 1, 1, msg[:64]))
                return True
        return real(buf)
    rec.attach(no_meter_support)
    assert rec.read_installed_meters() == {}
    assert diff(core)["meters"]["missing"]  # what we declared is missing there


def test_desired_meters_resolve_like_the_meter_table():
    a = qos.MeterUse(9, rate=100, burst=10)
    b = qos.MeterUse(9, rate=50, burst=10)
    flows = [Flow(0, 1, (), (a,), PORT2), Flow(0, 2, (), (b,), PORT2), Flow(0, 3, (), (a,), PORT1)]
    assert inspect.desired_meters(flows) == {9: a.band}   # the lowest owner's (PORT1 < PORT2)
    assert inspect.desired_meters(flows[:2]) == {9: min(a.band, b.band)}


def test_cli_prints_meter_lines(monkeypatch, capsys):
    from controller import apiclient
    body = {"diff": {"missing": [], "changed": [], "extra": [], "in_sync": False,
                     "meters": {"missing": ["meter=5 pktps burst bands=type=drop rate=1 burst_size=2"],
                                "changed": [], "extra": []}}}
    monkeypatch.setattr(apiclient, "get", lambda *a, **k: body)
    assert inspect.main(["--chassis", "c1", "--diff"]) == 3
    out = capsys.readouterr().out
    assert "meters: 1 missing" in out and "+ meter=5 pktps" in out and "in sync" not in out


def test_a_rejected_meter_makes_the_datapath_unhealthy(rig):
    from controller.registry import DatapathEntry
    _core, rec, sw = rig
    entry = DatapathEntry(dpid=1, reconciler=rec, datapath=object())
    assert entry.problems() == []
    stale = qos.meter_id(qos.PURPOSE_EGRESS, 3)
    sw.meters[stale] = (5, 1, 1)   # we believe it absent: our ADD fails (OFPMMFC_METER_EXISTS)
    rec.set_owner(cookie(Owner.PORT, 3), metered(3, 1000))
    rec.flush()
    assert entry.problems() == ["1 meters rejected by the switch"]
