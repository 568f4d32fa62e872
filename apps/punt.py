"""What the SERVICE-table apps (ARP, DHCP) share: flows, rate limit, safety net.

Each is a FlowApp (its flows come from flows/services.py, selected by `name`: ARP responders
answered in the switch, DHCP punts) and a PacketApp whose `answer` never has to worry about
exceptions or floods: `packet_in` applies the per-port token bucket first and turns any
exception into a counted drop. Only DHCP still punts; ArpApp's packet-in side counts stale punts.
"""
from __future__ import annotations

import collections
import logging
from typing import Iterable

from apps.base import ChassisContext, PacketIn, PacketOut
from apps.ratelimit import TokenBuckets
from flows import qos, services
from flows.flow import Flow
from flows.tables import R
from topology.store import Change

LOG = logging.getLogger(__name__)


class PuntApp:
    name: str        # also the flows.services selector ("arp" | "dhcp")
    userdata: bytes
    default_rate: float  # answers per second per port before the token bucket drops

    def __init__(self, rate: float | None = None, burst: float | None = None, meter_id: int = 0) -> None:
        self.meter_id = meter_id
        self._rate, self._burst = rate, burst   # explicit arguments win over configure()'s settings
        self.limit = self._buckets(None, None)
        self.meters = qos.DEFAULT_PUNT_METERS   # the punt meters' bands handed to flows/services.py
        self.stats: collections.Counter[str] = collections.Counter()
        # Packet path only: network address indexes of one view revision (an ARP/DHCP storm must not
        # rebuild O(ports) per packet-in). Keyed by (view, revision), so it can never be stale; the
        # compile path never reads it (the engine sees compiles' reads, not this).
        self._indexes_of: tuple[int, int] | None = None
        self._indexes: dict[str, services.NetworkIndex | None] = {}

    def _buckets(self, rate: float | None, burst: float | None) -> TokenBuckets:
        rate = self._rate or rate or self.default_rate
        return TokenBuckets(rate, self._burst or burst or max(2 * self.default_rate, 2 * rate))

    def configure(self, settings) -> None:
        """Deployment settings (topology.model.settings.Settings.punt, `tenantflow serve --dhcp-rate …`):
        this app's token bucket and the punt meters' bands; explicit constructor arguments win."""
        limits = getattr(settings, "punt", None)
        if limits is None:
            return
        self.limit = self._buckets(limits.rates.get(self.name), limits.bursts.get(self.name))
        self.meters = qos.punt_meters(limits.meters, limits.rates.get("dhcp"))

    # ---------------------------------------------------------------- FlowApp
    def owners_for_change(self, view, change: Change) -> Iterable[int]:
        return services.owners_changed(view, change, self.name)

    def owners_for_chassis(self, view, ctx: ChassisContext) -> Iterable[int]:
        return services.owners_on_chassis(view, ctx, self.name)

    def compile(self, view, ctx: ChassisContext, owner: int) -> Iterable[Flow]:
        return services.compile_owner(view, ctx, owner, self.name, self.meter_id, self.meters)

    # ---------------------------------------------------------------- PacketApp
    def network_index(self, view, net_id: str | None) -> services.NetworkIndex | None:
        """The network's addresses as of the view's current revision (built once per revision)."""
        stamp = (id(view), view.revision)
        if stamp != self._indexes_of:
            self._indexes_of, self._indexes = stamp, {}
        key = str(net_id)
        if key not in self._indexes:
            self._indexes[key] = services.network_index(view, net_id)
        return self._indexes[key]

    def packet_in(self, view, ctx: ChassisContext, pkt: PacketIn) -> list[PacketOut]:
        try:
            port_key = pkt.registers.get(R.IN_PORT, 0)
            if not self.limit.allow((ctx.name, port_key or -pkt.in_ofport)):
                self.stats["rate_limited"] += 1
                return []
            return self.answer(view, ctx, pkt)
        except Exception:  # noqa: BLE001 - contract: never raise into dispatch
            self.stats["error"] += 1
            LOG.exception("%s packet-in on %s port %s failed", self.name, ctx.name, pkt.in_ofport)
            return []

    def answer(self, view, ctx: ChassisContext, pkt: PacketIn) -> list[PacketOut]:
        """The service's reply to one (rate-limited) punted packet; may raise."""
        raise NotImplementedError
