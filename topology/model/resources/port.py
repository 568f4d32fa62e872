"""Ports: MAC and fixed-IP allocation, security groups, port security, address pairs, binding."""
from __future__ import annotations

import copy
from typing import Any

import netaddr

from topology.model import errors, ipam
from topology.model.context import Context, check_owner, project_for
from topology.model.ipam import ip_in_subnet
from topology.model.resources import common, qos, secgroup
from topology.model.validate import given_or_default
from topology.store import FLOATINGIP, NETWORK, PORT, ROUTER, SECURITY_GROUP, SUBNET, Record
from topology.store.writetx import WriteTx, base_fields


class AddressPairAndPortSecurityRequired(errors.Conflict):
    message = "Port Security must be enabled in order to have allowed address pairs on a port."


class AllocationOnAutoAddressSubnet(errors.InvalidInput):
    message = ("IPv6 address {ip} cannot be directly assigned to a port on subnet {subnet_id} as the "
               "subnet is configured for automatic addresses")


def _auto_ips(tx: WriteTx, subnets: list[Record], mac: str | None, device_owner: str,
              held: set[tuple[str, str]]) -> list[dict]:
    """The EUI-64 address of `mac` on every auto-address (SLAAC, DHCPv6-stateless) subnet: Neutron
    gives a port one on each, whatever fixed_ips asked for (router interfaces aside)."""
    if mac is None or device_owner in ipam.ROUTER_INTERFACE_OWNERS:
        return []
    out = []
    for subnet in subnets:
        if subnet["ip_version"] != 6 or not ipam.is_auto_address_subnet(subnet):
            continue
        ip = ipam.eui64_address(subnet["cidr"], mac)
        if (subnet["id"], ip) not in held:
            tx.claim_ip(subnet, ip)
        out.append({"subnet_id": subnet["id"], "ip_address": ip})
    return out


def allocate_fixed_ips(tx: WriteTx, net: Record, requested: list[dict] | None,
                       existing: list[dict] | None = None, mac: str | None = None,
                       device_owner: str = "") -> list[dict]:
    """Neutron's rules: none requested → one address per IP version from the first (stateful)
    subnet with room; otherwise each entry names a subnet and/or an address on this network.
    Either way, with `mac` given, the port also gets its EUI-64 address on every auto-address
    subnet (a fixed address there is refused; on an update, the addresses it holds there stay)."""
    subnets = tx.subnets_of(net["id"])
    router_side = device_owner in ipam.ROUTER_INTERFACE_OWNERS
    held = {(f["subnet_id"], f["ip_address"]) for f in existing or []}
    subnet: Record | None
    if requested is None:
        out = []
        for version in (4, 6):
            group = [s for s in subnets if s["ip_version"] == version and not ipam.is_auto_address_subnet(s)]
            if not group:
                continue
            for subnet in group:
                ip = tx.alloc_ip(subnet)
                if ip is not None:
                    out.append({"subnet_id": subnet["id"], "ip_address": ip})
                    break
            else:
                raise errors.IpAddressGenerationFailure(net_id=net["id"])
        return out + _auto_ips(tx, subnets, mac, device_owner, held)
    out, seen = [], set()
    for entry in requested:
        sid, ip = entry.get("subnet_id"), entry.get("ip_address")
        if sid is not None:
            subnet = tx.get(SUBNET, sid)
            if subnet is None or subnet["network_id"] != net["id"]:
                raise errors.InvalidInput(error_message=f"Failed to create port on network {net['id']}, "
                                                        f"because fixed_ips included invalid subnet {sid}")
        elif ip is not None:
            addr = netaddr.IPAddress(ip)
            subnet = next((s for s in subnets if addr in netaddr.IPNetwork(s["cidr"])), None)
            if subnet is None:
                raise errors.InvalidIpForNetwork(ip_address=ip)
        else:
            raise errors.InvalidInput(error_message="each fixed_ips entry needs a subnet_id or an ip_address")
        auto = ipam.is_auto_address_subnet(subnet) and subnet["ip_version"] == 6
        if auto and not router_side:
            if ip is not None and (subnet["id"], ip) not in held:
                raise AllocationOnAutoAddressSubnet(ip=ip, subnet_id=subnet["id"])
            continue  # its EUI-64 address is added below, with the other auto-address subnets
        if ip is not None:
            if not ip_in_subnet(subnet["cidr"], ip):
                raise errors.InvalidIpForSubnet(ip_address=ip)
            if (subnet["id"], ip) in seen:
                raise errors.InvalidInput(error_message=f"duplicate IP address {ip} in fixed_ips")
            if (subnet["id"], ip) not in held:
                tx.claim_ip(subnet, ip)
        else:
            reuse = next((h for h in held if h[0] == subnet["id"] and h not in seen), None)
            ip = reuse[1] if reuse else tx.alloc_ip(subnet)
            if ip is None:
                raise errors.IpAddressGenerationFailure(net_id=net["id"])
        seen.add((subnet["id"], ip))
        out.append({"subnet_id": subnet["id"], "ip_address": ip})
    return out + _auto_ips(tx, subnets, mac, device_owner, held)


