"""OpenAPI 3 document of our API, generated from the same attribute specs the validator uses.

Why generated: a hand-kept copy drifts; building it from `validate.SPECS` keeps it accurate.
"""
from __future__ import annotations

from typing import Any

from topology.store import CHASSIS
from topology.model.validate import SPECS

# Mirrors api.COLLECTIONS (kept here to avoid an import cycle).
_COLLECTIONS = {
    "networks": ("network", "network", "networks"),
    "subnets": ("subnet", "subnet", "subnets"),
    "ports": ("port", "port", "ports"),
    "routers": ("router", "router", "routers"),
    "floatingips": ("floatingip", "floatingip", "floatingips"),
    "security-groups": ("security_group", "security_group", "security_groups"),
    "security-group-rules": ("security_group_rule", "security_group_rule", "security_group_rules"),
    "chassis": (CHASSIS, "chassis", "chassis"),
}

_ERROR = {"description": "Neutron error", "content": {"application/json": {"schema": {
    "$ref": "#/components/schemas/NeutronError"}}}}


def _schema(kind: str) -> dict[str, Any]:
    props = {}
    for name, attr in SPECS[kind].items():
        entry: dict[str, Any] = {}
        if not attr.post and not attr.put:
            entry["readOnly"] = True
        elif not attr.put:
            entry["description"] = "set on create only"
        if attr.admin:
            entry["description"] = (entry.get("description", "") + " (admin only)").strip()
        props[name] = entry
    return {"type": "object", "properties": props}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def openapi_document(server_url: str = "") -> dict[str, Any]:
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {
        "NeutronError": {"type": "object", "properties": {"NeutronError": {"type": "object", "properties": {
            "type": {"type": "string"}, "message": {"type": "string"}, "detail": {"type": "string"}}}}},
    }
    for collection, (kind, singular, plural) in _COLLECTIONS.items():
        schemas[singular] = _schema(kind)
        ref = {"$ref": f"#/components/schemas/{singular}"}
        one = {"type": "object", "properties": {singular: ref}}
        many = {"type": "object", "properties": {plural: {"type": "array", "items": ref}}}
        errs = {"400": _ERROR, "401": _ERROR, "403": _ERROR, "404": _ERROR, "409": _ERROR}
        paths[f"/v2.0/{collection}"] = {
            "get": {"summary": f"List {plural} (filter by any attribute: ?name=x&name=y is OR; fields=)",
                    "responses": {"200": {"description": "OK", **_json(many)}, **errs}},
            "post": {"summary": f"Create one {singular} or many in one transaction ({{\"{plural}\": [...]}})",
                     "requestBody": _json({"oneOf": [one, many]}),
                     "responses": {"201": {"description": "Created", **_json({"oneOf": [one, many]})}, **errs}},
        }
        item: dict[str, Any] = {
            "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
            "get": {"summary": f"Show a {singular}", "responses": {"200": {"description": "OK", **_json(one)},
                                                                   **errs}},
            "delete": {"summary": f"Delete a {singular}", "responses": {"204": {"description": "Deleted"}, **errs}},
        }
        if kind != "security_group_rule":
            item["put"] = {"summary": f"Update a {singular}", "requestBody": _json(one),
                           "responses": {"200": {"description": "OK", **_json(one)}, **errs}}
        paths[f"/v2.0/{collection}/{{id}}"] = item
    iface = {"type": "object", "properties": {"subnet_id": {"type": "string"}, "port_id": {"type": "string"}}}
    for action in ("add_router_interface", "remove_router_interface"):
        paths[f"/v2.0/routers/{{id}}/{action}"] = {
            "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
            "put": {"summary": action.replace("_", " "), "requestBody": _json(iface),
                    "responses": {"200": {"description": "interface info: id, port_id, subnet_id, subnet_ids, "
                                                         "network_id, project_id"},
                                  "400": _ERROR, "404": _ERROR, "409": _ERROR}},
        }
    paths["/"] = {"get": {"summary": "API versions (Neutron version discovery)",
                          "responses": {"200": {"description": "OK"}}}}
    paths["/v2.0"] = {"get": {"summary": "Resources of API v2.0", "responses": {"200": {"description": "OK"}}}}
    paths["/v2.0/extensions"] = {"get": {"summary": "Supported extensions",
                                         "responses": {"200": {"description": "OK"}}}}
    paths["/openapi.json"] = {"get": {"summary": "This document", "responses": {"200": {"description": "OK"}}}}
    return {
        "openapi": "3.0.3",
        "info": {"title": "tenantflow networking API (Neutron v2.0 compatible)", "version": "2.0"},
        "servers": [{"url": server_url}] if server_url else [],
        "components": {
            "schemas": schemas,
            "securitySchemes": {"token": {"type": "apiKey", "in": "header", "name": "X-Auth-Token"}},
        },
        "paths": paths,
    }
