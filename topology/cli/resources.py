"""Each resource's own CLI options and request bodies (names follow the openstack client's), added to
the generic verbs of topology.cli.verbs. `NOUNS` has one entry per kind of the resource table."""
from __future__ import annotations

import argparse
from typing import Any

from topology.cli.client import CliError, Client
from topology.cli.output import emit
from topology.cli.verbs import Commands, Filter, NounSpec
from topology.store import (CHASSIS, FLOATINGIP, NETWORK, PORT, ROUTER, SECURITY_GROUP, SECURITY_GROUP_RULE,
                            SUBNET)


def kv(text: str) -> dict[str, str]:
    """'a=1,b=2' → {'a': '1', 'b': '2'} (the openstack client's key=value option style)."""
    out = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"expected key=value, got {part!r}")
        out[key.strip()] = value.strip()
    return out


def _fixed_ips(client: Client, specs: list[dict[str, str]]) -> list[dict[str, str]]:
    out = []
    for spec in specs:
        entry = {}
        if "subnet" in spec:
            entry["subnet_id"] = client.resolve("subnets", spec["subnet"])
        if "ip-address" in spec:
            entry["ip_address"] = spec["ip-address"]
        out.append(entry)
    return out


def _pairs(specs: list[dict[str, str]]) -> list[dict[str, str]]:
    return [{"ip_address": s["ip-address"], **({"mac_address": s["mac-address"]} if "mac-address" in s else {})}
            for s in specs]


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


# networks
def _net_create_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("name")
    p.add_argument("--external", action="store_true")
    p.add_argument("--share", action="store_true")
    p.add_argument("--provider-network-type")
    p.add_argument("--provider-physical-network")
    p.add_argument("--provider-segment", type=int)
    p.add_argument("--mtu", type=int)
    p.add_argument("--description")
    p.add_argument("--disable", action="store_true", help="admin_state_up=false")
    p.add_argument("--disable-port-security", action="store_true")


def _net_create(client: Client, a: argparse.Namespace) -> dict:
    return _drop_none({"name": a.name, "router:external": True if a.external else None,
                       "shared": True if a.share else None, "provider:network_type": a.provider_network_type,
                       "provider:physical_network": a.provider_physical_network,
                       "provider:segmentation_id": a.provider_segment, "mtu": a.mtu, "description": a.description,
                       "admin_state_up": False if a.disable else None,
                       "port_security_enabled": False if a.disable_port_security else None})


def _net_update_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--name")
    p.add_argument("--mtu", type=int)
    p.add_argument("--description")
    p.add_argument("--share", dest="shared", action="store_true", default=None)
    p.add_argument("--no-share", dest="shared", action="store_false")
    p.add_argument("--external", dest="external", action="store_true", default=None)
    p.add_argument("--internal", dest="external", action="store_false")
    p.add_argument("--enable", dest="up", action="store_true", default=None)
    p.add_argument("--disable", dest="up", action="store_false")


def _net_update(client: Client, a: argparse.Namespace) -> dict:
    return _drop_none({"name": a.name, "mtu": a.mtu, "description": a.description, "shared": a.shared,
                       "router:external": a.external, "admin_state_up": a.up})


# subnets
def _subnet_create_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("name")
    p.add_argument("--network", required=True)
    p.add_argument("--subnet-range", required=True)
    p.add_argument("--gateway", help="IP, 'auto' (default) or 'none'")
    p.add_argument("--no-dhcp", action="store_true")
    p.add_argument("--dhcp", action="store_true")
    p.add_argument("--ip-version", type=int)
    p.add_argument("--dns-nameserver", action="append", default=[])
    p.add_argument("--allocation-pool", action="append", type=kv, default=[], help="start=IP,end=IP")
    p.add_argument("--host-route", action="append", type=kv, default=[], help="destination=CIDR,gateway=IP")
    p.add_argument("--description")


def _gateway(value: str | None) -> Any:
    if value is None or value == "auto":
        return ...
    return None if value == "none" else value


