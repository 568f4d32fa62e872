"""IPv6 data plane on the offline simulator: port security (RA/NA guard, sources), security groups
(ICMPv6 types, v6 remote groups, always-allowed NDP/MLD), NDP answers (flows/ndp.py, apps/ndp.py)
and distributed IPv6 routing with its ICMPv6 echo replies and errors (flows/routing.py, IPv6
half); NdpApp never raises on garbage (hypothesis).

Topology (`V6`): tenant p1: net1 2001:db8:1::/64, net2 2001:db8:2::/64, router R1 on both;
tenant p2: net3 with the same prefix as net1 (2001:db8:1::/64) and router R2. VMs on c1:
a (net1, ofport 1), b (net1, 2), c (net2, 3), d (net3, 4); every VM in its project's default group.
"""
from __future__ import annotations

import ipaddress
import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from apps.base import ChassisContext, PacketIn
from apps.ndp import NdpApp
from apps.packets import ICMPV6_NA, build_icmpv6, parse_icmpv6, parse_neighbor_solicitation
from flows import ndp
from flows import port_security as ps
from flows.simulator import Conntrack, packet
from flows.tables import R, T
from tests.unit.l2topo import ctx
from tests.unit.test_security_groups_topo import SecTopo, flows_of, sim_of

ROUTER_IFACE = "network:router_interface"
MACS = {"a": "fa:16:3e:00:00:0a", "b": "fa:16:3e:00:00:0b", "c": "fa:16:3e:00:00:0c",
        "d": "fa:16:3e:00:00:0d", "r1n1": "fa:16:3e:aa:00:01", "r1n2": "fa:16:3e:aa:00:02",
        "r2n3": "fa:16:3e:bb:00:03"}
IPS = {"a": "2001:db8:1::a", "b": "2001:db8:1::b", "c": "2001:db8:2::c", "d": "2001:db8:1::d",
       "r1n1": "2001:db8:1::1", "r1n2": "2001:db8:2::1", "r2n3": "2001:db8:1::1"}
OFPORT = {"a": 1, "b": 2, "c": 3, "d": 4}
OTHER_MAC = "fa:16:3e:99:99:99"


def ip6(text: str) -> int:
    return int(ipaddress.IPv6Address(text))


def lla(mac_text: str) -> str:
    return str(ps.link_local(packet(eth_src=mac_text)["eth_src"]).network_address)


def solicited_node(addr: str) -> str:
    return str(ipaddress.IPv6Address(ip6("ff02::1:ff00:0") | (ip6(addr) & 0xFFFFFF)))


class V6:
    def __init__(self) -> None:
        t = self.t = SecTopo()
        self.nets, self.ports, self.routers = {}, {}, {}
        t.chassis("c1", "192.0.2.1")
        for name, cidr, project in (("net1", "2001:db8:1::/64", "p1"), ("net2", "2001:db8:2::/64", "p1"),
                                    ("net3", "2001:db8:1::/64", "p2")):
            net = self.nets[name] = t.network(name, project=project)
            t._put("subnet", {"id": "s6-" + net["id"], "network_id": net["id"], "cidr": cidr, "ip_version": 6,
                              "gateway_ip": cidr.replace("/64", "1"), "enable_dhcp": False,
                              "allocation_pools": [], "host_routes": [], "dns_nameservers": [],
                              "ipv6_ra_mode": None, "ipv6_address_mode": None, "_key": next(t._keys["subnet"])})
        self.groups = {"p1": self._default("p1"), "p2": self._default("p2")}
        for name, project in (("R1", "p1"), ("R2", "p2")):
            self.routers[name] = t._put("router", {
                "id": str(uuid.uuid4()), "name": name, "project_id": project, "admin_state_up": True,
                "external_gateway_info": None, "routes": [], "_key": next(t._keys["router"])})
        for key, rname, net in (("r1n1", "R1", "net1"), ("r1n2", "R1", "net2"), ("r2n3", "R2", "net3")):
            self.ports[key] = self._port(net, key, device_owner=ROUTER_IFACE, device_id=self.routers[rname]["id"])
        for key, net, project in (("a", "net1", "p1"), ("b", "net1", "p1"), ("c", "net2", "p1"),
                                  ("d", "net3", "p2")):
            self.ports[key] = self._port(net, key, security_groups=[self.groups[project]["id"]],
                                         port_security_enabled=True)

    def _default(self, project: str) -> dict:
        g = self.t.group("default", project=project)
        for et in ("IPv4", "IPv6"):
            self.t.rule(g, "egress", et)
            self.t.rule(g, "ingress", et, remote_group=g)
        return g

    def _port(self, net: str, key: str, **fields) -> dict:
        p = self.t.port(self.nets[net], MACS[key], "10.9.9.9", host="c1")
        fields.setdefault("fixed_ips", [{"subnet_id": "s6-" + self.nets[net]["id"], "ip_address": IPS[key]}])
        return self.t.update("port", p["id"], **fields)

    def local(self) -> dict[str, int]:
        return {self.ports[k]["id"]: OFPORT[k] for k in OFPORT}

    def sim(self, conntrack: Conntrack | None = None):
        return sim_of(self.t, self.local(), conntrack)

    def ctx(self) -> ChassisContext:
        return ctx("c1", self.local(), tunnel_ip="192.0.2.1")


