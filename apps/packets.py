"""Defensive parsing and building of every frame the controller reads or sends (ARP, DHCP, IPv4).

One place for packet code: apps import their builders and parsers from here.

Why os-ken's packet library and not scapy: it is already loaded by the runtime, imports in
~0.2 s (scapy ~1 s+), and decodes an ARP frame several times faster, which matters on the
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
class ArpFrame:
    """An Ethernet/IPv4 ARP packet, addresses as canonical text."""
    eth_src: str
    eth_dst: str
    op: int
    sha: str
    spa: str
    tha: str
    tpa: str


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


def parse_arp(data: bytes) -> ArpFrame | None:
    """Decode an untagged Ethernet/IPv4 ARP frame, or None if it is anything else."""
    try:
        if not 28 + 14 <= len(data) <= MAX_FRAME:
            return None
        eth, _, rest = ethernet.ethernet.parser(bytes(data))
        if eth.ethertype != ETH_TYPE_ARP:
            return None
        a, _, _ = arp.arp.parser(rest)
        if a.hwtype != 1 or a.proto != ETH_TYPE_IP or a.hlen != 6 or a.plen != 4:
            return None
        return ArpFrame(_canon_mac(eth.src), _canon_mac(eth.dst), int(a.opcode), _canon_mac(a.src_mac),
                        a.src_ip, _canon_mac(a.dst_mac), a.dst_ip)
    except Exception:  # noqa: BLE001 - os-ken raises many kinds on garbage; caller counts the drop
        LOG.debug("unparseable ARP frame (%d bytes)", len(data), exc_info=True)
        return None


def build_arp_reply(request: ArpFrame, answer_mac: str) -> bytes:
    """The ARP reply `tpa is-at answer_mac`, addressed to the requester only."""
    pkt = packet.Packet()
    pkt.add_protocol(ethernet.ethernet(dst=request.sha, src=answer_mac, ethertype=ETH_TYPE_ARP))
    pkt.add_protocol(arp.arp(hwtype=1, proto=ETH_TYPE_IP, hlen=6, plen=4, opcode=arp.ARP_REPLY,
                             src_mac=answer_mac, src_ip=request.tpa,
                             dst_mac=request.sha, dst_ip=request.spa))
    pkt.serialize()
    return bytes(pkt.data)


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
