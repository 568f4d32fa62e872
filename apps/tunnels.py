"""Tunnels app: overlay (VXLAN/GRE/Geneve) tunnel classify and unicast to remote ports.

Head-end replication lives in the network's flood flow (flows.l2 + flows.overlay), because a
flow key can only have one author.
"""
from __future__ import annotations

from typing import Iterable

from flows import l2, overlay
from flows.flow import Flow
from flows.tables import Owner
from apps.owners import owner_record


class TunnelApp:
    name = "tunnels"

    def owners_for_change(self, view, change) -> Iterable[int]:
        # Same dependencies as L2 (port location, network VNI/admin state, chassis tunnel_ip).
        return l2.owners_for_change(view, change)

    def owners_for_chassis(self, view, ctx) -> Iterable[int]:
        return l2.owners_on_chassis(view, ctx)

    def compile(self, view, ctx, owner: int) -> Iterable[Flow]:
        kind, rec = owner_record(view, owner)
        if rec is None:
            return ()
        if kind is Owner.PORT:
            return overlay.remote_port_flows(view, ctx, rec)
        if kind is Owner.NETWORK:
            return overlay.network_flows(view, ctx, rec)
        return ()
