"""Helpers shared by the resource modules: typed not-found lookups and admin-only attributes."""
from __future__ import annotations

from typing import Any

from topology.model import errors
from topology.model.context import Context, visible
from topology.store import (CHASSIS, FLOATINGIP, NETWORK, PORT, ROUTER, SECURITY_GROUP, SECURITY_GROUP_RULE,
                            SUBNET, Record)
from topology.store.writetx import WriteTx

NOT_FOUND: dict[str, type[errors.NotFound]] = {
    NETWORK: errors.NetworkNotFound, SUBNET: errors.SubnetNotFound, PORT: errors.PortNotFound,
    ROUTER: errors.RouterNotFound, FLOATINGIP: errors.FloatingIPNotFound,
    SECURITY_GROUP: errors.SecurityGroupNotFound, SECURITY_GROUP_RULE: errors.SecurityGroupRuleNotFound,
    CHASSIS: errors.ChassisNotFound,
}

DEVICE_DHCP = "network:dhcp"
DEVICE_ROUTER_INTERFACE = "network:router_interface"
DEVICE_ROUTER_GATEWAY = "network:router_gateway"
DEVICE_FLOATINGIP = "network:floatingip"
SERVICE_OWNERS = (DEVICE_ROUTER_INTERFACE, DEVICE_ROUTER_GATEWAY, DEVICE_FLOATINGIP)


def get_visible(tx: WriteTx, kind: str, rid: str, ctx: Context) -> Record:
    """The record, or the kind's 404 when it is missing or hidden from this project."""
    rec = tx.get(kind, rid)
    if rec is None or not visible(kind, rec, ctx, tx.get):
        raise NOT_FOUND[kind](id=rid)
    return rec


def check_admin_attrs(kind: str, body: dict[str, Any], ctx: Context, action: str) -> None:
    """Attributes only admins may set are the policy's to decide now: Service runs
    topology.model.guard (oslo.policy, `<action>_<kind>:<attr>` rules an operator's policy.yaml
    may loosen) before every handler, so a second, hard-coded check here would overrule it."""
    return


def check_new_id(tx: WriteTx, kind: str, rec: Record) -> None:
    if tx.get(kind, rec["id"]) is not None:
        raise errors.Conflict(f"A {kind} with id {rec['id']} already exists.")
