"""The built-in Keystone v3 subset at /identity/v3 on the API port (`serve --auth builtin`).

Why its own falcon app: Keystone's clients expect Keystone's error body
`{"error": {"code", "title", "message"}}` and `WWW-Authenticate: Keystone uri=...` on every
identity path, including unknown paths and methods, while network paths keep NeutronError; two
apps behind one path dispatch (topology.api.auth) give each its own error handlers, and the
Neutron app stays untouched. The semantics (who may hold which token) live in
topology.model.identity; this module only speaks HTTP and JSON.
"""
from __future__ import annotations

import datetime
import http
import hashlib
import json
import logging
import sqlite3
from typing import Any, Callable
from urllib.parse import parse_qs

import falcon

from topology.model import identity as idm
from topology.model.identity import Identity, IdentityError, TokenInfo
from topology.store import Record

LOG = logging.getLogger(__name__)

ROOT = "/identity"
V3 = f"{ROOT}/v3"
V3_VERSION_ID = "v3.14"
REGION = "RegionOne"
MEDIA_TYPES = [{"base": "application/json", "type": "application/vnd.openstack.identity-v3+json"}]


def iso(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _send(resp: falcon.Response, body: Any, status: int = 200) -> None:
    resp.status = status
    resp.content_type = falcon.MEDIA_JSON
    resp.text = json.dumps(body)


def _body(req: falcon.Request, key: str) -> dict[str, Any]:
    raw = req.bounded_stream.read()
    try:
        doc = json.loads(raw) if raw else None
    except (ValueError, UnicodeDecodeError):
        raise idm.ValidationError("The request body is not valid JSON.") from None
    if not isinstance(doc, dict) or not isinstance(doc.get(key), dict):
        raise idm.ValidationError(f"Expecting to find {key} in the request body.")
    return doc[key]


def _query(req: falcon.Request) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(req.query_string, keep_blank_values=True).items()}


class Keystone:
    """Everything the routes share: the identity model, the server's base URL and auth checks."""

    def __init__(self, identity: Identity, public_endpoint: str | None = None) -> None:
        self.identity = identity
        self.public_endpoint = public_endpoint.rstrip("/") if public_endpoint else None

    def base(self, req: falcon.Request) -> str:
        """This server as clients reach it: the configured endpoint, else the request's host."""
        return self.public_endpoint or req.prefix

    def www_authenticate(self, req: falcon.Request) -> str:
        return f'Keystone uri="{self.base(req)}{ROOT}"'

    def caller(self, req: falcon.Request) -> TokenInfo:
        info = self.identity.validate(req.get_header("X-Auth-Token"))
        if info is None:
            raise idm.Unauthorized()
        return info

    def admin(self, req: falcon.Request, action: str) -> TokenInfo:
        info = self.caller(req)
        if not info.is_admin:
            raise idm.Forbidden(f"You are not authorized to perform the requested action: identity:{action}.")
        return info

    # ---- presentation --------------------------------------------------------------------
    def link(self, req: falcon.Request, path: str) -> dict[str, str]:
        return {"self": f"{self.base(req)}{V3}/{path}"}

    def project(self, req: falcon.Request, p: Record) -> dict[str, Any]:
        out = {k: p.get(k) for k in ("id", "name", "domain_id", "description", "enabled", "parent_id",
                                      "is_domain", "tags", "options")}
        out["links"] = self.link(req, f"projects/{p['id']}")
        return out

    def user(self, req: falcon.Request, u: Record) -> dict[str, Any]:
        out: dict[str, Any] = {k: u.get(k) for k in ("id", "name", "domain_id", "enabled", "options")}
        for k in ("default_project_id", "description", "email"):
            if u.get(k) is not None:
                out[k] = u[k]
        out["password_expires_at"] = None
        out["links"] = self.link(req, f"users/{u['id']}")
        return out

    def role(self, req: falcon.Request, r: Record) -> dict[str, Any]:
        out = {k: r.get(k) for k in ("id", "name", "domain_id", "description", "options")}
        out["links"] = self.link(req, f"roles/{r['id']}")
        return out

    def listing(self, req: falcon.Request, key: str, items: list[dict[str, Any]]) -> dict[str, Any]:
        url = f"{self.base(req)}{req.path}" + (f"?{req.query_string}" if req.query_string else "")
        return {key: items, "links": {"self": url, "previous": None, "next": None}}

    def catalog(self, req: falcon.Request) -> list[dict[str, Any]]:
        """Two services on this one server: network (the Neutron API) and identity (this)."""
        base = self.base(req)
        services = [("network", "neutron", base), ("identity", "keystone", f"{base}{V3}")]
        catalog = []
        for stype, name, url in services:
            endpoints = [{"id": hashlib.sha256(f"{stype}:{iface}:{url}".encode()).hexdigest()[:32],
                          "interface": iface, "region": REGION, "region_id": REGION, "url": url}
                         for iface in ("public", "internal", "admin")]
            catalog.append({"id": hashlib.sha256(stype.encode()).hexdigest()[:32], "type": stype, "name": name,
                            "endpoints": endpoints})
        return catalog

    def token(self, req: falcon.Request, info: TokenInfo, catalog: bool = True) -> dict[str, Any]:
        domain = {"id": "default", "name": "Default"}
        body: dict[str, Any] = {
            "methods": list(info.methods), "audit_ids": list(info.audit_ids),
            "issued_at": iso(info.issued_at), "expires_at": iso(info.expires_at),
            "user": {"id": info.user["id"], "name": info.user["name"], "domain": domain,
                     "password_expires_at": None},
        }
        if info.project is not None:
            body["project"] = {"id": info.project["id"], "name": info.project["name"], "domain": domain}
            body["is_domain"] = False
            body["roles"] = [{"id": r["id"], "name": r["name"]} for r in info.roles]
            if catalog:
                body["catalog"] = self.catalog(req)
        return {"token": body}


