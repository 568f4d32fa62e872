"""Metadata service flows: every VM reaches 169.254.169.254:80 on-link, answered on its own chassis.

Design (like OVN's metadata agent, lighter): one OVS internal port per chassis, `tap-meta`, in one
namespace run by `tenantflow node metadata-agent` (controller/metadata_agent.py), holding
169.254.169.254 with the proxy listening on port 80. OVN gives every network its own namespace
and port; here one port serves every network, so the flows must keep each request identifiable
even when tenants reuse addresses. They do it statelessly, by rewriting the source:

  VM (port key K, its i-th IPv4 fixed IP A) → 169.254.169.254:80
     SERVICE  reg6=K, ipv4_src=A, ipv4_dst=169.254.169.254, tcp_dst=80
              → ipv4_src := pool(K, i), eth_dst := METADATA_MAC, output tap-meta
  tap-meta → pool(K, i)
     CLASSIFY in_port=tap-meta, ipv4_src=169.254.169.254, tcp_src=80, ipv4_dst=pool(K, i)
              → ipv4_dst := A, eth_src := METADATA_MAC, eth_dst := the port's MAC, output its ofport

pool(K, i) = 100.64.0.0 | K << 4 | i (100.64.0.0/10: port keys are 16 bits, 4 bits index the
port's IPv4 addresses). The pool never leaves the namespace, so it cannot clash with tenant
addresses; the agent decodes the peer address of each HTTP request back to (port key, index) and
asks the API which port that is. A VM cannot forge its identity: the source is rewritten from
reg6 (the ingress port, set by CLASSIFY), after port security, and only its own fixed IPs match.

ARP for 169.254.169.254 is answered in the switch (no packet-in) on every network present here,
with METADATA_MAC, so no router is needed; with a router the VM sends to the gateway MAC and the
SERVICE flow (which ignores eth_dst) still catches the request before routing.

Everything is gated on the chassis having a metadata agent (`ctx.metadata_port`, the ofport of
tap-meta seen on the bridge): no agent, no flows, and the traffic takes its ordinary path.
The request bypasses the port's egress conntrack and security groups (like Neutron's
isolated-network metadata proxy reached on the DHCP port's address, which is always allowed).
"""
from __future__ import annotations

import ipaddress
from typing import Any, Iterable

from flows.flow import Flow, Output, SetField, flow
from flows.arp_responder import reply_actions
from flows.tables import Owner, R, T, cookie, cookie_owner
from flows.view_helpers import is_vm_port, network_present
from topology.store import NETWORK, PORT, Change
from topology.view import View

Record = dict[str, Any]

METADATA_IFNAME = "tap-meta"          # the agent's OVS internal port (one per chassis)
METADATA_NAMESPACE = "tf-metadata"    # the agent's network namespace
METADATA_IP = "169.254.169.254"
METADATA_TCP_PORT = 80
METADATA_MAC = "0a:58:a9:fe:a9:fe"    # locally administered: the service's MAC on every network
GATEWAY_IP = "169.254.0.1"            # inside the namespace: next hop of every answer (never ARPed)
GATEWAY_MAC = "0a:58:a9:fe:00:01"
POOL = ipaddress.IPv4Network("100.64.0.0/10")
IPS_PER_PORT = 16                     # IPv4 fixed IPs of one port that get metadata (4 bits)
KEY_BITS = 16

PRIO_REQUEST = 320   # SERVICE, above the DHCP punt (300)
PRIO_ARP = 260       # SERVICE, above the ARP responders (250)
PRIO_REPLY = 200     # CLASSIFY, above the port classify (100); in_port=tap-meta only

ETH_IP = 0x0800
ETH_ARP = 0x0806
IPPROTO_TCP = 6

_META_IP = int(ipaddress.IPv4Address(METADATA_IP))
_META_MAC = int(METADATA_MAC.replace(":", ""), 16)
_POOL_BASE = int(POOL.network_address)


def source_address(port_key: int, index: int) -> int:
    """The pool address standing for (port key, index of the port's IPv4 fixed IP)."""
    if not (0 < port_key < (1 << KEY_BITS)) or not (0 <= index < IPS_PER_PORT):
        raise ValueError(f"no pool address for port key {port_key} index {index}")
    return _POOL_BASE | (port_key << 4) | index


