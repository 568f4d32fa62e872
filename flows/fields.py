"""Match/set-field catalogue: every field the pipeline may use, its width and how to print it.

This is THE width table: flows.flow checks every match value/mask and every action argument
that names a field (set_field, move, learn, ct zone register) against `bits` when the value is
built, so an out-of-range value fails in the compiler that made it, not in the wire encoder.
(controller/wire.py derives its OXM byte lengths from os-ken; `bits` must not exceed them —
tests/unit/test_flow_checks.py checks that.)

Values are always plain ints inside a Flow (MACs and IPv4 addresses too), so that flows
compare and hash canonically; this module converts at the edges (compilers, display).
"""
from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Field:
    name: str  # os-ken OXM name (OFPMatch keyword)
    bits: int
    kind: str = "int"  # int (printed hex) | dec | mac | ipv4 | ipv6
    ofctl: str = ""  # ovs-ofctl spelling, if different from name


_FIELDS = [
    Field("in_port", 32, "dec"),
    Field("metadata", 64),
    Field("eth_dst", 48, "mac", "dl_dst"),
    Field("eth_src", 48, "mac", "dl_src"),
    Field("eth_type", 16, "int", "dl_type"),
    Field("vlan_vid", 13, "int", "vlan_vid"),  # OXM value carries OFPVID_PRESENT (0x1000)
    Field("vlan_pcp", 3),  # OF1.3 OXM: 3 bits (OVS rejects > 7)
    Field("ip_proto", 8, "int", "nw_proto"),
    Field("ip_dscp", 6),  # OF1.3 OXM: the 6 DSCP bits, not the ToS byte (OVS rejects > 63)
    Field("ipv4_src", 32, "ipv4", "nw_src"),
    Field("ipv4_dst", 32, "ipv4", "nw_dst"),
    Field("tcp_src", 16, "int", "tp_src"),
    Field("tcp_dst", 16, "int", "tp_dst"),
    Field("udp_src", 16, "int", "tp_src"),
    Field("udp_dst", 16, "int", "tp_dst"),
    Field("icmpv4_type", 8, "int", "icmp_type"),
    Field("icmpv4_code", 8, "int", "icmp_code"),
    Field("nw_ttl", 8, "dec"),  # NXM_NX_IP_TTL (not maskable): routers match TTL 0/1 (router ICMP)
    Field("arp_op", 16),
    Field("arp_spa", 32, "ipv4"),
    Field("arp_tpa", 32, "ipv4"),
    Field("arp_sha", 48, "mac"),
    Field("arp_tha", 48, "mac"),
    Field("ipv6_src", 128, "ipv6"),
    Field("ipv6_dst", 128, "ipv6"),
    Field("icmpv6_type", 8),
    Field("icmpv6_code", 8),
    Field("ipv6_nd_target", 128, "ipv6", "nd_target"),  # NS/NA target address (flows.ndp, port security)
    Field("ipv6_nd_sll", 48, "mac", "nd_sll"),
    Field("ipv6_nd_tll", 48, "mac", "nd_tll"),
    Field("tunnel_id", 64, "int", "tun_id"),
    Field("tun_ipv4_dst", 32, "ipv4", "tun_dst"),
    Field("tun_ipv4_src", 32, "ipv4", "tun_src"),
    Field("ct_state", 32),
    Field("ct_zone", 16),
    Field("ct_mark", 32),
    Field("ct_label", 128),
    Field("conj_id", 32),
] + [Field(f"reg{i}", 32) for i in range(16)]

FIELDS: dict[str, Field] = {f.name: f for f in _FIELDS}


def mac(text: str) -> int:
    """'fa:16:3e:00:00:01' → int."""
    return int(text.replace(":", "").replace("-", ""), 16)


def ipv4(text: str) -> int:
    return int(ipaddress.IPv4Address(text))


# Parsing an address string with ipaddress costs ≈ 7 µs (a network ≈ 10 µs); a restart's compile
# of 10,000 ports parses each port's address at several sites (≈ 0.5 s, caches being cold).
# inet_pton reads a dotted quad in C and accepts exactly what ipaddress does (four decimal
# octets 0-255, no leading zeros); anything else (IPv6, netmask prefixes, garbage) takes
# ipaddress's own path, so results and errors are the same (tests/unit/test_fast_ip.py).
_AF_INET = socket.AF_INET
_inet_pton = socket.inet_pton
_IPv4Address = ipaddress.IPv4Address
_IPv4Network = ipaddress.IPv4Network


def ipv4_int_fast(text: str) -> int | None:
    """int of a dotted-quad IPv4 string; None if `text` is anything else (not an error)."""
    try:
        return int.from_bytes(_inet_pton(_AF_INET, text), "big")
    except (OSError, TypeError, ValueError):
        return None


def parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """ipaddress.ip_address(text), fast for IPv4 text; ValueError as ip_address."""
    n = ipv4_int_fast(text)
    return _IPv4Address(n) if n is not None else ipaddress.ip_address(text)


def parse_net(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """ipaddress.ip_network(text, strict=False), fast for 'a.b.c.d' and 'a.b.c.d/N'; ValueError as it."""
    if type(text) is str:
        addr, slash, prefix = text.partition("/")
        n = ipv4_int_fast(addr)
        if n is not None:
            if not slash:
                return _IPv4Network((n, 32))
            if prefix.isascii() and prefix.isdigit() and int(prefix) <= 32:
                return _IPv4Network((n, int(prefix)), strict=False)
    return ipaddress.ip_network(text, strict=False)


def ipv4_net(cidr: str) -> tuple[int, int]:
    """'10.0.0.0/24' → (value, mask) for a masked match."""
    net = ipaddress.IPv4Network(cidr, strict=False)
    return int(net.network_address), int(net.netmask)


def format_value(name: str, value: int) -> str:
    kind = FIELDS[name].kind
    if kind == "mac":
        h = f"{value:012x}"
        return ":".join(h[i:i + 2] for i in range(0, 12, 2))
    if kind == "ipv4":
        return str(ipaddress.IPv4Address(value))
    if kind == "ipv6":
        return str(ipaddress.IPv6Address(value))
    if kind == "dec":
        return str(value)
    return hex(value) if value > 9 else str(value)


def full_mask(name: str) -> int:
    return (1 << FIELDS[name].bits) - 1
