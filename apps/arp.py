"""ArpApp: answers ARP requests for addresses the store knows, from the controller.

Flows: the per-network ARP punts of flows/services.py (owner = the network). Packet-ins: a
request for a known address in the packet's network (metadata) gets one reply, sent back out of
the asking port. Everything else is counted in `stats` and dropped; nothing here raises.
"""
from __future__ import annotations

import logging

from apps.base import ChassisContext, PacketIn, PacketOut
from apps.packets import parse_arp, build_arp_reply
from apps.punt import PuntApp
from flows import services
from flows.tables import R
from topology.store import NETWORK, PORT

LOG = logging.getLogger(__name__)

ARP_REQUEST = 1


class ArpApp(PuntApp):
    """FlowApp + PacketApp for ARP (see module doc)."""

    name = "arp"
    userdata = services.USERDATA_ARP
    default_rate = 50.0

    def answer(self, view, ctx: ChassisContext, pkt: PacketIn) -> list[PacketOut]:
        port_key = pkt.registers.get(R.IN_PORT, 0)
        req = parse_arp(pkt.data)
        if req is None or req.op != ARP_REQUEST:
            self.stats["malformed"] += 1
            return []
        if req.spa == req.tpa:
            self.stats["gratuitous"] += 1  # announcements need no answer
            return []
        net_key = pkt.registers.get(R.NETWORK, 0)
        net = view.by_key(NETWORK, net_key)
        ni = self.network_index(view, net["id"]) if net is not None else None
        addr = services.ip_int(req.tpa)
        ans = ni.known.get(addr) if ni is not None and addr is not None else None
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