def icmp6(src: str, dst_mac: str, dst_ip: str, type_: int, src_ip: str | None = None, **more) -> dict:
    more.setdefault("icmpv6_code", 0)
    pkt = packet(eth_src=MACS.get(src, src), eth_dst=dst_mac, eth_type=0x86DD, ip_proto=58,
                 ipv6_src=src_ip or IPS[src], ipv6_dst=dst_ip, icmpv6_type=type_, **more)
    pkt["ip_ttl"] = pkt["nw_ttl"] = 255 if type_ >= 133 else 64
    return pkt


def echo(src: str, dst: str, **more) -> dict:
    return icmp6(src, MACS[dst], IPS[dst], 128, **more)


def na(src: str, target: str, tll: str | None = None, dst_mac: str = "33:33:00:00:00:01",
       src_ip: str | None = None) -> dict:
    return icmp6(src, dst_mac, "ff02::1", 136, src_ip=src_ip, ipv6_nd_target=target,
                 ipv6_nd_tll=tll if tll is not None else MACS[src])


def ns(src: str, target: str, src_ip: str | None = None) -> dict:
    return icmp6(src, "33:33:ff:00:00:00", solicited_node(target), 135, src_ip=src_ip,
                 ipv6_nd_target=target, ipv6_nd_sll=MACS[src] if src_ip != "::" else "00:00:00:00:00:00")


def ports_reached(sim, pkt: dict, src: str) -> set[int]:
    return set(sim.run(pkt, OFPORT[src]).ports())


# --------------------------------------------------------------------------- port security

def test_own_v6_source_passes_wrong_source_or_mac_drops():
    v = V6()
    sim = v.sim()
    assert ports_reached(sim, echo("a", "b"), "a") == {2}
    assert ports_reached(sim, echo("a", "b", src_ip="2001:db8:1::99"), "a") == set()
    assert ports_reached(sim, dict(echo("a", "b"), eth_src=packet(eth_src=OTHER_MAC)["eth_src"]), "a") == set()
    # b spoofing a's address is dropped too
    assert ports_reached(sim, echo("b", "a", src_ip=IPS["a"]), "b") == set()


def test_stateful_v6_reply_and_default_group_remote_members():
    v = V6()
    sim = v.sim()
    assert ports_reached(sim, echo("a", "b"), "a") == {2}
    reply = icmp6("b", MACS["a"], IPS["a"], 129)
    assert ports_reached(sim, reply, "b") == {1}


def test_forged_router_advertisement_dropped():
    v = V6()
    ra = icmp6("a", "33:33:00:00:00:01", "ff02::1", 134, src_ip=lla(MACS["a"]))
    res = v.sim().run(ra, 1)
    assert not res.outputs and not res.punts
    assert res.trace[1].table == T.PORT_SEC and res.trace[1].flow.actions == (), res.dump_trace()


def test_na_guard_own_target_passes_foreign_target_or_mac_drops():
    v = V6()
    sim = v.sim()
    assert 2 in ports_reached(sim, na("a", IPS["a"]), "a")                     # its own address
    assert 2 in ports_reached(sim, na("a", lla(MACS["a"]), src_ip=lla(MACS["a"])), "a")  # its link-local
    assert 2 in ports_reached(sim, na("a", IPS["a"], tll="00:00:00:00:00:00", src_ip=lla(MACS["a"])), "a")
    assert ports_reached(sim, na("a", IPS["b"]), "a") == set()                 # b's address: forged
    assert ports_reached(sim, na("a", IPS["b"], src_ip=lla(MACS["a"])), "a") == set()
    assert ports_reached(sim, na("a", IPS["r1n1"]), "a") == set()              # the router's: forged
    assert ports_reached(sim, na("a", IPS["a"], tll=OTHER_MAC), "a") == set()  # its address, other MAC


