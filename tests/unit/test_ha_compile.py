"""HA shares the compile work (issue 10, scale bench): a controller compiles only the chassis it
owns; the others keep a view and a context, no engine state and no desired flows. Becoming
owner/master compiles the chassis afresh and the first flush is a resync — against a switch that
already holds the right flows (the previous master's), it sends nothing.

Core + FakeSwitch (tests/unit/fakeswitch.py) with the ownership hooks set by hand, as
controller/serve.py sets them from controller/ownership.py.
"""
from __future__ import annotations

import pytest

from controller import core as core_mod
from controller.ownership import EtcdOwnership, SoloOwnership
from controller.roles import RoleKeeper
from tests.unit.test_core_faults import DPID_A, DPID_B, Rig


class Roles:
    """Which datapaths we own (etcd's assignment) and which we are confirmed master of."""

    def __init__(self) -> None:
        self.owned: set[int] = set()
        self.master: set[int] = set()


@pytest.fixture
def ha(monkeypatch):
    monkeypatch.setattr(core_mod, "RETRY_FIRST", 0.05)
    monkeypatch.setattr(core_mod, "RETRY_MAX", 0.2)
    r = Rig()
    roles = Roles()
    r.core.is_master = lambda dpid: dpid in roles.master
    r.core.compiles = lambda dpid: dpid in roles.owned or dpid in roles.master
    yield r, roles
    r.close()
    assert r.core.check_failures == 0


def bundles(sw) -> int:
    """Flow-mods the switch was sent (all writes so far)."""
    from controller import wire
    return sum(1 for buf in sw.sent for _ in wire.flow_mods_in(buf))


def test_a_slave_chassis_is_not_compiled(ha):
    r, roles = ha
    sw = r.connect(DPID_A, r.ports[:2])
    r.settle()
    e = r.core.registry.get(DPID_A)
    assert e.ctx is not None and len(e.ctx.local_ports) == 2  # the view and context stay warm
    assert not e.compiled and e.engine.compiles == 0 and not e.engine.owners()
    assert not e.reconciler.owners() and e.reconciler.desired_count() == 0
    r.service.create_port({"network_id": r.ports[0]["network_id"]})  # changes: still nothing
    r.settle()
    assert e.engine.compiles == 0 and not e.reconciler.owners()
    assert sw.sent == [] and sw.table == {}
    assert r.health(DPID_A)["compiled"] is False and r.health(DPID_A)["master"] is False


def test_becoming_master_compiles_then_first_flush_against_an_identical_switch_sends_nothing(ha):
    r, roles = ha
    sw = r.connect(DPID_A, r.ports[:2])
    r.settle()
    r.service.create_port({"network_id": r.ports[0]["network_id"]})  # a change while slave
    r.settle()
    sw.table = dict(r.expected(DPID_A))  # what the previous master left: exactly what is wanted
    assert sw.table
    roles.owned.add(DPID_A)              # etcd assigns it to us (ownership.on_owned wakes the core)
    r.core.request_resync(DPID_A)
    r.settle()
    e = r.core.registry.get(DPID_A)
    assert e.compiled and e.engine.owners() and e.reconciler.desired_count() == len(sw.table)
    assert sw.sent == [], "an owner whose MASTER is not confirmed yet sends nothing"
    roles.master.add(DPID_A)             # the switch confirmed MASTER (roles.on_master)
    r.core.request_resync(DPID_A)
    r.settle()
    assert e.reconciler.stats.resyncs == 1 and e.reconciler.stats.flow_mods == 0 and bundles(sw) == 0
    r.wait_healthy(DPID_A)
    r.service.update("port", r.ports[0]["id"], {"port_security_enabled": False, "security_groups": []})
    r.settle()
    r.wait_healthy(DPID_A)
    assert e.reconciler.stats.flow_mods > 0  # now it is ours: changes go out


def test_master_straight_away_compiles_before_its_resync(ha):
    """The switch may confirm MASTER before any batch compiled the chassis: the same batch compiles
    it fully before the resync, so nothing the previous master installed is deleted."""
    r, roles = ha
    sw = r.connect(DPID_A, r.ports[:2])
    r.settle()
    sw.table = dict(r.expected(DPID_A))
    roles.master.add(DPID_A)
    r.core.request_resync(DPID_A)
    r.settle()
    assert bundles(sw) == 0
    r.wait_healthy(DPID_A)


def test_losing_a_chassis_drops_its_compiled_state_and_only_owned_ones_compile(ha):
    r, roles = ha
    roles.owned |= {DPID_A, DPID_B}
    roles.master |= {DPID_A, DPID_B}
    sa = r.connect(DPID_A, r.ports[:2])
    sb = r.connect(DPID_B, r.ports[2:])
    r.settle()
    r.wait_healthy(DPID_A)
    r.wait_healthy(DPID_B)
    roles.owned.discard(DPID_B)           # a returning controller takes B
    roles.master.discard(DPID_B)
    table_b = dict(sb.table)
    sent_b = len(sb.sent)
    r.service.create_port({"network_id": r.ports[0]["network_id"]})
    r.settle()
    eb = r.core.registry.get(DPID_B)
    assert not eb.compiled and not eb.engine.owners() and eb.reconciler.desired_count() == 0
    assert len(sb.sent) == sent_b and sb.table == table_b, "a chassis owned elsewhere is never sent to"
    r.wait_healthy(DPID_A)
    assert sa.table == r.expected(DPID_A)


def test_ownership_compiles_what_etcd_assigns_us_or_we_master():
    own = EtcdOwnership.__new__(EtcdOwnership)  # no etcd: only the last-read state matters here
    own.member_id, own.members = "a", {"a": {}, "b": {}}
    own.owners = {1: ("a", 5), 2: ("b", 6)}
    own.roles = RoleKeeper()
    own.standby = set()                      # no standby share (tests/unit/test_standby.py)
    assert [own.compiles(d) for d in (1, 2, 3)] == [True, False, False]
    own.fenced = True                        # an etcd outage: the owner stays warm
    assert own.compiles(1)
    assert SoloOwnership().compiles(7)
