"""Security groups and rules, including each project's auto-created `default` group."""
from __future__ import annotations

import copy
from typing import Any

import netaddr

from topology.model import errors
from topology.model.context import Context, check_owner, project_for
from topology.model.resources import common
from topology.store import PORT, SECURITY_GROUP, SECURITY_GROUP_RULE, Record
from topology.model.validate import ICMP_PROTOCOLS, PORT_PROTOCOLS, given_or_default, protocol_number
from topology.store.writetx import WriteTx, base_fields


class SecurityGroupDefaultAlreadyExists(errors.Conflict):
    message = "Default security group already exists."


class SecurityGroupCannotRemoveDefault(errors.Conflict):
    message = "Insufficient rights for removing default security group."


class SecurityGroupCannotUpdateDefault(errors.Conflict):
    message = "Updating default security group not allowed."


def _rule(tx: WriteTx, sg: Record, direction: str, ethertype: str, remote_group_id: str | None = None) -> Record:
    rec = base_fields({}, sg["project_id"], tx)
    rec.update({"security_group_id": sg["id"], "direction": direction, "ethertype": ethertype,
                "protocol": None, "port_range_min": None, "port_range_max": None,
                "remote_ip_prefix": None, "remote_group_id": remote_group_id,
                "remote_address_group_id": None})
    return tx.insert(SECURITY_GROUP_RULE, rec)


def _group(tx: WriteTx, project: str, body: dict[str, Any]) -> Record:
    rec = base_fields(body, project, tx)
    common.check_new_id(tx, SECURITY_GROUP, rec)
    rec.update(given_or_default(SECURITY_GROUP, body, skip=rec))  # name, stateful: validate.SPECS
    rec["shared"] = False
    tx.insert(SECURITY_GROUP, rec)
    for ethertype in ("IPv4", "IPv6"):
        _rule(tx, rec, "egress", ethertype)
    return rec


def ensure_default(tx: WriteTx, project: str) -> str:
    """The project's `default` group (created with Neutron's four rules on first use)."""
    existing = tx.default_sgs().get(project)
    if existing is not None:
        return existing
    sg = _group(tx, project, {"name": "default", "description": "Default security group"})
    for ethertype in ("IPv4", "IPv6"):
        _rule(tx, sg, "ingress", ethertype, remote_group_id=sg["id"])
    tx.default_sgs()[project] = sg["id"]
    return sg["id"]


def create(tx: WriteTx, body: dict[str, Any], ctx: Context) -> Record:
    project = project_for(body, ctx)
    ensure_default(tx, project)
    if body.get("name") == "default":
        raise SecurityGroupDefaultAlreadyExists()
    return _group(tx, project, body)


def update(tx: WriteTx, old: Record, body: dict[str, Any], ctx: Context) -> Record:
    check_owner(SECURITY_GROUP, old, ctx, "update")
    if old["name"] == "default" and "name" in body and body["name"] != "default":
        raise SecurityGroupCannotUpdateDefault()
    if body.get("name") == "default" and old["name"] != "default":
        raise SecurityGroupDefaultAlreadyExists()
    new = copy.deepcopy(old)
    for name in ("name", "description"):
        if name in body:
            new[name] = body[name]
    return old if new == old else tx.replace(SECURITY_GROUP, old, new)


def delete(tx: WriteTx, old: Record, ctx: Context) -> None:
    check_owner(SECURITY_GROUP, old, ctx, "delete")
    if old["name"] == "default" and not ctx.is_admin:
        raise SecurityGroupCannotRemoveDefault()
    if any(old["id"] in p["security_groups"] for p in tx.list(PORT)):
        raise errors.SecurityGroupInUse(id=old["id"], reason="in use")
    for rule in tx.list(SECURITY_GROUP_RULE):
        if rule["security_group_id"] == old["id"] or rule["remote_group_id"] == old["id"]:
            tx.remove(SECURITY_GROUP_RULE, rule)
    if tx.default_sgs().get(old["project_id"]) == old["id"]:
        del tx.default_sgs()[old["project_id"]]
    tx.remove(SECURITY_GROUP, old)