def _subnet_create(client: Client, a: argparse.Namespace) -> dict:
    body = _drop_none({"name": a.name, "network_id": client.resolve("networks", a.network), "cidr": a.subnet_range,
                       "ip_version": a.ip_version, "description": a.description,
                       "enable_dhcp": False if a.no_dhcp else None})
    gw = _gateway(a.gateway)
    if gw is not ...:
        body["gateway_ip"] = gw
    if a.dns_nameserver:
        body["dns_nameservers"] = a.dns_nameserver
    if a.allocation_pool:
        body["allocation_pools"] = [{"start": p["start"], "end": p["end"]} for p in a.allocation_pool]
    if a.host_route:
        body["host_routes"] = [{"destination": r["destination"], "nexthop": r.get("gateway", r.get("nexthop"))}
                               for r in a.host_route]
    return body


def _subnet_update_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--name")
    p.add_argument("--gateway")
    p.add_argument("--dhcp", dest="dhcp", action="store_true", default=None)
    p.add_argument("--no-dhcp", dest="dhcp", action="store_false")
    p.add_argument("--dns-nameserver", action="append")
    p.add_argument("--description")


def _subnet_update(client: Client, a: argparse.Namespace) -> dict:
    body = _drop_none({"name": a.name, "enable_dhcp": a.dhcp, "dns_nameservers": a.dns_nameserver,
                       "description": a.description})
    gw = _gateway(a.gateway)
    if gw is not ...:
        body["gateway_ip"] = gw
    return body


# ports
def _port_common_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fixed-ip", action="append", type=kv, help="subnet=SUBNET,ip-address=IP")
    p.add_argument("--no-fixed-ip", action="store_true")
    p.add_argument("--security-group", action="append")
    p.add_argument("--no-security-group", action="store_true")
    p.add_argument("--enable-port-security", dest="port_security", action="store_true", default=None)
    p.add_argument("--disable-port-security", dest="port_security", action="store_false")
    p.add_argument("--allowed-address", action="append", type=kv, help="ip-address=IP[/LEN][,mac-address=MAC]")
    p.add_argument("--no-allowed-address", action="store_true")
    p.add_argument("--host", help="binding:host_id (chassis name)")
    p.add_argument("--interface-name", help="binding:profile interface_name (OVS interface)")
    p.add_argument("--device-owner")
    p.add_argument("--device", dest="device_id")
    p.add_argument("--description")
    p.add_argument("--enable", dest="up", action="store_true", default=None)
    p.add_argument("--disable", dest="up", action="store_false")


def _port_body(client: Client, a: argparse.Namespace) -> dict:
    body = _drop_none({"device_owner": a.device_owner, "device_id": a.device_id, "description": a.description,
                       "admin_state_up": a.up, "port_security_enabled": a.port_security,
                       "binding:host_id": a.host})
    if a.fixed_ip:
        body["fixed_ips"] = _fixed_ips(client, a.fixed_ip)
    elif a.no_fixed_ip:
        body["fixed_ips"] = []
    if a.security_group:
        body["security_groups"] = [client.resolve("security-groups", s) for s in a.security_group]
    elif a.no_security_group:
        body["security_groups"] = []
    if a.allowed_address:
        body["allowed_address_pairs"] = _pairs(a.allowed_address)
    elif a.no_allowed_address:
        body["allowed_address_pairs"] = []
    if a.interface_name:
        body["binding:profile"] = {"interface_name": a.interface_name}
    return body


def _port_create_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("name")
    p.add_argument("--network", required=True)
    p.add_argument("--mac-address")
    _port_common_args(p)


def _port_create(client: Client, a: argparse.Namespace) -> dict:
    body = _port_body(client, a)
    body.update(_drop_none({"name": a.name, "network_id": client.resolve("networks", a.network),
                            "mac_address": a.mac_address}))
    return body


def _port_update_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--name")
    p.add_argument("--mac-address")
    _port_common_args(p)


def _port_update(client: Client, a: argparse.Namespace) -> dict:
    body = _port_body(client, a)
    body.update(_drop_none({"name": a.name, "mac_address": a.mac_address}))
    return body


# routers
def _router_create_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("name")
    p.add_argument("--external-gateway")
    p.add_argument("--description")
    p.add_argument("--disable", action="store_true")


