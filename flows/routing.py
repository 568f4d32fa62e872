"""Distributed routing on the sending chassis (east-west), like OVN/Dragonflow.

Why on the sending chassis: a routed packet then crosses the underlay once, straight to the
chassis of its destination port, where it re-enters at L2_LOOKUP (tunnel) and runs that port's
ingress security. No chassis ever hairpins through a "router node".

Per router R (Owner.ROUTER, key = R's `_key`), on every chassis where R is *present* (a local
port on one of R's networks, or the chassis is R's SNAT gateway chassis, see flows.nat):

  L3_GATEWAY  metadata=<net>, eth_dst=<R's MAC on net>, ip  → reg2=R, reg0=ROUTED, goto L3_ROUTE
  L3_ROUTE    reg2=R, ip, ipv4_dst=<subnet>  (priority by prefix length: longest prefix wins;
              a connected subnet beats an extra route of equal length)
                connected:  metadata=<net>, eth_src=<R's MAC on net>, reg1=ipv4_dst, dec_ttl
                            → L3_NEIGHBOR
                extra route: the same, reg1=<nexthop>, on the subnet holding the nexthop
                external (gateway subnet, default route): metadata=<ext net>,
                            eth_src=<gateway port MAC>, reg1=dst / ext gateway → NAT_OUT
  L3_NEIGHBOR reg2=R, metadata=<net>, reg1=<port IP> → eth_dst=<port MAC>, then
                local port / network present here → L2_LOOKUP (local delivery or the
                network's own tunnel entry); otherwise straight to the port's chassis
                (tunnel: reg7, tun_id, tun_dst, output), or the provider uplink.

Security groups still hold at both ends: the packet passed the sender's egress stages before
L3 (reg6 = sending port), and L2_LOOKUP sets reg7 for the receiver's INGRESS_CT/INGRESS_SG on
the delivering chassis. Tenants stay apart: every L3 flow matches its own router (reg2), and a
router only has gateway entries on the networks it is attached to.
"""
from __future__ import annotations

import functools
import ipaddress
import logging
from dataclasses import dataclass
from typing import Any

from flows.fields import ipv4, parse_ip, parse_net
from flows.flow import (CheckPktLarger, DecTtl, Flow, GotoTable, Move, Output, PushVlan, SetField, WriteMetadata,
                        flow)
from flows.tables import F, R, T, Owner, cookie
from flows.engine import fact
from flows.view_helpers import (is_overlay, is_provider, is_up, network_present, port_mac, remote_chassis,
                                segmentation_id)
from flows import gateway, provider
from topology.store import NETWORK, PORT, ROUTER, SUBNET, Change
from topology.view import View

LOG = logging.getLogger(__name__)

Record = dict[str, Any]

DEVICE_ROUTER_INTERFACE = "network:router_interface"
DEVICE_ROUTER_GATEWAY = "network:router_gateway"
DEVICE_FLOATINGIP = "network:floatingip"
ETH_IP = 0x0800

PRIO_GATEWAY = 100
PRIO_ROUTE_BASE = 1000   # + 2 * prefix length (+1 for connected subnets)
PRIO_NEIGHBOR = 100

_IFACE_INDEX = "routing.interfaces_by_network"


# --------------------------------------------------------------------------- topology questions

def _ensure_index(view: View) -> None:
    """Router interface ports by network, registered on first use (incremental afterwards;
    add_index reads nothing, so a compile does not depend on it, and refuses a second time)."""
    if not view.has_index(_IFACE_INDEX):
        view.add_index(PORT, _IFACE_INDEX,
                       lambda r: [r.get("network_id")] if r.get("device_owner") == DEVICE_ROUTER_INTERFACE else [])


def routers_of_network(view: View, network_id: str | None) -> list[Record]:
    """Routers with an interface on the network, sorted by key."""
    if not network_id:
        return []
    _ensure_index(view)
    out = {}
    for p in view.find(_IFACE_INDEX, network_id):
        rtr = view.get(ROUTER, p.get("device_id"))
        if rtr is not None and rtr.get("_key") is not None:
            out[rtr["id"]] = rtr
    return sorted(out.values(), key=lambda r: r["_key"])


def router_cookie(router: Record) -> int:
    return cookie(Owner.ROUTER, router["_key"])


