"""Ipv6RaApp: IPv6 router advertisements from the controller (RFC 4861), as Neutron's radvd sends.

Which subnets: IPv6 subnets with ipv6_ra_mode set whose gateway is a router interface
(flows/ipv6_services.ra_sources). Each such router port advertises, from its link-local address
(fe80:: EUI-64 of its MAC), one prefix per subnet: A (autonomous) for slaac/dhcpv6-stateless,
on-link only for dhcpv6-stateful; M for dhcpv6-stateful, O for dhcpv6-stateless (Neutron's
radvd.conf template); the network MTU; RDNSS from the subnets' IPv6 DNS servers.

When: a router solicitation is punted (flows/ipv6_services.py) and answered out of the asking
port; and unsolicited RAs go to every local VM port of such a network every
uniform(MIN, MAX) seconds per chassis and network (Neutron's defaults 30/100 s;
`tenantflow serve --ra-min-interval / --ra-max-interval`, via configure()). The periodic ones come from
`periodic`, which the dispatcher calls about once a second for chassis this controller is
master of (HA: a slave never sends). Nothing here keeps topology state: a schedule only.
"""
from __future__ import annotations

import logging
import random
from typing import Iterable

from apps import packets as P
from apps.base import ChassisContext, PacketIn, PacketOut
from apps.punt import PuntApp
from flows import ipv6_services as v6
from flows.flow import Flow
from flows.tables import R
from flows.view_helpers import is_vm_port
from topology.model.ipam import link_local_address
from topology.store import NETWORK, PORT, Change

LOG = logging.getLogger(__name__)

DEFAULT_MIN_INTERVAL = 30.0   # Neutron min_rtr_adv_interval
DEFAULT_MAX_INTERVAL = 100.0  # Neutron max_rtr_adv_interval
OVERLAY_OVERHEAD = {"vxlan": 50, "geneve": 50, "gre": 42}
MAX_RDNSS = 3  # radvd/Neutron advertise at most three
RECHECK_INTERVAL = 5.0  # a network without an advertising router is looked at again this often


def network_mtu(network: dict) -> int:
    """The network's MTU (as DHCPv4 option 26 gives it), never below IPv6's 1280."""
    mtu = network.get("mtu")
    if not (isinstance(mtu, int) and 1280 <= mtu <= 65535):
        mtu = 1500 - OVERLAY_OVERHEAD.get(network.get("provider:network_type") or "vxlan", 0)
    return max(1280, mtu)


