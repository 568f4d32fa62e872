"""NatApp: floating IPs, router SNAT and the external network's output (flows.nat), plus the
controller half of next-hop resolution on external networks.

Packet-ins (userdata b"l3arp"): a routed packet reached EXT_OUTPUT with no learned MAC for its
next hop (reg1). We broadcast one ARP request for reg1 out of the external network's uplink,
from the address the packet carries (its floating IP or the router's gateway IP, already
translated, with that address's MAC), and drop the packet; the reply is learned in the datapath
(flows.nat.neighbor_learn), so the next packet flows without the controller.

Announcements (the core calls `announcements` when an owner's flows change on a chassis): an
external address (gateway IP, floating IP) that a chassis newly answers ARP for has just moved
there — gateway failover, a floating IP's port moving — so that chassis' master sends a few
gratuitous ARPs out of its uplink and the outside switches learn the new place at once.
"""
from __future__ import annotations

import collections
import ipaddress
import logging
from typing import Iterable

from apps.base import ChassisContext, PacketIn, PacketOut
from apps.owners import owner_record
from apps.packets import build_arp_request, parse_ipv4_source
from flows.fields import format_value
from apps.ratelimit import TokenBuckets
from flows import nat, provider
from flows.flow import Flow
from flows.tables import R, Owner
from topology.store import NETWORK

LOG = logging.getLogger(__name__)

class NatApp:
    """FlowApp (FIP / router SNAT / external network owners) + PacketApp (external next-hop ARP)."""

    name = "nat"
    userdata = nat.USERDATA_EXT_ARP

    # owners whose flows may answer ARP for an external address (core: announcements)
    announce_kinds = frozenset({Owner.ROUTER, Owner.FLOATINGIP})

    def __init__(self, rate: float = 5.0, burst: float = 3.0) -> None:
        self.limit = TokenBuckets(rate, burst)
        self.stats: collections.Counter[str] = collections.Counter()

    # ---------------------------------------------------------------- FlowApp
    def owners_for_change(self, view, change) -> Iterable[int]:
        return nat.owners_for_change(view, change)

    def owners_for_chassis(self, view, ctx) -> Iterable[int]:
        return nat.owners_on_chassis(view, ctx)

    def compile(self, view, ctx, owner: int) -> Iterable[Flow]:
        kind, rec = owner_record(view, owner)
        if kind is Owner.FLOATINGIP:
            return nat.fip_flows(view, ctx, rec)
        if kind is Owner.ROUTER:
            return nat.router_nat_flows(view, ctx, rec)
        if kind is Owner.NETWORK and rec is not None and rec.get("router:external"):
            return nat.ext_network_flows(view, ctx, rec)
        return ()

    def announcements(self, ctx: ChassisContext, before: Iterable[Flow], after: Iterable[Flow]
                      ) -> list[tuple[tuple, PacketOut]]:
        """A gratuitous ARP (request, sender = target = the address) per external address that
        `after` answers for on an uplink and `before` did not, each with the key of the flow
        that answers for it (the core re-checks it before repeating the announcement)."""
        old = nat.announced_addresses(before)
        out = []
        for key, (port, vid, ip, mac_) in sorted(nat.announced_addresses(after).items()):
            if key in old:
                continue
            addr = str(ipaddress.IPv4Address(ip))
            self.stats["garp"] += 1
            hw = format_value("eth_src", mac_)
            LOG.info("chassis %s now hosts %s (%s): announcing it on uplink %d", ctx.name, addr, hw, port)
            out.append((key, PacketOut(port, build_arp_request(hw, addr, addr, vid & 0xFFF))))
        return out

    # ---------------------------------------------------------------- PacketApp
    def packet_in(self, view, ctx: ChassisContext, pkt: PacketIn) -> list[PacketOut]:
        try:
            return self._resolve(view, ctx, pkt)
        except Exception:  # noqa: BLE001 - contract: never raise into dispatch
            self.stats["error"] += 1
            LOG.exception("external ARP packet-in on %s failed", ctx.name)
            return []

    def _resolve(self, view, ctx: ChassisContext, pkt: PacketIn) -> list[PacketOut]:
        target = pkt.registers.get(R.NEXTHOP, 0)
        net = view.by_key(NETWORK, pkt.registers.get(R.NETWORK, 0))
        src = parse_ipv4_source(pkt.data)
        if net is None or not target or src is None:
            self.stats["malformed"] += 1
            return []
        uplink = provider.uplink_ofport(ctx, net)
        if uplink is None:
            self.stats["no_uplink"] += 1
            return []
        if not self.limit.allow((ctx.name, net["_key"], target)):
            self.stats["rate_limited"] += 1
            return []
        src_mac, src_ip = src
        vid = provider.vlan_vid(net)
        self.stats["arp_sent"] += 1
        target_ip = str(ipaddress.IPv4Address(target))
        LOG.debug("ARP who-has %s tell %s on %s (chassis %s)", target_ip, src_ip,
                  net.get("name") or net["id"], ctx.name)
        return [PacketOut(uplink, build_arp_request(src_mac, src_ip, target_ip, vid & 0xFFF))]
