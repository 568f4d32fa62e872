"""Flat and VLAN provider networks: uplink, VLAN push/pop, learning of outside MACs, two chassis."""
from __future__ import annotations

from flows.fields import mac
from flows.tables import R, T, UPLINK_PORT_KEY, Owner, cookie
from tests.unit.l2topo import BCAST, UPLINK, Topo, ctx, eth, fabric, simulator

A, B, C, X = "fa:16:3e:00:00:0a", "fa:16:3e:00:00:0b", "fa:16:3e:00:00:0c", "52:54:00:00:00:99"
VLAN = 100
TAG = 0x1000 | VLAN


def build():
    """vlan network (VID 100) and flat network on physnet1; c1: vA, vB, fA ; c2: vC."""
    t = Topo()
    t.chassis("c1", "192.0.2.1")
    t.chassis("c2", "192.0.2.2")
    vnet = t.network("vlan", "vlan", seg=VLAN, physnet="physnet1")
    fnet = t.network("flat", "flat", physnet="physnet1")
    p = {"vA": t.port(vnet, A, "10.1.0.3", "c1"), "vB": t.port(vnet, B, "10.1.0.4", "c1"),
         "fA": t.port(fnet, A, "10.1.0.3", "c1"), "vC": t.port(vnet, C, "10.1.0.5", "c2")}
    c1 = ctx("c1", {p["vA"]["id"]: 1, p["vB"]["id"]: 2, p["fA"]["id"]: 3}, "192.0.2.1")
    c2 = ctx("c2", {p["vC"]["id"]: 1}, "192.0.2.2")
    return t, vnet, fnet, p, c1, c2


def test_vlan_broadcast_goes_to_local_ports_and_tagged_uplink():
    t, vnet, fnet, p, c1, c2 = build()
    res = simulator(t.view(), c1).run(eth(A, BCAST), in_port=1)
    assert res.ports() == [2, UPLINK]
    up = res.outputs_to(UPLINK)[0].packet
    assert up["vlan_vid"] == TAG
    assert res.outputs_to(2)[0].packet.get("vlan_vid", 0) == 0  # local copy never tagged


def test_flat_broadcast_goes_untagged_and_stays_out_of_vlan_network():
    t, vnet, fnet, p, c1, c2 = build()
    res = simulator(t.view(), c1).run(eth(A, BCAST), in_port=3)
    assert res.ports() == [UPLINK]
    assert res.outputs[0].packet.get("vlan_vid", 0) == 0


def test_uplink_vlan_popped_and_only_that_network():
    t, vnet, fnet, p, c1, c2 = build()
    sim = simulator(t.view(), c1)
    res = sim.run(dict(eth(X, BCAST), vlan_vid=TAG), in_port=UPLINK)
    assert res.ports() == [1, 2]  # not back to the uplink, not the flat network's port 3
    assert all(e.packet.get("vlan_vid", 0) == 0 for e in res.outputs)
    assert sim.run(dict(eth(X, BCAST), vlan_vid=0x1000 | 101), in_port=UPLINK).ports() == []
    assert sim.run(eth(X, BCAST), in_port=UPLINK).ports() == [3]  # untagged = flat


def test_remote_port_reached_through_the_physical_network():
    t, vnet, fnet, p, c1, c2 = build()
    fab = fabric(t.view(), [c1, c2])
    got = fab.send("c1", 1, eth(A, C))
    assert [(d.chassis, d.port) for d in got] == [("physnet:physnet1", UPLINK), ("c2", 1)]
    assert got[0].packet["vlan_vid"] == TAG and got[1].packet.get("vlan_vid", 0) == 0
    back = fab.send("c2", 1, eth(C, A))
    assert [(d.chassis, d.port) for d in back] == [("physnet:physnet1", UPLINK), ("c1", 1)]
    # a broadcast on c2 reaches c1's two vlan ports (via the physnet), not the flat one
    got = sorted((d.chassis, d.port) for d in fab.send("c2", 1, eth(C, BCAST)))
    assert got == [("c1", 1), ("c1", 2), ("physnet:physnet1", UPLINK)]


def test_learning_outside_mac():
    t, vnet, fnet, p, c1, c2 = build()
    sim = simulator(t.view(), c1)
    # unknown outside MAC: flooded (local ports + uplink)
    assert sim.run(eth(A, X), in_port=1).ports() == [2, UPLINK]
    # the outside host talks: its MAC is learned in the datapath
    res = sim.run(dict(eth(X, A), vlan_vid=TAG), in_port=UPLINK)
    assert res.ports() == [1]
    assert len(res.learned) == 1
    learned = res.learned[0]
    assert learned.table == T.L2_LEARN and learned.idle_timeout == 300
    assert learned.cookie == cookie(Owner.LEARNED, vnet["_key"])
    assert dict((n, v) for n, v, _ in learned.match) == {"metadata": vnet["_key"], "eth_dst": mac(X)}
    # now unicast to it leaves only through the uplink, tagged
    res = sim.run(eth(A, X), in_port=1)
    assert res.ports() == [UPLINK]
    assert res.outputs[0].packet["vlan_vid"] == TAG
    assert res.outputs[0].packet[R.OUT_PORT] == UPLINK_PORT_KEY
    # learned per network: the flat network still floods for X
    assert sim.run(eth(A, X), in_port=3).ports() == [UPLINK]
    assert sim.run(eth(A, X), in_port=3).learned == []


def test_chassis_without_bridge_mapping_keeps_provider_network_local():
    t, vnet, fnet, p, c1, c2 = build()
    c1 = ctx("c1", c1.local_ports, "192.0.2.1", uplinks={})
    sim = simulator(t.view(), c1)
    assert sim.run(eth(A, BCAST), in_port=1).ports() == [2]
    assert sim.run(eth(A, C), in_port=1).ports() == []
    assert sim.run(eth(A, B), in_port=1).ports() == [2]


def test_local_network_never_leaves_the_chassis():
    t = Topo()
    t.chassis("c1", "192.0.2.1")
    t.chassis("c2", "192.0.2.2")
    net = t.network("loc", "local")
    a, b = t.port(net, A, "10.2.0.3", "c1"), t.port(net, B, "10.2.0.4", "c1")
    remote = t.port(net, C, "10.2.0.5", "c2")
    c1 = ctx("c1", {a["id"]: 1, b["id"]: 2}, "192.0.2.1")
    sim = simulator(t.view(), c1)
    assert sim.run(eth(A, BCAST), in_port=1).ports() == [2]
    assert sim.run(eth(A, C), in_port=1).ports() == []
    assert remote  # bound elsewhere but unreachable: local networks have one chassis
