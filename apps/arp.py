"""ArpApp: the in-switch ARP responders of flows/services.py (owner = the network).

Why no packet-in path: every ARP request SERVICE sees is decided in the switch (answered for
an address with one owner, passed to L2 for shared/CIDR addresses, dropped otherwise), so
nothing punts "arp" any more. A packet-in tagged "arp" can only come from a flow an older
controller left on the switch until the reconciler replaces it: counted as `stale_punt`, dropped.
"""
from __future__ import annotations

import logging

from apps.base import ChassisContext, PacketIn, PacketOut
from apps.punt import PuntApp

LOG = logging.getLogger(__name__)


class ArpApp(PuntApp):
    """FlowApp for the ARP responders; its PacketApp side only counts stale punts (module doc)."""

    name = "arp"
    userdata = b"arp"
    default_rate = 50.0

    def answer(self, view, ctx: ChassisContext, pkt: PacketIn) -> list[PacketOut]:
        self.stats["stale_punt"] += 1
        LOG.debug("ARP packet-in on %s port %s: stale punt flow, dropped", ctx.name, pkt.in_ofport)
        return []
