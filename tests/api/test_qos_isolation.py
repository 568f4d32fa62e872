"""QoS across projects, as Neutron's defaults (neutron/conf/policies/qos.py: get_policy the
project's readers or a shared policy, get_policy_*_rule the policy project's readers, every write
the cloud admin's, rule types any reader): another project's non-shared policy and its rules are
404 for every verb and cannot be named by a port or network (QosPolicyNotFound, as Neutron
answers for what the caller cannot see); a shared one can be read and attached but not changed
(403 where it is seen, 404 for its rules, which are not); the cloud admin may do everything."""
from __future__ import annotations

import pytest

from tests.api.tenants import ALICE, BOB, World, error

BW = "/bandwidth_limit_rules"


@pytest.fixture()
def w():
    return World()


def policy(w: World, project: str, **attrs) -> dict:
    """A policy of `project` with one bandwidth rule, made by the admin (members may not create one)."""
    resp = w.call("POST", "/v2.0/qos/policies", {"policy": dict(attrs, project_id=project)}, status=201)
    pol = resp.json["policy"]
    rule = w.call("POST", f"/v2.0/qos/policies/{pol['id']}{BW}",
                  {"bandwidth_limit_rule": {"max_kbps": 1000}}, status=201).json["bandwidth_limit_rule"]
    return dict(pol, rule_id=rule["id"])


@pytest.fixture()
def world(w):
    a = policy(w, ALICE, name="alice-private")
    shared = policy(w, ALICE, name="alice-shared", shared=True)
    bnet = w.create("networks", project=BOB, name="bob-net")
    bport = w.create("ports", project=BOB, network_id=bnet["id"])
    return w, a, shared, bnet, bport


def not_found(resp) -> None:
    error(resp, 404, "QosPolicyNotFound")


def test_another_projects_policy_is_invisible(world):
    w, a, shared, _net, _port = world
    listed = {p["id"] for p in w.call("GET", "/v2.0/qos/policies", project=BOB, status=200).json["policies"]}
    assert a["id"] not in listed and shared["id"] in listed
    assert a["id"] in {p["id"] for p in w.call("GET", "/v2.0/qos/policies", project=ALICE,
                                                   status=200).json["policies"]}
    before = w.svc.store.snapshot()
    pid, rid = a["id"], a["rule_id"]
    not_found(w.call("GET", f"/v2.0/qos/policies/{pid}", project=BOB))
    not_found(w.call("PUT", f"/v2.0/qos/policies/{pid}", {"policy": {"name": "x"}}, project=BOB))
    not_found(w.call("DELETE", f"/v2.0/qos/policies/{pid}", project=BOB))
    not_found(w.call("GET", f"/v2.0/qos/policies/{pid}{BW}", project=BOB))
    not_found(w.call("GET", f"/v2.0/qos/policies/{pid}{BW}/{rid}", project=BOB))
    not_found(w.call("POST", f"/v2.0/qos/policies/{pid}{BW}",
                     {"bandwidth_limit_rule": {"max_kbps": 5, "direction": "ingress"}}, project=BOB))
    not_found(w.call("PUT", f"/v2.0/qos/policies/{pid}{BW}/{rid}", {"bandwidth_limit_rule": {"max_kbps": 5}},
                     project=BOB))
    not_found(w.call("DELETE", f"/v2.0/qos/policies/{pid}{BW}/{rid}", project=BOB))
    assert w.svc.store.snapshot() == before


def test_another_projects_policy_cannot_be_attached(world):
    w, a, _shared, bnet, bport = world
    before = w.svc.store.snapshot()
    not_found(w.call("PUT", f"/v2.0/ports/{bport['id']}", {"port": {"qos_policy_id": a["id"]}}, project=BOB))
    not_found(w.call("PUT", f"/v2.0/networks/{bnet['id']}", {"network": {"qos_policy_id": a["id"]}}, project=BOB))
    not_found(w.call("POST", "/v2.0/ports", {"port": {"network_id": bnet["id"], "qos_policy_id": a["id"]}},
                     project=BOB))
    not_found(w.call("POST", "/v2.0/networks", {"network": {"name": "n", "qos_policy_id": a["id"]}}, project=BOB))
    assert w.svc.store.snapshot() == before


