"""Neutron-compatible REST API (falcon WSGI app) and a threaded waitress server for it.

Why falcon + waitress: both maintained, pure Python, thread-based (no event loop to fight with
os-ken's hub). Every error — ours, falcon's 404/405, malformed JSON, unexpected exceptions — leaves
as Neutron's body `{"NeutronError": {"type", "message", "detail"}}` so the openstack client shows it.
"""
from __future__ import annotations

import json
import logging
import threading
import sqlite3
import time
from typing import Any, Iterable
from urllib.parse import parse_qs

import falcon
import waitress.server

from topology.api.auth import Auth, NoAuth
from topology.model import errors
from topology.model.context import Context
from topology.api.openapi import openapi_document
from topology.model.schema import BY_COLLECTION, RESOURCES, Resource
from topology.model.service import Service

LOG = logging.getLogger(__name__)

LIST_CONTROL_PARAMS = {"fields", "limit", "marker", "page_reverse", "sort_key", "sort_dir", "verbose"}

EXTENSIONS = [
    ("security-group", "security-group", "The security groups extension."),
    ("router", "Neutron L3 Router", "Router abstraction for basic L3 forwarding between L2 networks and "
                                    "gateway towards external networks."),
    ("external-net", "Neutron external network", "Adds external network attribute to network resource."),
    ("provider", "Provider Network", "Expose mapping of virtual networks to physical networks"),
    ("binding", "Port Binding", "Expose port bindings of a virtual port to external application"),
    ("allowed-address-pairs", "Allowed Address Pairs", "Provides allowed address pairs"),
    ("port-security", "Port Security", "Provides port security"),
    ("extraroute", "Neutron Extra Route", "Extra routes configuration for L3 router"),
    ("extraroute-atomic", "Atomically add/remove extra routes",
     "Edit extra routes of a router on server side by atomically adding/removing extra routes"),
    ("ext-gw-mode", "Neutron L3 Configurable external gateway mode",
     "Extension of the router abstraction for specifying whether SNAT should occur on the external gateway"),
    ("net-mtu", "Network MTU", "Provides MTU attribute for a network resource."),
    ("standard-attr-description", "standard-attr-description", "Extension to add descriptions to standard "
                                                                "attributes"),
    ("standard-attr-timestamp", "Resource timestamps", "Adds created_at and updated_at fields to all Neutron "
                                                        "resources that have Neutron standard attributes."),
    ("standard-attr-revisions", "Resource revision numbers", "This extension will display the revision number "
                                                              "of neutron resources."),
    ("project-id", "project_id field enabled", "Extension that indicates that project_id field is enabled."),
    ("stateful-security-group", "Stateful security group", "Indicates if the security group is stateful or not"),
    ("qos", "Quality of Service", "The Quality of Service extension."),
    ("qos-bw-limit-direction", "Direction for QoS bandwidth limit rule",
     "Allow to configure QoS bandwidth limit rule with specific direction: ingress or egress"),
    ("qos-default", "QoS default policy", "Expose the QoS default policy per project"),
    ("qos-rule-type-details", "QoS rule type details", "Expose details about QoS rule types supported by "
                                                        "loaded backend drivers"),
    ("tenantflow-chassis", "Chassis", "Switches programmed by tenantflow (name, datapath id, tunnel IP, "
                                      "bridge mappings)."),
]


def _extension(alias: str, name: str, description: str) -> dict[str, Any]:
    return {"alias": alias, "name": name, "description": description,
            "updated": "2024-01-01T00:00:00-00:00", "links": []}


