"""Floating IPs and SNAT on the offline simulator (flows/nat.py, apps/nat.py).

Builds on test_routing's topology: R1 gets a gateway on the flat external network E
(172.24.4.0/24, physnet1, uplink ofport 200 on both chassis); vmB2 (on c2) gets floating IP
172.24.4.50. c1 is R1's gateway chassis (first by name that maps physnet1).
"""
from __future__ import annotations

import struct

import pytest

from apps.base import PacketIn
from apps.nat import NatApp
from flows import compiler, nat, routing
from flows.fields import ipv4, mac
from flows.simulator import CtState, packet
from flows.tables import R, T, Owner, cookie
from tests.unit.l2topo import UPLINK
from tests.unit.test_routing import apps, ip_pkt, routed_topo, service_port, subnet

OUTSIDE_MAC = "00:00:5e:00:53:01"
OUTSIDE_IP = "172.24.4.100"
GW_MAC = "fa:16:3e:ee:00:10"
GW_IP = "172.24.4.10"
FIP_MAC = "fa:16:3e:ee:00:50"
FIP_IP = "172.24.4.50"


def with_external(ntype: str = "flat", seg=None, snat: bool = True):
    r = routed_topo()
    t = r.topo
    ext = t.network("E", ntype=ntype, seg=seg, physnet="physnet1", project="admin")
    ext = t.update("network", ext["id"], **{"router:external": True})
    subnet(t, ext, "172.24.4.0/24", "172.24.4.1")
    r1 = r.routers["R1"]
    service_port(t, ext, GW_MAC, GW_IP, "network:router_gateway", r1["id"])
    t.update("router", r1["id"], external_gateway_info={
        "network_id": ext["id"], "enable_snat": snat,
        "external_fixed_ips": [{"subnet_id": "s-" + ext["id"], "ip_address": GW_IP}]})
    fip_id = "fip-1"
    service_port(t, ext, FIP_MAC, FIP_IP, "network:floatingip", fip_id)
    fip = t._put("floatingip", {"id": fip_id, "floating_network_id": ext["id"], "floating_ip_address": FIP_IP,
                                "port_id": r.ports["vmB2"]["id"], "fixed_ip_address": "10.2.0.12",
                                "router_id": r1["id"], "status": "ACTIVE", "project_id": "p1",
                                "_key": next(t._keys["floatingip"])})
    r.nets["E"] = ext
    r.extra["fip"] = fip
    return r


def arp(op: int, sha: str, spa: str, tpa: str, dst: str = "ff:ff:ff:ff:ff:ff", vid: int = 0) -> dict:
    p = packet(eth_src=sha, eth_dst=dst, eth_type=0x0806, arp_op=op, arp_sha=sha, arp_spa=spa,
               arp_tha="00:00:00:00:00:00" if op == 1 else dst, arp_tpa=tpa)
    if vid:
        p["vlan_vid"] = vid | 0x1000
    return p


def outside_ip(dst_mac: str, dst_ip: str, src_ip: str = OUTSIDE_IP, itype: int = 8, vid: int = 0) -> dict:
    p = packet(eth_src=OUTSIDE_MAC, eth_dst=dst_mac, eth_type=0x0800, ip_proto=1, ipv4_src=src_ip,
               ipv4_dst=dst_ip, icmpv4_type=itype)
    p["ip_ttl"] = 64
    if vid:
        p["vlan_vid"] = vid | 0x1000
    return p


# ------------------------------------------------------------------------------ ARP from outside

@pytest.mark.parametrize("ntype,seg", [("flat", None), ("vlan", 300)])
def test_fip_arp_answered_in_the_datapath_only_on_its_chassis(ntype, seg):
    r = with_external(ntype, seg)
    c1, c2 = r.sim("c1"), r.sim("c2")
    req = arp(1, OUTSIDE_MAC, OUTSIDE_IP, FIP_IP, vid=seg or 0)
    res = c2.run(req, in_port=UPLINK)
    [e] = res.outputs
    assert e.port == UPLINK and not res.punts
    assert e.packet["arp_op"] == 2 and e.packet["arp_sha"] == mac(FIP_MAC) and e.packet["arp_spa"] == ipv4(FIP_IP)
    assert e.packet["arp_tpa"] == ipv4(OUTSIDE_IP) and e.packet["eth_dst"] == mac(OUTSIDE_MAC)
    assert e.packet.get("vlan_vid", 0) == ((seg | 0x1000) if seg else 0)           # tag kept on the trunk
    assert [f.table for f in res.learned] == [T.L3_EXT_NEIGHBOR]            # asker learned as next hop
    assert c1.run(req, in_port=UPLINK).outputs == []                        # c1 stays silent
    gw = c1.run(arp(1, OUTSIDE_MAC, OUTSIDE_IP, GW_IP, vid=seg or 0), in_port=UPLINK)
    assert [o.packet["arp_sha"] for o in gw.outputs] == [mac(GW_MAC)]       # gateway IP: c1 only
    assert c2.run(arp(1, OUTSIDE_MAC, OUTSIDE_IP, GW_IP, vid=seg or 0), in_port=UPLINK).outputs == []


