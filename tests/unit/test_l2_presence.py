"""The other ports of a network are recompiled only when the network appears on / vanishes from
a chassis (their remote entries follow its presence), and incremental == full compile throughout.

Why: every new port used to recompile all ports of its network (20,000 recompiles for 1,000
ports in 50 networks). The incremental engine (flows/engine.py) now decides: the other ports read
the network's presence on the chassis as a fact, which a new port re-evaluates without flipping.
"""
from __future__ import annotations

from flows.tables import Owner, cookie
from tests.unit.test_security_groups_members import Cloud
from tests.unit.test_security_groups_topo import SecTopo


def mac(i: int) -> str:
    return f"fa:16:3e:00:01:{i:02x}"


def setup(ntype: str = "vxlan", **net):
    t = SecTopo()
    t.chassis("c1", "192.0.2.21")
    t.chassis("c2", "192.0.2.22")
    n = t.network("n", ntype, **net)
    ports = [t.port(n, mac(i), f"10.0.0.{i}", host="c1") for i in range(1, 6)]
    cloud = Cloud(t, {"c1": {p["id"]: i for i, p in enumerate(ports, 1)}, "c2": {}})
    return t, n, ports, cloud


def test_one_more_port_on_a_present_network_recompiles_only_itself():
    t, n, ports, cloud = setup()
    there = t.port(n, mac(8), "10.0.0.8", host="c2")
    cloud.step({"c2": {there["id"]: 8}})  # the network is on every chassis now
    cloud.check()
    new = t.port(n, mac(9), "10.0.0.9")
    cloud.step({"c1": {new["id"]: 9}})
    cloud.check()
    others = {cookie(Owner.PORT, p["_key"]) for p in ports + [there]}
    for app in ("l2", "tunnels"):
        assert not cloud.app_owners(app, new["id"]) & others, app
    t.update("port", new["id"], **{"binding:host_id": "c1", "status": "ACTIVE"})  # the binder's write
    assert not cloud.step() & others
    cloud.check()


def test_network_appearing_on_and_vanishing_from_a_chassis():
    for ntype, extra in (("vxlan", {}), ("vlan", {"seg": 100, "physnet": "physnet1"})):
        t, n, ports, cloud = setup(ntype, **extra)
        first = t.port(n, mac(20), "10.0.0.20")
        cloud.step()
        cloud.check()
        cloud.step({"c2": {first["id"]: 20}})  # the network appears on c2: c1's ports follow there
        cloud.check()
        remote = [f for o, fl in cloud.state["c2"].items() if o in {cookie(Owner.PORT, p["_key"]) for p in ports}
                  for f in fl]
        assert remote, ntype
        t.update("port", first["id"], **{"binding:host_id": "c2"})
        cloud.step()
        cloud.check()
        second = t.port(n, mac(21), "10.0.0.21", host="c2")
        cloud.step({"c2": {second["id"]: 21}})
        cloud.check()
        cloud.step({"c2": {first["id"]: None}})
        cloud.check()
        t.delete("port", second["id"])  # the last port on c2: nothing of the network stays there
        cloud.step({"c2": {second["id"]: None}})
        cloud.check()
        assert not [o for o in cloud.state["c2"] if o >> 56 == Owner.PORT], ntype
        t.delete("port", ports[0]["id"])
        cloud.step({"c1": {ports[0]["id"]: None}})
        cloud.check()
