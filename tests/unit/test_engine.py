"""The explicit incremental engine (flows/engine.py): what a compile read decides what recompiles.

Why these tests: the engine replaced per-app memos, so "incremental == full compile" must hold
for any change sequence with no reset of anything (random sequences, hypothesis), an input change
must reach the owners that read it even when no app names them, facts must cut off early, and
one more port must recompile O(1) owners however big its network is.
"""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.registry import build_context
from flows import engine
from flows.engine import ChassisEngine, RecordingView, changed_inputs, fact, recording_context
from flows.tables import Owner, cookie
from flows.view_helpers import network_present
from tests.unit.enginedrive import EngineCloud
from tests.unit.l2topo import ctx
from tests.unit.test_security_groups_topo import SecTopo, apps

TUNNEL_IP = {"c1": "192.0.2.11", "c2": "192.0.2.12"}


class World:
    """A SecTopo + two chassis driven through EngineCloud, with random-step helpers."""

    def __init__(self, networks: int = 2) -> None:
        self.t = SecTopo()
        for name, ip in TUNNEL_IP.items():
            self.t.chassis(name, ip)
        self.nets = [self.t.network(f"n{i}") for i in range(networks)]
        self.nets.append(self.t.network("v", "vlan", seg=100, physnet="physnet1"))
        for net in self.nets:  # the ports' fixed IPs name subnet "s-<network id>" (l2topo.Topo.port)
            self.t._put("subnet", {"id": "s-" + net["id"], "network_id": net["id"], "cidr": "10.0.0.0/24",
                                   "ip_version": 4, "enable_dhcp": True, "gateway_ip": "10.0.0.254"})
        self.default = self.t.default_group()
        self.web = self.t.group("web")
        self.t.rule(self.web, "ingress", protocol="tcp", port_range_min=80, port_range_max=80,
                    remote_group=self.default)
        self.n = 0
        self.local: dict[str, dict[str, int]] = {"c1": {}, "c2": {}}
        self.seen = len(self.t.changes)
        self.cloud = EngineCloud(apps(), self.t.view(), {c: self.context(c) for c in self.local})

    def context(self, name: str):
        """Plugged ports, plus the VM ports bound here and not plugged (ofport None), as the
        controller's build_context makes it."""
        bound = [p for p in self.t.data["port"].values() if p.get("binding:host_id") == name]
        local, _ = build_context(name, 1, None, {}, lambda _n: [], bound)
        return ctx(name, {**local.local_ports, **self.local[name]}, tunnel_ip=TUNNEL_IP[name])

    def ports(self) -> list[dict]:
        return sorted(self.t.data["port"].values(), key=lambda p: p["_key"])

    def step(self, plug: dict | None = None) -> set[int]:
        for name, ports in (plug or {}).items():
            for pid, ofport in ports.items():
                if ofport is None:
                    self.local[name].pop(pid, None)
                else:
                    self.local[name][pid] = ofport
        changes = self.t.changes[self.seen:]
        self.seen = len(self.t.changes)
        # every chassis: a binding written to the store changes what is bound there (controller.core
        # rebuilds every context after port changes)
        return self.cloud.step(changes, {name: self.context(name) for name in self.local})

    def assert_equals_full(self) -> None:
        assert self.cloud.differences(apps, self.t.view()) == {}

    # ------------------------------------------------------------ one random action
    def act(self, what: int, a: int, b: int) -> dict | None:
        """Apply one action chosen by small ints; returns a plug event or None."""
        ports = self.ports()
        host = ("c1", "c2")[b % 2]
        if what == 0 or not ports:  # a new port, maybe plugged in
            self.n += 1
            groups = [[self.default], [self.default, self.web], []][a % 3]
            p = self.t.vm(self.nets[a % len(self.nets)], self.n % 250 + 1, groups, host=host,
                          port_security_enabled=bool(groups) or a % 2 == 0)
            return {host: {p["id"]: self.n}} if b % 3 else None
        p = ports[a % len(ports)]
        if what == 1:  # plug / unplug / move its tap
            where = next((c for c, ports_ in self.local.items() if p["id"] in ports_), None)
            if where is not None:
                return {where: {p["id"]: None}}
            return {host: {p["id"]: 100 + p["_key"]}}
        if what == 2:  # the binder's write
            self.t.update("port", p["id"], **{"binding:host_id": host, "status": "ACTIVE"})
        elif what == 3:
            self.t.update("port", p["id"], admin_state_up=not p.get("admin_state_up", True))
        elif what == 4:
            groups = [[self.default["id"]], [self.web["id"]], [], [self.default["id"], self.web["id"]]][b % 4]
            self.t.update("port", p["id"], security_groups=groups, port_security_enabled=bool(groups))
        elif what == 5:  # an address shared with another port (a VIP)
            other = ports[b % len(ports)]
            ip = other["fixed_ips"][0]["ip_address"]
            self.t.update("port", p["id"], allowed_address_pairs=[{"ip_address": ip}])
        elif what == 6:
            for name in self.local:
                self.local[name].pop(p["id"], None)
            self.t.delete("port", p["id"])
            return {name: {} for name in self.local}
        elif what == 7:
            net = self.nets[b % len(self.nets)]
            self.t.update("network", net["id"], admin_state_up=not net.get("admin_state_up", True))
        elif what == 8:
            ch = next(c for c in self.t.data["chassis"].values() if c["name"] == host)
            self.t.update("chassis", ch["id"], tunnel_ip=f"192.0.2.{50 + a % 50}")
        elif what == 9 and a % 2:  # DHCP on / off on a port's subnet
            sn = self.t.data["subnet"]["s-" + p["network_id"]]
            self.t.update("subnet", sn["id"], enable_dhcp=not sn["enable_dhcp"])
        elif what == 9:
            rules = [r for r in self.t.data["security_group_rule"].values()
                     if r["security_group_id"] == self.web["id"]]
            if rules:
                self.t.delete("security_group_rule", rules[0]["id"])
            else:
                self.t.rule(self.web, "ingress", protocol="udp", remote_group=self.default)
        return None


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(st.tuples(st.integers(0, 9), st.integers(0, 50), st.integers(0, 50)),
                         min_size=1, max_size=4), min_size=1, max_size=12))
