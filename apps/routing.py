"""RoutingApp: distributed east-west routing (flows.routing) and routers that answer ICMP
(flows.router_icmp, apps.router_icmp), one owner per router; each port's neighbour entries in its
routers are the port's own (flows.routing.port_neighbor_flows), so a new port does not recompile them."""
from __future__ import annotations

from typing import Iterable

from apps.base import ChassisContext, PacketIn, PacketOut
from apps.owners import owner_record
from apps.router_icmp import RouterIcmp
from flows import router_icmp, routing
from flows.flow import Flow
from flows.tables import Owner


class RoutingApp:
    """FlowApp (router owners) + PacketApp (the routers' ICMP errors, userdata b"l3icmp")."""

    name = "routing"
    userdata = router_icmp.USERDATA_ROUTER_ICMP

    def __init__(self) -> None:
        self.icmp = RouterIcmp()
        self.stats = self.icmp.stats

    def configure(self, settings) -> None:
        """Deployment settings: the router ICMP errors' rate limits (apps.router_icmp)."""
        self.icmp.configure(settings)

    def owners_for_change(self, view, change) -> Iterable[int]:
        return routing.owners_for_change(view, change)

    def owners_for_chassis(self, view, ctx) -> Iterable[int]:
        return routing.owners_on_chassis(view, ctx)

    def owners_for_port_location(self, view, ctx, port) -> Iterable[int]:
        return routing.owners_for_port_location(view, ctx, port)

    def compile(self, view, ctx, owner: int) -> Iterable[Flow]:
        kind, router = owner_record(view, owner)
        if kind is Owner.PORT and router is not None:  # the port's neighbour entries in its routers
            return routing.port_neighbor_flows(view, ctx, router)
        if kind is not Owner.ROUTER or router is None:
            return ()
        flows = routing.router_flows(view, ctx, router)
        if not flows:  # not present on this chassis (router_flows checked)
            return flows
        return flows + router_icmp.router_icmp_flows(view, ctx, router)

    def packet_in(self, view, ctx: ChassisContext, pkt: PacketIn) -> list[PacketOut]:
        return self.icmp.packet_in(view, ctx, pkt)
