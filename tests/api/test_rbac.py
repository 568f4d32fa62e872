"""RBAC policies over HTTP: a network shared with one project (and only that one), what the target
may then do, the denials and conflicts Neutron answers, and clean-up with the network."""
from __future__ import annotations

import pytest

from tests.api.tenants import ALICE, BOB, CAROL, World, error


@pytest.fixture()
def w():
    world = World()
    world.net = world.create("networks", project=ALICE, name="alice-net")
    world.sub = world.create("subnets", project=ALICE, network_id=world.net["id"], cidr="10.0.0.0/24")
    return world


def share(w, target, action="access_as_shared", project=ALICE, status=201, roles=None, **extra):
    body = {"object_type": "network", "object_id": w.net["id"], "action": action, "target_tenant": target, **extra}
    resp = w.call("POST", "/v2.0/rbac-policies", {"rbac_policy": body}, project=project, roles=roles, status=status)
    return resp.json.get("rbac_policy") if status == 201 else resp


def ids(w, project, collection="networks"):
    return {n["id"] for n in w.call("GET", f"/v2.0/{collection}", project=project, status=200).json[
        collection.replace("-", "_")]}


def test_share_with_one_project(w):
    error(w.call("GET", f"/v2.0/networks/{w.net['id']}", project=BOB), 404, "NetworkNotFound")
    pol = share(w, BOB)
    assert {k: pol[k] for k in ("object_type", "object_id", "action", "target_tenant", "target_project",
                                "project_id", "tenant_id")} == {
        "object_type": "network", "object_id": w.net["id"], "action": "access_as_shared",
        "target_tenant": BOB, "target_project": BOB, "project_id": ALICE, "tenant_id": ALICE}
    assert w.net["id"] in ids(w, BOB)
    assert w.call("GET", f"/v2.0/networks/{w.net['id']}", project=BOB, status=200).json["network"]["shared"] is True
    assert w.call("GET", f"/v2.0/networks/{w.net['id']}", project=ALICE, status=200).json["network"]["shared"] is False
    assert w.sub["id"] in ids(w, BOB, "subnets")
    port = w.create("ports", project=BOB, network_id=w.net["id"], name="bob-vm")
    assert port["project_id"] == BOB
    # only that project
    assert w.net["id"] not in ids(w, CAROL)
    error(w.call("POST", "/v2.0/ports", {"port": {"network_id": w.net["id"]}}, project=CAROL), 404, "NetworkNotFound")
    # the target sees no policy; the owner and the admin do
    assert w.call("GET", "/v2.0/rbac-policies", project=BOB, status=200).json == {"rbac_policies": []}
    assert [p["id"] for p in w.call("GET", "/v2.0/rbac-policies", project=ALICE, status=200).json["rbac_policies"]] \
        == [pol["id"]]
    assert w.call("GET", f"/v2.0/rbac-policies/{pol['id']}", status=200).json["rbac_policy"]["id"] == pol["id"]
    error(w.call("GET", f"/v2.0/rbac-policies/{pol['id']}", project=BOB), 404, "RbacPolicyNotFound")
    error(w.call("DELETE", f"/v2.0/rbac-policies/{pol['id']}", project=BOB), 404, "RbacPolicyNotFound")
    # in use while bob has a port there
    before = w.svc.store.snapshot()
    error(w.call("DELETE", f"/v2.0/rbac-policies/{pol['id']}", project=ALICE), 409, "RbacPolicyInUse")
    assert w.svc.store.snapshot() == before
    w.call("DELETE", f"/v2.0/ports/{port['id']}", project=BOB, status=204)
    w.call("DELETE", f"/v2.0/rbac-policies/{pol['id']}", project=ALICE, status=204)
    assert w.net["id"] not in ids(w, BOB)


def test_denials_and_conflicts_change_nothing(w):
    share(w, BOB)
    before = w.svc.store.snapshot()
    err = error(share(w, "*", status=403), 403, "PolicyNotAuthorized")
    assert "rule:create_rbac_policy:target_tenant" in err["message"] and err["message"].endswith(
        "is disallowed by policy")
    error(share(w, BOB, status=409), 409, "DuplicateRbacPolicy")
    error(share(w, CAROL, project=CAROL, status=404), 404, "NetworkNotFound")
    err = error(share(w, CAROL, project=BOB, status=400), 400, "InvalidInput")
    assert "Only admins can manipulate policies on networks they do not own" in err["message"]
    error(share(w, "carol", status=400), 400, "InvalidInput")
    error(share(w, CAROL, action="access_as_owner", status=400), 400, "InvalidInput")
    error(share(w, CAROL, status=400, object_type="port"), 400, "InvalidInput")
    error(w.call("POST", "/v2.0/rbac-policies", {"rbac_policy": {"object_type": "network", "object_id": w.net["id"],
                                                                 "action": "access_as_shared"}}, project=ALICE),
          400, "BadRequest")
    error(w.call("POST", "/v2.0/rbac-policies", {"rbac_policy": {"bogus": 1}}, project=ALICE), 400, "HTTPBadRequest")
    error(share(w, CAROL, project=ALICE, roles="reader", status=403), 403, "PolicyNotAuthorized")
    assert w.svc.store.snapshot() == before


def test_wildcard_external_update_and_network_delete(w):
    pub = share(w, "*", project=None)                       # the admin may share with everybody
    assert w.net["id"] in ids(w, CAROL)
    assert w.call("GET", f"/v2.0/networks/{w.net['id']}", project=ALICE, status=200).json["network"]["shared"] is True
    w.call("DELETE", f"/v2.0/rbac-policies/{pub['id']}", status=204)
    assert w.net["id"] not in ids(w, CAROL)
    ext = share(w, BOB, action="access_as_external")
    seen = w.call("GET", f"/v2.0/networks/{w.net['id']}", project=BOB, status=200).json["network"]
    assert seen["router:external"] is True and seen["shared"] is False
    moved = w.call("PUT", f"/v2.0/rbac-policies/{ext['id']}", {"rbac_policy": {"target_tenant": CAROL}},
                   project=ALICE, status=200).json["rbac_policy"]
    assert moved["target_tenant"] == CAROL
    assert w.net["id"] not in ids(w, BOB) and w.net["id"] in ids(w, CAROL)
    w.call("DELETE", f"/v2.0/networks/{w.net['id']}", project=ALICE, status=204)
    assert w.call("GET", "/v2.0/rbac-policies", status=200).json == {"rbac_policies": []}


def test_rbac_quota(w):
    w.call("PUT", f"/v2.0/quotas/{ALICE}", {"quota": {"rbac_policy": 1}}, status=200)
    share(w, BOB)
    error(share(w, CAROL, status=409), 409, "OverQuota")