def test_incremental_equals_full_after_random_change_sequences(batches):
    """Random batches of store changes and tap events on two chassis; after every batch each
    chassis' incremental state equals a fresh compile (fresh apps, fresh view). Nothing reset."""
    w = World()
    for batch in batches:
        plug: dict = {}
        for what, a, b in batch:
            event = w.act(what, a, b)
            for name, ports in (event or {}).items():
                plug.setdefault(name, {}).update(ports)
        w.step(plug)
        w.assert_equals_full()


def test_an_input_change_recompiles_its_reader_even_if_no_app_names_it(monkeypatch):
    """The reverse index, not the apps' guesses: with owners_for_change answering nothing, a
    chassis' tunnel IP change still reaches the remote port entries that read it."""
    w = World()
    here = w.t.vm(w.nets[0], 1, [], host="c1", port_security_enabled=False)
    there = w.t.vm(w.nets[0], 2, [], host="c2", port_security_enabled=False)
    w.step({"c1": {here["id"]: 1}, "c2": {there["id"]: 2}})
    w.assert_equals_full()
    monkeypatch.setattr(w.cloud.compiler, "owners_for_change", lambda view, change: set())
    c2 = next(c for c in w.t.data["chassis"].values() if c["name"] == "c2")
    w.t.update("chassis", c2["id"], tunnel_ip="192.0.2.99")
    compiled = w.step()
    assert cookie(Owner.PORT, there["_key"]) in compiled  # its tunnel entry on c1 read c2's record
    assert cookie(Owner.PORT, here["_key"]) not in compiled
    w.assert_equals_full()


def test_one_more_port_recompiles_a_constant_number_of_owners_whatever_the_network_size():
    """One more port (tap first, then the POST, then the binder's write) on a network that is
    already on the chassis: the same small number of compiles for 10 or 60 ports in it."""
    counts = []
    for size in (10, 60):
        w = World(networks=1)
        net = w.nets[0]
        for i in range(1, size + 1):
            w.t.vm(net, i, [w.default], host="c1")
        w.step({"c1": {p["id"]: p["_key"] for p in w.ports()}})
        w.assert_equals_full()
        before = w.cloud.compiles()
        new = w.t.vm(net, 200, [w.default], host="c1")
        w.step({"c1": {new["id"]: 200}})
        w.t.update("port", new["id"], **{"binding:host_id": "c1", "status": "ACTIVE"})
        w.step()
        w.assert_equals_full()
        counts.append(w.cloud.compiles() - before)
    assert counts[0] == counts[1], counts
    # the port, its network, the default group (rules unchanged but named), per chassis, a few times
    assert counts[0] <= 16, counts


