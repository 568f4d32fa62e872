"""Overlay (VXLAN/GRE/Geneve) across chassis, on computed tables joined by a simulated fabric."""
from __future__ import annotations

import pytest

from apps.registry import default_apps
from flows import compiler
from flows.fields import ipv4
from flows.tables import T, Owner, cookie
from tests.unit.l2topo import BCAST, TUNNEL_PORTS, Topo, chassis_flows, ctx, eth, fabric, simulator

A, B, C, D = "fa:16:3e:00:00:0a", "fa:16:3e:00:00:0b", "fa:16:3e:00:00:0c", "fa:16:3e:00:00:0d"
IP1, IP2, IP3 = "192.0.2.1", "192.0.2.2", "192.0.2.3"


def build(ntype: str = "vxlan"):
    """c1: t1-A, t2-A' ; c2: t1-B, t2-B' ; c3: t1-C only. Tenants share MACs and IPs."""
    t = Topo()
    for name, ip in (("c1", IP1), ("c2", IP2), ("c3", IP3)):
        t.chassis(name, ip)
    n1 = t.network("t1", ntype, seg=5001, project="p1")
    n2 = t.network("t2", ntype, seg=5002, project="p2")
    ports = {
        "a1": t.port(n1, A, "10.0.0.3", "c1"), "a2": t.port(n2, A, "10.0.0.3", "c1"),
        "b1": t.port(n1, B, "10.0.0.4", "c2"), "b2": t.port(n2, B, "10.0.0.4", "c2"),
        "c1": t.port(n1, C, "10.0.0.5", "c3"),
    }
    ofp = {"a1": 1, "a2": 2, "b1": 1, "b2": 2, "c1": 1}
    host = {"a1": "c1", "a2": "c1", "b1": "c2", "b2": "c2", "c1": "c3"}
    return t, n1, n2, ports, ofp, host


def contexts(ports, ofp, host):
    ips = {"c1": IP1, "c2": IP2, "c3": IP3}
    return [ctx(ch, {ports[k]["id"]: ofp[k] for k in ports if host[k] == ch}, ips[ch]) for ch in ("c1", "c2", "c3")]


@pytest.mark.parametrize("ntype", ["vxlan", "gre", "geneve"])
def test_remote_unicast_goes_straight_to_its_chassis(ntype):
    t, n1, n2, ports, ofp, host = build(ntype)
    c1, c2, c3 = contexts(ports, ofp, host)
    res = simulator(t.view(), c1).run(eth(A, B), in_port=1)
    assert res.ports() == [TUNNEL_PORTS[ntype]]
    out = res.outputs[0].packet
    assert out["tunnel_id"] == 5001 and out["tun_ipv4_dst"] == ipv4(IP2)
    # tenant 2's identical MAC goes with tenant 2's VNI
    out2 = simulator(t.view(), c1).run(eth(A, B), in_port=2).outputs[0].packet
    assert out2["tunnel_id"] == 5002 and out2["tun_ipv4_dst"] == ipv4(IP2)


def test_cross_chassis_reachability_and_isolation():
    t, n1, n2, ports, ofp, host = build()
    fab = fabric(t.view(), contexts(ports, ofp, host))
    got = fab.send("c1", 1, eth(A, B))
    assert [(d.chassis, d.port) for d in got] == [("c2", 1)]
    got = fab.send("c1", 2, eth(A, B))
    assert [(d.chassis, d.port) for d in got] == [("c2", 2)]
    got = fab.send("c2", 1, eth(B, C))
    assert [(d.chassis, d.port) for d in got] == [("c3", 1)]
    assert fab.send("c2", 2, eth(B, C)) == []  # tenant 2 has no C
    assert got[0].packet["eth_dst"] == eth(B, C)["eth_dst"]


def test_broadcast_reaches_only_chassis_with_the_network():
    t, n1, n2, ports, ofp, host = build()
    cs = contexts(ports, ofp, host)
    res = simulator(t.view(), cs[1]).run(eth(B, BCAST), in_port=2)  # tenant 2 on c2
    tun = res.outputs_to(TUNNEL_PORTS["vxlan"])
    assert [e.packet["tun_ipv4_dst"] for e in tun] == [ipv4(IP1)]  # not c3: no tenant-2 port there
    fab = fabric(t.view(), cs)
    got = sorted((d.chassis, d.port) for d in fab.send("c1", 1, eth(A, BCAST)))
    assert got == [("c2", 1), ("c3", 1)]
    got = sorted((d.chassis, d.port) for d in fab.send("c1", 2, eth(A, BCAST)))
    assert got == [("c2", 2)]


