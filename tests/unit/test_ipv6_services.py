"""IPv6 RA and DHCPv6 from the controller: frame builders/parsers, the apps' answers, the punt
flows in the whole compiled pipeline (simulator), the periodic RA schedule, and garbage input."""
from __future__ import annotations

import random
import uuid

import pytest

from apps import packets as P
from apps.base import PacketIn
from apps.dhcpv6 import Dhcpv6App, server_duid, server_mac
from apps.ipv6_ra import Ipv6RaApp
from controller.dispatch import Dispatcher
from flows import ipv6_services as v6
from flows.simulator import packet
from flows.tables import R, T
from tests.unit.l2topo import Topo, ctx, simulator
from topology.model.ipam import eui64_address, link_local_address

VM_MAC, RTR_MAC = "fa:16:3e:00:00:0a", "fa:16:3e:00:00:01"
VM_LL = link_local_address(VM_MAC)
RTR_LL = link_local_address(RTR_MAC)
SLAAC, STATEFUL, STATELESS = "2001:db8:1::/64", "2001:db8:2::/64", "2001:db8:3::/64"
CLIENT_DUID = b"\x00\x01\x00\x01\x2a\x2b\x2c\x2d" + bytes.fromhex("fa163e00000a")


def _subnet(t: Topo, net: dict, cidr: str, mode: str | None, ra: bool = True, dns=()) -> dict:
    return t._put("subnet", {"id": str(uuid.uuid4()), "network_id": net["id"], "cidr": cidr, "ip_version": 6,
                             "gateway_ip": cidr.replace("::/64", "::1"), "enable_dhcp": True,
                             "ipv6_ra_mode": mode if ra else None, "ipv6_address_mode": mode,
                             "dns_nameservers": list(dns), "host_routes": [], "allocation_pools": []})


@pytest.fixture
def topo():
    t = Topo()
    t.chassis("c1", "192.0.2.1")
    net = t.network("n1")
    s1 = _subnet(t, net, SLAAC, "slaac", dns=["2001:4860:4860::8888"])
    s2 = _subnet(t, net, STATEFUL, "dhcpv6-stateful")
    s3 = _subnet(t, net, STATELESS, "dhcpv6-stateless", ra=False, dns=["2001:db8::53"])
    vm = t.port(net, VM_MAC, "10.0.0.3", "c1")
    t.update("port", vm["id"], fixed_ips=[
        {"subnet_id": s1["id"], "ip_address": eui64_address(SLAAC, VM_MAC)},
        {"subnet_id": s2["id"], "ip_address": "2001:db8:2::5"},
        {"subnet_id": s3["id"], "ip_address": eui64_address(STATELESS, VM_MAC)}])
    rtr = t.port(net, RTR_MAC, "10.0.0.1")
    t.update("port", rtr["id"], device_owner="network:router_interface", device_id="r1", fixed_ips=[
        {"subnet_id": s1["id"], "ip_address": "2001:db8:1::1"},
        {"subnet_id": s2["id"], "ip_address": "2001:db8:2::1"}])
    other = t.network("n2")  # IPv6 without a router: no RA, no DHCPv6
    _subnet(t, other, "2001:db8:9::/64", "slaac")
    lonely = t.port(other, "fa:16:3e:00:00:0b", "10.9.0.3", "c1")
    view = t.view()
    c = ctx("c1", {vm["id"]: 1, lonely["id"]: 2}, "192.0.2.1")
    return t, view, c, {"net": net, "vm": t.data["port"][vm["id"]], "other": other, "lonely": lonely,
                        "s1": s1, "s2": s2, "s3": s3}


def rs_frame(src_mac: str = VM_MAC, src: str = VM_LL, slla: bool = True) -> bytes:
    body = bytearray([P.ICMPV6_RS, 0, 0, 0, 0, 0, 0, 0])
    if slla and src != "::":
        body += bytes([1, 1]) + bytes.fromhex(src_mac.replace(":", ""))
    body[2:4] = P.ipv6_upper_checksum(src, "ff02::2", 58, bytes(body)).to_bytes(2, "big")
    return P.build_ipv6_frame(eth_src=src_mac, eth_dst="33:33:00:00:00:02", src=src, dst="ff02::2",
                              next_header=58, payload=bytes(body))


