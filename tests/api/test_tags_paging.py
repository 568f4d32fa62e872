"""Tags (/tags sub-resource, tag filters), paging (limit/marker/page_reverse, *_links) and sorting
over HTTP, denials included."""
from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from tests.api.tenants import ALICE, BOB, World, error


@pytest.fixture()
def w():
    return World()


def test_tag_sub_resource(w):
    net = w.create("networks", project=ALICE, name="n")
    base = f"/v2.0/networks/{net['id']}/tags"
    assert w.call("GET", base, project=ALICE, status=200).json == {"tags": []}
    assert w.call("PUT", base, {"tags": ["red", "blue"]}, project=ALICE, status=200).json == {"tags": ["red", "blue"]}
    shown = w.call("GET", f"/v2.0/networks/{net['id']}", project=ALICE, status=200).json["network"]
    assert shown["tags"] == ["red", "blue"] and shown["revision_number"] == net["revision_number"] + 1
    assert w.call("PUT", f"{base}/green", project=ALICE).status_code == 201
    assert w.call("GET", f"{base}/green", project=ALICE).status_code == 204
    error(w.call("GET", f"{base}/pink", project=ALICE), 404, "TagNotFound")
    assert w.call("DELETE", f"{base}/red", project=ALICE).status_code == 204
    error(w.call("DELETE", f"{base}/red", project=ALICE), 404, "TagNotFound")
    assert w.call("POST", base, {"tags": ["x", "blue"]}, project=ALICE, status=201).json == \
        {"tags": ["blue", "green", "x"]}
    assert w.call("DELETE", base, project=ALICE).status_code == 204
    assert w.call("GET", base, project=ALICE, status=200).json == {"tags": []}


def test_tag_denials_change_nothing(w):
    net = w.create("networks", project=ALICE, name="n")
    shared = w.create("networks", name="s", shared=True)
    base = f"/v2.0/networks/{net['id']}/tags"
    w.call("PUT", base, {"tags": ["keep"]}, project=ALICE, status=200)
    before = w.svc.store.snapshot()
    error(w.call("PUT", base, {"tags": ["x"]}, project=BOB), 404, "NetworkNotFound")
    error(w.call("GET", base, project=BOB), 404, "NetworkNotFound")
    err = error(w.call("PUT", f"/v2.0/networks/{shared['id']}/tags/x", project=BOB), 403, "PolicyNotAuthorized")
    assert err["message"] == "rule:create_network:tags is disallowed by policy"
    error(w.call("PUT", base, {"tags": "x"}, project=ALICE), 400, "InvalidInput")
    error(w.call("PUT", base, {"tag": ["x"]}, project=ALICE), 400, "InvalidInput")
    error(w.call("PUT", base, {"tags": ["a", "a"]}, project=ALICE), 400, "InvalidInput")
    error(w.call("PUT", base, {"tags": ["x" * 256]}, project=ALICE), 400, "InvalidInput")
    error(w.call("PUT", base, {"tags": [f"t{i}" for i in range(51)]}, project=ALICE), 400, "BadRequest")
    error(w.call("PUT", base, {"tags": ["x"]}, project=ALICE, roles="reader"), 403, "PolicyNotAuthorized")
    error(w.call("GET", "/v2.0/chassis/0b1e3b2c-8d6a-4c8a-9a3e-4b4c1d2e3f40/tags"), 404, "HTTPNotFound")
    error(w.call("GET", "/v2.0/nothing/0b1e3b2c-8d6a-4c8a-9a3e-4b4c1d2e3f40/tags"), 404, "HTTPNotFound")
    assert w.svc.store.snapshot() == before


def test_tag_filters(w):
    nets = {}
    for name, tags in (("a", ["red", "blue"]), ("b", ["red"]), ("c", ["green"]), ("d", [])):
        nets[name] = w.create("networks", project=ALICE, name=name)
        w.call("PUT", f"/v2.0/networks/{nets[name]['id']}/tags", {"tags": tags}, project=ALICE, status=200)

    def names(q):
        listed = w.call("GET", f"/v2.0/networks?{q}", project=ALICE, status=200).json["networks"]
        return sorted(n["name"] for n in listed)
    assert names("tags=red") == ["a", "b"]
    assert names("tags=red,blue") == ["a"]
    assert names("tags=red&tags=blue") == ["a"]
    assert names("tags-any=blue,green") == ["a", "c"]
    assert names("not-tags=red,blue") == ["b", "c", "d"]
    assert names("not-tags-any=red,green") == ["d"]
    assert names("tags=red&not-tags=blue") == ["b"]
    # ports/routers/... filter the same way
    r = w.create("routers", project=ALICE, name="r")
    w.call("PUT", f"/v2.0/routers/{r['id']}/tags/edge", project=ALICE, status=201)
    assert [x["id"] for x in w.call("GET", "/v2.0/routers?tags=edge", project=ALICE, status=200).json["routers"]] \
        == [r["id"]]


