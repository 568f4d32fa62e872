"""REST API through falcon.testing: every error case of the foundation issue, auth, filters, bulk."""
from __future__ import annotations

import falcon.testing
import pytest

from topology.api.app import create_app
from topology.store.backends import open_store
from topology.model.service import Service

MISSING_ID = "0b1e3b2c-8d6a-4c8a-9a3e-4b4c1d2e3f40"


class World:
    def __init__(self, token=None):
        self.svc = Service(open_store("memory://"))
        self.client = falcon.testing.TestClient(create_app(self.svc, api_token=token))
        self.headers = {"X-Auth-Token": token} if token else {}

    def call(self, method, path, body=None, headers=None, status=None):
        h = dict(self.headers, **(headers or {}))
        resp = self.client.simulate_request(method, path, json=body, headers=h)
        if status is not None:
            assert resp.status_code == status, resp.text
        return resp

    def post(self, collection, body, **kw):
        singular = {"security-groups": "security_group", "security-group-rules": "security_group_rule",
                    "floatingips": "floatingip"}.get(collection, collection.rstrip("s"))
        return self.call("POST", f"/v2.0/{collection}", {singular: body}, **kw)


@pytest.fixture()
def w():
    world = World()
    world.net = world.post("networks", {"name": "n1"}, status=201).json["network"]
    world.subnet = world.post("subnets", {"network_id": world.net["id"], "cidr": "10.0.0.0/24"},
                              status=201).json["subnet"]
    world.port = world.post("ports", {"network_id": world.net["id"], "name": "vm1",
                                      "mac_address": "fa:16:3e:00:00:01"}, status=201).json["port"]
    world.sg = world.post("security-groups", {"name": "web"}, status=201).json["security_group"]
    world.router = world.post("routers", {"name": "r1"}, status=201).json["router"]
    return world


def _expect(w, resp, status, type_):
    assert resp.status_code == status, resp.text
    err = resp.json["NeutronError"]
    assert err["type"] == type_ and err["message"] and "detail" in err


def _case(method, path, body, status, type_):
    return pytest.param(method, path, body, status, type_, id=f"{status}-{type_}-{method}-{path.split('/')[2]}")


