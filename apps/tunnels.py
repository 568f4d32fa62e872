"""Tunnels app: overlay (VXLAN/GRE/Geneve) tunnel classify and unicast to remote ports.

Head-end replication lives in the network's flood flow (flows.l2 + flows.overlay), because a
flow key can only have one author.
"""
from __future__ import annotations

from typing import Iterable

from apps.l2 import L2App
from flows import overlay
from flows.flow import Flow
from flows.tables import Owner
from apps.owners import owner_record


class TunnelApp(L2App):
    """Same dependencies as L2 (port location, network VNI/admin state, chassis tunnel_ip), so
    the owner questions are L2App's; only the flows differ."""

    name = "tunnels"

    def compile(self, view, ctx, owner: int) -> Iterable[Flow]:
        kind, rec = owner_record(view, owner)
        if rec is None:
            return ()
        if kind is Owner.PORT:
            return overlay.remote_port_flows(view, ctx, rec)
        if kind is Owner.NETWORK:
            return overlay.network_flows(view, ctx, rec)
        return ()
