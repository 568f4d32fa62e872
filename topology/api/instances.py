"""HTTP routes of tenantflow's instance data: /v2.0/tenantflow/instances/{device_id} (GET, PUT,
DELETE) and the metadata agent's question /v2.0/tenantflow/metadata/ports/{port_key} (GET, admin).

Why a module of its own: the rules live in topology.model.instances; this only translates HTTP.
"""
from __future__ import annotations

import falcon

from topology.api.app import context_of, read_json, send
from topology.model import errors
from topology.model.instances import Instances
from topology.model.service import Service

INSTANCES_PATH = "/v2.0/tenantflow/instances"
METADATA_PORTS_PATH = "/v2.0/tenantflow/metadata/ports"


class InstanceResource:
    """/v2.0/tenantflow/instances/{device_id}: PUT creates (201) or updates (200), GET, DELETE (204)."""

    def __init__(self, instances: Instances) -> None:
        self.instances = instances

    def on_get(self, req: falcon.Request, resp: falcon.Response, device_id: str) -> None:
        send(resp, {"instance": self.instances.show(device_id, context_of(req))})

    def on_put(self, req: falcon.Request, resp: falcon.Response, device_id: str) -> None:
        rec, created = self.instances.put(device_id, read_json(req), context_of(req))
        send(resp, {"instance": rec}, 201 if created else 200)

    def on_delete(self, req: falcon.Request, resp: falcon.Response, device_id: str) -> None:
        self.instances.delete(device_id, context_of(req))
        resp.status = 204


class MetadataPortResource:
    """/v2.0/tenantflow/metadata/ports/{port_key}: what the metadata agent answers that port with."""

    def __init__(self, instances: Instances) -> None:
        self.instances = instances

    def on_get(self, req: falcon.Request, resp: falcon.Response, port_key: str) -> None:
        if not port_key.isdigit() or not 0 < int(port_key) < 1 << 32:
            raise errors.InvalidInput(error_message=f"port key must be a positive integer, got {port_key!r}")
        send(resp, {"metadata": self.instances.lookup(int(port_key), context_of(req))})


def add_routes(app: falcon.App, service: Service) -> None:
    instances = Instances(service)
    app.add_route(INSTANCES_PATH + "/{device_id}", InstanceResource(instances))
    app.add_route(METADATA_PORTS_PATH + "/{port_key}", MetadataPortResource(instances))
