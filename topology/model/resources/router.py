"""Routers: external gateway port, interfaces (ports holding subnet gateway IPs), static routes."""
from __future__ import annotations

import copy
from typing import Any, cast

import netaddr

from topology.model import errors
from topology.model.context import Context, check_owner, project_for
from topology.model.resources import common, port as port_res
from topology.store import FLOATINGIP, NETWORK, PORT, ROUTER, SUBNET, Record
from topology.model.validate import given_or_default
from topology.store.writetx import WriteTx, base_fields


class RouterExternalGatewayInUseByFloatingIp(errors.Conflict):
    message = "Gateway cannot be updated for router {router_id}, since a gateway to external network " \
              "{net_id} is required by one or more floating IPs."


class RouterInterfaceInUseByFloatingIP(errors.Conflict):
    message = "Router interface for subnet {subnet_id} on router {router_id} cannot be deleted, as it is " \
              "required by one or more floating IPs."


class RouterInterfaceInUseByRoute(errors.Conflict):
    message = "Router interface for subnet {subnet_id} on router {router_id} cannot be deleted, as it is " \
              "required by one or more routes."


class InvalidRoutes(errors.BadRequest):
    message = "Invalid format for routes: {routes}, {reason}"


def interface_ports(tx: WriteTx, router_id: str) -> list[Record]:
    return [p for p in tx.list(PORT)
            if p["device_owner"] == common.DEVICE_ROUTER_INTERFACE and p["device_id"] == router_id]


def gateway_port(tx: WriteTx, router_id: str) -> Record | None:
    return next((p for p in tx.list(PORT)
                 if p["device_owner"] == common.DEVICE_ROUTER_GATEWAY and p["device_id"] == router_id), None)


def _interface_subnets(tx: WriteTx, router_id: str) -> dict[str, str]:
    """subnet id -> port id of the router's interfaces."""
    return {f["subnet_id"]: p["id"] for p in interface_ports(tx, router_id) for f in p["fixed_ips"]}


def _fips_on_router(tx: WriteTx, router_id: str) -> list[Record]:
    return [f for f in tx.list(FLOATINGIP) if f.get("router_id") == router_id]


def _set_gateway(tx: WriteTx, router: Record, info: dict | None, ctx: Context) -> None:
    """Create/replace/remove the router's gateway port and fill external_gateway_info."""
    current = gateway_port(tx, router["id"])
    if info is None:
        if current is not None:
            if _fips_on_router(tx, router["id"]):
                raise RouterExternalGatewayInUseByFloatingIp(router_id=router["id"], net_id=current["network_id"])
            tx.remove(PORT, current)
        router["external_gateway_info"] = None
        return
    net = common.get_visible(tx, NETWORK, info["network_id"], ctx)
    if not net["router:external"]:
        raise errors.BadRequest(f"Network {net['id']} is not a valid external network")
    requested = info.get("external_fixed_ips")
    if requested and not ctx.is_admin:
        raise errors.PolicyNotAuthorized(action="update_router:external_gateway_info:external_fixed_ips")
    if current is not None and current["network_id"] == net["id"]:
        if requested:
            new = copy.deepcopy(current)
            new["fixed_ips"] = port_res.allocate_fixed_ips(tx, net, requested, existing=current["fixed_ips"],
                                                           mac=current["mac_address"],
                                                           device_owner=common.DEVICE_ROUTER_GATEWAY)
            if new != current:
                current = tx.replace(PORT, current, new)
    else:
        if current is not None:
            if _fips_on_router(tx, router["id"]):
                raise RouterExternalGatewayInUseByFloatingIp(router_id=router["id"], net_id=current["network_id"])
            tx.remove(PORT, current)
        mac = tx.new_mac(net["id"])  # first: its EUI-64 addresses on SLAAC subnets come from it (Neutron)
        fixed = port_res.allocate_fixed_ips(tx, net, requested or None, mac=mac,
                                            device_owner=common.DEVICE_ROUTER_GATEWAY)
        current = port_res.make_service_port(tx, net, "", common.DEVICE_ROUTER_GATEWAY, router["id"], fixed, mac)
    router["external_gateway_info"] = {
        "network_id": net["id"],
        "enable_snat": info.get("enable_snat", True),
        "external_fixed_ips": copy.deepcopy(current["fixed_ips"]),
    }


