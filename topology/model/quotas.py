"""Per-project quotas as Neutron's: defaults, per-project overrides, usage counted in the create's
own transaction, 409 OverQuota.

Why counted inside the write transaction: a check before the transaction races with concurrent
creates (two API servers on etcd both see 9 routers and both create the 10th and 11th). The
count comes from the transaction's per-project index (WriteTx.project_ids), so a bulk create of
1,000 ports costs one index read and 1,000 O(1) checks, and the records it already created in
the same request count too.

Limits are stored as one `quota` record per project holding only what an admin set; -1 means
unlimited, as in Neutron.
"""
from __future__ import annotations

from typing import Any, Mapping

from topology.model import errors
from topology.store import (FLOATINGIP, NETWORK, PORT, QUOTA, RBAC_POLICY, ROUTER, SECURITY_GROUP,
                            SECURITY_GROUP_RULE, SUBNET, Record, Store)
from topology.store.writetx import WriteTx

# Neutron's quota resource name -> store kind, and its [quotas] defaults.
RESOURCES: dict[str, str] = {
    "network": NETWORK, "subnet": SUBNET, "port": PORT, "router": ROUTER, "floatingip": FLOATINGIP,
    "security_group": SECURITY_GROUP, "security_group_rule": SECURITY_GROUP_RULE, "rbac_policy": RBAC_POLICY,
}
DEFAULTS: dict[str, int] = {
    "network": 100, "subnet": 100, "port": 500, "router": 10, "floatingip": 50,
    "security_group": 10, "security_group_rule": 100, "rbac_policy": 10,
}
RESOURCE_OF_KIND = {kind: name for name, kind in RESOURCES.items()}
MAX_LIMIT = 2 ** 31 - 1


class OverQuota(errors.Conflict):
    message = "Quota exceeded for resources: {overs}."


class QuotaResourceUnknown(errors.NotFound):
    message = "Unknown quota resources {unknown}."


def _stored(get: Any, project: str) -> dict[str, int]:
    rec = get(QUOTA, project)
    return dict(rec["limits"]) if rec else {}


def limits(get: Any, project: str, defaults: Mapping[str, int] = DEFAULTS,
           unlimited_project: str | None = None) -> dict[str, int]:
    """The project's effective limits: the defaults, overridden by what an admin set.

    `unlimited_project` (the noauth admin's default project, which labs, benchmarks and bulk
    tests fill with thousands of ports) starts unlimited; an admin may still set its limits."""
    base = dict.fromkeys(defaults, -1) if project == unlimited_project else dict(defaults)
    return {**base, **_stored(get, project)}


def charge(tx: WriteTx, kind: str, project: str, defaults: Mapping[str, int] = DEFAULTS,
           unlimited_project: str | None = None) -> None:
    """Refuse (409 OverQuota) creating one more `kind` record for `project` past its limit.

    Called before the record is inserted, inside the same transaction."""
    name = RESOURCE_OF_KIND.get(kind)
    if name is None or not project:
        return
    cache: dict[str, dict[str, int]] = tx.__dict__.setdefault("_quota_limits", {})
    lim = cache.get(project)
    if lim is None:
        lim = cache[project] = limits(tx.get, project, defaults, unlimited_project)
    limit = lim.get(name, -1)
    if limit < 0:
        return
    if len(tx.project_ids(kind, project)) + 1 > limit:
        raise OverQuota(overs=[name])


def usage(store: Store, project: str) -> dict[str, int]:
    """Records per quota resource owned by `project` (a listing per kind: API calls only)."""
    return {name: sum(1 for r in store.list(kind) if r.get("project_id") == project)
            for name, kind in RESOURCES.items()}


def to_limit(name: str, value: Any) -> int:
    """Neutron's quota value check: an integer from -1 (unlimited) up."""
    if isinstance(value, bool):
        value = None
    if isinstance(value, str):
        try:
            value = int(value)
        except ValueError:
            value = None
    if not isinstance(value, int):
        raise errors.InvalidInput(error_message=f"'{value}' is not an integer")
    if not -1 <= value <= MAX_LIMIT:
        raise errors.InvalidInput(error_message=f"'{value}' is too small - must be at least '-1'"
                                  if value < -1 else f"'{value}' is too large - must be no larger than "
                                                     f"'{MAX_LIMIT}'")
    return value


class InvalidQuotaValue(errors.Conflict):
    message = "Change would make usage less than 0 for the following resources: {unders}."


CONTROL_KEYS = ("check_limit", "force")   # Neutron's quota-check-limit extension (the client sends it)


def parse_update(body: Any) -> tuple[dict[str, int], bool]:
    """The limits of a PUT /v2.0/quotas/{project} body {"quota": {resource: limit, check_limit?}},
    and whether a limit below the current usage must be refused (check_limit true)."""
    if not isinstance(body, dict) or not isinstance(body.get("quota"), dict) or len(body) != 1:
        raise errors.BadRequest('Resource body required: expected {"quota": {...}}.')
    wanted = {k: v for k, v in body["quota"].items() if k not in CONTROL_KEYS}
    check = body["quota"].get("check_limit", False)
    if not isinstance(check, bool):
        raise errors.InvalidInput(error_message=f"'{check}' cannot be converted to boolean")
    unknown = sorted(str(k) for k in wanted if k not in RESOURCES)
    if unknown:
        raise QuotaResourceUnknown(unknown=unknown)
    return {name: to_limit(name, value) for name, value in wanted.items()}, check


def check_not_below_usage(new: Mapping[str, int], used: Mapping[str, int]) -> None:
    unders = sorted(name for name, limit in new.items() if 0 <= limit < used.get(name, 0))
    if unders:
        raise InvalidQuotaValue(unders=unders)


def set_limits(tx: WriteTx, project: str, new: Mapping[str, int]) -> None:
    old = tx.get(QUOTA, project)
    rec: Record = {"id": project, "project_id": project, "limits": {**(old["limits"] if old else {}), **new}}
    if old is None:
        tx.insert(QUOTA, rec)
    elif rec != old:
        tx.replace(QUOTA, old, rec, bump=False)


def reset(tx: WriteTx, project: str) -> None:
    old = tx.get(QUOTA, project)
    if old is not None:
        tx.remove(QUOTA, old)


def overridden_projects(store: Store) -> list[str]:
    return sorted(r["id"] for r in store.list(QUOTA))
