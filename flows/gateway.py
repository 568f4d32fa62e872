"""Gateway chassis selection for a router's SNAT and gateway IP (OVN's HA_Chassis_Group). PURE.

Why this shape:
- Candidates are every chassis whose `bridge_mappings` has the external network's physnet: any
  of them can put the router's traffic on the outside network.
- Priority order per router: the candidates sorted by name, rotated by the router's `_key`, so
  routers spread round-robin over the gateways (router key 1 → first name first, key 2 → second
  name first, …), like OVN/Neutron spreading HA_Chassis_Group priorities.
- Liveness is a store fact: the controller that owns a chassis writes `_alive` into its chassis
  record (controller/gateway.py: False after its OpenFlow connection has been down for
  `--gateway-dead-after`, True when it is back). A record without the field (never seen down)
  counts as alive. Compilers read it through the view like any record, so they stay pure and
  the incremental engine sees the dependency.
- Active = the chassis the gateway port's `binding:host_id` names while it is an alive candidate
  (no preemption: a chassis that comes back does not take its routers back, which would cut
  their SNAT connections a second time), else the highest-priority alive candidate. The
  controller writes the answer back into `binding:host_id`, so Neutron shows where it runs and
  the choice is stable from then on.
"""
from __future__ import annotations

from typing import Any, Iterable

Record = dict[str, Any]

ALIVE_FIELD = "_alive"  # hidden chassis field (not part of the API), written by the controller


def chassis_alive(rec: Record) -> bool:
    """False only once the controller has recorded the chassis as down."""
    return rec.get(ALIVE_FIELD) is not False


def maps_physnet(rec: Record, physnet: str) -> bool:
    mappings = rec.get("bridge_mappings") or {}
    if isinstance(mappings, list):  # tolerate ["physnet:port", …] like controller.registry
        return any(str(m).split(":", 1)[0] == physnet for m in mappings)
    return physnet in mappings


def priority_order(names: Iterable[str], router_key: int) -> list[str]:
    """Candidate names, highest priority first: sorted, rotated by the router's key."""
    ordered = sorted(set(n for n in names if n))
    if not ordered:
        return []
    shift = (max(int(router_key or 0), 1) - 1) % len(ordered)
    return ordered[shift:] + ordered[:shift]


def choose_active(order: list[str], alive: set[str], bound: str | None) -> str | None:
    """The bound chassis while it is an alive candidate (sticky), else the first alive one."""
    if bound and bound in alive and bound in order:
        return bound
    return next((name for name in order if name in alive), None)


def candidates(chassis: Iterable[Record], physnet: str) -> list[Record]:
    """Chassis records that map `physnet` (the external network's), any order."""
    return [c for c in chassis if c.get("name") and maps_physnet(c, physnet)]


def select(chassis: Iterable[Record], physnet: str, router_key: int, bound: str | None
           ) -> tuple[list[str], str | None]:
    """(priority order, active chassis name or None when no candidate is alive)."""
    cands = candidates(chassis, physnet)
    order = priority_order((c["name"] for c in cands), router_key)
    alive = {c["name"] for c in cands if chassis_alive(c)}
    return order, choose_active(order, alive, bound)
