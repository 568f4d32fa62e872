"""The one table of resource kinds: how each is named in the store, the URL, the request bodies,
the CLI, and which flow-owner kind its records are.

Why one table: the API routes, the OpenAPI document, the CLI verbs and list columns and the owner
cookie kinds were each a hand-kept copy of the same list and drifted apart. Everything that needs
the list of resources reads it from `RESOURCES`; the attributes of each kind are in
`topology.model.validate.SPECS`, the stored record shapes in `topology.model.records`.

This module imports nothing heavy (the CLI uses it without the rest of the model).
"""
from __future__ import annotations

from dataclasses import dataclass

from topology.store import (CHASSIS, FLOATINGIP, NETWORK, PORT, ROUTER, SECURITY_GROUP, SECURITY_GROUP_RULE,
                            SUBNET)


@dataclass(frozen=True, slots=True)
class Resource:
    kind: str                   # store kind, also the singular body key: "security_group"
    collection: str             # URL collection under /v2.0: "security-groups"
    plural: str                 # plural body key: "security_groups"
    command: str                # CLI noun: "security-group"
    columns: tuple[str, ...]    # default columns of `tenantflow <command> list`
    updatable: bool = True      # PUT /v2.0/<collection>/<id> exists (rules: no, 405)
    owner: str | None = None    # flows.tables.Owner member named by the cookies of this kind's flows

    @property
    def singular(self) -> str:
        """Singular body key ({"network": {...}}); Neutron's is the kind's own name."""
        return self.kind


RESOURCES: tuple[Resource, ...] = (
    Resource(NETWORK, "networks", "networks", "network",
             ("id", "name", "subnets", "provider:network_type", "provider:segmentation_id"), owner="NETWORK"),
    Resource(SUBNET, "subnets", "subnets", "subnet", ("id", "name", "network_id", "cidr", "gateway_ip")),
    Resource(PORT, "ports", "ports", "port",
             ("id", "name", "mac_address", "fixed_ips", "status", "binding:host_id"), owner="PORT"),
    Resource(ROUTER, "routers", "routers", "router", ("id", "name", "status", "external_gateway_info"),
             owner="ROUTER"),
    Resource(FLOATINGIP, "floatingips", "floatingips", "floating-ip",
             ("id", "floating_ip_address", "fixed_ip_address", "port_id", "router_id", "status"),
             owner="FLOATINGIP"),
    Resource(SECURITY_GROUP, "security-groups", "security_groups", "security-group",
             ("id", "name", "description", "project_id"), owner="SECGROUP"),
    Resource(SECURITY_GROUP_RULE, "security-group-rules", "security_group_rules", "security-group-rule",
             ("id", "security_group_id", "direction", "ethertype", "protocol", "port_range_min",
              "port_range_max", "remote_ip_prefix", "remote_group_id"), updatable=False),
    Resource(CHASSIS, "chassis", "chassis", "chassis", ("id", "name", "datapath_id", "tunnel_ip", "bridge_mappings"),
             owner="CHASSIS"),
)

BY_KIND: dict[str, Resource] = {r.kind: r for r in RESOURCES}
BY_COLLECTION: dict[str, Resource] = {r.collection: r for r in RESOURCES}
# Kinds whose records own flows and so carry a hidden `_key` (the cookie's key).
OWNER_KINDS: tuple[str, ...] = tuple(r.kind for r in RESOURCES if r.owner is not None)
