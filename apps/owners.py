"""Decode an owner cookie without raising on kinds this build doesn't know."""
from __future__ import annotations

from flows.tables import KEY_MASK, OWNER_SHIFT, Owner


def split_owner(owner: int) -> tuple[Owner | None, int]:
    """(Owner kind or None if unknown, key)."""
    try:
        return Owner(owner >> OWNER_SHIFT), owner & KEY_MASK
    except ValueError:
        return None, owner & KEY_MASK
