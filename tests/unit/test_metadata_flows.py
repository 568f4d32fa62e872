"""Metadata steering (flows/metadata.py) inside the whole compiled pipeline, on the simulator."""
from __future__ import annotations

import dataclasses
import ipaddress

import pytest

from flows import metadata as M
from flows.simulator import packet
from tests.unit.l2topo import Topo, ctx, simulator

META_OFPORT = 77
MAC_A, MAC_B = "fa:16:3e:00:00:0a", "fa:16:3e:00:00:0b"


@pytest.fixture
def topo():
    t = Topo()
    t.chassis("c1", "192.0.2.1")
    n1, n2 = t.network("n1", project="p1"), t.network("n2", project="p2")
    a = t.port(n1, MAC_A, "10.0.0.5", "c1", port_security=True)
    b = t.port(n2, MAC_B, "10.0.0.5", "c1")          # same IP, other tenant
    t.update("port", a["id"], security_groups=[])    # deny-all SGs: metadata still answers
    view = t.view()
    c = dataclasses.replace(ctx("c1", {a["id"]: 1, b["id"]: 2}, "192.0.2.1"), metadata_port=META_OFPORT)
    return view, c, view.port(a["id"]), view.port(b["id"])


def _syn(mac: str, ip: str, dst_mac: str = M.METADATA_MAC) -> dict:
    return packet(eth_src=mac, eth_dst=dst_mac, eth_type=0x0800, ip_proto=6, ipv4_src=ip,
                  ipv4_dst=M.METADATA_IP, tcp_src=40000, tcp_dst=80)


def _ip(value: int) -> str:
    return str(ipaddress.IPv4Address(value))


def test_pool_address_round_trip():
    for key in (1, 5, 4095, 65535):
        for i in (0, 15):
            assert M.decode_source(_ip(M.source_address(key, i))) == (key, i)
    assert M.decode_source("10.0.0.5") is None and M.decode_source("garbage") is None
    with pytest.raises(ValueError):
        M.source_address(0, 0)


def test_same_ip_in_two_tenants_reaches_the_agent_from_different_sources(topo):
    view, c, a, b = topo
    sim = simulator(view, c)
    seen = []
    for port, ofport in ((a, 1), (b, 2)):
        res = sim.run(_syn(port["mac_address"], "10.0.0.5"), in_port=ofport)
        (out,) = res.outputs_to(META_OFPORT)
        assert res.ports() == [META_OFPORT], res.dump_trace()
        pkt = out.on_wire()
        assert _ip(pkt["ipv4_dst"]) == M.METADATA_IP and pkt["tcp_dst"] == 80
        seen.append(M.decode_source(_ip(pkt["ipv4_src"])))
    assert seen == [(a["_key"], 0), (b["_key"], 0)]


def test_request_via_the_router_mac_is_caught_too(topo):
    view, c, a, _ = topo
    res = simulator(view, c).run(_syn(MAC_A, "10.0.0.5", dst_mac="fa:16:3e:99:99:99"), in_port=1)
    assert res.ports() == [META_OFPORT], res.dump_trace()


def test_answer_goes_back_to_the_right_vm_with_its_address(topo):
    view, c, a, b = topo
    sim = simulator(view, c)
    for port, ofport in ((a, 1), (b, 2)):
        reply = packet(eth_src=M.METADATA_MAC, eth_dst=M.GATEWAY_MAC, eth_type=0x0800, ip_proto=6,
                       ipv4_src=M.METADATA_IP, ipv4_dst=_ip(M.source_address(port["_key"], 0)),
                       tcp_src=80, tcp_dst=40000)
        res = sim.run(reply, in_port=META_OFPORT)
        assert res.ports() == [ofport], res.dump_trace()
        pkt = res.outputs[0].on_wire()
        assert _ip(pkt["ipv4_dst"]) == "10.0.0.5" and pkt["eth_dst"] == int(port["mac_address"].replace(":", ""), 16)
    # anything else from tap-meta goes nowhere
    stray = packet(eth_src=M.METADATA_MAC, eth_dst="ff:ff:ff:ff:ff:ff", eth_type=0x0800, ip_proto=6,
                   ipv4_src=M.METADATA_IP, ipv4_dst="10.0.0.5", tcp_src=80, tcp_dst=40000)
    assert sim.run(stray, in_port=META_OFPORT).ports() == []


