"""VXLAN / GRE / Geneve overlays: tunnel classify, unicast to remote ports, head-end replication.

One flow-based tunnel port per type on each bridge (remote_ip=flow, key=flow); the VNI/GRE key is
the network's segmentation id and the destination is set per flow. A packet is tunnelled once,
straight to the chassis of its destination port; that chassis re-enters it at L2_LOOKUP, so
its ingress security is enforced there. Packets that came from a tunnel are never tunnelled
again (no loops when two chassis briefly disagree about where a port lives).
"""
from __future__ import annotations

from flows.fields import ipv4
from flows.flow import Flow, GotoTable, Output, SetField, WriteMetadata, flow
from flows.tables import F, R, T
from flows.view_helpers import (is_overlay, is_up, network_cookie, network_present, network_type,
                                port_cookie, port_mac, remote_chassis, remote_tunnel_ips, segmentation_id)
from topology.store import Record
from topology.view import View

TUNNEL_CLASSIFY_PRIORITY = 100
REMOTE_PORT_PRIORITY = 100


def tunnel_ofport(ctx, net: Record) -> int | None:
    return ctx.tunnel_ports.get(network_type(net))


def replication_actions(view: View, ctx, net: Record) -> list:
    """Head-end replication: one copy per other chassis that has ports on the network."""
    ofport = tunnel_ofport(ctx, net)
    if ofport is None:
        return []
    ips = remote_tunnel_ips(view, ctx, net["id"])
    if not ips:
        return []
    actions: list = [SetField("tunnel_id", segmentation_id(net))]
    for ip in ips:
        actions += [SetField("tun_ipv4_dst", ipv4(ip)), Output(ofport)]
    return actions


def network_flows(view: View, ctx, net: Record) -> list[Flow]:
    """Tunnel classify: in_port=tunnel, tun_id=VNI → metadata, FROM_TUNNEL, goto L2_LOOKUP."""
    if not is_overlay(net) or not is_up(net):
        return []
    ofport = tunnel_ofport(ctx, net)
    if ofport is None or not network_present(view, ctx, net["id"]):
        return []
    return [flow(T.CLASSIFY, TUNNEL_CLASSIFY_PRIORITY, network_cookie(net),
                 [SetField(R.FLAGS, F.FROM_TUNNEL), WriteMetadata(net["_key"]), GotoTable(T.L2_LOOKUP)],
                 match=dict(in_port=ofport, tunnel_id=segmentation_id(net)))]


def remote_port_flows(view: View, ctx, port: Record) -> list[Flow]:
    """L2_LOOKUP entry for an overlay port bound to another chassis: tunnel straight there."""
    net = view.network(port.get("network_id"))
    if net is None or not is_overlay(net) or not (is_up(net) and is_up(port)):
        return []
    mac, ofport = port_mac(port), tunnel_ofport(ctx, net)
    chassis = remote_chassis(view, ctx, port)
    if mac is None or ofport is None or chassis is None or not chassis.get("tunnel_ip"):
        return []
    if not network_present(view, ctx, net["id"]):
        return []
    return [flow(T.L2_LOOKUP, REMOTE_PORT_PRIORITY, port_cookie(port),
                 [SetField(R.OUT_PORT, port["_key"]), SetField("tunnel_id", segmentation_id(net)),
                  SetField("tun_ipv4_dst", ipv4(chassis["tunnel_ip"])), Output(ofport)],
                 match={"metadata": net["_key"], "eth_dst": mac, R.FLAGS: (0, F.FROM_TUNNEL)})]
