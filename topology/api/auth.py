"""Auth modes of the API (`serve --auth noauth|builtin|keystone`): who a request comes from → Context.

Why one object per mode with the same two methods: the Neutron app asks only
`authenticate(req, resp) -> Context` (raising a 401 NeutronError), and `wsgi(app)` puts what the
mode needs in front of it — nothing for noauth, the /identity/v3 Keystone subset for builtin,
keystonemiddleware's auth_token for keystone (as every OpenStack service runs it).

- noauth (default, labs and the demo): no X-Project-Id → admin in the default project; with it,
  that project with the roles of X-Roles (member when none), as before this module existed.
- static token (`--api-token`, any mode): requests carrying it act as in noauth; in noauth mode
  it is required. It stays the operator's credential for `tenantflow node init` and the CLI.
- builtin: X-Auth-Token is a token of our own Keystone subset; project and roles come from it
  only (client X-Project-Id/X-Roles headers are ignored).
- keystone: auth_token validates against a real Keystone, strips client identity headers and sets
  X-Identity-Status/X-Project-Id/X-User-Id/X-Roles, which we read.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Iterable, Protocol

import falcon

from topology.model import errors
from topology.model.context import ADMIN, MEMBER, Context, roles_context
from topology.model.identity import Identity, constant_time_equal

LOG = logging.getLogger(__name__)

MODES = ("noauth", "builtin", "keystone")
OPEN_PATHS = frozenset({"/", ""})    # Neutron's version discovery needs no token
WSGIApp = Callable[[dict, Callable[..., Any]], Iterable[bytes]]


class Auth(Protocol):
    mode: str

    def authenticate(self, req: falcon.Request, resp: falcon.Response) -> Context: ...

    def wsgi(self, app: WSGIApp) -> WSGIApp: ...

    def describe(self) -> str: ...


def _header_roles(req: falcon.Request) -> list[str]:
    return [r.strip() for r in (req.get_header("X-Roles") or "").split(",") if r.strip()]


def _anonymous() -> Context:
    return Context("", False, auth_mode="anonymous")


def _unauthorized(message: str) -> errors.Unauthorized:
    return errors.Unauthorized(message=message)


class NoAuth:
    """Today's behaviour, unchanged for labs and the demo (see the module docstring)."""
    mode = "noauth"

    def __init__(self, default_project_id: str, api_token: str | None = None) -> None:
        self.default_project_id = default_project_id
        self.api_token = api_token

    def header_context(self, req: falcon.Request, auth_mode: str) -> Context:
        project = req.get_header("X-Project-Id") or req.get_header("X-Tenant-Id")
        if not project:
            return roles_context(self.default_project_id, [ADMIN], auth_mode=auth_mode)
        return roles_context(project, _header_roles(req) or [MEMBER], auth_mode=auth_mode)

    def static_token(self, req: falcon.Request) -> bool:
        token = req.get_header("X-Auth-Token")
        return self.api_token is not None and token is not None and constant_time_equal(token, self.api_token)

    def authenticate(self, req: falcon.Request, resp: falcon.Response) -> Context:
        if self.api_token is not None and req.path not in OPEN_PATHS:
            if not self.static_token(req):
                raise _unauthorized("Authentication required: X-Auth-Token is missing or invalid.")
            return self.header_context(req, "token")
        return self.header_context(req, "noauth")

    def wsgi(self, app: WSGIApp) -> WSGIApp:
        return app

    def describe(self) -> str:
        if self.api_token is not None:
            return ("auth: noauth with a static token: requests need X-Auth-Token=<api_token>, then act as "
                    "admin, or as the project in X-Project-Id")
        return ("auth: noauth (NO AUTHENTICATION): every request is admin, or acts as the project in "
                "X-Project-Id; use --auth builtin or keystone for tenants with credentials")


