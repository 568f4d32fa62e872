"""Flat and VLAN provider networks: the uplink of a bridge mapping, VLAN push/pop, MAC learning.

Why learning in the datapath: hosts outside OpenStack on a provider network are unknown to the
store. The uplink classify flow runs `learn`, installing "metadata + eth_dst=<their MAC> →
reg7=UPLINK_PORT_KEY" into L2_LEARN (cookie Owner.LEARNED, idle timeout), so forwarding to them
never waits for the controller and entries age out. Unknown unicast consults L2_LEARN by
resubmit and floods when nothing was learned (learned flows cannot goto, so the VLAN tag is
pushed by the network's OUTPUT flow, not by the learned flow).

Ports of a provider network on other chassis are reached through the physical network (the
uplink), never a tunnel.
"""
from __future__ import annotations

from flows.flow import (Action, GotoTable, Learn, LearnSpec, Output, PopVlan, PushVlan, Resubmit, SetField,
                        WriteMetadata, Flow, flow)
from flows.tables import F, R, T, UPLINK_PORT_KEY, Owner, cookie
from flows.view_helpers import (network_cookie, network_present, network_type, port_cookie, port_mac,
                                remote_chassis, segmentation_id)
from topology.store import Record
from topology.view import View

VLAN_PRESENT = 0x1000
LEARN_IDLE_TIMEOUT = 300
LEARN_PRIORITY = 100
UPLINK_CLASSIFY_PRIORITY = 100
UNKNOWN_UNICAST_PRIORITY = 10
LEARNED_TO_OUTPUT_PRIORITY = 280
UPLINK_OUTPUT_PRIORITY = 100
REMOTE_PORT_PRIORITY = 100


def uplink_ofport(ctx, net: Record) -> int | None:
    return ctx.uplinks.get(net.get("provider:physical_network") or "")


def vlan_vid(net: Record) -> int:
    """OpenFlow vlan_vid match/set value: VID | OFPVID_PRESENT for vlan, 0 (untagged) for flat."""
    return (segmentation_id(net) | VLAN_PRESENT) if network_type(net) == "vlan" else 0


def uplink_flood_actions() -> list:
    """Replication to the uplink: last in the action list, because OUTPUT may push a VLAN tag."""
    return [SetField(R.OUT_PORT, UPLINK_PORT_KEY), Resubmit(T.OUTPUT)]


def learn_action(net: Record) -> Learn:
    return Learn(
        table=T.L2_LEARN, priority=LEARN_PRIORITY, idle_timeout=LEARN_IDLE_TIMEOUT,
        cookie=cookie(Owner.LEARNED, net["_key"]),
        specs=(
            # metadata is written after apply-actions, so learn the network key as a constant.
            LearnSpec("match", dst="metadata", value=net["_key"], n_bits=64),
            LearnSpec("match", dst="eth_dst", src="eth_src", n_bits=48),
            LearnSpec("load", dst=R.OUT_PORT, value=UPLINK_PORT_KEY, n_bits=32),
        ))


def network_flows(view: View, ctx, net: Record) -> list[Flow]:
    """Uplink classify (+learn, pop VLAN), unknown unicast, learned → OUTPUT, OUTPUT to uplink."""
    uplink = uplink_ofport(ctx, net)
    if uplink is None:
        return []
    key, ck, vid = net["_key"], network_cookie(net), vlan_vid(net)
    classify: list[Action] = [learn_action(net)]
    out: list[Action] = [Output(uplink)]
    if vid:
        classify.append(PopVlan())
        out = [PushVlan(), SetField("vlan_vid", vid), Output(uplink)]
    classify += [SetField(R.FLAGS, F.FROM_UPLINK), WriteMetadata(key), GotoTable(T.L2_LOOKUP)]
    return [
        flow(T.CLASSIFY, UPLINK_CLASSIFY_PRIORITY, ck, classify, match=dict(in_port=uplink, vlan_vid=vid)),
        flow(T.L2_LOOKUP, UNKNOWN_UNICAST_PRIORITY, ck,
             [SetField(R.OUT_PORT, 0), Resubmit(T.L2_LEARN), GotoTable(T.L2_FLOOD)],
             match=dict(metadata=key)),
        flow(T.L2_FLOOD, LEARNED_TO_OUTPUT_PRIORITY, ck, [GotoTable(T.OUTPUT)],
             match={"metadata": key, R.OUT_PORT: UPLINK_PORT_KEY}),
        flow(T.OUTPUT, UPLINK_OUTPUT_PRIORITY, ck, out,
             match={"metadata": key, R.OUT_PORT: UPLINK_PORT_KEY}),
    ]


def remote_port_flows(view: View, ctx, net: Record, port: Record) -> list[Flow]:
    """A port of this provider network bound to another chassis: send its MAC out of the uplink."""
    mac = port_mac(port)
    if mac is None or uplink_ofport(ctx, net) is None or remote_chassis(view, ctx, port) is None:
        return []
    if not network_present(view, ctx, net["id"]):
        return []
    return [flow(T.L2_LOOKUP, REMOTE_PORT_PRIORITY, port_cookie(port),
                 [SetField(R.OUT_PORT, UPLINK_PORT_KEY), GotoTable(T.OUTPUT)],
                 match=dict(metadata=net["_key"], eth_dst=mac))]
