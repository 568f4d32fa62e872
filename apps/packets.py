"""Defensive parsing and building of every frame the controller reads or sends (DHCP, IPv4, and
the ARP requests it sends: gratuitous ARPs, external next hops; ARP answers are switch flows).

One place for packet code: apps import their builders and parsers from here.

Why os-ken's packet library and not scapy: it is already loaded by the runtime, imports in
~0.2 s (scapy ~1 s+), and decodes frames several times faster, which matters on the
packet-in path. Its parser raises assorted exceptions (struct.error, UnicodeDecodeError, ...)
on garbage and silently truncates, so every entry point here catches, validates what it got
and returns None for anything it cannot vouch for: callers count and drop.

One thing is done by hand: walking the DHCP option TLVs. os-ken's option parser stops at the
first PAD option, while RFC 2132 §3.1 allows PAD anywhere, and RFC 3396 says repeated options
concatenate. The loop below is bounded by the buffer length.
"""
from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass, field

from os_ken.lib.packet import arp, dhcp, ethernet, ipv4, packet, udp, vlan

LOG = logging.getLogger(__name__)

ETH_TYPE_IP = 0x0800
ETH_TYPE_ARP = 0x0806
ETH_TYPE_VLAN = 0x8100
BROADCAST_MAC = "ff:ff:ff:ff:ff:ff"
ZERO_IP = "0.0.0.0"
BROADCAST_IP = "255.255.255.255"
DHCP_MAGIC = b"\x63\x82\x53\x63"
BOOTP_FIXED_LEN = 236  # op .. file, before the magic cookie
BOOTP_MIN_LEN = 300  # RFC 1542 §3.2: some clients drop shorter BOOTP messages
MAX_FRAME = 9216  # anything longer is not a frame a VM port can send; drop unread

# DHCP option tags used here (RFC 2132, RFC 3442).
OPT_PAD = 0
OPT_END = 255
OPT_REQUESTED_IP = 50
OPT_MSG_TYPE = 53
OPT_SERVER_ID = 54
OPT_OVERLOAD = 52

# DHCP message types (RFC 2132 §9.6).
DISCOVER, OFFER, REQUEST, DECLINE, ACK, NAK, RELEASE, INFORM = 1, 2, 3, 4, 5, 6, 7, 8
MSG_NAMES = {DISCOVER: "DISCOVER", OFFER: "OFFER", REQUEST: "REQUEST", DECLINE: "DECLINE",
             ACK: "ACK", NAK: "NAK", RELEASE: "RELEASE", INFORM: "INFORM"}


@dataclass(frozen=True, slots=True)
class DhcpFrame:
    """A BOOTREQUEST from a client, with its options as {tag: bytes}."""
    eth_src: str
    ip_src: str
    ip_dst: str
    xid: int
    flags: int
    secs: int
    ciaddr: str
    giaddr: str
    chaddr: str  # client MAC (htype 1, hlen 6 only)
    msg_type: int
    options: dict[int, bytes] = field(default_factory=dict)

    @property
    def broadcast_flag(self) -> bool:
        return bool(self.flags & 0x8000)

    def ip_option(self, tag: int) -> str | None:
        """An option holding one IPv4 address (50 requested IP, 54 server id), else None."""
        raw = self.options.get(tag)
        if raw is None or len(raw) != 4:
            return None
        return str(ipaddress.IPv4Address(raw))


def _canon_mac(text: str) -> str:
    return text.lower()


def build_arp_request(src_mac: str, src_ip: str, target_ip: str, vid: int = 0) -> bytes:
    """Broadcast ARP request `who-has target_ip tell src_ip`, 802.1Q-tagged when vid != 0.

    A gratuitous ARP is the same request with target_ip == src_ip."""
    pkt = packet.Packet()
    if vid:
        pkt.add_protocol(ethernet.ethernet(dst=BROADCAST_MAC, src=src_mac, ethertype=ETH_TYPE_VLAN))
        pkt.add_protocol(vlan.vlan(vid=vid & 0xFFF, ethertype=ETH_TYPE_ARP))
    else:
        pkt.add_protocol(ethernet.ethernet(dst=BROADCAST_MAC, src=src_mac, ethertype=ETH_TYPE_ARP))
    pkt.add_protocol(arp.arp(hwtype=1, proto=ETH_TYPE_IP, hlen=6, plen=4, opcode=arp.ARP_REQUEST,
                             src_mac=src_mac, src_ip=src_ip, dst_mac="00:00:00:00:00:00", dst_ip=target_ip))
    pkt.serialize()
    return bytes(pkt.data)


def parse_ipv4_source(data: bytes) -> tuple[str, str] | None:
    """(eth_src, ipv4_src) of an untagged Ethernet/IPv4 frame as text, or None for anything else."""
    if not 34 <= len(data) <= MAX_FRAME or data[12:14] != b"\x08\x00" or data[14] >> 4 != 4:
        return None
    mac = ":".join(f"{b:02x}" for b in data[6:12])
    return mac, str(ipaddress.IPv4Address(data[26:30]))


def parse_dhcp_options(raw: bytes) -> dict[int, bytes] | None:
    """TLV walk of the options after the magic cookie; None if the cookie is wrong."""
    if len(raw) < 4 or raw[:4] != DHCP_MAGIC:
        return None
    opts: dict[int, bytes] = {}
    i, n = 4, len(raw)
    while i < n:
        tag = raw[i]
        if tag == OPT_PAD:
            i += 1
            continue
        if tag == OPT_END:
            break
        if i + 1 >= n:
            return None  # tag without length
        length = raw[i + 1]
        value = raw[i + 2:i + 2 + length]
        if len(value) != length:
            return None  # truncated option
        opts[tag] = opts.get(tag, b"") + value  # RFC 3396 concatenation
        i += 2 + length
    return opts