class Ipv6RaApp(PuntApp):
    """FlowApp (RS punts) + PacketApp (RS answers) + periodic unsolicited RAs."""

    name = "ra"
    userdata = v6.USERDATA_RA
    default_rate = 2.0

    def __init__(self, min_interval: float | None = None, max_interval: float | None = None,
                 rate: float | None = None, burst: float | None = None, meter_id: int = 0,
                 rng: random.Random | None = None) -> None:
        super().__init__(rate, burst, meter_id)
        self._intervals = (min_interval, max_interval)  # explicit arguments win over configure()'s
        self._set_intervals(None, None)
        self.rng = rng or random.Random()
        self._due: dict[tuple[str, str], float] = {}  # (chassis, network id) → next unsolicited RA

    def _set_intervals(self, lo: float | None, hi: float | None) -> None:
        lo = self._intervals[0] or lo or DEFAULT_MIN_INTERVAL
        hi = self._intervals[1] or hi or DEFAULT_MAX_INTERVAL
        # RFC 4861 §6.2.1 bounds: 4 ≤ max ≤ 1800, 3 ≤ min ≤ 0.75·max (a bounded rate, whatever is set)
        self.max_interval = min(1800.0, max(4.0, hi))
        self.min_interval = min(max(3.0, lo), 0.75 * self.max_interval)

    def configure(self, settings) -> None:
        """Deployment settings: rate limit (apps.punt) and --ra-min/max-interval (Settings.punt)."""
        super().configure(settings)
        limits = getattr(settings, "punt", None)
        if limits is not None:
            self._set_intervals(limits.ra_min_interval, limits.ra_max_interval)

    # ---------------------------------------------------------------- FlowApp
    def owners_for_change(self, view, change: Change) -> Iterable[int]:
        return v6.owners_changed(view, change)

    def owners_for_chassis(self, view, ctx: ChassisContext) -> Iterable[int]:
        return v6.owners_on_chassis(view, ctx)

    def compile(self, view, ctx: ChassisContext, owner: int) -> Iterable[Flow]:
        return v6.compile_owner(view, ctx, owner, "ra", self.meter_id)

    # ---------------------------------------------------------------- building
    @property
    def router_lifetime(self) -> int:
        return int(min(9000, 3 * self.max_interval))  # radvd's AdvDefaultLifetime

    def advertisement(self, network: dict, source: v6.RaSource) -> P.RouterAdvertisement:
        prefixes, dns = [], []
        modes = set()
        for sn in source.subnets:
            mode = sn.get("ipv6_ra_mode")
            modes.add(mode)
            prefixes.append(P.RaPrefix(str(sn["cidr"]), on_link=True, autonomous=mode != "dhcpv6-stateful"))
            dns += [d for d in sn.get("dns_nameservers") or () if ":" in d and d not in dns]
        return P.RouterAdvertisement(
            cur_hop_limit=64, managed="dhcpv6-stateful" in modes, other="dhcpv6-stateless" in modes,
            router_lifetime=self.router_lifetime, prefixes=tuple(prefixes), mtu=network_mtu(network),
            source_lladdr=str(source.port.get("mac_address") or "").lower() or None,
            dns_servers=tuple(dns[:MAX_RDNSS]), dns_lifetime=int(2 * self.max_interval) if dns else 0)

    def frames(self, view, network: dict, eth_dst: str, ip_dst: str) -> list[bytes]:
        """One RA per advertising router port of the network, addressed as given."""
        out = []
        for source in v6.ra_sources(view, network["id"]):
            mac = str(source.port.get("mac_address") or "").lower()
            if not mac:
                continue
            out.append(P.build_router_advertisement(src_mac=mac, src_ip=link_local_address(mac),
                                                    eth_dst=eth_dst, dst_ip=ip_dst,
                                                    ra=self.advertisement(network, source)))
        return out

    # ---------------------------------------------------------------- PacketApp
    def answer(self, view, ctx: ChassisContext, pkt: PacketIn) -> list[PacketOut]:
        rs = P.parse_router_solicitation(pkt.data)
        if rs is None:
            self.stats["malformed"] += 1
            return []
        port_key = pkt.registers.get(R.IN_PORT, 0)
        port = view.by_key(PORT, port_key) if port_key else None
        net = view.by_key(NETWORK, pkt.registers.get(R.NETWORK, 0))
        if port is None or net is None or port.get("network_id") != net.get("id"):
            self.stats["unknown_port"] += 1
            return []
        # RFC 4861 §6.2.6: unicast to a solicitor with an address, else to all nodes.
        if rs.src != "::":
            eth_dst, ip_dst = rs.eth_src, rs.src
        else:
            eth_dst, ip_dst = P.ALL_NODES_MAC, P.ALL_NODES
        frames = self.frames(view, net, eth_dst, ip_dst)
        if not frames:
            self.stats["no_router"] += 1
            return []
        self.stats["solicited"] += len(frames)
        return [PacketOut(pkt.in_ofport, f) for f in frames]

    # ---------------------------------------------------------------- periodic
    def periodic(self, view, ctx: ChassisContext, now: float) -> list[PacketOut]:
        """Unsolicited RAs due on this chassis at `now` (monotonic seconds), to ff02::1, one
        packet-out per local VM port of each advertising network. Never raises."""
        try:
            return self._periodic(view, ctx, now)
        except Exception:  # noqa: BLE001 - contract: the dispatcher's timer must keep running
            self.stats["error"] += 1
            LOG.exception("periodic router advertisements on %s failed", ctx.name)
            return []

    def _periodic(self, view, ctx: ChassisContext, now: float) -> list[PacketOut]:
        by_net: dict[str, list[int]] = {}
        for pid, ofport in ctx.local_ports.items():
            port = view.get(PORT, pid)
            if ofport is None or port is None or not is_vm_port(port):
                continue
            by_net.setdefault(str(port.get("network_id")), []).append(ofport)
        for key in [k for k in self._due if k[0] == ctx.name and k[1] not in by_net]:
            del self._due[key]
        out = []
        for net_id, ofports in sorted(by_net.items()):
            key = (ctx.name, net_id)
            due = self._due.get(key)
            if due is not None and due > now:
                continue
            self._due[key] = now + self.rng.uniform(self.min_interval, self.max_interval)
            net = view.get(NETWORK, net_id)
            if net is None or net.get("admin_state_up") is False:
                continue
            frames = self.frames(view, net, P.ALL_NODES_MAC, P.ALL_NODES)
            if not frames:  # no advertising router (yet): look again soon, cheaply
                self._due[key] = now + RECHECK_INTERVAL
                continue
            if due is None:
                # first sight: a port just came up and its RS may have raced the punt flow
                self._due[key] = now + min(self.min_interval, 16.0) * self.rng.uniform(0.5, 1.0)
            out += [PacketOut(ofport, f) for f in frames for ofport in sorted(ofports)]
            self.stats["unsolicited"] += len(frames) * len(ofports)
        return out
