"""HTTP routes of the Neutron extensions beyond CRUD: /tags sub-resources, /v2.0/quotas,
/v2.0/rbac-policies, and the paged, sorted, tag-filtered listing every collection uses.

Why a module of its own: app.py stays the table of core routes; these resources only translate
HTTP to topology.model.extensions calls (which hold the rules) and back.
"""
from __future__ import annotations

from typing import Any

import falcon

from topology.api import paging
from topology.model import errors, tags
from topology.model.context import Context
from topology.model.extensions import Extensions
from topology.model.schema import BY_COLLECTION
from topology.model.service import Service
from topology.model.validate import SPECS
from topology.api.app import context_of, query, read_json, send

RBAC_COLLECTION = "rbac-policies"


def list_collection(service: Service, req: falcon.Request, resp: falcon.Response, kind: str, plural: str) -> None:
    """GET /v2.0/<collection>: attribute filters (the Service's), then tags, sort, page, fields."""
    params = query(req)
    controls = paging.parse(params)
    filters = {k: v for k, v in params.items() if k not in paging.CONTROL}
    items = service.list(kind, context_of(req), filters=filters)
    shown = paging.apply(items, controls, set(SPECS.get(kind, {})) | {"id"})
    body: dict[str, Any] = {plural: paging.select(shown, controls.fields)}
    page_links = paging.links(f"{req.prefix}{req.path}", params, shown, controls)
    if page_links:
        body[f"{plural}_links"] = page_links
    send(resp, body)


def _tagged_kind(collection: str) -> str:
    res = BY_COLLECTION.get(collection)
    if res is None or res.kind not in tags.TAGGED_KINDS:
        raise errors.HTTPNotFound(message=f"The resource could not be found: /v2.0/{collection}")
    return res.kind


class TagsResource:
    """/v2.0/{collection}/{rid}/tags (GET, PUT replace, POST add, DELETE all) and
    /v2.0/{collection}/{rid}/tags/{tag} (GET 204/404, PUT add 201, DELETE 204)."""

    def __init__(self, ext: Extensions) -> None:
        self.ext = ext

    def on_get(self, req: falcon.Request, resp: falcon.Response, collection: str, rid: str) -> None:
        send(resp, {"tags": self.ext.get_tags(_tagged_kind(collection), rid, context_of(req))})

    def on_put(self, req: falcon.Request, resp: falcon.Response, collection: str, rid: str) -> None:
        kind = _tagged_kind(collection)
        new = tags.check_body(read_json(req))
        send(resp, {"tags": self.ext.change_tags(kind, rid, "update", new, ctx=context_of(req))})

    def on_post(self, req: falcon.Request, resp: falcon.Response, collection: str, rid: str) -> None:
        kind = _tagged_kind(collection)
        new = tags.check_body(read_json(req))
        send(resp, {"tags": self.ext.change_tags(kind, rid, "create", new, ctx=context_of(req))}, 201)

    def on_delete(self, req: falcon.Request, resp: falcon.Response, collection: str, rid: str) -> None:
        self.ext.change_tags(_tagged_kind(collection), rid, "delete", ctx=context_of(req))
        resp.status = 204

    def on_get_one(self, req: falcon.Request, resp: falcon.Response, collection: str, rid: str, tag: str) -> None:
        self.ext.has_tag(_tagged_kind(collection), rid, tags.check_tag(tag), context_of(req))
        resp.status = 204

    def on_put_one(self, req: falcon.Request, resp: falcon.Response, collection: str, rid: str, tag: str) -> None:
        kind = _tagged_kind(collection)
        self.ext.change_tags(kind, rid, "create", [tags.check_tag(tag)], ctx=context_of(req))
        resp.status = 201

    def on_delete_one(self, req: falcon.Request, resp: falcon.Response, collection: str, rid: str,
                      tag: str) -> None:
        self.ext.change_tags(_tagged_kind(collection), rid, "delete", remove=tags.check_tag(tag),
                             ctx=context_of(req))
        resp.status = 204