def _kept_fixed_ips(tx: WriteTx, port: Record, device_owner: str) -> list[dict]:
    """A port's fixed IPs as a request that keeps them, its EUI-64 ones left to be re-derived."""
    out = []
    for f in port["fixed_ips"]:
        subnet = tx.get(SUBNET, f["subnet_id"])
        if subnet is not None and subnet["ip_version"] == 6 and ipam.is_auto_address_subnet(subnet) \
                and device_owner not in ipam.ROUTER_INTERFACE_OWNERS:
            continue
        out.append({"subnet_id": f["subnet_id"], "ip_address": f["ip_address"]})
    return out


def binding(host: str) -> dict[str, Any]:
    """Neutron's binding attributes of a port plugged on chassis `host` ('' = unbound): the one
    place vif_type/vif_details are derived (API updates and the controller's bindings use it)."""
    return {"binding:host_id": host,
            "binding:vif_type": "ovs" if host else "unbound",
            "binding:vif_details": {"port_filter": True, "ovs_hybrid_plug": False} if host else {}}


def make_port(tx: WriteTx, net: Record, project: str, body: dict[str, Any],
              fixed_ips: list[dict], mac: str | None = None) -> Record:
    """Build and insert a port record (shared by the API path and service ports).

    Attributes with a default in validate.SPECS take it from there; the others are the service's
    own: status (DOWN until the controller binds it), security groups and port security (decided
    by `create` from the project and the network; service ports have neither)."""
    mac = mac or tx.new_mac(net["id"])
    rec = base_fields(body, project, tx)
    common.check_new_id(tx, PORT, rec)
    given = given_or_default(PORT, body, skip=rec)
    rec.update(given)
    rec.update({
        "network_id": net["id"],
        "mac_address": mac,
        "fixed_ips": fixed_ips,
        "status": body.get("status", "DOWN"),
        "security_groups": body.get("security_groups", []),
        "port_security_enabled": body.get("port_security_enabled", False),
        **binding(given["binding:host_id"]),
    })
    return tx.insert(PORT, rec)


def make_service_port(tx: WriteTx, net: Record, project: str, device_owner: str, device_id: str,
                      fixed_ips: list[dict], mac: str | None = None) -> Record:
    """DHCP, router and floating-IP ports: no security groups, no port security, always ACTIVE."""
    return make_port(tx, net, project, {"device_owner": device_owner, "device_id": device_id,
                                        "status": "ACTIVE", "port_security_enabled": False}, fixed_ips, mac)


def _check_security_groups(tx: WriteTx, ids: list[str], project: str, ctx: Context) -> None:
    for sg_id in ids:
        sg = tx.get(SECURITY_GROUP, sg_id)
        if sg is None or (sg["project_id"] != project and not ctx.is_admin):
            raise errors.SecurityGroupNotFound(id=sg_id)


def _pairs(pairs: list[dict], mac: str) -> list[dict]:
    return [{"ip_address": p["ip_address"], "mac_address": p.get("mac_address") or mac} for p in pairs]


def _check_security(pse: bool | None, sgs: list[str], pairs: list[dict]) -> None:
    if not pse and sgs:
        raise errors.PortSecurityAndIPRequiredForSecurityGroups()
    if not pse and pairs:
        raise AddressPairAndPortSecurityRequired()


