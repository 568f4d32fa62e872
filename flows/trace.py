"""Trace a packet from a port through the desired flows of every chassis (`tenantflow trace`).

Why on the desired flows and the offline simulator, not on the switch: the question an operator asks
is "what did the controller mean to happen to this packet?" — stage by stage, with the object
(network, port, router, security group) that owns each flow. `ovs-appctl ofproto/trace` answers
"what does this switch do", in OpenFlow terms only; `--check-switch` runs it beside ours.

PURE: a view, the chassis contexts and their flows in; a `Trace` (stages and a verdict) out.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

from flows.flow import Flow
from flows.simulator import Fabric, Simulator, SimulationLimit, packet
from flows.tables import R, T, Owner, split_cookie

ETH_IP, ETH_ARP = 0x0800, 0x0806
PROTOS = {"icmp": 1, "tcp": 6, "udp": 17}
BROADCAST = "ff:ff:ff:ff:ff:ff"
ROUTER_OWNERS = ("network:router_interface", "network:router_interface_distributed",
                 "network:ha_router_replicated_interface")

OwnerName = Callable[[int], str]   # cookie → "port web-1 (id)" etc.


class TraceError(ValueError):
    """The probe cannot be built (unknown port, no address, no route on the port's subnet)."""


@dataclass(frozen=True)
class Probe:
    """What to send: from a port, to an address."""
    port_id: str
    dst_ip: str
    src_ip: str | None = None
    proto: str = "icmp"                 # icmp | tcp | udp | arp
    dst_port: int | None = None
    dst_mac: str | None = None          # default: what the VM would resolve (destination or router)


@dataclass
class Stage:
    chassis: str
    table: int
    stage: str
    flow: str | None                    # ofctl text of the matching flow, None = table miss
    owner: str | None
    depth: int


@dataclass
class Trace:
    probe: Probe
    chassis: str
    packet: dict[str, str]
    stages: list[Stage] = field(default_factory=list)
    verdict: str = ""
    kind: str = ""                      # delivered | answered | dropped | controller | external
    deliveries: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"chassis": self.chassis, "packet": self.packet, "verdict": self.verdict, "kind": self.kind,
                "deliveries": self.deliveries,
                "stages": [s.__dict__ for s in self.stages]}


def stage_name(table: int) -> str:
    return T(table).name if table in T._value2member_map_ else f"table{table}"


def _ipv4_interface(subnet: Mapping[str, Any]) -> ipaddress.IPv4Network | None:
    try:
        net = ipaddress.ip_network(subnet["cidr"])
    except (KeyError, ValueError):
        return None
    return net if isinstance(net, ipaddress.IPv4Network) else None