# ------------------------------------------------------------------------------ floating IP

@pytest.mark.parametrize("ntype,seg", [("flat", None), ("vlan", 300)])
def test_floating_ip_both_directions(ntype, seg):
    r = with_external(ntype, seg)
    c2 = r.sim("c2")
    vid = seg or 0
    # outside → FIP: DNAT to the fixed IP, routed into net B, delivered to vmB2 (ofport 1)
    res = c2.run(outside_ip(FIP_MAC, FIP_IP, vid=vid), in_port=UPLINK)
    [e] = res.outputs
    assert e.port == 1
    assert e.packet["ipv4_dst"] == ipv4("10.2.0.12") and e.packet["ipv4_src"] == ipv4(OUTSIDE_IP)
    assert e.packet["eth_dst"] == mac("fa:16:3e:00:0b:02") and e.packet["eth_src"] == mac(r.macs["R1B"])
    assert e.packet["ip_ttl"] == 63 and e.packet.get("vlan_vid", 0) == 0
    # VM → outside, next hop unknown: punted for ARP (nothing leaves)
    out_pkt = ip_pkt(r.ports["vmB2"], r.macs["R1B"], OUTSIDE_IP, icmpv4_type=0)
    res = c2.run(out_pkt, in_port=1)
    assert res.outputs == [] and [p.userdata for p in res.punts] == [nat.USERDATA_EXT_ARP]
    punt = res.punts[0].packet
    assert punt[R.NEXTHOP] == ipv4(OUTSIDE_IP) and punt["ipv4_src"] == ipv4(FIP_IP)
    # the outside host answers our ARP: learned, then the VM's packet leaves SNATed to its FIP
    c2.run(arp(2, OUTSIDE_MAC, OUTSIDE_IP, FIP_IP, dst=FIP_MAC, vid=vid), in_port=UPLINK)
    res = c2.run(out_pkt, in_port=1)
    [e] = res.outputs
    assert e.port == UPLINK
    assert e.packet["ipv4_src"] == ipv4(FIP_IP) and e.packet["ipv4_dst"] == ipv4(OUTSIDE_IP)
    assert e.packet["eth_src"] == mac(FIP_MAC) and e.packet["eth_dst"] == mac(OUTSIDE_MAC)
    assert e.packet.get("vlan_vid", 0) == ((seg | 0x1000) if seg else 0) and e.packet["ip_ttl"] == 63


def test_floating_ip_not_translated_on_other_chassis():
    r = with_external()
    view = r.topo.view()
    ck = cookie(Owner.FLOATINGIP, r.extra["fip"]["_key"])
    c1, c2 = r.contexts()
    assert compiler.compile_owner(apps(), view, c1, ck) == frozenset()
    assert compiler.compile_owner(apps(), view, c2, ck)
    assert r.sim("c1").run(outside_ip(FIP_MAC, FIP_IP), in_port=UPLINK).outputs == []


def test_disassociating_fip_removes_its_flows():
    r = with_external()
    t = r.topo
    t.update("floatingip", r.extra["fip"]["id"], port_id=None, fixed_ip_address=None, router_id=None)
    view = t.view()
    owners = compiler.changed_owners(apps(), view, [t.changes[-1]])
    ck = cookie(Owner.FLOATINGIP, r.extra["fip"]["_key"])
    assert ck in owners and cookie(Owner.NETWORK, r.nets["E"]["_key"]) in owners
    c2 = r.contexts()[1]
    assert compiler.compile_owner(apps(), view, c2, ck) == frozenset()
    # no NAT path left on c2 at all (no SNAT there either): the external network's output goes
    assert compiler.compile_owner(apps(), view, c2, cookie(Owner.NETWORK, r.nets["E"]["_key"])) == frozenset()