class QuotasResource:
    """/v2.0/quotas (GET: projects with changed quotas), /v2.0/quotas/{project} GET/PUT/DELETE,
    /v2.0/quotas/{project}/details and /default, /v2.0/quotas/tenant (the caller's project)."""

    def __init__(self, ext: Extensions) -> None:
        self.ext = ext

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        send(resp, {"quotas": self.ext.quota_list(context_of(req))})

    def on_get_one(self, req: falcon.Request, resp: falcon.Response, project: str) -> None:
        ctx: Context = context_of(req)
        if project in ("tenant", "project"):
            key = "tenant_id" if project == "tenant" else "project_id"
            send(resp, {project: {key: ctx.project_id}})
            return
        send(resp, {"quota": self.ext.quota_show(project, ctx)})

    def on_put_one(self, req: falcon.Request, resp: falcon.Response, project: str) -> None:
        send(resp, {"quota": self.ext.quota_update(project, read_json(req), context_of(req))})

    def on_delete_one(self, req: falcon.Request, resp: falcon.Response, project: str) -> None:
        self.ext.quota_reset(project, context_of(req))
        resp.status = 204

    def on_get_sub(self, req: falcon.Request, resp: falcon.Response, project: str, what: str) -> None:
        ctx = context_of(req)
        if what == "details":
            send(resp, {"quota": self.ext.quota_details(project, ctx)})
        elif what == "default":
            self.ext.quota_show(project, ctx)   # same policy as show
            send(resp, {"quota": dict(self.ext.service.quota_defaults)})
        else:
            raise errors.HTTPNotFound(message=f"The resource could not be found: {req.path}")


class RbacResource:
    """/v2.0/rbac-policies and /v2.0/rbac-policies/{rid} (network sharing per project)."""

    def __init__(self, ext: Extensions) -> None:
        self.ext = ext

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        params = query(req)
        controls = paging.parse(params)
        from topology.model.service import matches
        filters = {k: v for k, v in params.items() if k not in paging.CONTROL}
        items = [r for r in self.ext.rbac_list(context_of(req)) if matches(r, filters)]
        shown = paging.apply(items, controls, {"id", "object_type", "object_id", "action", "target_tenant",
                                               "target_project", "project_id", "tenant_id"})
        body: dict[str, Any] = {"rbac_policies": paging.select(shown, controls.fields)}
        page_links = paging.links(f"{req.prefix}{req.path}", params, shown, controls)
        if page_links:
            body["rbac_policies_links"] = page_links
        send(resp, body)

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = read_json(req)
        if not isinstance(body, dict) or set(body) != {"rbac_policy"}:
            raise errors.BadRequest('Resource body required: expected {"rbac_policy": {...}}.')
        send(resp, {"rbac_policy": self.ext.rbac_create(body["rbac_policy"], context_of(req))}, 201)

    def on_get_one(self, req: falcon.Request, resp: falcon.Response, rid: str) -> None:
        fields = query(req).get("fields")
        send(resp, {"rbac_policy": paging.select([self.ext.rbac_get(rid, context_of(req))], fields)[0]})

    def on_put_one(self, req: falcon.Request, resp: falcon.Response, rid: str) -> None:
        body = read_json(req)
        if not isinstance(body, dict) or set(body) != {"rbac_policy"}:
            raise errors.BadRequest('Resource body required: expected {"rbac_policy": {...}}.')
        send(resp, {"rbac_policy": self.ext.rbac_update(rid, body["rbac_policy"], context_of(req))})

    def on_delete_one(self, req: falcon.Request, resp: falcon.Response, rid: str) -> None:
        self.ext.rbac_delete(rid, context_of(req))
        resp.status = 204


def add_routes(app: falcon.App, service: Service) -> None:
    """Mount the extension routes (literal segments win over app.py's {collection} templates)."""
    ext = Extensions(service)
    tag_res = TagsResource(ext)
    app.add_route("/v2.0/{collection}/{rid}/tags", tag_res)
    app.add_route("/v2.0/{collection}/{rid}/tags/{tag}", tag_res, suffix="one")
    quotas = QuotasResource(ext)
    app.add_route("/v2.0/quotas", quotas)
    app.add_route("/v2.0/quotas/{project}", quotas, suffix="one")
    app.add_route("/v2.0/quotas/{project}/{what}", quotas, suffix="sub")
    rbac_res = RbacResource(ext)
    app.add_route(f"/v2.0/{RBAC_COLLECTION}", rbac_res)
    app.add_route(f"/v2.0/{RBAC_COLLECTION}/{{rid}}", rbac_res, suffix="one")
    from topology.api import instances   # /v2.0/tenantflow/instances, the metadata agent's lookup
    instances.add_routes(app, service)
