"""Floating IPs: an address (held by a `network:floatingip` port) on an external network, mapped to a
port's fixed IP through the router that connects that port's subnet to the external network."""
from __future__ import annotations

import copy
from typing import Any

import netaddr

from topology.model import errors
from topology.model.context import Context, check_owner, project_for
from topology.model.resources import common, port as port_res
from topology.store import FLOATINGIP, NETWORK, PORT, ROUTER, SUBNET, Record
from topology.store.writetx import WriteTx, base_fields


def _router_for(tx: WriteTx, fip_net_id: str, port: Record, fixed_ip: str) -> str:
    subnet_id = next(f["subnet_id"] for f in port["fixed_ips"] if f["ip_address"] == fixed_ip)
    for candidate in tx.ports_of(port["network_id"]):
        if candidate["device_owner"] != common.DEVICE_ROUTER_INTERFACE:
            continue
        if not any(f["subnet_id"] == subnet_id for f in candidate["fixed_ips"]):
            continue
        router = tx.get(ROUTER, candidate["device_id"])
        info = router and router.get("external_gateway_info")
        if router is not None and info and info["network_id"] == fip_net_id:
            return router["id"]
    raise errors.ExternalGatewayForFloatingIPNotFound(external_network_id=fip_net_id, subnet_id=subnet_id,
                                                      port_id=port["id"])


def _associate(tx: WriteTx, fip: Record, port_id: str | None, fixed_ip: str | None, ctx: Context) -> None:
    """Fill port_id / fixed_ip_address / router_id / status (or clear them when port_id is None)."""
    if port_id is None:
        fip.update(port_id=None, fixed_ip_address=None, router_id=None, status="DOWN")
        return
    port = common.get_visible(tx, PORT, port_id, ctx)
    if not ctx.is_admin and port["project_id"] != ctx.project_id:
        raise errors.PortNotFound(id=port_id)
    if port["network_id"] == fip["floating_network_id"]:
        raise errors.BadRequest(f"Port {port_id} is on the external network {port['network_id']}")
    v4 = [f["ip_address"] for f in port["fixed_ips"] if netaddr.IPAddress(f["ip_address"]).version == 4]
    if fixed_ip is None:
        if not v4:
            raise errors.BadRequest(f"Port {port_id} does not have an IPv4 fixed IP")
        if len(v4) > 1:
            raise errors.BadRequest(f"Port {port_id} has multiple fixed IPv4 addresses; fixed_ip_address "
                                    "must be given")
        fixed_ip = v4[0]
    elif fixed_ip not in v4:
        raise errors.BadRequest(f"Port {port_id} does not have fixed IP {fixed_ip}")
    for other in tx.list(FLOATINGIP):
        if other["id"] != fip["id"] and other.get("port_id") == port_id and \
                other.get("fixed_ip_address") == fixed_ip and \
                other["floating_network_id"] == fip["floating_network_id"]:
            raise errors.FloatingIPPortAlreadyAssociated(floating_ip_address=fip["floating_ip_address"],
                                                         port_id=port_id, fixed_ip=fixed_ip,
                                                         net_id=fip["floating_network_id"])
    fip.update(port_id=port_id, fixed_ip_address=fixed_ip,
               router_id=_router_for(tx, fip["floating_network_id"], port, fixed_ip), status="ACTIVE")


def _fip_port(tx: WriteTx, fip_id: str, network_id: str) -> Record | None:
    return next((p for p in tx.ports_of(network_id)
                 if p["device_owner"] == common.DEVICE_FLOATINGIP and p["device_id"] == fip_id), None)


def create(tx: WriteTx, body: dict[str, Any], ctx: Context) -> Record:
    net = common.get_visible(tx, NETWORK, body["floating_network_id"], ctx)
    if not net["router:external"]:
        raise errors.BadRequest(f"Bad floatingip request: Network {net['id']} is not a valid external network.")
    project = project_for(body, ctx)
    rec = base_fields(body, project, tx)
    common.check_new_id(tx, FLOATINGIP, rec)
    request: dict[str, Any] = {}
    if body.get("subnet_id"):
        subnet = tx.get(SUBNET, body["subnet_id"])
        if subnet is None or subnet["network_id"] != net["id"]:
            raise errors.BadRequest(f"Subnet {body['subnet_id']} is not on network {net['id']}")
        request["subnet_id"] = subnet["id"]
    if body.get("floating_ip_address"):
        request["ip_address"] = body["floating_ip_address"]
    if request:
        fixed = port_res.allocate_fixed_ips(tx, net, [request])
    else:
        v4 = [s for s in tx.subnets_of(net["id"]) if s["ip_version"] == 4]
        fixed = []
        for subnet in v4:
            ip = tx.alloc_ip(subnet)
            if ip is not None:
                fixed = [{"subnet_id": subnet["id"], "ip_address": ip}]
                break
        if not fixed:
            raise errors.IpAddressGenerationFailure(net_id=net["id"])
    port_res.make_service_port(tx, net, "", common.DEVICE_FLOATINGIP, rec["id"], fixed)
    rec.update({"floating_network_id": net["id"], "floating_ip_address": fixed[0]["ip_address"],
                "port_id": None, "fixed_ip_address": None, "router_id": None, "status": "DOWN"})
    _associate(tx, rec, body.get("port_id"), body.get("fixed_ip_address"), ctx)
    return tx.insert(FLOATINGIP, rec)


def update(tx: WriteTx, old: Record, body: dict[str, Any], ctx: Context) -> Record:
    check_owner(FLOATINGIP, old, ctx, "update")
    new = copy.deepcopy(old)
    if "description" in body:
        new["description"] = body["description"]
    if "port_id" in body or "fixed_ip_address" in body:
        port_id = body.get("port_id", old["port_id"])
        fixed = body.get("fixed_ip_address") if port_id is not None else None
        if port_id == old["port_id"] and "fixed_ip_address" not in body:
            fixed = old["fixed_ip_address"]
        _associate(tx, new, port_id, fixed, ctx)
    return old if new == old else tx.replace(FLOATINGIP, old, new)


def delete(tx: WriteTx, old: Record, ctx: Context) -> None:
    check_owner(FLOATINGIP, old, ctx, "delete")
    port = _fip_port(tx, old["id"], old["floating_network_id"])
    if port is not None:
        tx.remove(PORT, port)
    tx.remove(FLOATINGIP, old)