ERROR_CASES = [
    # unknown id → 404
    _case("GET", f"/v2.0/networks/{MISSING_ID}", None, 404, "NetworkNotFound"),
    _case("GET", f"/v2.0/subnets/{MISSING_ID}", None, 404, "SubnetNotFound"),
    _case("GET", f"/v2.0/ports/{MISSING_ID}", None, 404, "PortNotFound"),
    _case("GET", f"/v2.0/routers/{MISSING_ID}", None, 404, "RouterNotFound"),
    _case("GET", f"/v2.0/floatingips/{MISSING_ID}", None, 404, "FloatingIPNotFound"),
    _case("GET", f"/v2.0/security-groups/{MISSING_ID}", None, 404, "SecurityGroupNotFound"),
    _case("GET", f"/v2.0/security-group-rules/{MISSING_ID}", None, 404, "SecurityGroupRuleNotFound"),
    _case("GET", f"/v2.0/chassis/{MISSING_ID}", None, 404, "ChassisNotFound"),
    _case("DELETE", f"/v2.0/networks/{MISSING_ID}", None, 404, "NetworkNotFound"),
    _case("PUT", f"/v2.0/ports/{MISSING_ID}", {"port": {"name": "x"}}, 404, "PortNotFound"),
    _case("POST", "/v2.0/ports", {"port": {"network_id": MISSING_ID}}, 404, "NetworkNotFound"),
    # unknown URL / method / malformed JSON
    _case("GET", "/v2.0/nothing", None, 404, "HTTPNotFound"),
    _case("GET", "/v3/whatever/else", None, 404, "HTTPNotFound"),
    _case("PATCH", "/v2.0/networks", None, 405, "HTTPMethodNotAllowed"),
    _case("POST", "/v2.0/networks", {"net": {}}, 400, "BadRequest"),
    _case("POST", "/v2.0/networks", {"network": {"bogus": 1}}, 400, "HTTPBadRequest"),
    # malformed CIDR / IP / MAC / UUID → 400
    _case("POST", "/v2.0/subnets", {"subnet": {"network_id": "{net}", "cidr": "10.0.0.300/24"}}, 400, "InvalidInput"),
    _case("POST", "/v2.0/subnets", {"subnet": {"network_id": "{net}", "cidr": "10.1.0.0/24",
                                               "gateway_ip": "10.1.0.x"}}, 400, "InvalidInput"),
    _case("POST", "/v2.0/ports", {"port": {"network_id": "{net}", "mac_address": "fa:16:3e:zz:00:01"}},
          400, "InvalidInput"),
    _case("POST", "/v2.0/ports", {"port": {"network_id": "not-a-uuid"}}, 400, "InvalidInput"),
    _case("POST", "/v2.0/ports", {"port": {"network_id": "{net}", "fixed_ips": [{"ip_address": "10.0.0.256"}]}},
          400, "InvalidInput"),
    # IP outside the subnet, gateway inside a pool, overlapping subnets
    _case("POST", "/v2.0/ports", {"port": {"network_id": "{net}", "fixed_ips": [
        {"subnet_id": "{subnet}", "ip_address": "10.9.9.9"}]}}, 400, "InvalidIpForSubnet"),
    _case("POST", "/v2.0/ports", {"port": {"network_id": "{net}", "fixed_ips": [{"ip_address": "10.9.9.9"}]}},
          400, "InvalidIpForNetwork"),
    _case("POST", "/v2.0/subnets", {"subnet": {"network_id": "{net}", "cidr": "10.5.0.0/24", "gateway_ip": "10.5.0.5",
                                               "allocation_pools": [{"start": "10.5.0.2", "end": "10.5.0.50"}]}},
          400, "GatewayConflictWithAllocationPools"),
    _case("POST", "/v2.0/subnets", {"subnet": {"network_id": "{net}", "cidr": "10.0.0.128/25"}}, 400, "InvalidInput"),
    # bad port range
    _case("POST", "/v2.0/security-group-rules", {"security_group_rule": {
        "security_group_id": "{sg}", "direction": "ingress", "protocol": "tcp", "port_range_min": 100,
        "port_range_max": 10}}, 400, "InvalidPortRange"),
    _case("POST", "/v2.0/security-group-rules", {"security_group_rule": {
        "security_group_id": "{sg}", "direction": "sideways"}}, 400, "InvalidInput"),
    # segmentation id outside its range, unknown physnet
    _case("POST", "/v2.0/networks", {"network": {"provider:network_type": "vlan",
                                                 "provider:physical_network": "physnet1",
                                                 "provider:segmentation_id": 4095}}, 400, "InvalidSegmentationId"),
    _case("POST", "/v2.0/networks", {"network": {"provider:network_type": "vxlan",
                                                 "provider:segmentation_id": 16777216}}, 400, "InvalidSegmentationId"),
    _case("POST", "/v2.0/networks", {"network": {"provider:network_type": "flat",
                                                 "provider:physical_network": "physnet9"}}, 400,
          "UnknownPhysicalNetwork"),
    # IP / MAC in use, VLAN / VNI taken → 409
    _case("POST", "/v2.0/ports", {"port": {"network_id": "{net}", "fixed_ips": [{"ip_address": "{port_ip}"}]}},
          409, "IpAddressAlreadyAllocated"),
    _case("POST", "/v2.0/ports", {"port": {"network_id": "{net}", "mac_address": "fa:16:3e:00:00:01"}},
          409, "MacAddressInUse"),
    _case("POST", "/v2.0/networks", {"network": {"provider:network_type": "vxlan", "provider:segmentation_id": 1}},
          409, "TunnelIdInUse"),
    _case("POST", "/v2.0/networks", {"network": {"provider:network_type": "vlan", "provider:physical_network":
                                                 "physnet1", "provider:segmentation_id": 150}}, 409, "VlanIdInUse"),
    # deleting things still in use → 409
    _case("DELETE", "/v2.0/networks/{net}", None, 409, "NetworkInUse"),
    _case("DELETE", "/v2.0/subnets/{subnet}", None, 409, "SubnetInUse"),
    _case("DELETE", "/v2.0/security-groups/{default_sg}", None, 409, "SecurityGroupInUse"),
    # router interface on a subnet already attached → 409; bad interface bodies → 400
    _case("PUT", "/v2.0/routers/{router_attached}/add_router_interface", {"subnet_id": "{subnet}"}, 409, "BridgeInUse"),
    _case("PUT", "/v2.0/routers/{router}/add_router_interface", {"subnet_id": "{subnet}", "port_id": "{port}"},
          400, "BadRequest"),
    _case("PUT", "/v2.0/routers/{router}/add_router_interface", {"port_id": "{port}"}, 409, "PortInUse"),
]