def test_na_for_allowed_address_pair_passes():
    v = V6()
    v.t.update("port", v.ports["a"]["id"], allowed_address_pairs=[{"ip_address": "2001:db8:1::100"}])
    sim = v.sim()
    assert 2 in ports_reached(sim, na("a", "2001:db8:1::100", src_ip=lla(MACS["a"])), "a")
    assert 2 in ports_reached(sim, na("a", "2001:db8:1::100", src_ip="2001:db8:1::100"), "a")


def test_unspecified_source_only_for_dad_rs_and_mld():
    v = V6()
    sim = v.sim()
    dad = ns("a", IPS["a"], src_ip="::")
    res = sim.run(dad, 1)
    assert [p.userdata for p in res.punts] == [ndp.USERDATA_NDP], res.dump_trace()  # known: the app decides
    for t in (133, 143, 131):
        pkt = icmp6("a", "33:33:00:00:00:16", "ff02::16", t, src_ip="::")
        assert any(s.table == T.EGRESS_CT for s in sim.run(pkt, 1).trace), t
    for pkt in (echo("a", "b", src_ip="::"), na("a", IPS["a"], src_ip="::")):
        res = sim.run(pkt, 1)
        assert not res.outputs and not any(s.table == T.SERVICE for s in res.trace), res.dump_trace()


def test_dhcpv6_client_passes_server_dropped():
    v = V6()
    sim = v.sim()
    base = dict(eth_src=MACS["a"], eth_dst="33:33:00:01:00:02", eth_type=0x86DD, ip_proto=17,
                ipv6_src=lla(MACS["a"]), ipv6_dst="ff02::1:2")
    client = packet(udp_src=546, udp_dst=547, **base)
    assert any(s.table == T.SERVICE for s in sim.run(client, 1).trace)
    server = packet(udp_src=547, udp_dst=546, **base)
    res = sim.run(server, 1)
    assert not res.outputs and not any(s.table == T.SERVICE for s in res.trace)


def test_ipv4_only_port_keeps_its_flow_budget():
    v = V6()
    p = v.t.update("port", v.ports["a"]["id"], fixed_ips=[{"subnet_id": "x", "ip_address": "10.0.0.5"}])
    assert not [f for f in ps.port_flows(p) if ("eth_type", 0x86DD, None) in f.match]


# --------------------------------------------------------------------------- security groups

def test_ndp_and_mld_pass_a_deny_all_group():
    v = V6()
    empty = v.t.group("closed")
    v.t.update("port", v.ports["b"]["id"], security_groups=[empty["id"]])
    sim = v.sim()
    assert ports_reached(sim, echo("a", "b"), "a") == set()  # b accepts nothing
    assert 2 in ports_reached(sim, na("a", IPS["a"], dst_mac=MACS["b"]), "a")
    to_b = icmp6("a", MACS["b"], IPS["b"], 135, ipv6_nd_target=lla(MACS["b"]), ipv6_nd_sll=MACS["a"])
    assert 2 in ports_reached(sim, to_b, "a")  # unicast NUD probe for b's link-local
    mld_query = icmp6("a", MACS["b"], IPS["b"], 130)
    assert 2 in ports_reached(sim, mld_query, "a")


def test_icmpv6_type_code_rule_and_v6_prefix():
    v = V6()
    g = v.t.group("ping6")
    v.t.rule(g, "egress", "IPv6")
    v.t.rule(g, "ingress", "IPv6", protocol="ipv6-icmp", port_range_min=128, port_range_max=0,
             remote_ip_prefix="2001:db8:1::a/128")
    v.t.update("port", v.ports["b"]["id"], security_groups=[g["id"]])
    sim = v.sim()
    assert ports_reached(sim, echo("a", "b"), "a") == {2}
    assert ports_reached(sim, icmp6("a", MACS["b"], IPS["b"], 128, icmpv6_code=1), "a") == set()
    tcp6 = packet(eth_src=MACS["a"], eth_dst=MACS["b"], eth_type=0x86DD, ip_proto=6, ipv6_src=IPS["a"],
                  ipv6_dst=IPS["b"], tcp_src=40000, tcp_dst=22)
    assert ports_reached(sim, tcp6, "a") == set()
    v.t.update("port", v.ports["a"]["id"], allowed_address_pairs=[{"ip_address": "2001:db8:1::77"}])
    sim = v.sim()
    assert ports_reached(sim, echo("a", "b", src_ip="2001:db8:1::77"), "a") == set()  # outside the prefix