def _port_ipv4(port: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(subnet_id, ip) of the port's IPv4 fixed IPs."""
    out = []
    for fip in port.get("fixed_ips") or ():
        try:
            if ipaddress.ip_address(fip["ip_address"]).version == 4:
                out.append((fip["subnet_id"], fip["ip_address"]))
        except (KeyError, ValueError):
            continue
    return out


def _next_hop_mac(view, port: Mapping[str, Any], subnet: Mapping[str, Any], dst: ipaddress.IPv4Address) -> str:
    """The MAC the VM would address: the destination's (same subnet) or its router's (gateway)."""
    net = _ipv4_interface(subnet)
    if dst.is_multicast or dst == ipaddress.IPv4Address("255.255.255.255") or \
            (net is not None and dst == net.broadcast_address):
        return BROADCAST
    if net is not None and dst in net:
        for other in view.ports_by_ip(str(dst), port["network_id"]):
            return str(other["mac_address"])
        for other in view.ports_by_ip(str(dst)):   # same address on another network: isolation says no
            return str(other["mac_address"])
        raise TraceError(f"no port has {dst} (the VM's ARP would go unanswered; try --proto arp)")
    gw = subnet.get("gateway_ip")
    for other in view.ports_by_ip(gw, port["network_id"]) if gw else ():
        if other.get("device_owner") in ROUTER_OWNERS:
            return str(other["mac_address"])
    raise TraceError(f"{dst} is off subnet {subnet.get('cidr')} and no router interface holds its gateway "
                     f"{gw or '(none)'}: the VM has no route")


def build_packet(view, probe: Probe) -> dict[str, int]:
    """The frame the port's VM would send for `probe` (src = the port's first IPv4 address)."""
    port = view.port(probe.port_id)
    if port is None:
        raise TraceError(f"port {probe.port_id} not found")
    addrs = _port_ipv4(port)
    if probe.src_ip is None and not addrs:
        raise TraceError(f"port {probe.port_id} has no IPv4 address: give --src-ip")
    try:
        dst = ipaddress.IPv4Address(probe.dst_ip)
        src = ipaddress.IPv4Address(probe.src_ip or addrs[0][1])
    except ValueError as exc:
        raise TraceError(f"not an IPv4 address: {exc}") from None
    mac = str(port["mac_address"])
    if probe.proto == "arp":
        return packet(eth_src=mac, eth_dst=BROADCAST, eth_type=ETH_ARP, arp_op=1, arp_sha=mac,
                      arp_spa=str(src), arp_tpa=str(dst), arp_tha="00:00:00:00:00:00")
    if probe.proto not in PROTOS:
        raise TraceError(f"proto must be one of icmp, tcp, udp, arp (got {probe.proto!r})")
    subnet = None
    for sid, ip in addrs:
        if ip == str(src):
            subnet = view.subnet(sid)
    if subnet is None and addrs:
        subnet = view.subnet(addrs[0][0])
    if subnet is None:
        subnet = {"cidr": "0.0.0.0/32", "gateway_ip": None}
    eth_dst = probe.dst_mac or _next_hop_mac(view, port, subnet, dst)
    fields: dict[str, Any] = dict(eth_src=mac, eth_dst=eth_dst, eth_type=ETH_IP, ipv4_src=str(src),
                                  ipv4_dst=str(dst), ip_proto=PROTOS[probe.proto])
    if probe.proto == "icmp":
        fields.update(icmpv4_type=8, icmpv4_code=0)
    else:
        dst_port = probe.dst_port or 80
        src_port = 68 if (probe.proto, dst_port) == ("udp", 67) else 40000   # a DHCP client's port
        fields.update({f"{probe.proto}_src": src_port, f"{probe.proto}_dst": dst_port})
    pkt = packet(**fields)
    pkt["ip_ttl"] = 64
    return pkt


_DECIMAL = {"tcp_src", "tcp_dst", "udp_src", "udp_dst", "icmpv4_type", "icmpv4_code", "ip_proto", "arp_op"}


def packet_text(pkt: Mapping[str, int]) -> dict[str, str]:
    """Header fields as people write them: addresses as text, ports and types in decimal."""
    from flows.fields import format_value
    return {k: str(v) if k in _DECIMAL else format_value(k, v) for k, v in sorted(pkt.items()) if k != "ip_ttl"}


@dataclass(frozen=True)
class ChassisFlows:
    ctx: Any            # apps.base.ChassisContext (flows/ stays free of apps/ imports)
    flows: tuple[Flow, ...]


def run(view, probe: Probe, chassis: Iterable[ChassisFlows], owner_name: OwnerName,
        app_of_userdata: Mapping[bytes, str]) -> Trace:
    """Walk `probe` from its port's chassis through every chassis it reaches, and judge the result."""
    by_name = {c.ctx.name: c for c in chassis}
    port = view.port(probe.port_id)
    if port is None:
        raise TraceError(f"port {probe.port_id} not found")
    start = next((c for c in by_name.values() if c.ctx.local_ports.get(probe.port_id) is not None), None)
    if start is None:
        raise TraceError(f"port {probe.port_id} is not plugged on any connected chassis")
    pkt = build_packet(view, probe)
    fabric = Fabric()
    for c in by_name.values():
        fabric.add_chassis(c.ctx.name, Simulator(c.flows, strict=False), c.ctx.tunnel_ip,
                           c.ctx.tunnel_ports, c.ctx.uplinks)
    out = Trace(probe, start.ctx.name, packet_text(pkt))
    try:
        deliveries = fabric.send(start.ctx.name, start.ctx.local_ports[probe.port_id], pkt)
    except SimulationLimit as exc:
        out.kind, out.verdict = "dropped", f"dropped: loop ({exc})"
        return out
    for hop in fabric.hops:
        for s in hop.result.trace:
            out.stages.append(Stage(hop.chassis, s.table, stage_name(s.table), s.flow.ofctl() if s.flow else None,
                                    owner_name(s.flow.cookie) if s.flow else None, s.depth))
    port_of = {(c.ctx.name, ofport): pid for c in by_name.values() for pid, ofport in c.ctx.local_ports.items()
               if ofport is not None}
    delivered, answered = [], []
    for d in deliveries:
        pid = port_of.get((d.chassis, d.port))
        if pid is not None and pid == probe.port_id:  # hairpinned: an in-switch responder (ARP)
            answered.append(d.chassis)
        if pid is not None and pid != probe.port_id:
            delivered.append(f"port {pid} on {d.chassis}")
            out.deliveries.append({"chassis": d.chassis, "port_id": pid, "packet": packet_text(d.packet)})
        elif d.chassis.startswith("physnet:"):
            out.deliveries.append({"chassis": d.chassis, "port_id": None, "packet": packet_text(d.packet)})
    punts = [(h.chassis, p) for h in fabric.hops for p in h.result.punts]
    if delivered:
        out.kind, out.verdict = "delivered", "delivered to " + ", ".join(delivered)
    elif answered:
        out.kind, out.verdict = "answered", f"answered by the switch on {answered[0]} (reply back to the port)"
    elif punts:
        ch, p = punts[0]
        out.kind = "controller"
        out.verdict = f"to controller ({app_of_userdata.get(p.userdata, p.userdata.decode(errors='replace'))}" \
                      f" on {ch})"
    elif out.deliveries:
        ext = out.deliveries[0]
        src = ext["packet"].get("ipv4_src", "?")
        out.kind, out.verdict = "external", f"sent to external network {ext['chassis'][8:]} (source {src})"
    else:
        out.kind, out.verdict = "dropped", "dropped by " + _drop_reason(view, fabric, owner_name)
    return out


def _drop_reason(view, fabric: Fabric, owner_name: OwnerName) -> str:
    """Name the last stage a dropped packet reached, and the object whose policy ended it."""
    last = None
    for hop in fabric.hops:
        if hop.result.trace:
            last = (hop.chassis, hop.result.trace[-1])
    if last is None:
        return "the switch (no flow at all)"
    ch, step = last
    stage = stage_name(step.table)
    if step.table in (T.EGRESS_SG, T.INGRESS_SG):
        reg = R.IN_PORT if step.table == T.EGRESS_SG else R.OUT_PORT
        port = view.by_key("port", step.packet.get(reg, 0))
        who = f"port {port['id']}" if port else "the port"
        groups = ", ".join((port or {}).get("security_groups") or ()) or "none"
        direction = "egress" if step.table == T.EGRESS_SG else "ingress"
        return f"security groups of {who} ({direction}: no rule of [{groups}] allows it) on {ch}"
    if step.table == T.PORT_SEC:
        return f"port security ({stage}: source address not allowed for the port) on {ch}"
    if step.table in (T.L2_LOOKUP, T.L2_FLOOD):
        net = view.by_key("network", step.packet.get(R.NETWORK, 0))
        where = f"network {net['id']}" if net else "this network"
        return f"isolation ({stage}: destination MAC is not on {where}) on {ch}"
    if step.flow is None:
        return f"{stage} (table miss) on {ch}"
    kind, _ = split_cookie(step.flow.cookie)
    owner = owner_name(step.flow.cookie) if kind is not Owner.PIPELINE else "the pipeline"
    return f"{stage} ({owner}: {step.flow.ofctl()}) on {ch}"