def test_a_fact_cuts_off_early_and_flips_reach_its_readers():
    """network_present is read by every port of the network; a new port re-evaluates it but
    recompiles nobody else, and the network vanishing recompiles all its readers."""
    w = World(networks=1)
    net = w.nets[0]
    ports = [w.t.vm(net, i, [], host="c1", port_security_enabled=False) for i in range(1, 6)]
    w.step({"c1": {p["id"]: i for i, p in enumerate(ports, 1)}})
    eng = w.cloud.engines["c2"]
    key = ("fact", "flows.view_helpers.network_present", (net["id"],))
    assert key not in eng.facts  # nothing of the network is on c2 yet
    far = w.t.vm(net, 9, [], host="c2", port_security_enabled=False)
    w.step({"c2": {far["id"]: 9}})
    assert eng.facts[key].value is True
    assert {cookie(Owner.PORT, p["_key"]) for p in ports} <= eng.readers_of(key)
    w.assert_equals_full()
    w.t.update("port", far["id"], **{"binding:host_id": ""})  # unplugged and unbound (a port bound
    w.step({"c2": {far["id"]: None}})  # there stays): the network vanishes from c2, its readers recompile
    w.assert_equals_full()
    assert not [o for o in w.cloud.state["c2"] if o >> 56 == Owner.PORT]


def test_a_fact_read_by_one_owner_survives_its_recompile():
    eng = ChassisEngine()
    calls = []

    @fact
    def lonely(view, ctx, x):
        calls.append(x)
        return len(ctx.local_ports)

    class OneOwner:
        def compile_owner(self, view, ctx, owner):
            lonely(view, ctx, 1)
            return frozenset()

        def owners_for_chassis(self, view, ctx):
            return {7}

    w = World(networks=1)
    c = w.context("c1")
    eng.compile(OneOwner(), w.cloud.view, c, 7)
    eng.relist_needed = False
    eng.compile(OneOwner(), w.cloud.view, c, 7)
    assert calls == [1] and not eng.relist_needed
    eng.forget(7)
    assert not eng.facts and not eng.readers and not eng.fact_readers


def test_owners_reading_the_same_input_share_one_tuple_of_it():
    """Each read makes a new input tuple; an input several owners read is kept once or twice
    (the first reader's and the canonical one), not once per owner (memory, issue 14), and the
    reverse index is unchanged by it. Forgetting every reader forgets it."""
    eng = ChassisEngine()
    w = World(networks=1)
    net = w.nets[0]["id"]

    class Readers:
        def compile_owner(self, view, ctx, owner):
            view.get("network", net)
            view.get("port", f"p{owner}")
            return frozenset()

        def owners_for_chassis(self, view, ctx):
            return set(range(1, 6))

    c = w.context("c1")
    for owner in range(1, 6):
        eng.compile(Readers(), w.cloud.view, c, owner)
    shared = ("rec", "network", net)
    held = {id(i) for t in eng.reads.values() for i in t if i == shared}
    assert len(held) <= 2
    assert eng.readers_of(shared) == set(range(1, 6))
    assert eng.readers_of(("rec", "port", "p3")) == {3}
    eng.compile(Readers(), w.cloud.view, c, 3)  # a recompile reading the same: nothing moves
    assert eng.readers_of(shared) == set(range(1, 6))
    for owner in range(1, 6):
        eng.forget(owner)
    assert not eng.readers and not eng._canon


def test_recording_view_names_what_was_read():
    w = World(networks=1)
    p = w.t.vm(w.nets[0], 1, [], host="c2")  # bound to c2, read from c1: not here
    w.step()
    reads: set = set()
    view = RecordingView(w.cloud.view, w.context("c1"), reads, None)
    c = recording_context(w.context("c1"), reads)
    view.port(p["id"])
    view.ports_of_network(w.nets[0]["id"])
    view.port_ids_of_network(w.nets[0]["id"])
    _ = p["id"] in c.local_ports
    list(c.local_ports)
    assert network_present(view, c, w.nets[0]["id"]) is False  # evaluated inline: no engine
    assert {("rec", "port", p["id"]), ("idx", "port.network", w.nets[0]["id"]),
            ("ids", "port.network", w.nets[0]["id"]), ("local", p["id"]), ("local*",)} <= reads
    with pytest.raises(AttributeError):
        view._view_only_method  # noqa: B018 — anything unrecorded is refused