def test_v6_remote_group_excludes_non_members():
    v = V6()
    other = v.t.group("other")
    v.t.rule(other, "egress", "IPv6")
    v.t.update("port", v.ports["a"]["id"], security_groups=[other["id"]])
    sim = v.sim()
    assert ports_reached(sim, echo("a", "b"), "a") == set()  # a is no longer a member of b's default group


# --------------------------------------------------------------------------- NDP answers

def _ns_frame(src: str, target: str, src_ip: str | None = None) -> bytes:
    sip = src_ip or IPS[src]
    body = b"\x00" * 4 + ipaddress.IPv6Address(target).packed
    if sip != "::":
        body += bytes([1, 1]) + bytes.fromhex(MACS[src].replace(":", ""))
    return build_icmpv6(MACS[src], "33:33:ff:00:00:00", sip, solicited_node(target), 135, 0, body)


def _packet_in(v: V6, src: str, data: bytes, net: str) -> PacketIn:
    return PacketIn(1, "c1", OFPORT[src], int(T.SERVICE), 0,
                    {R.IN_PORT: v.ports[src]["_key"], R.NETWORK: v.nets[net]["_key"]}, data, ndp.USERDATA_NDP)


def test_ns_for_known_address_is_punted_and_answered():
    v = V6()
    res = v.sim().run(ns("a", IPS["b"]), 1)
    assert [p.userdata for p in res.punts] == [ndp.USERDATA_NDP] and not res.outputs, res.dump_trace()
    app = NdpApp()
    out = app.packet_in(v.t.view(), v.ctx(), _packet_in(v, "a", _ns_frame("a", IPS["b"]), "net1"))
    assert len(out) == 1 and out[0].ofport == 1
    reply = parse_icmpv6(out[0].data)
    assert reply is not None and reply.type == ICMPV6_NA and reply.ip_src == IPS["b"] and reply.ip_dst == IPS["a"]
    assert reply.eth_src == MACS["b"] and reply.eth_dst == MACS["a"] and reply.hop_limit == 255
    assert reply.body[0] & 0x40 and not reply.body[0] & 0x80  # solicited, not a router
    assert str(ipaddress.IPv6Address(reply.body[4:20])) == IPS["b"]
    assert reply.body[20:22] == b"\x02\x01" and reply.body[22:28] == bytes.fromhex(MACS["b"].replace(":", ""))


def test_router_link_local_and_global_answered_with_router_flag():
    v = V6()
    app = NdpApp()
    for target in (lla(MACS["r1n1"]), IPS["r1n1"]):
        assert v.sim().run(ns("a", target), 1).punts
        out = app.packet_in(v.t.view(), v.ctx(), _packet_in(v, "a", _ns_frame("a", target), "net1"))
        reply = parse_icmpv6(out[0].data)
        assert reply.eth_src == MACS["r1n1"] and reply.body[0] & 0x80, target


def test_dad_own_address_silent_foreign_address_all_nodes():
    v = V6()
    app = NdpApp()
    view = v.t.view()
    assert parse_neighbor_solicitation(_ns_frame("a", IPS["a"], "::")).is_dad
    assert app.packet_in(view, v.ctx(), _packet_in(v, "a", _ns_frame("a", IPS["a"], "::"), "net1")) == []
    assert app.stats["own_address"] == 1
    out = app.packet_in(view, v.ctx(), _packet_in(v, "a", _ns_frame("a", IPS["b"], "::"), "net1"))
    reply = parse_icmpv6(out[0].data)
    assert reply.ip_dst == "ff02::1" and reply.eth_dst == "33:33:00:00:00:01" and not reply.body[0] & 0x40


def test_unknown_target_floods_within_its_network_only():
    v = V6()
    res = v.sim().run(ns("a", lla(MACS["b"])), 1)  # a VM link-local: b answers for itself
    assert not res.punts and set(res.ports()) == {2}  # not c (net2) nor d (net3), not back to a


