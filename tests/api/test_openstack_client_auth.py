"""The real `openstack` client with password auth against `--auth builtin`: admin makes two tenants
through our Keystone v3 subset, each tenant sees only its own networks, subnets and ports.

The API runs with waitress on a random loopback port in a thread, as in test_openstack_client.py,
behind the built-in identity (bcrypt at its normal cost, an SQLite store on disk)."""
from __future__ import annotations


import pytest

from tests.api.osc import builtin_server, make_tenants, password_client

from topology.model.service import Service
from topology.store.backends import open_store

ADMIN_PW = "osc-admin-pw"


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    with builtin_server(tmp_path_factory.mktemp("osc-auth"), ADMIN_PW) as handle:
        yield handle


@pytest.fixture(scope="module")
def osc(api):
    return password_client(api.url, ADMIN_PW)


@pytest.fixture(scope="module")
def tenants(osc):
    return make_tenants(osc)


def test_admin_token_issue_and_identity_lists(osc, tenants):
    token = osc("admin", "token", "issue", "-f", "json")
    assert token["project_id"] == Service(open_store("memory://")).settings.default_project_id
    assert {"admin", "alice", "bob"} <= {p["Name"] for p in osc("admin", "project", "list", "-f", "json")}
    assert {"admin", "alice", "bob"} <= {u["Name"] for u in osc("admin", "user", "list", "-f", "json")}
    assigned = osc("admin", "role", "assignment", "list", "--project", "alice", "--names", "-f", "json")
    assert [(a["Role"], a["User"]) for a in assigned] == [("member", "alice@Default")]
    alice = osc("alice", "token", "issue", "-f", "json")
    assert alice["project_id"] == tenants["alice"]["project"] and alice["user_id"] == tenants["alice"]["user"]


def test_each_tenant_sees_only_its_own(osc, tenants):
    ids: dict[str, dict[str, str]] = {}
    for name in ("alice", "bob"):
        net = osc(name, "network", "create", f"{name}-net", "-f", "json")
        assert net["project_id"] == tenants[name]["project"]
        # the same CIDR in both tenants: overlapping ranges are theirs to choose
        sub = osc(name, "subnet", "create", "--network", f"{name}-net", "--subnet-range", "10.0.0.0/24",
                  f"{name}-sub", "-f", "json")
        port = osc(name, "port", "create", "--network", f"{name}-net", f"{name}-port", "-f", "json")
        ids[name] = {"net": net["id"], "sub": sub["id"], "port": port["id"]}
    for me, other in (("alice", "bob"), ("bob", "alice")):
        assert [n["ID"] for n in osc(me, "network", "list", "-f", "json")] == [ids[me]["net"]]
        assert [s["ID"] for s in osc(me, "subnet", "list", "-f", "json")] == [ids[me]["sub"]]
        ports = {p["ID"] for p in osc(me, "port", "list", "-f", "json")}
        assert ids[me]["port"] in ports and ids[other]["port"] not in ports
        assert osc(me, "network", "show", ids[me]["net"], "-f", "json")["name"] == f"{me}-net"
        # another project's objects do not exist for me (Neutron's 404), by id or by name
        for args in (("network", "show", ids[other]["net"]), ("network", "show", f"{other}-net"),
                     ("port", "show", ids[other]["port"]), ("subnet", "show", ids[other]["sub"])):
            proc = osc(me, *args, check=False)
            assert proc.returncode != 0 and "No " in proc.stderr and "found" in proc.stderr, (me, args, proc.stderr)
        proc = osc(me, "network", "delete", ids[other]["net"], check=False)
        assert proc.returncode != 0
    # admin sees both tenants' networks
    seen = {n["ID"] for n in osc("admin", "network", "list", "-f", "json")}
    assert {ids["alice"]["net"], ids["bob"]["net"]} <= seen


def test_no_token_forged_token_wrong_password_revoked_token(osc, api, tenants):
    endpoint = ["--os-endpoint", api.url]
    for auth in (["--os-auth-type", "none", *endpoint],
                 ["--os-auth-type", "admin_token", "--os-token", "forged", *endpoint]):
        proc = osc(None, "network", "list", check=False, auth=auth)
        assert proc.returncode != 0 and "401" in proc.stderr, proc.stderr
    bad = ["--os-auth-type", "password", "--os-auth-url", f"{api.url}/identity/v3", "--os-username", "alice",
           "--os-password", "wrong", "--os-project-name", "alice", "--os-user-domain-name", "Default",
           "--os-project-domain-name", "Default"]
    proc = osc(None, "network", "list", check=False, auth=bad)
    assert proc.returncode != 0 and "HTTP 401" in proc.stderr, proc.stderr
    token = osc("alice", "token", "issue", "-f", "json")["id"]
    with_token = ["--os-auth-type", "admin_token", "--os-token", token, *endpoint]
    assert osc(None, "network", "list", "-f", "json", auth=with_token) == \
        osc("alice", "network", "list", "-f", "json")
    osc("alice", "token", "revoke", token)
    proc = osc(None, "network", "list", check=False, auth=with_token)
    assert proc.returncode != 0 and "401" in proc.stderr, proc.stderr
