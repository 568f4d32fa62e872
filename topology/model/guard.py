"""The checks every API write passes before its handler runs: policy (topology.model.policy) on a
target shaped as Neutron's, and the quota charge (topology.model.quotas), in the write's own
transaction.

Why separate from the handlers: the resource modules keep Neutron's semantics (IPAM, segments,
gateways); who may ask for them, and how many, is decided here once for every kind, so an
operator's policy.yaml and the quotas apply to all of them alike.
"""
from __future__ import annotations

from typing import Any, Mapping

from topology.model import quotas
from topology.model.context import Context
from topology.model.policy import Decisions, Policy, explicit_attrs
from topology.model.resources import common
from topology.model.resources.rbac import effective_shared
from topology.model.validate import MISSING, REQUIRED, SPECS
from topology.store import NETWORK, PORT, SECURITY_GROUP, SECURITY_GROUP_RULE, SUBNET, Record
from topology.store.writetx import WriteTx


def spec_defaults(kind: str) -> dict[str, Any]:
    return {name: attr.default for name, attr in SPECS.get(kind, {}).items()
            if attr.default is not MISSING and attr.default is not REQUIRED}


def _public(rec: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in rec.items() if not k.startswith("_")}


def _parent(tx: WriteTx, kind: str, rid: str, ctx: Context, create: bool) -> Record | None:
    return common.get_visible(tx, kind, rid, ctx) if create else tx.get(kind, rid)


def _parents(tx: WriteTx, kind: str, rec: Mapping[str, Any], ctx: Context, create: bool = False) -> dict[str, Any]:
    """What rules ask of a record's parents: the network's owner and sharing for ports/subnets,
    the group's owner for rules. On create a parent the caller cannot see is its 404, as the
    handler would say."""
    extra: dict[str, Any] = {}
    net = _parent(tx, NETWORK, rec["network_id"], ctx, create) \
        if kind in (PORT, SUBNET) and rec.get("network_id") else None
    if net is not None:
        extra["network:project_id"] = net["project_id"]
        extra["shared"] = effective_shared(net, ctx.project_id)
        if kind == SUBNET:
            extra["router:external"] = net["router:external"]
    sg = _parent(tx, SECURITY_GROUP, rec["security_group_id"], ctx, create) \
        if kind == SECURITY_GROUP_RULE and rec.get("security_group_id") else None
    if sg is not None:
        extra["security_group:project_id"] = sg["project_id"]
    return extra


def owner_for(tx: WriteTx, kind: str, body: Mapping[str, Any], ctx: Context) -> str:
    """The project a new record will belong to (rules inherit their group's)."""
    project = body.get("project_id") or body.get("tenant_id")
    if project:
        return str(project)
    if kind == SECURITY_GROUP_RULE and body.get("security_group_id"):
        sg = tx.get(SECURITY_GROUP, body["security_group_id"])
        if sg is not None:
            return str(sg["project_id"])
    return ctx.project_id


def before_create(tx: WriteTx, kind: str, body: Mapping[str, Any], ctx: Context, policy: Policy,
                  quota_defaults: Mapping[str, int] = quotas.DEFAULTS, unlimited_project: str | None = None,
                  extra: Mapping[str, Any] | None = None, decisions: Decisions | None = None) -> None:
    """`extra`: target fields rules read that the request did not set itself (not "explicit").
    `decisions`: the request's memo of policy answers (Policy.decisions; a bulk create's)."""
    project = owner_for(tx, kind, body, ctx)
    target = {**(extra or {}), **body, "project_id": project, "tenant_id": project,
              **_parents(tx, kind, body, ctx, create=True)}
    policy.enforce(ctx, f"create_{kind}", target, explicit_attrs(kind, body, spec_defaults(kind)), decisions)
    quotas.charge(tx, kind, project, quota_defaults, unlimited_project)


def before_update(tx: WriteTx, kind: str, old: Record, body: Mapping[str, Any], ctx: Context,
                  policy: Policy) -> None:
    target = {**_public(old), **body}
    target.update(_parents(tx, kind, target, ctx))
    policy.enforce(ctx, f"update_{kind}", target, list(body))


def before_delete(tx: WriteTx, kind: str, old: Record, ctx: Context, policy: Policy) -> None:
    target = _public(old)
    target.update(_parents(tx, kind, target, ctx))
    policy.enforce(ctx, f"delete_{kind}", target)


def before_action(tx: WriteTx, action: str, kind: str, rec: Record, ctx: Context, policy: Policy) -> None:
    """Member actions on a record (add_router_interface, tags): the record's owner decides."""
    target = _public(rec)
    target.update(_parents(tx, kind, target, ctx))
    policy.enforce(ctx, action, target)
