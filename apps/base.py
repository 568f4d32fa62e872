"""Contracts between the controller core and the feature apps.

Desired state, not events: an app never installs or removes a flow. It answers two questions —
"which owners might need different flows after this change?" and "what flows does owner X
need on this chassis now?" — and the core's reconciler turns the answers into a minimal diff.
Several apps may contribute flows to one owner (a port's L2, port-security and security-group
flows all carry that port's cookie); the core unions them.

Owners are cookies (flows.tables.cookie(kind, key)), so a deleted object still names its flows.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Protocol

from flows.flow import Flow
from topology.store import Change


@dataclass(frozen=True, slots=True)
class ChassisContext:
    """What a compiler needs to know about one chassis beyond the topology.

    `local_ports` comes from the switch (interfaces bound to topology ports by name), not
    from the store, so a port is compiled as local as soon as its tap appears. It also holds,
    with ofport None, the VM ports the store binds here (binding:host_id, written by Nova before
    it plugs the tap) that are not plugged yet: their flows are installed ahead of the tap, and
    the plug only adds the few that name the ofport (docs/pipeline.md, "Bound before plugged").
    """
    name: str                                  # chassis record name
    datapath_id: int
    local_ports: dict[str, int | None] = field(default_factory=dict)  # port id → ofport (None: not plugged)
    uplinks: dict[str, int] = field(default_factory=dict)       # physnet → ofport of its uplink
    tunnel_ports: dict[str, int] = field(default_factory=dict)  # "vxlan"/"gre"/"geneve" → ofport
    tunnel_ip: str | None = None
    metadata_port: int = 0    # ofport of the metadata agent's tap-meta (0 = no agent here)


@dataclass(frozen=True, slots=True)
class PacketIn:
    """A packet punted by the pipeline, already decoded to what apps need."""
    datapath_id: int
    chassis: str
    in_ofport: int
    table: int
    cookie: int
    registers: dict[str, int]   # reg0..reg15 and 'metadata' from the packet-in match
    data: bytes
    userdata: bytes = b""


@dataclass(frozen=True, slots=True)
class PacketOut:
    """Send `data` out of `ofport` (OFPP_* values allowed) on the chassis of the PacketIn."""
    ofport: int
    data: bytes


class FlowApp(Protocol):
    name: str

    def owners_for_change(self, view, change: Change) -> Iterable[int]:
        """Cookies of owners whose flows may differ after `change` (on any chassis)."""

    def owners_for_chassis(self, view, ctx: ChassisContext) -> Iterable[int]:
        """Every owner this app has flows for on ctx's chassis (full resync, port (un)binding)."""

    def compile(self, view, ctx: ChassisContext, owner: int) -> Iterable[Flow]:
        """The flows `owner` needs from this app on ctx's chassis right now (empty if none)."""


class PacketApp(Protocol):
    name: str
    userdata: bytes  # the Controller(userdata=...) tag this app's punt flows carry

    def packet_in(self, view, ctx: ChassisContext, pkt: PacketIn) -> list[PacketOut]:
        """Answer a punted packet. Must never raise on malformed input: count and drop."""
