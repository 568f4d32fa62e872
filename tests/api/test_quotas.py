"""Quotas over HTTP: Neutron's defaults, the 11th router refused (409 OverQuota, nothing written),
counting inside the create's transaction (bulk), /v2.0/quotas GET/PUT/DELETE, details, policy."""
from __future__ import annotations

import pytest

from tests.api.tenants import ALICE, BOB, World, error
from topology.model import quotas
from topology.model.service import Service
from topology.store.backends import open_store

DEFAULTS = {"network": 100, "subnet": 100, "port": 500, "router": 10, "floatingip": 50, "security_group": 10,
            "security_group_rule": 100, "rbac_policy": 10}


@pytest.fixture(params=["memory://", "sqlite"])
def w(request, tmp_path):
    url = f"sqlite://{tmp_path}/tf.db" if request.param == "sqlite" else request.param
    world = World(Service(open_store(url)))
    yield world
    world.svc.store.close()


def test_defaults_are_neutrons(w):
    assert w.call("GET", f"/v2.0/quotas/{ALICE}", project=ALICE, status=200).json["quota"] == DEFAULTS
    assert w.call("GET", f"/v2.0/quotas/{ALICE}/default", project=ALICE, status=200).json["quota"] == DEFAULTS
    assert w.call("GET", "/v2.0/quotas/tenant", project=ALICE, status=200).json == {"tenant": {"tenant_id": ALICE}}


def test_the_eleventh_router_is_refused(w):
    for i in range(10):
        w.create("routers", project=ALICE, name=f"r{i}")
    before = w.svc.store.snapshot()
    err = error(w.call("POST", "/v2.0/routers", {"router": {"name": "r10"}}, project=ALICE), 409, "OverQuota")
    assert err["message"] == "Quota exceeded for resources: ['router']."
    assert w.svc.store.snapshot() == before
    w.create("routers", project=BOB, name="bobs")            # quotas are per project
    details = w.call("GET", f"/v2.0/quotas/{ALICE}/details", project=ALICE, status=200).json["quota"]
    assert details["router"] == {"limit": 10, "used": 10, "reserved": 0}
    assert details["network"] == {"limit": 100, "used": 0, "reserved": 0}


def test_bulk_create_counts_its_own_records(w):
    w.call("PUT", f"/v2.0/quotas/{ALICE}", {"quota": {"port": 5}}, status=200)
    net = w.create("networks", project=ALICE)
    w.create("subnets", project=ALICE, network_id=net["id"], cidr="10.0.0.0/24", enable_dhcp=False)
    before = w.svc.store.snapshot()
    six = {"ports": [{"network_id": net["id"]} for _ in range(6)]}
    err = error(w.call("POST", "/v2.0/ports", six, project=ALICE), 409, "OverQuota")
    assert err["message"] == "Quota exceeded for resources: ['port']."
    assert w.svc.store.snapshot() == before                  # none of the six
    five = {"ports": [{"network_id": net["id"]} for _ in range(5)]}
    assert len(w.call("POST", "/v2.0/ports", five, project=ALICE, status=201).json["ports"]) == 5
    error(w.call("POST", "/v2.0/ports", {"port": {"network_id": net["id"]}}, project=ALICE), 409, "OverQuota")


def test_a_thousand_port_bulk_within_quota(w):
    w.call("PUT", f"/v2.0/quotas/{ALICE}", {"quota": {"port": 1001}}, status=200)
    net = w.create("networks", project=ALICE)
    w.create("subnets", project=ALICE, network_id=net["id"], cidr="10.0.0.0/20")   # + its DHCP port
    body = {"ports": [{"network_id": net["id"]} for _ in range(1000)]}
    assert len(w.call("POST", "/v2.0/ports", body, project=ALICE, status=201).json["ports"]) == 1000
    error(w.call("POST", "/v2.0/ports", {"port": {"network_id": net["id"]}}, project=ALICE), 409, "OverQuota")