def dhcp6_frame(msg_type: int, *opts: bytes, src_mac: str = VM_MAC, xid: int = 0xABCDEF) -> bytes:
    msg = bytes([msg_type]) + xid.to_bytes(3, "big") + b"".join(opts)
    udp = (546).to_bytes(2, "big") + (547).to_bytes(2, "big") + (8 + len(msg)).to_bytes(2, "big")
    csum = P.ipv6_upper_checksum(VM_LL, "ff02::1:2", 17, udp + b"\x00\x00" + msg)
    return P.build_ipv6_frame(eth_src=src_mac, eth_dst="33:33:00:01:00:02", src=VM_LL, dst="ff02::1:2",
                              next_header=17, payload=udp + csum.to_bytes(2, "big") + msg, hop_limit=1)


def pin(data: bytes, port: dict, net: dict, userdata: bytes) -> PacketIn:
    return PacketIn(datapath_id=1, chassis="c1", in_ofport=1, table=int(T.SERVICE), cookie=0,
                    registers={R.IN_PORT: port["_key"], R.NETWORK: net["_key"]}, data=data, userdata=userdata)


CID = P.dhcpv6_option(P.D6O_CLIENTID, CLIENT_DUID)
ORO = P.dhcpv6_option(P.D6O_ORO, (23).to_bytes(2, "big") + (24).to_bytes(2, "big"))
IA = P.encode_ia_na(0x0E000001, 3600, 5400, b"")


def opts_of(frame: bytes) -> tuple[P.Ipv6Frame, int, int, dict[int, list[bytes]]]:
    parsed = P.parse_dhcpv6_server_message(frame)
    assert parsed is not None
    f, mt, xid, opts = parsed
    by: dict[int, list[bytes]] = {}
    for c, v in opts:
        by.setdefault(c, []).append(v)
    return f, mt, xid, by


def ia_addresses(ia: bytes) -> list[tuple[str, int, int]]:
    sub = P.parse_dhcpv6_options(ia[12:]) or []
    return [(str(__import__("ipaddress").IPv6Address(v[:16])), int.from_bytes(v[16:20], "big"),
             int.from_bytes(v[20:24], "big")) for c, v in sub if c == P.D6O_IAADDR]


# ---------------------------------------------------------------- frames
def test_ra_roundtrip_and_checksum():
    ra = P.RouterAdvertisement(managed=True, other=False, router_lifetime=300, mtu=1450,
                               prefixes=(P.RaPrefix(SLAAC, True, True), P.RaPrefix(STATEFUL, True, False)),
                               source_lladdr=RTR_MAC, dns_servers=("2001:db8::53",), dns_lifetime=200)
    frame = P.build_router_advertisement(src_mac=RTR_MAC, src_ip=RTR_LL, eth_dst=P.ALL_NODES_MAC,
                                         dst_ip=P.ALL_NODES, ra=ra)
    f, back = P.parse_router_advertisement(frame)
    assert back == ra
    assert (f.src, f.dst, f.hop_limit, f.eth_src) == (RTR_LL, "ff02::1", 255, RTR_MAC)
    broken = bytearray(frame)
    broken[-1] ^= 1
    assert P.parse_router_advertisement(bytes(broken)) is None


def test_rs_parse_validates():
    rs = P.parse_router_solicitation(rs_frame())
    assert rs == P.RouterSolicitation(VM_MAC, VM_LL, VM_MAC)
    assert P.parse_router_solicitation(rs_frame(src="::")).src == "::"
    bad_hop = bytearray(rs_frame())
    bad_hop[21] = 64  # hop limit must be 255
    assert P.parse_router_solicitation(bytes(bad_hop)) is None


def test_domain_list_roundtrip():
    raw = P.encode_domain_list(["openstacklocal", "example.org."])
    assert raw == b"\x0eopenstacklocal\x00\x07example\x03org\x00"
    assert P.decode_domain_list(raw) == ["openstacklocal", "example.org"]


def test_dhcpv6_parse_solicit():
    req = P.parse_dhcpv6(dhcp6_frame(P.DH6_SOLICIT, CID, ORO, IA))
    assert req is not None and req.msg_type == 1 and req.xid == 0xABCDEF
    assert req.client_id == CLIENT_DUID and req.oro == (23, 24) and req.ia_na[0].iaid == 0x0E000001


