"""Policy.decisions, the memo a bulk create checks its records with: the same answers as oslo.policy
evaluating every check (default rules and operator overrides), nothing memoised that reads more than
it can tell, a policy file changed mid-request honoured, and bulks with one denied record changing
nothing (same error as the single create)."""
from __future__ import annotations

import itertools
import os
import random

import pytest

from tests.api.tenants import ALICE, BOB, World, error
from topology.model import errors
from topology.model.context import Context, roles_context
from topology.model.policy import Policy, _format_keys, _target_reads
from topology.model.service import Service
from topology.model.settings import Settings
from topology.store.backends import open_store

OVERRIDES = """\
"create_port": "rule:admin_only or project_id:%(network:project_id)s or field:networks:shared=True"
"create_port:device_owner": "not field:port:device_owner=~^network: or role:admin"
"create_port:name": "'vm':%(name)s or role:admin"
"create_network:shared": "role:member and is_admin:%(project_id)s"
"create_port:binding:host_id": "rule:missing_rule"
"create_subnet": "rule:admin_or_network_owner"
"""

CONTEXTS = [
    Context(ALICE, False), Context(ALICE, True), Context(BOB, False),
    roles_context(ALICE, ["member"]), roles_context(ALICE, ["reader"]), roles_context(BOB, ["admin"]),
    roles_context(ALICE, ["service"]), roles_context(BOB, ["member"], user_id="u1"),
]
VALUES = {
    "project_id": [ALICE, BOB, None],
    "network:project_id": [ALICE, BOB, None],
    "shared": [True, False, 1, None, "True"],
    "device_owner": ["", "network:dhcp", "compute:nova", None, ["network:x"]],
    "name": ["vm", "web", 0, None],
}
CHECKS = [
    ("create_port", ["network_id"]),
    ("create_port", ["network_id", "device_owner"]),
    ("create_port", ["network_id", "name", "binding:host_id"]),
    ("create_port", ["network_id", "fixed_ips", "mac_address"]),
    ("create_network", ["shared", "name"]),
    ("create_subnet", ["network_id", "cidr"]),
    ("create_security_group_rule", []),
]


def _targets(rng: random.Random, n: int) -> list[dict]:
    out = []
    for _ in range(n):
        target = {}
        for key, values in VALUES.items():
            if rng.random() < 0.85:   # sometimes absent
                target[key] = rng.choice(values)
        target["tenant_id"] = target.get("project_id")
        target["fixed_ips"] = rng.choice([[{"ip_address": "10.0.0.5"}], [{"subnet_id": "s"}], []])
        out.append(target)
    return out


@pytest.mark.parametrize("overrides", [False, True], ids=["defaults", "policy-file"])
def test_memo_answers_as_oslo_policy_evaluating_every_check(tmp_path, overrides):
    path = tmp_path / "policy.yaml"
    path.write_text(OVERRIDES)
    policy = Policy(str(path) if overrides else None)
    rng = random.Random(7)
    targets = _targets(rng, 60)
    cases = list(itertools.product(CONTEXTS, CHECKS, targets)) * 2   # each check memoised, then asked again
    rng.shuffle(cases)
    decisions = policy.decisions()
    answers = set()
    for ctx, (action, attrs), target in cases:
        expected = policy.check(ctx, action, target, attrs)
        try:
            policy.enforce(ctx, action, target, attrs, decisions)
            got = True
        except errors.PolicyNotAuthorized as exc:
            got = False
            assert exc.body() == _denial(policy, ctx, action, target, attrs)
        assert got == expected, (ctx, action, attrs, target)
        answers.add(got)
    assert answers == {True, False}
    assert decisions._allowed, "the checks of these rules are memoised"


def _denial(policy, ctx, action, target, attrs):
    with pytest.raises(errors.PolicyNotAuthorized) as exc:
        policy.enforce(ctx, action, target, attrs)
    return exc.value.body()


