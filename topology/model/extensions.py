"""The Neutron API extensions beyond plain CRUD, on top of the Service: tags, quotas, RBAC policies.

Why beside the Service and not in it: each is a small set of calls with its own policy actions;
they reuse the Service's store, write transactions, policy and visibility rules, so a tag write or
an RBAC policy obeys the same fail-closed, one-transaction rules as any other write.
"""
from __future__ import annotations

import copy
from typing import Any

from topology.model import errors, guard, quotas, tags
from topology.model.context import Context
from topology.model.resources import common, rbac
from topology.model.service import Service
from topology.store import RBAC_POLICY, Record, retry_on_conflict


class Extensions:
    def __init__(self, service: Service) -> None:
        self.service = service

    def _ctx(self, ctx: Context | None) -> Context:
        return ctx or self.service.admin_context()

    # ---- tags ------------------------------------------------------------------------------
    @staticmethod
    def _tagged(kind: str) -> None:
        if kind not in tags.TAGGED_KINDS:
            raise errors.HTTPNotFound(message=f"The resource could not be found: {kind} has no tags")

    def get_tags(self, kind: str, rid: str, ctx: Context | None = None) -> list[str]:
        self._tagged(kind)
        return list(self.service.get(kind, rid, self._ctx(ctx)).get("tags") or [])

    def has_tag(self, kind: str, rid: str, tag: str, ctx: Context | None = None) -> None:
        if tag not in self.get_tags(kind, rid, ctx):
            raise tags.TagNotFound(tag=tag)

    @retry_on_conflict  # optimistic stores (etcd): re-run the request on a write race
    def change_tags(self, kind: str, rid: str, verb: str, new: list[str] | None = None, remove: str | None = None,
                    ctx: Context | None = None) -> list[str]:
        """verb: 'update' replaces all (PUT tags), 'create' adds (PUT tags/{tag}, POST tags),
        'delete' removes one (`remove`) or all. Policy: <verb>_<kind>:tags on the parent."""
        self._tagged(kind)
        ctx = self._ctx(ctx)
        with self.service._write() as tx:
            old = common.get_visible(tx, kind, rid, ctx)
            guard.before_action(tx, f"{verb}_{kind}:tags", kind, old, ctx, self.service.policy)
            have = list(old.get("tags") or [])
            if verb == "update":
                result = tags.limited(new or [])
            elif verb == "create":
                result = tags.limited(have + (new or []))
            elif remove is not None:
                if remove not in have:
                    raise tags.TagNotFound(tag=remove)
                result = [t for t in have if t != remove]
            else:
                result = []
            if result != have:
                rec = copy.deepcopy(old)
                rec["tags"] = result
                tx.replace(kind, old, rec)
            return result

    # ---- quotas ----------------------------------------------------------------------------
    def _quota_target(self, ctx: Context, action: str, project: str) -> None:
        self.service.policy.enforce(ctx, action, {"project_id": project, "tenant_id": project})

    def quota_limits(self, project: str) -> dict[str, int]:
        return quotas.limits(self.service.store.get, project, self.service.quota_defaults,
                             self.service.settings.default_project_id)

    def quota_show(self, project: str, ctx: Context | None = None) -> dict[str, int]:
        ctx = self._ctx(ctx)
        self._quota_target(ctx, "get_quota", project)
        return self.quota_limits(project)

    def quota_details(self, project: str, ctx: Context | None = None) -> dict[str, dict[str, int]]:
        ctx = self._ctx(ctx)
        self._quota_target(ctx, "get_quota", project)
        used = quotas.usage(self.service.store, project)
        return {name: {"limit": limit, "used": used.get(name, 0), "reserved": 0}
                for name, limit in self.quota_limits(project).items()}

    def quota_list(self, ctx: Context | None = None) -> list[dict[str, Any]]:
        """Projects whose quotas an admin changed (Neutron lists only those)."""
        ctx = self._ctx(ctx)
        if not ctx.is_admin:
            self._quota_target(ctx, "get_quota", "")   # anyone but an admin: 403, as Neutron
        return [{**self.quota_limits(p), "project_id": p, "tenant_id": p}
                for p in quotas.overridden_projects(self.service.store)]

    @retry_on_conflict
    def quota_update(self, project: str, body: Any, ctx: Context | None = None) -> dict[str, int]:
        ctx = self._ctx(ctx)
        self._quota_target(ctx, "update_quota", project)
        new, check_limit = quotas.parse_update(body)
        if check_limit:
            quotas.check_not_below_usage(new, quotas.usage(self.service.store, project))
        with self.service._write() as tx:
            quotas.set_limits(tx, project, new)
        return self.quota_limits(project)

    @retry_on_conflict
    def quota_reset(self, project: str, ctx: Context | None = None) -> None:
        ctx = self._ctx(ctx)
        self._quota_target(ctx, "delete_quota", project)
        with self.service._write() as tx:
            quotas.reset(tx, project)

    # ---- RBAC policies ---------------------------------------------------------------------
    def _rbac_visible(self, rid: str, ctx: Context) -> Record:
        rec = self.service.store.get(RBAC_POLICY, rid)
        if rec is None or not rbac.visible_policy(rec, ctx):
            raise rbac.RbacPolicyNotFound(object_type="network", id=rid)
        return rec

    def rbac_list(self, ctx: Context | None = None) -> list[Record]:
        ctx = self._ctx(ctx)
        recs = sorted(self.service.store.list(RBAC_POLICY), key=lambda r: (r.get("_seq", 0), r["id"]))
        return [rbac.public(r) for r in recs if rbac.visible_policy(r, ctx)]

    def rbac_get(self, rid: str, ctx: Context | None = None) -> Record:
        return rbac.public(self._rbac_visible(rid, self._ctx(ctx)))

    @retry_on_conflict
    def rbac_create(self, body: Any, ctx: Context | None = None) -> Record:
        ctx = self._ctx(ctx)
        prepared = rbac.prepare(body, update=False)
        given = {k: v for k, v in prepared.items() if k in body}     # what the request set itself
        with self.service._write() as tx:
            guard.before_create(tx, RBAC_POLICY, given, ctx, self.service.policy, self.service.quota_defaults,
                                self.service.settings.default_project_id,
                                extra={"target_tenant": prepared["target_tenant"],
                                       "target_project": prepared["target_tenant"]})
            return rbac.public(rbac.create(tx, prepared, ctx))

    @retry_on_conflict
    def rbac_update(self, rid: str, body: Any, ctx: Context | None = None) -> Record:
        ctx = self._ctx(ctx)
        changes = rbac.prepare(body, update=True)
        with self.service._write() as tx:
            old = tx.get(RBAC_POLICY, rid)
            if old is None or not rbac.visible_policy(old, ctx):
                raise rbac.RbacPolicyNotFound(object_type="network", id=rid)
            target = dict(changes, target_project=changes["target_tenant"]) if "target_tenant" in changes \
                else changes
            guard.before_update(tx, RBAC_POLICY, old, target, ctx, self.service.policy)
            return rbac.public(rbac.update(tx, old, changes, ctx))

    @retry_on_conflict
    def rbac_delete(self, rid: str, ctx: Context | None = None) -> None:
        ctx = self._ctx(ctx)
        with self.service._write() as tx:
            old = tx.get(RBAC_POLICY, rid)
            if old is None or not rbac.visible_policy(old, ctx):
                raise rbac.RbacPolicyNotFound(object_type="network", id=rid)
            guard.before_delete(tx, RBAC_POLICY, old, ctx, self.service.policy)
            rbac.delete(tx, old, ctx)
