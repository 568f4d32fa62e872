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
        # like any port, the new DHCP port holds its EUI-64 address on the network's SLAAC subnets
        mac = tx.new_mac(net["id"])
        auto = port_res.allocate_fixed_ips(tx, net, [], mac=mac, device_owner=common.DEVICE_DHCP)
        port_res.make_service_port(tx, net, net["project_id"], common.DEVICE_DHCP, f"dhcp-{net['id']}",
                                   [fixed, *auto], mac)
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


def _check_ipv6_modes(body: dict[str, Any], version: int, cidr: str, enable_dhcp: bool) -> None:
    """Neutron's IPv6 attribute rules (db_base_plugin_v2._validate_ipv6_attributes), all 400."""
    ra_mode, addr_mode = body.get("ipv6_ra_mode"), body.get("ipv6_address_mode")
    if version == 4:
        for name, value in (("ipv6_ra_mode", ra_mode), ("ipv6_address_mode", addr_mode)):
            if value is not None:
                raise errors.InvalidInput(error_message=f"{name} is not valid when ip_version is 4")
        return
    if (ra_mode or addr_mode) and not enable_dhcp:
        raise errors.InvalidInput(error_message="ipv6_ra_mode or ipv6_address_mode cannot be set when "
                                                "enable_dhcp is set to False")
    if ra_mode and addr_mode and ra_mode != addr_mode:
        raise errors.InvalidInput(error_message=f"ipv6_ra_mode set to '{ra_mode}' with ipv6_address_mode set "
                                                f"to '{addr_mode}' is not valid. If both attributes are set, "
                                                f"they must be the same value")
    if ipam.is_auto_address_subnet(body) and netaddr.IPNetwork(cidr).prefixlen != 64:
        raise errors.InvalidInput(error_message=f"Invalid CIDR {cidr} for IPv6 address mode. OpenStack uses "
                                                f"the EUI-64 address format, which requires the prefix to be /64")


def _add_auto_addresses(tx: WriteTx, subnet: Record) -> None:
    """Neutron gives every port already on the network (router interfaces aside) its EUI-64 address
    on a new auto-address subnet."""
    for p in tx.ports_of(subnet["network_id"]):
        if p["device_owner"] in ipam.ROUTER_INTERFACE_OWNERS or \
                any(f["subnet_id"] == subnet["id"] for f in p["fixed_ips"]):
            continue
        ip = ipam.eui64_address(subnet["cidr"], p["mac_address"])
        tx.claim_ip(subnet, ip)
        new = copy.deepcopy(p)
        new["fixed_ips"].append({"subnet_id": subnet["id"], "ip_address": ip})
        tx.replace(PORT, p, new)


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
    _check_ipv6_modes(body, version, cidr, body.get("enable_dhcp", True))
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
    if version == 6 and ipam.is_auto_address_subnet(rec):
        _add_auto_addresses(tx, rec)
    return rec


def update(tx: WriteTx, old: Record, body: dict[str, Any], ctx: Context) -> Record:
    check_owner(SUBNET, old, ctx, "update")
    new = copy.deepcopy(old)
    if body.get("enable_dhcp") is False and (old.get("ipv6_ra_mode") or old.get("ipv6_address_mode")):
        raise errors.InvalidInput(error_message="Cannot disable enable_dhcp with ipv6 attributes set")
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
    auto = old["ip_version"] == 6 and ipam.is_auto_address_subnet(old)
    holders = [p for p in tx.ports_of(old["network_id"]) if p["device_owner"] != common.DEVICE_DHCP
               and any(f["subnet_id"] == old["id"] for f in p["fixed_ips"])]
    # Neutron: EUI-64 addresses do not keep an auto-address subnet alive; they go with it.
    users = [p for p in holders if not auto or p["device_owner"] in ipam.ROUTER_INTERFACE_OWNERS]
    if users:
        raise errors.SubnetInUse(subnet_id=old["id"],
                                 reason=f"one or more ports have an IP allocation from this subnet "
                                        f"({', '.join(p['id'] for p in users[:5])})")
    for p in holders:  # only auto addresses are left here
        tx.replace(PORT, p, dict(copy.deepcopy(p), fixed_ips=[f for f in p["fixed_ips"]
                                                              if f["subnet_id"] != old["id"]]))
    _dhcp_remove(tx, old)
    tx.forget_allocator(old["id"])
    tx.remove(SUBNET, old)