def test_spoofed_source_is_not_steered(topo):
    view, c, a, _ = topo
    res = simulator(view, c).run(_syn(MAC_A, "10.0.0.99"), in_port=1)   # port security drops it
    assert META_OFPORT not in res.ports()


def test_arp_for_metadata_ip_answered_in_switch(topo):
    view, c, a, _ = topo
    req = packet(eth_src=MAC_A, eth_dst="ff:ff:ff:ff:ff:ff", eth_type=0x0806, arp_op=1, arp_sha=MAC_A,
                 arp_spa="10.0.0.5", arp_tha="00:00:00:00:00:00", arp_tpa=M.METADATA_IP)
    res = simulator(view, c).run(req, in_port=1)
    assert res.punts == [] and len(res.outputs) == 1, res.dump_trace()
    pkt = res.outputs[0].packet
    assert pkt["arp_op"] == 2 and pkt["arp_sha"] == int(M.METADATA_MAC.replace(":", ""), 16)
    assert _ip(pkt["arp_spa"]) == M.METADATA_IP and _ip(pkt["arp_tpa"]) == "10.0.0.5"


def test_no_agent_no_flows(topo):
    view, _, a, b = topo
    plain = ctx("c1", {a["id"]: 1, b["id"]: 2}, "192.0.2.1")
    assert M.owners_on_chassis(view, plain) == []
    res = simulator(view, plain).run(_syn(MAC_A, "10.0.0.5"), in_port=1)
    assert META_OFPORT not in res.ports()


def test_network_ports_get_no_metadata_flows(topo):
    view, c, a, _ = topo
    router_port = dict(a, device_owner="network:router_interface")
    assert M.port_flows(c, router_port) == []
    assert len(M.port_flows(c, a)) == 2


def test_incremental_engine_equals_a_fresh_compile():
    """Plug, readdress, unplug and delete ports with an agent on the chassis (and the agent going
    away): after every batch the engine's flows equal a fresh compile with fresh apps."""
    from apps.registry import default_apps
    from tests.unit.enginedrive import EngineCloud

    t = Topo()
    t.chassis("c1", "192.0.2.1")
    n1 = t.network("n1")
    a = t.port(n1, MAC_A, "10.0.0.5", "c1")
    view = t.view()
    base = dataclasses.replace(ctx("c1", {a["id"]: 1}, "192.0.2.1"), metadata_port=META_OFPORT)
    cloud = EngineCloud(default_apps(), view, {"c1": base})
    t.changes.clear()

    def step(c=None):
        cloud.step(list(t.changes), {"c1": c} if c is not None else None)
        t.changes.clear()
        assert cloud.differences(default_apps, t.view()) == {}

    assert any(f.priority == M.PRIO_REQUEST for fl in cloud.state["c1"].values() for f in fl)
    n2 = t.network("n2", project="p2")
    b = t.port(n2, MAC_B, "10.0.0.5", "c1")
    step(dataclasses.replace(base, local_ports={a["id"]: 1, b["id"]: 2}))
    t.update("port", b["id"], fixed_ips=[{"subnet_id": "s", "ip_address": "10.0.0.6"},
                                         {"subnet_id": "s", "ip_address": "10.0.0.7"}])
    step()
    flows = cloud.state["c1"].get(cookie_of(b), frozenset())
    assert sum(f.priority == M.PRIO_REQUEST for f in flows) == 2
    step(dataclasses.replace(base, local_ports={a["id"]: 1}))       # b unplugged: n2 leaves
    t.delete("port", b["id"])
    step()
    step(dataclasses.replace(base, local_ports={a["id"]: 1}, metadata_port=0))   # agent stopped
    assert not any(f.priority in (M.PRIO_REQUEST, M.PRIO_ARP) for fl in cloud.state["c1"].values() for f in fl)


def cookie_of(port: dict) -> int:
    from flows.tables import Owner, cookie
    return cookie(Owner.PORT, port["_key"])
