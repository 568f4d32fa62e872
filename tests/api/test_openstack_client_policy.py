"""The real `openstack` client against policy, quotas, tags, paging and RBAC, as admin and as two
tenants with password auth (`--auth builtin`; `quota show` needs a token: the client reads the
project from it or looks it up in Keystone, which noauth cannot offer).

The API runs with waitress on a random loopback port in a thread, an SQLite store on disk."""
from __future__ import annotations


import pytest

from tests.api.osc import builtin_server, make_tenants, password_client

from topology.model.context import roles_context

ADMIN_PW = "policy-admin-pw"


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    with builtin_server(tmp_path_factory.mktemp("osc-policy"), ADMIN_PW) as handle:
        yield handle


@pytest.fixture(scope="module")
def osc(api):
    return password_client(api.url, ADMIN_PW)


def refused(proc, message):
    assert proc.returncode != 0, proc.stdout
    assert message in proc.stderr, proc.stderr


@pytest.fixture(scope="module")
def tenants(osc):
    """Project ids of the two tenants."""
    return {name: t["project"] for name, t in make_tenants(osc).items()}


@pytest.fixture(scope="module")
def public(osc):
    net = osc("admin", "network", "create", "--external", "--provider-network-type", "flat",
              "--provider-physical-network", "physnet1", "public", "-f", "json")
    osc("admin", "subnet", "create", "--network", "public", "--subnet-range", "172.24.4.0/24", "--no-dhcp",
        "public-sub")
    return net


def test_policy_denials_with_neutrons_messages(osc, tenants, public):
    refused(osc("alice", "network", "create", "--external", "x", check=False),
            "(rule:create_network and rule:create_network:router:external) is disallowed by policy")
    refused(osc("alice", "network", "create", "--share", "x", check=False),
            "(rule:create_network and rule:create_network:shared) is disallowed by policy")
    refused(osc("alice", "port", "create", "--network", public["id"], "grab", check=False),
            "rule:create_port is disallowed by policy")
    osc("alice", "router", "create", "alice-r")
    refused(osc("alice", "router", "set", "--external-gateway", public["id"], "--disable-snat", "alice-r",
                check=False),
            "(rule:update_router and (rule:update_router:external_gateway_info and "
            "(rule:update_router:external_gateway_info:network_id and "
            "rule:update_router:external_gateway_info:enable_snat))) is disallowed by policy")
    osc("alice", "router", "set", "--external-gateway", public["id"], "alice-r")   # SNAT on: allowed
    nets = osc("alice", "network", "list", "-f", "json")
    assert {n["Name"] for n in nets} == {"public"}        # nothing half-made by the refusals


def test_quotas_show_set_and_the_eleventh_router(osc, api, tenants):
    shown = osc("alice", "quota", "show", "--network", "-f", "json")
    limits = {row["Resource"]: row["Limit"] for row in shown} if isinstance(shown, list) else shown
    assert limits["routers"] == 10 and limits["ports"] == 500 and limits["networks"] == 100
    as_admin = osc("admin", "quota", "show", "--network", "bob", "-f", "json")
    bob_limits = {row["Resource"]: row["Limit"] for row in as_admin} if isinstance(as_admin, list) else as_admin
    assert bob_limits["floating_ips"] == 50 and bob_limits["security_groups"] == 10
    # fill bob to 10 routers (the store way is quicker than ten client runs), the 11th via the client
    ctx = roles_context(tenants["bob"], ["member"])
    for i in range(10):
        api.service.create("router", {"name": f"bob-r{i}"}, ctx)
    refused(osc("bob", "router", "create", "bob-r10", check=False), "Quota exceeded for resources: ['router'].")
    osc("admin", "quota", "set", "--routers", "11", "bob")
    assert {row["Resource"]: row["Limit"] for row in osc("bob", "quota", "show", "--network", "-f", "json")}[
        "routers"] == 11
    osc("bob", "router", "create", "bob-r10")
    refused(osc("bob", "quota", "set", "--routers", "50", tenants["bob"], check=False),
            "rule:update_quota is disallowed by policy")


def test_tags_and_tag_filters(osc, tenants):
    red = osc("alice", "network", "create", "--tag", "red", "--tag", "blue", "t-red-blue", "-f", "json")
    assert sorted(red["tags"]) == ["blue", "red"]
    osc("alice", "network", "create", "--tag", "red", "t-red")
    osc("alice", "network", "create", "t-none")
    names = {n["Name"] for n in osc("alice", "network", "list", "--tags", "red", "-f", "json")}
    assert names == {"t-red-blue", "t-red"}
    names = {n["Name"] for n in osc("alice", "network", "list", "--tags", "red,blue", "-f", "json")}
    assert names == {"t-red-blue"}
    names = {n["Name"] for n in osc("alice", "network", "list", "--not-tags", "red", "-f", "json")}
    assert "t-none" in names and not names & {"t-red", "t-red-blue"}
    osc("alice", "network", "unset", "--tag", "blue", "t-red-blue")
    assert osc("alice", "network", "show", "t-red-blue", "-f", "json")["tags"] == ["red"]


def test_limit_pages_without_repeats(osc, tenants):
    for i in range(5):
        osc("admin", "network", "create", f"page-{i}")
    every = osc("admin", "network", "list", "-f", "json")
    paged = osc("admin", "network", "list", "--limit", "2", "-f", "json")
    assert [n["ID"] for n in paged] == [n["ID"] for n in every]
    assert len({n["ID"] for n in paged}) == len(paged) >= 5


def test_rbac_shares_a_network_with_one_project(osc, tenants):
    net = osc("alice", "network", "create", "alice-shared", "-f", "json")
    osc("alice", "subnet", "create", "--network", "alice-shared", "--subnet-range", "10.30.0.0/24", "as-sub")
    assert net["id"] not in {n["ID"] for n in osc("bob", "network", "list", "-f", "json")}
    pol = osc("alice", "network", "rbac", "create", "--target-project", tenants["bob"], "--action",
              "access_as_shared", "--type", "network", net["id"], "-f", "json")
    assert pol["target_project_id"] == tenants["bob"] and pol["object_id"] == net["id"]
    assert net["id"] in {n["ID"] for n in osc("bob", "network", "list", "-f", "json")}
    port = osc("bob", "port", "create", "--network", net["id"], "bob-on-alice", "-f", "json")
    assert port["project_id"] == tenants["bob"]
    listed = osc("alice", "network", "rbac", "list", "-f", "json")
    assert [p["ID"] for p in listed] == [pol["id"]]
    refused(osc("alice", "network", "rbac", "delete", pol["id"], check=False), "RBAC policy on object")
    osc("bob", "port", "delete", port["id"])
    osc("alice", "network", "rbac", "delete", pol["id"])
    assert net["id"] not in {n["ID"] for n in osc("bob", "network", "list", "-f", "json")}
