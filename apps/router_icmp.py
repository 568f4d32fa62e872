"""The controller half of routers that answer ICMP (flows.router_icmp): ICMP errors.

A router's punt (userdata b"l3icmp") says why by where it comes from:
  L3_ROUTE, TTL <= 1            → time exceeded (type 11 code 0): traceroute's hops
  L3_ROUTE, UDP to a router IP  → port unreachable (type 3 code 3), as Linux answers
  L3_ROUTE, anything else       → net unreachable (type 3 code 0): no route matched
  L3_NEIGHBOR / NAT_OUT         → fragmentation needed (type 3 code 4) with the egress
                                  network's MTU (RFC 1191), after check_pkt_larger
The error quotes the IP header + 8 bytes (RFC 792), never answers an ICMP error, a non-first
fragment or a broadcast/multicast (RFC 1812 §4.3.2.7), and is rate-limited like Linux
(icmp_ratelimit / icmp_msgs_per_sec): per router (a burst of 50, then 100/s) and per router
and destination (a burst of 6, then 1/s) — both tunable (`tenantflow serve --router-icmp-*`, via configure()).

It leaves from the router's address on the sender's subnet (else its gateway IP, else its first
interface), and enters the datapath as a packet-out to OFPP_TABLE addressed to
flows.router_icmp.originate_mac(router, network): the ORIGINATE classify flow puts it on the router
there (with the router's MAC as destination again), which routes it to the sender.
For a packet from outside that was addressed to a floating IP, the quote gets the floating IP
back (undoing the DNAT) and the error is sent from the VM's fixed IP, which the floating IP's own
NAT_OUT flow turns into the floating IP and its MAC (its chassis, its uplink).
"""
from __future__ import annotations

import collections
import ipaddress
import logging
from typing import Any

from apps.base import ChassisContext, PacketIn, PacketOut
from apps import packets
from apps.ratelimit import TokenBuckets
from flows import routing
from flows.fields import format_value
from flows.router_icmp import IPPROTO_UDP, USERDATA_ROUTER_ICMP, originate_mac
from flows.tables import F, R, T
from topology.store import FLOATINGIP, NETWORK, ROUTER

LOG = logging.getLogger(__name__)

OFPP_TABLE = 0xFFFFFFF9
ERROR_TTL = 64
# Linux's icmp_ratelimit / icmp_msgs_per_sec: per router 100/s burst 50; per router+destination 1/s burst 6
DEFAULTS = (100.0, 50.0, 1.0, 6.0)