def _check_routes(tx: WriteTx, router: Record, routes: list[dict]) -> None:
    """Each next hop must be on a subnet the router is connected to (Neutron's rule)."""
    connected = [tx.get(SUBNET, sid) for sid in _interface_subnets(tx, router["id"])]
    info = router.get("external_gateway_info")
    if info:
        connected += [tx.get(SUBNET, f["subnet_id"]) for f in info["external_fixed_ips"]]
    nets = [netaddr.IPNetwork(s["cidr"]) for s in connected if s is not None]
    own = {netaddr.IPAddress(f["ip_address"]) for p in interface_ports(tx, router["id"]) for f in p["fixed_ips"]}
    own |= {netaddr.IPAddress(f["ip_address"]) for f in (info or {}).get("external_fixed_ips") or ()}
    for route in routes:
        hop = netaddr.IPAddress(route["nexthop"])
        if not any(hop in n for n in nets):
            raise InvalidRoutes(routes=route, reason="the nexthop is not connected with router")
        if hop in own:
            raise InvalidRoutes(routes=route, reason="the nexthop is used by router")


def extraroutes_of_body(body: Any) -> list[dict]:
    """The routes of an extraroute-atomic body {"router": {"routes": [...]}}, validated like the
    `routes` attribute (destination CIDR, nexthop IP, no duplicates); 400 otherwise."""
    from topology.model.validate import to_routes
    inner = body.get("router") if isinstance(body, dict) else None
    if not isinstance(inner, dict) or "routes" not in inner or set(body) != {"router"}:
        raise errors.BadRequest("Body must be {\"router\": {\"routes\": [...]}}.")
    unknown = set(inner) - {"routes"}
    if unknown:
        raise errors.BadRequest(f"Unrecognized attribute(s) '{', '.join(sorted(unknown))}'")
    return to_routes("routes", inner["routes"])


def _route_key(route: dict) -> tuple[str, str]:
    return str(netaddr.IPNetwork(route["destination"]).cidr), str(netaddr.IPAddress(route["nexthop"]))


def update_extraroutes(tx: WriteTx, old: Record, routes: list[dict], add: bool, ctx: Context) -> Record:
    """add_extraroutes / remove_extraroutes (Neutron's extraroute-atomic): the router's routes
    plus (exact duplicates merged) or minus (absent ones ignored) `routes`, checked as a whole
    like an update of `routes`, in the caller's one write transaction."""
    check_owner(ROUTER, old, ctx, "update")
    current = list(old.get("routes") or [])
    if add:
        merged, keys = current, {_route_key(r) for r in current}
        for r in routes:
            if _route_key(r) not in keys:
                keys.add(_route_key(r))
                merged = merged + [r]
    else:
        gone = {_route_key(r) for r in routes}
        merged = [r for r in current if _route_key(r) not in gone]
    new = copy.deepcopy(old)
    _check_routes(tx, new, merged)
    new["routes"] = merged
    return old if new == old else tx.replace(ROUTER, old, new)


def create(tx: WriteTx, body: dict[str, Any], ctx: Context) -> Record:
    common.check_admin_attrs(ROUTER, body, ctx, "create")
    project = project_for(body, ctx)
    rec = base_fields(body, project, tx)
    common.check_new_id(tx, ROUTER, rec)
    # name, admin_state_up, distributed, ha, ...: validate.SPECS; the gateway and routes are checked below
    rec.update(given_or_default(ROUTER, body, skip={*rec, "external_gateway_info", "routes"}))
    rec.update({
        "status": "ACTIVE",
        "external_gateway_info": None,
        "routes": [],
        "availability_zones": [],
        "flavor_id": None,
    })
    _set_gateway(tx, rec, body.get("external_gateway_info"), ctx)
    if body.get("routes"):
        _check_routes(tx, rec, body["routes"])
        rec["routes"] = body["routes"]
    return tx.insert(ROUTER, rec)


def update(tx: WriteTx, old: Record, body: dict[str, Any], ctx: Context) -> Record:
    check_owner(ROUTER, old, ctx, "update")
    common.check_admin_attrs(ROUTER, body, ctx, "update")
    new = copy.deepcopy(old)
    for name in ("name", "admin_state_up", "description", "distributed", "ha"):
        if name in body:
            new[name] = body[name]
    if "external_gateway_info" in body:
        _set_gateway(tx, new, body["external_gateway_info"], ctx)
    if "routes" in body:
        _check_routes(tx, new, body["routes"])
        new["routes"] = body["routes"]
    return old if new == old else tx.replace(ROUTER, old, new)


