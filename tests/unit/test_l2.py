"""L2 on one chassis: reachability, isolation (identical MACs/IPs), flooding, admin state, owners."""
from __future__ import annotations

import pytest

from apps.registry import default_apps
from flows import compiler
from flows.fields import mac
from flows.flow import Output
from flows.tables import R, T, Owner, cookie
from tests.unit.enginedrive import EngineCloud
from tests.unit.l2topo import BCAST, Topo, chassis_flows, ctx, eth, simulator

MAC_A, MAC_B, MAC_C = "fa:16:3e:00:00:0a", "fa:16:3e:00:00:0b", "fa:16:3e:00:00:0c"


@pytest.fixture
def two_tenants():
    """Tenants p1 and p2, each a vxlan network with ports A and B using the same MACs and IPs."""
    t = Topo()
    t.chassis("c1", "192.0.2.1")
    n1 = t.network("n1", project="p1")
    n2 = t.network("n2", project="p2")
    a1, b1 = t.port(n1, MAC_A, "10.0.0.3", "c1"), t.port(n1, MAC_B, "10.0.0.4", "c1")
    a2, b2 = t.port(n2, MAC_A, "10.0.0.3", "c1"), t.port(n2, MAC_B, "10.0.0.4", "c1")
    c = ctx("c1", {a1["id"]: 1, b1["id"]: 2, a2["id"]: 3, b2["id"]: 4}, "192.0.2.1")
    return t, c


def test_unicast_same_network_only(two_tenants):
    t, c = two_tenants
    sim = simulator(t.view(), c)
    assert sim.run(eth(MAC_A, MAC_B), in_port=1).ports() == [2]
    assert sim.run(eth(MAC_A, MAC_B), in_port=3).ports() == [4]  # tenant 2's B, never tenant 1's
    assert sim.run(eth(MAC_B, MAC_A), in_port=4).ports() == [3]


def test_unicast_sets_port_registers(two_tenants):
    t, c = two_tenants
    view = t.view()
    a1 = next(p for p in view.records("port").values() if p["mac_address"] == MAC_A)
    out = simulator(view, c).run(eth(MAC_B, MAC_A), in_port=2).outputs
    assert len(out) == 1
    assert out[0].packet[R.OUT_PORT] == a1["_key"]
    assert out[0].packet["metadata"] == view.network(a1["network_id"])["_key"]


def test_unknown_unicast_dropped_on_overlay(two_tenants):
    t, c = two_tenants
    assert simulator(t.view(), c).run(eth(MAC_A, MAC_C), in_port=1).ports() == []


def test_broadcast_flooded_in_network_not_back_to_sender(two_tenants):
    t, c = two_tenants
    sim = simulator(t.view(), c)
    assert sim.run(eth(MAC_A, BCAST), in_port=1).ports() == [2]
    assert sim.run(eth(MAC_B, BCAST), in_port=4).ports() == [3]
    assert sim.run(eth(MAC_A, "01:00:5e:00:00:01"), in_port=2).ports() == [1]  # multicast too


def test_unknown_in_port_dropped(two_tenants):
    t, c = two_tenants
    assert simulator(t.view(), c).run(eth(MAC_A, MAC_B), in_port=77).ports() == []


def test_port_admin_down_carries_no_traffic(two_tenants):
    t, c = two_tenants
    b1 = next(p for p in t.data["port"].values() if p["mac_address"] == MAC_B)
    t.update("port", b1["id"], admin_state_up=False)
    sim = simulator(t.view(), c)
    assert sim.run(eth(MAC_A, MAC_B), in_port=1).ports() == []
    assert sim.run(eth(MAC_B, MAC_A), in_port=2).ports() == []
    assert sim.run(eth(MAC_A, BCAST), in_port=1).ports() == []
    assert sim.run(eth(MAC_A, MAC_B), in_port=3).ports() == [4]  # other tenant unaffected


def test_network_admin_down_carries_no_traffic(two_tenants):
    t, c = two_tenants
    n1 = next(n for n in t.data["network"].values() if n["name"] == "n1")
    t.update("network", n1["id"], admin_state_up=False)
    view = t.view()
    flows = chassis_flows(view, c)
    assert cookie(Owner.NETWORK, n1["_key"]) not in flows
    sim = simulator(view, c)
    assert sim.run(eth(MAC_A, MAC_B), in_port=1).ports() == []
    assert sim.run(eth(MAC_A, BCAST), in_port=1).ports() == []
    assert sim.run(eth(MAC_A, MAC_B), in_port=3).ports() == [4]


def test_flow_budget_per_port(two_tenants):
    t, c = two_tenants
    view = t.view()
    flows = chassis_flows(view, c)
    for port in view.records("port").values():
        assert 0 < len(flows[cookie(Owner.PORT, port["_key"])]) <= 10


def test_deterministic_compile(two_tenants):
    t, c = two_tenants
    first = chassis_flows(t.view(), c)
    again = chassis_flows(t.view(), c)
    assert first == again
    # Same topology built in a different insertion order gives the identical flow set.
    shuffled = {k: dict(reversed(list(v.items()))) for k, v in t.data.items()}
    from topology.view import TopologyView
    assert compiler.compile_chassis(default_apps(), TopologyView.from_snapshot(1, shuffled), c) == first


def test_every_flow_carries_its_owner_cookie_and_respects_pipeline(two_tenants):
    t, c = two_tenants
    for owner, flows in chassis_flows(t.view(), c).items():
        assert all(f.cookie == owner for f in flows)