# Parsed addresses are immutable values of their text: cached, since every compile of a port's
# neighbour entries (one per port per chassis) parses the same few strings again.
@functools.lru_cache(maxsize=1 << 16)
def _parse_ip(text: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return parse_ip(text) if text else None
    except ValueError:
        return None


@functools.lru_cache(maxsize=1 << 12)
def _parse_net(text: str | None) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    try:
        return parse_net(text) if text else None
    except ValueError:
        return None


def _v4(text: str | None) -> ipaddress.IPv4Address | None:
    ip = _parse_ip(text)
    return ip if isinstance(ip, ipaddress.IPv4Address) else None


def _v4net(text: str | None) -> ipaddress.IPv4Network | None:
    net = _parse_net(text)
    return net if isinstance(net, ipaddress.IPv4Network) else None


@dataclass(frozen=True)
class Leg:
    """One router port on one IPv4 subnet: where the router meets a network."""
    port: Record
    network: Record
    subnet: Record
    cidr: ipaddress.IPv4Network
    ip: ipaddress.IPv4Address
    mac: int


def _legs_of_port(view: View, port: Record) -> list[Leg]:
    net = view.network(port.get("network_id"))
    pmac = port_mac(port)
    if net is None or pmac is None:
        return []
    out = []
    for fip in port.get("fixed_ips") or ():
        sn = view.subnet(fip.get("subnet_id"))
        ip = _v4(fip.get("ip_address"))
        cidr = _v4net(sn.get("cidr")) if sn else None
        if sn is None or ip is None or cidr is None:
            continue
        out.append(Leg(port, net, sn, cidr, ip, pmac))
    return out


def interface_legs(view: View, router: Record) -> list[Leg]:
    """The router's interfaces (internal networks), deterministic order."""
    ports = [p for p in view.ports_of_device(router["id"]) if p.get("device_owner") == DEVICE_ROUTER_INTERFACE]
    legs: list[Leg] = []
    for p in sorted(ports, key=lambda p: p["id"]):
        if not is_up(p):
            continue
        legs += [leg for leg in _legs_of_port(view, p) if is_up(leg.network)]
    return legs


def gateway_port(view: View, router: Record) -> Record | None:
    gw = router.get("external_gateway_info") or {}
    if not gw.get("network_id"):
        return None
    for p in view.ports_of_device(router["id"]):
        if p.get("device_owner") == DEVICE_ROUTER_GATEWAY and p.get("network_id") == gw["network_id"]:
            return p
    return None


def gateway_legs(view: View, router: Record) -> list[Leg]:
    """The router's leg(s) on its external network (gateway port), or [] without a gateway."""
    port = gateway_port(view, router)
    if port is None or not is_up(view.network(port.get("network_id"))):
        return []
    return _legs_of_port(view, port)


def external_network(view: View, router: Record) -> Record | None:
    gw = router.get("external_gateway_info") or {}
    return view.network(gw.get("network_id"))


def gateway_chassis_name(view: View, router: Record) -> str | None:
    """The one chassis that does SNAT and owns the gateway IP now (see flows.nat), or None.

    flows.gateway.select: among the chassis mapping the external physnet, the one the gateway
    port's binding:host_id names while it is alive (sticky), else the highest-priority alive one
    (names rotated by the router's key). A pure function of store facts: chassis records (with
    the controller-written liveness) and the gateway port.
    """
    net = external_network(view, router)
    if net is None or not is_provider(net):
        return None
    port = gateway_port(view, router)
    _order, active = gateway.select(view.records("chassis").values(),
                                    net.get("provider:physical_network") or "", router.get("_key") or 0,
                                    (port or {}).get("binding:host_id") or None)
    return active


def is_gateway_chassis(view: View, ctx, router: Record) -> bool:
    net = external_network(view, router)
    if net is None or gateway_chassis_name(view, router) != ctx.name:
        return False
    return provider.uplink_ofport(ctx, net) is not None


def router_present(view: View, ctx, router: Record) -> bool:
    """Routers live where their traffic starts: a local port on one of their networks, or the gateway."""
    if not is_up(router):
        return False
    nets = {leg.network["id"] for leg in interface_legs(view, router)}
    nets |= {leg.network["id"] for leg in interface_legs6(view, router)}  # IPv6-only interfaces too
    for net_id in sorted(nets):
        if network_present(view, ctx, net_id):
            return True
    return is_gateway_chassis(view, ctx, router)


# --------------------------------------------------------------------------- flows

def _route_prio(prefixlen: int, connected: bool) -> int:
    return PRIO_ROUTE_BASE + 2 * prefixlen + (1 if connected else 0)


def gateway_flows(router: Record, legs: list[Leg]) -> list[Flow]:
    ck, rkey = router_cookie(router), router["_key"]
    seen, out = set(), []
    for leg in legs:
        k = (leg.network["_key"], leg.mac)
        if k in seen:
            continue
        seen.add(k)
        out.append(flow(T.L3_GATEWAY, PRIO_GATEWAY, ck,
                        [SetField(R.ROUTER, rkey), SetField(R.FLAGS, F.ROUTED), GotoTable(T.L3_ROUTE)],
                        match=dict(metadata=leg.network["_key"], eth_dst=leg.mac, eth_type=ETH_IP)))
    return out


ETH_HLEN = 14
DEFAULT_MTU = 1500
PKT_LARGER_BIT = F.PKT_LARGER.bit_length() - 1


def network_mtu(net: Record) -> int:
    """The network's MTU (Neutron's `mtu` attribute; 1500 when unset or nonsense)."""
    mtu = net.get("mtu")
    return mtu if isinstance(mtu, int) and not isinstance(mtu, bool) and 68 <= mtu <= 65535 else DEFAULT_MTU


def mtu_checked(legs: list[Leg]) -> bool:
    """Does the router need check_pkt_larger (router ICMP frag needed)? Only when its legs' MTUs
    differ: a packet that fits its ingress network then may still not fit the egress one."""
    return len({network_mtu(leg.network) for leg in legs}) > 1


def _to_leg(leg: Leg, nexthop: int | None, table: T, check_mtu: bool = False) -> list:
    """Enter `leg`'s network: metadata, source MAC, next hop (None = the destination itself).
    `check_mtu`: set F.PKT_LARGER when the frame exceeds the leg network's MTU (flows.router_icmp
    punts it in the next table for ICMP frag needed)."""
    hop = [Move("ipv4_dst", R.NEXTHOP, 32)] if nexthop is None else [SetField(R.NEXTHOP, nexthop)]
    check = [CheckPktLarger(network_mtu(leg.network) + ETH_HLEN, R.FLAGS, PKT_LARGER_BIT)] if check_mtu else []
    return [*check, SetField("eth_src", leg.mac), *hop, DecTtl(), WriteMetadata(leg.network["_key"]),
            GotoTable(table)]


def route_flows(view: View, router: Record, legs: list[Leg], ext_legs: list[Leg]) -> list[Flow]:
    """LPM over connected subnets, extra routes, the external subnet and the default route."""
    ck, rkey = router_cookie(router), router["_key"]
    out: dict[tuple, Flow] = {}

    def add(cidr: ipaddress.IPv4Network, connected: bool, actions: list) -> None:
        f = flow(T.L3_ROUTE, _route_prio(cidr.prefixlen, connected), ck, actions,
                 match={R.ROUTER: rkey, "eth_type": ETH_IP,
                        "ipv4_dst": (int(cidr.network_address), int(cidr.netmask))})
        out.setdefault(f.key, f)  # first wins: two legs on one subnet are the same route

    chk = mtu_checked(legs + ext_legs)
    for leg in legs:
        add(leg.cidr, True, _to_leg(leg, None, T.L3_NEIGHBOR, chk))
    for leg in ext_legs:
        add(leg.cidr, True, _to_leg(leg, None, T.NAT_OUT, chk))
    for route in router.get("routes") or ():
        dest, hop = _v4net(route.get("destination")), _v4(route.get("nexthop"))
        if dest is None or hop is None:
            continue
        hop_leg = next((lg for lg in legs if hop in lg.cidr), None)
        if hop_leg is not None:
            add(dest, False, _to_leg(hop_leg, int(hop), T.L3_NEIGHBOR, chk))
            continue
        hop_leg = next((lg for lg in ext_legs if hop in lg.cidr), None)
        if hop_leg is not None:
            add(dest, False, _to_leg(hop_leg, int(hop), T.NAT_OUT, chk))
        else:
            LOG.warning("router %s: route %s via %s has no connected subnet; ignored",
                        router["id"], route.get("destination"), route.get("nexthop"))
    for leg in ext_legs:  # default route via the external subnet's gateway
        gw_ip = _v4(leg.subnet.get("gateway_ip"))
        if gw_ip is not None and gw_ip in leg.cidr:
            add(ipaddress.IPv4Network("0.0.0.0/0"), False, _to_leg(leg, int(gw_ip), T.NAT_OUT, chk))
            break
    return list(out.values())


_GOTO_L2_LOOKUP = GotoTable(T.L2_LOOKUP)  # shared by every neighbour entry (immutable)


@functools.lru_cache(maxsize=1 << 12)
def _tunnel_ip(text: str) -> int:
    return ipv4(text)


def _deliver(view: View, ctx, net: Record, port: Record) -> list | None:
    """Actions after eth_dst=<port MAC> that get the packet to `port`, or None (unreachable here)."""
    if port["id"] in ctx.local_ports or network_present(view, ctx, net["id"]):
        return [_GOTO_L2_LOOKUP]  # local entry, or the network's own remote entry
    chassis = remote_chassis(view, ctx, port)
    if chassis is None:
        return None
    if is_overlay(net):
        ofport = ctx.tunnel_ports.get(net.get("provider:network_type") or "")
        if ofport is None or not chassis.get("tunnel_ip"):
            return None
        return [SetField(R.OUT_PORT, port["_key"]), SetField("tunnel_id", segmentation_id(net)),
                SetField("tun_ipv4_dst", _tunnel_ip(chassis["tunnel_ip"])), Output(ofport)]
    if is_provider(net):
        uplink = provider.uplink_ofport(ctx, net)
        if uplink is None:
            return None
        vid = provider.vlan_vid(net)
        return ([PushVlan(), SetField("vlan_vid", vid)] if vid else []) + [Output(uplink)]
    return None


def neighbor_flows(view: View, ctx, router: Record, legs: list[Leg]) -> list[Flow]:
    """Next hop → MAC for every addressed port of the router's networks (not router ports), as
    the ports' owners declare them (port_neighbor_flows), for tools and tests that want them all."""
    out: dict[tuple, Flow] = {}
    for net_id in sorted({leg.network["id"] for leg in legs}):
        net = view.network(net_id)
        if net is None:  # the leg's network is gone from the view: no neighbours to reach there
            continue
        cidrs = [leg.cidr for leg in legs if leg.network["id"] == net_id]
        for port in sorted(view.ports_of_network(net_id), key=lambda p: p["id"]):
            for f in _neighbor4(view, ctx, router, net, port, cidrs, router_cookie(router)):
                out.setdefault(f.key, f)
    return list(out.values())


def _neighbor_port_ok(port: Record) -> bool:
    owner = port.get("device_owner") or ""
    return owner not in (DEVICE_ROUTER_INTERFACE, DEVICE_ROUTER_GATEWAY) and is_up(port) \
        and port_mac(port) is not None and port.get("_key") is not None


def _neighbor_flows(view: View, ctx, router: Record, net: Record, port: Record, cidrs: list, ck: int,
                    parse, match_of) -> list[Flow]:
    """The L3_NEIGHBOR entries of one port in one router, with cookie `ck`: one per address that
    `parse` accepts (IPv4 or IPv6) inside `cidrs`, matched as `match_of(ip)` adds."""
    if not _neighbor_port_ok(port):
        return []
    ips = [ip for ip in (parse(fip.get("ip_address")) for fip in port.get("fixed_ips") or ())
           if ip is not None and any(ip in c for c in cidrs)]
    if not ips:
        return []
    deliver = _deliver(view, ctx, net, port)
    if deliver is None:
        return []
    pmac = port_mac(port)
    assert pmac is not None  # _neighbor_port_ok
    return [flow(T.L3_NEIGHBOR, PRIO_NEIGHBOR, ck, [SetField("eth_dst", pmac), *deliver],
                 match={R.ROUTER: router["_key"], "metadata": net["_key"], **match_of(ip)}) for ip in ips]


def _neighbor4(view: View, ctx, router: Record, net: Record, port: Record, cidrs: list, ck: int) -> list[Flow]:
    """The L3_NEIGHBOR entries of one port in one router (IPv4), with cookie `ck`."""
    return _neighbor_flows(view, ctx, router, net, port, cidrs, ck, _v4, lambda ip: {R.NEXTHOP: int(ip)})


def port_neighbor_flows(view: View, ctx, port: Record) -> list[Flow]:
    """Owner.PORT's routing flows: the port's L3_NEIGHBOR entries (IPv4 and IPv6) in every router
    of its network present on ctx's chassis.

    Why the port owns them, not the router: a router's neighbour table has one entry per port of
    all its networks, so with the router owning them every port created, bound or moved
    recompiled the whole router on every chassis it is present on (O(ports of its networks) ×
    chassis per port). Owned by the port, one more port compiles its own entries only."""
    if not _neighbor_port_ok(port):
        return []
    net = view.network(port.get("network_id"))
    if net is None:
        return []
    routers = routers_of_network(view, net["id"])
    if not routers:
        return []
    ck = cookie(Owner.PORT, port["_key"])
    out: dict[tuple, Flow] = {}
    for router in routers:
        scope = neighbor_scope(view, ctx, router["id"], net["id"])
        if scope is None:
            continue
        cidrs, cidrs6 = scope
        fs = _neighbor4(view, ctx, router, net, port, list(cidrs), ck) if cidrs else []
        if cidrs6:
            fs = fs + _neighbor6(view, ctx, router, net, port, list(cidrs6), ck)
        for f in fs:
            out.setdefault(f.key, f)
    return list(out.values())


@fact
def neighbor_scope(view: View, ctx, router_id: str, network_id: str) -> tuple[tuple, tuple] | None:
    """(IPv4 subnets, IPv6 subnets) of the router's interfaces on the network, or None when the
    router is not present on this chassis. A fact: every port of the network asks it, the answer
    changes only with the router's interfaces or its presence here (computed once per chassis)."""
    router = view.get(ROUTER, router_id)
    if router is None or router.get("_key") is None or not router_present(view, ctx, router):
        return None
    return (tuple(leg.cidr for leg in interface_legs(view, router) if leg.network["id"] == network_id),
            tuple(leg.cidr for leg in interface_legs6(view, router) if leg.network["id"] == network_id))


def neighbor_owners(view: View, network_ids) -> set[int]:
    """Port owners whose neighbour entries follow the routers of these networks."""
    out: set[int] = set()
    for net_id in network_ids:
        if net_id:
            out.update(cookie(Owner.PORT, p["_key"]) for p in view.ports_of_network(net_id)
                       if p.get("_key") is not None)
    return out


def router_flows(view: View, ctx, router: Record) -> list[Flow]:
    """Everything Owner.ROUTER needs from east-west routing on ctx's chassis."""
    if router is None or not router_present(view, ctx, router):
        return []
    legs = interface_legs(view, router)
    ext_legs = gateway_legs(view, router)
    # the neighbour entries (one per port of its networks) are the ports' own: port_neighbor_flows
    return (gateway_flows(router, legs) + route_flows(view, router, legs, ext_legs)
            + router_flows6(view, ctx, router))


# --------------------------------------------------------------------------- dependencies

def _router_cookies_of_network(view: View, network_id: str | None) -> set[int]:
    return {router_cookie(r) for r in routers_of_network(view, network_id)}


def _router_networks(view: View, router: Record) -> set[str]:
    """Networks the router has an interface on (IPv4 or IPv6)."""
    return {leg.network["id"] for leg in interface_legs(view, router)} | \
        {leg.network["id"] for leg in interface_legs6(view, router)}


def owners_for_change(view: View, change: Change) -> set[int]:
    """Router owners, and port owners for their neighbour entries (port_neighbor_flows), whose
    flows may differ after `change` (over-approximates). A plain port names itself only: its
    entries are its own, and the router's flows do not read its network's ports."""
    recs = change.records()
    out: set[int] = set()
    if change.kind == ROUTER:
        out |= {router_cookie(r) for r in recs if r.get("_key") is not None}
        for r in recs:  # admin state, legs: the entries of its networks' ports come and go
            out |= neighbor_owners(view, _router_networks(view, r))
    elif change.kind == PORT:
        for r in recs:
            if r.get("_key") is not None:
                out.add(cookie(Owner.PORT, r["_key"]))
            if r.get("device_owner") in (DEVICE_ROUTER_INTERFACE, DEVICE_ROUTER_GATEWAY):
                rtr = view.get(ROUTER, r.get("device_id"))
                nets = {r.get("network_id")} if r.get("device_owner") == DEVICE_ROUTER_INTERFACE else set()
                if rtr is not None and rtr.get("_key") is not None:
                    out.add(router_cookie(rtr))
                    nets |= _router_networks(view, rtr)
                out |= neighbor_owners(view, nets)
                out |= _router_cookies_of_network(view, r.get("network_id"))
        # a port (re)appearing on a chassis may flip a router's presence there: the location
        # path (flows.compiler.owners_for_port_location → owners_for_port_location below)
    elif change.kind in (SUBNET, NETWORK):
        for r in recs:  # attached routers, and routers whose gateway is on this network
            net_id = r.get("network_id") if change.kind == SUBNET else r.get("id")
            attached = routers_of_network(view, net_id)
            out |= {router_cookie(rt) for rt in attached}
            if attached:
                out |= neighbor_owners(view, {net_id})
            for rt in routers_with_gateway_on(view, net_id):
                out.add(router_cookie(rt))
                out |= neighbor_owners(view, _router_networks(view, rt))
    elif change.kind == "chassis":
        for r in view.records(ROUTER).values():
            if r.get("_key") is None:
                continue
            out.add(router_cookie(r))
            if r.get("external_gateway_info"):  # the gateway chassis may have moved
                out |= neighbor_owners(view, _router_networks(view, r))
    return out


def owners_for_port_location(view: View, ctx, port: Record) -> set[int]:
    """Owners a port's tap appearing on / vanishing from ctx's chassis (ctx: after the change)
    may change there: the port itself and the routers of its network; and when that tap was its
    network's only one here and no other network of a router is here, the router's presence
    flipped: the neighbour entries of every port of the router's networks come or go."""
    out: set[int] = set()
    if port.get("_key") is not None:
        out.add(cookie(Owner.PORT, port["_key"]))
    net_id = port.get("network_id")
    routers = routers_of_network(view, net_id)
    if not routers:
        return out
    out |= {router_cookie(r) for r in routers}
    local = ctx.local_ports
    if any(pid in local for pid in view.port_ids_of_network(net_id) if pid != port["id"]):
        return out  # the network was here before and stays: no router's presence flipped
    for rtr in routers:
        nets = _router_networks(view, rtr)
        if not any(network_present(view, ctx, n) for n in nets - {net_id}):
            out |= neighbor_owners(view, nets)
    return out


def routers_with_gateway_on(view: View, network_id: str | None) -> list[Record]:
    if not network_id:
        return []
    return [r for r in view.records(ROUTER).values()
            if (r.get("external_gateway_info") or {}).get("network_id") == network_id and r.get("_key") is not None]


def present_routers(view: View, ctx) -> list[Record]:
    """Routers with flows on ctx's chassis."""
    found: dict[str, Record] = {}
    nets = set()
    for pid in ctx.local_ports:
        port = view.port(pid)
        if port is not None:
            nets.add(port.get("network_id"))
    for net_id in nets:
        for r in routers_of_network(view, net_id):
            found[r["id"]] = r
    for r in view.records(ROUTER).values():
        if r.get("_key") is not None and r.get("external_gateway_info") and is_gateway_chassis(view, ctx, r):
            found[r["id"]] = r
    return [r for r in found.values() if router_present(view, ctx, r)]


def owners_on_chassis(view: View, ctx) -> set[int]:
    """The present routers, and the ports of their networks (their neighbour entries)."""
    present = present_routers(view, ctx)
    nets: set[str] = set()
    for r in present:
        nets |= _router_networks(view, r)
    return {router_cookie(r) for r in present} | neighbor_owners(view, nets)


# --------------------------------------------------------------------------- IPv6 (east-west)
# The same shape as IPv4, one table each, without a next-hop register: only connected subnets
# are routed (extra routes and the external gateway stay IPv4), so the next hop is the
# destination itself and L3_NEIGHBOR matches ipv6_dst directly.
#
#   L3_GATEWAY PRIO_ECHO6    metadata, eth_dst=<R's MAC>, icmpv6 128, ipv6_dst=<R's address on
#                            any leg, or its link-local on this one> → echo reply in the datapath (swap
#                            MACs and addresses, type 129, out of IN_PORT; OVS fixes the checksum)
#              PRIO_LLA_SRC6 metadata, eth_dst=<R's MAC>, ipv6_src=fe80::/10 → drop (link-local
#                            sources are never forwarded, RFC 4291 §2.5.6)
#              PRIO_GATEWAY  metadata, eth_dst=<R's MAC>, ipv6 → reg2=R, ROUTED, goto L3_ROUTE
#   L3_ROUTE   reg2=R, ipv6_dst=<subnet> → eth_src=<R's MAC there>, dec_ttl (hop limit; OVS
#              drops at 1), metadata=<net> → L3_NEIGHBOR
#   L3_NEIGHBOR reg2=R, metadata, ipv6_dst=<port's IPv6> → eth_dst=<port MAC>, deliver as IPv4
# ICMPv6 errors (built by apps/ndp.py from the packet-in, sent back out of the sender's port:
# routing happens on the sender's chassis, so in_port is the sender):
#   L3_ROUTE   PRIO_TTL6 (2000) reg2=R, ipv6, nw_ttl=0/1 → controller "ndp" (time exceeded)
#              PRIO_UNREACH6 (1) reg2=R, ipv6 → controller "ndp" (no route)
#   L3_NEIGHBOR PRIO_OWN6 (150) reg2=R, metadata, ipv6_dst=<R's address there> → drop (not
#              routed on; echo was answered in L3_GATEWAY)
#              PRIO_UNREACH6 (1) reg2=R, ipv6 → controller "ndp" (address unreachable)
# The router's link-local answers NS through flows.ndp (router ports are known there).

PRIO_ECHO6 = 110
PRIO_TTL6 = 2000        # above every IPv6 route (1000 + 2 * 128 + 1)
PRIO_UNREACH6 = 1       # below every route / neighbour entry, above the table miss
PRIO_OWN6 = 150
OFPP_IN_PORT6 = 0xFFFFFFF8
PRIO_LLA_SRC6 = 105
ETH_IPV6 = 0x86DD
LINK_LOCAL6 = (0xFE80 << 112, 0xFFC0 << 112)  # fe80::/10


@dataclass(frozen=True)
class Leg6:
    """One router port on one IPv6 subnet."""
    port: Record
    network: Record
    subnet: Record
    cidr: ipaddress.IPv6Network
    ip: ipaddress.IPv6Address
    mac: int


def _v6(text: str | None) -> ipaddress.IPv6Address | None:
    ip = _parse_ip(text)
    return ip if isinstance(ip, ipaddress.IPv6Address) else None


def _v6net(text: str | None) -> ipaddress.IPv6Network | None:
    net = _parse_net(text)
    return net if isinstance(net, ipaddress.IPv6Network) else None


def interface_legs6(view: View, router: Record) -> list[Leg6]:
    """The router's interfaces on IPv6 subnets (up ports on up networks), deterministic order."""
    ports = [p for p in view.ports_of_device(router["id"]) if p.get("device_owner") == DEVICE_ROUTER_INTERFACE]
    legs: list[Leg6] = []
    for p in sorted(ports, key=lambda p: p["id"]):
        net = view.network(p.get("network_id"))
        pmac = port_mac(p)
        if not is_up(p) or net is None or not is_up(net) or pmac is None:
            continue
        for fip in p.get("fixed_ips") or ():
            sn = view.subnet(fip.get("subnet_id"))
            ip = _v6(fip.get("ip_address"))
            cidr = _v6net(sn.get("cidr")) if sn else None
            if sn is not None and ip is not None and cidr is not None:
                legs.append(Leg6(p, net, sn, cidr, ip, pmac))
    return legs


def _link_local6(mac_value: int) -> int:
    """EUI-64 link-local of a MAC (the router port's address on the link)."""
    b = mac_value.to_bytes(6, "big")
    return int.from_bytes(b"\xfe\x80" + b"\x00" * 6 + bytes([b[0] ^ 0x02]) + b[1:3] + b"\xff\xfe" + b[3:], "big")


def echo_reply6(ip: int, mac_: int) -> list:
    """Turn an ICMPv6 echo request to `ip` into its reply from `ip`/`mac_`, back where it came from."""
    return [Move("eth_src", "eth_dst", 48), SetField("eth_src", mac_),
            Move("ipv6_src", "ipv6_dst", 128), SetField("ipv6_src", ip),
            SetField("icmpv6_type", 129), Output(OFPP_IN_PORT6)]


def gateway_flows6(router: Record, legs: list[Leg6]) -> list[Flow]:
    ck, rkey = router_cookie(router), router["_key"]
    out: dict[tuple, Flow] = {}

    def add(f: Flow) -> None:
        out.setdefault(f.key, f)

    own = sorted({int(lg.ip) for lg in legs})  # any of R's addresses answers, on every leg (as Linux)
    for leg in legs:
        base = dict(metadata=leg.network["_key"], eth_dst=leg.mac, eth_type=ETH_IPV6)
        for addr in own + [_link_local6(leg.mac)]:
            add(flow(T.L3_GATEWAY, PRIO_ECHO6, ck, echo_reply6(addr, leg.mac),
                     match=dict(base, ip_proto=58, icmpv6_type=128, ipv6_dst=addr)))
        add(flow(T.L3_GATEWAY, PRIO_LLA_SRC6, ck, [], match=dict(base, ipv6_src=LINK_LOCAL6)))
        add(flow(T.L3_GATEWAY, PRIO_GATEWAY, ck,
                 [SetField(R.ROUTER, rkey), SetField(R.FLAGS, F.ROUTED), GotoTable(T.L3_ROUTE)], match=base))
    return list(out.values())


def route_flows6(router: Record, legs: list[Leg6]) -> list[Flow]:
    ck, rkey = router_cookie(router), router["_key"]
    out: dict[tuple, Flow] = {}
    for leg in legs:
        f = flow(T.L3_ROUTE, _route_prio(leg.cidr.prefixlen, True), ck,
                 [SetField("eth_src", leg.mac), DecTtl(), WriteMetadata(leg.network["_key"]),
                  GotoTable(T.L3_NEIGHBOR)],
                 match={R.ROUTER: rkey, "eth_type": ETH_IPV6,
                        "ipv6_dst": (int(leg.cidr.network_address), int(leg.cidr.netmask))})
        out.setdefault(f.key, f)  # first wins: two legs on one subnet are the same route
    return list(out.values())


def neighbor_flows6(view, ctx, router: Record, legs: list[Leg6]) -> list[Flow]:
    """Destination → MAC for every IPv6-addressed port of the router's networks (not router ports),
    as the ports' owners declare them (port_neighbor_flows)."""
    out: dict[tuple, Flow] = {}
    for net_id in sorted({leg.network["id"] for leg in legs}):
        net = view.network(net_id)
        if net is None:
            continue
        cidrs = [leg.cidr for leg in legs if leg.network["id"] == net_id]
        for port in sorted(view.ports_of_network(net_id), key=lambda p: p["id"]):
            for f in _neighbor6(view, ctx, router, net, port, cidrs, router_cookie(router)):
                out.setdefault(f.key, f)
    return list(out.values())


def _neighbor6(view, ctx, router: Record, net: Record, port: Record, cidrs: list, ck: int) -> list[Flow]:
    """The L3_NEIGHBOR entries of one port in one router (IPv6), with cookie `ck`."""
    return _neighbor_flows(view, ctx, router, net, port, cidrs, ck, _v6,
                           lambda ip: {"eth_type": ETH_IPV6, "ipv6_dst": int(ip)})


def error_flows6(router: Record, legs: list[Leg6]) -> list[Flow]:
    """Punts for the ICMPv6 errors a router sends (time exceeded, no route, address unreachable)."""
    from flows.flow import Controller
    from flows.ndp import USERDATA_NDP  # local: flows.ndp reads flows.port_security only
    ck, rkey = router_cookie(router), router["_key"]
    punt = [Controller(userdata=USERDATA_NDP)]
    base = {R.ROUTER: rkey, "eth_type": ETH_IPV6}
    out: dict[tuple, Flow] = {}
    fs = [flow(T.L3_ROUTE, PRIO_TTL6, ck, punt, match=dict(base, nw_ttl=ttl)) for ttl in (0, 1)]
    fs.append(flow(T.L3_ROUTE, PRIO_UNREACH6, ck, punt, match=base))
    fs.append(flow(T.L3_NEIGHBOR, PRIO_UNREACH6, ck, punt, match=base))
    fs += [flow(T.L3_NEIGHBOR, PRIO_OWN6, ck, [],
                match=dict(base, metadata=leg.network["_key"], ipv6_dst=int(leg.ip))) for leg in legs]
    for f in fs:
        out.setdefault(f.key, f)
    return list(out.values())


def router_flows6(view: View, ctx, router: Record) -> list[Flow]:
    """The IPv6 half of router_flows (router presence already checked by the caller)."""
    legs = interface_legs6(view, router)
    if not legs:
        return []
    return gateway_flows6(router, legs) + route_flows6(router, legs) + error_flows6(router, legs)
