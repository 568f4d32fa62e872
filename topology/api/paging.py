"""List controls of every collection, as Neutron's API: sort_key/sort_dir, limit/marker/page_reverse
with the `<plural>_links` (next/previous) Neutron returns, and the tag filters.

Why emulated over the full, visible, filtered list: that list is what a client may see at all, so
a page can never leak or skip an object, and a marker is simply a position in it. Neutron's own
emulated paging behaves the same way: an unknown marker gives an empty page; a page shorter than
the limit has no "next" link (which is what ends openstacksdk's paging loop).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import urlencode

from topology.model import errors, tags

CONTROL = {"fields", "limit", "marker", "page_reverse", "sort_key", "sort_dir", "verbose", *tags.FILTERS}


@dataclass
class ListControls:
    limit: int = 0
    marker: str | None = None
    page_reverse: bool = False
    sorts: list[tuple[str, bool]] = field(default_factory=list)   # (key, ascending)
    tag_filters: dict[str, set[str]] = field(default_factory=dict)
    fields: list[str] | None = None


def parse(params: dict[str, list[str]]) -> ListControls:
    """The list controls of a query, with Neutron's 400s for bad values."""
    raw_limit = (params.get("limit") or ["0"])[-1]
    try:
        limit = int(raw_limit)
    except ValueError:
        limit = -1
    if limit < 0:
        raise errors.BadRequest(f"Limit must be an integer 0 or greater and not '{raw_limit}'")
    keys = [k for k in params.get("sort_key", []) if k]
    dirs = [d for d in params.get("sort_dir", []) if d]
    if len(keys) != len(dirs):
        raise errors.BadRequest("The number of sort_keys and sort_dirs must be same")
    bad = [d for d in dirs if d not in ("asc", "desc")]
    if bad:
        raise errors.BadRequest(f"{bad} is invalid value for sort_dirs, valid value is 'asc' and 'desc'")
    markers = params.get("marker") or [""]
    marker = markers[-1] or None
    page_reverse = (params.get("page_reverse") or ["False"])[-1].lower() == "true"
    return ListControls(limit, marker, page_reverse, list(zip(keys, [d == "asc" for d in dirs])),
                        tags.parse_filters(params), params.get("fields"))


def _sort_value(value: Any) -> tuple:
    """Any JSON value, comparable: None first, then by type name, then the value (as text for
    lists/dicts)."""
    if value is None:
        return (0, "", "")
    if isinstance(value, (bool, int, float)):
        return (1, "number", float(value))
    if isinstance(value, str):
        return (2, "str", value)
    return (3, type(value).__name__, repr(value))


def check_sort_keys(controls: ListControls, attributes: set[str]) -> None:
    absent = [k for k, _ in controls.sorts if k not in attributes]
    if absent:
        raise errors.BadRequest(f"{absent} is invalid attribute for sort_keys")


def sort(items: list[dict[str, Any]], controls: ListControls) -> list[dict[str, Any]]:
    """Stable multi-key sort (last key first); items keep creation order among equals."""
    out = list(items)
    for key, ascending in reversed(controls.sorts):
        out.sort(key=_by(key), reverse=not ascending)
    return out


def _by(key: str) -> Callable[[dict[str, Any]], tuple]:
    return lambda rec: _sort_value(rec.get(key))


def page(items: list[dict[str, Any]], controls: ListControls) -> list[dict[str, Any]]:
    """Neutron's emulated paging: the `limit` items after the marker (before it, page_reverse)."""
    if not controls.limit or not items:
        return items
    if controls.marker:
        index = next((i for i, r in enumerate(items) if r.get("id") == controls.marker), None)
        if index is None:
            return []
    else:
        index = len(items) if controls.page_reverse else -1
    if controls.page_reverse:
        return items[max(index - controls.limit, 0):index]
    return items[index + 1:index + 1 + controls.limit]


def links(base_url: str, params: dict[str, list[str]], shown: list[dict[str, Any]],
          controls: ListControls) -> list[dict[str, str]]:
    """`next` unless a forward page came out short, `previous` unless a reverse one did."""
    if not controls.limit:
        return []
    out = []
    rest = {k: v for k, v in params.items() if k not in ("marker", "page_reverse")}
    if not (len(shown) < controls.limit and not controls.page_reverse):
        query = dict(rest, **({"marker": [shown[-1]["id"]]} if shown else {}))
        out.append({"rel": "next", "href": f"{base_url}?{urlencode(query, doseq=True)}"})
    if not (len(shown) < controls.limit and controls.page_reverse):
        query = dict(rest, **({"marker": [shown[0]["id"]]} if shown else {}), page_reverse=["True"])
        out.append({"rel": "previous", "href": f"{base_url}?{urlencode(query, doseq=True)}"})
    return out


def apply(items: list[dict[str, Any]], controls: ListControls, attributes: set[str]
          ) -> list[dict[str, Any]]:
    """Tag filters, sort, page (in that order); `fields` are selected by the caller afterwards."""
    check_sort_keys(controls, attributes)
    if controls.tag_filters:
        items = [r for r in items if tags.matches(r, controls.tag_filters)]
    return page(sort(items, controls), controls)


def select(items: list[dict[str, Any]], fields: list[str] | None) -> list[dict[str, Any]]:
    if not fields:
        return items
    return [{k: r[k] for k in fields if k in r} for r in items]