class BuiltinAuth:
    """Tokens of the built-in Keystone subset (topology.api.identity), served at /identity."""
    mode = "builtin"

    def __init__(self, identity: Identity, default_project_id: str, *, api_token: str | None = None,
                 public_endpoint: str | None = None) -> None:
        self.identity = identity
        self.public_endpoint = public_endpoint.rstrip("/") if public_endpoint else None
        self.static = NoAuth(default_project_id, api_token)

    def _challenge(self, req: falcon.Request, resp: falcon.Response) -> None:
        base = self.public_endpoint or req.prefix
        resp.set_header("WWW-Authenticate", f'Keystone uri="{base}/identity"')

    def authenticate(self, req: falcon.Request, resp: falcon.Response) -> Context:
        if req.path in OPEN_PATHS:
            return _anonymous()
        if self.static.static_token(req):
            return self.static.header_context(req, "token")
        token = req.get_header("X-Auth-Token")
        info = self.identity.validate(token)
        if info is None or info.project is None:
            self._challenge(req, resp)
            if not token:
                raise _unauthorized("Authentication required: the request has no X-Auth-Token.")
            if info is None:
                raise _unauthorized("Authentication required: the token is invalid, expired or revoked.")
            raise _unauthorized("Authentication required: the token is not scoped to a project.")
        return roles_context(info.project["id"], info.role_names, user_id=info.user["id"],
                             project_name=info.project["name"], user_name=info.user["name"], auth_mode="builtin")

    def wsgi(self, app: WSGIApp) -> WSGIApp:
        from topology.api.identity import create_identity_app, is_identity_path
        identity_app = create_identity_app(self.identity, self.public_endpoint)

        def dispatch(environ: dict, start_response: Callable[..., Any]) -> Iterable[bytes]:
            target = identity_app if is_identity_path(environ.get("PATH_INFO", "")) else app
            return target(environ, start_response)
        return dispatch

    def describe(self) -> str:
        return (f"auth: builtin (Keystone v3 subset at /identity/v3, tokens valid {self.identity.token_ttl} s"
                f"{', static token accepted too' if self.static.api_token else ''})")


class KeystoneAuth:
    """keystonemiddleware's auth_token in front of the app; its headers are the context.

    Why not delay_auth_decision: then auth_token answers a missing/bad token itself (401 with its
    WWW-Authenticate) and an unreachable Keystone with 503, exactly as in front of Neutron."""
    mode = "keystone"

    def __init__(self, middleware_conf: dict[str, Any], default_project_id: str,
                 api_token: str | None = None) -> None:
        self.middleware_conf = dict(middleware_conf)
        self.static = NoAuth(default_project_id, api_token)

    def authenticate(self, req: falcon.Request, resp: falcon.Response) -> Context:
        if req.path in OPEN_PATHS:
            return _anonymous()
        if req.get_header("X-Identity-Status") != "Confirmed" or not req.get_header("X-Project-Id"):
            if self.static.static_token(req):
                return self.static.header_context(req, "token")
            raise _unauthorized("Authentication required: the token is missing, invalid or not project-scoped.")
        return roles_context(req.get_header("X-Project-Id") or "", _header_roles(req),
                             user_id=req.get_header("X-User-Id"), project_name=req.get_header("X-Project-Name"),
                             user_name=req.get_header("X-User-Name"), auth_mode="keystone")

    def wsgi(self, app: WSGIApp) -> WSGIApp:
        from keystonemiddleware import auth_token  # type: ignore[import-untyped]
        conf = dict(self.middleware_conf)
        conf.setdefault("delay_auth_decision", bool(self.static.api_token))
        protected = auth_token.AuthProtocol(app, conf)

        def dispatch(environ: dict, start_response: Callable[..., Any]) -> Iterable[bytes]:
            # Version discovery is answered without a token, as Neutron's pipeline does.
            target = app if environ.get("PATH_INFO", "") in OPEN_PATHS else protected
            return target(environ, start_response)
        return dispatch

    def describe(self) -> str:
        uri = self.middleware_conf.get("www_authenticate_uri") or "[keystone_authtoken] www_authenticate_uri"
        return f"auth: keystone (tokens validated by keystonemiddleware auth_token against {uri})"


def make_auth(mode: str, *, default_project_id: str, api_token: str | None = None,
              identity: Identity | None = None, public_endpoint: str | None = None,
              keystone_conf: dict[str, Any] | None = None) -> Auth:
    if mode == "noauth":
        return NoAuth(default_project_id, api_token)
    if mode == "builtin":
        if identity is None:
            raise ValueError("--auth builtin needs the identity store")
        return BuiltinAuth(identity, default_project_id, api_token=api_token, public_endpoint=public_endpoint)
    if mode == "keystone":
        return KeystoneAuth(keystone_conf or {}, default_project_id, api_token)
    raise ValueError(f"--auth must be one of {', '.join(MODES)}, got {mode!r}")