# ---- resources --------------------------------------------------------------------------------
class Versions:
    def __init__(self, ks: Keystone) -> None:
        self.ks = ks

    def _v3(self, req: falcon.Request) -> dict[str, Any]:
        return {"id": V3_VERSION_ID, "status": "stable", "updated": "2020-04-07T00:00:00Z",
                "links": [{"rel": "self", "href": f"{self.ks.base(req)}{V3}/"}], "media-types": MEDIA_TYPES}

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        _send(resp, {"versions": {"values": [self._v3(req)]}}, 300)

    def on_get_v3(self, req: falcon.Request, resp: falcon.Response) -> None:
        _send(resp, {"version": self._v3(req)})


class Tokens:
    """/v3/auth/tokens: issue (POST), validate (GET/HEAD), revoke (DELETE)."""

    def __init__(self, ks: Keystone) -> None:
        self.ks = ks

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        info = self.ks.identity.authenticate(_body(req, "auth"))
        resp.set_header("X-Subject-Token", info.token)
        _send(resp, self.ks.token(req, info, catalog="nocatalog" not in _query(req)), 201)

    def _subject(self, req: falcon.Request) -> TokenInfo:
        caller = self.ks.caller(req)
        subject = req.get_header("X-Subject-Token")
        if not subject:
            raise idm.ValidationError("X-Subject-Token is missing.")
        info = self.ks.identity.validate(subject)
        if info is None:
            raise idm.NotFound("Failed to validate token")
        if not caller.is_admin and caller.user["id"] != info.user["id"]:
            raise idm.Forbidden("You are not authorized to perform the requested action: identity:validate_token.")
        return info

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        info = self._subject(req)
        resp.set_header("X-Subject-Token", info.token)
        _send(resp, self.ks.token(req, info, catalog="nocatalog" not in _query(req)))

    def on_head(self, req: falcon.Request, resp: falcon.Response) -> None:
        info = self._subject(req)
        resp.set_header("X-Subject-Token", info.token)
        resp.status = 200

    def on_delete(self, req: falcon.Request, resp: falcon.Response) -> None:
        info = self._subject(req)
        self.ks.identity.revoke_token(info.token)
        resp.status = 204


