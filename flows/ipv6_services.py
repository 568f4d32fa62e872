"""IPv6 service punts in table SERVICE: router solicitations and DHCPv6 client messages.

Both belong to the *network* (one flow each, on every chassis with a local port in it), like the
ARP punts: what decides them is the network's subnets and router interfaces, not any one port.
Only packets a local VM port sent reach SERVICE (tunnel/uplink traffic enters at L2_LOOKUP), so
`metadata` alone says "from a known port of this network"; the packet-in carries reg6 (the port).

  310 DHCPv6 client → ff02::1:2, UDP 546→547, on a network with a DHCPv6 subnet → controller "dhcp6"
  305 ICMPv6 router solicitation (133) on a network with an RA subnet           → controller "ra"

An "RA subnet" is, as in Neutron's L3 agent (radvd), an IPv6 subnet with ipv6_ra_mode set whose
gateway is a router interface. A "DHCPv6 subnet" has DHCP enabled and ipv6_address_mode
dhcpv6-stateful or dhcpv6-stateless, or no mode at all (Neutron's DHCP agent serves those).
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from flows.flow import Controller, Flow, flow
from flows.tables import Owner, R, T, cookie, cookie_owner
from flows.view_helpers import local_network_cookies, network_present
from topology.store import NETWORK, PORT, SUBNET, Change
from topology.view import View

USERDATA_RA = b"ra"
USERDATA_DHCPV6 = b"dhcp6"
PRIO_DHCPV6 = 310
PRIO_RS = 305
ETH_IPV6 = 0x86DD
ICMPV6_RS = 133
ALL_DHCP_SERVERS = int(ipaddress.IPv6Address("ff02::1:2"))
DEVICE_ROUTER_INTERFACE = "network:router_interface"
DHCPV6_MODES = ("dhcpv6-stateful", "dhcpv6-stateless")

Record = dict[str, Any]


@dataclass(frozen=True, slots=True)
class RaSource:
    """One router interface that advertises on a network: its port and the RA subnets it serves."""
    port: Record
    subnets: tuple[Record, ...]


def ra_sources(view: View, net_id: str | None) -> list[RaSource]:
    """Router interfaces of the network holding the gateway of an IPv6 subnet with ipv6_ra_mode."""
    out = []
    for port in sorted(view.ports_of_network(net_id), key=lambda p: p["id"]):
        if port.get("device_owner") != DEVICE_ROUTER_INTERFACE or port.get("admin_state_up") is False:
            continue
        subnets = []
        for fip in port.get("fixed_ips") or ():
            sn = view.get(SUBNET, fip.get("subnet_id"))
            if sn is not None and int(sn.get("ip_version", 4)) == 6 and sn.get("ipv6_ra_mode") \
                    and fip.get("ip_address") == sn.get("gateway_ip"):
                subnets.append(sn)
        if subnets:
            out.append(RaSource(port, tuple(subnets)))
    return out


def is_dhcpv6_stateful(subnet: Record) -> bool:
    """Addresses handed out by DHCPv6: dhcpv6-stateful, or no mode at all (Neutron's DHCP agent
    runs dnsmasq in "static" mode for an IPv6 subnet without modes, as before the modes existed)."""
    mode, ra = subnet.get("ipv6_address_mode"), subnet.get("ipv6_ra_mode")
    return mode == "dhcpv6-stateful" or (mode is None and ra is None)


def dhcpv6_subnets(view: View, net_id: str | None) -> list[Record]:
    """The network's IPv6 subnets Neutron's DHCP agent would serve DHCPv6 on."""
    return [s for s in view.subnets_of_network(net_id)
            if int(s.get("ip_version", 4)) == 6 and s.get("enable_dhcp", True)
            and (s.get("ipv6_address_mode") in DHCPV6_MODES or is_dhcpv6_stateful(s))]


def _network(view: View, ctx, key: int) -> Record | None:
    net = view.by_key(NETWORK, key)
    if net is None or net.get("admin_state_up") is False or not network_present(view, ctx, net["id"]):
        return None
    return net


def rs_punt_flows(view: View, ctx, net: Record, meter_id: int = 0) -> list[Flow]:
    if not ra_sources(view, net["id"]):
        return []
    key = int(net["_key"])
    return [flow(T.SERVICE, PRIO_RS, cookie(Owner.NETWORK, key),
                 [Controller(userdata=USERDATA_RA, meter_id=meter_id)],
                 match={R.NETWORK: key, "eth_type": ETH_IPV6, "ip_proto": 58,
                        "icmpv6_type": ICMPV6_RS, "icmpv6_code": 0})]


def dhcpv6_punt_flows(view: View, ctx, net: Record, meter_id: int = 0) -> list[Flow]:
    if not dhcpv6_subnets(view, net["id"]):
        return []
    key = int(net["_key"])
    return [flow(T.SERVICE, PRIO_DHCPV6, cookie(Owner.NETWORK, key),
                 [Controller(userdata=USERDATA_DHCPV6, meter_id=meter_id)],
                 match={R.NETWORK: key, "eth_type": ETH_IPV6, "ip_proto": 17, "ipv6_dst": ALL_DHCP_SERVERS,
                        "udp_src": 546, "udp_dst": 547})]


def compile_owner(view: View, ctx, owner: int, feature: str, meter_id: int = 0) -> list[Flow]:
    """Flows of a network owner for "ra" or "dhcp6" on ctx's chassis."""
    try:
        kind, key = cookie_owner(owner)
    except ValueError:
        return []
    if kind != Owner.NETWORK:
        return []
    net = _network(view, ctx, key)
    if net is None:
        return []
    if feature == "ra":
        return rs_punt_flows(view, ctx, net, meter_id)
    return dhcpv6_punt_flows(view, ctx, net, meter_id)


def owners_on_chassis(view: View, ctx) -> list[int]:
    """Networks with a local port here (the same set the ARP punts use)."""
    return local_network_cookies(view, ctx)


def _net_cookie(view: View, net_id: str | None) -> set[int]:
    net = view.get(NETWORK, net_id)
    return {cookie(Owner.NETWORK, int(net["_key"]))} if net and net.get("_key") is not None else set()


def owners_changed(view: View, change: Change) -> set[int]:
    """A network's punts change with the network itself, its subnets and its (router) ports."""
    out: set[int] = set()
    for r in change.records():
        if change.kind == NETWORK and r.get("_key") is not None:
            out.add(cookie(Owner.NETWORK, int(r["_key"])))
        elif change.kind in (SUBNET, PORT):
            out |= _net_cookie(view, r.get("network_id"))
    return out
