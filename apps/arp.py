"""ArpApp: answers ARP requests for addresses the store knows, from the controller.

Flows: the per-network ARP punts of flows/services.py (owner = the network). Packet-ins: a
request for a known address in the packet's network (metadata) gets one reply, sent back out of
the asking port. Everything else is counted in `stats` and dropped; nothing here raises.
"""
from __future__ import annotations

import collections
import logging
from typing import Iterable

from apps.base import ChassisContext, PacketIn, PacketOut
from apps.packets import parse_arp, build_arp_reply
from apps.ratelimit import TokenBuckets, env_float
from flows import services
from flows.flow import Flow
from flows.tables import R
from topology.store import PORT, Change

LOG = logging.getLogger(__name__)

ARP_REQUEST = 1


class ArpApp:
    """FlowApp + PacketApp for ARP (see module doc)."""

    name = "arp"
    userdata = services.USERDATA_ARP

    def __init__(self, rate: float | None = None, burst: float | None = None, meter_id: int = 0,
                 cache: services.IndexCache | None = None) -> None:
        self.meter_id = meter_id
        self.cache = cache or services.IndexCache()
        rate = rate if rate is not None else env_float("TENANTFLOW_ARP_RATE", 50.0)
        burst = burst if burst is not None else env_float("TENANTFLOW_ARP_BURST", max(100.0, 2 * rate))
        self.limit = TokenBuckets(rate, burst)
        self.stats: collections.Counter[str] = collections.Counter()

    # ---------------------------------------------------------------- FlowApp
    def owners_for_change(self, view, change: Change) -> Iterable[int]:
        return services.owners_changed(view, change, "arp")

    def owners_for_chassis(self, view, ctx: ChassisContext) -> Iterable[int]:
        return services.owners_on_chassis(view, ctx, "arp")

    def compile(self, view, ctx: ChassisContext, owner: int) -> Iterable[Flow]:
        return services.compile_owner(view, self.cache, ctx, owner, "arp", self.meter_id)

    # ---------------------------------------------------------------- PacketApp
    def packet_in(self, view, ctx: ChassisContext, pkt: PacketIn) -> list[PacketOut]:
        try:
            return self._answer(view, ctx, pkt)
        except Exception:  # noqa: BLE001 - contract: never raise into dispatch
            self.stats["error"] += 1
            LOG.exception("ARP packet-in on %s port %s failed", ctx.name, pkt.in_ofport)
            return []

    def _answer(self, view, ctx: ChassisContext, pkt: PacketIn) -> list[PacketOut]:
        port_key = pkt.registers.get(R.IN_PORT, 0)
        if not self.limit.allow((ctx.name, port_key or -pkt.in_ofport)):
            self.stats["rate_limited"] += 1
            return []
        req = parse_arp(pkt.data)
        if req is None or req.op != ARP_REQUEST:
            self.stats["malformed"] += 1
            return []
        if req.spa == req.tpa:
            self.stats["gratuitous"] += 1  # announcements need no answer
            return []
        net_key = pkt.registers.get(R.NETWORK, 0)
        ans = self.cache.answer(view, net_key, req.tpa)
        if ans is None:
            self.stats["unknown"] += 1
            LOG.debug("ARP who-has %s on network key %s: unknown", req.tpa, net_key)
            return []
        asker = view.by_key(PORT, port_key) if port_key else None
        if asker is not None and ans.port_id == asker.get("id"):
            self.stats["own_address"] += 1  # a duplicate-address probe for itself: stay silent
            return []
        self.stats["answered"] += 1
        return [PacketOut(pkt.in_ofport, build_arp_reply(req, ans.mac))]