class AuthProjects:
    """/v3/auth/projects and /v3/users/{id}/projects: the projects a token's user may scope to."""

    def __init__(self, ks: Keystone) -> None:
        self.ks = ks

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        info = self.ks.caller(req)
        projects = [self.ks.project(req, p) for p in self.ks.identity.user_projects(info.user["id"])]
        _send(resp, self.ks.listing(req, "projects", projects))

    def on_get_user(self, req: falcon.Request, resp: falcon.Response, rid: str) -> None:
        uid = rid
        info = self.ks.caller(req)
        if not info.is_admin and info.user["id"] != uid:
            raise idm.Forbidden("You are not authorized to perform the requested action: "
                                "identity:list_user_projects.")
        self.ks.identity.get_user(uid)
        projects = [self.ks.project(req, p) for p in self.ks.identity.user_projects(uid)]
        _send(resp, self.ks.listing(req, "projects", projects))


class AuthCatalog:
    def __init__(self, ks: Keystone) -> None:
        self.ks = ks

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.ks.caller(req)
        _send(resp, {"catalog": self.ks.catalog(req), "links": self.ks.link(req, "auth/catalog")})


class Collection:
    """/v3/{projects,users,roles}[/{id}]: list/create, show/update/delete, admin only (a user
    may read their own user record and the project of their token)."""

    def __init__(self, ks: Keystone, singular: str, plural: str,
                 present: Callable[[falcon.Request, Record], dict[str, Any]],
                 ops: dict[str, Callable[..., Any]]) -> None:
        self.ks, self.singular, self.plural, self.present, self.ops = ks, singular, plural, present, ops

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.ks.admin(req, f"list_{self.plural}")
        items = [self.present(req, r) for r in self.ops["list"](_query(req))]
        _send(resp, self.ks.listing(req, self.plural, items))

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.ks.admin(req, f"create_{self.singular}")
        rec = self.ops["create"](_body(req, self.singular))
        _send(resp, {self.singular: self.present(req, rec)}, 201)

    def on_get_one(self, req: falcon.Request, resp: falcon.Response, rid: str) -> None:
        info = self.ks.caller(req)
        own = ((self.singular == "user" and info.user["id"] == rid)
               or (self.singular == "project" and info.project is not None and info.project["id"] == rid))
        if not own and not info.is_admin:
            raise idm.Forbidden("You are not authorized to perform the requested action: "
                                f"identity:get_{self.singular}.")
        _send(resp, {self.singular: self.present(req, self.ops["get"](rid))})

    def on_patch_one(self, req: falcon.Request, resp: falcon.Response, rid: str) -> None:
        if "update" not in self.ops:
            raise falcon.HTTPMethodNotAllowed(["GET", "DELETE"])
        self.ks.admin(req, f"update_{self.singular}")
        _send(resp, {self.singular: self.present(req, self.ops["update"](rid, _body(req, self.singular)))})

    def on_delete_one(self, req: falcon.Request, resp: falcon.Response, rid: str) -> None:
        self.ks.admin(req, f"delete_{self.singular}")
        self.ops["delete"](rid)
        resp.status = 204


class Domains:
    """Read-only: the Default domain is the only one."""

    def __init__(self, ks: Keystone) -> None:
        self.ks = ks

    def _present(self, req: falcon.Request) -> dict[str, Any]:
        return dict(idm.DEFAULT_DOMAIN, tags=[], options={}, links=self.ks.link(req, "domains/default"))

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.ks.caller(req)
        name = _query(req).get("name")
        items = [self._present(req)] if name in (None, "Default") else []
        _send(resp, self.ks.listing(req, "domains", items))

    def on_get_one(self, req: falcon.Request, resp: falcon.Response, rid: str) -> None:
        self.ks.caller(req)
        if rid != "default":
            raise idm.NotFound(f"Could not find domain: {rid}.")
        _send(resp, {"domain": self._present(req)})


