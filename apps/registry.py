"""The feature apps the controller runs, in order. Add yours with one line ("module:Class")."""
from __future__ import annotations

import importlib

APPS: list[str] = [
    "apps.pipeline:PipelineApp",
    "apps.l2:L2App",
    "apps.tunnels:TunnelApp",
    "apps.arp:ArpApp", "apps.dhcp:DhcpApp",
    "apps.ipv6_ra:Ipv6RaApp", "apps.dhcpv6:Dhcpv6App",
    "apps.port_security:PortSecurityApp", "apps.security_groups:SecurityGroupsApp",
    "apps.routing:RoutingApp", "apps.nat:NatApp",
    "apps.ndp:NdpApp",
    "apps.metadata:MetadataApp",
    "apps.qos:QosApp",
]


def default_apps() -> list:
    """Fresh instances of every app in APPS (imported lazily: no import cycles with apps.base)."""
    apps = []
    for spec in APPS:
        module, _, cls = spec.partition(":")
        apps.append(getattr(importlib.import_module(module), cls)())
    return apps
