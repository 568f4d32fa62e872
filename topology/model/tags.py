"""Neutron's tags: a `tags` list on the record, its /tags sub-resource, and the tag list filters.

Why on the record: a tag belongs to one object and goes with it; the record's `tags` attribute is
what every list and show already returns, so no join is needed to filter or present them.
"""
from __future__ import annotations

from typing import Any, Iterable

from topology.model import errors
from topology.store import FLOATINGIP, NETWORK, PORT, ROUTER, SECURITY_GROUP, SUBNET, Record

TAGGED_KINDS = (NETWORK, SUBNET, PORT, ROUTER, FLOATINGIP, SECURITY_GROUP)
MAX_TAG_LEN = 255
MAX_TAGS = 50
FILTERS = ("tags", "tags-any", "not-tags", "not-tags-any")


class TagNotFound(errors.NotFound):
    message = "Tag {tag} could not be found."


def check_tag(tag: Any) -> str:
    if not isinstance(tag, str):
        raise errors.InvalidInput(error_message=f"'{tag}' is not a valid string")
    if len(tag) > MAX_TAG_LEN:
        raise errors.InvalidInput(error_message=f"'{tag}' exceeds maximum length of {MAX_TAG_LEN}")
    return tag


def check_body(body: Any) -> list[str]:
    """A PUT/POST /tags body {"tags": [unique strings]}."""
    if not isinstance(body, dict) or "tags" not in body:
        raise errors.InvalidInput(error_message="Invalid tags body")
    tags = body["tags"]
    if not isinstance(tags, list):
        raise errors.InvalidInput(error_message=f"'{tags}' is not a list")
    out = [check_tag(t) for t in tags]
    if len(set(out)) != len(out):
        raise errors.InvalidInput(error_message=f"Duplicate items in the list: '{', '.join(out)}'")
    return out


def limited(tags: Iterable[str]) -> list[str]:
    out = list(dict.fromkeys(tags))
    if len(out) > MAX_TAGS:
        raise errors.BadRequest(f"The number of tags exceed the per-resource limit of {MAX_TAGS}")
    return out


def parse_filters(params: dict[str, list[str]]) -> dict[str, set[str]]:
    """?tags=a,b&tags-any=c (comma-separated, repeats add up) → {filter: tags}."""
    out: dict[str, set[str]] = {}
    for name in FILTERS:
        for value in params.get(name, ()):
            out.setdefault(name, set()).update(t for t in value.split(",") if t)
    return out


def matches(rec: Record, wanted: dict[str, set[str]]) -> bool:
    """tags: all of them; tags-any: one of them; not-tags: not all of them; not-tags-any: none."""
    have = set(rec.get("tags") or ())
    if "tags" in wanted and not wanted["tags"] <= have:
        return False
    if "tags-any" in wanted and not wanted["tags-any"] & have:
        return False
    if "not-tags" in wanted and wanted["not-tags"] and wanted["not-tags"] <= have:
        return False
    if "not-tags-any" in wanted and wanted["not-tags-any"] & have:
        return False
    return True
