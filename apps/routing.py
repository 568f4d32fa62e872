"""RoutingApp: distributed east-west routing (flows.routing), one owner per router."""
from __future__ import annotations

from typing import Iterable

from apps.owners import split_owner
from flows import routing
from flows.flow import Flow
from flows.tables import Owner
from topology.store import ROUTER


class RoutingApp:
    name = "routing"

    def owners_for_change(self, view, change) -> Iterable[int]:
        return routing.owners_for_change(view, change)

    def owners_for_chassis(self, view, ctx) -> Iterable[int]:
        return routing.owners_on_chassis(view, ctx)

    def compile(self, view, ctx, owner: int) -> Iterable[Flow]:
        kind, key = split_owner(owner)
        if kind is not Owner.ROUTER:
            return ()
        router = view.by_key(ROUTER, key)
        return routing.router_flows(view, ctx, router) if router is not None else ()


def with_routing() -> list:
    """The registry's apps plus routing and NAT, each once.

    For `tenantflow serve --apps apps.routing:with_routing` while apps.registry does not list
    them (and harmless after it does)."""
    from apps.nat import NatApp
    from apps.registry import default_apps
    apps = default_apps()
    names = {getattr(a, "name", "") for a in apps}
    return apps + [a for a in (RoutingApp(), NatApp()) if a.name not in names]