def test_changed_inputs_separate_membership_from_content():
    w = World(networks=2)
    p = w.t.vm(w.nets[0], 1, [], host="c1")
    w.step()
    view = w.cloud.view
    w.t.update("port", p["id"], status="ACTIVE")
    content = changed_inputs(view, w.t.changes[-1])
    assert ("idx", "port.network", w.nets[0]["id"]) in content
    assert ("ids", "port.network", w.nets[0]["id"]) not in content  # membership unchanged
    w.step()
    w.t.update("port", p["id"], network_id=w.nets[1]["id"], **{"binding:host_id": "c2"})
    moved = changed_inputs(view, w.t.changes[-1])
    assert {("ids", "port.network", w.nets[0]["id"]), ("ids", "port.network", w.nets[1]["id"]),
            ("hosts", w.nets[0]["id"]), ("hosts", w.nets[1]["id"]), ("nets", "c1"), ("nets", "c2")} <= moved
    assert engine.location_inputs({"a": 1}, {"a": 2}) == {("ofport", "a"), ("ofport*",)}
    assert engine.location_inputs({"a": 1}, {}) == {("local", "a"), ("ofport", "a"), ("local*",), ("ofport*",)}
    # bound here first (ofport None), then plugged: only the ofport's readers
    assert engine.location_inputs({}, {"a": None}) == {("local", "a"), ("local*",), ("ofport*",)}
    assert engine.location_inputs({"a": None}, {"a": 7}) == {("ofport", "a"), ("ofport*",)}


def test_the_core_recompiles_o1_owners_for_one_more_port_with_check_mode_clean(monkeypatch):
    """The same through controller.core.Core against the fake switch, check mode on: a port
    joining a network of many ports (tap first, then the store write and the binder's write),
    with other networks on the chassis (a tap appearing must not recompile their owners)."""
    from controller import core as core_mod
    from controller.registry import SwitchPort
    from tests.unit.test_core_faults import DPID_A, Rig

    monkeypatch.setattr(core_mod, "RETRY_FIRST", 0.05)
    r = Rig()
    try:
        net_id = r.ports[0]["network_id"]
        r.ports += [r.service.create_port({"network_id": net_id}) for _ in range(20)]
        for i in range(6):  # other networks here: none of theirs may recompile
            other = r.service.create_network({"name": f"other{i}"})
            r.service.create_subnet({"network_id": other["id"], "cidr": f"10.{i + 1}.0.0/24", "ip_version": 4})
            r.ports += [r.service.create_port({"network_id": other["id"]}) for _ in range(3)]
        sw = r.connect(DPID_A, r.ports)
        r.settle()
        r.wait_healthy(DPID_A)
        eng = r.core.registry.get(DPID_A).engine
        before = eng.compiles
        port = r.service.create_port({"network_id": net_id})
        r.core.port_status(DPID_A, "add", SwitchPort("tap" + port["id"][:11], 99, True))
        r.settle()
        r.wait_healthy(DPID_A)
        # 6 here: the port, its network, the default group, in two batches; not O(ports) nor O(networks)
        assert eng.compiles - before <= 8, eng.compiles - before
        assert sw.table == r.expected(DPID_A)
        assert r.core.check_failures == 0
    finally:
        r.close()


def test_a_status_only_port_write_compiles_nothing():
    """The binder's ACTIVE/DOWN write changes fields no compiler reads; anything else counts."""
    from topology.store import Change
    old = {"id": "p", "status": "DOWN", "binding:host_id": "c1", "revision_number": 1, "updated_at": "t1"}
    active = dict(old, status="ACTIVE", revision_number=2, updated_at="t2")
    assert engine.compiles_nothing(Change(5, "port", "p", old, active))
    assert not engine.compiles_nothing(Change(5, "port", "p", old, dict(active, **{"binding:host_id": "c2"})))
    assert not engine.compiles_nothing(Change(5, "port", "p", None, active))  # created
    assert not engine.compiles_nothing(Change(5, "port", "p", old, None))     # deleted
    assert not engine.compiles_nothing(Change(5, "network", "p", old, active))
