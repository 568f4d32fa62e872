"""ARP responder and DHCP punt flows in table SERVICE, and the address index they are built from.

Why ARP is answered in the switch (OVN's ls_in_arp_rsp, Neutron l2population's arp_responder):
the controller round trip capped answers at the packet-in rate (≈5k/s, docs/performance.md);
a responder flow rewrites the request into the reply and sends it back out of IN_PORT, at
datapath speed, with no packet-in and no punt meter. SERVICE comes after PORT_SEC, so a
spoofed request is dropped before it is answered. Only DHCP still goes to the controller.

Why these owners:
- DHCP punt (`reg6=<port>, udp 68→67 → controller`) belongs to the port: it exists only on the
  chassis where the port is local and only while the port has an address on a DHCP subnet.
- ARP flows belong to the *network*: one responder per known IPv4 address in that network, on
  every chassis that has a local port in it. Owning them by the network keeps one address = one
  flow key even when several ports claim the same address (allowed address pairs), so owners
  never collide on a key; recomputing a network is O(its addresses).

Priorities inside SERVICE (miss → EGRESS_CT, emitted by the base pipeline):
  300 DHCP client request from a local port                → controller "dhcp"
  255 ARP request from a local port for its own address    → drop (DAD/ACD probe, gratuitous:
      answering would make the VM think its address is taken; no one else holds it)
  250 ARP request for an address with exactly one owner    → answered in the switch (reply
      "IP is-at MAC", output IN_PORT)
  240 ARP request for an address claimed by several ports  → pass (normal L2: VIP failover)
  220 ARP request inside an allowed-address-pair CIDR      → pass
  100 any other ARP request on an overlay/local network    → drop (every address is known)
Provider (flat/vlan) networks have no 100 drop: outside hosts answer for themselves.
(flows/metadata.py adds 260: ARP for 169.254.169.254, answered the same way.)
"""
from __future__ import annotations

import functools
import ipaddress
import logging
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from flows import qos
from flows.arp_responder import mac_int, reply_actions
from flows.fields import ipv4_int_fast
from flows.flow import Flow, GotoTable, flow, match_item
from flows.tables import Owner, R, T, cookie, cookie_owner
from flows.view_helpers import local_network_cookies, network_present
from topology.store import FLOATINGIP, NETWORK, PORT, ROUTER, SUBNET, Change
from topology.view import View

LOG = logging.getLogger(__name__)

USERDATA_DHCP = b"dhcp"

PRIO_DHCP = 300
PRIO_ARP_OWN = 255
PRIO_ARP_KNOWN = 250
PRIO_ARP_SHARED = 240
PRIO_ARP_CIDR = 220
PRIO_ARP_DROP = 100

ETH_ARP = 0x0806
ETH_IP = 0x0800
ARP_REQUEST = 1

OVERLAY_TYPES = frozenset({"vxlan", "gre", "geneve", "local"})
DEVICE_DHCP = "network:dhcp"
DEVICE_ROUTER_GW = "network:router_gateway"

Record = dict[str, Any]


# ------------------------------------------------------------------ address index
# Reads the controller's TopologyView (topology/view.py): get, records, by_key,
# ports_of_network, subnets_of_network, ports_of_device.

@dataclass(frozen=True, slots=True)
class Answer:
    """Who holds an address: the MAC to answer with and the port (if any) that owns it."""
    mac: str
    port_id: str | None
    port_key: int | None = None  # the owner's reg6 key (its own-address probes are not answered)


@dataclass
class NetworkIndex:
    """The addresses of one network; built from the view, read-only afterwards.

    Packet-in handlers read it from other threads, so it is never mutated after build.
    """
    network: Record
    known: dict[int, Answer] = field(default_factory=dict)   # unique owner → answer
    shared: set[int] = field(default_factory=set)            # claimed by several MACs → pass
    cidrs: set[tuple[int, int]] = field(default_factory=set)  # AAP CIDRs → pass
    dhcp_port: Record | None = None

    @property
    def key(self) -> int:
        return int(self.network.get("_key", 0))

    @property
    def is_overlay(self) -> bool:
        return (self.network.get("provider:network_type") or "vxlan") in OVERLAY_TYPES


def ip_int(text: str | None) -> int | None:
    """IPv4 text → int, None for anything else (IPv6, garbage)."""
    if type(text) is str:
        return _ip_int_of_text(text)
    try:
        return int(ipaddress.IPv4Address(text)) if text else None
    except ValueError:
        return None


@functools.lru_cache(maxsize=1 << 16)
def _ip_int_of_text(text: str) -> int | None:
    """ip_int of a string, cached: a port's address is parsed by its DHCP punt, its network's ARP
    index and the chassis listing, on every compile (≈ 10 µs per parse)."""
    n = ipv4_int_fast(text)
    if n is not None or not text:
        return n
    try:
        return int(ipaddress.IPv4Address(text))
    except ValueError:
        return None


