"""Routers that answer ICMP, on the offline simulator (flows/router_icmp.py, apps/router_icmp.py)
and the ICMP builders (apps/packets.py).

Topology: test_routing's (R1 on A 10.1.0.0/24 and B 10.2.0.0/24; vmA1 on c1 ofport 1, vmB2 on c2)
and test_nat's external network E (R1's gateway 172.24.4.10, vmB2's floating IP 172.24.4.50).
The error path is run end to end: punt → RouterIcmp builds the frame → the frame re-enters the
simulated datapath as the controller's packet-out (in_port CONTROLLER) → delivered to the sender.
"""
from __future__ import annotations

import ipaddress
import os
import random
import struct

import pytest

from apps import packets
from apps.base import PacketIn
from apps.router_icmp import OFPP_TABLE, RouterIcmp
from controller import wire
from flows import nat
from flows.fields import ipv4, mac
from flows.flow import CheckPktLarger
from flows.router_icmp import OFPP_CONTROLLER, USERDATA_ROUTER_ICMP
from flows.simulator import packet
from flows.tables import R, T
from tests.unit.l2topo import UPLINK
from tests.unit.test_nat import (FIP_IP, FIP_MAC, GW_IP, GW_MAC, OUTSIDE_IP, OUTSIDE_MAC, arp, outside_ip,
                                 with_external)
from tests.unit.test_routing import ip_pkt, routed_topo

VM_A1_MAC, VM_A1_IP = "fa:16:3e:00:0a:01", "10.1.0.11"


def frame(eth_src: str, eth_dst: str, src: str, dst: str, ttl: int = 64, proto: int = 1, df: bool = False,
          size: int = 84) -> bytes:
    """A real Ethernet/IPv4 frame (ICMP echo request or UDP), `size` bytes of IP."""
    l4 = (b"\x08\x00\x00\x00\x12\x34\x00\x01" if proto == 1 else b"\x9c\x40\x82\x9a\x00\x10\x00\x00")
    body = l4 + bytes(max(0, size - 20 - len(l4)))
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(body), 7, 0x4000 if df else 0, ttl, proto, 0,
                               ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed))
    ip[10:12] = packets.ip_checksum(bytes(ip)).to_bytes(2, "big")
    return bytes.fromhex(eth_dst.replace(":", "")) + bytes.fromhex(eth_src.replace(":", "")) + b"\x08\x00" + \
        bytes(ip) + body


def as_sim_packet(data: bytes) -> dict:
    """A frame the controller sends → the simulator's packet dict."""
    p = packets.parse_ipv4_packet(data)
    assert p is not None
    pkt = packet(eth_src=p.eth_src, eth_dst=p.eth_dst, eth_type=0x0800, ip_proto=p.proto, ipv4_src=p.src,
                 ipv4_dst=p.dst, icmpv4_type=p.payload[0], icmpv4_code=p.payload[1])
    pkt["ip_ttl"] = pkt["nw_ttl"] = p.ttl
    return pkt


def answer(app: RouterIcmp, r, chassis: str, punt, data: bytes) -> list:
    view = r.topo.view()
    ctx = next(c for c in r.contexts() if c.name == chassis)
    regs = {k: v for k, v in punt.packet.items() if k.startswith("reg") or k == "metadata"}
    return app.packet_in(view, ctx, PacketIn(1, chassis, punt.packet["in_port"], punt.table, punt.cookie, regs,
                                              data, USERDATA_ROUTER_ICMP))


def ttl_pkt(src_port: dict, dst_mac: str, dst_ip: str, ttl: int, **more) -> dict:
    p = ip_pkt(src_port, dst_mac, dst_ip, ttl=ttl, **more)
    p["nw_ttl"] = ttl
    return p


# ------------------------------------------------------------------------------ echo in flows

@pytest.mark.parametrize("target", ["10.1.0.1", "10.2.0.1", GW_IP])
def test_echo_to_every_router_address_is_answered_in_the_datapath(target):
    r = with_external()
    res = r.sim("c1").run(ttl_pkt(r.ports["vmA1"], r.macs["R1A"], target, ttl=1), in_port=1)
    [e] = res.outputs
    assert not res.punts and e.port == 1  # back out of the VM's own port (IN_PORT), even with TTL 1
    p = e.packet
    assert p["icmpv4_type"] == 0 and p["ipv4_src"] == ipv4(target) and p["ipv4_dst"] == ipv4(VM_A1_IP)
    assert p["eth_src"] == mac(r.macs["R1A"]) and p["eth_dst"] == mac(VM_A1_MAC)


