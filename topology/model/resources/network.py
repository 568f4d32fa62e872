"""Networks: provider attributes, segmentation-id allocation, MTU, deletion rules."""
from __future__ import annotations

import copy
from typing import Any

from topology.model import errors
from topology.model.context import Context, check_owner, project_for
from topology.model.resources import common, qos
from topology.store import NETWORK, PORT, SUBNET, Record
from topology.model.validate import given_or_default
from topology.store.writetx import WriteTx, base_fields

TUNNEL_TYPES = {"vxlan": 2 ** 24 - 1, "geneve": 2 ** 24 - 1, "gre": 2 ** 32 - 1}
NETWORK_TYPES = ("local", "flat", "vlan", *TUNNEL_TYPES)


def _lowest_free(used: set[int], lo: int, hi: int) -> int | None:
    for value in range(lo, hi + 1):
        if value not in used:
            return value
    return None


def _tunnel_range(tx: WriteTx, ntype: str) -> tuple[int, int]:
    s = tx.settings
    return {"vxlan": s.vni_range, "gre": s.gre_range, "geneve": s.geneve_range}[ntype]


def allocate_segment(tx: WriteTx, body: dict[str, Any]) -> tuple[str, str | None, int | None]:
    """Validate provider attributes and allocate what was not given: (type, physnet, segmentation id)."""
    settings = tx.settings
    ntype = body.get("provider:network_type") or settings.tenant_network_type
    physnet = body.get("provider:physical_network")
    segid = body.get("provider:segmentation_id")
    used = tx.segments()
    if ntype not in NETWORK_TYPES:
        raise errors.InvalidNetworkType(network_type=ntype)
    if ntype == "local":
        if physnet is not None or segid is not None:
            raise errors.InvalidInput(error_message="local networks take no physical network or segmentation id")
        return ntype, None, None
    if ntype in TUNNEL_TYPES:
        if physnet is not None:
            raise errors.InvalidInput(error_message=f"provider:physical_network specified for {ntype} network")
        taken = used.setdefault((ntype, None), set())
        if segid is None:
            lo, hi = _tunnel_range(tx, ntype)
            segid = _lowest_free(taken, lo, hi)
            if segid is None:
                raise errors.NoNetworkAvailable()
        elif not 1 <= segid <= TUNNEL_TYPES[ntype]:
            raise errors.InvalidSegmentationId(segmentation_id=segid, network_type=ntype,
                                               reason=f"must be between 1 and {TUNNEL_TYPES[ntype]}")
        elif segid in taken:
            raise errors.TunnelIdInUse(tunnel_id=segid)
        taken.add(segid)
        return ntype, None, segid
    # flat / vlan
    if physnet is None and ntype == "vlan" and segid is None:
        for candidate, (lo, hi) in settings.vlan_ranges.items():
            if _lowest_free(used.get(("vlan", candidate), set()), lo, hi) is not None:
                physnet = candidate
                break
        if physnet is None:
            raise errors.NoNetworkAvailable()
    if physnet is None:
        raise errors.InvalidInput(error_message=f"provider:physical_network required for {ntype} network")
    if physnet not in settings.known_physnets():
        raise errors.UnknownPhysicalNetwork(physical_network=physnet)
    taken = used.setdefault((ntype, physnet), set())
    if ntype == "flat":
        if segid is not None:
            raise errors.InvalidInput(error_message="provider:segmentation_id specified for flat network")
        if taken:
            raise errors.FlatNetworkInUse(physical_network=physnet)
        taken.add(0)
        return ntype, physnet, None
    if segid is None:
        if physnet not in settings.vlan_ranges:
            raise errors.NoNetworkAvailable(detail=f"no VLAN range configured for {physnet}")
        lo, hi = settings.vlan_ranges[physnet]
        segid = _lowest_free(taken, lo, hi)
        if segid is None:
            raise errors.NoNetworkAvailable()
    elif not 1 <= segid <= 4094:
        raise errors.InvalidSegmentationId(segmentation_id=segid, network_type="vlan",
                                           reason="must be between 1 and 4094")
    elif segid in taken:
        raise errors.VlanIdInUse(vlan_id=segid, physical_network=physnet)
    taken.add(segid)
    return ntype, physnet, segid


def _check_mtu(tx: WriteTx, mtu: int, ntype: str) -> None:
    limit = tx.settings.mtu_for(ntype)
    minimum = 68
    if not minimum <= mtu <= limit:
        raise errors.InvalidInput(error_message=f"Requested MTU {mtu} is outside {minimum}..{limit} "
                                                f"for a {ntype} network")


def create(tx: WriteTx, body: dict[str, Any], ctx: Context) -> Record:
    common.check_admin_attrs(NETWORK, body, ctx, "create")
    qos.policy_ref_visible(tx.get, body.get("qos_policy_id"), ctx)
    project = project_for(body, ctx)
    ntype, physnet, segid = allocate_segment(tx, body)
    mtu = body.get("mtu")
    if mtu is None:
        mtu = tx.settings.mtu_for(ntype)
    _check_mtu(tx, mtu, ntype)
    rec = base_fields(body, project, tx)
    common.check_new_id(tx, NETWORK, rec)
    rec.update(given_or_default(NETWORK, body, skip=rec))  # name, admin_state_up, shared, ...: validate.SPECS
    if "qos_policy_id" not in body:
        rec["qos_policy_id"] = qos.default_policy_id(tx, project)  # Neutron's qos-default
    rec.update({
        "status": "ACTIVE",
        "mtu": mtu,
        "provider:network_type": ntype,
        "provider:physical_network": physnet,
        "provider:segmentation_id": segid,
        "availability_zones": [],
        "ipv4_address_scope": None,
        "ipv6_address_scope": None,
        "is_default": False,
    })
    return tx.insert(NETWORK, rec)


def update(tx: WriteTx, old: Record, body: dict[str, Any], ctx: Context) -> Record:
    check_owner(NETWORK, old, ctx, "update")
    common.check_admin_attrs(NETWORK, body, ctx, "update")
    if "qos_policy_id" in body:
        qos.policy_ref_visible(tx.get, body["qos_policy_id"], ctx)
    new = copy.deepcopy(old)
    for name in ("name", "admin_state_up", "shared", "router:external", "description", "port_security_enabled",
                 "qos_policy_id"):
        if name in body:
            new[name] = body[name]
    if "mtu" in body:
        _check_mtu(tx, body["mtu"], new["provider:network_type"])
        new["mtu"] = body["mtu"]
    if old["router:external"] and not new["router:external"]:
        users = [p for p in tx.ports_of(old["id"])
                 if p["device_owner"] in (common.DEVICE_ROUTER_GATEWAY, common.DEVICE_FLOATINGIP)]
        if users:
            raise errors.NetworkInUse(net_id=old["id"], detail="router gateways or floating IPs use it")
    return tx.replace(NETWORK, old, new)


def delete(tx: WriteTx, old: Record, ctx: Context) -> None:
    """Neutron: only DHCP ports may remain (they go with the network); subnets go too."""
    check_owner(NETWORK, old, ctx, "delete")
    ports = tx.ports_of(old["id"])
    if any(p["device_owner"] != common.DEVICE_DHCP for p in ports):
        raise errors.NetworkInUse(net_id=old["id"])
    for port in ports:
        tx.remove(PORT, port)
    for subnet in tx.subnets_of(old["id"]):
        tx.remove(SUBNET, subnet)
    key = (old["provider:network_type"], old.get("provider:physical_network"))
    if key in tx.segments():
        tx.segments()[key].discard(old.get("provider:segmentation_id") or 0)
    tx.remove(NETWORK, old)