def parse_dhcp(data: bytes) -> DhcpFrame | None:
    """Decode an untagged Ethernet/IPv4/UDP 68→67 BOOTREQUEST, or None."""
    try:
        if not 14 + 20 + 8 + BOOTP_FIXED_LEN + 4 <= len(data) <= MAX_FRAME:
            return None
        # Layer by layer (not packet.Packet): stop at UDP so os-ken's DHCP parser never runs.
        eth, _, rest = ethernet.ethernet.parser(bytes(data))
        if eth.ethertype != ETH_TYPE_IP:
            return None
        ip, _, rest = ipv4.ipv4.parser(rest)
        if ip.version != 4 or ip.header_length < 5 or ip.proto != 17 or ip.offset or ip.flags & 1:
            return None
        u, _, _ = udp.udp.parser(rest)
        if u.src_port != 68 or u.dst_port != 67:
            return None
        # The BOOTP message, taken from the frame itself (not os-ken's dhcp object: see module doc).
        start = 14 + ip.header_length * 4 + 8
        end = min(len(data), 14 + ip.total_length) if ip.total_length else len(data)
        bootp = bytes(data[start:end])
        if len(bootp) < BOOTP_FIXED_LEN + 4:
            return None
        op, htype, hlen = bootp[0], bootp[1], bootp[2]
        if op != dhcp.DHCP_BOOT_REQUEST or htype != 1 or hlen != 6:
            return None
        opts = parse_dhcp_options(bootp[BOOTP_FIXED_LEN:])
        if opts is None:
            return None
        mtype = opts.get(OPT_MSG_TYPE, b"")
        if len(mtype) != 1 or mtype[0] not in MSG_NAMES:
            return None
        xid = int.from_bytes(bootp[4:8], "big")
        secs = int.from_bytes(bootp[8:10], "big")
        flags = int.from_bytes(bootp[10:12], "big")
        ciaddr = str(ipaddress.IPv4Address(bootp[12:16]))
        giaddr = str(ipaddress.IPv4Address(bootp[24:28]))
        chaddr = ":".join(f"{b:02x}" for b in bootp[28:34])
        return DhcpFrame(_canon_mac(eth.src), ip.src, ip.dst, xid, flags, secs, ciaddr, giaddr,
                         chaddr, mtype[0], opts)
    except Exception:  # noqa: BLE001 - os-ken raises many kinds on garbage; caller counts the drop
        LOG.debug("unparseable DHCP frame (%d bytes)", len(data), exc_info=True)
        return None


def build_dhcp_reply(*, server_mac: str, server_ip: str, eth_dst: str, ip_dst: str,
                     request: DhcpFrame, yiaddr: str, ciaddr: str,
                     options: list[tuple[int, bytes]]) -> bytes:
    """A BOOTREPLY frame from the server to the client; options in the given order.

    Options are encoded by os-ken's serializer (which appends END); the BOOTP message is padded
    to the RFC 1542 minimum of 300 octets.
    """
    opt_list = [dhcp.option(tag, value) for tag, value in options]
    msg = dhcp.dhcp(op=dhcp.DHCP_BOOT_REPLY, chaddr=request.chaddr, xid=request.xid,
                    flags=request.flags, ciaddr=ciaddr, yiaddr=yiaddr,
                    siaddr=ZERO_IP, giaddr=request.giaddr,
                    options=dhcp.options(option_list=opt_list))
    body = msg.serialize()
    if len(body) < BOOTP_MIN_LEN:
        body += b"\x00" * (BOOTP_MIN_LEN - len(body))
    pkt = packet.Packet()
    pkt.add_protocol(ethernet.ethernet(dst=eth_dst, src=server_mac, ethertype=ETH_TYPE_IP))
    pkt.add_protocol(ipv4.ipv4(src=server_ip, dst=ip_dst, proto=17, ttl=64))
    pkt.add_protocol(udp.udp(src_port=67, dst_port=68))
    pkt.add_protocol(bytes(body))
    pkt.serialize()
    return bytes(pkt.data)


# ------------------------------------------------------------------ ICMPv6 NDP (apps/ndp.py)
# Built and parsed by hand with struct: the frames are small and fixed, the checksum is one sum
# over the RFC 8200 §8.1 pseudo-header, and every length is checked against the buffer.

ETH_TYPE_IPV6 = 0x86DD
IPPROTO_ICMPV6 = 58
ICMPV6_NS, ICMPV6_NA = 135, 136
ND_OPT_SLL, ND_OPT_TLL = 1, 2
NA_FLAG_ROUTER, NA_FLAG_SOLICITED, NA_FLAG_OVERRIDE = 0x80000000, 0x40000000, 0x20000000
ALL_NODES_IP6 = "ff02::1"
ALL_NODES_MAC = "33:33:00:00:00:01"
UNSPECIFIED_IP6 = "::"


@dataclass(frozen=True, slots=True)
class Icmp6Frame:
    """An untagged Ethernet/IPv6/ICMPv6 frame without extension headers, checksum verified."""
    eth_src: str
    eth_dst: str
    ip_src: str
    ip_dst: str
    hop_limit: int
    type: int
    code: int
    body: bytes  # the ICMPv6 message after type, code and checksum