# ---- helpers --------------------------------------------------------------------------------
def read_json(req: falcon.Request) -> Any:
    raw = req.bounded_stream.read()
    if not raw:
        raise errors.MalformedRequestBody(reason="the request body is empty")
    try:
        body = json.loads(raw)
        # JSON may escape a lone surrogate ("\ud800"): valid JSON, but no text; refuse it here
        # rather than fail (500) where the record is encoded for the store.
        json.dumps(body, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise errors.MalformedRequestBody(reason="invalid text: a string holds a lone surrogate") from None
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise errors.MalformedRequestBody(reason=str(exc)) from None
    return body


def send(resp: falcon.Response, body: Any, status: int = 200) -> None:
    resp.status = status
    resp.content_type = falcon.MEDIA_JSON
    resp.text = json.dumps(body)


def query(req: falcon.Request) -> dict[str, list[str]]:
    return parse_qs(req.query_string, keep_blank_values=True)


def context_of(req: falcon.Request) -> Context:
    return req.context.ctx


# ---- middleware -----------------------------------------------------------------------------
class RequestMiddleware:
    """Strips `.json` (old clients), authenticates, builds the request context, logs one line."""

    def __init__(self, auth: Auth) -> None:
        self.auth = auth

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.started = time.monotonic()
        if req.path.endswith(".json") and req.path != "/openapi.json":
            req.path = req.path[:-5]
        req.context.ctx = self.auth.authenticate(req, resp)   # topology.api.auth: the auth mode decides

    def process_response(self, req: falcon.Request, resp: falcon.Response, resource: Any,
                         req_succeeded: bool) -> None:
        started = getattr(req.context, "started", None)
        elapsed = (time.monotonic() - started) * 1000 if started else 0.0
        LOG.debug("%s %s%s -> %s (%.1f ms)", req.method, req.path,
                  f"?{req.query_string}" if req.query_string else "", resp.status, elapsed)


# ---- error handlers ---------------------------------------------------------------------------
def _neutron_error(req: falcon.Request, resp: falcon.Response, ex: errors.NeutronError, params: dict) -> None:
    if ex.status >= 500:
        LOG.error("%s %s failed: %s", req.method, req.path, ex)
    send(resp, ex.body(), ex.status)


def _http_error(req: falcon.Request, resp: falcon.Response, ex: falcon.HTTPError, params: dict) -> None:
    status = ex.status_code
    kind = {404: "HTTPNotFound", 405: "HTTPMethodNotAllowed", 400: "HTTPBadRequest",
            415: "HTTPUnsupportedMediaType"}.get(status, "HTTPError")
    message = ex.title or "Error"
    if status == 404:
        message = f"The resource could not be found: {req.path}"
    if status == 405:
        message = f"Method {req.method} is not allowed on {req.path}."
    body = {"NeutronError": {"type": kind, "message": message, "detail": ex.description or ""}}
    for name, value in dict(ex.headers or {}).items():
        resp.set_header(name, value)
    send(resp, body, status)


def _store_unavailable(req: falcon.Request, resp: falcon.Response, ex: Exception, params: dict) -> None:
    """etcd unreachable (ConnectionError) or SQLite unable to write (sqlite3.OperationalError:
    disk full, I/O error, locked): the request changed nothing, the client may retry."""
    LOG.error("%s %s: topology store unavailable: %s: %s", req.method, req.path, type(ex).__name__, ex)
    err = errors.ServiceUnavailable(detail=type(ex).__name__)
    resp.set_header("Retry-After", "1")
    send(resp, err.body(), err.status)


def _unexpected(req: falcon.Request, resp: falcon.Response, ex: Exception, params: dict) -> None:
    LOG.exception("%s %s raised an unexpected error", req.method, req.path)
    send(resp, {"NeutronError": {"type": "HTTPInternalServerError", "message": "Request failed: internal "
                                 "server error while processing your request.", "detail": type(ex).__name__}},
         500)


# ---- resources ------------------------------------------------------------------------------
class VersionsResource:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        href = f"{req.prefix}/v2.0/"
        send(resp, {"versions": [{"id": "v2.0", "status": "CURRENT", "links": [{"rel": "self", "href": href}]}]})


class V2Resource:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resources = [{"name": r.singular, "collection": r.collection,
                      "links": [{"rel": "self", "href": f"{req.prefix}/v2.0/{r.collection}"}]}
                     for r in RESOURCES]
        send(resp, {"resources": resources})


class ExtensionsResource:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        send(resp, {"extensions": [_extension(*e) for e in EXTENSIONS]})

    def on_get_one(self, req: falcon.Request, resp: falcon.Response, alias: str) -> None:
        for ext in EXTENSIONS:
            if ext[0] == alias:
                send(resp, {"extension": _extension(*ext)})
                return
        raise errors.ExtensionNotFound(id=alias)


class OpenAPIResource:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        send(resp, openapi_document(req.prefix))


class CollectionResource:
    """/v2.0/{collection} and /v2.0/{collection}/{rid} for every Neutron collection and chassis."""

    def __init__(self, service: Service) -> None:
        self.service = service

    @staticmethod
    def _kind(collection: str) -> tuple[str, str, str]:
        """(store kind, singular body key, plural body key) of a URL collection, or 404."""
        try:
            r: Resource = BY_COLLECTION[collection]
        except KeyError:
            raise errors.HTTPNotFound(message=f"The resource could not be found: /v2.0/{collection}") from None
        return r.kind, r.singular, r.plural

    def on_get(self, req: falcon.Request, resp: falcon.Response, collection: str) -> None:
        kind, _, plural = self._kind(collection)
        from topology.api.subresources import list_collection   # paging, sorting, tags (imports this module)
        list_collection(self.service, req, resp, kind, plural)

    def on_post(self, req: falcon.Request, resp: falcon.Response, collection: str) -> None:
        kind, singular, plural = self._kind(collection)
        body = read_json(req)
        if not isinstance(body, dict) or len(body) != 1 or (singular not in body and plural not in body):
            raise errors.BadRequest(f"Resource body required: expected {{\"{singular}\": {{...}}}} or "
                                    f"{{\"{plural}\": [...]}}.")
        value = body.get(singular) if singular in body else body[plural]
        if isinstance(value, list):
            if not value:
                raise errors.BadRequest(f"Resources required: '{plural}' is an empty list.")
            created = self.service.create_bulk(kind, value, context_of(req))
            send(resp, {plural: created}, 201)
        else:
            send(resp, {singular: self.service.create(kind, value, context_of(req))}, 201)

    def on_get_one(self, req: falcon.Request, resp: falcon.Response, collection: str, rid: str) -> None:
        kind, singular, _ = self._kind(collection)
        fields = query(req).get("fields")
        send(resp, {singular: self.service.get(kind, rid, context_of(req), fields=fields)})

    def on_put_one(self, req: falcon.Request, resp: falcon.Response, collection: str, rid: str) -> None:
        kind, singular, _ = self._kind(collection)
        body = read_json(req)
        if not isinstance(body, dict) or singular not in body:
            raise errors.BadRequest(f"Resource body required: expected {{\"{singular}\": {{...}}}}.")
        send(resp, {singular: self.service.update(kind, rid, body[singular], context_of(req))})

    def on_delete_one(self, req: falcon.Request, resp: falcon.Response, collection: str, rid: str) -> None:
        kind, _, _ = self._kind(collection)
        self.service.delete(kind, rid, context_of(req))
        resp.status = 204


class ActionResource:
    """/v2.0/routers/{rid}/add_router_interface and remove_router_interface (PUT)."""

    def __init__(self, service: Service) -> None:
        self.service = service

    def on_get(self, req: falcon.Request, resp: falcon.Response, collection: str, rid: str, action: str) -> None:
        """Only PUT exists below a resource: any other method is an unknown path (404, not 405)."""
        raise errors.HTTPNotFound(message=f"The resource could not be found: {req.path}")

    on_post = on_delete = on_patch = on_get

    def on_put(self, req: falcon.Request, resp: falcon.Response, collection: str, rid: str, action: str) -> None:
        if collection != "routers" or action not in ("add_router_interface", "remove_router_interface",
                                                     "add_extraroutes", "remove_extraroutes"):
            raise errors.HTTPNotFound(message=f"The resource could not be found: {req.path}")
        body = read_json(req)
        if action in ("add_extraroutes", "remove_extraroutes"):
            send(resp, self.service.router_extraroutes(rid, action, body, context_of(req)))
            return
        if action == "add_router_interface":
            send(resp, self.service.add_router_interface(rid, body, context_of(req)))
        else:
            send(resp, self.service.remove_router_interface(rid, body, context_of(req)))


def create_app(service: Service, *, api_token: str | None = None, auth: Auth | None = None,
               extra_routes: Iterable[tuple[str, Any]] | None = None) -> falcon.App:
    """The WSGI app. `extra_routes` = [(uri_template, falcon resource)] mounted beside ours.
    `auth` (topology.api.auth) turns requests into contexts; default noauth (+ `api_token`).
    Serve it as `auth.wsgi(app)`, which adds what the mode needs in front (identity, auth_token)."""
    if auth is None:
        auth = NoAuth(service.settings.default_project_id, api_token)
    app = falcon.App(middleware=[RequestMiddleware(auth)])
    app.req_options.strip_url_path_trailing_slash = True
    app.req_options.auto_parse_qs_csv = False
    app.add_error_handler(Exception, _unexpected)
    app.add_error_handler(ConnectionError, _store_unavailable)
    app.add_error_handler(sqlite3.OperationalError, _store_unavailable)
    app.add_error_handler(falcon.HTTPError, _http_error)
    app.add_error_handler(errors.NeutronError, _neutron_error)
    app.add_route("/", VersionsResource())
    app.add_route("/v2.0", V2Resource())
    app.add_route("/openapi.json", OpenAPIResource())
    extensions = ExtensionsResource()
    app.add_route("/v2.0/extensions", extensions)
    app.add_route("/v2.0/extensions/{alias}", extensions, suffix="one")
    collections = CollectionResource(service)
    app.add_route("/v2.0/{collection}", collections)
    app.add_route("/v2.0/{collection}/{rid}", collections, suffix="one")
    app.add_route("/v2.0/{collection}/{rid}/{action}", ActionResource(service))
    from topology.api.subresources import add_routes   # tags, quotas, rbac-policies (imports this module)
    add_routes(app, service)
    from topology.api.qos import add_routes as add_qos_routes   # /v2.0/qos/... (imports this module)
    add_qos_routes(app, service)
    for template, resource in extra_routes or ():
        app.add_route(template, resource)
    return app


class ServerHandle:
    """A waitress server running in a daemon thread; `close()` stops it and waits."""

    def __init__(self, server: Any, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread
        self.host = server.effective_host
        self.port = server.effective_port
        self.url = f"http://{self.host}:{self.port}"

    def close(self, timeout: float = 5.0) -> None:
        server = self._server

        def shutdown() -> None:
            for channel in list(server._map.values()):
                if channel is not server.trigger:
                    channel.close()
            server.close()

        for attempt in range(20):   # bounded: 20 × 50 ms
            try:
                # the thunk is queued on the first pull only; a retry just wakes the loop again
                server.trigger.pull_trigger(shutdown if attempt == 0 else None)
                break
            except OSError:
                LOG.debug("API server trigger already closed")
                break
            except RuntimeError:
                # eventlet hub: a worker greenthread is writing the same trigger pipe right now
                # ("second simultaneous write"); let it finish and pull again.
                LOG.debug("API server trigger busy (attempt %d); retrying", attempt + 1)
                time.sleep(0.05)
        self._thread.join(timeout)
        server.task_dispatcher.shutdown()


def serve_in_thread(app: Any, host: str = "127.0.0.1", port: int = 0, threads: int = 8) -> ServerHandle:
    """Start waitress on host:port (0 = a free port) in a thread; returns once it is listening."""
    # asyncore_loop_timeout: waitress rounds it to an int, so 0 would spin.
    server = waitress.server.create_server(app, host=host, port=port, threads=threads, ident="tenantflow",
                                           clear_untrusted_proxy_headers=True, asyncore_loop_timeout=1)
    thread = threading.Thread(target=server.run, name=f"api-{host}:{server.effective_port}", daemon=True)
    thread.start()
    handle = ServerHandle(server, thread)
    LOG.info("API listening on %s", handle.url)
    return handle
