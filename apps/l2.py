"""L2 app: local ports, flooding, flat/VLAN provider networks with learning (flows.l2/provider)."""
from __future__ import annotations

from typing import Iterable

from flows import l2
from flows.flow import Flow
from flows.tables import Owner
from apps.owners import split_owner


class L2App:
    name = "l2"

    def owners_for_change(self, view, change) -> Iterable[int]:
        return l2.owners_for_change(view, change)

    def owners_for_chassis(self, view, ctx) -> Iterable[int]:
        return l2.owners_on_chassis(view, ctx)

    def compile(self, view, ctx, owner: int) -> Iterable[Flow]:
        kind, key = split_owner(owner)
        if kind is Owner.PORT:
            port = view.by_key("port", key)
            return l2.port_flows(view, ctx, port) if port is not None else ()
        if kind is Owner.NETWORK:
            net = view.by_key("network", key)
            return l2.network_flows(view, ctx, net) if net is not None else ()
        return ()
