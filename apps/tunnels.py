"""Tunnels app: overlay (VXLAN/GRE/Geneve) tunnel classify and unicast to remote ports.

Head-end replication lives in the network's flood flow (flows.l2 + flows.overlay), because a
flow key can only have one author.
"""
from __future__ import annotations

from typing import Iterable

from flows import l2, overlay
from flows.flow import Flow
from flows.tables import Owner
from apps.owners import split_owner


class TunnelApp:
    name = "tunnels"

    def owners_for_change(self, view, change) -> Iterable[int]:
        # Same dependencies as L2 (port location, network VNI/admin state, chassis tunnel_ip).
        return l2.owners_for_change(view, change)

    def owners_for_chassis(self, view, ctx) -> Iterable[int]:
        return l2.owners_on_chassis(view, ctx)

    def compile(self, view, ctx, owner: int) -> Iterable[Flow]:
        kind, key = split_owner(owner)
        if kind is Owner.PORT:
            port = view.by_key("port", key)
            return overlay.remote_port_flows(view, ctx, port) if port is not None else ()
        if kind is Owner.NETWORK:
            net = view.by_key("network", key)
            return overlay.network_flows(view, ctx, net) if net is not None else ()
        return ()