def test_gateway_ip_answers_ping_from_outside_on_its_gateway_chassis_only():
    r = with_external()
    res = r.sim("c1").run(outside_ip(GW_MAC, GW_IP), in_port=UPLINK)
    [e] = res.outputs
    assert e.port == UPLINK and e.packet["icmpv4_type"] == 0
    assert e.packet["ipv4_src"] == ipv4(GW_IP) and e.packet["ipv4_dst"] == ipv4(OUTSIDE_IP)
    assert e.packet["eth_src"] == mac(GW_MAC) and e.packet["eth_dst"] == mac(OUTSIDE_MAC)
    assert r.sim("c2").run(outside_ip(GW_MAC, GW_IP), in_port=UPLINK).outputs == []


def test_other_traffic_to_a_router_address_is_not_routed_on():
    r = routed_topo()
    res = r.sim("c1").run(ip_pkt(r.ports["vmA1"], r.macs["R1A"], "10.2.0.1", icmpv4_type=13), in_port=1)
    assert res.outputs == [] and res.punts == []


# ------------------------------------------------------------------------------ errors, end to end

def test_ttl_expiring_at_the_router_gets_time_exceeded_from_its_address_on_the_sender_subnet():
    r = routed_topo()
    c1 = r.sim("c1")
    res = c1.run(ttl_pkt(r.ports["vmA1"], r.macs["R1A"], "10.2.0.11", ttl=1), in_port=1)
    assert res.outputs == [] and [(p.table, p.userdata) for p in res.punts] == [(T.L3_ROUTE, USERDATA_ROUTER_ICMP)]
    app = RouterIcmp()
    data = frame(VM_A1_MAC, r.macs["R1A"], VM_A1_IP, "10.2.0.11", ttl=1)
    [out] = answer(app, r, "c1", res.punts[0], data)
    assert out.ofport == OFPP_TABLE and app.stats["time_exceeded"] == 1
    err = packets.parse_ipv4_packet(out.data)
    assert err is not None and err.src == "10.1.0.1" and err.dst == VM_A1_IP
    assert err.payload[:2] == bytes([11, 0]) and packets.ip_checksum(err.payload) == 0
    assert err.payload[8:] == data[14:14 + 28]  # quoted: IP header + 8 bytes, as received
    # the controller's packet-out enters the router and is routed back to vmA1
    back = c1.run(as_sim_packet(out.data), in_port=OFPP_CONTROLLER)
    [e] = back.outputs
    assert e.port == 1 and e.packet["icmpv4_type"] == 11 and e.packet["eth_dst"] == mac(VM_A1_MAC)


def test_routers_sharing_a_mac_on_different_networks_each_get_their_own_errors():
    """Neutron keeps MACs unique per network only: R2's leg on C has R1's MAC on A. Each
    router's controller-originated error still enters that router (originate_mac is per router
    and network) and reaches its own sender; no two owners claim one flow key."""
    from flows import compiler
    from tests.unit import test_routing
    r = routed_topo(R2C="fa:16:3e:aa:00:01")
    ctx = next(c for c in r.contexts() if c.name == "c1")
    per_owner = compiler.compile_chassis(test_routing.apps(), r.topo.view(), ctx)
    keys = [f.key for flows in per_owner.values() for f in flows]
    assert len(keys) == len(set(keys))
    c1 = r.sim("c1")
    app = RouterIcmp()
    for vm, ofport in (("vmA1", 1), ("vmC1", 3)):
        res = c1.run(ttl_pkt(r.ports[vm], "fa:16:3e:aa:00:01", "10.2.0.11", ttl=1), in_port=ofport)
        [punt] = res.punts
        data = frame(r.ports[vm]["mac_address"], "fa:16:3e:aa:00:01", "10.1.0.11", "10.2.0.11", ttl=1)
        [out] = answer(app, r, "c1", punt, data)
        back = c1.run(as_sim_packet(out.data), in_port=OFPP_CONTROLLER)
        [e] = back.outputs
        assert e.port == ofport and e.packet["icmpv4_type"] == 11
        assert e.packet["eth_dst"] == mac(r.ports[vm]["mac_address"])
        assert e.packet["eth_src"] == mac("fa:16:3e:aa:00:01")


def test_no_route_gets_net_unreachable():
    r = routed_topo()
    c1 = r.sim("c1")
    res = c1.run(ip_pkt(r.ports["vmA1"], r.macs["R1A"], "192.0.2.7"), in_port=1)
    [punt] = res.punts
    assert res.outputs == [] and punt.table == T.L3_ROUTE
    [out] = answer(RouterIcmp(), r, "c1", punt, frame(VM_A1_MAC, r.macs["R1A"], VM_A1_IP, "192.0.2.7"))
    err = packets.parse_ipv4_packet(out.data)
    assert err is not None and err.payload[:2] == bytes([3, 0]) and err.src == "10.1.0.1"
    [e] = c1.run(as_sim_packet(out.data), in_port=OFPP_CONTROLLER).outputs
    assert e.port == 1 and e.packet["icmpv4_code"] == 0


