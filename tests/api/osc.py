"""The real `openstack` client, run as a user would, against an API served in this process.

Shared by the client tests (noauth, password auth, policy): where the client is, how it is run
(no OS_* variables leak in from the environment), a `--auth builtin` server, and the operator's
steps that make two tenants."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pytest

from topology.api.app import create_app, serve_in_thread
from topology.api.auth import BuiltinAuth
from topology.model.identity import Identity
from topology.model.service import Service
from topology.store.backends import open_store

OPENSTACK = Path(sys.executable).with_name("openstack")
if not OPENSTACK.exists():
    OPENSTACK = Path(shutil.which("openstack") or "openstack")


def run(auth: list[str], args: tuple[str, ...], *, check: bool = True, who: str = "") -> Any:
    """Run `openstack AUTH ARGS`; the decoded JSON for `-f json`, else the CompletedProcess."""
    if not OPENSTACK.exists():
        pytest.fail(f"python-openstackclient is a test dependency but {OPENSTACK} is missing")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    proc = subprocess.run([str(OPENSTACK), *auth, *args], capture_output=True, text=True, timeout=120, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"{who + ': ' if who else ''}{' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
    if "-f" in args and "json" in args and proc.returncode == 0:
        return json.loads(proc.stdout)
    return proc


def password_auth(api_url: str, user: str, password: str, project: str | None = None) -> list[str]:
    return ["--os-auth-type", "password", "--os-auth-url", f"{api_url}/identity/v3",
            "--os-identity-api-version", "3", "--os-username", user, "--os-password", password,
            "--os-project-name", project or user, "--os-user-domain-name", "Default",
            "--os-project-domain-name", "Default"]


@contextmanager
def builtin_server(db_dir: Path, admin_password: str) -> Iterator[Any]:
    """The API behind the built-in identity (bcrypt at its normal cost, SQLite on disk); `.service`."""
    store = open_store(f"sqlite://{db_dir}/tf.db")
    service = Service(store)
    identity = Identity(store)
    identity.bootstrap(admin_password, service.settings.default_project_id)
    auth = BuiltinAuth(identity, service.settings.default_project_id)
    handle = serve_in_thread(auth.wsgi(create_app(service, auth=auth)), "127.0.0.1", 0)
    handle.service = service
    try:
        yield handle
    finally:
        handle.close()
        store.close()


def password_client(api_url: str, admin_password: str):
    """osc(user, *args): the client as `user` (password USER-pw in project USER; admin's own)."""
    def osc(user: str, *args: str, check: bool = True, auth: list[str] | None = None) -> Any:
        if auth is None:
            auth = password_auth(api_url, user, admin_password if user == "admin" else f"{user}-pw")
        return run(auth, args, check=check, who=user)
    return osc


def make_tenants(osc, names: tuple[str, ...] = ("alice", "bob")) -> dict[str, dict[str, str]]:
    """What an operator types: a project, a user with a password, the member role — per tenant."""
    made = {}
    for name in names:
        project = osc("admin", "project", "create", name, "-f", "json")
        user = osc("admin", "user", "create", "--project", name, "--password", f"{name}-pw", name, "-f", "json")
        osc("admin", "role", "add", "--project", name, "--user", name, "member")
        made[name] = {"project": project["id"], "user": user["id"]}
    return made