def test_port_delete_changes_only_that_ports_owners(two_tenants):
    t, c = two_tenants
    view = t.view()
    before = chassis_flows(view, c)
    victim = next(p for p in t.data["port"].values() if p["mac_address"] == MAC_B)
    t.delete("port", victim["id"])
    change = t.changes[-1]
    view.apply(change)
    touched = compiler.owners_for_change(default_apps(), view, change)
    after = dict(before)
    after.update({o: fl for o, fl in compiler.compile_owners(default_apps(), view, c, touched).items()})
    after = {o: fl for o, fl in after.items() if fl}
    net_ck = cookie(Owner.NETWORK, view.network(victim["network_id"])["_key"])
    port_ck = cookie(Owner.PORT, victim["_key"])
    assert compiler.diff_owners(before, after) == {port_ck, net_ck}
    assert port_ck not in after
    # and the incremental result equals a full recompile
    assert after == chassis_flows(view, c)
    sim = simulator(view, c)
    assert sim.run(eth(MAC_A, MAC_B), in_port=1).ports() == []
    assert sim.run(eth(MAC_A, BCAST), in_port=1).ports() == []


def test_incremental_equals_full_for_every_change():
    """Replay a topology's change log; after each change, the engine's incremental result == full compile."""
    t = Topo()
    c1 = ctx("c1", {}, "192.0.2.1")
    cloud = EngineCloud(default_apps(), t.view(), {"c1": c1})  # the incremental engine, as the core runs it
    seen = [len(t.changes)]

    def step(c):
        cloud.step(t.changes[seen[0]:], {"c1": c})
        seen[0] = len(t.changes)
        full = compiler.compile_chassis(default_apps(), t.view(), c)  # fresh apps, fresh view
        assert cloud.state["c1"] == full

    t.chassis("c1", "192.0.2.1"); step(c1)
    t.chassis("c2", "192.0.2.2"); step(c1)
    net = t.network("n")
    step(c1)
    p1 = t.port(net, MAC_A, "10.0.0.3")
    step(c1)
    c1 = ctx("c1", {p1["id"]: 1}, "192.0.2.1")
    t.update("port", p1["id"], **{"binding:host_id": "c1"}); step(c1)
    p2 = t.port(net, MAC_B, "10.0.0.4", "c2"); step(c1)
    t.update("chassis", next(ch["id"] for ch in t.data["chassis"].values() if ch["name"] == "c2"),
             tunnel_ip="192.0.2.22"); step(c1)
    t.update("network", net["id"], **{"provider:segmentation_id": 4242}); step(c1)
    t.update("port", p2["id"], **{"binding:host_id": ""}); step(c1)
    t.update("port", p2["id"], **{"binding:host_id": "c2", "mac_address": MAC_C}); step(c1)
    t.delete("port", p2["id"]); step(c1)
    vnet = t.network("v", "vlan", seg=100, physnet="physnet1"); step(c1)
    v1 = t.port(vnet, "fa:16:3e:00:01:01", "10.1.0.3", "c1"); step(c1)
    c1 = ctx("c1", {p1["id"]: 1, v1["id"]: 2}, "192.0.2.1")
    t.port(vnet, "fa:16:3e:00:01:02", "10.1.0.4", "c2"); step(c1)
    t.update("network", vnet["id"], **{"provider:segmentation_id": 101}); step(c1)
    t.update("port", v1["id"], admin_state_up=False); step(c1)
    t.update("network", vnet["id"], admin_state_up=False); step(c1)
    t.delete("port", p1["id"]); step(c1)


def test_owner_cookie_check_rejects_foreign_cookie(two_tenants):
    t, c = two_tenants

    class Bad:
        name = "bad"

        def owners_for_change(self, view, change):
            return ()

        def owners_for_chassis(self, view, ctx):
            return (cookie(Owner.PORT, 1),)

        def compile(self, view, ctx, owner):
            from flows.flow import flow
            return [flow(T.OUTPUT, 5, cookie(Owner.PORT, 2), [Output(1)])]

    with pytest.raises(compiler.CompileError):
        compiler.compile_chassis([Bad()], t.view(), c)


def test_classify_flow_shape(two_tenants):
    t, c = two_tenants
    view = t.view()
    port = next(p for p in view.records("port").values() if c.local_ports[p["id"]] == 1)
    flows = chassis_flows(view, c)[cookie(Owner.PORT, port["_key"])]
    classify = [f for f in flows if f.table == T.CLASSIFY]
    assert len(classify) == 1
    assert dict((n, v) for n, v, _ in classify[0].match) == {"in_port": 1}
    lookup = [f for f in flows if f.table == T.L2_LOOKUP]
    assert dict((n, v) for n, v, _ in lookup[0].match)["eth_dst"] == mac(MAC_A)


def test_flood_never_runs_ingress_stages_for_the_sender(two_tenants):
    """The hairpin check happens before INGRESS_CT, so the sender's ingress conntrack is never used."""
    t, c = two_tenants
    res = simulator(t.view(), c).run(eth(MAC_A, BCAST), in_port=1)
    ingress = [s for s in res.trace if s.table == T.INGRESS_CT]
    assert ingress, res.dump_trace()
    assert all(s.packet[R.OUT_PORT] != s.packet[R.IN_PORT] for s in ingress)
