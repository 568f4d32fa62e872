"""MetadataApp: steers VMs' HTTP to 169.254.169.254 to the chassis' metadata agent (flows only).

The flows are flows/metadata.py's (see its docstring for the design); the answers come from
`tenantflow node metadata-agent` (controller/metadata_agent.py), not from packet-ins.
"""
from __future__ import annotations

from typing import Iterable

from apps.base import ChassisContext
from flows import metadata
from flows.flow import Flow
from topology.store import Change


class MetadataApp:
    """FlowApp: owners are ports (request/answer flows) and networks (the ARP answer)."""

    name = "metadata"

    def owners_for_change(self, view, change: Change) -> Iterable[int]:
        return metadata.owners_changed(change)

    def owners_for_chassis(self, view, ctx: ChassisContext) -> Iterable[int]:
        return metadata.owners_on_chassis(view, ctx)

    def compile(self, view, ctx: ChassisContext, owner: int) -> Iterable[Flow]:
        return metadata.compile_owner(view, ctx, owner)