def _mac(text: str | None) -> str:
    return (text or "").lower()


def build_network_index(view: View, network: Record) -> NetworkIndex:
    """O(ports of the network) (+ floating IPs for an external network)."""
    ni = NetworkIndex(network)
    claims: dict[int, set[tuple[str, str | None]]] = {}
    keys: dict[str, int] = {}
    for port in sorted(view.ports_of_network(network["id"]), key=lambda p: p["id"]):
        if port.get("device_owner") == DEVICE_DHCP and ni.dhcp_port is None:
            ni.dhcp_port = port
        pmac = _mac(port.get("mac_address"))
        for fip in port.get("fixed_ips") or ():
            ip = ip_int(fip.get("ip_address"))
            if ip is not None:
                claims.setdefault(ip, set()).add((pmac, port["id"]))
        if port.get("_key") is not None:
            keys[port["id"]] = int(port["_key"])
        for pair in port.get("allowed_address_pairs") or ():
            try:
                net = ipaddress.IPv4Network(pair.get("ip_address") or "", strict=False)
            except ValueError:
                continue  # IPv6 or garbage: nothing to answer over ARP
            if net.prefixlen == 32:
                mac = _mac(pair.get("mac_address")) or pmac
                claims.setdefault(int(net.network_address), set()).add((mac, port["id"]))
            else:
                ni.cidrs.add((int(net.network_address), int(net.netmask)))
    if network.get("router:external"):
        _claim_floating_ips(view, network["id"], claims)
    for ip, holders in claims.items():
        if len({m for m, _ in holders}) == 1:
            mac, pid = sorted(holders, key=lambda h: h[1] or "")[0]
            ni.known[ip] = Answer(mac, pid, keys.get(pid) if pid else None)
        else:
            ni.shared.add(ip)
    return ni


def _claim_floating_ips(view: View, net_id: str, claims: dict) -> None:
    """An associated floating IP is answered with its router's gateway port MAC."""
    for fip in list(view.records(FLOATINGIP).values()):
        if fip.get("floating_network_id") != net_id or not fip.get("router_id"):
            continue
        ip = ip_int(fip.get("floating_ip_address"))
        gw = [p for p in view.ports_of_device(fip["router_id"])
              if p.get("device_owner") == DEVICE_ROUTER_GW and p.get("network_id") == net_id]
        if ip is not None and gw:
            claims.setdefault(ip, set()).add((_mac(gw[0].get("mac_address")), None))


def dhcp_subnet(view: View, port: Record) -> tuple[Record, str] | None:
    """The port's first IPv4 fixed IP on a DHCP-enabled subnet: (subnet, ip)."""
    for fip in port.get("fixed_ips") or ():
        sn = view.get(SUBNET, fip.get("subnet_id"))
        if sn is None or not sn.get("enable_dhcp", True) or int(sn.get("ip_version", 4)) != 4:
            continue
        if ip_int(fip.get("ip_address")) is not None:
            return sn, fip["ip_address"]
    return None


def network_index(view: View, net_id: str | None) -> NetworkIndex | None:
    """The addresses of a network, built afresh from the view (O(its ports)): a compile reads
    them through the view, so the incremental engine knows the ARP owner depends on them."""
    net = view.get(NETWORK, net_id)
    return build_network_index(view, net) if net is not None else None


# ------------------------------------------------------------------ flows

def dhcp_punt_flows(view: View, ctx, port: Record, meter_id: int = 0,
                    meters: qos.PuntMeters = qos.DEFAULT_PUNT_METERS) -> list[Flow]:
    """The DHCP punt of a local port with an address on a DHCP-enabled subnet."""
    if port.get("id") not in ctx.local_ports or port.get("_key") is None:
        return []
    if dhcp_subnet(view, port) is None:
        return []
    key = int(port["_key"])
    return [flow(T.SERVICE, PRIO_DHCP, cookie(Owner.PORT, key),
                 [qos.punt(USERDATA_DHCP, meter_id, meters.dhcp(key, USERDATA_DHCP))],  # per-port punt meter
                 match={R.IN_PORT: key, "eth_type": ETH_IP, "ip_proto": 17,
                        "udp_src": 68, "udp_dst": 67})]