# ---------------------------------------------------------------- RA app
def test_solicitation_answered_with_prefixes_flags_mtu_from_link_local(topo):
    _, view, c, o = topo
    app = Ipv6RaApp()
    (out,) = app.packet_in(view, c, pin(rs_frame(), o["vm"], o["net"], b"ra"))
    assert out.ofport == 1
    f, ra = P.parse_router_advertisement(out.data)
    assert (f.eth_src, f.src) == (RTR_MAC, RTR_LL) == (RTR_MAC, "fe80::f816:3eff:fe00:1")
    assert (f.eth_dst, f.dst) == (VM_MAC, VM_LL)  # unicast to the solicitor
    assert ra.managed and not ra.other  # the stateful subnet on this router port
    assert ra.prefixes == (P.RaPrefix(SLAAC, True, True), P.RaPrefix(STATEFUL, True, False))
    assert ra.mtu == 1450 and ra.router_lifetime == 300 and ra.source_lladdr == RTR_MAC
    assert ra.dns_servers == ("2001:4860:4860::8888",)
    # from the unspecified address: to all nodes
    (out,) = app.packet_in(view, c, pin(rs_frame(src="::"), o["vm"], o["net"], b"ra"))
    f, _ = P.parse_router_advertisement(out.data)
    assert (f.eth_dst, f.dst) == (P.ALL_NODES_MAC, "ff02::1")


def test_no_router_no_answer_and_garbage_counted(topo):
    _, view, c, o = topo
    app = Ipv6RaApp()
    assert app.packet_in(view, c, pin(rs_frame("fa:16:3e:00:00:0b"), o["lonely"], o["other"], b"ra")) == []
    assert app.stats["no_router"] == 1
    assert app.packet_in(view, c, pin(b"\x00" * 70, o["vm"], o["net"], b"ra")) == []
    assert app.stats["malformed"] == 1


def test_periodic_unsolicited_ras_are_bounded(topo):
    _, view, c, o = topo
    app = Ipv6RaApp(min_interval=30, max_interval=100, rng=random.Random(7))
    first = app.periodic(view, c, 1000.0)
    assert [x.ofport for x in first] == [1]  # only the network with an advertising router
    f, ra = P.parse_router_advertisement(first[0].data)
    assert (f.dst, f.eth_dst, f.src) == ("ff02::1", "33:33:00:00:00:01", RTR_LL)
    sent = [1000.0]
    now = 1000.0
    while now < 2000.0:
        now += 1.0
        if app.periodic(view, c, now):
            sent.append(now)
    gaps = [b - a for a, b in zip(sent, sent[1:])]
    assert gaps and gaps[0] <= 16.0 and all(30.0 <= g <= 101.0 for g in gaps[1:]), gaps


def test_dispatcher_tick_sends_only_as_master(topo):
    _, view, c, _ = topo

    class DP:
        def __init__(self):
            self.sent = []

        def send(self, data):
            self.sent.append(data)

    class E:
        dpid, ctx, datapath, packet_outs = 1, c, DP(), 0

    class Core:
        packet_apps = {b"ra": Ipv6RaApp()}
        view_lock = __import__("threading").RLock()
        registry = type("Reg", (), {"all": staticmethod(lambda: [E])})
        master = False

        def is_master(self, dpid):
            return self.master

    core = Core()
    core.view = view
    d = Dispatcher(core)
    assert d.tick(10.0) == 0 and E.datapath.sent == []
    core.master = True
    assert d.tick(11.0) == 1 and len(E.datapath.sent) == 1


# ---------------------------------------------------------------- DHCPv6 app
def _ask(app, view, c, o, frame):
    out = app.packet_in(view, c, pin(frame, o["vm"], o["net"], b"dhcp6"))
    return out