# ------------------------------------------------------------------------------ SNAT

def test_snat_both_directions_on_gateway_chassis():
    r = with_external()
    c1 = r.sim("c1")
    # learn the outside host first (it ARPs for the gateway IP)
    c1.run(arp(1, OUTSIDE_MAC, OUTSIDE_IP, GW_IP), in_port=UPLINK)
    req = ip_pkt(r.ports["vmA1"], r.macs["R1A"], OUTSIDE_IP)
    res = c1.run(req, in_port=1)
    [e] = res.outputs
    assert e.port == UPLINK
    assert e.packet["ipv4_src"] == ipv4(GW_IP) and e.packet["eth_src"] == mac(GW_MAC)
    assert e.packet["eth_dst"] == mac(OUTSIDE_MAC) and e.packet["ip_ttl"] == 63
    zone = nat.snat_zone(r.topo.view(), r.topo.data["router"][r.routers["R1"]["id"]])
    assert zone == next(p["_key"] for p in r.topo.data["port"].values()
                        if p["device_owner"] == "network:router_gateway")
    assert c1.conntrack.lookup(zone, dict(req, ipv4_src=ipv4("10.1.0.11"))) is not None
    # the reply comes back to the gateway IP: un-SNAT, route to vmA1
    res = c1.run(outside_ip(GW_MAC, GW_IP, itype=0), in_port=UPLINK)
    [e] = res.outputs
    assert e.port == 1 and e.packet["ipv4_dst"] == ipv4("10.1.0.11")
    assert e.packet["eth_dst"] == mac("fa:16:3e:00:0a:01") and e.packet["ct_state"] & CtState.TRK


def test_unsolicited_traffic_to_gateway_ip_is_dropped():
    r = with_external()
    c1 = r.sim("c1")
    # (an echo request is answered since routers answer ICMP: tests/unit/test_router_icmp.py;
    # anything else unsolicited, here an ICMP timestamp request, still gets nowhere)
    res = c1.run(outside_ip(GW_MAC, GW_IP, itype=13), in_port=UPLINK)
    assert res.outputs == [] and res.punts == []


def test_snat_disabled_means_no_snat_flows():
    r = with_external(snat=False)
    c1 = r.sim("c1")
    c1.run(arp(1, OUTSIDE_MAC, OUTSIDE_IP, GW_IP), in_port=UPLINK)
    assert c1.run(ip_pkt(r.ports["vmA1"], r.macs["R1A"], OUTSIDE_IP), in_port=1).outputs == []


def test_snat_from_another_chassis_goes_through_the_gateway_chassis():
    """vmB2 on c2 without a floating IP: routed on c2, tunnelled (transit key) to c1, SNATed there;
    the reply is un-NATed on c1 and tunnelled straight to c2."""
    r = with_external()
    r.topo.update("floatingip", r.extra["fip"]["id"], port_id=None, fixed_ip_address=None, router_id=None)
    fab = r.fabric()
    fab._chassis["c1"].sim.run(arp(1, OUTSIDE_MAC, OUTSIDE_IP, GW_IP), in_port=UPLINK)
    out = fab.send("c2", 1, ip_pkt(r.ports["vmB2"], r.macs["R1B"], OUTSIDE_IP))
    ext = [d for d in out if d.chassis == "physnet:physnet1"]
    assert len(ext) == 1 and len(out) == 1, out
    assert ext[0].packet["ipv4_src"] == ipv4(GW_IP) and ext[0].packet["eth_src"] == mac(GW_MAC)
    assert ext[0].packet["eth_dst"] == mac(OUTSIDE_MAC)
    back = fab.send("c1", UPLINK, outside_ip(GW_MAC, GW_IP, itype=0))
    assert [(d.chassis, d.port) for d in back] == [("c2", 1)]
    assert back[0].packet["ipv4_dst"] == ipv4("10.2.0.12") and back[0].packet["eth_dst"] == mac("fa:16:3e:00:0b:02")
    # the transit key is not a tenant network: nothing else on c1 accepts it
    c2 = r.contexts()[1]
    flows = compiler.compile_owner(apps(), r.topo.view(), c2, cookie(Owner.ROUTER, r.routers["R1"]["_key"]))
    assert any(f.table == T.NAT_OUT for f in flows)


