"""OpenAPI 3 document of our API, generated from the one resource table and its attribute specs.

Why generated: a hand-kept copy drifts. Paths come from `schema.RESOURCES` (the table the API
routes and the CLI use), properties and what may be written from `validate.SPECS` (what the
validator enforces), property types from the stored record shapes in `records`.
"""
from __future__ import annotations

import types
import typing
from typing import Any

from topology.model.records import RECORD_TYPES
from topology.model.schema import RESOURCES
from topology.model.validate import SPECS

_ERROR = {"description": "Neutron error", "content": {"application/json": {"schema": {
    "$ref": "#/components/schemas/NeutronError"}}}}


_JSON_TYPES: dict[type, str] = {str: "string", bool: "boolean", int: "integer", list: "array", dict: "object"}


def _json_type(hint: Any) -> dict[str, Any]:
    """JSON schema of a record field's annotation: str | None → {"type": "string", "nullable": true}."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return {**(_json_type(rest[0]) if len(rest) == 1 else {}), "nullable": True}
    origin = typing.get_origin(hint) or hint
    if typing.is_typeddict(origin):
        return {"type": "object"}
    return {"type": _JSON_TYPES[origin]} if origin in _JSON_TYPES else {}


def _schema(kind: str) -> dict[str, Any]:
    stored = typing.get_type_hints(RECORD_TYPES[kind]) if kind in RECORD_TYPES else {}
    props = {}
    for name, attr in SPECS[kind].items():
        entry: dict[str, Any] = _json_type(stored[name]) if name in stored else {}
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
    for res in RESOURCES:
        collection, kind, singular, plural = res.collection, res.kind, res.singular, res.plural
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
        if res.updatable:
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
    xroutes = {"type": "object", "properties": {"router": {"type": "object", "properties": {
        "routes": {"type": "array", "items": {"type": "object", "properties": {
            "destination": {"type": "string"}, "nexthop": {"type": "string"}}}}}}}}
    for action in ("add_extraroutes", "remove_extraroutes"):  # extraroute-atomic
        paths[f"/v2.0/routers/{{id}}/{action}"] = {
            "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
            "put": {"summary": action.replace("_", " "), "requestBody": _json(xroutes),
                    "responses": {"200": {"description": "the router, with its routes"},
                                  "400": _ERROR, "404": _ERROR, "409": _ERROR}},
        }
    paths["/"] = {"get": {"summary": "API versions (Neutron version discovery)",
                          "responses": {"200": {"description": "OK"}}}}
    paths["/v2.0"] = {"get": {"summary": "Resources of API v2.0", "responses": {"200": {"description": "OK"}}}}
    paths["/v2.0/extensions"] = {"get": {"summary": "Supported extensions",
                                         "responses": {"200": {"description": "OK"}}}}
    paths["/v2.0/extensions/{alias}"] = {
        "parameters": [{"name": "alias", "in": "path", "required": True, "schema": {"type": "string"}}],
        "get": {"summary": "One extension", "responses": {"200": {"description": "OK"}, "404": _ERROR}}}
    paths["/openapi.json"] = {"get": {"summary": "This document", "responses": {"200": {"description": "OK"}}}}
    # Identity paths (--auth builtin): described by their owner, topology.api.identity.
    from topology.api.identity import openapi_identity
    identity_paths, identity_schemas = openapi_identity()
    paths.update(identity_paths)
    schemas.update(identity_schemas)
    # Tags, quotas, RBAC policies and the list controls: described by topology.api.extension_docs.
    from topology.api.extension_docs import add_list_parameters, extension_paths
    paths.update(extension_paths())
    from topology.api.qos_docs import qos_paths   # Neutron's QoS extension (topology.api.qos)
    paths.update(qos_paths())
    add_list_parameters(paths)
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
