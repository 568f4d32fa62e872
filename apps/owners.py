"""Decode an owner cookie without raising on kinds this build doesn't know."""
from __future__ import annotations

from flows.tables import KEY_MASK, OWNER_SHIFT, Owner


_STORE_KIND = {Owner.NETWORK: "network", Owner.PORT: "port", Owner.ROUTER: "router",
               Owner.SECGROUP: "security_group", Owner.FLOATINGIP: "floatingip", Owner.CHASSIS: "chassis"}


def owner_record(view, owner: int) -> tuple[Owner | None, dict | None]:
    """(Owner kind, the store record owning that cookie) — record None if deleted or not an object."""
    kind, key = split_owner(owner)
    store_kind = _STORE_KIND.get(kind) if kind is not None else None
    return kind, (view.by_key(store_kind, key) if store_kind else None)


def split_owner(owner: int) -> tuple[Owner | None, int]:
    """(Owner kind or None if unknown, key)."""
    try:
        return Owner(owner >> OWNER_SHIFT), owner & KEY_MASK
    except ValueError:
        return None, owner & KEY_MASK
