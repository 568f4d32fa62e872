"""Port security (anti-spoofing) in T.PORT_SEC: a port may only send from its own addresses.

Why here and not in the security groups: spoofing must be stopped before anything trusts the
source address — the ARP/DHCP punts in T.SERVICE and the remote-group matches of other ports
both rely on "ipv4_src is really that port".

Per secured port (owner = the port's cookie), priority high → low:
  P_DHCP_CLIENT  DHCP client requests (udp 68→67) from the port's MAC, any source IP (0.0.0.0 too)
  P_ND_ALLOW     IPv6 only: neighbour advertisements (136) whose nd_target is one of the port's
                 own addresses (fixed IPs, allowed address pairs, its link-local), sent from that
                 address or the pair MAC's link-local, with a target link-layer option naming the
                 pair's MAC (or none: Linux omits it answering a unicast probe) — the NA guard
  P_UNSPEC       IPv6 only: source :: from the port's MAC for what RFC 4861/3590 send before an
                 address is usable: NS (DAD, 135), RS (133), MLD reports (131, 132, 143)
  P_ALLOW        eth_src + IPv4 source, and ARP with arp_sha + arp_spa, for every allowed
                 (MAC, IP-or-CIDR) pair: fixed IPs with the port MAC, allowed_address_pairs with
                 their own MAC or the port's; IPv6 likewise plus the EUI-64 link-local of each
                 such MAC, if the port has IPv6 addresses (an IPv4-only port sends no IPv6)
  P_PORT_DROP    reg6=key → drop: everything else the port sends
Chassis-wide (owner = SECURITY_BASE cookie): DHCP server replies (udp 67→68, DHCPv6 547→546) and
IPv6 router advertisements (134: RA guard) from any VM port are dropped above everything a port
allows; neighbour advertisements (136) not allowed by P_ND_ALLOW drop below it (NA guard). RS,
NS, MLD and DHCPv6 client traffic (546→547) pass from the port's allowed sources (Neutron's
openvswitch_firewall allows the same: ICMPv6 MLD query/RS/NS from its addresses, NA only for a
target it holds, and drops RA and DHCPv6 server traffic from instances).
A port with port security off (or a trusted `network:*` port) instead gets one P_BYPASS flow
that jumps over the chassis-wide drops; the security-group tables have its bypass too, in their
conntrack stages as well (flows.security_groups.ct_bypass_flows: its packets never enter ct()).
"""
from __future__ import annotations

import functools
import ipaddress
from typing import Any, Iterable

from flows.fields import mac as mac_int
from flows.fields import parse_net
from flows.flow import Flow, GotoTable, flow
from flows.tables import R, T, Owner, cookie
from flows.view_helpers import port_cookie

Record = dict[str, Any]

ETH_IP = 0x0800
ETH_ARP = 0x0806
ETH_IPV6 = 0x86DD
PROTO_UDP = 17
PROTO_ICMPV6 = 58
ICMPV6_RS = 133
ICMPV6_RA = 134
ICMPV6_NS = 135
ICMPV6_NA = 136
MLD_REPORT_TYPES = (131, 132, 143)  # MLDv1 report / done, MLDv2 report (may come from ::, RFC 3590)
UNSPECIFIED_SOURCE_TYPES = (ICMPV6_RS, ICMPV6_NS) + MLD_REPORT_TYPES
DHCP6_CLIENT_PORT, DHCP6_SERVER_PORT = 546, 547

P_BYPASS = 300
P_GLOBAL_DROP = 200
P_DHCP_CLIENT = 150
P_ND_ALLOW = 120
P_NA_GUARD = 110
P_UNSPEC = 105
P_ALLOW = 100
P_PORT_DROP = 10

# Cookie key (under Owner.PIPELINE) of the chassis-wide security flows (this module's and the
# security groups' base flows). Chosen away from 0, which the base pipeline uses.
SECURITY_BASE_KEY = 0x5EC
SECURITY_BASE = cookie(Owner.PIPELINE, SECURITY_BASE_KEY)

TRUSTED_OWNER_PREFIX = "network:"

# The actions of every allowed flow, one shared tuple (immutable; fewer objects for the GC).
_GO_SERVICE = (GotoTable(T.SERVICE),)


def is_secured(port: Record) -> bool:
    """Port security applies: enabled (the default) and not an infrastructure port (Neutron skips those)."""
    if (port.get("device_owner") or "").startswith(TRUSTED_OWNER_PREFIX):
        return False
    return port.get("port_security_enabled", True) is not False


def base_flows() -> list[Flow]:
    """Chassis-wide PORT_SEC drops: a VM never acts as DHCP(v6) server or IPv6 router, and
    never advertises a neighbour address that P_ND_ALLOW does not list as its own."""
    ck = SECURITY_BASE
    return [
        flow(T.PORT_SEC, P_GLOBAL_DROP, ck, [],
             match=dict(eth_type=ETH_IP, ip_proto=PROTO_UDP, udp_src=67, udp_dst=68)),
        flow(T.PORT_SEC, P_GLOBAL_DROP, ck, [],
             match=dict(eth_type=ETH_IPV6, ip_proto=PROTO_UDP, udp_src=DHCP6_SERVER_PORT,
                        udp_dst=DHCP6_CLIENT_PORT)),
        flow(T.PORT_SEC, P_GLOBAL_DROP, ck, [],
             match=dict(eth_type=ETH_IPV6, ip_proto=PROTO_ICMPV6, icmpv6_type=ICMPV6_RA)),
        flow(T.PORT_SEC, P_NA_GUARD, ck, [],
             match=dict(eth_type=ETH_IPV6, ip_proto=PROTO_ICMPV6, icmpv6_type=ICMPV6_NA)),
    ]