def arp_flows(ni: NetworkIndex, local_ports: Mapping[str, int] | None = None) -> list[Flow]:
    """All ARP flows of one network (to be installed where it has local ports); `local_ports`
    (ctx.local_ports): owners whose own-address probes are dropped (only a local port's request
    reaches SERVICE on this chassis).

    Built straight from canonical match tuples (the fields' sorted order is fixed: arp_op <
    arp_tpa < eth_type < metadata < reg6), not through flow()/make_match per address: this runs
    for every address of the network each time one of its ports changes."""
    ck = cookie(Owner.NETWORK, ni.key)
    head = (match_item("arp_op", ARP_REQUEST),)
    tail = (match_item("eth_type", ETH_ARP), match_item(R.NETWORK, ni.key))
    passing = (GotoTable(T.EGRESS_CT),)
    out = []
    for ip in sorted(ni.known):
        ans = ni.known[ip]
        try:
            mac = mac_int(ans.mac)
        except ValueError:  # no MAC yet / not a MAC: nothing to answer with (request dropped at 100)
            LOG.warning("network key %s: no ARP responder for %s, owner %s has MAC %r",
                        ni.key, ipaddress.IPv4Address(ip), ans.port_id, ans.mac)
            continue
        tpa = (match_item("arp_tpa", ip),)
        out.append(Flow(T.SERVICE, PRIO_ARP_KNOWN, head + tpa + tail, reply_actions(ip, mac), ck))
        if ans.port_key is not None and local_ports is not None and ans.port_id in local_ports:
            out.append(Flow(T.SERVICE, PRIO_ARP_OWN,
                            head + tpa + tail + (match_item(R.IN_PORT, ans.port_key),), (), ck))
    out += [Flow(T.SERVICE, PRIO_ARP_SHARED, head + (match_item("arp_tpa", ip),) + tail, passing, ck)
            for ip in sorted(ni.shared)]
    out += [flow(T.SERVICE, PRIO_ARP_CIDR, ck, passing,
                 match={R.NETWORK: ni.key, "eth_type": ETH_ARP, "arp_op": ARP_REQUEST, "arp_tpa": (net, mask)})
            for net, mask in sorted(ni.cidrs)]
    if ni.is_overlay:
        out.append(Flow(T.SERVICE, PRIO_ARP_DROP, head + tail, (), ck))
    return out


def compile_owner(view: View, ctx, owner: int, feature: str,
                  meter_id: int = 0, meters: qos.PuntMeters = qos.DEFAULT_PUNT_METERS) -> list[Flow]:
    """Flows of `owner` for one feature ("arp" or "dhcp") on ctx's chassis; `meters`: the DHCP
    punt meters' bands from the controller's settings (apps.punt.PuntApp.configure)."""
    try:
        kind, key = cookie_owner(owner)
    except ValueError:
        return []
    if feature == "dhcp" and kind == Owner.PORT:
        port = view.by_key(PORT, key)
        return dhcp_punt_flows(view, ctx, port, meter_id, meters) if port else []
    if feature == "arp" and kind == Owner.NETWORK:
        net = view.by_key(NETWORK, key)
        if net is None or net.get("admin_state_up") is False:
            return []
        if not network_present(view, ctx, net["id"]):  # O(min(network ports, local ports))
            return []
        return arp_flows(build_network_index(view, net), ctx.local_ports)
    return []


def owners_on_chassis(view: View, ctx, feature: str) -> list[int]:
    out = []
    if feature == "arp":
        return local_network_cookies(view, ctx)
    for pid in ctx.local_ports:
        port = view.get(PORT, pid)
        if port is not None and port.get("_key") is not None and dhcp_subnet(view, port):
            out.append(cookie(Owner.PORT, int(port["_key"])))
    return sorted(out)


def _net_cookie(view: View, net_id: str | None) -> list[int]:
    net = view.get(NETWORK, net_id)
    return [cookie(Owner.NETWORK, int(net["_key"]))] if net and net.get("_key") is not None else []


def owners_changed(view: View, change: Change, feature: str) -> set[int]:
    """Owners whose ARP or DHCP flows may differ after `change` (old and new state both)."""
    recs = change.records()
    out: set[int] = set()
    if change.kind == NETWORK:
        for r in recs:
            if feature == "arp" and r.get("_key") is not None:
                out.add(cookie(Owner.NETWORK, int(r["_key"])))
    elif change.kind == PORT:
        for r in recs:
            if feature == "dhcp" and r.get("_key") is not None:
                out.add(cookie(Owner.PORT, int(r["_key"])))
            if feature == "arp":  # its addresses, or (router gateway) its floating IPs' MAC
                out.update(_net_cookie(view, r.get("network_id")))
    elif change.kind == SUBNET:
        for r in recs:
            if feature == "dhcp":
                out.update(cookie(Owner.PORT, int(p["_key"]))
                           for p in view.ports_of_network(r.get("network_id"))
                           if p.get("_key") is not None)
            else:
                out.update(_net_cookie(view, r.get("network_id")))
    elif change.kind == FLOATINGIP and feature == "arp":
        for r in recs:
            out.update(_net_cookie(view, r.get("floating_network_id")))
    elif change.kind == ROUTER and feature == "arp":
        for r in recs:
            gw = r.get("external_gateway_info") or {}
            out.update(_net_cookie(view, gw.get("network_id")))
    return out


_HOSTNAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")


def hostname_for(port: Record, ip: str) -> str:
    """Port name when it is a valid DNS label, else Neutron's `host-<ip with dashes>`."""
    name = port.get("name") or ""
    if _HOSTNAME.match(name):
        return name
    return "host-" + ip.replace(".", "-")