class Grants:
    """/v3/projects/{p}/users/{u}/roles[/{r}]: list, grant (PUT), check (HEAD/GET), revoke (DELETE)."""

    def __init__(self, ks: Keystone) -> None:
        self.ks = ks

    def on_get(self, req: falcon.Request, resp: falcon.Response, rid: str, uid: str) -> None:
        pid = rid
        info = self.ks.caller(req)
        if not info.is_admin and info.user["id"] != uid:
            raise idm.Forbidden("You are not authorized to perform the requested action: identity:list_grants.")
        roles = [self.ks.role(req, r) for r in self.ks.identity.project_user_roles(pid, uid)]
        _send(resp, self.ks.listing(req, "roles", roles))

    def on_put_one(self, req: falcon.Request, resp: falcon.Response, rid: str, uid: str, role: str) -> None:
        pid, rid = rid, role
        self.ks.admin(req, "create_grant")
        self.ks.identity.grant(pid, uid, rid)
        resp.status = 204

    def on_head_one(self, req: falcon.Request, resp: falcon.Response, rid: str, uid: str, role: str) -> None:
        pid, rid = rid, role
        self.ks.admin(req, "check_grant")
        self.ks.identity.check_grant(pid, uid, rid)
        resp.status = 204

    on_get_one = on_head_one

    def on_delete_one(self, req: falcon.Request, resp: falcon.Response, rid: str, uid: str, role: str) -> None:
        pid, rid = rid, role
        self.ks.admin(req, "revoke_grant")
        self.ks.identity.revoke(pid, uid, rid)
        resp.status = 204


class RoleAssignments:
    """/v3/role_assignments?user.id=&scope.project.id=&role.id=&effective&include_names."""

    def __init__(self, ks: Keystone) -> None:
        self.ks = ks

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        q = _query(req)
        info = self.ks.caller(req)
        if not info.is_admin and q.get("user.id") != info.user["id"]:
            raise idm.Forbidden("You are not authorized to perform the requested action: "
                                "identity:list_role_assignments.")
        unsupported = [k for k in q if k.startswith(("group.", "scope.domain", "scope.system", "scope.OS-"))]
        if unsupported:
            items: list[dict[str, Any]] = []   # no groups, domains or system scope exist here
        else:
            found = self.ks.identity.assignments(user_id=q.get("user.id"), project_id=q.get("scope.project.id"),
                                                 role_id=q.get("role.id"), effective="effective" in q)
            items = [self._present(req, a, "include_names" in q) for a in found]
        _send(resp, self.ks.listing(req, "role_assignments", items))

    def _present(self, req: falcon.Request, a: dict[str, str], names: bool) -> dict[str, Any]:
        user: dict[str, Any] = {"id": a["user_id"]}
        project: dict[str, Any] = {"id": a["project_id"]}
        role: dict[str, Any] = {"id": a["role_id"]}
        if names:
            domain = {"id": "default", "name": "Default"}
            for ref, kind in ((user, "user"), (project, "project"), (role, "role")):
                rec = self.ks.identity.store.get(kind, ref["id"])
                ref["name"] = rec["name"] if rec else None
            user["domain"] = project["domain"] = domain
        url = f"{self.ks.base(req)}{V3}/projects/{a['project_id']}/users/{a['user_id']}/roles/{a['role_id']}"
        return {"role": role, "user": user, "scope": {"project": project}, "links": {"assignment": url}}