def test_stateful_solicit_request_renew_rebind(topo):
    _, view, c, o = topo
    app = Dhcpv6App()
    duid = server_duid(o["net"]["id"])
    (adv,) = _ask(app, view, c, o, dhcp6_frame(P.DH6_SOLICIT, CID, ORO, IA))
    f, mt, xid, by = opts_of(adv.data)
    assert mt == P.DH6_ADVERTISE and xid == 0xABCDEF and adv.ofport == 1
    assert by[P.D6O_SERVERID] == [duid] and by[P.D6O_CLIENTID] == [CLIENT_DUID]
    assert f.src == link_local_address(server_mac(o["net"]["id"])) and f.dst == VM_LL and f.eth_dst == VM_MAC
    (ia,) = by[P.D6O_IA_NA]
    assert int.from_bytes(ia[:4], "big") == 0x0E000001
    assert int.from_bytes(ia[4:8], "big") == 43200 and int.from_bytes(ia[8:12], "big") == 69120
    assert ia_addresses(ia) == [("2001:db8:2::5", 86400, 86400)]
    assert P.decode_domain_list(by[P.D6O_DOMAIN_LIST][0]) == ["openstacklocal"]
    sid = P.dhcpv6_option(P.D6O_SERVERID, duid)
    for mt_in, extra in ((P.DH6_REQUEST, sid), (P.DH6_RENEW, sid), (P.DH6_REBIND, b"")):
        (rep,) = _ask(app, view, c, o, dhcp6_frame(mt_in, CID, extra, IA))
        _, mt, _, by = opts_of(rep.data)
        assert mt == P.DH6_REPLY and ia_addresses(by[P.D6O_IA_NA][0])[0][0] == "2001:db8:2::5"
    # a renew naming another server, a request naming none, a solicit naming one: silence
    other = P.dhcpv6_option(P.D6O_SERVERID, b"\x00\x03\x00\x01" + b"\x01" * 6)
    assert _ask(app, view, c, o, dhcp6_frame(P.DH6_RENEW, CID, other, IA)) == []
    assert _ask(app, view, c, o, dhcp6_frame(P.DH6_REQUEST, CID, IA)) == []
    assert _ask(app, view, c, o, dhcp6_frame(P.DH6_SOLICIT, CID, sid, IA)) == []


def test_renew_of_a_stale_address_gets_zero_lifetimes(topo):
    _, view, c, o = topo
    app = Dhcpv6App()
    sid = P.dhcpv6_option(P.D6O_SERVERID, server_duid(o["net"]["id"]))
    stale = P.encode_ia_na(7, 0, 0, P.encode_iaaddr("2001:db8:2::99", 100, 200))
    (rep,) = _ask(app, view, c, o, dhcp6_frame(P.DH6_RENEW, CID, sid, stale))
    _, _, _, by = opts_of(rep.data)
    assert ia_addresses(by[P.D6O_IA_NA][0]) == [("2001:db8:2::5", 86400, 86400), ("2001:db8:2::99", 0, 0)]


def test_information_request_release_confirm(topo):
    _, view, c, o = topo
    app = Dhcpv6App(dns_domain="example.org")
    (rep,) = _ask(app, view, c, o, dhcp6_frame(P.DH6_INFORMATION_REQUEST, CID, ORO))
    _, mt, _, by = opts_of(rep.data)
    assert mt == P.DH6_REPLY and P.D6O_IA_NA not in by
    assert by[P.D6O_DNS_SERVERS] == [__import__("ipaddress").IPv6Address("2001:db8::53").packed]
    assert P.decode_domain_list(by[P.D6O_DOMAIN_LIST][0]) == ["example.org"]
    sid = P.dhcpv6_option(P.D6O_SERVERID, server_duid(o["net"]["id"]))
    held = P.encode_ia_na(1, 0, 0, P.encode_iaaddr("2001:db8:2::5", 0, 0))
    (rep,) = _ask(app, view, c, o, dhcp6_frame(P.DH6_RELEASE, CID, sid, held))
    assert int.from_bytes(opts_of(rep.data)[3][P.D6O_STATUS_CODE][0][:2], "big") == P.STATUS_SUCCESS
    (rep,) = _ask(app, view, c, o, dhcp6_frame(P.DH6_CONFIRM, CID, held))
    assert int.from_bytes(opts_of(rep.data)[3][P.D6O_STATUS_CODE][0][:2], "big") == P.STATUS_SUCCESS
    moved = P.encode_ia_na(1, 0, 0, P.encode_iaaddr("2001:db8:77::5", 0, 0))
    (rep,) = _ask(app, view, c, o, dhcp6_frame(P.DH6_CONFIRM, CID, moved))
    assert int.from_bytes(opts_of(rep.data)[3][P.D6O_STATUS_CODE][0][:2], "big") == P.STATUS_NOT_ON_LINK


def test_spoofed_mac_and_no_dhcpv6_network_get_nothing(topo):
    _, view, c, o = topo
    app = Dhcpv6App()
    assert _ask(app, view, c, o, dhcp6_frame(P.DH6_SOLICIT, CID, IA, src_mac="fa:16:3e:00:00:99")) == []
    assert app.stats["unknown_client"] == 1
    lonely = app.packet_in(view, c, pin(dhcp6_frame(P.DH6_SOLICIT, CID, IA, src_mac="fa:16:3e:00:00:0b"),
                                        o["lonely"], o["other"], b"dhcp6"))
    assert lonely == [] and app.stats["no_dhcp"] == 1


