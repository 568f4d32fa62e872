"""A small client for tenantflow's Neutron-compatible REST API, for tests.

Why not python-neutronclient/openstacksdk: tests want the raw Neutron JSON and the exact error
body (`{"NeutronError": {...}}`) with as little magic as possible. `as_project("p1")` gives a
client acting as tenant p1 (X-Project-Id), like Neutron's noauth mode.
"""
from __future__ import annotations

import logging
from typing import Any

import requests

from topology.model.schema import BY_COLLECTION

log = logging.getLogger(__name__)


def singular(collection: str) -> str:
    """The body key of one resource of `collection` ({"security_group": {...}}), from the one schema."""
    return BY_COLLECTION[collection].singular


class NeutronApiError(Exception):
    """A 4xx/5xx answer. `.status`, `.type`, `.message`, `.detail` come from the NeutronError body."""

    def __init__(self, method: str, url: str, status: int, body: Any) -> None:
        self.method, self.url, self.status, self.body = method, url, status, body
        err = body.get("NeutronError", {}) if isinstance(body, dict) else {}
        self.type: str = err.get("type", "")
        self.message: str = err.get("message", "")
        self.detail: str = err.get("detail", "")
        super().__init__(f"{method} {url} -> {status}: {body}")


class NeutronClient:
    """`get/post/put/delete(path, ...)` return parsed JSON (None for 204) and raise
    NeutronApiError on errors; `path` is relative to /v2.0 unless it starts with '/'."""

    def __init__(self, base_url: str, project: str | None = None, roles: str | None = None,
                 timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.project = project
        self.roles = roles
        self.timeout = timeout
        self.session = requests.Session()

    def as_project(self, project: str, admin: bool = False) -> "NeutronClient":
        """A client that acts as tenant `project` (with the admin role if `admin`)."""
        return NeutronClient(self.base_url, project, "admin" if admin else None, self.timeout)

    def _url(self, path: str) -> str:
        path = path if path.startswith("/") else "/v2.0/" + path
        return self.base_url + path

    def request(self, method: str, path: str, body: Any = None,
                params: dict[str, Any] | None = None, timeout: float | None = None) -> Any:
        headers = {"Accept": "application/json"}
        if self.project:
            headers["X-Project-Id"] = self.project
        if self.roles:
            headers["X-Roles"] = self.roles
        url = self._url(path)
        resp = self.session.request(method, url, json=body, params=params, headers=headers,
                                    timeout=timeout or self.timeout)
        try:
            data = resp.json() if resp.content else None
        except ValueError:
            data = resp.text
        if resp.status_code >= 400:
            raise NeutronApiError(method, url, resp.status_code, data)
        return data

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params or None)

    def post(self, path: str, body: Any) -> Any:
        return self.request("POST", path, body)

    def put(self, path: str, body: Any) -> Any:
        return self.request("PUT", path, body)

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)

    # -- convenience: unwrap Neutron's {"network": {...}} envelopes -----------------------
    def create(self, collection: str, **fields: Any) -> dict[str, Any]:
        """`create("networks", name="n1")` -> the created network dict."""
        key = singular(collection)
        return self.post(collection, {key: fields})[key]

    def show(self, collection: str, rid: str) -> dict[str, Any]:
        return self.get(f"{collection}/{rid}")[singular(collection)]

    def update(self, collection: str, rid: str, **fields: Any) -> dict[str, Any]:
        key = singular(collection)
        return self.put(f"{collection}/{rid}", {key: fields})[key]

    def list(self, collection: str, **filters: Any) -> list[dict[str, Any]]:
        """`list("ports", network_id=n)` -> list of port dicts."""
        return self.get(collection, **filters)[collection.replace("-", "_")]

    def remove(self, collection: str, rid: str) -> None:
        self.delete(f"{collection}/{rid}")

    # The three calls almost every integration test makes:
    def network_with_subnet(self, name: str, cidr: str, **net_fields: Any
                            ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Create a network and one IPv4 subnet on it; returns (network, subnet)."""
        net = self.create("networks", name=name, **net_fields)
        sub = self.create("subnets", network_id=net["id"], cidr=cidr, ip_version=4,
                          name=f"{name}-subnet")
        return net, sub

    def port(self, network: dict[str, Any] | str, **fields: Any) -> dict[str, Any]:
        net_id = network if isinstance(network, str) else network["id"]
        return self.create("ports", network_id=net_id, **fields)
