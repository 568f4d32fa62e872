"""Neutron's extraroute-atomic extension: PUT /v2.0/routers/{id}/add_extraroutes and
/remove_extraroutes with {"router": {"routes": [...]}}, over REST and through the real
`openstack router add route` / `remove route` (python-openstackclient, unchanged, noauth).

Semantics (neutron/db/extraroute_db.py): add merges exact duplicates, keeps several nexthops
for one destination; remove ignores routes that are not there; the resulting set is validated
as a whole like an update of `routes` (nexthop on a router subnet and not a router address,
else 400 InvalidRoutes), in one write transaction.
"""
from __future__ import annotations

import pytest
import requests

from tests.api.osc import run as osc_run
from topology.api.app import create_app, serve_in_thread
from topology.model.service import Service
from topology.store.backends import open_store


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    store = open_store(f"sqlite://{tmp_path_factory.mktemp('xroute')}/tf.db")
    handle = serve_in_thread(create_app(Service(store)), "127.0.0.1", 0)
    yield handle
    handle.close()
    store.close()


def _call(api, method: str, path: str, body=None) -> requests.Response:
    return requests.request(method, f"{api.url}/v2.0/{path}", json=body, timeout=10)


@pytest.fixture(scope="module")
def router(api):
    net = _call(api, "POST", "networks", {"network": {"name": "xr-net"}}).json()["network"]
    sub = _call(api, "POST", "subnets", {"subnet": {"network_id": net["id"], "cidr": "10.40.0.0/24",
                                                    "ip_version": 4, "name": "xr-sub"}}).json()["subnet"]
    rtr = _call(api, "POST", "routers", {"router": {"name": "xr-router"}}).json()["router"]
    assert _call(api, "PUT", f"routers/{rtr['id']}/add_router_interface", {"subnet_id": sub["id"]}).ok
    return rtr


def _routes(resp: requests.Response) -> list[tuple[str, str]]:
    assert resp.status_code == 200, resp.text
    return sorted((r["destination"], r["nexthop"]) for r in resp.json()["router"]["routes"])


def test_add_and_remove_extraroutes_rest(api, router):
    rid = router["id"]
    add = {"router": {"routes": [{"destination": "192.0.2.0/24", "nexthop": "10.40.0.5"},
                                 {"destination": "198.51.100.0/24", "nexthop": "10.40.0.6"}]}}
    assert _routes(_call(api, "PUT", f"routers/{rid}/add_extraroutes", add)) == [
        ("192.0.2.0/24", "10.40.0.5"), ("198.51.100.0/24", "10.40.0.6")]
    # exact duplicates merge, a second nexthop for a destination is kept
    more = {"router": {"routes": [{"destination": "192.0.2.0/24", "nexthop": "10.40.0.5"},
                                  {"destination": "192.0.2.0/24", "nexthop": "10.40.0.7"}]}}
    assert _routes(_call(api, "PUT", f"routers/{rid}/add_extraroutes", more)) == [
        ("192.0.2.0/24", "10.40.0.5"), ("192.0.2.0/24", "10.40.0.7"), ("198.51.100.0/24", "10.40.0.6")]
    # removing one that is not there is fine
    gone = {"router": {"routes": [{"destination": "192.0.2.0/24", "nexthop": "10.40.0.5"},
                                  {"destination": "203.0.113.0/24", "nexthop": "10.40.0.9"}]}}
    assert _routes(_call(api, "PUT", f"routers/{rid}/remove_extraroutes", gone)) == [
        ("192.0.2.0/24", "10.40.0.7"), ("198.51.100.0/24", "10.40.0.6")]
    shown = _call(api, "GET", f"routers/{rid}").json()["router"]
    assert len(shown["routes"]) == 2
    rest = {"router": {"routes": shown["routes"]}}
    assert _routes(_call(api, "PUT", f"routers/{rid}/remove_extraroutes", rest)) == []
    assert "extraroute-atomic" in {e["alias"] for e in _call(api, "GET", "extensions").json()["extensions"]}


@pytest.mark.parametrize("body,status,kind", [
    ({"router": {"routes": [{"destination": "192.0.2.0/24", "nexthop": "10.99.0.1"}]}}, 400, "InvalidRoutes"),
    ({"router": {"routes": [{"destination": "192.0.2.0/24", "nexthop": "10.40.0.1"}]}}, 400, "InvalidRoutes"),
    ({"router": {"routes": [{"destination": "not-a-cidr", "nexthop": "10.40.0.5"}]}}, 400, None),
    ({"router": {"routes": [{"destination": "192.0.2.0/24"}]}}, 400, None),
    ({"router": {"routes": "x"}}, 400, None),
    ({"router": {}}, 400, None),
    ({"routes": []}, 400, None),
    ([], 400, None),
])
def test_bad_extraroutes_are_neutron_errors(api, router, body, status, kind):
    for action in ("add_extraroutes", "remove_extraroutes"):
        resp = _call(api, "PUT", f"routers/{router['id']}/{action}", body)
        if action == "remove_extraroutes" and kind == "InvalidRoutes":
            assert resp.status_code == 200  # removing what is not there validates the (unchanged) rest
            continue
        assert resp.status_code == status, resp.text
        err = resp.json()["NeutronError"]
        assert kind is None or err["type"] == kind, err


def test_unknown_router_is_404(api):
    body = {"router": {"routes": []}}
    resp = _call(api, "PUT", "routers/8b0f6a0e-9b8f-4a5e-9d8a-0c9a2f1f0f00/add_extraroutes", body)
    assert resp.status_code == 404 and resp.json()["NeutronError"]["type"] == "RouterNotFound"


def test_openstack_router_add_and_remove_route(api, router):
    def osc(*args: str, check: bool = True):
        return osc_run(["--os-auth-type", "none", "--os-endpoint", api.url], args, check=check)
    osc("router", "add", "route", "--route", "destination=203.0.113.0/24,gateway=10.40.0.20", "xr-router")
    shown = osc("router", "show", "xr-router", "-f", "json")
    assert {"destination": "203.0.113.0/24", "nexthop": "10.40.0.20"} in shown["routes"], shown["routes"]
    bad = osc("router", "add", "route", "--route", "destination=203.0.114.0/24,gateway=10.77.0.1", "xr-router",
              check=False)
    assert bad.returncode != 0 and "not connected" in bad.stderr
    osc("router", "remove", "route", "--route", "destination=203.0.113.0/24,gateway=10.40.0.20", "xr-router")
    assert osc("router", "show", "xr-router", "-f", "json")["routes"] == []