def test_no_transit_when_snat_disabled():
    r = with_external(snat=False)
    r.topo.update("floatingip", r.extra["fip"]["id"], port_id=None, fixed_ip_address=None, router_id=None)
    fab = r.fabric()
    fab._chassis["c1"].sim.run(arp(1, OUTSIDE_MAC, OUTSIDE_IP, GW_IP), in_port=UPLINK)
    assert fab.send("c2", 1, ip_pkt(r.ports["vmB2"], r.macs["R1B"], OUTSIDE_IP)) == []


def test_fip_wins_over_snat_on_gateway_chassis():
    r = with_external()
    t = r.topo
    t.update("floatingip", r.extra["fip"]["id"], port_id=r.ports["vmB1"]["id"], fixed_ip_address="10.2.0.11")
    c1 = r.sim("c1")
    c1.run(arp(1, OUTSIDE_MAC, OUTSIDE_IP, FIP_IP), in_port=UPLINK)
    [e] = c1.run(ip_pkt(r.ports["vmB1"], r.macs["R1B"], OUTSIDE_IP), in_port=2).outputs
    assert e.packet["ipv4_src"] == ipv4(FIP_IP) and e.packet["eth_src"] == mac(FIP_MAC)


def test_east_west_unaffected_by_gateway():
    r = with_external()
    out = r.fabric().send("c1", 1, ip_pkt(r.ports["vmA1"], r.macs["R1A"], "10.2.0.12"))
    assert [(d.chassis, d.port) for d in out] == [("c2", 1)]


def test_gateway_chassis_follows_binding_and_mappings():
    r = with_external()
    view = r.topo.view()
    r1 = r.topo.data["router"][r.routers["R1"]["id"]]
    assert routing.gateway_chassis_name(view, r1) == "c1"
    gw = routing.gateway_port(view, r1)
    r.topo.update("port", gw["id"], **{"binding:host_id": "c2"})
    assert routing.gateway_chassis_name(r.topo.view(), r1) == "c2"


def test_pipeline_checks_and_no_key_conflicts_with_nat():
    r = with_external("vlan", 300)
    view = r.topo.view()
    for c in r.contexts():
        compiler.check_conflicts(compiler.compile_chassis(apps(), view, c, check=True), c.name)


# ------------------------------------------------------------------------------ packet-in

def test_arp_request_for_unresolved_next_hop():
    r = with_external("vlan", 300)
    view = r.topo.view()
    c2 = r.contexts()[1]
    frame = bytes.fromhex("000000000000") + bytes.fromhex(FIP_MAC.replace(":", "")) + b"\x08\x00" + \
        bytes([0x45, 0, 0, 28, 0, 0, 0, 0, 63, 1, 0, 0]) + ipv4(FIP_IP).to_bytes(4, "big") + \
        ipv4(OUTSIDE_IP).to_bytes(4, "big") + bytes(8)
    app = NatApp()
    pin = PacketIn(1, "c2", 1, T.EXT_OUTPUT, 0, {R.NEXTHOP: ipv4(OUTSIDE_IP), "metadata": r.nets["E"]["_key"]},
                   frame, nat.USERDATA_EXT_ARP)
    [out] = app.packet_in(view, c2, pin)
    assert out.ofport == UPLINK
    assert out.data[:6] == b"\xff" * 6 and out.data[6:12] == bytes.fromhex(FIP_MAC.replace(":", ""))
    assert out.data[12:16] == b"\x81\x00\x01\x2c" and out.data[16:18] == b"\x08\x06"
    htype, ptype, hlen, plen, op = struct.unpack("!HHBBH", out.data[18:26])
    assert (htype, ptype, hlen, plen, op) == (1, 0x0800, 6, 4, 1)      # Ethernet/IPv4 who-has
    assert out.data[26:32] == bytes.fromhex(FIP_MAC.replace(":", ""))
    assert int.from_bytes(out.data[32:36], "big") == ipv4(FIP_IP)
    assert int.from_bytes(out.data[42:46], "big") == ipv4(OUTSIDE_IP)
    # garbage never raises, and a flood is rate limited
    assert app.packet_in(view, c2, PacketIn(1, "c2", 1, 37, 0, {}, b"\x01\x02", b"l3arp")) == []
    sent = sum(len(app.packet_in(view, c2, pin)) for _ in range(50))
    assert sent < 10
