"""A VM port bound to a chassis (binding:host_id, as Nova writes it before plugging the tap) has
its flows there before the tap exists; the plug then adds only the flows that name the ofport.

Why: what a VM waits for after its tap is plugged is then two flow-mods, not a compile of
its network, router and security groups plus a bundle of all their flows (issue 14).
Driven through the real core in check mode (every batch also compiled from scratch and compared).
"""
from __future__ import annotations

from controller.registry import SwitchPort, build_context
from flows.tables import KEY_MASK, OWNER_SHIFT, Owner, T
from tests.unit.test_core_faults import DPID_A, rig  # noqa: F401 — the fixture

rig = rig  # noqa: PLW0127 — re-exported fixture


def port_flows(table: dict, key: int) -> dict[tuple, tuple]:
    """The switch's flows whose cookie names port `key`."""
    return {k: body for k, body in table.items()
            if body[0] >> OWNER_SHIFT == Owner.PORT and body[0] & KEY_MASK == key}


def tables_of(flows: dict) -> set[int]:
    return {k[0] for k in flows}


def test_flows_go_in_before_the_tap_and_the_plug_adds_only_classify_and_output(rig):  # noqa: F811
    sw = rig.connect(DPID_A, [])
    rig.settle()
    host = rig.health(DPID_A)["chassis"]
    net_id = rig.ports[0]["network_id"]
    port = rig.service.create_port({"network_id": net_id, "binding:host_id": host})
    port = rig.service.store.get("port", port["id"])  # the raw record: its owner key
    rig.settle()
    rig.wait_healthy(DPID_A)
    before = port_flows(sw.table, port["_key"])
    assert before, "a port bound here got no flows before its tap"
    assert T.CLASSIFY not in tables_of(before) and T.OUTPUT not in tables_of(before)
    assert rig.service.store.get("port", port["id"])["status"] == "DOWN"  # not plugged: not ACTIVE

    mods = rig.health(DPID_A)["flow_mods"]
    eng = rig.core.registry.get(DPID_A).engine
    compiles = eng.compiles
    rig.core.port_status(DPID_A, "add", SwitchPort("tap" + port["id"][:11], 42, True))
    rig.settle()
    rig.wait_healthy(DPID_A)
    after = port_flows(sw.table, port["_key"])
    added = {k[0] for k in after.keys() - before.keys()}
    assert added == {T.CLASSIFY, T.OUTPUT}, f"the plug added flows in tables {sorted(added)}"
    assert before.items() <= after.items(), "the plug changed flows that were already there"
    assert rig.health(DPID_A)["flow_mods"] - mods == 2
    assert rig.service.store.get("port", port["id"])["status"] == "ACTIVE"
    # the tap recompiled its port's owner alone; the binder's ACTIVE write recompiled nothing
    # (flows.engine.compiles_nothing): not its network, not its security group
    assert eng.compiles - compiles == 1


def test_unbinding_a_port_that_was_never_plugged_withdraws_its_flows(rig):  # noqa: F811
    sw = rig.connect(DPID_A, [])
    rig.settle()
    host = rig.health(DPID_A)["chassis"]
    port = rig.service.create_port({"network_id": rig.ports[0]["network_id"], "binding:host_id": host})
    port = rig.service.store.get("port", port["id"])
    rig.settle()
    assert port_flows(sw.table, port["_key"])
    rig.service.update("port", port["id"], {"binding:host_id": "elsewhere"})
    rig.settle()
    rig.wait_healthy(DPID_A)
    assert not port_flows(sw.table, port["_key"])


def test_only_vm_ports_count_as_bound_here():
    """Router, gateway and other network:* ports are never plugged: their binding:host_id names
    where the router's SNAT runs (flows/gateway.py), which is not a tap to wait for."""
    bound = [{"id": "vm", "device_owner": "compute:nova"}, {"id": "plain", "device_owner": ""},
             {"id": "gw", "device_owner": "network:router_gateway"},
             {"id": "rif", "device_owner": "network:router_interface"},
             {"id": "tapped", "device_owner": "compute:nova"}]
    ports = {"tap-x": SwitchPort("tap-x", 5, True)}
    ctx, up = build_context("c1", 1, None, ports, lambda name: ["tapped"] if name == "tap-x" else [], bound)
    assert ctx.local_ports == {"tapped": 5, "vm": None, "plain": None}
    assert up == {"tapped": True}  # only what is plugged gets a status from the switch
