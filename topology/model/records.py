"""The stored shape of every resource kind, as TypedDicts (what the store, the feed and the view hold).

Why written beside the specs and not generated: mypy reads types statically, so they must be
source. They cannot drift: tests/unit/test_schema.py builds one record of every kind through the
service and checks each record's keys and value types against these, and every visible key
against `validate.SPECS` (the attributes the API accepts and shows).

Names with a colon (`binding:host_id`, `router:external`, `provider:*`) need TypedDict's
functional form; those parts are mixed into the class-form records. Hidden fields start with `_`:
`_seq` orders a kind's records, `_key` is the flow-owner key of `schema.OWNER_KINDS` records; both
are filled on insert, so a record being built may not have them yet. (No `from __future__ import
annotations` here: on Python 3.11 it would hide NotRequired from the runtime `__required_keys__`.)
"""

from typing import Any, NotRequired, TypedDict

from topology.store import (CHASSIS, FLOATINGIP, NETWORK, PORT, ROUTER, SECURITY_GROUP, SECURITY_GROUP_RULE,
                            SUBNET)


# ---- nested values -------------------------------------------------------------------------
class FixedIP(TypedDict):
    subnet_id: str
    ip_address: str


class AddressPair(TypedDict):
    ip_address: str            # an IP or a CIDR
    mac_address: str


class Route(TypedDict):
    destination: str
    nexthop: str


class Pool(TypedDict):
    start: str
    end: str


class ExtraDhcpOpt(TypedDict):
    opt_name: str
    opt_value: NotRequired[str]
    ip_version: NotRequired[int]


class GatewayInfo(TypedDict):
    network_id: str
    enable_snat: NotRequired[bool]
    external_fixed_ips: NotRequired[list[FixedIP]]


# ---- records -------------------------------------------------------------------------------
class Standard(TypedDict):
    """Neutron's standard attributes, on every Neutron resource (not chassis)."""
    id: str
    tenant_id: str
    project_id: str
    description: str
    tags: list[str]
    created_at: str
    updated_at: str
    revision_number: int
    _seq: NotRequired[int]


_NetworkExt = TypedDict("_NetworkExt", {
    "router:external": bool,
    "provider:network_type": str,
    "provider:physical_network": str | None,
    "provider:segmentation_id": int | None,
})


class Network(Standard, _NetworkExt):
    name: str
    admin_state_up: bool
    status: str
    shared: bool
    mtu: int
    port_security_enabled: bool
    availability_zone_hints: list[str]
    availability_zones: list[str]
    ipv4_address_scope: str | None
    ipv6_address_scope: str | None
    is_default: bool
    qos_policy_id: str | None  # resources/qos.py
    _key: NotRequired[int]


class Subnet(Standard):
    name: str
    network_id: str
    ip_version: int
    cidr: str
    gateway_ip: str | None
    allocation_pools: list[Pool]
    dns_nameservers: list[str]
    host_routes: list[Route]
    enable_dhcp: bool
    ipv6_ra_mode: str | None
    ipv6_address_mode: str | None
    subnetpool_id: str | None
    segment_id: str | None
    service_types: list[str]


_PortBinding = TypedDict("_PortBinding", {
    "binding:host_id": str,              # chassis name; "" when unbound
    "binding:profile": dict[str, Any],   # {"interface_name": OVS interface}
    "binding:vnic_type": str,
    "binding:vif_type": str,             # "ovs" when bound, else "unbound"
    "binding:vif_details": dict[str, Any],
})


class Port(Standard, _PortBinding):
    name: str
    network_id: str
    admin_state_up: bool
    mac_address: str
    fixed_ips: list[FixedIP]
    device_id: str
    device_owner: str
    status: str
    security_groups: list[str]
    port_security_enabled: bool
    allowed_address_pairs: list[AddressPair]
    extra_dhcp_opts: list[ExtraDhcpOpt]
    qos_policy_id: str | None  # resources/qos.py
    _key: NotRequired[int]


class Router(Standard):
    name: str
    admin_state_up: bool
    status: str
    external_gateway_info: GatewayInfo | None
    routes: list[Route]
    distributed: bool
    ha: bool
    availability_zone_hints: list[str]
    availability_zones: list[str]
    flavor_id: str | None
    _key: NotRequired[int]


class FloatingIP(Standard):
    floating_network_id: str
    floating_ip_address: str
    port_id: str | None
    fixed_ip_address: str | None
    router_id: str | None
    status: str
    _key: NotRequired[int]


class SecurityGroup(Standard):
    name: str
    stateful: bool
    shared: bool
    _key: NotRequired[int]


class SecurityGroupRule(Standard):
    security_group_id: str
    direction: str                  # "ingress" | "egress"
    ethertype: str                  # "IPv4" | "IPv6"
    protocol: str | None            # a name ("tcp"), a number as a string ("132"), None = any
    port_range_min: int | None      # ICMP: type
    port_range_max: int | None      # ICMP: code
    remote_ip_prefix: str | None
    remote_group_id: str | None
    remote_address_group_id: str | None


class Chassis(TypedDict):
    id: str
    name: str
    datapath_id: int | None
    tunnel_ip: str | None
    bridge_mappings: dict[str, str]   # physnet → OVS port name
    description: str
    created_at: str
    updated_at: str
    revision_number: int
    _key: NotRequired[int]


RECORD_TYPES: dict[str, type] = {
    NETWORK: Network, SUBNET: Subnet, PORT: Port, ROUTER: Router, FLOATINGIP: FloatingIP,
    SECURITY_GROUP: SecurityGroup, SECURITY_GROUP_RULE: SecurityGroupRule, CHASSIS: Chassis,
}