# ---- errors -----------------------------------------------------------------------------------
def _error_handlers(ks: Keystone) -> list[tuple[type[Exception], Callable[..., None]]]:
    def send_error(req: falcon.Request, resp: falcon.Response, status: int, title: str, message: str) -> None:
        if status == 401:
            resp.set_header("WWW-Authenticate", ks.www_authenticate(req))
        _send(resp, {"error": {"code": status, "title": title, "message": message}}, status)

    def identity_error(req: falcon.Request, resp: falcon.Response, ex: IdentityError, params: dict) -> None:
        send_error(req, resp, ex.status, ex.title, ex.message)

    def http_error(req: falcon.Request, resp: falcon.Response, ex: falcon.HTTPError, params: dict) -> None:
        for name, value in dict(ex.headers or {}).items():
            resp.set_header(name, value)
        message = {404: "The resource could not be found.",
                   405: f"The method {req.method} is not allowed for the requested URL."}.get(
                       ex.status_code, ex.description or ex.title or "Error")
        send_error(req, resp, ex.status_code, http.HTTPStatus(ex.status_code).phrase, message)

    def unavailable(req: falcon.Request, resp: falcon.Response, ex: Exception, params: dict) -> None:
        LOG.error("%s %s: store unavailable: %s: %s", req.method, req.path, type(ex).__name__, ex)
        resp.set_header("Retry-After", "1")
        send_error(req, resp, 503, "Service Unavailable", "The identity store is temporarily unavailable.")

    def unexpected(req: falcon.Request, resp: falcon.Response, ex: Exception, params: dict) -> None:
        LOG.exception("%s %s raised an unexpected error", req.method, req.path)
        send_error(req, resp, 500, "Internal Server Error",
                   "An unexpected error prevented the server from fulfilling your request.")

    return [(Exception, unexpected), (ConnectionError, unavailable), (sqlite3.OperationalError, unavailable),
            (falcon.HTTPError, http_error), (IdentityError, identity_error)]


def create_identity_app(identity: Identity, public_endpoint: str | None = None) -> falcon.App:
    """The WSGI app answering every path under /identity."""
    ks = Keystone(identity, public_endpoint)
    app = falcon.App()
    app.req_options.strip_url_path_trailing_slash = True
    app.req_options.auto_parse_qs_csv = False
    for exc, handler in _error_handlers(ks):
        app.add_error_handler(exc, handler)
    i = identity
    Ops = dict[str, Callable[..., Any]]
    versions = Versions(ks)
    app.add_route(ROOT, versions)
    app.add_route(V3, versions, suffix="v3")
    app.add_route(f"{V3}/auth/tokens", Tokens(ks))
    auth_projects = AuthProjects(ks)
    app.add_route(f"{V3}/auth/projects", auth_projects)
    app.add_route(f"{V3}/users/{{rid}}/projects", auth_projects, suffix="user")
    app.add_route(f"{V3}/auth/catalog", AuthCatalog(ks))
    tables: tuple[tuple[str, str, Callable[[falcon.Request, Record], dict[str, Any]], Ops], ...] = (
            ("project", "projects", ks.project, {"list": i.list_projects, "create": i.create_project,
                                                 "get": i.get_project, "update": i.update_project,
                                                 "delete": i.delete_project}),
            ("user", "users", ks.user, {"list": i.list_users, "create": i.create_user, "get": i.get_user,
                                        "update": i.update_user, "delete": i.delete_user}),
            ("role", "roles", ks.role, {"list": i.list_roles, "create": i.create_role, "get": i.get_role,
                                        "delete": i.delete_role}))
    for singular, plural, present, ops in tables:
        res = Collection(ks, singular, plural, present, ops)
        app.add_route(f"{V3}/{plural}", res)
        app.add_route(f"{V3}/{plural}/{{rid}}", res, suffix="one")
    domains = Domains(ks)
    app.add_route(f"{V3}/domains", domains)
    app.add_route(f"{V3}/domains/{{rid}}", domains, suffix="one")
    grants = Grants(ks)
    app.add_route(f"{V3}/projects/{{rid}}/users/{{uid}}/roles", grants)
    app.add_route(f"{V3}/projects/{{rid}}/users/{{uid}}/roles/{{role}}", grants, suffix="one")
    app.add_route(f"{V3}/role_assignments", RoleAssignments(ks))
    return app


def is_identity_path(path: str) -> bool:
    return path == ROOT or path.startswith(ROOT + "/")


