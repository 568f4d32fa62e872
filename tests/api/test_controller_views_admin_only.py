"""The controller's own views (/v2.0/tenantflow/flows, stats, trace) show every tenant's objects:
a tenant is refused with Neutron's 403 PolicyNotAuthorized, the admin is served."""
from __future__ import annotations

import threading

import falcon.testing
import pytest

from controller import inspect, trace
from topology.api.app import create_app
from topology.model.service import Service
from topology.store.backends import open_store
from topology.view import TopologyView


class FakeRegistry:
    def all(self) -> list:
        return []

    def by_chassis(self, name: str):
        return None


class FakeCore:
    registry = FakeRegistry()
    packet_apps: dict = {}
    view = TopologyView()
    view_lock = threading.Lock()

    def __init__(self, store) -> None:
        self.store = store

    def stats(self) -> dict:
        return {"datapaths": {}, "revision": 0}


@pytest.fixture()
def client():
    svc = Service(open_store("memory://"))
    core = FakeCore(svc.store)
    app = create_app(svc, extra_routes=inspect.routes(core) + trace.routes(core))
    return falcon.testing.TestClient(app)


PATHS = ["/v2.0/tenantflow/stats", "/v2.0/tenantflow/flows?chassis=c1",
         "/v2.0/tenantflow/trace?from_port=p&dst_ip=10.0.0.1"]


@pytest.mark.parametrize("path", PATHS)
def test_a_tenant_is_refused(client, path):
    r = client.simulate_get(path, headers={"X-Project-Id": "tenant-a"})
    assert r.status_code == 403, r.text
    assert r.json["NeutronError"]["type"] == "PolicyNotAuthorized"


@pytest.mark.parametrize("path,status", zip(PATHS, (200, 404, 404)))
def test_the_admin_is_served(client, path, status):
    r = client.simulate_get(path)          # noauth without X-Project-Id: the admin
    assert r.status_code == status, r.text