def delete(tx: WriteTx, old: Record, ctx: Context) -> None:
    check_owner(ROUTER, old, ctx, "delete")
    if interface_ports(tx, old["id"]):
        raise errors.RouterInUse(router_id=old["id"], reason="still has ports")
    gw = gateway_port(tx, old["id"])
    if gw is not None:
        tx.remove(PORT, gw)
    tx.remove(ROUTER, old)


def _interface_info(router: Record, port: Record, subnet_id: str | None = None) -> dict[str, Any]:
    subnet_ids = [f["subnet_id"] for f in port["fixed_ips"]]
    if subnet_id is None:
        subnet_id = subnet_ids[0] if subnet_ids else None
    return {"id": router["id"], "tenant_id": router["project_id"], "project_id": router["project_id"],
            "port_id": port["id"], "network_id": port["network_id"],
            "subnet_id": subnet_id, "subnet_ids": subnet_ids}


def _ipv6_interface_on(tx: WriteTx, router_id: str, network_id: str) -> Record | None:
    """The router's interface port on `network_id` that already holds an IPv6 gateway, if any."""
    for p in interface_ports(tx, router_id):
        if p["network_id"] == network_id and any(":" in f["ip_address"] for f in p["fixed_ips"]):
            return p
    return None


def _one_of(body: Any) -> tuple[str | None, str | None]:
    from topology.model.validate import to_uuid
    if not isinstance(body, dict):
        raise errors.BadRequest("Body must be a JSON object.")
    unknown = set(body) - {"subnet_id", "port_id"}
    if unknown:
        raise errors.BadRequest(f"Unrecognized attribute(s) '{', '.join(sorted(unknown))}'")
    sid = to_uuid("subnet_id", body["subnet_id"]) if body.get("subnet_id") is not None else None
    pid = to_uuid("port_id", body["port_id"]) if body.get("port_id") is not None else None
    return sid, pid


def add_interface(tx: WriteTx, router: Record, body: Any, ctx: Context) -> dict[str, Any]:
    check_owner(ROUTER, router, ctx, "add_router_interface")
    subnet_id, port_id = _one_of(body)
    if (subnet_id is None) == (port_id is None):
        raise errors.BadRequest("Either subnet_id or port_id must be specified, not both and not neither.")
    attached = _interface_subnets(tx, router["id"])
    if port_id is not None:
        port = common.get_visible(tx, PORT, port_id, ctx)
        if port["device_owner"] or port["device_id"]:
            raise errors.PortInUse(port_id=port["id"], net_id=port["network_id"], device_id=port["device_id"])
        if not port["fixed_ips"]:
            raise errors.BadRequest(f"Router port must have at least one fixed IP (port {port['id']})")
        # The subnets of a port's fixed IPs exist while the port does.
        subnets = cast("list[Record]", [tx.get(SUBNET, f["subnet_id"]) for f in port["fixed_ips"]])
    else:
        assert subnet_id is not None  # exactly one of subnet_id, port_id (checked above)
        subnet = common.get_visible(tx, SUBNET, subnet_id, ctx)
        if subnet["gateway_ip"] is None:
            raise errors.BadRequest(f"Bad router request: Subnet {subnet['id']} does not have a gateway IP.")
        subnets = [subnet]
    for subnet in subnets:
        if subnet["id"] in attached:
            raise errors.BridgeInUse(reason=f"Router {router['id']} already has a port on subnet {subnet['id']}")
        new_net = netaddr.IPNetwork(subnet["cidr"])
        for other_id in attached:
            other = tx.get(SUBNET, other_id)
            if other is not None and new_net.version == netaddr.IPNetwork(other["cidr"]).version and \
                    new_net.first <= netaddr.IPNetwork(other["cidr"]).last and \
                    netaddr.IPNetwork(other["cidr"]).first <= new_net.last:
                raise errors.BadRequest(f"Bad router request: Cidr {subnet['cidr']} of subnet {subnet['id']} "
                                        f"overlaps with cidr {other['cidr']} of subnet {other['id']}.")
    if port_id is not None:
        new = dict(copy.deepcopy(port), device_owner=common.DEVICE_ROUTER_INTERFACE, device_id=router["id"],
                   security_groups=[], port_security_enabled=False, allowed_address_pairs=[], status="ACTIVE")
        port = tx.replace(PORT, port, new)
    else:
        subnet = subnets[0]
        net = tx.get(NETWORK, subnet["network_id"])
        assert net is not None  # a subnet's network outlives it
        gateway = {"subnet_id": subnet["id"], "ip_address": subnet["gateway_ip"]}
        v6_port = _ipv6_interface_on(tx, router["id"], net["id"]) if subnet["ip_version"] == 6 else None
        if v6_port is not None:
            # Neutron: one router port per network carries all its IPv6 subnets' gateways.
            fixed = port_res.allocate_fixed_ips(tx, net, [*v6_port["fixed_ips"], gateway],
                                                existing=v6_port["fixed_ips"],
                                                device_owner=common.DEVICE_ROUTER_INTERFACE)
            port = tx.replace(PORT, v6_port, dict(copy.deepcopy(v6_port), fixed_ips=fixed))
        else:
            fixed = port_res.allocate_fixed_ips(tx, net, [gateway], device_owner=common.DEVICE_ROUTER_INTERFACE)
            port = port_res.make_service_port(tx, net, router["project_id"], common.DEVICE_ROUTER_INTERFACE,
                                              router["id"], fixed)
        tx.replace(ROUTER, router, copy.deepcopy(router))
        return _interface_info(router, port, subnet["id"])
    tx.replace(ROUTER, router, copy.deepcopy(router))
    return _interface_info(router, port)


