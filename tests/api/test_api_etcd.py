"""The REST API and `tenantflow serve` over the etcd backend: the same flows as with SQLite, and two
API servers (as on two machines) sharing one etcd without ever handing out an address twice."""
from __future__ import annotations

import threading
import time

import falcon.testing
import pytest
import requests

from tests.unit.test_store_etcd import EtcdServer, needs_etcd
from topology.api.app import create_app
from topology.store.backends import open_store
from topology.store.etcd import SUB
from topology.model.service import Service

pytestmark = needs_etcd


@pytest.fixture(scope="module")
def etcd():
    server = EtcdServer().start()
    yield server
    server.stop()


class Api:
    """One API server (its own Service and EtcdStore) on the shared etcd."""

    def __init__(self, url: str) -> None:
        self.svc = Service(open_store(url))
        self.client = falcon.testing.TestClient(create_app(self.svc))

    def call(self, method: str, path: str, body=None, status: int | None = None):
        resp = self.client.simulate_request(method, path, json=body)
        if status is not None:
            assert resp.status_code == status, resp.text
        return resp

    def post(self, collection: str, body: dict, status: int = 201) -> dict:
        singular = {"security-groups": "security_group", "floatingips": "floatingip"}.get(
            collection, collection.rstrip("s"))
        return self.call("POST", f"/v2.0/{collection}", {singular: body}, status).json[singular]


@pytest.fixture()
def pair(etcd):
    url = etcd.store_url()
    a, b = Api(url), Api(url)
    yield a, b
    a.svc.store.close()
    b.svc.store.close()


def test_crud_flow_and_errors_over_etcd(pair):
    a, b = pair
    net = a.post("networks", {"name": "blue"})
    assert net["provider:network_type"] == "vxlan" and net["mtu"] == 1450
    sub = a.post("subnets", {"network_id": net["id"], "cidr": "10.0.0.0/24"})
    port = b.post("ports", {"network_id": net["id"], "name": "vm1",
                            "fixed_ips": [{"ip_address": "10.0.0.10"}]})  # through the other server
    assert port["fixed_ips"] == [{"subnet_id": sub["id"], "ip_address": "10.0.0.10"}]
    assert b.call("GET", f"/v2.0/networks/{net['id']}", status=200).json["network"]["subnets"] == [sub["id"]]
    # errors: nothing changes, on either server
    before = a.svc.store.snapshot()
    resp = a.call("POST", "/v2.0/ports", {"port": {"network_id": net["id"],
                                                   "fixed_ips": [{"ip_address": "10.0.0.10"}]}})
    assert resp.status_code == 409 and resp.json["NeutronError"]["type"] == "IpAddressAlreadyAllocated"
    resp = b.call("DELETE", f"/v2.0/networks/{net['id']}")
    assert resp.status_code == 409 and resp.json["NeutronError"]["type"] == "NetworkInUse"
    assert a.svc.store.snapshot() == before == b.svc.store.snapshot()
    # router interface through one server, seen by the other
    router = a.post("routers", {"name": "r1"})
    a.call("PUT", f"/v2.0/routers/{router['id']}/add_router_interface", {"subnet_id": sub["id"]}, 200)
    owners = {p["device_owner"] for p in b.call("GET", "/v2.0/ports", status=200).json["ports"]}
    assert "network:router_interface" in owners
    a.call("PUT", f"/v2.0/routers/{router['id']}/remove_router_interface", {"subnet_id": sub["id"]}, 200)
    b.call("DELETE", f"/v2.0/ports/{port['id']}", status=204)
    a.call("DELETE", f"/v2.0/networks/{net['id']}", status=204)
    assert b.call("GET", "/v2.0/networks", status=200).json["networks"] == []