def test_checks_the_memo_cannot_tell_are_never_memoised(tmp_path):
    assert _format_keys("member") == []
    assert _format_keys("%(project_id)s") == ["project_id"]
    assert _format_keys("x%%y%(a:b)s") == ["a:b"]
    for unknown in ("%s", "%(project_id)r", "%(n)d", "100%", "%%(x)s"):
        assert _format_keys(unknown) is None, unknown
    path = tmp_path / "policy.yaml"
    path.write_text('"create_port": "http://127.0.0.1:9/check"\n'
                    '"create_network": "rule:loop_a"\n"loop_a": "rule:loop_b"\n"loop_b": "rule:loop_a"\n'
                    '"create_router": "project_id:%s"\n')
    policy = Policy(str(path))
    rules = policy.enforcer.rules
    for action in ("create_port", "create_network", "create_router"):
        assert not _target_reads(policy.match_rule(action, {}, []), rules, set(), set()), action
    reads: set[str] = set()
    assert _target_reads(policy.match_rule("create_subnet", {}, []), rules, reads, set())
    assert reads == {"network:project_id"}   # admin, or a member owning the network
    decisions = policy.decisions()
    for _ in range(3):   # evaluated by oslo.policy each time, never remembered
        with pytest.raises(errors.PolicyNotAuthorized):
            policy.enforce(Context(ALICE, False), "create_router", {"project_id": ALICE}, (), decisions)
    assert not decisions._allowed


def test_a_policy_file_changed_mid_request_is_honoured(tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_text('"create_router": "role:member"\n')
    policy = Policy(str(path))
    decisions = policy.decisions()
    ctx, target = Context(ALICE, False), {"project_id": ALICE, "tenant_id": ALICE}
    policy.enforce(ctx, "create_router", target, (), decisions)
    policy.enforce(ctx, "create_router", target, (), decisions)
    path.write_text('"create_router": "!"\n')
    later = os.path.getmtime(path) + 10
    os.utime(path, (later, later))
    with pytest.raises(errors.PolicyNotAuthorized):
        policy.enforce(ctx, "create_router", target, (), decisions)


def test_bulk_with_one_denied_or_hidden_port_changes_nothing():
    w = World(Service(open_store("memory://"), Settings()))
    mine = w.create("networks", project=ALICE, name="mine")
    w.create("subnets", project=ALICE, network_id=mine["id"], cidr="10.1.0.0/24")
    shared = w.create("networks", name="shared", shared=True)
    w.create("subnets", network_id=shared["id"], cidr="10.9.0.0/24")
    bobs = w.create("networks", project=BOB, name="bobs")
    before = w.svc.store.snapshot()
    # a port with a chosen address on a network alice does not own: her own ports before it are fine
    one = {"network_id": shared["id"], "fixed_ips": [{"ip_address": "10.9.0.77"}]}
    single = w.call("POST", "/v2.0/ports", {"port": one}, project=ALICE)
    bulk = w.call("POST", "/v2.0/ports", {"ports": [{"network_id": mine["id"]}] * 3 + [one]}, project=ALICE)
    assert error(bulk, 403, "PolicyNotAuthorized") == error(single, 403, "PolicyNotAuthorized")
    # binding:host_id is for admins and services only
    bulk = w.call("POST", "/v2.0/ports", {"ports": [{"network_id": mine["id"]},
                                                    {"network_id": mine["id"], "binding:host_id": "h1"}]},
                  project=ALICE)
    assert "rule:create_port:binding:host_id" in error(bulk, 403, "PolicyNotAuthorized")["message"]
    # another project's network is not found
    bulk = w.call("POST", "/v2.0/ports", {"ports": [{"network_id": mine["id"]}, {"network_id": bobs["id"]}]},
                  project=ALICE)
    error(bulk, 404, "NetworkNotFound")
    assert w.svc.store.snapshot() == before
    # the same ports without the bad one: created, on both networks
    ok = w.call("POST", "/v2.0/ports", {"ports": [{"network_id": mine["id"]}] * 3 + [{"network_id": shared["id"]}]},
                project=ALICE, status=201).json["ports"]
    assert [p["network_id"] for p in ok] == [mine["id"]] * 3 + [shared["id"]]
    assert all(p["project_id"] == ALICE for p in ok)
