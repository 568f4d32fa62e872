"""RoutingApp: distributed east-west routing (flows.routing), one owner per router."""
from __future__ import annotations

from typing import Iterable

from apps.owners import owner_record
from flows import routing
from flows.flow import Flow
from flows.tables import Owner


class RoutingApp:
    name = "routing"

    def owners_for_change(self, view, change) -> Iterable[int]:
        return routing.owners_for_change(view, change)

    def owners_for_chassis(self, view, ctx) -> Iterable[int]:
        return routing.owners_on_chassis(view, ctx)

    def compile(self, view, ctx, owner: int) -> Iterable[Flow]:
        kind, router = owner_record(view, owner)
        if kind is not Owner.ROUTER or router is None:
            return ()
        return routing.router_flows(view, ctx, router)
