"""L2 app: local ports, flooding, flat/VLAN provider networks with learning (flows.l2/provider)."""
from __future__ import annotations

from typing import Iterable

from flows import l2
from flows.flow import Flow
from flows.tables import Owner
from apps.owners import owner_record


class L2App:
    name = "l2"

    def owners_for_change(self, view, change) -> Iterable[int]:
        return l2.owners_for_change(view, change)

    def owners_for_chassis(self, view, ctx) -> Iterable[int]:
        return l2.owners_on_chassis(view, ctx)

    def compile(self, view, ctx, owner: int) -> Iterable[Flow]:
        kind, rec = owner_record(view, owner)
        if rec is None:
            return ()
        if kind is Owner.PORT:
            return l2.port_flows(view, ctx, rec)
        if kind is Owner.NETWORK:
            return l2.network_flows(view, ctx, rec)
        return ()