def test_bulk_create_is_one_commit(pair):
    a, b = pair
    net = a.post("networks", {"name": "bulk"})
    a.post("subnets", {"network_id": net["id"], "cidr": "10.1.0.0/24", "enable_dhcp": False})
    rev = b.svc.store.revision()
    resp = a.call("POST", "/v2.0/ports", {"ports": [{"network_id": net["id"]} for _ in range(150)]}, 201)
    assert len(resp.json["ports"]) == 150
    changes = b.svc.store.changes(rev)
    assert len({c.revision for c in changes}) == len(changes), "revisions not distinct"
    assert len({c.revision // SUB for c in changes}) == 1, "one request must be one etcd commit"
    assert sum(c.kind == "port" for c in changes) == 150  # plus the project's default security group
    ips = [p["fixed_ips"][0]["ip_address"] for p in b.call("GET", "/v2.0/ports", status=200).json["ports"]]
    assert len(ips) == len(set(ips)) == 150


def test_two_api_servers_allocate_concurrently_without_duplicates(pair):
    a, b = pair
    net = a.post("networks", {"name": "race"})
    a.post("subnets", {"network_id": net["id"], "cidr": "10.2.0.0/27", "enable_dhcp": False})  # 29 addresses
    got: list[str] = []
    statuses: list[int] = []
    lock = threading.Lock()

    def worker(api: Api, n: int) -> None:
        for _ in range(n):
            resp = api.client.simulate_post("/v2.0/ports", json={"port": {"network_id": net["id"]}})
            with lock:
                statuses.append(resp.status_code)
                if resp.status_code == 201:
                    got.append(resp.json["port"]["fixed_ips"][0]["ip_address"])

    threads = [threading.Thread(target=worker, args=(api, 10)) for api in (a, b, a, b)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(120)
    assert len(got) == len(set(got)), f"duplicate addresses: {sorted(got)}"
    # 40 requests for 29 addresses: 29 succeed, the rest are a clean 409 IpAddressGenerationFailure
    assert statuses.count(201) == 29 and set(statuses) <= {201, 409}, statuses
    stored = [p["fixed_ips"][0]["ip_address"] for p in b.svc.list("port")]
    assert sorted(stored) == sorted(got)


@pytest.mark.skipif(not __import__("tests.testbed.controller", fromlist=["x"]).serve_implemented(),
                    reason="tenantflow serve is not available")
def test_serve_on_etcd_two_controllers(etcd, tmp_path):
    """Two `tenantflow serve` processes on one etcd (native threads and eventlet hub): a network
    created through one is served by the other, and each controller's change feed reaches the
    store's revision; both stop cleanly on SIGTERM."""
    from tests.testbed.controller import Controller

    url = etcd.store_url()
    ctls = []
    for name in ("m1", "m2"):
        workdir = tmp_path / name
        workdir.mkdir()
        ctl = Controller(workdir, ofp_host="127.0.0.1")
        ctl.store_url = url
        ctls.append(ctl)
    try:
        ctls[0].start(timeout=60)
        ctls[1].start(env={"OSKEN_HUB_TYPE": "eventlet"}, timeout=60)  # both hubs on the etcd client
        api1, api2 = ctls[0].api_url, ctls[1].api_url
        resp = requests.post(api1 + "/v2.0/networks", json={"network": {"name": "shared"}}, timeout=10)
        assert resp.status_code == 201, resp.text
        net = resp.json()["network"]
        resp = requests.post(api2 + "/v2.0/subnets", json={"subnet": {"network_id": net["id"],
                                                                       "cidr": "10.3.0.0/24"}}, timeout=10)
        assert resp.status_code == 201, resp.text
        assert requests.get(f"{api2}/v2.0/networks/{net['id']}", timeout=10).json()["network"]["name"] == "shared"
        store = open_store(url)
        want = store.revision()
        store.close()
        for ctl in ctls:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                stats = requests.get(ctl.api_url + "/v2.0/tenantflow/stats", timeout=10).json()
                if stats["revision"] >= want:
                    break
                time.sleep(0.1)
            assert stats["revision"] == want, f"controller feed stuck at {stats['revision']} < {want}\n" \
                                              f"{ctl.log_tail()}"
    finally:
        for ctl in ctls:
            ctl.stop()
    for ctl in ctls:
        assert ctl.proc.returncode == 0, ctl.log_tail()
        assert "Traceback" not in ctl.log_text(), ctl.log_tail()
