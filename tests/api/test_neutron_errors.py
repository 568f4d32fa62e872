"""Errors as Neutron names them, and service ports as Neutron treats them (HTTP level)."""
from __future__ import annotations

import pytest

from tests.api.tenants import World, error

MISSING = "0b1e3b2c-8d6a-4c8a-9a3e-4b4c1d2e3f40"


@pytest.fixture()
def w():
    world = World()
    world.net = world.create("networks", name="n")
    world.sub = world.create("subnets", network_id=world.net["id"], cidr="10.0.0.0/24")
    return world


def test_lone_surrogate_is_400_and_changes_nothing(w):
    before = w.svc.store.snapshot()
    for raw in ('{"network": {"name": "\\ud800"}}', '{"network": {"name": "ok", "description": "x\\udfff"}}',
                '{"networks": [{"name": "a"}, {"name": "\\ud83d"}]}'):
        error(w.call("POST", "/v2.0/networks", raw=raw), 400, "MalformedRequestBody")
    error(w.call("PUT", f"/v2.0/networks/{w.net['id']}", raw='{"network": {"name": "\\ud800"}}'), 400,
          "MalformedRequestBody")
    assert w.svc.store.snapshot() == before
    # a proper pair is text
    assert w.create("networks", name="\U0001F600")["name"] == "\U0001F600"


def test_unknown_paths_are_404_not_405(w):
    for method in ("GET", "POST", "DELETE", "PATCH"):
        error(w.call(method, f"/v2.0/networks/{w.net['id']}/whatever"), 404, "HTTPNotFound")
        error(w.call(method, "/v2.0/nothing/x/y"), 404, "HTTPNotFound")
    error(w.call("GET", "/v2.0/networks/x/tags/y/z"), 404, "HTTPNotFound")


def test_unknown_attribute_and_overlap_types(w):
    err = error(w.call("POST", "/v2.0/networks", {"network": {"bogus": 1}}), 400, "HTTPBadRequest")
    assert err["message"] == "Unrecognized attribute(s) 'bogus'"
    err = error(w.call("POST", "/v2.0/subnets", {"subnet": {"network_id": w.net["id"], "cidr": "10.0.0.0/25"}}),
                400, "InvalidInput")
    assert "overlaps with another subnet" in err["message"]


def _dhcp_ports(w):
    return [p for p in w.call("GET", f"/v2.0/ports?network_id={w.net['id']}&device_owner=network:dhcp",
                              status=200).json["ports"]]


def test_the_dhcp_port_comes_back(w):
    [dhcp] = _dhcp_ports(w)
    w.call("DELETE", f"/v2.0/ports/{dhcp['id']}", status=204)
    [again] = _dhcp_ports(w)
    assert again["id"] != dhcp["id"]
    assert [f["subnet_id"] for f in again["fixed_ips"]] == [w.sub["id"]]
    # gone with its network, as before
    w.call("DELETE", f"/v2.0/networks/{w.net['id']}", status=204)


def test_service_ports_with_nothing_behind_them_can_be_deleted(w):
    router = w.create("routers", name="r")
    info = w.call("PUT", f"/v2.0/routers/{router['id']}/add_router_interface", {"subnet_id": w.sub["id"]},
                  status=200).json
    error(w.call("DELETE", f"/v2.0/ports/{info['port_id']}"), 409, "RouterPortInUse")
    for owner in ("network:router_interface", "network:router_gateway", "network:floatingip"):
        orphan = w.create("ports", network_id=w.net["id"], device_owner=owner, device_id=MISSING)
        w.call("DELETE", f"/v2.0/ports/{orphan['id']}", status=204)