def _router_create(client: Client, a: argparse.Namespace) -> dict:
    body = _drop_none({"name": a.name, "description": a.description, "admin_state_up": False if a.disable else None})
    if a.external_gateway:
        body["external_gateway_info"] = {"network_id": client.resolve("networks", a.external_gateway)}
    return body


def _router_update_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--name")
    p.add_argument("--description")
    p.add_argument("--external-gateway")
    p.add_argument("--no-external-gateway", action="store_true")
    p.add_argument("--disable-snat", action="store_true")
    p.add_argument("--route", action="append", type=kv, help="destination=CIDR,gateway=IP")
    p.add_argument("--no-route", action="store_true")
    p.add_argument("--enable", dest="up", action="store_true", default=None)
    p.add_argument("--disable", dest="up", action="store_false")


def _router_update(client: Client, a: argparse.Namespace) -> dict:
    body = _drop_none({"name": a.name, "description": a.description, "admin_state_up": a.up})
    if a.external_gateway:
        info: dict[str, Any] = {"network_id": client.resolve("networks", a.external_gateway)}
        if a.disable_snat:
            info["enable_snat"] = False
        body["external_gateway_info"] = info
    elif a.no_external_gateway:
        body["external_gateway_info"] = None
    if a.route:
        body["routes"] = [{"destination": r["destination"], "nexthop": r.get("gateway", r.get("nexthop"))}
                          for r in a.route]
    elif a.no_route:
        body["routes"] = []
    return body


def _router_interface(verbs: Commands) -> None:
    """`router add-interface ROUTER SUBNET` / `--port PORT`, and remove-interface."""
    for verb, action in (("add-interface", "add_router_interface"), ("remove-interface", "remove_router_interface")):
        def run(client: Client, a: argparse.Namespace, action: str = action) -> None:
            subnet = a.subnet or a.subnet_opt
            if bool(subnet) == bool(a.port):
                raise CliError("give a subnet or --port PORT")
            body = {"subnet_id": client.resolve("subnets", subnet)} if subnet else \
                {"port_id": client.resolve("ports", a.port)}
            rid = client.resolve("routers", a.router)
            emit(a, client.call("PUT", f"routers/{rid}/{action}", body))

        def add_args(p: argparse.ArgumentParser) -> None:
            p.add_argument("router")
            p.add_argument("subnet", nargs="?")
            p.add_argument("--subnet", dest="subnet_opt")
            p.add_argument("--port")
        verbs.leaf(verb, run, add_args)


# security groups
def _sg_create_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("name")
    p.add_argument("--description")


def _sg_update_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--name")
    p.add_argument("--description")


def _rule_create_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("group")
    p.add_argument("--ingress", dest="direction", action="store_const", const="ingress", default="ingress")
    p.add_argument("--egress", dest="direction", action="store_const", const="egress")
    p.add_argument("--ethertype", default=None)
    p.add_argument("--protocol")
    p.add_argument("--dst-port", help="PORT or MIN:MAX")
    p.add_argument("--icmp-type", type=int)
    p.add_argument("--icmp-code", type=int)
    p.add_argument("--remote-ip")
    p.add_argument("--remote-group")
    p.add_argument("--description")


def _rule_create(client: Client, a: argparse.Namespace) -> dict:
    body = _drop_none({"security_group_id": client.resolve("security-groups", a.group), "direction": a.direction,
                       "ethertype": a.ethertype, "protocol": a.protocol, "remote_ip_prefix": a.remote_ip,
                       "description": a.description})
    if a.remote_group:
        body["remote_group_id"] = client.resolve("security-groups", a.remote_group)
    if a.dst_port:
        lo, _, hi = a.dst_port.partition(":")
        body["port_range_min"], body["port_range_max"] = int(lo), int(hi or lo)
    if a.icmp_type is not None:
        body["port_range_min"] = a.icmp_type
    if a.icmp_code is not None:
        body["port_range_max"] = a.icmp_code
    return body


