"""L2 switching: a local port's own flows, and a network's flood (replication) flows.

Per local port (Owner.PORT, 5 flows; CLASSIFY and OUTPUT only once it is plugged — a port bound
here by binding:host_id has the other three before its tap appears):
  CLASSIFY   in_port=ofport → reg6=key, metadata=network key, goto PORT_SEC
  L2_LOOKUP  metadata+eth_dst=MAC → reg7=key, goto INGRESS_CT
  L2_FLOOD   reg6=key,reg7=key → drop            (never flood back to the sender)
  L2_FLOOD   reg7=key → goto INGRESS_CT          (one replica's way into the ingress stages)
  OUTPUT     reg7=key → output:ofport
Per network present here (Owner.NETWORK):
  L2_FLOOD   metadata,reg7=0[,eth_dst mcast] → for each local port: reg7=key, resubmit(,L2_FLOOD);
             then head-end replication to tunnels (not if it came from a tunnel) and the
             uplink (not if it came from the uplink), built by flows.overlay / flows.provider.
Replicas re-enter L2_FLOOD through per-port entries so that each one is checked against the
sender (reg6) and then runs the receiving port's ingress security like unicast does.
"""
from __future__ import annotations

from flows import overlay, provider
from flows.base import MULTICAST_BIT
from flows.flow import Flow, GotoTable, Output, Resubmit, SetField, WriteMetadata, flow
from flows.tables import F, R, T, Owner, cookie
from flows.view_helpers import (is_overlay, is_provider, is_up, local_ports_of_network, network_cookie,
                                network_present, port_cookie, port_mac)
from topology.store import Record
from topology.view import View

CLASSIFY_PRIORITY = 100
LOOKUP_PRIORITY = 100
HAIRPIN_PRIORITY = 300
REPLICA_PRIORITY = 290
FLOOD_PRIORITY = 100
FLOOD_FROM_OUTSIDE_PRIORITY = 110  # came from a tunnel/uplink: replicate to local ports only
OUTPUT_PRIORITY = 100

# Action objects every port's flows share (immutable values: one object each, not one per flow,
# so the GC has fewer long-lived objects to walk at 10,000 ports).
_GOTO_INGRESS_CT = GotoTable(T.INGRESS_CT)
_GOTO_PORT_SEC = GotoTable(T.PORT_SEC)
_TO_INGRESS = (_GOTO_INGRESS_CT,)
_RESUBMIT_FLOOD = Resubmit(T.L2_FLOOD)


def local_port_flows(net: Record, port: Record, ofport: int | None) -> list[Flow]:
    """The flows a port local to this chassis needs (see module docstring); `ofport` None:
    bound here, not plugged yet."""
    ck, key, net_key = port_cookie(port), port["_key"], net["_key"]
    flows = [
        flow(T.L2_FLOOD, HAIRPIN_PRIORITY, ck, [], match={R.IN_PORT: key, R.OUT_PORT: key}),
        flow(T.L2_FLOOD, REPLICA_PRIORITY, ck, _TO_INGRESS, match={R.OUT_PORT: key}),
    ]
    if ofport is not None:
        flows += [flow(T.CLASSIFY, CLASSIFY_PRIORITY, ck,
                       [SetField(R.IN_PORT, key), WriteMetadata(net_key), _GOTO_PORT_SEC],
                       match=dict(in_port=ofport)),
                  flow(T.OUTPUT, OUTPUT_PRIORITY, ck, [Output(ofport)], match={R.OUT_PORT: key})]
    mac = port_mac(port)
    if mac is not None:
        flows.append(flow(T.L2_LOOKUP, LOOKUP_PRIORITY, ck,
                          [SetField(R.OUT_PORT, key), _GOTO_INGRESS_CT],
                          match=dict(metadata=net_key, eth_dst=mac)))
    return flows


def port_flows(view: View, ctx, port: Record) -> list[Flow]:
    """A port's L2 flows on ctx's chassis: local flows, or a provider network's remote entry.

    (Overlay remote entries come from flows.overlay via the tunnels app.)
    """
    net = view.network(port.get("network_id"))
    if net is None or not (is_up(net) and is_up(port)):  # its network gone (or not yet seen): no flows
        return []
    if port["id"] in ctx.local_ports:
        return local_port_flows(net, port, ctx.local_ports[port["id"]])
    if is_provider(net):
        return provider.remote_port_flows(view, ctx, net, port)
    return []