def _fill(value, names):
    if isinstance(value, str):
        for k, v in names.items():
            value = value.replace("{" + k + "}", v)
        return value
    if isinstance(value, dict):
        return {k: _fill(v, names) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, names) for v in value]
    return value


@pytest.mark.parametrize("method,path,body,status,type_", ERROR_CASES)
def test_error_cases_leave_store_unchanged(w, method, path, body, status, type_):
    w.post("networks", {"provider:network_type": "vlan", "provider:physical_network": "physnet1",
                        "provider:segmentation_id": 150}, status=201)
    attached = w.post("routers", {"name": "r2"}, status=201).json["router"]
    w.call("PUT", f"/v2.0/routers/{attached['id']}/add_router_interface", {"subnet_id": w.subnet["id"]}, status=200)
    w.call("PUT", f"/v2.0/ports/{w.port['id']}", {"port": {"device_id": "some-vm"}}, status=200)
    names = {"net": w.net["id"], "subnet": w.subnet["id"], "port": w.port["id"], "sg": w.sg["id"],
             "router": w.router["id"], "router_attached": attached["id"],
             "port_ip": w.port["fixed_ips"][0]["ip_address"], "default_sg": w.port["security_groups"][0]}
    before = w.svc.store.snapshot()
    resp = w.call(method, _fill(path, names), _fill(body, names))
    _expect(w, resp, status, type_)
    assert w.svc.store.snapshot() == before


def test_malformed_json(w):
    before = w.svc.store.snapshot()
    resp = w.client.simulate_post("/v2.0/networks", body="{not json", headers={"Content-Type": "application/json"})
    _expect(w, resp, 400, "MalformedRequestBody")
    resp = w.client.simulate_post("/v2.0/networks", body="")
    _expect(w, resp, 400, "MalformedRequestBody")
    assert w.svc.store.snapshot() == before


def test_versions_and_discovery(w):
    doc = w.call("GET", "/", status=200).json
    assert doc["versions"][0]["id"] == "v2.0" and doc["versions"][0]["links"][0]["href"].endswith("/v2.0/")
    collections = {r["collection"] for r in w.call("GET", "/v2.0/", status=200).json["resources"]}
    assert {"networks", "subnets", "ports", "routers", "floatingips", "security-groups", "chassis"} <= collections
    aliases = {e["alias"] for e in w.call("GET", "/v2.0/extensions", status=200).json["extensions"]}
    assert {"router", "external-net", "provider", "security-group", "binding"} <= aliases
    w.call("GET", "/v2.0/extensions/router", status=200)
    _expect(w, w.call("GET", "/v2.0/extensions/nope"), 404, "ExtensionNotFound")
    spec = w.call("GET", "/openapi.json", status=200).json
    assert "/v2.0/networks" in spec["paths"] and "/v2.0/routers/{id}/add_router_interface" in spec["paths"]
    assert "put" not in spec["paths"]["/v2.0/security-group-rules/{id}"]


def test_filters_fields_and_json_suffix(w):
    w.post("networks", {"name": "n2"}, status=201)
    names = [n["name"] for n in w.call("GET", "/v2.0/networks?name=n1&name=n2", status=200).json["networks"]]
    assert sorted(names) == ["n1", "n2"]
    only = w.call("GET", "/v2.0/networks.json?name=n2&fields=id&fields=name", status=200).json["networks"]
    assert len(only) == 1 and set(only[0]) == {"id", "name"}
    dhcp = w.call("GET", "/v2.0/ports?device_owner=network:dhcp", status=200).json["ports"]
    assert len(dhcp) == 1
    ip = w.port["fixed_ips"][0]["ip_address"]
    by_ip = w.call("GET", f"/v2.0/ports?fixed_ips=ip_address%3D{ip}", status=200).json["ports"]
    assert [p["id"] for p in by_ip] == [w.port["id"]]
    ext = w.call("GET", "/v2.0/networks?router:external=false", status=200).json["networks"]
    assert len(ext) == 2
    assert "_key" not in w.call("GET", f"/v2.0/ports/{w.port['id']}", status=200).json["port"]


