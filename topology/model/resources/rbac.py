"""RBAC policies (/v2.0/rbac-policies): a network shared with one project (access_as_shared), or
offered to it as external (access_as_external), as Neutron's network RBAC.

How the effect is kept cheap to read: besides the rbac_policy records, the network carries the
projects it is shared with in hidden fields (`_shared_with`, `_external_for`), written in the same
transaction, so visibility and the policy's `rule:shared` read one record. A wildcard target
('*') is the network's own `shared` / `router:external` attribute, as in Neutron.
"""
from __future__ import annotations

import copy
import uuid
from typing import Any

from topology.model import errors
from topology.model.context import Context, visible
from topology.model.validate import REQUIRED, RO, Attr, check_body, to_str, to_uuid
from topology.store import NETWORK, RBAC_POLICY, Record
from topology.store.writetx import WriteTx, new_id

SHARED, EXTERNAL = "access_as_shared", "access_as_external"
ACTIONS = (SHARED, EXTERNAL)
WILDCARD = "*"
HIDDEN = {SHARED: "_shared_with", EXTERNAL: "_external_for"}
NETWORK_ATTR = {SHARED: "shared", EXTERNAL: "router:external"}


class RbacPolicyNotFound(errors.NotFound):
    message = "RBAC policy of type {object_type} with ID {id} not found"


class RbacPolicyInUse(errors.Conflict):
    message = "RBAC policy on object {object_id} cannot be removed because other objects depend on it.\n" \
              "Details: {details}"


class DuplicateRbacPolicy(errors.Conflict):
    message = "An RBAC policy already exists with those values."


def to_object_type(attr: str, value: Any) -> str:
    if isinstance(value, str) and value.strip().lower() == "network":
        return "network"
    raise errors.InvalidInput(error_message=f"'{value}' is not a valid RBAC object type")


def to_target(attr: str, value: Any) -> str:
    """'*' or a UUID-like project id (dashes optional), as Neutron's valid_target_project."""
    if value == WILDCARD:
        return value
    if isinstance(value, str):
        try:
            uuid.UUID(value)
            return value
        except ValueError:
            pass
    raise errors.InvalidInput(error_message=f"'{value}' is not a valid target project ID; expected a UUID or '*'")


SPEC: dict[str, Attr] = {
    "id": RO,
    "project_id": Attr(post=True, put=False, convert=to_str),
    "tenant_id": Attr(post=True, put=False, convert=to_str),
    "object_type": Attr(put=False, convert=to_object_type, default=REQUIRED),
    "object_id": Attr(put=False, convert=to_uuid, default=REQUIRED),
    "action": Attr(put=False, convert=to_str, default=REQUIRED),
    "target_tenant": Attr(convert=to_target),
    "target_project": Attr(convert=to_target),
}


def prepare(body: Any, *, update: bool) -> dict[str, Any]:
    """Generic checks of a POST/PUT rbac_policy body (unknown, read-only, required attributes)."""
    out = check_body(SPEC, "rbac_policy", body, update=update)
    if "target_tenant" in out and "target_project" in out and out["target_tenant"] != out["target_project"]:
        raise errors.BadRequest("'target_tenant' and 'target_project' do not match")
    if not update and "target_tenant" not in out and "target_project" not in out:
        raise errors.BadRequest("Failed to parse request. Required attribute 'target_tenant' not specified")
    if "target_project" in out:
        out["target_tenant"] = out["target_project"]
    if "project_id" in out and "tenant_id" in out and out["project_id"] != out["tenant_id"]:
        raise errors.BadRequest("'project_id' and 'tenant_id' do not match")
    return out


# ---- reading the effect ----------------------------------------------------------------------
def effective_shared(net: Record, project: str) -> bool:
    """Neutron's `shared` as `project` sees it: shared with everybody, or with it by RBAC."""
    return bool(net.get("shared")) or project in net.get("_shared_with", ())


def effective_external(net: Record, project: str) -> bool:
    return bool(net.get("router:external")) or project in net.get("_external_for", ())


def present_network(out: Record, rec: Record, project: str, is_admin: bool) -> Record:
    """The API view of a network for `project` (admins see the network's own attributes)."""
    if not is_admin:
        out["shared"] = effective_shared(rec, project)
        out["router:external"] = effective_external(rec, project)
    return out


def public(rec: Record) -> Record:
    out = {k: v for k, v in rec.items() if not k.startswith("_")}
    out["target_project"] = rec["target_tenant"]
    return out


def visible_policy(rec: Record, ctx: Context) -> bool:
    return ctx.is_admin or rec["project_id"] == ctx.project_id


