"""A small HTTP harness for tenant-scoped API tests (noauth headers: X-Project-Id, X-Roles), shared by
test_policy, test_quotas, test_tags_paging and test_rbac."""
from __future__ import annotations

from typing import Any

import falcon.testing

from topology.api.app import create_app
from topology.model.service import Service
from topology.store.backends import open_store

# UUID-like project ids (RBAC targets must be), as Keystone makes them.
ALICE = "a11ce000000000000000000000000001"
BOB = "b0b00000000000000000000000000002"
CAROL = "ca701000000000000000000000000003"
SINGULAR = {"networks": "network", "subnets": "subnet", "ports": "port", "routers": "router",
            "floatingips": "floatingip", "security-groups": "security_group",
            "security-group-rules": "security_group_rule", "rbac-policies": "rbac_policy"}


class World:
    def __init__(self, service: Service | None = None) -> None:
        self.svc = service or Service(open_store("memory://"))
        self.client = falcon.testing.TestClient(create_app(self.svc))

    @staticmethod
    def who(project: str | None, roles: str | None = None) -> dict[str, str]:
        headers = {}
        if project:
            headers["X-Project-Id"] = project
        if roles:
            headers["X-Roles"] = roles
        return headers

    def call(self, method: str, path: str, body: Any = None, *, project: str | None = None,
             roles: str | None = None, status: int | None = None, raw: str | None = None) -> Any:
        kw: dict[str, Any] = {"headers": self.who(project, roles)}
        if raw is not None:
            kw["body"] = raw
            kw["headers"]["Content-Type"] = "application/json"
        elif body is not None:
            kw["json"] = body
        resp = self.client.simulate_request(method, path, **kw)
        if status is not None:
            assert resp.status_code == status, f"{method} {path}: {resp.status_code} {resp.text}"
        return resp

    def create(self, collection: str, project: str | None = None, roles: str | None = None,
               status: int = 201, **attrs: Any) -> dict[str, Any]:
        singular = SINGULAR[collection]
        resp = self.call("POST", f"/v2.0/{collection}", {singular: attrs}, project=project, roles=roles,
                         status=status)
        return resp.json.get(singular, resp.json) if status == 201 else resp.json

    def external(self, cidr: str = "172.24.4.0/24") -> tuple[dict, dict]:
        """An admin's flat external network with a subnet."""
        net = self.create("networks", name="public", **{"router:external": True, "provider:network_type": "flat",
                                                        "provider:physical_network": "physnet1"})
        sub = self.create("subnets", network_id=net["id"], cidr=cidr, enable_dhcp=False)
        return net, sub


def error(resp: Any, status: int, type_: str) -> dict[str, str]:
    assert resp.status_code == status, resp.text
    err = resp.json["NeutronError"]
    assert err["type"] == type_, err
    return err