def test_bulk_create_is_one_transaction(w):
    body = {"ports": [{"network_id": w.net["id"]} for _ in range(5)]}
    created = w.call("POST", "/v2.0/ports", body, status=201).json["ports"]
    assert len(created) == 5
    before = w.svc.store.snapshot()
    bad = {"ports": [{"network_id": w.net["id"]}, {"network_id": w.net["id"], "mac_address": "fa:16:3e:00:00:01"}]}
    _expect(w, w.call("POST", "/v2.0/ports", bad), 409, "MacAddressInUse")
    assert w.svc.store.snapshot() == before


def test_update_delete_and_router_interface_answer(w):
    resp = w.call("PUT", f"/v2.0/networks/{w.net['id']}", {"network": {"name": "renamed"}}, status=200)
    assert resp.json["network"]["name"] == "renamed" and resp.json["network"]["revision_number"] == 1
    info = w.call("PUT", f"/v2.0/routers/{w.router['id']}/add_router_interface", {"subnet_id": w.subnet["id"]},
                  status=200).json
    assert set(info) >= {"id", "subnet_id", "subnet_ids", "port_id", "network_id", "project_id", "tenant_id"}
    w.call("PUT", f"/v2.0/routers/{w.router['id']}/remove_router_interface", {"port_id": info["port_id"]},
           status=200)
    assert w.call("DELETE", f"/v2.0/routers/{w.router['id']}").status_code == 204
    _expect(w, w.call("PUT", f"/v2.0/security-group-rules/{MISSING_ID}", {"security_group_rule": {}}), 405,
            "MethodNotAllowed")


def test_noauth_projects_and_policy(w):
    alice = {"X-Project-Id": "alice"}
    bob = {"X-Project-Id": "bob"}
    priv = w.post("networks", {"name": "alice-net"}, headers=alice, status=201).json["network"]
    assert priv["project_id"] == "alice" and priv["tenant_id"] == "alice"
    shared = w.post("networks", {"name": "pub", "shared": True}, status=201).json["network"]
    seen = {n["id"] for n in w.call("GET", "/v2.0/networks", headers=bob, status=200).json["networks"]}
    assert seen == {shared["id"]}
    _expect(w, w.call("GET", f"/v2.0/networks/{priv['id']}", headers=bob), 404, "NetworkNotFound")
    _expect(w, w.post("networks", {"router:external": True}, headers=bob), 403, "PolicyNotAuthorized")
    _expect(w, w.post("networks", {"provider:network_type": "flat", "provider:physical_network": "physnet1"},
                      headers=bob), 403, "PolicyNotAuthorized")
    w.post("networks", {"router:external": True}, headers=dict(bob, **{"X-Roles": "member,admin"}), status=201)
    # admin (no project header) sees everything
    assert len(w.call("GET", "/v2.0/networks", status=200).json["networks"]) == 4


def test_static_token():
    world = World(token="s3cret")
    assert world.client.simulate_get("/").status_code == 200     # version discovery stays open
    _expect(world, world.client.simulate_get("/v2.0/networks"), 401, "Unauthorized")
    _expect(world, world.client.simulate_get("/v2.0/networks", headers={"X-Auth-Token": "nope"}), 401,
            "Unauthorized")
    assert world.client.simulate_get("/v2.0/networks", headers={"X-Auth-Token": "s3cret"}).status_code == 200


def test_extra_routes_are_mounted():
    class Flows:
        def on_get(self, req, resp):
            resp.media = {"flows": ["x"]}
    app = create_app(Service(open_store("memory://")), extra_routes=[("/v2.0/tenantflow/flows", Flows())])
    client = falcon.testing.TestClient(app)
    assert client.simulate_get("/v2.0/tenantflow/flows").json == {"flows": ["x"]}
    assert client.simulate_get("/v2.0/networks").status_code == 200
