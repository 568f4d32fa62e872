"""Neutron's QoS extension over HTTP: policies, bandwidth-limit and DSCP rules, rule types,
qos_policy_id on ports and networks, the errors Neutron answers, and the policy defaults."""
from __future__ import annotations

import pytest

from tests.api.tenants import ALICE, BOB, World, error

ADMIN_ALICE = {"project": ALICE, "roles": "admin,member,reader"}


@pytest.fixture()
def w():
    world = World()
    world.net = world.create("networks", project=ALICE, name="alice-net")  # type: ignore[attr-defined]
    return world


def policy(w, status=201, who=ADMIN_ALICE, **attrs):
    resp = w.call("POST", "/v2.0/qos/policies", {"policy": attrs}, status=status, **who)
    return resp.json.get("policy") if status == 201 else resp


def rule(w, pid, kind, status=201, **attrs):
    resp = w.call("POST", f"/v2.0/qos/policies/{pid}/{kind}_rules", {f"{kind}_rule": attrs}, status=status,
                  **ADMIN_ALICE)
    return resp.json.get(f"{kind}_rule") if status == 201 else resp


def test_policy_crud_and_rules(w):
    p = policy(w, name="gold")
    assert {k: p[k] for k in ("name", "description", "shared", "is_default", "project_id", "rules")} == {
        "name": "gold", "description": "", "shared": False, "is_default": False, "project_id": ALICE, "rules": []}
    bw = rule(w, p["id"], "bandwidth_limit", max_kbps=20000)
    assert bw == {"id": bw["id"], "max_kbps": 20000, "max_burst_kbps": 0, "direction": "egress"}
    bw_in = rule(w, p["id"], "bandwidth_limit", max_kbps=1000, max_burst_kbps=100, direction="ingress")
    dscp = rule(w, p["id"], "dscp_marking", dscp_mark=26)
    shown = w.call("GET", f"/v2.0/qos/policies/{p['id']}", status=200, **ADMIN_ALICE).json["policy"]
    assert [(r["type"], r["qos_policy_id"]) for r in shown["rules"]] == [
        ("bandwidth_limit", p["id"]), ("bandwidth_limit", p["id"]), ("dscp_marking", p["id"])]
    listed = w.call("GET", f"/v2.0/qos/policies/{p['id']}/bandwidth_limit_rules", status=200, **ADMIN_ALICE).json
    assert {r["id"] for r in listed["bandwidth_limit_rules"]} == {bw["id"], bw_in["id"]}
    upd = w.call("PUT", f"/v2.0/qos/policies/{p['id']}/bandwidth_limit_rules/{bw['id']}",
                 {"bandwidth_limit_rule": {"max_kbps": 30000}}, status=200, **ADMIN_ALICE).json
    assert upd["bandwidth_limit_rule"]["max_kbps"] == 30000
    w.call("DELETE", f"/v2.0/qos/policies/{p['id']}/dscp_marking_rules/{dscp['id']}", status=204, **ADMIN_ALICE)
    error(w.call("GET", f"/v2.0/qos/policies/{p['id']}/dscp_marking_rules/{dscp['id']}", **ADMIN_ALICE),
          404, "QosRuleNotFound")
    assert [x["name"] for x in w.call("GET", "/v2.0/qos/policies?name=gold", status=200,
                                      **ADMIN_ALICE).json["policies"]] == ["gold"]
    w.call("PUT", f"/v2.0/qos/policies/{p['id']}", {"policy": {"description": "d"}}, status=200, **ADMIN_ALICE)
    w.call("DELETE", f"/v2.0/qos/policies/{p['id']}", status=204, **ADMIN_ALICE)
    error(w.call("GET", f"/v2.0/qos/policies/{p['id']}", **ADMIN_ALICE), 404, "QosPolicyNotFound")