def test_udp_to_a_router_address_gets_port_unreachable():
    r = routed_topo()
    udp = packet(eth_src=VM_A1_MAC, eth_dst=r.macs["R1A"], eth_type=0x0800, ip_proto=17, ipv4_src=VM_A1_IP,
                 ipv4_dst="10.1.0.1", udp_src=40000, udp_dst=33434)
    res = r.sim("c1").run(udp, in_port=1)
    [punt] = res.punts
    [out] = answer(RouterIcmp(), r, "c1", punt, frame(VM_A1_MAC, r.macs["R1A"], VM_A1_IP, "10.1.0.1", proto=17))
    err = packets.parse_ipv4_packet(out.data)
    assert err is not None and err.payload[:2] == bytes([3, 3])
    # traceroute's last probe to the router itself arrives with TTL 1: still port unreachable
    udp["nw_ttl"] = 1
    [punt] = r.sim("c1").run(udp, in_port=1).punts
    [out] = answer(RouterIcmp(), r, "c1", punt, frame(VM_A1_MAC, r.macs["R1A"], VM_A1_IP, "10.1.0.1", ttl=1,
                                                      proto=17))
    assert packets.parse_ipv4_packet(out.data).payload[:2] == bytes([3, 3])  # type: ignore[union-attr]


def test_oversized_packet_to_floating_ip_gets_frag_needed_through_the_floating_ip():
    r = with_external()
    r.topo.update("network", r.nets["E"]["id"], mtu=1500)  # external 1500, tenant VXLAN 1450
    c2 = r.sim("c2")
    c2.run(arp(2, OUTSIDE_MAC, OUTSIDE_IP, FIP_IP, dst=FIP_MAC), in_port=UPLINK)  # learn the outside host
    small = outside_ip(FIP_MAC, FIP_IP)
    small["pkt_len"] = 1450 + 14
    assert [e.port for e in c2.run(small, in_port=UPLINK).outputs] == [1]  # fits: delivered to vmB2
    big = dict(small, pkt_len=1500 + 14)
    res = c2.run(big, in_port=UPLINK)
    [punt] = res.punts
    assert res.outputs == [] and punt.table == T.L3_NEIGHBOR and punt.userdata == USERDATA_ROUTER_ICMP
    # what the controller got: DNATed to vmB2's fixed IP, TTL decremented
    data = frame(r.macs["R1B"], "fa:16:3e:00:0b:02", OUTSIDE_IP, "10.2.0.12", ttl=63, df=True, size=1500)
    app = RouterIcmp()
    [out] = answer(app, r, "c2", punt, data)
    err = packets.parse_ipv4_packet(out.data)
    assert err is not None and app.stats["frag_needed"] == 1
    assert err.payload[:2] == bytes([3, 4]) and int.from_bytes(err.payload[6:8], "big") == 1450
    inner = err.payload[8:]
    assert ipaddress.IPv4Address(inner[16:20]) == ipaddress.IPv4Address(FIP_IP)  # DNAT undone
    assert inner[8] == 64 and packets.ip_checksum(inner[:20]) == 0              # TTL as sent
    # routed back out through the floating IP's own NAT: from the FIP and its MAC, out of c2's uplink
    [e] = c2.run(as_sim_packet(out.data), in_port=OFPP_CONTROLLER).outputs
    assert e.port == UPLINK and e.packet["ipv4_src"] == ipv4(FIP_IP) and e.packet["eth_src"] == mac(FIP_MAC)
    assert e.packet["ipv4_dst"] == ipv4(OUTSIDE_IP) and e.packet["eth_dst"] == mac(OUTSIDE_MAC)


def test_same_mtu_everywhere_means_no_length_check():
    r = routed_topo()
    flows = r.sim("c1").flows()
    assert not any(isinstance(a, CheckPktLarger) for f in flows for a in f.actions)
    r = with_external()
    r.topo.update("network", r.nets["E"]["id"], mtu=1500)
    checks = {a.pkt_len for f in r.sim("c1").flows() for a in f.actions if isinstance(a, CheckPktLarger)}
    assert checks == {1464, 1514}


def test_no_error_about_an_error_a_fragment_or_a_broadcast():
    r = routed_topo()
    punt = r.sim("c1").run(ttl_pkt(r.ports["vmA1"], r.macs["R1A"], "10.2.0.11", ttl=1), in_port=1).punts[0]
    app = RouterIcmp()
    err = packets.build_icmp_error(eth_src=VM_A1_MAC, eth_dst=r.macs["R1A"], src_ip=VM_A1_IP, dst_ip="10.2.0.11",
                                   icmp_type=3, code=3, quote=bytes(28), ttl=1)
    assert answer(app, r, "c1", punt, err) == []
    frag = bytearray(frame(VM_A1_MAC, r.macs["R1A"], VM_A1_IP, "10.2.0.11", ttl=1))
    frag[20:22] = b"\x00\x10"
    frag[24:26] = b"\x00\x00"
    frag[24:26] = packets.ip_checksum(bytes(frag[14:34])).to_bytes(2, "big")
    assert answer(app, r, "c1", punt, bytes(frag)) == []
    assert answer(app, r, "c1", punt, frame(VM_A1_MAC, r.macs["R1A"], "0.0.0.0", "10.2.0.11", ttl=1)) == []
    assert app.stats["suppressed"] == 3