class RouterIcmp:
    """PacketApp half of RoutingApp: answers the router ICMP punts; never raises."""

    userdata = USERDATA_ROUTER_ICMP

    def __init__(self, rate: float | None = None, burst: float | None = None,
                 dst_rate: float | None = None, dst_burst: float | None = None) -> None:
        self._explicit = (rate, burst, dst_rate, dst_burst)  # explicit arguments win over configure()'s
        self._set_limits((None, None, None, None))
        self.stats: collections.Counter[str] = collections.Counter()

    def _set_limits(self, configured: tuple) -> None:
        rate, burst, dst_rate, dst_burst = (e or c or d for e, c, d in zip(self._explicit, configured, DEFAULTS))
        self.per_router = TokenBuckets(rate, burst)
        self.per_dst = TokenBuckets(dst_rate, dst_burst)

    def configure(self, settings) -> None:
        """Deployment settings: `tenantflow serve --router-icmp-*` (topology.model.settings.PuntLimits)."""
        p = getattr(settings, "punt", None)
        if p is not None:
            self._set_limits((p.router_icmp_rate, p.router_icmp_burst, p.router_icmp_dst_rate,
                              p.router_icmp_dst_burst))

    def packet_in(self, view, ctx: ChassisContext, pkt: PacketIn) -> list[PacketOut]:
        try:
            return self._answer(view, ctx, pkt)
        except Exception:  # noqa: BLE001 - contract: never raise into dispatch
            self.stats["error"] += 1
            LOG.exception("router ICMP packet-in on %s (table %s, %d bytes) failed", ctx.name, pkt.table,
                          len(pkt.data))
            return []

    # ------------------------------------------------------------------ the answer
    def _answer(self, view, ctx: ChassisContext, pkt: PacketIn) -> list[PacketOut]:
        regs = pkt.registers
        router = view.by_key(ROUTER, regs.get(R.ROUTER, 0)) if regs.get(R.ROUTER) else None
        ip = packets.parse_ipv4_packet(pkt.data)
        if router is None or ip is None:
            self.stats["malformed"] += 1
            return []
        if not packets.icmp_error_allowed(ip):
            self.stats["suppressed"] += 1
            return []
        kind = self._kind(view, router, pkt, ip)
        if kind is None:
            self.stats["malformed"] += 1
            return []
        icmp_type, code, mtu, name = kind
        if not self.per_router.allow((ctx.name, router["_key"])) or \
                not self.per_dst.allow((ctx.name, router["_key"], ip.src)):
            self.stats["rate_limited"] += 1
            return []
        out = self._build(view, router, regs, ip, icmp_type, code, mtu, pkt.table != T.L3_ROUTE)
        if out is None:
            self.stats["no_leg"] += 1
            return []
        self.stats[name] += 1
        return [out]

    def _kind(self, view, router, pkt: PacketIn, ip: packets.Ipv4Packet) -> tuple[int, int, int, str] | None:
        if pkt.table == T.L3_ROUTE:
            legs = routing.interface_legs(view, router) + routing.gateway_legs(view, router)
            if ip.proto == IPPROTO_UDP and any(str(leg.ip) == ip.dst for leg in legs):
                # arrived (its TTL does not matter any more): nothing listens on a router address
                return packets.ICMP_DEST_UNREACH, packets.ICMP_PORT_UNREACH, 0, "port_unreachable"
            if ip.ttl <= 1:
                return packets.ICMP_TIME_EXCEEDED, 0, 0, "time_exceeded"
            return packets.ICMP_DEST_UNREACH, packets.ICMP_NET_UNREACH, 0, "net_unreachable"
        if pkt.table in (T.L3_NEIGHBOR, T.NAT_OUT):
            net = view.by_key(NETWORK, pkt.registers.get(R.NETWORK, 0))
            if net is None:
                return None
            return (packets.ICMP_DEST_UNREACH, packets.ICMP_FRAG_NEEDED, routing.network_mtu(net),
                    "frag_needed" if ip.df else "frag_needed_no_df")
        return None

    def _build(self, view, router, regs: dict[str, int], ip: packets.Ipv4Packet, icmp_type: int, code: int,
               mtu: int, routed: bool) -> PacketOut | None:
        legs = routing.interface_legs(view, router)
        if not legs:
            return None  # nowhere to originate from (no L3_GATEWAY entry)
        sender = ipaddress.IPv4Address(ip.src)
        quote_dst = None
        src_ip: str | None = None
        if regs.get(R.FLAGS, 0) & F.FROM_UPLINK:
            fip = _fip_of(view, router, ip.dst)
            if fip is not None:  # came in on a floating IP: quote it, answer through its NAT
                quote_dst, src_ip = fip.get("floating_ip_address"), ip.dst
        leg = next((lg for lg in legs if sender in lg.cidr), None)
        if src_ip is None:
            ext = routing.gateway_legs(view, router)
            on = leg or next((lg for lg in ext if sender in lg.cidr), None) or (ext[0] if ext else legs[0])
            src_ip = str(on.ip)
        inject = leg or legs[0]
        mac_ = format_value("eth_src", inject.mac)
        to = format_value("eth_dst", originate_mac(router["_key"], inject.network["_key"]))
        frame = packets.build_icmp_error(eth_src=mac_, eth_dst=to, src_ip=src_ip, dst_ip=ip.src,
                                         icmp_type=icmp_type, code=code, mtu=mtu, ttl=ERROR_TTL,
                                         quote=packets.quote_of(ip, quote_dst, 1 if routed else 0))
        LOG.debug("router %s: ICMP %d/%d from %s to %s", router["id"], icmp_type, code, src_ip, ip.src)
        return PacketOut(OFPP_TABLE, frame)


def _fip_of(view, router: dict[str, Any], fixed_ip: str) -> dict[str, Any] | None:
    """The router's floating IP whose fixed IP is `fixed_ip` (the DNAT just done), or None."""
    for fip in view.records(FLOATINGIP).values():
        if fip.get("router_id") == router["id"] and fip.get("fixed_ip_address") == fixed_ip \
                and fip.get("floating_ip_address"):
            return fip
    return None