# floating IPs
def _fip_create_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("network")
    p.add_argument("--port")
    p.add_argument("--fixed-ip-address")
    p.add_argument("--floating-ip-address")
    p.add_argument("--subnet")
    p.add_argument("--description")


def _fip_create(client: Client, a: argparse.Namespace) -> dict:
    body = _drop_none({"floating_network_id": client.resolve("networks", a.network),
                       "fixed_ip_address": a.fixed_ip_address, "floating_ip_address": a.floating_ip_address,
                       "description": a.description})
    if a.port:
        body["port_id"] = client.resolve("ports", a.port)
    if a.subnet:
        body["subnet_id"] = client.resolve("subnets", a.subnet)
    return body


def _fip_update_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--port")
    p.add_argument("--no-port", action="store_true")
    p.add_argument("--fixed-ip-address")
    p.add_argument("--description")


def _fip_update(client: Client, a: argparse.Namespace) -> dict:
    body = _drop_none({"fixed_ip_address": a.fixed_ip_address, "description": a.description})
    if a.port:
        body["port_id"] = client.resolve("ports", a.port)
    elif a.no_port:
        body["port_id"] = None
    return body


# chassis
def _chassis_create_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("name")
    p.add_argument("--datapath-id", help="integer or 0x-hex")
    p.add_argument("--tunnel-ip")
    p.add_argument("--bridge-mapping", action="append", default=[], help="PHYSNET:OVS_PORT")


def _mappings(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        physnet, sep, port = item.partition(":")
        if not sep:
            raise CliError(f"--bridge-mapping expects PHYSNET:PORT, got {item!r}")
        out[physnet] = port
    return out


def _chassis_create(client: Client, a: argparse.Namespace) -> dict:
    body = _drop_none({"name": a.name, "datapath_id": a.datapath_id, "tunnel_ip": a.tunnel_ip})
    if a.bridge_mapping:
        body["bridge_mappings"] = _mappings(a.bridge_mapping)
    return body


def _chassis_update_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--name")
    p.add_argument("--datapath-id")
    p.add_argument("--tunnel-ip")
    p.add_argument("--bridge-mapping", action="append", default=[])


def _chassis_update(client: Client, a: argparse.Namespace) -> dict:
    body = _drop_none({"name": a.name, "datapath_id": a.datapath_id, "tunnel_ip": a.tunnel_ip})
    if a.bridge_mapping:
        body["bridge_mappings"] = _mappings(a.bridge_mapping)
    return body


def _sg_body(client: Client, a: argparse.Namespace) -> dict:
    return _drop_none({"name": a.name, "description": a.description})


NOUNS: dict[str, NounSpec] = {
    NETWORK: NounSpec(_net_create_args, _net_create, _net_update_args, _net_update,
                      (Filter("--name", "name"), Filter("--external", "router:external"))),
    SUBNET: NounSpec(_subnet_create_args, _subnet_create, _subnet_update_args, _subnet_update,
                     (Filter("--network", "network_id", "networks"), Filter("--name", "name"))),
    PORT: NounSpec(_port_create_args, _port_create, _port_update_args, _port_update,
                   (Filter("--network", "network_id", "networks"), Filter("--device-owner", "device_owner"),
                    Filter("--host", "binding:host_id"), Filter("--name", "name"))),
    ROUTER: NounSpec(_router_create_args, _router_create, _router_update_args, _router_update,
                     (Filter("--name", "name"),), extra=_router_interface),
    SECURITY_GROUP: NounSpec(_sg_create_args, _sg_body, _sg_update_args, _sg_body, (Filter("--name", "name"),)),
    SECURITY_GROUP_RULE: NounSpec(_rule_create_args, _rule_create,
                                  filters=(Filter("--group", "security_group_id", "security-groups"),)),
    FLOATINGIP: NounSpec(_fip_create_args, _fip_create, _fip_update_args, _fip_update,
                         (Filter("--port", "port_id", "ports"),
                          Filter("--network", "floating_network_id", "networks"))),
    CHASSIS: NounSpec(_chassis_create_args, _chassis_create, _chassis_update_args, _chassis_update,
                      (Filter("--name", "name"),)),
}
