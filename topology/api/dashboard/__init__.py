"""The web dashboard's static files, served at /dashboard/ on the API port (issue 16).

Why a WSGI wrapper outside the auth layer: the page is static (it carries no topology data, it
renders from the REST API with the caller's own token), so it needs no authentication, while
every API call it makes goes through the same auth as any client. Why plain files, no build:
the front-end is plain ES modules with no library, so the source is what is served, offline.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable

import falcon

PREFIX = "/dashboard"
STATIC_DIR = Path(__file__).parent / "static"
WSGIApp = Callable[[dict, Callable[..., Any]], Iterable[bytes]]


class _Redirect:
    """/dashboard → /dashboard/ so the page's relative module URLs resolve."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        raise falcon.HTTPMovedPermanently(PREFIX + "/")


class _NoCache:
    """Revalidate every load: after an upgrade the browser must not mix old and new modules."""

    def process_response(self, req: falcon.Request, resp: falcon.Response, resource: Any,
                         req_succeeded: bool) -> None:
        resp.set_header("Cache-Control", "no-cache")
        resp.set_header("X-Content-Type-Options", "nosniff")


def static_app(directory: Path = STATIC_DIR) -> falcon.App:
    """A falcon app serving only the dashboard's files (falcon's static route: content types from
    the file name, 404 for anything missing, no path escapes out of `directory`)."""
    app = falcon.App(middleware=[_NoCache()])
    app.add_route(PREFIX, _Redirect())
    app.add_static_route(PREFIX, str(directory))
    return app


def is_dashboard_path(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")


def mount(api: WSGIApp, directory: Path = STATIC_DIR) -> WSGIApp:
    """`api` with /dashboard/ (index.html) and its files in front of it; every other path to `api`."""
    files = static_app(directory)

    def dispatch(environ: dict, start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if not is_dashboard_path(path):
            return api(environ, start_response)
        if path == PREFIX + "/":
            environ = {**environ, "PATH_INFO": PREFIX + "/index.html"}
        return files(environ, start_response)
    return dispatch