def test_malformed_ns_and_wrong_network_are_dropped_quietly():
    v = V6()
    app = NdpApp()
    frame = bytearray(_ns_frame("a", IPS["b"]))
    frame[-1] ^= 0xFF  # checksum no longer matches
    assert app.packet_in(v.t.view(), v.ctx(), _packet_in(v, "a", bytes(frame), "net1")) == []
    assert app.packet_in(v.t.view(), v.ctx(), _packet_in(v, "a", b"\x00" * 20, "net1")) == []
    # b's address asked on net3 (another tenant, same prefix) is not known there
    assert app.packet_in(v.t.view(), v.ctx(), _packet_in(v, "d", _ns_frame("d", IPS["b"]), "net3")) == []
    assert app.stats["malformed"] == 2 and app.stats["unknown"] == 1


# --------------------------------------------------------------------------- routing

def test_routed_v6_hop_limit_and_macs():
    v = V6()
    sim = v.sim()
    pkt = icmp6("a", MACS["r1n1"], IPS["c"], 128)
    res = sim.run(pkt, 1)
    out = res.outputs_to(3)
    assert len(out) == 1, res.dump_trace()
    got = out[0].packet
    assert got["ip_ttl"] == 63 and got["eth_src"] == packet(eth_src=MACS["r1n2"])["eth_src"]
    assert got["eth_dst"] == packet(eth_src=MACS["c"])["eth_src"]
    back = icmp6("c", MACS["r1n2"], IPS["a"], 129)
    assert sim.run(back, 3).ports() == [1]


def test_same_prefix_tenants_isolated():
    v = V6()
    sim = v.sim()
    # a sends to tenant p2's d address (same prefix as net1) via R1: R1 has no such neighbour
    res = sim.run(icmp6("a", MACS["r1n1"], IPS["d"], 128), 1)
    assert 4 not in res.ports()
    # and d reaching R1's MAC on its own network finds no gateway entry of R1 on net3
    res = sim.run(icmp6("d", MACS["r1n1"], IPS["c"], 128), 4)
    assert not res.ports()


def test_router_echo_answered_in_flows():
    v = V6()
    sim = v.sim()
    for dst in (IPS["r1n1"], lla(MACS["r1n1"])):
        src_ip = IPS["a"] if not dst.startswith("fe80") else lla(MACS["a"])
        res = sim.run(icmp6("a", MACS["r1n1"], dst, 128, src_ip=src_ip), 1)
        assert not res.punts and res.ports() == [1], res.dump_trace()
        reply = res.outputs[0].on_wire()
        assert reply["icmpv6_type"] == 129 and reply["ipv6_src"] == ip6(dst) and reply["ipv6_dst"] == ip6(src_ip)
        assert reply["eth_src"] == packet(eth_src=MACS["r1n1"])["eth_src"]
        assert reply["eth_dst"] == packet(eth_src=MACS["a"])["eth_src"]
    # R1's address on net2 answers from net1 too (as a Linux router); a VM's address is routed
    assert sim.run(icmp6("a", MACS["r1n1"], IPS["r1n2"], 128), 1).ports() == [1]
    assert sim.run(icmp6("a", MACS["r1n1"], IPS["c"], 128), 1).ports() == [3]
    # tenant p2's router address (same prefix, same ::1) is not R1's: d's echo reaches R2 only
    res = sim.run(icmp6("d", MACS["r2n3"], IPS["r2n3"], 128), 4)
    assert res.ports() == [4] and res.outputs[0].on_wire()["eth_src"] == packet(eth_src=MACS["r2n3"])["eth_src"]


def test_link_local_source_not_routed():
    v = V6()
    res = v.sim().run(icmp6("a", MACS["r1n1"], IPS["c"], 128, src_ip=lla(MACS["a"])), 1)
    assert not res.outputs


def test_v6_only_router_is_present_and_flows_are_owned_by_it():
    v = V6()
    flows = flows_of(v.t, v.local())
    from flows.routing import router_cookie
    mine = flows[router_cookie(v.routers["R1"])]
    assert any(f.table == T.L3_ROUTE for f in mine) and any(f.table == T.L3_NEIGHBOR for f in mine)