# ---- writes ----------------------------------------------------------------------------------
def _network_for(tx: WriteTx, object_id: str, ctx: Context) -> Record:
    net = tx.get(NETWORK, object_id)
    if net is None or not visible(NETWORK, net, ctx, tx.get):
        raise errors.NetworkNotFound(id=object_id)
    if not ctx.is_admin and net["project_id"] != ctx.project_id:
        raise errors.InvalidInput(error_message="Only admins can manipulate policies on networks they do not own")
    return net


def _apply(tx: WriteTx, net: Record, action: str, target: str, grant: bool) -> None:
    """Write the policy's effect on the network record (same transaction)."""
    new = copy.deepcopy(net)
    if target == WILDCARD:
        new[NETWORK_ATTR[action]] = grant
    else:
        projects = [p for p in new.get(HIDDEN[action], []) if p != target]
        new[HIDDEN[action]] = projects + [target] if grant else projects
    if new != net:
        tx.replace(NETWORK, net, new, bump=target == WILDCARD)


def _entries(tx: WriteTx, object_id: str) -> list[Record]:
    return [r for r in tx.list(RBAC_POLICY) if r["object_id"] == object_id]


def create(tx: WriteTx, body: dict[str, Any], ctx: Context) -> Record:
    if body["action"] not in ACTIONS:
        raise errors.InvalidInput(error_message=f"Invalid action '{body['action']}' for object type "
                                                f"'network'. Valid actions: {list(ACTIONS)}")
    net = _network_for(tx, body["object_id"], ctx)
    target = body["target_tenant"]
    if any(r["action"] == body["action"] and r["target_tenant"] == target for r in _entries(tx, net["id"])):
        raise DuplicateRbacPolicy()
    project = body.get("project_id") or body.get("tenant_id") or ctx.project_id
    if project != ctx.project_id and not ctx.is_admin:
        raise errors.PolicyNotAuthorized(message="Specifying 'project_id' or 'tenant_id' other than the "
                                                 "authenticated project in request requires admin privileges")
    rec: Record = {"id": new_id(), "project_id": project, "tenant_id": project, "object_type": "network",
                   "object_id": net["id"], "action": body["action"], "target_tenant": target,
                   "_seq": tx.seq()}
    tx.insert(RBAC_POLICY, rec)
    _apply(tx, net, body["action"], target, True)
    return rec


def _check_unshare(tx: WriteTx, rec: Record, net: Record) -> None:
    """Neutron's RbacPolicyInUse: a project that has ports on the network keeps the access
    that lets it have them (unless another sharing entry still covers it)."""
    if rec["action"] != SHARED:
        return
    others = [r for r in _entries(tx, net["id"]) if r["id"] != rec["id"] and r["action"] == SHARED]
    if any(r["target_tenant"] == WILDCARD for r in others):
        return
    covered = {r["target_tenant"] for r in others} | {net["project_id"]}
    bound = {p["project_id"] for p in tx.ports_of(net["id"]) if p.get("project_id")}
    if rec["target_tenant"] == WILDCARD:
        lost = bound - covered
    else:
        lost = {rec["target_tenant"]} & bound - covered
    if lost:
        raise RbacPolicyInUse(object_id=net["id"], details=f"project_id={rec['target_tenant']}")


def update(tx: WriteTx, old: Record, body: dict[str, Any], ctx: Context) -> Record:
    if not visible_policy(old, ctx):
        raise RbacPolicyNotFound(object_type=old["object_type"], id=old["id"])
    target: str = body.get("target_tenant") or old["target_tenant"]
    if target == old["target_tenant"]:
        return old
    net = tx.get(NETWORK, old["object_id"])
    if net is not None:
        if any(r["action"] == old["action"] and r["target_tenant"] == target for r in _entries(tx, net["id"])):
            raise DuplicateRbacPolicy()
        if target != WILDCARD:
            _check_unshare(tx, old, net)
        _apply(tx, net, old["action"], old["target_tenant"], False)
        net = tx.get(NETWORK, old["object_id"])
        assert net is not None
        _apply(tx, net, old["action"], target, True)
    new = dict(old, target_tenant=target)
    return tx.replace(RBAC_POLICY, old, new, bump=False)


def delete(tx: WriteTx, old: Record, ctx: Context) -> None:
    net = tx.get(NETWORK, old["object_id"])
    if net is not None:
        _check_unshare(tx, old, net)
        _apply(tx, net, old["action"], old["target_tenant"], False)
    tx.remove(RBAC_POLICY, old)


def purge_network(tx: WriteTx, network_id: str) -> None:
    """A deleted network takes its RBAC policies with it."""
    for rec in _entries(tx, network_id):
        tx.remove(RBAC_POLICY, rec)