def create(tx: WriteTx, body: dict[str, Any], ctx: Context) -> Record:
    qos.policy_ref_visible(tx.get, body.get("qos_policy_id"), ctx)
    common.check_admin_attrs(PORT, body, ctx, "create")
    net = common.get_visible(tx, NETWORK, body["network_id"], ctx)
    project = project_for(body, ctx)
    mac = body.get("mac_address")
    if mac is not None and mac in tx.macs(net["id"]):
        raise errors.MacAddressInUse(net_id=net["id"], mac=mac)
    owner = body.get("device_owner", "")
    mac = mac or tx.new_mac(net["id"])  # first: the EUI-64 addresses are made from it
    fixed_ips = allocate_fixed_ips(tx, net, body.get("fixed_ips"), mac=mac, device_owner=owner)
    pse = body.get("port_security_enabled", net["port_security_enabled"])
    sgs = body.get("security_groups")
    if sgs is None:
        sgs = [secgroup.ensure_default(tx, project)] if pse and not owner.startswith("network:") else []
    else:
        _check_security_groups(tx, sgs, project, ctx)
    pairs = body.get("allowed_address_pairs", [])
    _check_security(pse, sgs, pairs)
    fields = dict(body, security_groups=sgs, port_security_enabled=pse, allowed_address_pairs=_pairs(pairs, mac))
    return make_port(tx, net, project, fields, fixed_ips, mac)


def update(tx: WriteTx, old: Record, body: dict[str, Any], ctx: Context) -> Record:
    check_owner(PORT, old, ctx, "update")
    common.check_admin_attrs(PORT, body, ctx, "update")
    if "qos_policy_id" in body:
        qos.policy_ref_visible(tx.get, body["qos_policy_id"], ctx)
    net = tx.get(NETWORK, old["network_id"])
    assert net is not None  # a port's network outlives it
    new = copy.deepcopy(old)
    for name in ("name", "admin_state_up", "device_id", "device_owner", "description", "binding:profile",
                 "binding:vnic_type", "extra_dhcp_opts", "qos_policy_id"):
        if name in body:
            new[name] = body[name]
    if "mac_address" in body and body["mac_address"] != old["mac_address"]:
        if body["mac_address"] in tx.macs(old["network_id"]):
            raise errors.MacAddressInUse(net_id=old["network_id"], mac=body["mac_address"])
        new["mac_address"] = body["mac_address"]
    if "fixed_ips" in body or new["mac_address"] != old["mac_address"]:
        # A new MAC means new EUI-64 addresses on the auto-address subnets (Neutron re-derives them).
        requested = body["fixed_ips"] if "fixed_ips" in body else _kept_fixed_ips(tx, old, new["device_owner"])
        new["fixed_ips"] = allocate_fixed_ips(tx, net, requested, existing=old["fixed_ips"],
                                              mac=new["mac_address"], device_owner=new["device_owner"])
    if "port_security_enabled" in body:
        new["port_security_enabled"] = body["port_security_enabled"]
    if "security_groups" in body:
        _check_security_groups(tx, body["security_groups"], old["project_id"], ctx)
        new["security_groups"] = body["security_groups"]
    if "allowed_address_pairs" in body:
        new["allowed_address_pairs"] = _pairs(body["allowed_address_pairs"], new["mac_address"])
    _check_security(new["port_security_enabled"], new["security_groups"], new["allowed_address_pairs"])
    if "binding:host_id" in body:
        new.update(binding(body["binding:host_id"]))
    if new == old:
        return old
    return tx.replace(PORT, old, new)


def disassociate_floatingips(tx: WriteTx, port_id: str) -> None:
    for fip in tx.list(FLOATINGIP):
        if fip.get("port_id") == port_id:
            new = dict(fip, port_id=None, fixed_ip_address=None, router_id=None, status="DOWN")
            tx.replace(FLOATINGIP, fip, new)


def delete(tx: WriteTx, old: Record, ctx: Context, internal: bool = False) -> None:
    check_owner(PORT, old, ctx, "delete")
    if not internal and old["device_owner"] in common.SERVICE_OWNERS and _owner_exists(tx, old):
        raise errors.RouterPortInUse(port_id=old["id"], device_owner=old["device_owner"])
    disassociate_floatingips(tx, old["id"])
    tx.remove(PORT, old)


def _owner_exists(tx: WriteTx, rec: Record) -> bool:
    """A router or floating-IP port whose router/floating IP is gone may be deleted (Neutron's L3
    plugin refuses only ports something still stands behind)."""
    kind = FLOATINGIP if rec["device_owner"] == common.DEVICE_FLOATINGIP else ROUTER
    return bool(rec["device_id"]) and tx.get(kind, rec["device_id"]) is not None