def test_bad_input_and_conflicts(w):
    p = policy(w, name="p")
    error(rule(w, p["id"], "dscp_marking", status=400, dscp_mark=27), 400, "InvalidInput")
    error(rule(w, p["id"], "bandwidth_limit", status=400, max_kbps=-1), 400, "InvalidInput")
    error(rule(w, p["id"], "bandwidth_limit", status=400, max_kbps=1, direction="up"), 400, "InvalidInput")
    error(rule(w, p["id"], "bandwidth_limit", status=400), 400, "BadRequest")
    error(rule(w, p["id"], "bandwidth_limit", status=400, max_kbps=1, bogus=1), 400, "HTTPBadRequest")
    rule(w, p["id"], "bandwidth_limit", max_kbps=10)
    error(rule(w, p["id"], "bandwidth_limit", status=409, max_kbps=20), 409, "QoSRulesConflict")
    rule(w, p["id"], "dscp_marking", dscp_mark=0)
    error(rule(w, p["id"], "dscp_marking", status=409, dscp_mark=8), 409, "QoSRulesConflict")
    error(w.call("GET", f"/v2.0/qos/policies/{p['id']}/minimum_bandwidth_rules", **ADMIN_ALICE), 404, "HTTPNotFound")
    policy(w, name="d1", is_default=True)
    error(policy(w, status=409, name="d2", is_default=True), 409, "QoSPolicyDefaultAlreadyExists")


def test_ports_networks_in_use_and_default(w):
    p = policy(w, name="p")
    port = w.create("ports", project=ALICE, network_id=w.net["id"])
    assert port["qos_policy_id"] is None
    got = w.call("PUT", f"/v2.0/ports/{port['id']}", {"port": {"qos_policy_id": p["id"]}}, project=ALICE,
                 status=200).json["port"]
    assert got["qos_policy_id"] == p["id"]
    err = error(w.call("DELETE", f"/v2.0/qos/policies/{p['id']}", **ADMIN_ALICE), 409, "QosPolicyInUse")
    assert port["id"] in err["message"]
    error(w.call("PUT", f"/v2.0/ports/{port['id']}", {"port": {"qos_policy_id": "0" * 32}}, project=ALICE),
          404, "QosPolicyNotFound")
    w.call("PUT", f"/v2.0/ports/{port['id']}", {"port": {"qos_policy_id": None}}, project=ALICE, status=200)
    w.call("PUT", f"/v2.0/networks/{w.net['id']}", {"network": {"qos_policy_id": p["id"]}}, project=ALICE,
           status=200)
    error(w.call("DELETE", f"/v2.0/qos/policies/{p['id']}", **ADMIN_ALICE), 409, "QosPolicyInUse")
    d = policy(w, name="default", is_default=True)
    assert w.create("networks", project=ALICE, name="n2")["qos_policy_id"] == d["id"]
    assert w.create("networks", project=BOB, name="n3")["qos_policy_id"] is None


def test_policy_defaults_and_visibility(w):
    error(policy(w, status=403, who={"project": ALICE, "roles": "member,reader"}, name="x"), 403,
          "PolicyNotAuthorized")
    p = policy(w, name="private")
    s = policy(w, name="shared", shared=True)
    bob = [x["id"] for x in w.call("GET", "/v2.0/qos/policies", project=BOB, status=200).json["policies"]]
    assert bob == [s["id"]]
    error(w.call("GET", f"/v2.0/qos/policies/{p['id']}", project=BOB), 404, "QosPolicyNotFound")
    # Neutron's get_rule_type is role:reader (rule types belong to no project)
    assert w.call("GET", "/v2.0/qos/rule-types", project=BOB, status=200).json["rule_types"]
    types = w.call("GET", "/v2.0/qos/rule-types", status=200, **ADMIN_ALICE).json["rule_types"]
    assert types == [{"type": "bandwidth_limit"}, {"type": "dscp_marking"}]
    detail = w.call("GET", "/v2.0/qos/rule-types/dscp_marking", status=200, **ADMIN_ALICE).json["rule_type"]
    assert 26 in detail["drivers"][0]["supported_parameters"][0]["parameter_values"]
    aliases = {e["alias"] for e in w.call("GET", "/v2.0/extensions", status=200).json["extensions"]}
    assert {"qos", "qos-bw-limit-direction", "qos-default"} <= aliases
