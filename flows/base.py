"""Chassis-wide base flows (Owner.PIPELINE, key 0): table misses and the broadcast fork.

Why explicit misses: OpenFlow 1.3 drops on a table miss, so the stages that other features fill
later (port security, ARP/DHCP punts, security groups, routing) must pass traffic through until
their flows land. Every other table misses to an explicit, countable drop.
"""
from __future__ import annotations

from flows.flow import Flow, GotoTable, SetField, flow
from flows.tables import PIPELINE, R, T, Owner, cookie

PIPELINE_COOKIE = cookie(Owner.PIPELINE, 0)
MISS_PRIORITY = 0
MULTICAST_PRIORITY = 50  # below any port's own L2_LOOKUP entry, above provider unknown-unicast
MULTICAST_BIT = 0x01_00_00_00_00_00

# Table → the table its miss passes to. Tables not listed miss to drop.
PASS_THROUGH: dict[T, T] = {
    T.PORT_SEC: T.SERVICE,
    T.SERVICE: T.EGRESS_CT,
    T.EGRESS_CT: T.EGRESS_SG,
    T.EGRESS_SG: T.L3_GATEWAY,
    T.L3_GATEWAY: T.L2_LOOKUP,
    T.INGRESS_CT: T.INGRESS_SG,
    T.INGRESS_SG: T.OUTPUT,
}


def base_flows() -> frozenset[Flow]:
    """The flows every chassis has regardless of topology."""
    flows: list[Flow] = []
    for table in PIPELINE:
        nxt = PASS_THROUGH.get(table)
        actions = [GotoTable(nxt)] if nxt is not None else []
        flows.append(flow(table, MISS_PRIORITY, PIPELINE_COOKIE, actions))
    # Broadcast/multicast: clear the egress register (L2_FLOOD's per-network entries match
    # reg7=0) and replicate per network.
    flows.append(flow(T.L2_LOOKUP, MULTICAST_PRIORITY, PIPELINE_COOKIE,
                      [SetField(R.OUT_PORT, 0), GotoTable(T.L2_FLOOD)],
                      match=dict(eth_dst=(MULTICAST_BIT, MULTICAST_BIT))))
    return frozenset(flows)