# ---- OpenAPI (merged into /openapi.json by topology.api.openapi) ------------------------------------
def openapi_identity() -> tuple[dict[str, Any], dict[str, Any]]:
    """(paths, schemas) of the identity API, answered only with `--auth builtin` (404 otherwise)."""
    err = {"description": "Keystone error", "content": {"application/json": {"schema": {
        "$ref": "#/components/schemas/KeystoneError"}}}}
    schemas = {"KeystoneError": {"type": "object", "properties": {"error": {"type": "object", "properties": {
        "code": {"type": "integer"}, "title": {"type": "string"}, "message": {"type": "string"}}}}}}
    obj = {"content": {"application/json": {"schema": {"type": "object"}}}}

    def op(summary: str, ok: str = "200", body: bool = False, errors: tuple[str, ...] = ("401", "403", "404")
           ) -> dict[str, Any]:
        out: dict[str, Any] = {"summary": f"{summary} (--auth builtin only)",
                               "responses": {ok: {"description": "OK", **(obj if ok in ("200", "201") else {})},
                                             **{e: err for e in (*errors, "404")}}}  # 404: not builtin
        if body:
            out["requestBody"] = obj
            out["responses"]["400"] = err
        return out

    def pid(*names: str) -> list[dict[str, Any]]:
        return [{"name": n, "in": "path", "required": True, "schema": {"type": "string"}} for n in names]

    subject = [{"name": "X-Subject-Token", "in": "header", "required": True, "schema": {"type": "string"}}]
    paths: dict[str, Any] = {
        ROOT: {"get": op("Identity API versions", "300", errors=())},
        V3: {"get": op("Identity v3 version document", errors=())},
        f"{V3}/auth/tokens": {
            "post": op("Issue a token (password or token method, project scope); token in X-Subject-Token",
                       "201", body=True, errors=("401",)),
            "get": {**op("Validate the token in X-Subject-Token"), "parameters": subject},
            "head": {**op("Check the token in X-Subject-Token"), "parameters": subject},
            "delete": {**op("Revoke the token in X-Subject-Token", "204"), "parameters": subject}},
        f"{V3}/auth/projects": {"get": op("Projects the token's user can scope to")},
        f"{V3}/auth/catalog": {"get": op("The service catalog")},
        f"{V3}/domains": {"get": op("Domains (only Default)")},
        f"{V3}/domains/{{id}}": {"parameters": pid("id"), "get": op("Show a domain")},
        f"{V3}/role_assignments": {"get": op("Role assignments (user.id, scope.project.id, role.id, effective, "
                                             "include_names)")},
        f"{V3}/users/{{id}}/projects": {"parameters": pid("id"), "get": op("Projects of a user")},
        f"{V3}/projects/{{id}}/users/{{user_id}}/roles": {"parameters": pid("id", "user_id"),
                                                          "get": op("Roles of a user on a project")},
        f"{V3}/projects/{{id}}/users/{{user_id}}/roles/{{role_id}}": {
            "parameters": pid("id", "user_id", "role_id"),
            "put": op("Grant a role", "204"), "head": op("Check a grant", "204"),
            "get": op("Check a grant", "204"), "delete": op("Revoke a grant", "204")},
    }
    for singular, plural, updatable in (("project", "projects", True), ("user", "users", True),
                                        ("role", "roles", False)):
        paths[f"{V3}/{plural}"] = {"get": op(f"List {plural} (name, enabled, domain_id)"),
                                   "post": op(f"Create a {singular}", "201", body=True,
                                              errors=("401", "403", "409"))}
        one: dict[str, Any] = {"parameters": pid("id"), "get": op(f"Show a {singular}"),
                               "delete": op(f"Delete a {singular}", "204")}
        if updatable:
            one["patch"] = op(f"Update a {singular}", body=True, errors=("401", "403", "404", "409"))
        paths[f"{V3}/{plural}/{{id}}"] = one
    return paths, schemas