@dataclass(frozen=True, slots=True)
class NeighborSolicitation:
    frame: Icmp6Frame
    target: str
    sll: str | None  # source link-layer address option, if present

    @property
    def is_dad(self) -> bool:
        """Duplicate address detection: sent from the unspecified address (RFC 4862 §5.4.2)."""
        return self.frame.ip_src == UNSPECIFIED_IP6


def _mac_text(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def _mac_bytes(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", "").replace("-", ""))


def icmpv6_checksum(src: bytes, dst: bytes, message: bytes) -> int:
    """RFC 4443 §2.3: one's-complement sum over the pseudo-header and the message (checksum 0)."""
    return ipv6_upper_checksum(src, dst, IPPROTO_ICMPV6, message)


def parse_icmpv6(data: bytes) -> Icmp6Frame | None:
    """Decode an untagged Ethernet/IPv6/ICMPv6 frame (no extension headers, valid checksum)."""
    if not 14 + 40 + 4 <= len(data) <= MAX_FRAME or data[12:14] != b"\x86\xdd" or data[14] >> 4 != 6:
        return None
    plen, nxt, hlim = int.from_bytes(data[18:20], "big"), data[20], data[21]
    if nxt != IPPROTO_ICMPV6 or plen < 4 or 54 + plen > len(data):
        return None
    src, dst = bytes(data[22:38]), bytes(data[38:54])
    msg = bytes(data[54:54 + plen])
    if icmpv6_checksum(src, dst, msg[:2] + b"\x00\x00" + msg[4:]) != int.from_bytes(msg[2:4], "big"):
        return None
    return Icmp6Frame(_mac_text(data[6:12]), _mac_text(data[0:6]), str(ipaddress.IPv6Address(src)),
                      str(ipaddress.IPv6Address(dst)), hlim, msg[0], msg[1], msg[4:])


def parse_neighbor_solicitation(data: bytes) -> NeighborSolicitation | None:
    """An NS (RFC 4861 §4.3, validity checks of §7.1.1), or None for anything else."""
    f = parse_icmpv6(data)
    if f is None or f.type != ICMPV6_NS or f.code != 0 or f.hop_limit != 255 or len(f.body) < 20:
        return None
    target = ipaddress.IPv6Address(f.body[4:20])
    if target.is_multicast:
        return None
    sll = None
    opts, i = f.body[20:], 0
    while i + 2 <= len(opts):
        otype, olen = opts[i], opts[i + 1] * 8
        if olen == 0 or i + olen > len(opts):
            return None  # RFC 4861 §4.6: a zero-length option invalidates the packet
        if otype == ND_OPT_SLL and olen >= 8:
            sll = _mac_text(opts[i + 2:i + 8])
        i += olen
    if f.ip_src == UNSPECIFIED_IP6 and (sll is not None or not ipaddress.IPv6Address(f.ip_dst).is_multicast):
        return None  # DAD: must go to the solicited-node group and carry no SLL (§7.1.1)
    return NeighborSolicitation(f, str(target), sll)


def build_icmpv6(eth_src: str, eth_dst: str, ip_src: str, ip_dst: str, icmp_type: int, code: int,
                 body: bytes, hop_limit: int = 255) -> bytes:
    """An Ethernet/IPv6/ICMPv6 frame with the checksum filled in."""
    src, dst = ipaddress.IPv6Address(ip_src).packed, ipaddress.IPv6Address(ip_dst).packed
    msg = bytes([icmp_type, code]) + b"\x00\x00" + body
    msg = msg[:2] + icmpv6_checksum(src, dst, msg).to_bytes(2, "big") + msg[4:]
    ip6 = (b"\x60\x00\x00\x00" + len(msg).to_bytes(2, "big") + bytes([IPPROTO_ICMPV6, hop_limit]) + src + dst)
    return _mac_bytes(eth_dst) + _mac_bytes(eth_src) + b"\x86\xdd" + ip6 + msg


def build_neighbor_advertisement(ns: NeighborSolicitation, answer_mac: str, router: bool) -> bytes:
    """The NA answering `ns` for its target with `answer_mac` (RFC 4861 §7.2.4): to the asker,
    solicited; for a DAD probe, to all nodes and not solicited. Override set, TLL option."""
    dad = ns.is_dad
    flags = NA_FLAG_OVERRIDE | (0 if dad else NA_FLAG_SOLICITED) | (NA_FLAG_ROUTER if router else 0)
    body = (flags.to_bytes(4, "big") + ipaddress.IPv6Address(ns.target).packed
            + bytes([ND_OPT_TLL, 1]) + _mac_bytes(answer_mac))
    eth_dst = ALL_NODES_MAC if dad else (ns.sll or ns.frame.eth_src)
    ip_dst = ALL_NODES_IP6 if dad else ns.frame.ip_src
    return build_icmpv6(answer_mac, eth_dst, ns.target, ip_dst, ICMPV6_NA, 0, body)



# ====================================================================== IPv6 (RA, DHCPv6)
# Built and parsed by hand with int.from_bytes/slices: the layouts are small and fixed, and this
# keeps every length check explicit (a packet from a VM is hostile input). No extension headers
# are walked: router solicitations and DHCPv6 client messages carry none (RFC 4861 §6.1.1, RFC
# 8415 §7.1), so a frame whose next header is not ICMPv6/UDP is simply not ours.
# (ETH_TYPE_IPV6, IPPROTO_ICMPV6, ALL_NODES_MAC and _mac_text are shared with the NDP section above.)
IPPROTO_UDP = 17
ICMPV6_RS, ICMPV6_RA = 133, 134
ALL_NODES = "ff02::1"
ALL_DHCP_SERVERS = "ff02::1:2"
DHCPV6_CLIENT_PORT, DHCPV6_SERVER_PORT = 546, 547
# ND option types (RFC 4861 §4.6, RFC 8106)
ND_OPT_SLLA, ND_OPT_PREFIX, ND_OPT_MTU, ND_OPT_RDNSS = 1, 3, 5, 25


def _mac6(text: str) -> bytes:
    raw = bytes.fromhex(text.replace(":", "").replace("-", ""))
    if len(raw) != 6:
        raise ValueError(f"not a MAC: {text!r}")
    return raw


def ipv6_multicast_mac(ip: str) -> str:
    """33:33 + the low 32 bits of a multicast address (RFC 2464 §7)."""
    low = ipaddress.IPv6Address(ip).packed[-4:]
    return _mac_text(b"\x33\x33" + low)


def _packed6(address: str | bytes) -> bytes:
    return address if isinstance(address, bytes) and len(address) == 16 else ipaddress.IPv6Address(address).packed


def ipv6_upper_checksum(src: str | bytes, dst: str | bytes, next_header: int, payload: bytes) -> int:
    """The ICMPv6/UDP checksum over the RFC 8200 §8.1 pseudo-header (payload's own field zeroed);
    addresses as text or 16 packed bytes. The one place the pseudo-header is built."""
    pseudo = (_packed6(src) + _packed6(dst) + len(payload).to_bytes(4, "big") + b"\x00\x00\x00"
              + bytes([next_header]))
    return ip_checksum(pseudo + payload)


@dataclass(frozen=True, slots=True)
class Ipv6Frame:
    """An untagged Ethernet/IPv6 frame: addresses as canonical text, the upper-layer payload."""
    eth_src: str
    eth_dst: str
    src: str
    dst: str
    next_header: int
    hop_limit: int
    payload: bytes


def parse_ipv6(data: bytes) -> Ipv6Frame | None:
    """Decode Ethernet + fixed IPv6 header; None if it is not IPv6 or the lengths do not add up."""
    if not 14 + 40 <= len(data) <= MAX_FRAME or data[12:14] != b"\x86\xdd" or data[14] >> 4 != 6:
        return None
    plen = int.from_bytes(data[18:20], "big")
    if 54 + plen > len(data):
        return None  # truncated (trailing Ethernet padding is fine: payload length wins)
    src = str(ipaddress.IPv6Address(data[22:38]))
    dst = str(ipaddress.IPv6Address(data[38:54]))
    return Ipv6Frame(_mac_text(data[6:12]), _mac_text(data[0:6]), src, dst, data[20], data[21],
                     bytes(data[54:54 + plen]))


def build_ipv6_frame(*, eth_src: str, eth_dst: str, src: str, dst: str, next_header: int,
                     payload: bytes, hop_limit: int = 255) -> bytes:
    """Ethernet + IPv6 header (no flow label, traffic class 0) + payload."""
    header = (b"\x60\x00\x00\x00" + len(payload).to_bytes(2, "big") + bytes([next_header, hop_limit])
              + ipaddress.IPv6Address(src).packed + ipaddress.IPv6Address(dst).packed)
    return _mac6(eth_dst) + _mac6(eth_src) + b"\x86\xdd" + header + payload


def parse_nd_options(raw: bytes) -> list[tuple[int, bytes]] | None:
    """ND option TLVs (length in units of 8 octets, 0 is invalid: RFC 4861 §4.6); None if malformed."""
    out, i = [], 0
    while i < len(raw):
        if i + 2 > len(raw):
            return None
        kind, units = raw[i], raw[i + 1]
        if units == 0 or i + units * 8 > len(raw):
            return None
        out.append((kind, bytes(raw[i + 2:i + units * 8])))
        i += units * 8
    return out


@dataclass(frozen=True, slots=True)
class RouterSolicitation:
    eth_src: str
    src: str            # "::" before the host has an address (then no SLLA option may be present)
    source_lladdr: str | None


def parse_router_solicitation(data: bytes) -> RouterSolicitation | None:
    """An RS that passes RFC 4861 §6.1.1 validation (hop limit 255, code 0, checksum, options)."""
    try:
        f = parse_ipv6(data)
        if f is None or f.next_header != IPPROTO_ICMPV6 or f.hop_limit != 255 or len(f.payload) < 8:
            return None
        icmp = f.payload
        if icmp[0] != ICMPV6_RS or icmp[1] != 0:
            return None
        if ipv6_upper_checksum(f.src, f.dst, IPPROTO_ICMPV6, icmp[:2] + b"\x00\x00" + icmp[4:]) != \
                int.from_bytes(icmp[2:4], "big"):
            return None
        opts = parse_nd_options(icmp[8:])
        if opts is None:
            return None
        slla = next((_mac_text(v[:6]) for k, v in opts if k == ND_OPT_SLLA and len(v) >= 6), None)
        if f.src == "::" and slla is not None:
            return None
        return RouterSolicitation(f.eth_src, f.src, slla)
    except ValueError:  # an address field ipaddress refuses
        LOG.debug("unparseable router solicitation (%d bytes)", len(data), exc_info=True)
        return None


@dataclass(frozen=True, slots=True)
class RaPrefix:
    """One Prefix Information option (RFC 4861 §4.6.2)."""
    cidr: str
    on_link: bool
    autonomous: bool
    valid_lifetime: int = 86400
    preferred_lifetime: int = 14400


@dataclass(frozen=True, slots=True)
class RouterAdvertisement:
    """The fields of an RA the controller sends (and tests decode)."""
    cur_hop_limit: int = 64
    managed: bool = False
    other: bool = False
    router_lifetime: int = 300
    reachable_time: int = 0
    retrans_timer: int = 0
    prefixes: tuple[RaPrefix, ...] = ()
    mtu: int | None = None
    source_lladdr: str | None = None
    dns_servers: tuple[str, ...] = ()
    dns_lifetime: int = 0


def encode_router_advertisement(ra: RouterAdvertisement) -> bytes:
    """The ICMPv6 body of an RA with its checksum field zero."""
    flags = (0x80 if ra.managed else 0) | (0x40 if ra.other else 0)
    out = bytearray([ICMPV6_RA, 0, 0, 0, ra.cur_hop_limit & 0xFF, flags])
    out += (ra.router_lifetime & 0xFFFF).to_bytes(2, "big")
    out += (ra.reachable_time & 0xFFFFFFFF).to_bytes(4, "big") + (ra.retrans_timer & 0xFFFFFFFF).to_bytes(4, "big")
    if ra.source_lladdr:
        out += bytes([ND_OPT_SLLA, 1]) + _mac6(ra.source_lladdr)
    if ra.mtu:
        out += bytes([ND_OPT_MTU, 1, 0, 0]) + (ra.mtu & 0xFFFFFFFF).to_bytes(4, "big")
    for p in ra.prefixes:
        net = ipaddress.IPv6Network(p.cidr, strict=False)
        pflags = (0x80 if p.on_link else 0) | (0x40 if p.autonomous else 0)
        out += bytes([ND_OPT_PREFIX, 4, net.prefixlen, pflags])
        out += p.valid_lifetime.to_bytes(4, "big") + p.preferred_lifetime.to_bytes(4, "big") + b"\x00" * 4
        out += net.network_address.packed
    if ra.dns_servers:
        out += bytes([ND_OPT_RDNSS, 1 + 2 * len(ra.dns_servers), 0, 0]) + ra.dns_lifetime.to_bytes(4, "big")
        for d in ra.dns_servers:
            out += ipaddress.IPv6Address(d).packed
    return bytes(out)


def build_router_advertisement(*, src_mac: str, src_ip: str, eth_dst: str, dst_ip: str,
                               ra: RouterAdvertisement) -> bytes:
    """A complete RA frame (hop limit 255 as RFC 4861 §6.1.2 requires of receivers' checks)."""
    body = bytearray(encode_router_advertisement(ra))
    body[2:4] = ipv6_upper_checksum(src_ip, dst_ip, IPPROTO_ICMPV6, bytes(body)).to_bytes(2, "big")
    return build_ipv6_frame(eth_src=src_mac, eth_dst=eth_dst, src=src_ip, dst=dst_ip,
                            next_header=IPPROTO_ICMPV6, payload=bytes(body))


def parse_router_advertisement(data: bytes) -> tuple[Ipv6Frame, RouterAdvertisement] | None:
    """Inverse of build_router_advertisement (tests, docs, debugging); None if malformed."""
    try:
        f = parse_ipv6(data)
        if f is None or f.next_header != IPPROTO_ICMPV6 or len(f.payload) < 16 or f.payload[0] != ICMPV6_RA:
            return None
        b = f.payload
        if ipv6_upper_checksum(f.src, f.dst, IPPROTO_ICMPV6, b[:2] + b"\x00\x00" + b[4:]) != \
                int.from_bytes(b[2:4], "big"):
            return None
        opts = parse_nd_options(b[16:])
        if opts is None:
            return None
        prefixes, mtu, slla, dns, dns_life = [], None, None, [], 0
        for kind, v in opts:
            if kind == ND_OPT_PREFIX and len(v) == 30:
                net = ipaddress.IPv6Network((ipaddress.IPv6Address(v[14:30]), v[0]), strict=False)
                prefixes.append(RaPrefix(str(net), bool(v[1] & 0x80), bool(v[1] & 0x40),
                                         int.from_bytes(v[2:6], "big"), int.from_bytes(v[6:10], "big")))
            elif kind == ND_OPT_MTU and len(v) == 6:
                mtu = int.from_bytes(v[2:6], "big")
            elif kind == ND_OPT_SLLA and len(v) >= 6:
                slla = _mac_text(v[:6])
            elif kind == ND_OPT_RDNSS and len(v) >= 22:
                dns_life = int.from_bytes(v[2:6], "big")
                dns += [str(ipaddress.IPv6Address(v[i:i + 16])) for i in range(6, len(v) - 15, 16)]
        ra = RouterAdvertisement(b[4], bool(b[5] & 0x80), bool(b[5] & 0x40), int.from_bytes(b[6:8], "big"),
                                 int.from_bytes(b[8:12], "big"), int.from_bytes(b[12:16], "big"),
                                 tuple(prefixes), mtu, slla, tuple(dns), dns_life)
        return f, ra
    except ValueError:
        return None


# ---- DHCPv6 (RFC 8415) ------------------------------------------------------------------
DH6_SOLICIT, DH6_ADVERTISE, DH6_REQUEST, DH6_CONFIRM, DH6_RENEW, DH6_REBIND = 1, 2, 3, 4, 5, 6
DH6_REPLY, DH6_RELEASE, DH6_DECLINE, DH6_RECONFIGURE, DH6_INFORMATION_REQUEST = 7, 8, 9, 10, 11
DH6_NAMES = {1: "SOLICIT", 2: "ADVERTISE", 3: "REQUEST", 4: "CONFIRM", 5: "RENEW", 6: "REBIND", 7: "REPLY",
             8: "RELEASE", 9: "DECLINE", 10: "RECONFIGURE", 11: "INFORMATION-REQUEST", 12: "RELAY-FORW",
             13: "RELAY-REPL"}
CLIENT_MESSAGES = frozenset({1, 3, 4, 5, 6, 8, 9, 11})
# option codes
D6O_CLIENTID, D6O_SERVERID, D6O_IA_NA, D6O_IA_TA, D6O_IAADDR, D6O_ORO = 1, 2, 3, 4, 5, 6
D6O_PREFERENCE, D6O_ELAPSED_TIME, D6O_STATUS_CODE, D6O_RAPID_COMMIT = 7, 8, 13, 14
D6O_DNS_SERVERS, D6O_DOMAIN_LIST, D6O_IA_PD, D6O_INFO_REFRESH_TIME = 23, 24, 25, 32
# status codes (RFC 8415 §21.13)
STATUS_SUCCESS, STATUS_UNSPEC_FAIL, STATUS_NOADDRS_AVAIL, STATUS_NOBINDING = 0, 1, 2, 3
STATUS_NOT_ON_LINK, STATUS_USE_MULTICAST = 4, 5
MAX_DHCPV6_OPTIONS = 64  # a client message with more is not one we answer


def parse_dhcpv6_options(raw: bytes) -> list[tuple[int, bytes]] | None:
    """Option TLVs (code 2 octets, length 2 octets); None if truncated or absurdly many."""
    out: list[tuple[int, bytes]] = []
    i = 0
    while i < len(raw):
        if i + 4 > len(raw) or len(out) >= MAX_DHCPV6_OPTIONS:
            return None
        code = int.from_bytes(raw[i:i + 2], "big")
        length = int.from_bytes(raw[i + 2:i + 4], "big")
        value = raw[i + 4:i + 4 + length]
        if len(value) != length:
            return None
        out.append((code, bytes(value)))
        i += 4 + length
    return out


def dhcpv6_option(code: int, value: bytes) -> bytes:
    return code.to_bytes(2, "big") + len(value).to_bytes(2, "big") + value


@dataclass(frozen=True, slots=True)
class IaNa:
    """An IA_NA a client sent: its IAID and the addresses it names (hints, or what it holds)."""
    iaid: int
    t1: int
    t2: int
    addresses: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Dhcpv6Frame:
    """A DHCPv6 client message (UDP 546 → 547) with the options a server looks at."""
    eth_src: str
    src: str
    dst: str
    msg_type: int
    xid: int
    options: tuple[tuple[int, bytes], ...]
    client_id: bytes | None
    server_id: bytes | None
    ia_na: tuple[IaNa, ...]
    oro: tuple[int, ...]
    rapid_commit: bool

    @property
    def name(self) -> str:
        return DH6_NAMES.get(self.msg_type, str(self.msg_type))


def _parse_ia_na(value: bytes) -> IaNa | None:
    if len(value) < 12:
        return None
    sub = parse_dhcpv6_options(value[12:])
    if sub is None:
        return None
    addrs = tuple(str(ipaddress.IPv6Address(v[:16])) for c, v in sub if c == D6O_IAADDR and len(v) >= 24)
    return IaNa(int.from_bytes(value[0:4], "big"), int.from_bytes(value[4:8], "big"),
                int.from_bytes(value[8:12], "big"), addrs)


def parse_dhcpv6(data: bytes) -> Dhcpv6Frame | None:
    """Decode an untagged Ethernet/IPv6/UDP 546→547 client message, or None for anything else."""
    try:
        f = parse_ipv6(data)
        if f is None or f.next_header != IPPROTO_UDP or len(f.payload) < 8 + 4:
            return None
        u = f.payload
        if int.from_bytes(u[0:2], "big") != DHCPV6_CLIENT_PORT or int.from_bytes(u[2:4], "big") != DHCPV6_SERVER_PORT:
            return None
        ulen = int.from_bytes(u[4:6], "big")
        if ulen < 12 or ulen > len(u):
            return None
        msg = u[8:ulen]
        if msg[0] not in CLIENT_MESSAGES:
            return None
        opts = parse_dhcpv6_options(msg[4:])
        if opts is None:
            return None
        ias = []
        for code, value in opts:
            if code == D6O_IA_NA:
                ia = _parse_ia_na(value)
                if ia is None:
                    return None
                ias.append(ia)
        oro = next((v for c, v in opts if c == D6O_ORO), b"")
        return Dhcpv6Frame(
            f.eth_src, f.src, f.dst, msg[0], int.from_bytes(msg[1:4], "big"), tuple(opts),
            next((v for c, v in opts if c == D6O_CLIENTID), None),
            next((v for c, v in opts if c == D6O_SERVERID), None),
            tuple(ias), tuple(int.from_bytes(oro[i:i + 2], "big") for i in range(0, len(oro) - 1, 2)),
            any(c == D6O_RAPID_COMMIT for c, _ in opts))
    except ValueError:
        LOG.debug("unparseable DHCPv6 frame (%d bytes)", len(data), exc_info=True)
        return None


def encode_domain_list(domains: list[str]) -> bytes:
    """RFC 1035 §3.1 names, uncompressed (RFC 8415 §10); labels over 63 octets are dropped."""
    out = bytearray()
    for d in domains:
        labels = [lab for lab in d.strip(".").split(".") if lab]
        if not labels or any(len(lab.encode("ascii", "replace")) > 63 for lab in labels):
            continue
        for lab in labels:
            raw = lab.encode("ascii", "replace")
            out += bytes([len(raw)]) + raw
        out += b"\x00"
    return bytes(out)


def decode_domain_list(raw: bytes) -> list[str]:
    """Inverse of encode_domain_list (tests); raises ValueError on a malformed list."""
    names: list[str] = []
    labels: list[str] = []
    i = 0
    while i < len(raw):
        n = raw[i]
        if n == 0:
            names.append(".".join(labels))
            labels, i = [], i + 1
            continue
        if n > 63 or i + 1 + n > len(raw):
            raise ValueError("bad label")
        labels.append(raw[i + 1:i + 1 + n].decode("ascii"))
        i += 1 + n
    if labels:
        raise ValueError("unterminated name")
    return names


def encode_ia_na(iaid: int, t1: int, t2: int, sub_options: bytes) -> bytes:
    return dhcpv6_option(D6O_IA_NA, iaid.to_bytes(4, "big") + t1.to_bytes(4, "big") + t2.to_bytes(4, "big")
                         + sub_options)


def encode_iaaddr(ip: str, preferred: int, valid: int) -> bytes:
    return dhcpv6_option(D6O_IAADDR, ipaddress.IPv6Address(ip).packed + preferred.to_bytes(4, "big")
                         + valid.to_bytes(4, "big"))


def encode_status(code: int, message: str = "") -> bytes:
    return dhcpv6_option(D6O_STATUS_CODE, code.to_bytes(2, "big") + message.encode("utf-8"))


def build_dhcpv6_reply(*, server_mac: str, server_ip: str, eth_dst: str, ip_dst: str, msg_type: int,
                       xid: int, options: bytes) -> bytes:
    """A server message (UDP 547 → 546) with already encoded options."""
    msg = bytes([msg_type]) + (xid & 0xFFFFFF).to_bytes(3, "big") + options
    udp_len = 8 + len(msg)
    head = DHCPV6_SERVER_PORT.to_bytes(2, "big") + DHCPV6_CLIENT_PORT.to_bytes(2, "big") + udp_len.to_bytes(2, "big")
    csum = ipv6_upper_checksum(server_ip, ip_dst, IPPROTO_UDP, head + b"\x00\x00" + msg) or 0xFFFF
    return build_ipv6_frame(eth_src=server_mac, eth_dst=eth_dst, src=server_ip, dst=ip_dst,
                            next_header=IPPROTO_UDP, payload=head + csum.to_bytes(2, "big") + msg, hop_limit=255)


def parse_dhcpv6_server_message(data: bytes) -> tuple[Ipv6Frame, int, int, list[tuple[int, bytes]]] | None:
    """(frame, msg type, xid, options) of a server message 547 → 546 (tests, docs)."""
    f = parse_ipv6(data)
    if f is None or f.next_header != IPPROTO_UDP or len(f.payload) < 12:
        return None
    u = f.payload
    if int.from_bytes(u[0:2], "big") != DHCPV6_SERVER_PORT:
        return None
    opts = parse_dhcpv6_options(u[12:int.from_bytes(u[4:6], "big")])
    if opts is None:
        return None
    return f, u[8], int.from_bytes(u[9:12], "big"), opts


# ====================================================================== IPv4 ICMP errors (apps/router_icmp.py)
# By hand with slices, like the IPv6 code above: a router quotes the offending packet's IP header
# and the first 8 bytes of its payload (RFC 792), and every length is checked against the buffer.

IPPROTO_ICMP = 1
ICMP_ECHO_REPLY, ICMP_DEST_UNREACH, ICMP_REDIRECT, ICMP_ECHO = 0, 3, 5, 8
ICMP_TIME_EXCEEDED, ICMP_PARAMETER_PROBLEM = 11, 12
ICMP_NET_UNREACH, ICMP_PORT_UNREACH, ICMP_FRAG_NEEDED = 0, 3, 4  # codes of type 3
_ICMP_ERROR_TYPES = frozenset((ICMP_DEST_UNREACH, 4, ICMP_REDIRECT, ICMP_TIME_EXCEEDED, ICMP_PARAMETER_PROBLEM))


@dataclass(frozen=True, slots=True)
class Ipv4Packet:
    """An untagged Ethernet/IPv4 frame, header validated (version, IHL, lengths, checksum)."""
    eth_src: str
    eth_dst: str
    src: str
    dst: str
    proto: int
    ttl: int
    df: bool
    frag_offset: int   # in 8-byte units; != 0 means not the first fragment
    header: bytes      # the IP header, options included
    payload: bytes     # what follows the header, cut at total length

    @property
    def icmp_type(self) -> int | None:
        return self.payload[0] if self.proto == IPPROTO_ICMP and self.payload else None


def ip_checksum(data: bytes) -> int:
    """RFC 1071 one's-complement sum (IP header, ICMP message)."""
    if len(data) % 2:
        data += b"\x00"
    total = sum(int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def parse_ipv4_packet(data: bytes) -> Ipv4Packet | None:
    """Decode an untagged Ethernet/IPv4 frame, or None for anything else or anything broken."""
    if not 34 <= len(data) <= MAX_FRAME or data[12:14] != b"\x08\x00":
        return None
    ver_ihl = data[14]
    ihl = (ver_ihl & 0x0F) * 4
    total = int.from_bytes(data[16:18], "big")
    if ver_ihl >> 4 != 4 or ihl < 20 or total < ihl or 14 + total > len(data):
        return None
    header = bytes(data[14:14 + ihl])
    if ip_checksum(header) != 0:
        return None
    flags_frag = int.from_bytes(header[6:8], "big")
    return Ipv4Packet(_mac_text(data[6:12]), _mac_text(data[0:6]), str(ipaddress.IPv4Address(header[12:16])),
                      str(ipaddress.IPv4Address(header[16:20])), header[9], header[8], bool(flags_frag & 0x4000),
                      flags_frag & 0x1FFF, header, bytes(data[14 + ihl:14 + total]))


def icmp_error_allowed(pkt: Ipv4Packet) -> bool:
    """RFC 1812 §4.3.2.7: no ICMP error about an ICMP error, a non-first fragment, or a packet
    whose source is not one host (unspecified, broadcast, multicast, loopback, class E)."""
    if pkt.frag_offset:
        return False
    if pkt.proto == IPPROTO_ICMP and (not pkt.payload or pkt.payload[0] in _ICMP_ERROR_TYPES):
        return False
    src, dst = ipaddress.IPv4Address(pkt.src), ipaddress.IPv4Address(pkt.dst)
    if src.is_unspecified or src.is_multicast or src.is_loopback or src.is_reserved or src == ipaddress.IPv4Address(
            BROADCAST_IP):
        return False
    return not (dst.is_multicast or dst == ipaddress.IPv4Address(BROADCAST_IP))


def quote_of(pkt: Ipv4Packet, dst: str | None = None, ttl_delta: int = 0) -> bytes:
    """The original datagram as an ICMP error quotes it: IP header + first 8 payload bytes
    (RFC 792). `dst` / `ttl_delta` undo what the router did to it before it was punted (a
    floating IP's DNAT, dec_ttl), so the sender recognises its own packet; checksum refreshed."""
    h = bytearray(pkt.header)
    if dst is not None:
        h[16:20] = ipaddress.IPv4Address(dst).packed
    h[8] = max(0, min(255, h[8] + ttl_delta))
    h[10:12] = b"\x00\x00"
    h[10:12] = ip_checksum(bytes(h)).to_bytes(2, "big")
    return bytes(h) + pkt.payload[:8]


def build_icmp_error(*, eth_src: str, eth_dst: str, src_ip: str, dst_ip: str, icmp_type: int, code: int,
                     quote: bytes, mtu: int = 0, ttl: int = 64) -> bytes:
    """An Ethernet/IPv4/ICMP error frame (type/code, RFC 1191 next-hop MTU for frag needed) with
    both checksums; `quote` from quote_of()."""
    rest = (mtu & 0xFFFF).to_bytes(4, "big") if icmp_type == ICMP_DEST_UNREACH and code == ICMP_FRAG_NEEDED \
        else b"\x00\x00\x00\x00"
    msg = bytes([icmp_type, code]) + b"\x00\x00" + rest + quote
    msg = msg[:2] + ip_checksum(msg).to_bytes(2, "big") + msg[4:]
    total = 20 + len(msg)
    ip = bytearray(b"\x45\x00" + total.to_bytes(2, "big") + b"\x00\x00\x00\x00" + bytes([ttl & 0xFF, IPPROTO_ICMP])
                   + b"\x00\x00" + ipaddress.IPv4Address(src_ip).packed + ipaddress.IPv4Address(dst_ip).packed)
    ip[10:12] = ip_checksum(bytes(ip)).to_bytes(2, "big")
    return _mac_bytes(eth_dst) + _mac_bytes(eth_src) + b"\x08\x00" + bytes(ip) + msg


# ---- ICMPv6 errors from a router (RFC 4443) — apps/ndp.py --------------------------------
ICMPV6_DEST_UNREACH, ICMPV6_TIME_EXCEEDED = 1, 3
ICMPV6_NO_ROUTE, ICMPV6_ADDR_UNREACH, ICMPV6_HOP_LIMIT = 0, 3, 0
IPV6_MIN_MTU = 1280


def icmpv6_error_allowed(frame: bytes) -> bool:
    """RFC 4443 §2.4(e): no error about an ICMPv6 error, a multicast destination, or a source
    that is multicast or unspecified (nor about a frame that is not IPv6 at all)."""
    pkt = parse_ipv6(frame)
    if pkt is None:
        return False
    src, dst = ipaddress.IPv6Address(pkt.src), ipaddress.IPv6Address(pkt.dst)
    if dst.is_multicast or src.is_multicast or src.is_unspecified:
        return False
    return not (pkt.next_header == IPPROTO_ICMPV6 and (not pkt.payload or pkt.payload[0] < 128))


def build_icmpv6_error(*, eth_src: str, eth_dst: str, src_ip: str, frame: bytes, icmp_type: int,
                       code: int) -> bytes:
    """An ICMPv6 error to the source of `frame` (an Ethernet/IPv6 frame the router could not
    forward), quoting as much of its IPv6 packet as fits in the minimum MTU (RFC 4443 §2.4(c))."""
    invoking = frame[14:14 + IPV6_MIN_MTU - 40 - 8]
    dst_ip = str(ipaddress.IPv6Address(frame[22:38]))
    return build_icmpv6(eth_src, eth_dst, src_ip, dst_ip, icmp_type, code, b"\x00\x00\x00\x00" + invoking, 64)