# ---------------------------------------------------------------- flows
def test_punt_flows_in_the_compiled_pipeline(topo):
    _, view, c, o = topo
    sim = simulator(view, c)
    rs = packet(in_port=1, eth_src=VM_MAC, eth_dst="33:33:00:00:00:02", eth_type=0x86DD, ip_proto=58,
                ipv6_src=VM_LL, ipv6_dst="ff02::2", icmpv6_type=133, icmpv6_code=0)
    res = sim.run(rs, in_port=1)
    assert [p.userdata for p in res.punts] == [b"ra"], res.dump_trace()
    assert res.punts[0].packet[R.IN_PORT] == o["vm"]["_key"]
    solicit = packet(eth_src=VM_MAC, eth_dst="33:33:00:01:00:02", eth_type=0x86DD, ip_proto=17,
                     ipv6_src=VM_LL, ipv6_dst="ff02::1:2", udp_src=546, udp_dst=547)
    res = sim.run(solicit, in_port=1)
    assert [p.userdata for p in res.punts] == [b"dhcp6"], res.dump_trace()
    # the network without a router/DHCPv6 subnet has neither punt
    for pkt in (dict(rs, eth_src="fa:16:3e:00:00:0b"), dict(solicit, eth_src="fa:16:3e:00:00:0b")):
        assert sim.run(pkt, in_port=2).punts == []


def test_flows_follow_the_router_interface(topo):
    t, view, c, o = topo
    key = o["net"]["_key"]
    owner = v6.cookie(v6.Owner.NETWORK, key)
    assert len(v6.compile_owner(view, c, owner, "ra")) == 1
    for p in list(t.data["port"].values()):
        if p["device_owner"] == "network:router_interface":
            t.delete("port", p["id"])
    assert v6.compile_owner(t.view(), c, owner, "ra") == []
    assert len(v6.compile_owner(t.view(), c, owner, "dhcp6")) == 1  # DHCPv6 needs no router


# ---------------------------------------------------------------- garbage
def test_fuzzed_frames_never_raise(topo):
    _, view, c, o = topo
    rng = random.Random(12)
    ra, d6 = Ipv6RaApp(rate=1e9, burst=1e9), Dhcpv6App(rate=1e9, burst=1e9)
    seeds = [rs_frame(), rs_frame(src="::"), dhcp6_frame(P.DH6_SOLICIT, CID, ORO, IA),
             dhcp6_frame(P.DH6_INFORMATION_REQUEST, CID, ORO),
             dhcp6_frame(P.DH6_RENEW, CID, P.dhcpv6_option(2, server_duid(o["net"]["id"])), IA)]
    for _ in range(3000):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 6)):
            how = rng.random()
            if how < 0.5 and data:
                data[rng.randrange(len(data))] = rng.randrange(256)
            elif how < 0.75 and data:
                del data[rng.randrange(len(data)):]
            else:
                data += bytes(rng.randrange(256) for _ in range(rng.randint(1, 40)))
        raw = bytes(data)
        for parse in (P.parse_ipv6, P.parse_router_solicitation, P.parse_dhcpv6, P.parse_router_advertisement,
                      P.parse_dhcpv6_server_message):
            parse(raw)
        ra.packet_in(view, c, pin(raw, o["vm"], o["net"], b"ra"))
        d6.packet_in(view, c, pin(raw, o["vm"], o["net"], b"dhcp6"))
    assert ra.stats["error"] == 0 and d6.stats["error"] == 0, (ra.stats, d6.stats)


def test_subnet_without_modes_is_served_stateful_like_neutrons_dnsmasq(topo):
    t, _, c, o = topo
    plain = _subnet(t, o["other"], "2001:db8:8::/64", None)
    t.update("port", o["lonely"]["id"], fixed_ips=[{"subnet_id": plain["id"], "ip_address": "2001:db8:8::7"}])
    view = t.view()
    owner = v6.cookie(v6.Owner.NETWORK, o["other"]["_key"])
    assert len(v6.compile_owner(view, c, owner, "dhcp6")) == 1 and v6.compile_owner(view, c, owner, "ra") == []
    out = Dhcpv6App().packet_in(view, c, pin(dhcp6_frame(P.DH6_SOLICIT, CID, IA, src_mac="fa:16:3e:00:00:0b"),
                                             t.data["port"][o["lonely"]["id"]], o["other"], b"dhcp6"))
    _, mt, _, by = opts_of(out[0].data)
    assert mt == P.DH6_ADVERTISE and ia_addresses(by[P.D6O_IA_NA][0])[0][0] == "2001:db8:8::7"