def test_a_shared_policy_is_read_and_attached_but_not_changed(world):
    w, _a, shared, bnet, bport = world
    pid, rid = shared["id"], shared["rule_id"]
    assert w.call("GET", f"/v2.0/qos/policies/{pid}", project=BOB, status=200).json["policy"]["rules"]
    port = w.call("PUT", f"/v2.0/ports/{bport['id']}", {"port": {"qos_policy_id": pid}}, project=BOB, status=200)
    assert port.json["port"]["qos_policy_id"] == pid
    net = w.call("PUT", f"/v2.0/networks/{bnet['id']}", {"network": {"qos_policy_id": pid}}, project=BOB, status=200)
    assert net.json["network"]["qos_policy_id"] == pid
    before = w.svc.store.snapshot()
    for method, path, body in (       # the policy is seen: 403
            ("PUT", f"/v2.0/qos/policies/{pid}", {"policy": {"name": "x"}}),
            ("DELETE", f"/v2.0/qos/policies/{pid}", None),
            ("POST", f"/v2.0/qos/policies/{pid}/dscp_marking_rules", {"dscp_marking_rule": {"dscp_mark": 8}})):
        error(w.call(method, path, body, project=BOB), 403, "PolicyNotAuthorized")
    # its rules are not (get_policy_*_rule has no "shared" clause): listed empty, else 404
    assert w.call("GET", f"/v2.0/qos/policies/{pid}{BW}", project=BOB, status=200).json == {
        "bandwidth_limit_rules": []}
    for method, path, body in (
            ("GET", f"/v2.0/qos/policies/{pid}{BW}/{rid}", None),
            ("PUT", f"/v2.0/qos/policies/{pid}{BW}/{rid}", {"bandwidth_limit_rule": {"max_kbps": 5}}),
            ("DELETE", f"/v2.0/qos/policies/{pid}{BW}/{rid}", None)):
        error(w.call(method, path, body, project=BOB), 404, "QosRuleNotFound")
    assert w.svc.store.snapshot() == before


def test_members_read_their_own_policy_and_rules_but_only_the_admin_writes(world):
    w, a, _shared, _net, _port = world
    pid, rid = a["id"], a["rule_id"]
    assert w.call("GET", f"/v2.0/qos/policies/{pid}", project=ALICE, status=200)
    assert w.call("GET", f"/v2.0/qos/policies/{pid}{BW}/{rid}", project=ALICE, status=200)
    for method, path, body in (
            ("PUT", f"/v2.0/qos/policies/{pid}", {"policy": {"name": "x"}}),
            ("POST", "/v2.0/qos/policies", {"policy": {"name": "mine"}}),
            ("PUT", f"/v2.0/qos/policies/{pid}{BW}/{rid}", {"bandwidth_limit_rule": {"max_kbps": 5}}),
            ("DELETE", f"/v2.0/qos/policies/{pid}{BW}/{rid}", None)):
        error(w.call(method, path, body, project=ALICE), 403, "PolicyNotAuthorized")
    # rule types belong to no project: any reader (role:reader)
    assert w.call("GET", "/v2.0/qos/rule-types", project=BOB, status=200).json["rule_types"]


def test_the_cloud_admin_may_do_everything(world):
    w, a, _shared, bnet, bport = world
    pid, rid = a["id"], a["rule_id"]
    assert w.call("GET", f"/v2.0/qos/policies/{pid}", status=200)
    w.call("PUT", f"/v2.0/qos/policies/{pid}{BW}/{rid}", {"bandwidth_limit_rule": {"max_kbps": 7}}, status=200)
    w.call("PUT", f"/v2.0/ports/{bport['id']}", {"port": {"qos_policy_id": pid}}, status=200)
    error(w.call("DELETE", f"/v2.0/qos/policies/{pid}"), 409, "QosPolicyInUse")
    w.call("PUT", f"/v2.0/ports/{bport['id']}", {"port": {"qos_policy_id": None}}, status=200)
    w.call("DELETE", f"/v2.0/qos/policies/{pid}{BW}/{rid}", status=204)
    w.call("DELETE", f"/v2.0/qos/policies/{pid}", status=204)
    assert bnet["id"]