def remove_interface(tx: WriteTx, router: Record, body: Any, ctx: Context) -> dict[str, Any]:
    check_owner(ROUTER, router, ctx, "remove_router_interface")
    subnet_id, port_id = _one_of(body)
    if subnet_id is None and port_id is None:
        raise errors.BadRequest("Either subnet_id or port_id must be specified.")
    ports = interface_ports(tx, router["id"])
    if port_id is not None:
        port = next((p for p in ports if p["id"] == port_id), None)
        if port is None or (subnet_id is not None and
                            all(f["subnet_id"] != subnet_id for f in port["fixed_ips"])):
            raise errors.RouterInterfaceNotFound(router_id=router["id"], port_id=port_id)
    else:
        port = next((p for p in ports if any(f["subnet_id"] == subnet_id for f in p["fixed_ips"])), None)
        if port is None:
            assert subnet_id is not None  # not both None (checked above)
            common.get_visible(tx, SUBNET, subnet_id, ctx)
            raise errors.RouterInterfaceNotFoundForSubnet(router_id=router["id"], subnet_id=subnet_id)
    subnet_ids = [f["subnet_id"] for f in port["fixed_ips"]]
    for sid in (subnet_ids if port_id is not None or subnet_id is None else [subnet_id]):
        subnet = tx.get(SUBNET, sid)
        if subnet is None:
            continue
        cidr = netaddr.IPNetwork(subnet["cidr"])
        for fip in _fips_on_router(tx, router["id"]):
            if fip.get("fixed_ip_address") and netaddr.IPAddress(fip["fixed_ip_address"]) in cidr:
                fixed_port = tx.get(PORT, fip["port_id"]) if fip.get("port_id") else None
                if fixed_port is not None and fixed_port["network_id"] == subnet["network_id"]:
                    raise RouterInterfaceInUseByFloatingIP(subnet_id=sid, router_id=router["id"])
        for route in router.get("routes", []):
            if netaddr.IPAddress(route["nexthop"]) in cidr:
                raise RouterInterfaceInUseByRoute(subnet_id=sid, router_id=router["id"])
    if port_id is None and len(subnet_ids) > 1:
        # Removed by subnet from a port with several (IPv6 gateways): only that address goes.
        info = _interface_info(router, port, subnet_id)
        tx.replace(PORT, port, dict(copy.deepcopy(port),
                                    fixed_ips=[f for f in port["fixed_ips"] if f["subnet_id"] != subnet_id]))
        tx.replace(ROUTER, router, copy.deepcopy(router))
        return info
    info = _interface_info(router, port)
    tx.remove(PORT, port)
    tx.replace(ROUTER, router, copy.deepcopy(router))
    return info
