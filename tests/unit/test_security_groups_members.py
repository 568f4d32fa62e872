"""Remote-group member addresses (conjunction clause 3) owned by the member ports.

Why these tests: a port joining a group must recompile O(1) owners, yet every chassis must end
up with exactly what a full compile gives — also when the group first appears on / disappears
from a chassis (all its members' addresses must follow), when two members share an address (one
flow key, one owner), and when an address is also a whole rule match of the group.
"""
from __future__ import annotations

from flows import compiler
from flows import security_groups as sg
from flows.port_security import port_cookie
from flows.simulator import Simulator
from tests.unit.enginedrive import EngineCloud
from tests.unit.l2topo import ctx
from tests.unit.test_security_groups_topo import SecTopo, apps, packet


class Cloud:
    """Drives the incremental engine like controller.core (tests/unit/enginedrive.py): store
    changes, then location events per chassis."""

    def __init__(self, topo: SecTopo, local: dict[str, dict[str, int]]) -> None:
        self.t = topo
        self.seen = len(topo.changes)
        self.local = {name: dict(ports) for name, ports in local.items()}
        self.engine = EngineCloud(apps(), topo.view(), {name: self._ctx(name) for name in local})
        self.view = self.engine.view
        self.last_owners: set[int] = set()

    @property
    def state(self):
        return self.engine.state

    @property
    def ctx(self):
        return self.engine.ctx

    def _ctx(self, name: str):
        return ctx(name, dict(self.local[name]), tunnel_ip=f"192.0.2.{len(name)}{name[-1]}")

    def step(self, plug: dict[str, dict[str, int | None]] | None = None) -> set[int]:
        """Apply new store changes, then (un)plug ports {chassis: {port id: ofport or None}};
        returns the owners recompiled on any chassis."""
        changes = self.t.changes[self.seen:]
        self.seen = len(self.t.changes)
        for name, ports in (plug or {}).items():
            for pid, ofport in ports.items():
                if ofport is None:
                    self.local[name].pop(pid, None)
                else:
                    self.local[name][pid] = ofport
        contexts = {name: self._ctx(name) for name in (plug or {})}
        self.last_owners = self.engine.step(changes, contexts)
        return self.last_owners

    def app_owners(self, app_name: str, port_id: str) -> set[int]:
        """What one app alone names for a port's latest store change plus its location event."""
        app = next(a for a in self.engine.compiler.apps if getattr(a, "name", "") == app_name)
        change = next(c for c in reversed(self.t.changes) if c.id == port_id)
        port = self.view.port(port_id)
        relocated = type(change)(change.revision, "port", port_id, port, port)
        return set(app.owners_for_change(self.view, change)) | set(app.owners_for_change(self.view, relocated))

    def check(self) -> None:
        """Incremental state == a from-scratch compile by fresh apps on a fresh view (nothing the
        incremental run remembered can leak into the reference)."""
        for name, c in self.ctx.items():
            full = compiler.compile_chassis(apps(), self.t.view(), c)
            assert self.state[name] == full, name


def test_a_member_joining_an_active_group_recompiles_o1_owners():
    t = SecTopo()
    net = t.network("n1")
    d = t.default_group()
    members = [t.vm(net, i, [d]) for i in range(1, 31)]
    cloud = Cloud(t, {"c1": {p["id"]: i for i, p in enumerate(members, 1)}})
    new = t.vm(net, 40, [d])
    cloud.step({"c1": {new["id"]: 40}})
    cloud.check()
    others = {port_cookie(p) for p in members}
    assert not cloud.app_owners("security_groups", new["id"]) & others, "other members were named"
    assert not cloud.last_owners & others, "other members were recompiled"
    flows = cloud.state["c1"][port_cookie(new)]
    clause3 = [f for f in flows if any(a.clause == 3 for a in f.actions if type(a).__name__ == "Conjunction")]
    assert len(clause3) == 1  # its one IPv4 address in the default group's ingress clause


def test_incremental_equals_full_across_chassis_and_address_sharing():
    t = SecTopo()
    net = t.network("n1")
    d, web = t.default_group(), t.group("web")
    a = t.vm(net, 1, [d])
    cloud = Cloud(t, {"c1": {a["id"]: 1}, "c2": {}})
    steps = [
        # the group appears on c2 with its first member: a's address must follow there
        lambda: (t.vm(net, 2, [d], host="c2"), {"c2": {}}),
        lambda: ({}, {"c2": {next(p for p in t.data["port"].values() if p["mac_address"].endswith(":02"))["id"]: 2}}),
        lambda: (t.rule(web, "ingress", protocol="tcp", port_range_min=80, port_range_max=80, remote_group=d), {}),
        lambda: (t.vm(net, 3, [d, web]), {"c1": {}}),
        lambda: ({}, {"c1": {next(p for p in t.data["port"].values() if p["mac_address"].endswith(":03"))["id"]: 3}}),
        # port 3 also claims a's address (a VIP): one flow, owned by the lower key, both conjunctions
        lambda: (t.update("port", next(p for p in t.data["port"].values() if p["mac_address"].endswith(":03"))["id"],
                          allowed_address_pairs=[{"ip_address": "10.0.0.1"}]), {}),
        # a rule matching exactly a member address: the group owns that key
        lambda: (t.rule(d, "ingress", remote_ip_prefix="10.0.0.1/32"), {}),
        lambda: ({}, {"c1": {a["id"]: None}}),
        lambda: (t.delete("port", a["id"]), {}),
        # the last member leaves c2: the group and every member address vanish there
        lambda: ({}, {"c2": {next(p for p in t.data["port"].values()
                                  if p["mac_address"].endswith(":02"))["id"]: None}}),
        lambda: (t.update("port", next(p for p in t.data["port"].values() if p["mac_address"].endswith(":03"))["id"],
                          security_groups=[web["id"]]), {}),
    ]
    for step in steps:
        _, plug = step()
        cloud.step(plug)
        cloud.check()
    assert sg.group_cookie(d) not in cloud.state["c2"]


def test_shared_address_is_one_flow_with_both_conjunctions():
    t = SecTopo()
    net = t.network("n1")
    d, peers = t.default_group(), t.group("peers")
    t.rule(d, "ingress", protocol="udp", remote_group=peers)
    a = t.vm(net, 1, [d])
    b = t.vm(net, 2, [peers], allowed_address_pairs=[{"ip_address": "10.0.0.1"}])
    local = {a["id"]: 1, b["id"]: 2}
    flows = compiler.compile_chassis(apps(), t.view(), ctx("c1", local, tunnel_ip="192.0.2.1"))
    prio = sg.group_priority(d["_key"])
    holders = [(o, f) for o, fl in flows.items() for f in fl if f.priority == prio
               and ("ipv4_src", 0x0A000001, None) in f.match]
    assert len(holders) == 1
    owner, f = holders[0]
    assert owner == port_cookie(min(a, b, key=lambda p: p["_key"]))
    assert {c.conj_id & 0xFFFF for c in f.actions} == {d["_key"], peers["_key"]}
    Simulator(compiler.all_flows(flows))  # no duplicate keys
    assert packet  # (helper import kept for symmetry with the other security tests)
