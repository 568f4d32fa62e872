"""Gateway chassis failover, the controller's half (the selection itself is flows/gateway.py).

Three duties, all driven by the core's worker (controller/core.py):
- **Liveness into the store.** A chassis is alive while a controller has its OpenFlow
  connection. When ours drops, the chassis is recorded dead (`_alive: False` in its chassis
  record) once it has stayed away `dead_after` seconds — long enough to ride out a quick
  reconnect, short enough for the 10 s budget — unless another live controller owns it (HA:
  the chassis is still reachable from there). A chassis that reconnects is recorded alive at
  once. A chassis that never connects after our start is recorded dead after `startup_grace`.
  Compilers read only the record, so they stay pure functions of store facts.
- **binding:host_id of each router gateway port** = the active gateway chassis the selection
  picks (ACTIVE), or unbound (DOWN) when no candidate is alive — written back to the store
  through the core's binder, as Neutron shows the chassis carrying it.
- **Gratuitous ARPs** where an external address now lives: after a flush, for each address a
  chassis newly answers ARP for (apps' `announcements`), `garp_count` copies `garp_interval`
  apart from that chassis' uplink — sent only while we are its master and only while the
  address still lives there.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from flows import gateway as selection
from flows.routing import DEVICE_ROUTER_GATEWAY, gateway_chassis_name, gateway_port
from topology.store import CHASSIS, ROUTER
from topology.view import parse_datapath_id

LOG = logging.getLogger(__name__)

ACTIVE, DOWN = "ACTIVE", "DOWN"


@dataclass
class GatewayConfig:
    """Timing knobs (controller/config.py GATEWAY_OPTS, docs/ha.md)."""
    dead_after: float = 2.0      # s a chassis' connection must stay down before it counts as dead
    startup_grace: float = 15.0  # s after our start before a never-connected chassis counts as dead
    garp_count: int = 3          # gratuitous ARPs per address that moved (0 = none)
    garp_interval: float = 1.0   # s between them


class Liveness:
    """Which chassis our connections show up or down, and since when. Clock passed in (tests)."""

    def __init__(self, config: GatewayConfig, started: float) -> None:
        self.config = config
        self.started = started
        self.up: set[str] = set()
        self.down_since: dict[str, float] = {}

    def connected(self, name: str) -> None:
        self.up.add(name)
        self.down_since.pop(name, None)

    def disconnected(self, name: str, now: float) -> None:
        self.up.discard(name)
        self.down_since.setdefault(name, now)

    def due(self, records: Iterable[dict[str, Any]], now: float,
            owned_elsewhere: Callable[[int], bool]) -> tuple[list[tuple[str, bool]], float | None]:
        """(chassis name, alive) writes due now, and when to look again (None: nothing pending).

        Up: connected to us and recorded dead. Down: recorded alive, not connected to us for
        dead_after (startup_grace after our start if we never saw it), and no other live
        controller owns its datapath."""
        writes: list[tuple[str, bool]] = []
        wake: float | None = None
        for rec in records:
            name = rec.get("name")
            if not name:
                continue
            alive = selection.chassis_alive(rec)
            if name in self.up:
                if not alive:
                    writes.append((name, True))
                continue
            if not alive:
                continue
            since = self.down_since.get(name)
            deadline = since + self.config.dead_after if since is not None \
                else self.started + self.config.startup_grace
            dpid = parse_datapath_id(rec.get("datapath_id"))
            if dpid is not None and owned_elsewhere(dpid):
                continue
            if now >= deadline:
                writes.append((name, False))
            else:
                wake = deadline if wake is None else min(wake, deadline)
        return writes, wake


def binding_updates(view, may_write: Callable[[str | None], bool]) -> list[tuple[str, str, str]]:
    """(gateway port id, host, status) for every router whose gateway port's binding differs
    from the active gateway chassis (flows.routing.gateway_chassis_name). `may_write(active)`:
    HA — only the master of the active chassis writes (every controller computes the same)."""
    out = []
    for router in view.records(ROUTER).values():
        if not (router.get("external_gateway_info") or {}).get("network_id"):
            continue
        port = gateway_port(view, router)
        if port is None or port.get("device_owner") != DEVICE_ROUTER_GATEWAY:
            continue
        active = gateway_chassis_name(view, router)
        host, status = (active, ACTIVE) if active else ("", DOWN)
        if (port.get("binding:host_id") or "", port.get("status")) == (host, status):
            continue
        if may_write(active):
            out.append((port["id"], host, status))
    return out


def chassis_names(view) -> list[str]:
    return sorted(c.get("name") for c in view.records(CHASSIS).values() if c.get("name"))
