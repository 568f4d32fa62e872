"""Decode an owner cookie without raising on kinds this build doesn't know."""
from __future__ import annotations

from flows.tables import STORE_KIND, Owner, split_cookie
from topology.view import View

split_owner = split_cookie  # (Owner kind or None if unknown, key)


def owner_record(view: View, owner: int) -> tuple[Owner | None, dict | None]:
    """(Owner kind, the store record owning that cookie) — record None if deleted or not an object."""
    kind, key = split_cookie(owner)
    store_kind = STORE_KIND.get(kind) if kind is not None else None
    return kind, (view.by_key(store_kind, key) if store_kind else None)
