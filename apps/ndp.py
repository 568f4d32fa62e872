"""NdpApp: answers IPv6 neighbour solicitations for the addresses the store knows.

Flows: the per-network NS punts of flows/ndp.py (owner = the network). Packet-ins
(rate-limited per port by apps/punt.py, never raising): an NS for a known target gets one NA
from the holder's MAC, out of the asking port (R flag for router ports); silence when the asker
is the holder (its own DAD probe), so its DAD succeeds. Everything else is counted in `stats`
and dropped. (Echo to the router's addresses is answered in flows: flows/routing.py.)

It also sends the ICMPv6 errors of IPv6 routers (flows/routing.py punts them with this app's
userdata from L3_ROUTE / L3_NEIGHBOR): time exceeded (hop limit 0/1), destination unreachable
"no route" (no prefix matched) and "address unreachable" (no port holds the address on a
connected subnet). From the router's address on the sender's network (the leg whose MAC the
packet was sent to), to the sender, out of the port it came from — routing runs on the sender's
chassis, so that is the sender's own port. RFC 4443 §2.4(e) exceptions get nothing.
"""
from __future__ import annotations

import ipaddress
import logging
from typing import Iterable

from apps.base import ChassisContext, PacketIn, PacketOut
from apps.packets import (ICMPV6_ADDR_UNREACH, ICMPV6_DEST_UNREACH, ICMPV6_HOP_LIMIT, ICMPV6_NO_ROUTE,
                          ICMPV6_TIME_EXCEEDED, build_icmpv6_error, build_neighbor_advertisement,
                          icmpv6_error_allowed, parse_neighbor_solicitation)
from apps.punt import PuntApp
from flows import ndp
from flows.flow import Flow
from flows.tables import R, T
from topology.store import NETWORK, PORT, Change

LOG = logging.getLogger(__name__)


class NdpApp(PuntApp):
    """FlowApp + PacketApp for NDP (see module doc)."""

    name = "ndp"
    userdata = ndp.USERDATA_NDP
    default_rate = 50.0

    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self._ndp_of: tuple[int, int] | None = None
        self._ndp: dict[str, ndp.NdpIndex | None] = {}

    # ---------------------------------------------------------------- FlowApp
    def owners_for_change(self, view, change: Change) -> Iterable[int]:
        return ndp.owners_changed(view, change)

    def owners_for_chassis(self, view, ctx: ChassisContext) -> Iterable[int]:
        return ndp.owners_on_chassis(view, ctx)

    def compile(self, view, ctx: ChassisContext, owner: int) -> Iterable[Flow]:
        return ndp.compile_owner(view, ctx, owner, self.meter_id)

    # ---------------------------------------------------------------- PacketApp
    def ndp_index(self, view, net_id: str) -> ndp.NdpIndex | None:
        """The network's IPv6 addresses as of the view's revision (built once per revision; the
        packet path only — compiles read the view)."""
        stamp = (id(view), view.revision)
        if stamp != self._ndp_of:
            self._ndp_of, self._ndp = stamp, {}
        if net_id not in self._ndp:
            self._ndp[net_id] = ndp.network_index(view, net_id)
        return self._ndp[net_id]

    def answer(self, view, ctx: ChassisContext, pkt: PacketIn) -> list[PacketOut]:
        if pkt.table in (T.L3_ROUTE, T.L3_NEIGHBOR):
            return self._router_error(view, pkt)
        net = view.by_key(NETWORK, pkt.registers.get(R.NETWORK, 0))
        ni = self.ndp_index(view, net["id"]) if net is not None else None
        if ni is None:
            self.stats["unknown_network"] += 1
            return []
        return self._solicitation(view, ni, pkt)

    def _solicitation(self, view, ni: ndp.NdpIndex, pkt: PacketIn) -> list[PacketOut]:
        ns = parse_neighbor_solicitation(pkt.data)
        if ns is None:
            self.stats["malformed"] += 1
            return []
        ans = ni.known.get(ndp.ip6_int(ns.target) or -1)
        if ans is None:
            self.stats["unknown"] += 1
            LOG.debug("NS for %s on network key %s: unknown", ns.target, ni.key)
            return []
        port_key = pkt.registers.get(R.IN_PORT, 0)
        asker = view.by_key(PORT, port_key) if port_key else None
        if asker is not None and ans.port_id == asker.get("id"):
            self.stats["own_address"] += 1  # its own DAD probe: silence lets DAD succeed
            return []
        self.stats["dad_answered" if ns.is_dad else "answered"] += 1
        return [PacketOut(pkt.in_ofport, build_neighbor_advertisement(ns, ans.mac, ans.router))]

    def _router_error(self, view, pkt: PacketIn) -> list[PacketOut]:
        if not icmpv6_error_allowed(pkt.data):
            self.stats["error_suppressed"] += 1
            return []
        sender = view.by_key(PORT, pkt.registers.get(R.IN_PORT, 0))
        router_mac = ":".join(f"{b:02x}" for b in pkt.data[0:6])  # eth_dst: not rewritten before here
        leg = None
        for p in view.ports_of_network(sender.get("network_id")) if sender else ():
            if ndp.is_router_port(p) and (p.get("mac_address") or "").lower() == router_mac:
                leg = p
                break
        if sender is None or leg is None or not sender.get("mac_address"):
            self.stats["error_no_leg"] += 1
            return []
        src = ipaddress.IPv6Address(pkt.data[22:38])
        own = [ipaddress.IPv6Address(f["ip_address"]) for f in leg.get("fixed_ips") or ()
               if ndp.ip6_int(f.get("ip_address")) is not None]
        same = [a for a in own if (a.is_link_local == src.is_link_local)]
        lla = ndp.router_link_local(leg)
        if same:
            router_ip = str(same[0])
        elif lla is not None:
            router_ip = str(ipaddress.IPv6Address(lla))
        else:
            self.stats["error_no_leg"] += 1
            return []
        hop_limit = pkt.data[21]
        if pkt.table == T.L3_ROUTE and hop_limit <= 1:
            kind, code, what = ICMPV6_TIME_EXCEEDED, ICMPV6_HOP_LIMIT, "time_exceeded"
        elif pkt.table == T.L3_ROUTE:
            kind, code, what = ICMPV6_DEST_UNREACH, ICMPV6_NO_ROUTE, "no_route"
        else:
            kind, code, what = ICMPV6_DEST_UNREACH, ICMPV6_ADDR_UNREACH, "addr_unreachable"
        self.stats[what] += 1
        frame = build_icmpv6_error(eth_src=router_mac, eth_dst=sender["mac_address"].lower(), src_ip=router_ip,
                                   frame=pkt.data, icmp_type=kind, code=code)
        return [PacketOut(pkt.in_ofport, frame)]
