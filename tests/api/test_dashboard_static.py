"""/dashboard/ as mounted by `tenantflow serve` (topology.api.dashboard.mount), in-process.

Why here as well as the browser test: the auth boundary (static files open, every API call still
authenticated, in each auth mode), content types, 404s and path escapes are cheap to check
without a browser; and setup.py must ship every static file (pip install . outside the checkout).
"""
from __future__ import annotations

import ast
import fnmatch
from pathlib import Path

import falcon.testing
import pytest

from topology.api import dashboard
from topology.api.app import create_app
from topology.api.auth import BuiltinAuth, NoAuth
from topology.model.identity import Identity
from topology.model.service import Service
from topology.store.backends import open_store

REPO = Path(__file__).resolve().parents[2]


def client(mode: str) -> falcon.testing.TestClient:
    svc = Service(open_store("memory://"))
    project = svc.settings.default_project_id
    if mode == "builtin":
        identity = Identity(svc.store, token_ttl=3600, bcrypt_rounds=4)
        identity.bootstrap("dash-pw", project)
        auth = BuiltinAuth(identity, project)
    elif mode == "token":
        auth = NoAuth(project, api_token="dash-static-token")
    else:
        auth = NoAuth(project)
    return falcon.testing.TestClient(dashboard.mount(auth.wsgi(create_app(svc, auth=auth))))


@pytest.mark.parametrize("mode", ["noauth", "token", "builtin"])
def test_page_needs_no_auth_but_the_api_still_does(mode):
    c = client(mode)
    page = c.simulate_get("/dashboard/")
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert 'src="js/main.js"' in page.text
    assert page.headers["Cache-Control"] == "no-cache"
    api = c.simulate_get("/v2.0/networks")
    assert api.status_code == (200 if mode == "noauth" else 401)
    if mode != "noauth":
        assert api.json["NeutronError"]["message"]


@pytest.mark.parametrize("path, ctype", [("/dashboard/js/main.js", "text/javascript"),
                                         ("/dashboard/js/graph.js", "text/javascript"),
                                         ("/dashboard/style.css", "text/css"),
                                         ("/dashboard/index.html", "text/html")])
def test_content_types(path, ctype):
    r = client("noauth").simulate_get(path)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith(ctype)


@pytest.mark.parametrize("path", ["/dashboard/missing.js", "/dashboard/js/", "/dashboard/../setup.py",
                                  "/dashboard/js/../../__init__.py", "/dashboard/%2e%2e/__init__.py",
                                  "/dashboard/static/index.html"])
def test_missing_and_escaping_paths_are_404(path):
    r = client("builtin").simulate_get(path)
    assert r.status_code == 404, (path, r.status_code)


def test_bare_prefix_redirects_to_the_directory():
    r = client("builtin").simulate_get("/dashboard")
    assert r.status_code == 301 and r.headers["Location"].endswith("/dashboard/")


def test_other_paths_reach_the_api():
    c = client("noauth")
    assert c.simulate_get("/").status_code == 200
    assert c.simulate_post("/v2.0/networks", json={"network": {"name": "n"}}).status_code == 201
    other = c.simulate_get("/dashboardx")                  # not under the prefix: the API's own 404
    assert other.status_code == 404 and "NeutronError" in other.json


def test_setup_py_ships_every_static_file():
    tree = ast.parse((REPO / "setup.py").read_text())
    (data,) = [ast.literal_eval(kw.value) for node in ast.walk(tree) if isinstance(node, ast.Call)
               for kw in node.keywords if kw.arg == "package_data"]
    patterns = data["topology.api.dashboard"]
    files = [p.relative_to(dashboard.STATIC_DIR.parent).as_posix()
             for p in dashboard.STATIC_DIR.rglob("*") if p.is_file()]
    assert "static/index.html" in files
    unshipped = [f for f in files if not any(fnmatch.fnmatch(f, pat) and f.count("/") == pat.count("/")
                                             for pat in patterns)]
    assert not unshipped, f"add to setup.py package_data: {unshipped}"
