"""Subnets: CIDR/gateway/pool checks, overlap on one network, and the network's DHCP port."""
from __future__ import annotations

import copy
from typing import Any

import netaddr

from topology.model import errors, ipam
from topology.model.context import Context, check_owner, project_for
from topology.model.resources import common, port as port_res
from topology.store import NETWORK, PORT, SUBNET, Record
from topology.model.validate import given_or_default
from topology.store.writetx import WriteTx, base_fields


def dhcp_port(tx: WriteTx, network_id: str) -> Record | None:
    return next((p for p in tx.ports_of(network_id) if p["device_owner"] == common.DEVICE_DHCP), None)


def _dhcp_add(tx: WriteTx, net: Record, subnet: Record) -> None:
    """Like Neutron's DHCP agent: the network's DHCP port holds one address on every DHCP subnet."""
    port = dhcp_port(tx, net["id"])
    if port is not None and any(f["subnet_id"] == subnet["id"] for f in port["fixed_ips"]):
        return
    ip = tx.alloc_ip(subnet)
    if ip is None:
        return  # no room for a DHCP server address; DHCP on this subnet cannot be served
    fixed = {"subnet_id": subnet["id"], "ip_address": ip}
    if port is None:
        port_res.make_service_port(tx, net, net["project_id"], common.DEVICE_DHCP, f"dhcp-{net['id']}", [fixed])
    else:
        new = copy.deepcopy(port)
        new["fixed_ips"].append(fixed)
        tx.replace(PORT, port, new)


def restore_dhcp_port(tx: WriteTx, network_id: str) -> None:
    """The DHCP port was deleted through the API: like Neutron's DHCP agent, make it again for the
    network's DHCP subnets (a new port; the lowest free address, so usually the same one)."""
    net = tx.get(NETWORK, network_id)
    if net is None:
        return
    for subnet in tx.subnets_of(network_id):
        if subnet.get("enable_dhcp"):
            _dhcp_add(tx, net, subnet)


def _dhcp_remove(tx: WriteTx, subnet: Record) -> None:
    port = dhcp_port(tx, subnet["network_id"])
    if port is None:
        return
    remaining = [f for f in port["fixed_ips"] if f["subnet_id"] != subnet["id"]]
    if not remaining:
        tx.remove(PORT, port)
    elif remaining != port["fixed_ips"]:
        tx.replace(PORT, port, dict(copy.deepcopy(port), fixed_ips=remaining))


def _check_routes(cidr: str, routes: list[dict]) -> None:
    version = netaddr.IPNetwork(cidr).version
    for route in routes:
        if netaddr.IPNetwork(route["destination"]).version != version or \
                netaddr.IPAddress(route["nexthop"]).version != version:
            raise errors.InvalidInput(error_message=f"host route {route} does not match IP version {version}")


def create(tx: WriteTx, body: dict[str, Any], ctx: Context) -> Record:
    net = common.get_visible(tx, NETWORK, body["network_id"], ctx)
    if not ctx.is_admin and net["project_id"] != ctx.project_id:
        raise errors.PolicyNotAuthorized(action="create_subnet")
    project = project_for(body, ctx)
    cidr = body["cidr"]
    version = netaddr.IPNetwork(cidr).version
    if body.get("ip_version", version) != version:
        raise errors.InvalidInput(error_message=f"cidr {cidr} does not match ip_version {body['ip_version']}")
    new_net = netaddr.IPNetwork(cidr)
    for other in tx.subnets_of(net["id"]):
        other_net = netaddr.IPNetwork(other["cidr"])
        if other_net.version == version and (new_net.first <= other_net.last and other_net.first <= new_net.last):
            raise errors.SubnetOverlap(cidr=cidr, network_id=net["id"],
                                       detail=f"overlaps with subnet {other['id']} ({other['cidr']})")
    gateway = body["gateway_ip"] if "gateway_ip" in body else ipam.default_gateway(cidr)
    ipam.check_gateway(cidr, gateway)
    if body.get("allocation_pools"):
        pools = body["allocation_pools"]
        ipam.check_pools(cidr, pools, gateway)
    else:
        pools = ipam.default_pools(cidr, gateway)
    for ns in body.get("dns_nameservers", []):
        if netaddr.IPAddress(ns).version != version:
            raise errors.InvalidInput(error_message=f"nameserver {ns} does not match IP version {version}")
    _check_routes(cidr, body.get("host_routes", []))
    rec = base_fields(body, project, tx)
    common.check_new_id(tx, SUBNET, rec)
    # name, dns_nameservers, host_routes, enable_dhcp, ...: validate.SPECS (subnet pools are not offered)
    rec.update(given_or_default(SUBNET, body, skip={*rec, "subnetpool_id"}))
    rec.update({
        "network_id": net["id"],
        "ip_version": version,
        "cidr": cidr,
        "gateway_ip": gateway,
        "allocation_pools": pools,
        "subnetpool_id": None,
    })
    tx.insert(SUBNET, rec)
    if rec["enable_dhcp"] and version == 4:
        _dhcp_add(tx, net, rec)
    return rec


def update(tx: WriteTx, old: Record, body: dict[str, Any], ctx: Context) -> Record:
    check_owner(SUBNET, old, ctx, "update")
    new = copy.deepcopy(old)
    for name in ("name", "description", "dns_nameservers", "host_routes", "enable_dhcp", "service_types",
                 "segment_id"):
        if name in body:
            new[name] = body[name]
    if "gateway_ip" in body:
        new["gateway_ip"] = body["gateway_ip"]
        ipam.check_gateway(old["cidr"], new["gateway_ip"])
        router_ports = [p for p in tx.ports_of(old["network_id"])
                        if p["device_owner"] == common.DEVICE_ROUTER_INTERFACE
                        and any(f["subnet_id"] == old["id"] and f["ip_address"] == old["gateway_ip"]
                                for f in p["fixed_ips"])]
        if router_ports and new["gateway_ip"] != old["gateway_ip"]:
            raise errors.SubnetInUse(subnet_id=old["id"], reason="its gateway IP is used by a router interface")
    if "allocation_pools" in body:
        new["allocation_pools"] = body["allocation_pools"] or ipam.default_pools(old["cidr"], new["gateway_ip"])
        tx.forget_allocator(old["id"])
    ipam.check_pools(old["cidr"], new["allocation_pools"], new["gateway_ip"])
    _check_routes(old["cidr"], new["host_routes"])
    if new == old:
        return old
    tx.replace(SUBNET, old, new)
    if new["enable_dhcp"] and not old["enable_dhcp"] and new["ip_version"] == 4:
        net = tx.get(NETWORK, old["network_id"])
        assert net is not None  # a subnet's network outlives it
        _dhcp_add(tx, net, new)
    elif old["enable_dhcp"] and not new["enable_dhcp"]:
        _dhcp_remove(tx, old)
    return new


def delete(tx: WriteTx, old: Record, ctx: Context) -> None:
    check_owner(SUBNET, old, ctx, "delete")
    users = [p for p in tx.ports_of(old["network_id"]) if p["device_owner"] != common.DEVICE_DHCP
             and any(f["subnet_id"] == old["id"] for f in p["fixed_ips"])]
    if users:
        raise errors.SubnetInUse(subnet_id=old["id"],
                                 reason=f"one or more ports have an IP allocation from this subnet "
                                        f"({', '.join(p['id'] for p in users[:5])})")
    _dhcp_remove(tx, old)
    tx.forget_allocator(old["id"])
    tx.remove(SUBNET, old)
