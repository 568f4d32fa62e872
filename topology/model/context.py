"""Who is asking (project, user, roles, admin?) and the visibility/ownership rules Neutron applies to them."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable

from topology.model import errors
from topology.store import CHASSIS, NETWORK, PORT, SECURITY_GROUP_RULE, SUBNET, Record

Lookup = Callable[[str, str], Record | None]


# Keystone's default roles and what each implies (admin → member → reader), so a token or
# header naming "admin" carries all three, as Keystone's implied roles put them in a token.
ADMIN, MEMBER, READER = "admin", "member", "reader"
IMPLIED_ROLES: dict[str, tuple[str, ...]] = {ADMIN: (MEMBER, READER), MEMBER: (READER,)}


def effective_roles(names: Iterable[str]) -> tuple[str, ...]:
    """The given role names plus the ones they imply, each once, in a stable order."""
    out: dict[str, None] = {}
    for name in names:
        for role in (name, *IMPLIED_ROLES.get(name, ())):
            out.setdefault(role, None)
    return tuple(out)


@dataclass(frozen=True)
class Context:
    """Who is asking, as Neutron's (neutron_lib) context says it: project, user, roles, is_admin.

    Why these defaults: `Context(project, is_admin)` was the whole context while only noauth
    existed (no X-Project-Id → admin in the default project), and callers still build it so.
    An authenticated request also carries the user and the token's roles (implied ones
    included), which the policy engine reads through `to_policy_values()`.
    """
    project_id: str
    is_admin: bool = True
    user_id: str | None = None
    roles: tuple[str, ...] = ()
    project_name: str | None = None
    user_name: str | None = None
    auth_mode: str = "noauth"   # noauth, token (static), builtin, keystone

    @property
    def tenant_id(self) -> str:
        return self.project_id

    def has_role(self, role: str) -> bool:
        return role in self.roles

    def to_policy_values(self) -> dict[str, Any]:
        """The credentials oslo.policy checks, with oslo.context's key names (`role:member`,
        `project_id:%(project_id)s`, `is_admin:True`)."""
        return {"user_id": self.user_id, "user_domain_id": "default" if self.user_id else None,
                "project_id": self.project_id, "tenant_id": self.project_id,
                "project_domain_id": "default", "domain_id": None, "system_scope": None,
                "roles": list(self.roles), "is_admin": self.is_admin, "is_admin_project": True}


def roles_context(project_id: str, roles: Iterable[str], *, user_id: str | None = None,
                  project_name: str | None = None, user_name: str | None = None,
                  auth_mode: str = "noauth") -> Context:
    """A context for these assigned roles: implied roles added, admin iff the admin role
    (Neutron's `context_is_admin: role:admin`)."""
    eff = effective_roles(roles)
    return Context(project_id, ADMIN in eff, user_id=user_id, roles=eff, project_name=project_name,
                   user_name=user_name, auth_mode=auth_mode)


def owner_of(rec: Record) -> str:
    return rec.get("project_id", "")


def visible(kind: str, rec: Record, ctx: Context, lookup: Lookup) -> bool:
    """Tenants see their own objects, plus shared/external networks and what lives on them."""
    if ctx.is_admin or kind == CHASSIS:
        return True
    if owner_of(rec) == ctx.project_id:
        return True
    if kind == NETWORK:   # shared/external with everybody, or with this project by RBAC (resources/rbac)
        return bool(rec.get("shared") or rec.get("router:external")
                    or ctx.project_id in rec.get("_shared_with", ()) or ctx.project_id in rec.get("_external_for", ()))
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
