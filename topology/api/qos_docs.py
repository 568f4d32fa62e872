"""OpenAPI paths of Neutron's QoS extension (routes in topology.api.qos); merged into
/openapi.json by topology.api.openapi. Imports nothing of the app (openapi.py is imported by app.py)."""
from __future__ import annotations

from typing import Any

from topology.model.resources.qos import DIRECTIONS, VALID_DSCP_MARKS

_ERROR = {"description": "Neutron error", "content": {"application/json": {"schema": {
    "$ref": "#/components/schemas/NeutronError"}}}}
_ERRS = {code: _ERROR for code in ("400", "401", "403", "404", "409")}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def _param(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def _crud(prefix: str, key: str, item: dict[str, Any], what: str, params: list[str]) -> dict[str, Any]:
    one = {"type": "object", "properties": {key: item}}
    ok = {"200": {"description": "OK", **_json(one)}, **_ERRS}
    return {
        prefix: {"parameters": [_param(p) for p in params],
                 "get": {"summary": f"List {what}s", "responses": {"200": {"description": "OK"}, **_ERRS}},
                 "post": {"summary": f"Create a {what}", "requestBody": _json(one),
                          "responses": {"201": {"description": "Created", **_json(one)}, **_ERRS}}},
        f"{prefix}/{{rule_id}}" if params else f"{prefix}/{{id}}": {
            "parameters": [_param(p) for p in params + (["rule_id"] if params else ["id"])],
            "get": {"summary": f"Show a {what}", "responses": ok},
            "put": {"summary": f"Update a {what}", "requestBody": _json(one), "responses": ok},
            "delete": {"summary": f"Delete a {what}" + ("" if params else " (409 QosPolicyInUse while used)"),
                       "responses": {"204": {"description": "Deleted"}, **_ERRS}}},
    }


def qos_paths() -> dict[str, Any]:
    kbps = {"type": "integer", "minimum": 0, "maximum": 2 ** 31 - 1}
    policy = {"type": "object", "properties": {
        "name": {"type": "string", "maxLength": 255}, "description": {"type": "string"},
        "shared": {"type": "boolean"}, "is_default": {"type": "boolean"}, "project_id": {"type": "string"},
        "id": {"type": "string", "readOnly": True}, "rules": {"type": "array", "readOnly": True}}}
    bw = {"type": "object", "required": ["max_kbps"], "properties": {
        "max_kbps": kbps, "max_burst_kbps": kbps, "direction": {"type": "string", "enum": list(DIRECTIONS)}}}
    dscp = {"type": "object", "required": ["dscp_mark"], "properties": {
        "dscp_mark": {"type": "integer", "enum": list(VALID_DSCP_MARKS)}}}
    paths: dict[str, Any] = {}
    paths.update(_crud("/v2.0/qos/policies", "policy", policy, "QoS policy", []))
    paths.update(_crud("/v2.0/qos/policies/{id}/bandwidth_limit_rules", "bandwidth_limit_rule", bw,
                       "bandwidth limit rule", ["id"]))
    paths.update(_crud("/v2.0/qos/policies/{id}/dscp_marking_rules", "dscp_marking_rule", dscp,
                       "DSCP marking rule", ["id"]))
    paths["/v2.0/qos/rule-types"] = {"get": {"summary": "Supported QoS rule types (admin)",
                                             "responses": {"200": {"description": "OK"}, **_ERRS}}}
    paths["/v2.0/qos/rule-types/{id}"] = {"parameters": [_param("id")],
                                          "get": {"summary": "A rule type and its parameters (admin)",
                                                  "responses": {"200": {"description": "OK"}, **_ERRS}}}
    return paths