def decode_source(address: str) -> tuple[int, int] | None:
    """Inverse of source_address: (port key, index), or None for an address outside the pool."""
    try:
        ip = ipaddress.IPv4Address(address)
    except ValueError:
        return None
    if ip not in POOL:
        return None
    value = int(ip) - _POOL_BASE
    key, index = value >> 4, value & 0xF
    return (key, index) if 0 < key < (1 << KEY_BITS) else None


def port_ipv4s(port: Record) -> list[str]:
    """The port's IPv4 fixed IPs in API order: index i here is index i of source_address."""
    out = []
    for fip in port.get("fixed_ips") or ():
        try:
            ipaddress.IPv4Address(fip.get("ip_address") or "")
        except ValueError:
            continue
        out.append(fip["ip_address"])
    return out[:IPS_PER_PORT]


def serves(port: Record) -> bool:
    """Instances only: router, DHCP and other network:* ports do not fetch metadata."""
    return is_vm_port(port) and port.get("_key") is not None


def _mac(text: str) -> int:
    return int(text.replace(":", ""), 16)


def port_flows(ctx, port: Record) -> list[Flow]:
    """Request steering (SERVICE) and answer delivery (CLASSIFY) of one local port."""
    meta = ctx.metadata_port
    ofport = ctx.local_ports.get(port.get("id"))
    if not meta or ofport is None or not serves(port) or not port.get("mac_address"):
        return []
    key = int(port["_key"])
    if not 0 < key < (1 << KEY_BITS):
        return []
    ck = cookie(Owner.PORT, key)
    out = []
    for i, ip in enumerate(port_ipv4s(port)):
        src = source_address(key, i)
        vm_ip = int(ipaddress.IPv4Address(ip))
        out.append(flow(T.SERVICE, PRIO_REQUEST, ck,
                        [SetField("ipv4_src", src), SetField("eth_dst", _META_MAC), Output(meta)],
                        match={R.IN_PORT: key, "eth_type": ETH_IP, "ip_proto": IPPROTO_TCP,
                               "ipv4_src": vm_ip, "ipv4_dst": _META_IP, "tcp_dst": METADATA_TCP_PORT}))
        out.append(flow(T.CLASSIFY, PRIO_REPLY, ck,
                        [SetField("ipv4_dst", vm_ip), SetField("eth_src", _META_MAC),
                         SetField("eth_dst", _mac(port["mac_address"].lower())), Output(ofport)],
                        match={"in_port": meta, "eth_type": ETH_IP, "ip_proto": IPPROTO_TCP,
                               "ipv4_src": _META_IP, "tcp_src": METADATA_TCP_PORT, "ipv4_dst": src}))
    return out


def network_flows(net: Record) -> list[Flow]:
    """ARP for 169.254.169.254 answered in the switch with METADATA_MAC."""
    key = int(net["_key"])
    return [flow(T.SERVICE, PRIO_ARP, cookie(Owner.NETWORK, key), reply_actions(_META_IP, _META_MAC),
                 match={R.NETWORK: key, "eth_type": ETH_ARP, "arp_op": 1, "arp_tpa": _META_IP})]


def compile_owner(view: View, ctx, owner: int) -> list[Flow]:
    if not ctx.metadata_port:
        return []
    try:
        kind, key = cookie_owner(owner)
    except ValueError:
        return []
    if kind == Owner.PORT:
        port = view.by_key(PORT, key)
        return port_flows(ctx, port) if port is not None else []
    if kind == Owner.NETWORK:
        net = view.by_key(NETWORK, key)
        if net is None or net.get("_key") is None or not network_present(view, ctx, net["id"]):
            return []
        return network_flows(net)
    return []


def owners_on_chassis(view: View, ctx) -> list[int]:
    if not ctx.metadata_port:
        return []
    out: set[int] = set()
    for pid in ctx.local_ports:
        port = view.get(PORT, pid)
        if port is None or not serves(port):
            continue
        out.add(cookie(Owner.PORT, int(port["_key"])))
        net = view.get(NETWORK, port.get("network_id"))
        if net is not None and net.get("_key") is not None:
            out.add(cookie(Owner.NETWORK, int(net["_key"])))
    return sorted(out)


def owners_changed(change: Change) -> Iterable[int]:
    """A port's own flows, a network's ARP flow (old and new keys)."""
    out: set[int] = set()
    for rec in change.records():
        if rec.get("_key") is None:
            continue
        if change.kind == PORT:
            out.add(cookie(Owner.PORT, int(rec["_key"])))
        elif change.kind == NETWORK:
            out.add(cookie(Owner.NETWORK, int(rec["_key"])))
    return out