def test_nothing_of_a_network_on_a_chassis_without_its_ports():
    t, n1, n2, ports, ofp, host = build()
    c3 = contexts(ports, ofp, host)[2]
    flows = chassis_flows(t.view(), c3)
    assert cookie(Owner.NETWORK, n2["_key"]) not in flows
    for k in ("a2", "b2"):
        assert cookie(Owner.PORT, ports[k]["_key"]) not in flows
    # a tenant-2 frame arriving by tunnel is dropped at classify
    res = simulator(t.view(), c3).run(dict(eth(A, BCAST), tunnel_id=5002), in_port=TUNNEL_PORTS["vxlan"])
    assert res.ports() == []


def test_packets_from_a_tunnel_are_never_tunnelled_again():
    t, n1, n2, ports, ofp, host = build()
    c1 = contexts(ports, ofp, host)[0]
    sim = simulator(t.view(), c1)
    # broadcast from a tunnel: local delivery only
    res = sim.run(dict(eth(B, BCAST), tunnel_id=5001), in_port=TUNNEL_PORTS["vxlan"])
    assert res.ports() == [1]
    # unicast from a tunnel to a port c1 believes is on c3: dropped, not bounced
    res = sim.run(dict(eth(B, C), tunnel_id=5001), in_port=TUNNEL_PORTS["vxlan"])
    assert res.ports() == []


def test_port_move_flows_follow():
    t, n1, n2, ports, ofp, host = build()
    apps = default_apps()
    view = t.view()
    # move c1's tenant-1 port C from c3 to c2
    t.update("port", ports["c1"]["id"], **{"binding:host_id": "c2"})
    change = t.changes[-1]
    view.apply(change)
    touched = compiler.owners_for_change(apps, view, change)
    assert cookie(Owner.PORT, ports["c1"]["_key"]) in touched
    host["c1"] = "c2"
    ofp["c1"] = 3
    cs = contexts(ports, ofp, host)
    fab = fabric(view, cs)
    got = fab.send("c1", 1, eth(A, C))
    assert [(d.chassis, d.port) for d in got] == [("c2", 3)]
    # c3 lost its only port: no tenant-1 flows left there
    assert {ck >> 56 for ck in chassis_flows(view, cs[2])} == {Owner.PIPELINE}


def test_chassis_tunnel_ip_change_updates_remote_entries():
    t, n1, n2, ports, ofp, host = build()
    apps = default_apps()
    view = t.view()
    cs = contexts(ports, ofp, host)
    before = chassis_flows(view, cs[0])
    c2_id = next(ch["id"] for ch in t.data["chassis"].values() if ch["name"] == "c2")
    t.update("chassis", c2_id, tunnel_ip="198.51.100.2")
    change = t.changes[-1]
    view.apply(change)
    touched = compiler.owners_for_change(apps, view, change)
    after = dict(before)
    after.update(compiler.compile_owners(apps, view, cs[0], touched))
    after = {o: f for o, f in after.items() if f}
    assert after == chassis_flows(view, cs[0])
    res = simulator(view, cs[0]).run(eth(A, B), in_port=1)
    assert res.outputs[0].packet["tun_ipv4_dst"] == ipv4("198.51.100.2")


def test_tunnel_classify_matches_vni_and_port():
    t, n1, n2, ports, ofp, host = build("gre")
    c1 = contexts(ports, ofp, host)[0]
    flows = chassis_flows(t.view(), c1)[cookie(Owner.NETWORK, n1["_key"])]
    classify = [f for f in flows if f.table == T.CLASSIFY]
    assert len(classify) == 1
    assert dict((n, v) for n, v, _ in classify[0].match) == {"in_port": TUNNEL_PORTS["gre"], "tunnel_id": 5001}
    # a frame on the wrong tunnel type is not classified into the network
    res = simulator(t.view(), c1).run(dict(eth(B, A), tunnel_id=5001), in_port=TUNNEL_PORTS["vxlan"])
    assert res.ports() == []


def test_no_tunnel_port_of_that_type_no_remote_flows():
    t, n1, n2, ports, ofp, host = build("geneve")
    c1 = contexts(ports, ofp, host)[0]
    c1 = ctx("c1", c1.local_ports, IP1, tunnel_ports={"vxlan": 100})
    res = simulator(t.view(), c1).run(eth(A, B), in_port=1)
    assert res.ports() == []
    assert simulator(t.view(), c1).run(eth(A, BCAST), in_port=1).ports() == []
