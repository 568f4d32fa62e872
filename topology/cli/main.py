"""`tenantflow` command line: one verb per resource, talking to the REST API with requests.

Why its own CLI beside `openstack`: scripts and labs need a small dependency-free client with
stable output (`-f json`, `-f value -c id`); options follow the openstack client's names.
`serve`, `node` and `flows` belong to the controller and are imported lazily.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import uuid
from typing import Any, Callable, Sequence

import requests

DEFAULT_URL = "http://127.0.0.1:9696"
DELEGATED = {"serve": "controller.serve", "node": "controller.node", "flows": "controller.inspect",
             "trace": "controller.trace", "status": "controller.status"}

# Default list columns per resource.
LIST_COLUMNS = {
    "networks": ["id", "name", "subnets", "provider:network_type", "provider:segmentation_id"],
    "subnets": ["id", "name", "network_id", "cidr", "gateway_ip"],
    "ports": ["id", "name", "mac_address", "fixed_ips", "status", "binding:host_id"],
    "routers": ["id", "name", "status", "external_gateway_info"],
    "security-groups": ["id", "name", "description", "project_id"],
    "security-group-rules": ["id", "security_group_id", "direction", "ethertype", "protocol",
                             "port_range_min", "port_range_max", "remote_ip_prefix", "remote_group_id"],
    "floatingips": ["id", "floating_ip_address", "fixed_ip_address", "port_id", "router_id", "status"],
    "chassis": ["id", "name", "datapath_id", "tunnel_ip", "bridge_mappings"],
}
SINGULAR = {"networks": "network", "subnets": "subnet", "ports": "port", "routers": "router",
            "security-groups": "security_group", "security-group-rules": "security_group_rule",
            "floatingips": "floatingip", "chassis": "chassis"}
PLURAL_KEY = {"networks": "networks", "subnets": "subnets", "ports": "ports", "routers": "routers",
              "security-groups": "security_groups", "security-group-rules": "security_group_rules",
              "floatingips": "floatingips", "chassis": "chassis"}


class CliError(Exception):
    """A user-facing failure: printed without a traceback, exit status 1."""


# ---- HTTP -----------------------------------------------------------------------------------
class Client:
    def __init__(self, url: str, project: str | None, token: str | None, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.headers = {"Content-Type": "application/json"}
        if project:
            self.headers["X-Project-Id"] = project
        if token:
            self.headers["X-Auth-Token"] = token
        self.timeout = timeout

    def call(self, method: str, path: str, body: Any = None, params: Any = None) -> Any:
        try:
            resp = requests.request(method, f"{self.url}/v2.0/{path}", headers=self.headers, params=params,
                                    data=None if body is None else json.dumps(body), timeout=self.timeout)
        except requests.RequestException as exc:
            raise CliError(f"cannot reach the API at {self.url}: {exc}") from None
        if resp.status_code >= 400:
            try:
                err = resp.json()["NeutronError"]
                message = f"{err['type']}: {err['message']}"
            except (ValueError, KeyError, TypeError):
                message = resp.text.strip()
            raise CliError(f"{resp.status_code} {message}")
        return resp.json() if resp.content else None

    def resolve(self, collection: str, ref: str) -> str:
        """Name or id → id (exactly one match by name required)."""
        if _is_uuid(ref):
            return ref
        found = self.call("GET", collection, params={"name": ref, "fields": "id"})[PLURAL_KEY[collection]]
        if not found:
            raise CliError(f"no {SINGULAR[collection]} named {ref!r}")
        if len(found) > 1:
            raise CliError(f"more than one {SINGULAR[collection]} named {ref!r}; use the id")
        return found[0]["id"]


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return len(text) == 36


# ---- output ---------------------------------------------------------------------------------
def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return str(value)


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    line = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    fmt = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    return "\n".join([line, fmt(headers), line, *[fmt(r) for r in rows], line])


def emit(args: argparse.Namespace, data: Any, columns: list[str] | None = None) -> None:
    fmt = args.format
    chosen = args.column or None
    if isinstance(data, list):
        cols = chosen or columns or (sorted(data[0]) if data else [])
        if fmt == "json":
            print(json.dumps([{c: d.get(c) for c in cols} if chosen else d for d in data], indent=2))
        elif fmt == "value":
            for d in data:
                print(" ".join(_cell(d.get(c)) for c in cols))
        else:
            print(_table(cols, [[_cell(d.get(c)) for c in cols] for d in data]))
        return
    if data is None:
        return
    keys = chosen or sorted(data)
    if fmt == "json":
        print(json.dumps({k: data.get(k) for k in keys}, indent=2))
    elif fmt == "value":
        for k in keys:
            print(_cell(data.get(k)))
    else:
        print(_table(["Field", "Value"], [[k, _cell(data.get(k))] for k in keys]))


# ---- option parsing helpers ------------------------------------------------------------------------
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


# ---- commands --------------------------------------------------------------------------------
Handler = Callable[[Client, argparse.Namespace], Any]


def _generic(sub: argparse._SubParsersAction, collection: str, name: str,
             build_create: Callable[[Client, argparse.Namespace], dict] | None,
             build_update: Callable[[Client, argparse.Namespace], dict] | None,
             add_create: Callable[[argparse.ArgumentParser], None] | None = None,
             add_update: Callable[[argparse.ArgumentParser], None] | None = None,
             list_filters: Sequence[tuple[str, str, str | None]] = ()) -> None:
    """create/list/show/delete(/set) for one collection."""
    res = sub.add_parser(name, help=f"{SINGULAR[collection].replace('_', ' ')} commands")
    verbs = res.add_subparsers(dest="verb", required=True)
    singular = SINGULAR[collection]

    if build_create is not None:
        p = verbs.add_parser("create")
        if add_create:
            add_create(p)

        def create(client: Client, args: argparse.Namespace) -> None:
            emit(args, client.call("POST", collection, {singular: build_create(client, args)})[singular])
        p.set_defaults(func=create)

    p = verbs.add_parser("list")
    for flag, attr, _resolve_in in list_filters:
        p.add_argument(flag, dest=attr.replace(":", "_"), action="append")

    def list_(client: Client, args: argparse.Namespace) -> None:
        params: list[tuple[str, str]] = []
        for _flag, attr, resolve_in in list_filters:
            for value in getattr(args, attr.replace(":", "_")) or []:
                params.append((attr, client.resolve(resolve_in, value) if resolve_in else value))
        emit(args, client.call("GET", collection, params=params)[PLURAL_KEY[collection]], LIST_COLUMNS[collection])
    p.set_defaults(func=list_)

    p = verbs.add_parser("show")
    p.add_argument("ref", metavar=singular.upper())
    p.set_defaults(func=lambda c, a: emit(a, c.call("GET", f"{collection}/{c.resolve(collection, a.ref)}")[singular]))

    p = verbs.add_parser("delete")
    p.add_argument("refs", nargs="+", metavar=singular.upper())

    def delete(client: Client, args: argparse.Namespace) -> None:
        for ref in args.refs:
            client.call("DELETE", f"{collection}/{client.resolve(collection, ref)}")
    p.set_defaults(func=delete)

    if build_update is not None:
        for verb in ("set", "update"):
            p = verbs.add_parser(verb)
            p.add_argument("ref", metavar=singular.upper())
            if add_update:
                add_update(p)

            def update(client: Client, args: argparse.Namespace) -> None:
                rid = client.resolve(collection, args.ref)
                body = build_update(client, args)
                emit(args, client.call("PUT", f"{collection}/{rid}", {singular: body})[singular])
            p.set_defaults(func=update)


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


def _router_interface(sub: argparse._SubParsersAction) -> None:
    verbs = sub.choices["router"]._subparsers._group_actions[0]
    for verb, action in (("add-interface", "add_router_interface"), ("remove-interface", "remove_router_interface")):
        p = verbs.add_parser(verb)
        p.add_argument("router")
        p.add_argument("subnet", nargs="?")
        p.add_argument("--subnet", dest="subnet_opt")
        p.add_argument("--port")

        def run(client: Client, a: argparse.Namespace, action: str = action) -> None:
            subnet = a.subnet or a.subnet_opt
            if bool(subnet) == bool(a.port):
                raise CliError("give a subnet or --port PORT")
            body = {"subnet_id": client.resolve("subnets", subnet)} if subnet else \
                {"port_id": client.resolve("ports", a.port)}
            rid = client.resolve("routers", a.router)
            emit(a, client.call("PUT", f"routers/{rid}/{action}", body))
        p.set_defaults(func=run)


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tenantflow", description="tenantflow networking CLI")
    parser.add_argument("--url", default=os.environ.get("TENANTFLOW_URL", DEFAULT_URL),
                        help="API URL (env TENANTFLOW_URL; default %(default)s)")
    parser.add_argument("--project", default=os.environ.get("TENANTFLOW_PROJECT"),
                        help="act as this project (X-Project-Id); default: admin in the default project")
    parser.add_argument("--token", default=os.environ.get("TENANTFLOW_TOKEN"), help="static API token")
    sub = parser.add_subparsers(dest="resource", required=True)
    for name, module in DELEGATED.items():
        sub.add_parser(name, help=f"(runs {module})", add_help=False)
    _generic(sub, "networks", "network", _net_create, _net_update, _net_create_args, _net_update_args,
             [("--name", "name", None), ("--external", "router:external", None)])
    _generic(sub, "subnets", "subnet", _subnet_create, _subnet_update, _subnet_create_args, _subnet_update_args,
             [("--network", "network_id", "networks"), ("--name", "name", None)])
    _generic(sub, "ports", "port", _port_create, _port_update, _port_create_args, _port_update_args,
             [("--network", "network_id", "networks"), ("--device-owner", "device_owner", None),
              ("--host", "binding:host_id", None), ("--name", "name", None)])
    _generic(sub, "routers", "router", _router_create, _router_update, _router_create_args, _router_update_args,
             [("--name", "name", None)])
    _router_interface(sub)
    _generic(sub, "security-groups", "security-group",
             lambda c, a: _drop_none({"name": a.name, "description": a.description}),
             lambda c, a: _drop_none({"name": a.name, "description": a.description}),
             _sg_create_args, _sg_update_args, [("--name", "name", None)])
    _generic(sub, "security-group-rules", "security-group-rule", _rule_create, None, _rule_create_args, None,
             [("--group", "security_group_id", "security-groups")])
    _generic(sub, "floatingips", "floating-ip", _fip_create, _fip_update, _fip_create_args, _fip_update_args,
             [("--port", "port_id", "ports"), ("--network", "floating_network_id", "networks")])
    _generic(sub, "chassis", "chassis", _chassis_create, _chassis_update, _chassis_create_args,
             _chassis_update_args, [("--name", "name", None)])
    for action in _all_leaf_parsers(sub):
        action.add_argument("-f", "--format", choices=("table", "json", "value"), default="table")
        action.add_argument("-c", "--column", action="append", help="show only this column (repeatable)")
    return parser


def _all_leaf_parsers(sub: argparse._SubParsersAction) -> list[argparse.ArgumentParser]:
    leaves = []
    for name, parser in sub.choices.items():
        if name in DELEGATED:
            continue
        verbs = parser._subparsers._group_actions[0]
        leaves.extend(verbs.choices.values())
    return leaves


def _delegate(name: str, argv: list[str]) -> int:
    module_name = DELEGATED[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        print(f"tenantflow {name}: {module_name} is not available ({exc})", file=sys.stderr)
        return 2
    result = module.main(argv)
    return int(result or 0)


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and args_list[0] in DELEGATED:
        return _delegate(args_list[0], args_list[1:])
    parser = build_parser()
    args, extra = parser.parse_known_args(args_list)
    if args.resource in DELEGATED:
        # Controller-owned subcommands take their own options: hand them over untouched.
        return _delegate(args.resource, args_list[args_list.index(args.resource) + 1:])
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    client = Client(args.url, args.project, args.token)
    try:
        args.func(client, args)
    except CliError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
