"""TopologyView: snapshot build, incremental apply, indexes stay equal to a rebuild."""
from __future__ import annotations

import random

from topology.store import Change
from topology.view import TopologyView
from tests.unit.l2topo import Topo


def _index_state(view: TopologyView) -> dict:
    """Everything observable through the view's indexed queries, for equality checks."""
    state = {}
    for net_id in view.records("network"):
        state[("ports", net_id)] = sorted(p["id"] for p in view.ports_of_network(net_id))
        state[("hosts", net_id)] = sorted(view.hosts_of_network(net_id))
        state[("subnets", net_id)] = sorted(s["id"] for s in view.subnets_of_network(net_id))
    for host in ("c1", "c2", "c3"):
        state[("on_host", host)] = sorted(p["id"] for p in view.ports_on_host(host))
        state[("nets_on", host)] = sorted(view.networks_on_host(host))
        ch = view.chassis_by_name(host)
        state[("chassis", host)] = ch["id"] if ch else None
    for kind in ("network", "port", "chassis"):
        for key in range(0, 40):
            rec = view.by_key(kind, key)
            state[("key", kind, key)] = rec["id"] if rec else None
    for sg in ("sg1", "sg2"):
        state[("members", sg)] = sorted(p["id"] for p in view.ports_of_group(sg))
        state[("rules", sg)] = sorted(r["id"] for r in view.rules_of_group(sg))
    return state


def test_snapshot_and_queries():
    t = Topo()
    ch = t.chassis("c1", "192.0.2.1")
    n = t.network("n1")
    p = t.port(n, "fa:16:3e:00:00:01", "10.0.0.3", "c1")
    view = t.view()
    assert view.revision == t.revision
    assert view.by_key("port", p["_key"]) is view.port(p["id"])
    assert view.by_key("network", n["_key"])["id"] == n["id"]
    assert [x["id"] for x in view.ports_of_network(n["id"])] == [p["id"]]
    assert view.hosts_of_network(n["id"]) == {"c1"}
    assert view.networks_on_host("c1") == {n["id"]}
    assert view.chassis_by_name("c1")["id"] == ch["id"]
    assert view.chassis_by_datapath(int(ch["datapath_id"], 16))["id"] == ch["id"]
    assert view.chassis_by_datapath(ch["datapath_id"])["id"] == ch["id"]
    assert [x["id"] for x in view.ports_by_ip("10.0.0.3", n["id"])] == [p["id"]]
    assert view.ports_by_ip("10.0.0.3", "other") == []


def test_host_presence_follows_binding_changes():
    t = Topo()
    n = t.network("n1")
    p1 = t.port(n, "fa:16:3e:00:00:01", "10.0.0.3", "c1")
    p2 = t.port(n, "fa:16:3e:00:00:02", "10.0.0.4", "c1")
    view = t.view()
    view.apply(Change(99, "port", p1["id"], p1, dict(p1, **{"binding:host_id": "c2"})))
    assert view.hosts_of_network(n["id"]) == {"c1", "c2"}
    view.apply(Change(100, "port", p2["id"], p2, None))
    assert view.hosts_of_network(n["id"]) == {"c2"}
    assert view.networks_on_host("c1") == set()
    assert view.revision == 100


def test_apply_is_idempotent_and_key_reuse_works():
    t = Topo()
    n = t.network("n1")
    p = t.port(n, "fa:16:3e:00:00:01", "10.0.0.3", "c1")
    view = t.view()
    change = Change(5, "port", p["id"], None, p)
    view.apply(change)
    view.apply(change)
    assert len(view.ports_of_network(n["id"])) == 1
    view.apply(Change(6, "port", p["id"], p, None))
    assert view.by_key("port", p["_key"]) is None
    other = dict(p, id="new-port")
    view.apply(Change(7, "port", "new-port", None, other))
    assert view.by_key("port", p["_key"])["id"] == "new-port"


def test_random_changes_match_a_rebuild():
    """After every random change, incremental indexes equal those of a view built from scratch."""
    rng = random.Random(7)
    t = Topo()
    for name in ("c1", "c2", "c3"):
        t.chassis(name, f"192.0.2.{name[-1]}")
    nets = [t.network(f"n{i}") for i in range(4)]
    view = t.view()
    seen = len(t.changes)
    for i in range(300):
        roll = rng.random()
        ports = list(t.data["port"])
        if roll < 0.4 or not ports:
            t.port(rng.choice(nets), f"fa:16:3e:00:01:{i % 256:02x}", f"10.0.{i // 250}.{i % 250}",
                   rng.choice(["", "c1", "c2", "c3"]))
            t.data["port"][t.changes[-1].id]["security_groups"] = [rng.choice(["sg1", "sg2"])]
        elif roll < 0.7:
            t.update("port", rng.choice(ports), **{"binding:host_id": rng.choice(["", "c1", "c2", "c3"]),
                                                   "security_groups": [rng.choice(["sg1", "sg2"])]})
        elif roll < 0.85:
            t.delete("port", rng.choice(ports))
        else:
            t._put("security_group_rule", {"id": f"r{i}", "security_group_id": rng.choice(["sg1", "sg2"])})
        for change in t.changes[seen:]:
            view.apply(change)
        seen = len(t.changes)
        assert _index_state(view) == _index_state(t.view())


def test_extra_index_registered_later_is_built_and_maintained():
    t = Topo()
    n = t.network("n1")
    t.port(n, "fa:16:3e:00:00:01", "10.0.0.3", "c1")
    view = t.view()
    view.add_index("port", "port.mac", lambda r: [r.get("mac_address")])
    assert len(view.find("port.mac", "fa:16:3e:00:00:01")) == 1
    p2 = t.port(n, "fa:16:3e:00:00:02", "10.0.0.4")
    view.apply(t.changes[-1])
    assert [x["id"] for x in view.find("port.mac", "fa:16:3e:00:00:02")] == [p2["id"]]


def test_thousand_port_changes_are_cheap():
    """Not a timing assertion: counts index work — apply must not rescan all ports per change."""
    t = Topo()
    n = t.network("n1")
    view = t.view()
    calls = {"n": 0}

    def counting(r):
        calls["n"] += 1
        return [r.get("mac_address")]

    view.add_index("port", "port.mac.count", counting)
    for i in range(1000):
        t.port(n, f"fa:16:3e:00:{i // 256:02x}:{i % 256:02x}", f"10.0.{i // 250}.{i % 250}", "c1")
        view.apply(t.changes[-1])
    assert calls["n"] <= 2 * 1000  # O(1) per change (old + new record), not O(ports)
    assert len(view.ports_of_network(n["id"])) == 1000