def test_rate_limited_per_router_and_destination():
    r = routed_topo()
    punt = r.sim("c1").run(ttl_pkt(r.ports["vmA1"], r.macs["R1A"], "10.2.0.11", ttl=1), in_port=1).punts[0]
    app = RouterIcmp(rate=1000, burst=1000, dst_rate=0.001, dst_burst=6)
    data = frame(VM_A1_MAC, r.macs["R1A"], VM_A1_IP, "10.2.0.11", ttl=1)
    sent = sum(len(answer(app, r, "c1", punt, data)) for _ in range(20))
    assert sent == 6 and app.stats["rate_limited"] == 14


def test_malformed_punts_never_raise():
    r = routed_topo()
    punt = r.sim("c1").run(ttl_pkt(r.ports["vmA1"], r.macs["R1A"], "10.2.0.11", ttl=1), in_port=1).punts[0]
    app = RouterIcmp(rate=1e6, burst=1e6, dst_rate=1e6, dst_burst=1e6)
    good = frame(VM_A1_MAC, r.macs["R1A"], VM_A1_IP, "10.2.0.11", ttl=1)
    rnd = random.Random(13)
    samples = [b"", b"\x00" * 13, good[:33], good[:40], os.urandom(60), good + bytes(9300)]
    for _ in range(300):
        b = bytearray(good)
        for _ in range(rnd.randint(1, 6)):
            b[rnd.randrange(len(b))] = rnd.randrange(256)
        samples.append(bytes(b[:rnd.randint(0, len(b))]))
    for data in samples:
        outs = answer(app, r, "c1", punt, data)
        for o in outs:
            assert packets.parse_ipv4_packet(o.data) is not None
    view = r.topo.view()
    c1 = r.contexts()[0]
    for regs in ({}, {R.ROUTER: 999}, {R.ROUTER: 1, R.NETWORK: 999}):
        for table in (T.L3_ROUTE, T.L3_NEIGHBOR, T.NAT_OUT, 0):
            assert app.packet_in(view, c1, PacketIn(1, "c1", 1, table, 0, regs, good, b"l3icmp")) is not None
    assert app.stats["error"] == 0


# ------------------------------------------------------------------------------ builders, wire

def test_icmp_error_builder_checksums_and_quote():
    orig = packets.parse_ipv4_packet(frame(VM_A1_MAC, "fa:16:3e:aa:00:01", VM_A1_IP, "10.9.9.9", ttl=5, df=True,
                                           size=1400))
    assert orig is not None and orig.df and orig.ttl == 5 and len(orig.payload) == 1380
    quote = packets.quote_of(orig, dst="172.24.4.50", ttl_delta=1)
    assert len(quote) == 28 and quote[8] == 6 and packets.ip_checksum(quote[:20]) == 0
    data = packets.build_icmp_error(eth_src="fa:16:3e:aa:00:01", eth_dst=VM_A1_MAC, src_ip="10.1.0.1",
                                    dst_ip=VM_A1_IP, icmp_type=3, code=4, mtu=1450, quote=quote)
    err = packets.parse_ipv4_packet(data)
    assert err is not None and err.ttl == 64 and err.proto == 1 and len(err.payload) == 8 + 28
    assert packets.ip_checksum(err.payload) == 0 and err.payload[4:8] == b"\x00\x00\x05\xaa"


def test_check_pkt_larger_wire_encoding():
    b = wire._serialize_action(CheckPktLarger(1464, "reg0", 8))
    assert len(b) == 24
    typ, length, vendor, subtype, pkt_len, ofs, hdr = struct.unpack("!HHIHHHI", b[:18])
    assert (typ, length, vendor, subtype, pkt_len, ofs) == (0xFFFF, 24, 0x2320, 49, 1464, 8)
    assert hdr == 0x00010004 and b[18:] == bytes(6)  # NXM_NX_REG0, then zero padding
    assert CheckPktLarger(1464, "reg0", 8).ofctl() == "check_pkt_larger(1464)->reg0[8]"


def test_nat_arp_punt_unchanged():  # the external next-hop punt keeps its own userdata
    assert nat.USERDATA_EXT_ARP != USERDATA_ROUTER_ICMP