def flood_flows(view: View, ctx, net: Record) -> list[Flow]:
    """The network's replication flows on this chassis (empty if the network isn't here)."""
    key = net["_key"]
    ck = network_cookie(net)
    locals_ = [p for p in local_ports_of_network(view, ctx, net["id"]) if is_up(p)]
    to_locals: list = []
    for port in locals_:
        to_locals += [SetField(R.OUT_PORT, port["_key"]), _RESUBMIT_FLOOD]
    if is_overlay(net):
        outside_flag = F.FROM_TUNNEL
        to_outside = overlay.replication_actions(view, ctx, net)
        scope = dict(eth_dst=(MULTICAST_BIT, MULTICAST_BIT))  # unknown unicast is dropped
    elif is_provider(net) and provider.uplink_ofport(ctx, net) is not None:
        outside_flag = F.FROM_UPLINK
        to_outside = provider.uplink_flood_actions()
        scope = {}  # broadcast and unknown unicast (L2_LEARN missed) both flood
    else:
        outside_flag, to_outside = 0, []
        scope = dict(eth_dst=(MULTICAST_BIT, MULTICAST_BIT))
    base_match = dict(metadata=key, **{R.OUT_PORT: 0}, **scope)
    flows = []
    if to_locals or to_outside:
        flows.append(flow(T.L2_FLOOD, FLOOD_PRIORITY, ck, to_locals + to_outside, match=base_match))
    if outside_flag and to_outside:
        flows.append(flow(T.L2_FLOOD, FLOOD_FROM_OUTSIDE_PRIORITY, ck, to_locals,
                          match=dict(base_match, **{R.FLAGS: (outside_flag, outside_flag)})))
    return flows


def network_flows(view: View, ctx, net: Record) -> list[Flow]:
    """Everything Owner.NETWORK needs from L2 here: flooding plus provider uplink flows."""
    if not is_up(net) or not network_present(view, ctx, net["id"]):
        return []
    flows = flood_flows(view, ctx, net)
    if is_provider(net):
        flows += provider.network_flows(view, ctx, net)
    return flows


# --------------------------------------------------------------------------- owners

def owners_for_change(view: View, change) -> set[int]:
    """Owners a change may create, delete or move, for L2/overlay flows on any chassis.

    A port change names the port and its network(s). The other ports of the network need
    nothing here: their flows on a chassis follow the network's presence there, a fact the
    incremental engine (flows/engine.py) re-evaluates and recompiles them for when it flips.
    """
    kind, old, new = change.kind, change.old, change.new
    owners: set[int] = set()
    if kind == "port":
        for rec in change.records():
            if rec.get("_key") is not None:
                owners.add(port_cookie(rec))
            net = view.network(rec.get("network_id"))
            if net is not None:
                owners.add(network_cookie(net))
    elif kind == "network":
        for rec in (old, new):
            if rec is not None and rec.get("_key") is not None:
                owners.add(network_cookie(rec))
        owners.update(cookie(Owner.PORT, p["_key"]) for p in view.ports_of_network(change.id))
    elif kind == "chassis":
        hosts = {rec.get("name") for rec in (old, new) if rec is not None} - {None, ""}
        for host in hosts:
            owners.update(cookie(Owner.PORT, p["_key"]) for p in view.ports_on_host(host))
            for net_id in view.networks_on_host(host):
                net = view.network(net_id)
                if net is not None:
                    owners.add(network_cookie(net))
    return owners


def owners_on_chassis(view: View, ctx) -> set[int]:
    """Every port/network owner that may have L2 flows on ctx's chassis (full resync)."""
    owners: set[int] = set()
    nets = set()
    for pid in ctx.local_ports:
        port = view.port(pid)
        if port is not None:
            nets.add(port.get("network_id"))
    for net_id in nets:
        net = view.network(net_id)
        if net is None:
            continue
        owners.add(network_cookie(net))
        owners.update(cookie(Owner.PORT, p["_key"]) for p in view.ports_of_network(net_id))
    return owners
