"""IPv6 neighbour discovery: NS punts for the addresses the store knows (table SERVICE).

Why the controller answers and not the flows: an NA built in flows needs the NS's source
link-layer option turned into a target link-layer option and the R/S/O flags written, which
only OVS's newer nd_reserved / nd_options_type extension fields can do, and os-ken's OXM table
has neither (OVN's `nd_na` action, likewise, is carried out by ovn-controller on a packet-in).
Answering from the store like ARP (flows/services.py) keeps one design for both families, with
the same rate limit and safety net (apps/punt.py).

Known addresses of a network (one flow each, owned by the NETWORK, like the ARP punts):
  - every IPv6 fixed IP of its ports (VMs, DHCP port, router interfaces, gateway ports),
  - the EUI-64 link-local of every router port (the router's address on the link: next hop,
    RA source, echo target),
  - IPv6 /128 allowed address pairs (answered with the pair's MAC).
An address claimed by several MACs (a shared VIP) is not answered: its NS floods within the
network and the holders answer. So are VM link-locals and allowed-address-pair prefixes.

  SERVICE  PRIO_NS_KNOWN  icmpv6 135, metadata=<net>, nd_target=<addr> → controller "ndp"
Anything else (unknown target, NA, RS, MLD) passes at the table miss: multicast NDP then
floods in L2_FLOOD, which replicates only to ports of the packet's network (metadata) — never
beyond it. The answer (apps/ndp.py) goes back out of the asking port only; an NS from the
address's own port (its DAD probe, RFC 4862 §5.4) gets none, so DAD succeeds; a DAD probe for
another port's address gets the all-nodes NA that tells the prober the address is taken.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from flows.flow import Controller, Flow, flow
from flows.port_security import ETH_IPV6, ICMPV6_NS, PROTO_ICMPV6, link_local
from flows.fields import mac as mac_int
from flows.tables import R, T, Owner, cookie, cookie_owner
from flows.view_helpers import local_network_cookies, network_present
from topology.store import NETWORK, PORT, Change
from topology.view import View

USERDATA_NDP = b"ndp"
PRIO_NS_KNOWN = 255     # above the ARP punts; disjoint from them (eth_type) and from RS/DHCPv6 punts
ROUTER_OWNER_PREFIX = "network:router"

Record = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Answer6:
    """Who holds an IPv6 address on a network: the MAC to answer with, its port, router or not."""
    mac: str
    port_id: str | None
    router: bool


@dataclass
class NdpIndex:
    """The IPv6 addresses of one network (int → Answer6); built from the view, then read-only."""
    network: Record
    known: dict[int, Answer6] = field(default_factory=dict)
    shared: set[int] = field(default_factory=set)

    @property
    def key(self) -> int:
        return int(self.network.get("_key", 0))


def ip6_int(text: str | None) -> int | None:
    """IPv6 text → int, None for anything else (IPv4, CIDRs, garbage)."""
    try:
        return int(ipaddress.IPv6Address(text)) if text else None
    except ValueError:
        return None


def is_router_port(port: Record) -> bool:
    return (port.get("device_owner") or "").startswith(ROUTER_OWNER_PREFIX)


def router_link_local(port: Record) -> int | None:
    """The EUI-64 link-local address of a router port's MAC (RFC 4291 §2.5.1), as an int."""
    try:
        return int(link_local(mac_int(port["mac_address"])).network_address)
    except (KeyError, ValueError, TypeError, AttributeError):
        return None


def build_index(view: View, network: Record) -> NdpIndex:
    """O(ports of the network)."""
    ni = NdpIndex(network)
    claims: dict[int, set[tuple[str, str, bool]]] = {}
    for port in sorted(view.ports_of_network(network["id"]), key=lambda p: p["id"]):
        pmac = (port.get("mac_address") or "").lower()
        if not pmac:
            continue
        router = is_router_port(port)
        for fip in port.get("fixed_ips") or ():
            ip = ip6_int(fip.get("ip_address"))
            if ip is not None:
                claims.setdefault(ip, set()).add((pmac, port["id"], router))
        if router:
            lla = router_link_local(port)
            if lla is not None:
                claims.setdefault(lla, set()).add((pmac, port["id"], True))
        for pair in port.get("allowed_address_pairs") or ():
            try:
                net = ipaddress.IPv6Network(pair.get("ip_address") or "", strict=False)
            except ValueError:
                continue  # IPv4 or garbage
            if net.prefixlen == 128:
                amac = (pair.get("mac_address") or "").lower() or pmac
                claims.setdefault(int(net.network_address), set()).add((amac, port["id"], False))
    for ip, holders in claims.items():
        if len({m for m, _, _ in holders}) == 1:
            mac, pid, router = sorted(holders, key=lambda h: h[1])[0]
            ni.known[ip] = Answer6(mac, pid, any(r for _, _, r in holders))
        else:
            ni.shared.add(ip)
    return ni


def network_index(view: View, net_id: str | None) -> NdpIndex | None:
    net = view.get(NETWORK, net_id)
    return build_index(view, net) if net is not None else None


def ns_flows(ni: NdpIndex, meter_id: int = 0) -> list[Flow]:
    """One NS punt per uniquely held address of the network."""
    ck = cookie(Owner.NETWORK, ni.key)
    punt = [Controller(userdata=USERDATA_NDP, meter_id=meter_id)]
    return [flow(T.SERVICE, PRIO_NS_KNOWN, ck, punt,
                 match={R.NETWORK: ni.key, "eth_type": ETH_IPV6, "ip_proto": PROTO_ICMPV6,
                        "icmpv6_type": ICMPV6_NS, "ipv6_nd_target": ip})
            for ip in sorted(ni.known)]


def compile_owner(view: View, ctx, owner: int, meter_id: int = 0) -> list[Flow]:
    try:
        kind, key = cookie_owner(owner)
    except ValueError:
        return []
    if kind != Owner.NETWORK:
        return []
    net = view.by_key(NETWORK, key)
    if net is None or net.get("admin_state_up") is False or not network_present(view, ctx, net["id"]):
        return []
    return ns_flows(build_index(view, net), meter_id)


def owners_on_chassis(view: View, ctx) -> list[int]:
    return local_network_cookies(view, ctx)


def owners_changed(view: View, change: Change) -> set[int]:
    """A port's addresses (or MAC, owner, pairs) are its network's; a network names itself."""
    out: set[int] = set()
    for r in change.records():
        if change.kind == NETWORK and r.get("_key") is not None:
            out.add(cookie(Owner.NETWORK, int(r["_key"])))
        elif change.kind == PORT:
            net = view.get(NETWORK, r.get("network_id"))
            if net is not None and net.get("_key") is not None:
                out.add(cookie(Owner.NETWORK, int(net["_key"])))
    return out