def test_update_reset_list_and_unlimited(w):
    before = w.svc.store.snapshot()
    err = error(w.call("PUT", f"/v2.0/quotas/{ALICE}", {"quota": {"router": 20}}, project=ALICE), 403,
                "PolicyNotAuthorized")
    assert err["message"] == "rule:update_quota is disallowed by policy"
    error(w.call("DELETE", f"/v2.0/quotas/{ALICE}", project=ALICE), 403, "PolicyNotAuthorized")
    error(w.call("GET", "/v2.0/quotas", project=ALICE), 403, "PolicyNotAuthorized")
    error(w.call("GET", f"/v2.0/quotas/{BOB}", project=ALICE), 403, "PolicyNotAuthorized")
    error(w.call("PUT", f"/v2.0/quotas/{ALICE}", {"quota": {"routers": 5}}), 404, "QuotaResourceUnknown")
    error(w.call("PUT", f"/v2.0/quotas/{ALICE}", {"quota": {"router": "many"}}), 400, "InvalidInput")
    error(w.call("PUT", f"/v2.0/quotas/{ALICE}", {"quota": {"router": -2}}), 400, "InvalidInput")
    error(w.call("PUT", f"/v2.0/quotas/{ALICE}", {"router": 1}), 400, "BadRequest")
    assert w.svc.store.snapshot() == before
    assert w.call("GET", "/v2.0/quotas", status=200).json == {"quotas": []}
    shown = w.call("PUT", f"/v2.0/quotas/{ALICE}", {"quota": {"router": 1, "network": -1}}, status=200).json
    assert shown["quota"] == dict(DEFAULTS, router=1, network=-1)
    listed = w.call("GET", "/v2.0/quotas", status=200).json["quotas"]
    assert listed == [dict(DEFAULTS, router=1, network=-1, project_id=ALICE, tenant_id=ALICE)]
    w.create("routers", project=ALICE)
    error(w.call("POST", "/v2.0/routers", {"router": {}}, project=ALICE), 409, "OverQuota")
    # below usage: allowed unless check_limit asks (as the client's `quota set --check-limit`)
    error(w.call("PUT", f"/v2.0/quotas/{ALICE}", {"quota": {"router": 0, "check_limit": True}}), 409,
          "InvalidQuotaValue")
    w.call("PUT", f"/v2.0/quotas/{ALICE}", {"quota": {"router": 0, "check_limit": False}}, status=200)
    assert w.call("DELETE", f"/v2.0/quotas/{ALICE}").status_code == 204
    assert w.call("GET", f"/v2.0/quotas/{ALICE}", project=ALICE, status=200).json["quota"] == DEFAULTS
    w.create("routers", project=ALICE)                        # back to 10


def test_the_noauth_admin_project_starts_unlimited(w):
    default = w.svc.settings.default_project_id
    limits = w.call("GET", f"/v2.0/quotas/{default}", status=200).json["quota"]
    assert set(limits.values()) == {-1}
    for _ in range(11):
        w.create("routers")
    w.call("PUT", f"/v2.0/quotas/{default}", {"quota": {"router": 11}}, status=200)
    error(w.call("POST", "/v2.0/routers", {"router": {}}), 409, "OverQuota")


def test_security_group_quota_counts_the_default_group(w):
    w.call("PUT", f"/v2.0/quotas/{ALICE}", {"quota": {"security_group": 2}}, status=200)
    w.create("security-groups", project=ALICE, name="one")        # + default = 2
    error(w.call("POST", "/v2.0/security-groups", {"security_group": {"name": "two"}}, project=ALICE), 409,
          "OverQuota")


def test_limits_helper_reads_stored_overrides():
    svc = Service(open_store("memory://"))
    assert quotas.limits(svc.store.get, ALICE) == DEFAULTS


def test_quota_count_does_not_rescan_per_record(tmp_path, monkeypatch):
    """O(N) bulk creates: the number of full listings of ports in one bulk POST does not grow with
    its size (the count comes from the transaction's per-project index)."""
    from topology.store import sqlite as sqlite_store
    calls: list[str] = []
    original = sqlite_store.SqliteTxn.list

    def counting(self, kind):
        calls.append(kind)
        return original(self, kind)
    monkeypatch.setattr(sqlite_store.SqliteTxn, "list", counting)
    w = World(Service(open_store(f"sqlite://{tmp_path}/tf.db")))
    w.call("PUT", f"/v2.0/quotas/{ALICE}", {"quota": {"port": 100000}}, status=200)   # counted, not unlimited
    net = w.create("networks", project=ALICE)
    w.create("subnets", project=ALICE, network_id=net["id"], cidr="10.0.0.0/20", enable_dhcp=False)
    listings = []
    for n in (10, 300):
        calls.clear()
        w.call("POST", "/v2.0/ports", {"ports": [{"network_id": net["id"]} for _ in range(n)]}, project=ALICE,
               status=201)
        listings.append(calls.count("port"))
    assert listings[0] == listings[1], listings
    w.svc.store.close()
