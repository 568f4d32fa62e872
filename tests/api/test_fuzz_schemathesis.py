"""schemathesis against /openapi.json: every operation the document lists, about 50 generated
requests each (bodies, query strings, path ids, headers), in-process through the WSGI app, as the
noauth admin or as a tenant (drawn per example). The property: never a server error (5xx), and every error body is
Neutron's. Bounded by max_examples and derandomized, so a run is repeatable and short."""
from __future__ import annotations

import json

import hypothesis
import schemathesis
from hypothesis import strategies as st

from topology.api.app import create_app
from topology.model.service import Service
from topology.store.backends import open_store

MAX_EXAMPLES = 50
TENANT = "f0220000000000000000000000000001"
SERVICE = Service(open_store("memory://"))
APP = create_app(SERVICE)
SCHEMA = schemathesis.openapi.from_wsgi("/openapi.json", APP)


def _seed() -> None:
    """A few real objects, so lists have content (generated ids mostly miss: 404s)."""
    net = SERVICE.create("network", {"name": "fuzz-net"})
    SERVICE.create("subnet", {"network_id": net["id"], "cidr": "10.77.0.0/24"})
    SERVICE.create("port", {"network_id": net["id"]})
    SERVICE.create("router", {"name": "fuzz-r"})


_seed()


@SCHEMA.parametrize()
@SCHEMA.given(project=st.sampled_from([None, TENANT]))
@hypothesis.settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
                     suppress_health_check=list(hypothesis.HealthCheck))
def test_no_server_errors(case, project):
    headers = {"X-Project-Id": project} if project else {}
    response = case.call(headers=headers)
    assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.status_code} {response.text}"
    if response.status_code >= 400 and case.method.upper() != "HEAD":
        body = json.loads(response.text)
        assert set(body["NeutronError"]) == {"type", "message", "detail"}, response.text
