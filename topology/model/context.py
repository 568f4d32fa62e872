"""Who is asking (project, admin?) and the visibility/ownership rules Neutron applies to them."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from topology.model import errors
from topology.store import CHASSIS, NETWORK, PORT, SECURITY_GROUP_RULE, SUBNET, Record

Lookup = Callable[[str, str], Record | None]


@dataclass(frozen=True)
class Context:
    """Like Neutron's noauth context: no X-Project-Id → admin in the default project."""
    project_id: str
    is_admin: bool = True


def owner_of(rec: Record) -> str:
    return rec.get("project_id", "")


def visible(kind: str, rec: Record, ctx: Context, lookup: Lookup) -> bool:
    """Tenants see their own objects, plus shared/external networks and what lives on them."""
    if ctx.is_admin or kind == CHASSIS:
        return True
    if owner_of(rec) == ctx.project_id:
        return True
    if kind == NETWORK:
        return bool(rec.get("shared") or rec.get("router:external"))
    if kind == SUBNET:
        net = lookup(NETWORK, rec["network_id"])
        return net is not None and visible(NETWORK, net, ctx, lookup)
    if kind == PORT:
        net = lookup(NETWORK, rec["network_id"])
        return net is not None and owner_of(net) == ctx.project_id
    if kind == SECURITY_GROUP_RULE:
        return False
    return False


def check_owner(kind: str, rec: Record, ctx: Context, action: str) -> None:
    """Writes need ownership (or admin); a visible-but-foreign object is 403, like Neutron."""
    if ctx.is_admin:
        return
    if kind == CHASSIS or owner_of(rec) != ctx.project_id:
        raise errors.PolicyNotAuthorized(action=f"{action}_{kind}")


def project_for(body: dict[str, Any], ctx: Context) -> str:
    """The project a new object belongs to; tenants may not create for another project."""
    project = body.get("project_id") or body.get("tenant_id") or ctx.project_id
    if project != ctx.project_id and not ctx.is_admin:
        raise errors.PolicyNotAuthorized(message="Specifying 'project_id' or 'tenant_id' other than the "
                                                 "authenticated project in request requires admin privileges")
    return project