def allowed_pairs(port: Record) -> list[tuple[int, ipaddress.IPv4Network | ipaddress.IPv6Network]]:
    """(MAC, network) pairs the port may send from: fixed IPs + allowed address pairs."""
    own = mac_int(port["mac_address"])
    pairs: list[tuple[int, Any]] = []
    for fip in port.get("fixed_ips") or []:
        pairs.append((own, _network(fip["ip_address"])))
    for aap in port.get("allowed_address_pairs") or []:
        pair_mac = mac_int(aap["mac_address"]) if aap.get("mac_address") else own
        pairs.append((pair_mac, _network(aap["ip_address"])))
    return pairs


@functools.lru_cache(maxsize=1 << 16)
def _network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """ip_network(text, strict=False), cached: ipaddress objects are immutable values, and parsing
    (≈ 10 µs) was a tenth of a port's compile. ValueError (not cached) as ip_network; TypeError
    for an unhashable value (the app treats both as a malformed port)."""
    return parse_net(text)


def _masked(field: str, net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> dict:
    """Match on `net` in `field`; a /0 matches anything, so it adds no field at all."""
    if net.prefixlen == 0:
        return {}
    return {field: (int(net.network_address), int(net.netmask))}


def link_local(mac_value: int) -> ipaddress.IPv6Network:
    """EUI-64 link-local address of a MAC (what the VM's kernel configures)."""
    b = mac_value.to_bytes(6, "big")
    eui = bytes([b[0] ^ 0x02]) + b[1:3] + b"\xff\xfe" + b[3:]
    return ipaddress.IPv6Network((int.from_bytes(b"\xfe\x80" + b"\x00" * 6 + eui, "big"), 128))


def bypass_flows(port: Record) -> list[Flow]:
    """Port security off: jump over the chassis-wide drops (the SG tables add their own bypass)."""
    return [flow(T.PORT_SEC, P_BYPASS, port_cookie(port), _GO_SERVICE,
                 match={R.IN_PORT: int(port["_key"])})]


def port_flows(port: Record) -> list[Flow]:
    """PORT_SEC flows of one local port (owner: the port)."""
    if not is_secured(port):
        return bypass_flows(port)
    key, ck = int(port["_key"]), port_cookie(port)
    own = mac_int(port["mac_address"])
    go = _GO_SERVICE
    out: set[Flow] = {
        flow(T.PORT_SEC, P_DHCP_CLIENT, ck, go,
             match={R.IN_PORT: key, "eth_src": own, "eth_type": ETH_IP, "ip_proto": PROTO_UDP,
                    "udp_src": 68, "udp_dst": 67}),
        flow(T.PORT_SEC, P_PORT_DROP, ck, [], match={R.IN_PORT: key}),
    }
    pairs = allowed_pairs(port)
    v6_macs = sorted({m for m, net in pairs if net.version == 6})
    for m in v6_macs:  # the EUI-64 link-local of every MAC allowed to send IPv6 (NDP uses it)
        pairs.append((m, link_local(m)))
    for m in v6_macs:  # the unspecified source, for DAD / RS / MLD only
        for t in UNSPECIFIED_SOURCE_TYPES:
            out.add(flow(T.PORT_SEC, P_UNSPEC, ck, go,
                         match={R.IN_PORT: key, "eth_src": m, "eth_type": ETH_IPV6, "ipv6_src": 0,
                                "ip_proto": PROTO_ICMPV6, "icmpv6_type": t}))
    out |= na_allow_flows(key, ck, [(m, net) for m, net in pairs if net.version == 6])
    for m, net in pairs:
        base = {R.IN_PORT: key, "eth_src": m}
        if net.version == 4:
            out.add(flow(T.PORT_SEC, P_ALLOW, ck, go,
                         match={**base, "eth_type": ETH_IP, **_masked("ipv4_src", net)}))
            out.add(flow(T.PORT_SEC, P_ALLOW, ck, go,
                         match={**base, "eth_type": ETH_ARP, "arp_sha": m, **_masked("arp_spa", net)}))
        else:
            out.add(flow(T.PORT_SEC, P_ALLOW, ck, go,
                         match={**base, "eth_type": ETH_IPV6, **_masked("ipv6_src", net)}))
    return sorted(out, key=lambda f: (f.table, -f.priority, f.match))


def na_allow_flows(key: int, ck: int, pairs: list[tuple[int, ipaddress.IPv6Network]]) -> set[Flow]:
    """NA guard: a port may advertise (136) only a target it holds — per (MAC, address) pair, from
    that address or the MAC's link-local, naming the pair's MAC or no MAC (O(pairs) flows)."""
    out: set[Flow] = set()
    go = _GO_SERVICE
    for m, net in pairs:
        sources = {net, link_local(m)}
        for src in sources:
            for tll in (m, 0):
                out.add(flow(T.PORT_SEC, P_ND_ALLOW, ck, go,
                             match={R.IN_PORT: key, "eth_src": m, "eth_type": ETH_IPV6,
                                    "ip_proto": PROTO_ICMPV6, "icmpv6_type": ICMPV6_NA,
                                    **_masked("ipv6_src", src), **_masked("ipv6_nd_target", net),
                                    "ipv6_nd_tll": tll}))
    return out


def flows_for_ports(ports: Iterable[Record]) -> list[Flow]:
    out: list[Flow] = []
    for p in ports:
        out.extend(port_flows(p))
    return out
