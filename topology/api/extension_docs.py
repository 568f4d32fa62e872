"""OpenAPI paths of the routes in topology.api.subresources (tags, quotas, RBAC policies) and the
list controls every collection accepts; merged into /openapi.json by topology.api.openapi.

Why beside them and not in openapi.py: whoever changes those routes changes this description in
the same place; this module imports nothing of the app (openapi.py is imported by app.py).
"""
from __future__ import annotations

from typing import Any

from topology.model import tags, quotas

_ERROR = {"description": "Neutron error", "content": {"application/json": {"schema": {
    "$ref": "#/components/schemas/NeutronError"}}}}
_ERRS = {code: _ERROR for code in ("400", "401", "403", "404", "409")}
TAGGED_COLLECTIONS = ("networks", "subnets", "ports", "routers", "floatingips", "security-groups")


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def _path_param(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


LIST_PARAMETERS = [
    _query("limit", {"type": "integer", "minimum": 0}, "page size; the answer has <plural>_links next/previous"),
    _query("marker", {"type": "string"}, "id of the last object of the previous page"),
    _query("page_reverse", {"type": "boolean"}, "page backwards from the marker"),
    _query("sort_key", {"type": "string"}, "attribute to sort by (repeat with sort_dir)"),
    _query("sort_dir", {"type": "string", "enum": ["asc", "desc"]}, "one per sort_key"),
    *[_query(f, {"type": "string"}, "comma-separated tags") for f in tags.FILTERS],
]


def extension_paths() -> dict[str, Any]:
    tag_list = {"type": "object", "properties": {"tags": {"type": "array", "items": {"type": "string",
                                                                                    "maxLength": tags.MAX_TAG_LEN}}}}
    paths: dict[str, Any] = {}
    for collection in TAGGED_COLLECTIONS:
        paths[f"/v2.0/{collection}/{{id}}/tags"] = {
            "parameters": [_path_param("id")],
            "get": {"summary": "Tags of the resource", "responses": {"200": {"description": "OK", **_json(tag_list)},
                                                                      **_ERRS}},
            "put": {"summary": "Replace all tags", "requestBody": _json(tag_list),
                    "responses": {"200": {"description": "OK", **_json(tag_list)}, **_ERRS}},
            "post": {"summary": "Add tags", "requestBody": _json(tag_list),
                     "responses": {"201": {"description": "Added", **_json(tag_list)}, **_ERRS}},
            "delete": {"summary": "Remove all tags", "responses": {"204": {"description": "Removed"}, **_ERRS}},
        }
        paths[f"/v2.0/{collection}/{{id}}/tags/{{tag}}"] = {
            "parameters": [_path_param("id"), _path_param("tag")],
            "get": {"summary": "204 if the resource has the tag", "responses": {"204": {"description": "Has it"},
                                                                                 **_ERRS}},
            "put": {"summary": "Add one tag", "responses": {"201": {"description": "Added"}, **_ERRS}},
            "delete": {"summary": "Remove one tag", "responses": {"204": {"description": "Removed"}, **_ERRS}},
        }
    limits = {"type": "object", "properties": {name: {"type": "integer", "minimum": -1} for name in quotas.RESOURCES}}
    quota = {"type": "object", "properties": {"quota": limits}}
    paths["/v2.0/quotas"] = {"get": {"summary": "Projects whose quotas an admin changed (admin)",
                                     "responses": {"200": {"description": "OK"}, **_ERRS}}}
    paths["/v2.0/quotas/{project_id}"] = {
        "parameters": [_path_param("project_id")],
        "get": {"summary": "A project's limits (tenant/project: the caller's project id)",
                "responses": {"200": {"description": "OK", **_json(quota)}, **_ERRS}},
        "put": {"summary": "Set limits (admin; -1 unlimited; check_limit refuses limits below usage)",
                "requestBody": _json(quota), "responses": {"200": {"description": "OK", **_json(quota)}, **_ERRS}},
        "delete": {"summary": "Back to the defaults (admin)", "responses": {"204": {"description": "Reset"}, **_ERRS}},
    }
    for sub, summary in (("details", "limit, used and reserved per resource"), ("default", "the defaults")):
        paths[f"/v2.0/quotas/{{project_id}}/{sub}"] = {
            "parameters": [_path_param("project_id")],
            "get": {"summary": summary, "responses": {"200": {"description": "OK"}, **_ERRS}}}
    policy = {"type": "object", "properties": {
        "object_type": {"type": "string", "enum": ["network"]}, "object_id": {"type": "string"},
        "action": {"type": "string", "enum": ["access_as_shared", "access_as_external"]},
        "target_tenant": {"type": "string"}, "target_project": {"type": "string"},
        "project_id": {"type": "string"}, "tenant_id": {"type": "string"}, "id": {"type": "string", "readOnly": True}}}
    one = {"type": "object", "properties": {"rbac_policy": policy}}
    paths["/v2.0/rbac-policies"] = {
        "get": {"summary": "RBAC policies (own project's; all for admins)", "parameters": LIST_PARAMETERS,
                "responses": {"200": {"description": "OK"}, **_ERRS}},
        "post": {"summary": "Share a network with a project ('*': everybody, admin only)", "requestBody": _json(one),
                 "responses": {"201": {"description": "Created", **_json(one)}, **_ERRS}},
    }
    paths["/v2.0/rbac-policies/{id}"] = {
        "parameters": [_path_param("id")],
        "get": {"summary": "Show an RBAC policy", "responses": {"200": {"description": "OK", **_json(one)}, **_ERRS}},
        "put": {"summary": "Change the target project", "requestBody": _json(one),
                "responses": {"200": {"description": "OK", **_json(one)}, **_ERRS}},
        "delete": {"summary": "Delete (409 while the target still uses the network)",
                   "responses": {"204": {"description": "Deleted"}, **_ERRS}},
    }
    return paths


def add_list_parameters(paths: dict[str, Any]) -> None:
    """Paging, sorting and tag filters on every collection GET (beside any parameters it has)."""
    for path, item in paths.items():
        get = item.get("get") if isinstance(item, dict) else None
        if get and path.startswith("/v2.0/") and path.count("/") == 2 and path not in ("/v2.0/extensions",
                                                                                        "/v2.0/quotas"):
            names = {p.get("name") for p in get.get("parameters", [])}
            get["parameters"] = get.get("parameters", []) + [p for p in LIST_PARAMETERS if p["name"] not in names]