def _walk(w, first, project=ALICE, limit_pages=20):
    """Follow `next` links from `first` until there is none; every page's ids."""
    pages, url = [], first
    for _ in range(limit_pages):
        body = w.call("GET", url, project=project, status=200).json
        pages.append([n["id"] for n in body["networks"]])
        nxt = [link["href"] for link in body.get("networks_links", []) if link["rel"] == "next"]
        if not nxt:
            return pages
        parts = urlsplit(nxt[0])
        url = f"{parts.path}?{parts.query}"
    raise AssertionError("paging did not end")


def test_limit_and_marker_page_without_repeats(w):
    for i in range(5):
        w.create("networks", project=ALICE, name=f"n{i}")
    w.create("networks", project=BOB, name="bobs")
    listed = w.call("GET", "/v2.0/networks", project=ALICE, status=200).json["networks"]
    ids, names = [n["id"] for n in listed], [n["name"] for n in listed]
    pages = _walk(w, "/v2.0/networks?limit=2")
    assert pages == [ids[0:2], ids[2:4], ids[4:5]]
    first = w.call("GET", "/v2.0/networks?limit=2", project=ALICE, status=200).json
    links = {link["rel"]: link["href"] for link in first["networks_links"]}
    assert parse_qs(urlsplit(links["next"]).query) == {"limit": ["2"], "marker": [ids[1]]}
    assert parse_qs(urlsplit(links["previous"]).query) == {"limit": ["2"], "marker": [ids[0]],
                                                           "page_reverse": ["True"]}
    back = w.call("GET", f"/v2.0/networks?limit=2&marker={ids[4]}&page_reverse=True", project=ALICE,
                  status=200).json["networks"]
    assert [n["id"] for n in back] == ids[2:4]
    assert w.call("GET", "/v2.0/networks?limit=2&marker=0b1e3b2c-8d6a-4c8a-9a3e-4b4c1d2e3f40", project=ALICE,
                  status=200).json["networks"] == []
    assert len(w.call("GET", "/v2.0/networks?limit=0", project=ALICE, status=200).json["networks"]) == 5
    assert "networks_links" not in w.call("GET", "/v2.0/networks", project=ALICE, status=200).json
    # fields leave out id: paging still works, by id
    only = w.call("GET", "/v2.0/networks?limit=2&fields=name", project=ALICE, status=200).json
    assert only["networks"] == [{"name": names[0]}, {"name": names[1]}] and only["networks_links"]
    # exactly a page's worth: a next link to an empty last page (Neutron's rule), then none
    assert _walk(w, "/v2.0/networks?limit=5") == [ids, []]


def test_sorting_and_bad_controls(w):
    for name in ("b", "c", "a"):
        w.create("networks", project=ALICE, name=name)

    def names(q):
        return [n["name"] for n in w.call("GET", f"/v2.0/networks?{q}", project=ALICE, status=200).json["networks"]]
    assert names("sort_key=name&sort_dir=asc") == ["a", "b", "c"]
    assert names("sort_key=name&sort_dir=desc") == ["c", "b", "a"]
    assert names("sort_key=name&sort_dir=asc&limit=2") == ["a", "b"]
    assert names("sort_key=admin_state_up&sort_dir=asc&sort_key=name&sort_dir=desc") == ["c", "b", "a"]
    error(w.call("GET", "/v2.0/networks?limit=x", project=ALICE), 400, "BadRequest")
    error(w.call("GET", "/v2.0/networks?limit=-1", project=ALICE), 400, "BadRequest")
    error(w.call("GET", "/v2.0/networks?sort_key=name", project=ALICE), 400, "BadRequest")
    error(w.call("GET", "/v2.0/networks?sort_key=name&sort_dir=up", project=ALICE), 400, "BadRequest")
    error(w.call("GET", "/v2.0/networks?sort_key=bogus&sort_dir=asc", project=ALICE), 400, "BadRequest")