def _routed_pin(v: V6, src: str, dst_ip: str, table: T, hop_limit: int = 64, body: bytes = b"\x12\x34\x00\x01",
                icmp_type: int = 128) -> PacketIn:
    frame = build_icmpv6(MACS[src], MACS["r1n1"], IPS[src], dst_ip, icmp_type, 0, body, hop_limit)
    return PacketIn(1, "c1", OFPORT[src], int(table), 0, {R.IN_PORT: v.ports[src]["_key"],
                                                          R.NETWORK: v.nets["net1"]["_key"]}, frame, b"ndp")


def test_hop_limit_exhausted_gets_time_exceeded_from_the_router():
    v = V6()
    pkt = dict(icmp6("a", MACS["r1n1"], IPS["c"], 128), nw_ttl=1, ip_ttl=1)
    res = v.sim().run(pkt, 1)
    assert [(p.table, p.userdata) for p in res.punts] == [(T.L3_ROUTE, ndp.USERDATA_NDP)] and not res.outputs
    out = NdpApp().packet_in(v.t.view(), v.ctx(), _routed_pin(v, "a", IPS["c"], T.L3_ROUTE, hop_limit=1))
    assert len(out) == 1 and out[0].ofport == 1
    err = parse_icmpv6(out[0].data)
    assert (err.type, err.code) == (3, 0) and err.ip_src == IPS["r1n1"] and err.ip_dst == IPS["a"]
    assert err.eth_src == MACS["r1n1"] and err.eth_dst == MACS["a"]
    quoted = err.body[4:]
    assert quoted[0] >> 4 == 6 and str(ipaddress.IPv6Address(quoted[24:40])) == IPS["c"]


def test_no_route_and_unknown_neighbour_get_unreachable():
    v = V6()
    sim = v.sim()
    res = sim.run(icmp6("a", MACS["r1n1"], "2001:db8:99::1", 128), 1)
    assert [p.table for p in res.punts] == [T.L3_ROUTE] and not res.outputs, res.dump_trace()
    res = sim.run(icmp6("a", MACS["r1n1"], "2001:db8:2::99", 128), 1)
    assert [p.table for p in res.punts] == [T.L3_NEIGHBOR] and not res.outputs, res.dump_trace()
    app = NdpApp()
    err = parse_icmpv6(app.packet_in(v.t.view(), v.ctx(), _routed_pin(v, "a", "2001:db8:99::1", T.L3_ROUTE))[0].data)
    assert (err.type, err.code) == (1, 0)
    err = parse_icmpv6(app.packet_in(v.t.view(), v.ctx(), _routed_pin(v, "a", "2001:db8:2::99", T.L3_NEIGHBOR))[0].data)
    assert (err.type, err.code) == (1, 3) and err.ip_src == IPS["r1n1"]
    # never an error about an error (RFC 4443 2.4(e))
    assert app.packet_in(v.t.view(), v.ctx(), _routed_pin(v, "a", "2001:db8:99::1", T.L3_ROUTE, icmp_type=1,
                                                        body=b"\x00" * 8)) == []
    assert app.stats["error_suppressed"] == 1


def test_router_own_address_is_not_routed_on():
    v = V6()
    tcp6 = packet(eth_src=MACS["a"], eth_dst=MACS["r1n1"], eth_type=0x86DD, ip_proto=6, ipv6_src=IPS["a"],
                  ipv6_dst=IPS["r1n2"], tcp_src=40000, tcp_dst=22, nw_ttl=64)
    res = v.sim().run(tcp6, 1)
    assert not res.outputs and not res.punts, res.dump_trace()


# --------------------------------------------------------------------------- robustness


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=200), cut=st.integers(0, 120), flip=st.integers(0, 119),
       table=st.sampled_from([T.SERVICE, T.L3_ROUTE, T.L3_NEIGHBOR]))
def test_garbage_and_mutated_frames_never_raise(data, cut, flip, table):
    v = _FUZZ_TOPO
    app = NdpApp(rate=1e9, burst=1e9)
    good = bytearray(_ns_frame("a", IPS["b"]))
    good[flip % len(good)] ^= 0x5A
    for frame in (data, bytes(good), bytes(good[:cut])):
        pin = PacketIn(1, "c1", 1, int(table), 0, {R.IN_PORT: v.ports["a"]["_key"],
                                                   R.NETWORK: v.nets["net1"]["_key"]}, frame, b"ndp")
        app.packet_in(_FUZZ_VIEW, v.ctx(), pin)
    assert app.stats["error"] == 0


_FUZZ_TOPO = V6()
_FUZZ_VIEW = _FUZZ_TOPO.t.view()