def _check_ports(rule: dict[str, Any]) -> None:
    proto = protocol_number(rule["protocol"])
    pmin, pmax = rule["port_range_min"], rule["port_range_max"]
    if pmin is None and pmax is None:
        return
    if proto is None:
        raise errors.InvalidPortRange(reason="a protocol must be given with a port range")
    if proto in PORT_PROTOCOLS:
        if pmin is None or pmax is None:
            raise errors.InvalidPortRange(reason="both port_range_min and port_range_max are required")
        if not 1 <= pmin <= 65535 or not 1 <= pmax <= 65535:
            raise errors.InvalidPortRange(reason=f"ports must be within 1..65535, got {pmin}..{pmax}")
        if pmin > pmax:
            raise errors.InvalidPortRange(reason="port_range_min must be <= port_range_max")
    elif proto in ICMP_PROTOCOLS:
        if pmin is None:
            raise errors.InvalidPortRange(reason="ICMP code (port-range-max) given without type (port-range-min)")
        for name, value in (("type", pmin), ("code", pmax)):
            if value is not None and not 0 <= value <= 255:
                raise errors.InvalidPortRange(reason=f"invalid ICMP {name} {value}")
    else:
        raise errors.InvalidPortRange(reason=f"protocol {rule['protocol']} does not take ports")


def _rule_key(rule: Record) -> tuple:
    prefix = rule["remote_ip_prefix"]
    return (rule["security_group_id"], rule["direction"], rule["ethertype"], protocol_number(rule["protocol"]),
            rule["port_range_min"], rule["port_range_max"],
            None if prefix in (None, "0.0.0.0/0", "::/0") else prefix, rule["remote_group_id"])


def create_rule(tx: WriteTx, body: dict[str, Any], ctx: Context) -> Record:
    sg = common.get_visible(tx, SECURITY_GROUP, body["security_group_id"], ctx)
    check_owner(SECURITY_GROUP, sg, ctx, "create_rule_in")
    project = project_for({"project_id": body.get("project_id") or sg["project_id"]}, ctx) \
        if ctx.is_admin else sg["project_id"]
    rule = base_fields(body, project, tx)
    common.check_new_id(tx, SECURITY_GROUP_RULE, rule)
    # ethertype, protocol, port range, remote prefix/group: validate.SPECS (address groups are not offered)
    rule.update(given_or_default(SECURITY_GROUP_RULE, body, skip={*rule, "remote_address_group_id"}))
    rule.update({"security_group_id": sg["id"], "direction": body["direction"], "remote_address_group_id": None})
    if rule["remote_ip_prefix"] is not None and rule["remote_group_id"] is not None:
        raise errors.BadRequest("Only remote_ip_prefix or remote_group_id may be provided, not both.")
    if rule["remote_ip_prefix"] is not None:
        version = netaddr.IPNetwork(rule["remote_ip_prefix"]).version
        if f"IPv{version}" != rule["ethertype"]:
            raise errors.SecurityGroupRuleParameterConflict(ethertype=rule["ethertype"],
                                                            cidr=rule["remote_ip_prefix"])
    if rule["remote_group_id"] is not None:
        common.get_visible(tx, SECURITY_GROUP, rule["remote_group_id"], ctx)
    _check_ports(rule)
    key = _rule_key(rule)
    for other in tx.list(SECURITY_GROUP_RULE):
        if other["security_group_id"] == sg["id"] and _rule_key(other) == key:
            raise errors.SecurityGroupRuleExists(rule_id=other["id"])
    return tx.insert(SECURITY_GROUP_RULE, rule)


def delete_rule(tx: WriteTx, old: Record, ctx: Context) -> None:
    check_owner(SECURITY_GROUP_RULE, old, ctx, "delete")
    tx.remove(SECURITY_GROUP_RULE, old)
