"""Core + Reconciler against a fake switch, with faults injected: each ends in a resync or an
unhealthy datapath that heals, never in missing or stale flows.

The oracle is a from-scratch compile with fresh app instances over the core's own view: after
the fault clears, the switch's table must equal it exactly, and every datapath must say healthy.
"""
from __future__ import annotations

import gc
import threading
import time

import pytest

from apps.registry import default_apps
from controller import core as core_mod
from controller import heap
from controller.core import Core, controller_view
from controller.registry import SwitchPort
from flows import compiler
from flows.tables import OWNER_SHIFT, Owner
from tests.unit.fakeswitch import FakeSwitch
from topology.store.backends import open_store
from topology.model.service import Service
from topology.model.settings import Settings

DPID_A, DPID_B = 0xA1, 0xB2


class Rig:
    def __init__(self) -> None:
        self.store = open_store("memory://")
        self.service = Service(self.store, Settings())
        self.core = Core(self.store, self.service, default_apps(), Settings(), feed_timeout=0.05,
                         check_with=default_apps)  # check mode: every batch re-done from scratch
        self.switches: dict[int, FakeSwitch] = {}
        net = self.service.create_network({"name": "n"})
        self.service.create_subnet({"network_id": net["id"], "cidr": "10.0.0.0/24", "ip_version": 4})
        self.ports = [self.service.create_port({"network_id": net["id"]}) for _ in range(4)]
        self.core.start()

    def connect(self, dpid: int, ports: list[dict], taps: list[SwitchPort] | None = None) -> FakeSwitch:
        """The switch `dpid` (re)connects with a tap per port (ofports 10, 11, …), or with `taps`."""
        sw = self.switches.get(dpid) or FakeSwitch.for_core(self.core, dpid)
        sw.connected = True
        self.switches[dpid] = sw
        self.core.attach_datapath(sw, dpid)
        self.core.registry.get(dpid).reconciler.timeout = 0.3
        self.core.datapath_connected(sw, dpid, self.taps(ports) if taps is None else taps)
        return sw

    @staticmethod
    def taps(ports: list[dict]) -> list[SwitchPort]:
        """A tap per port, named as Nova names them, on ofports 10, 11, …"""
        return [SwitchPort("tap" + p["id"][:11], i + 10, True) for i, p in enumerate(ports)]

    def restart_core(self, sole_writer: bool = True, **core_kw) -> None:
        """A new controller process: a new Core on the same store, the switches (which kept
        their flows: fail-mode secure) answering it."""
        self.core.stop()
        self.core = Core(self.store, self.service, default_apps(), Settings(), feed_timeout=0.05, **core_kw)
        self.core.sole_writer = sole_writer
        self.core.start()
        for dpid, sw in self.switches.items():
            sw.on_error = lambda err, d=dpid: self.core.on_error(d, err)
            sw.on_barrier = lambda xid, d=dpid: self.core.on_barrier(d, xid)
            sw.on_flow_stats = lambda xid, body, more, d=dpid: self.core.on_flow_stats(d, xid, body, more)

    def settle(self, timeout: float = 10.0) -> None:
        """Until the core has applied every store change and its queue is empty."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rev = self.store.snapshot()[0]
            if self.core._rev >= rev and self.core.stats()["idle"]:
                time.sleep(0.05)
                if self.core.stats()["idle"]:
                    return
            time.sleep(0.02)
        raise AssertionError("core did not settle")

    def expected(self, dpid: int) -> dict[tuple, tuple] | None:
        """What a fresh controller would install: new view from the store, new app instances."""
        e = self.core.registry.get(dpid)
        if e is None or e.ctx is None:
            return None
        rev, data = self.store.snapshot()
        view = controller_view(rev, data)
        fresh = compiler.compile_chassis(default_apps(), view, e.ctx)
        enc = self.core.encoder
        return {f.key: enc.body(f) for flows in fresh.values() for f in flows}

    def health(self, dpid: int) -> dict:
        return self.core.stats()["datapaths"][f"{dpid:016x}"]

    def wait_healthy(self, dpid: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.health(dpid)["healthy"] and self.switches[dpid].table == self.expected(dpid):
                return
            time.sleep(0.05)
        raise AssertionError(f"datapath {dpid:#x} did not heal: {self.health(dpid)['problems']}")

    def close(self) -> None:
        self.core.stop()
        time.sleep(0.1)  # the feed thread's last read (feed_timeout) ends before the store closes
        self.store.close()


@pytest.fixture
def rig(monkeypatch):
    monkeypatch.setattr(core_mod, "RETRY_FIRST", 0.05)
    monkeypatch.setattr(core_mod, "RETRY_MAX", 0.2)
    r = Rig()
    yield r
    r.close()
    assert r.core.check_failures == 0, "check mode found the incremental compile differing from a fresh one"


def test_check_mode_catches_an_owner_the_incremental_engine_missed(monkeypatch):
    """The check can fail: an engine that loses a change's inputs (and owners_for_change that
    forgets its owner) leaves stale flows behind."""
    monkeypatch.setattr(core_mod, "RETRY_FIRST", 0.05)
    r = Rig()
    try:
        r.connect(DPID_A, r.ports[:2])
        r.settle()
        assert r.core.check_failures == 0
        monkeypatch.setattr(r.core.compiler, "owners_for_change", lambda view, change: set())
        monkeypatch.setattr(core_mod.engine, "changed_inputs", lambda view, change: set())
        r.service.update("port", r.ports[0]["id"], {"port_security_enabled": False, "security_groups": []})
        r.settle()
        assert r.core.check_failures >= 1
        assert r.core.check_compile()  # names what differs
    finally:
        r.close()


def port_owner_of(table: dict, kind: Owner) -> set[int]:
    return {body[0] for body in table.values() if body[0] >> OWNER_SHIFT == kind}


def test_clean_start_matches_a_fresh_compile(rig):
    sw = rig.connect(DPID_A, rig.ports[:2])
    rig.settle()
    assert sw.table and sw.table == rig.expected(DPID_A)
    assert rig.health(DPID_A)["healthy"]


def test_encode_error_in_one_owner_withdraws_it_keeps_the_rest_then_heals(rig):
    enc = rig.core.encoder
    real_encode = enc.encoded_with_meters  # what Reconciler.set_owner encodes each flow with
    victim = {"cookie": None}

    def encode(f):
        if victim["cookie"] is None and f.cookie >> OWNER_SHIFT == Owner.PORT:
            victim["cookie"] = f.cookie
        if f.cookie == victim["cookie"]:
            raise ValueError("reg7 value 1099511627776 does not fit 32 bits")
        return real_encode(f)

    enc.encoded_with_meters = encode
    sw = rig.connect(DPID_A, rig.ports[:2])
    rig.settle()
    enc.encoded_with_meters = real_encode
    bad = victim["cookie"]
    assert bad is not None
    # the broken owner has no flow (fail closed), every other owner's flows are on the switch
    expected = rig.expected(DPID_A)
    assert all(body[0] != bad for body in sw.table.values())
    assert {k: v for k, v in expected.items() if v[0] != bad}.items() <= sw.table.items() or \
        rig.health(DPID_A)["healthy"]  # the retry may already have healed it
    rig.wait_healthy(DPID_A)
    assert rig.health(DPID_A)["compile_errors"] >= 1


def test_encode_error_reported_unhealthy_while_it_lasts(rig):
    enc = rig.core.encoder
    real_encode = enc.encoded_with_meters
    enc.encoded_with_meters = lambda f: (_ for _ in ()).throw(ValueError("boom")) \
        if f.cookie >> OWNER_SHIFT == Owner.PORT else real_encode(f)
    sw = rig.connect(DPID_A, rig.ports[:2])
    rig.settle()
    time.sleep(0.3)  # several retries, all failing
    h = rig.health(DPID_A)
    assert not h["healthy"] and any("compile failed" in p for p in h["problems"])
    assert h["compile_errors"] >= 2  # retried
    assert not port_owner_of(sw.table, Owner.PORT)
    enc.encoded_with_meters = real_encode
    rig.wait_healthy(DPID_A)


def test_compile_exception_in_one_app_withdraws_its_owner_and_retries(rig, monkeypatch):
    real = rig.core.compiler.compile_owner
    broken = {"on": True, "owner": None}

    def compile_owner(view, ctx, owner):
        if broken["on"] and owner >> OWNER_SHIFT == Owner.PORT and broken["owner"] in (None, owner):
            broken["owner"] = owner
            raise RuntimeError("app bug")
        return real(view, ctx, owner)

    monkeypatch.setattr(rig.core.compiler, "compile_owner", compile_owner)
    sw = rig.connect(DPID_A, rig.ports[:2])
    rig.settle()
    assert broken["owner"] not in port_owner_of(sw.table, Owner.PORT)
    assert port_owner_of(sw.table, Owner.PORT)  # the other port's flows are there
    assert not rig.health(DPID_A)["healthy"]
    broken["on"] = False
    rig.wait_healthy(DPID_A)


def test_compile_failure_after_a_change_does_not_keep_stale_flows(rig, monkeypatch):
    """A port that changes and then fails to compile loses its flows; it never keeps the old ones."""
    sw = rig.connect(DPID_A, rig.ports[:2])
    rig.settle()
    before = dict(sw.table)
    real = rig.core.compiler.compile_owner
    fail = {"on": True}
    monkeypatch.setattr(rig.core.compiler, "compile_owner",
                        lambda v, c, o: (_ for _ in ()).throw(RuntimeError("bug")) if fail["on"] else real(v, c, o))
    rig.service.update("port", rig.ports[0]["id"], {"port_security_enabled": False, "security_groups": []})
    rig.settle()
    changed_owners = {b[0] for k, b in before.items() if sw.table.get(k) != b}
    assert changed_owners  # something was withdrawn rather than kept
    assert not rig.health(DPID_A)["healthy"]
    fail["on"] = False
    rig.wait_healthy(DPID_A)


def test_error_reply_mid_bundle_keeps_the_rest_and_reports_rejection(rig):
    sw = FakeSwitch.for_core(rig.core, DPID_A)
    rig.switches[DPID_A] = sw
    # reject the first flow-mod key of table 0 that we would send
    rig.connect(DPID_A, rig.ports[:2])
    rig.settle()
    victim = next(iter(sw.table))
    sw.table.pop(victim)
    sw.reject.add(victim)
    rig.core.request_resync(DPID_A)
    rig.settle()
    assert victim not in sw.table
    assert {k: v for k, v in rig.expected(DPID_A).items() if k != victim} == sw.table
    h = rig.health(DPID_A)
    assert not h["healthy"] and any("rejected" in p for p in h["problems"])
    sw.reject.clear()
    rig.core.request_resync(DPID_A)
    rig.wait_healthy(DPID_A)


def test_failed_commit_ends_in_a_resync(rig):
    sw = FakeSwitch.for_core(rig.core, DPID_A)
    rig.switches[DPID_A] = sw
    sw.fail_commits = 2
    rig.connect(DPID_A, rig.ports[:2])
    rig.wait_healthy(DPID_A)
    assert rig.health(DPID_A)["reconcile_errors"] >= 1
    assert rig.health(DPID_A)["resyncs"] >= 2


def test_hung_switch_mid_flush_then_answers_again(rig):
    sw = rig.connect(DPID_A, rig.ports[:1])
    rig.settle()
    sw.silent = True
    rig.service.create_port({"network_id": rig.ports[0]["network_id"]})
    new = rig.ports[1]
    rig.connect(DPID_A, rig.ports[:1] + [new])  # the tap appears: a flush that gets no reply
    time.sleep(0.8)
    h = rig.health(DPID_A)
    assert not h["healthy"] and h["reconcile_errors"] >= 1
    sw.silent = False
    rig.wait_healthy(DPID_A)


def test_disconnect_mid_flush_then_reconnect(rig):
    sw = rig.connect(DPID_A, rig.ports[:1])
    rig.settle()
    sw.connected = False  # send() fails: the connection is gone
    rig.service.update("port", rig.ports[0]["id"], {"name": "renamed", "port_security_enabled": False,
                                                      "security_groups": []})
    time.sleep(0.3)
    rig.connect(DPID_A, rig.ports[:1])
    rig.wait_healthy(DPID_A)


def test_one_datapath_failing_does_not_stop_the_others(rig):
    a = rig.connect(DPID_A, rig.ports[:2])
    b = rig.connect(DPID_B, rig.ports[2:])
    rig.settle()

    def explode(buf):
        raise OSError("socket exploded")

    real_send = a.send
    rig.core.registry.get(DPID_A).reconciler._send = explode
    rig.service.update("port", rig.ports[2]["id"], {"port_security_enabled": False, "security_groups": []})
    rig.service.update("port", rig.ports[0]["id"], {"port_security_enabled": False, "security_groups": []})
    rig.settle()
    assert b.table == rig.expected(DPID_B)
    assert not rig.health(DPID_A)["healthy"]
    rig.core.registry.get(DPID_A).reconciler._send = real_send
    rig.wait_healthy(DPID_A)
    rig.wait_healthy(DPID_B)


def test_store_errors_in_the_feed_are_retried(rig, monkeypatch):
    sw = rig.connect(DPID_A, rig.ports[:2])
    rig.settle()
    real = rig.store.changes
    failures = {"left": 3}

    def changes(after, timeout):
        if failures["left"]:
            failures["left"] -= 1
            raise OSError("database is locked")
        return real(after=after, timeout=timeout)

    monkeypatch.setattr(core_mod.hub, "sleep", lambda s: time.sleep(min(s, 0.05)))
    monkeypatch.setattr(rig.store, "changes", changes)
    time.sleep(0.1)  # the feed is now failing
    rig.service.update("port", rig.ports[1]["id"], {"port_security_enabled": False, "security_groups": []})
    deadline = time.monotonic() + 5
    while failures["left"] and time.monotonic() < deadline:
        time.sleep(0.02)
    assert failures["left"] == 0
    rig.settle()
    rig.wait_healthy(DPID_A)
    assert sw.table == rig.expected(DPID_A)


def test_listing_owners_failure_is_reported_and_retried(rig, monkeypatch):
    real = rig.core.compiler.owners_for_chassis
    fail = {"left": 3}

    def owners_for_chassis(view, ctx):
        if fail["left"]:
            fail["left"] -= 1
            raise RuntimeError("listing bug")
        return real(view, ctx)

    monkeypatch.setattr(rig.core.compiler, "owners_for_chassis", owners_for_chassis)
    rig.connect(DPID_A, rig.ports[:2])
    rig.wait_healthy(DPID_A)
    assert fail["left"] == 0 and rig.health(DPID_A)["compile_errors"] >= 3


def test_chassis_registration_failure_is_retried(rig, monkeypatch):
    real = rig.service.register_chassis
    fail = {"left": 2}

    def register(*a, **kw):
        if fail["left"]:
            fail["left"] -= 1
            raise OSError("disk I/O error")
        return real(*a, **kw)

    monkeypatch.setattr(rig.service, "register_chassis", register)
    rig.connect(DPID_A, rig.ports[:2])
    rig.wait_healthy(DPID_A)
    assert fail["left"] == 0


def test_a_burst_of_taps_is_one_bundle_and_no_port_is_active_before_its_flows(rig, monkeypatch):
    """Port-statuses that queue up while the worker is busy (OVS announcing many new taps) are
    compiled together and sent in one bundle (controller.core._defer_flush); the binder's
    ACTIVE writes wait for that flush, so a port never reads ACTIVE before its flows are on."""
    sw = rig.connect(DPID_A, [])
    rig.settle()
    bundles = rig.health(DPID_A)["bundles"]
    seen_at_write: list[tuple[str, bool]] = []
    real = rig.service.set_port_bindings

    def set_port_bindings(todo):
        owners = port_owner_of(sw.table, Owner.PORT)
        for pid, _host, _status in todo:
            key = rig.core.view.port(pid)["_key"]
            seen_at_write.append((pid, any(o & ((1 << OWNER_SHIFT) - 1) == key for o in owners)))
        return real(todo)

    monkeypatch.setattr(rig.service, "set_port_bindings", set_port_bindings)
    monkeypatch.setattr(rig.service, "set_port_binding", lambda pid, h, s: set_port_bindings([(pid, h, s)]))
    with rig.core.view_lock:  # the worker blocks on the first port; the others queue up behind it
        for i, p in enumerate(rig.ports):
            rig.core.port_status(DPID_A, "add", SwitchPort("tap" + p["id"][:11], 20 + i, True))
            time.sleep(0.05 if i == 0 else 0)
    rig.settle()
    rig.wait_healthy(DPID_A)
    assert rig.core.stats()["deferred_flushes"] >= 1
    assert rig.health(DPID_A)["bundles"] - bundles <= 2  # not one per tap
    assert {pid for pid, _ in seen_at_write} == {p["id"] for p in rig.ports}
    assert all(present for _, present in seen_at_write), seen_at_write
    assert all(rig.service.store.get("port", p["id"])["status"] == "ACTIVE" for p in rig.ports)


def test_deferral_is_bounded_under_a_steady_stream(rig, monkeypatch):
    """Events that never stop arriving still get their flows sent: a deferral lasts at most
    FLUSH_DEFER_MAX from the first one it joined."""
    class NeverEmpty:
        def empty(self) -> bool:
            return False

    clock = {"now": 100.0}
    real_q = rig.core._q
    monkeypatch.setattr(core_mod.time, "monotonic", lambda: clock["now"])
    rig.core._q = NeverEmpty()
    try:
        rig.core._defer_since = None
        assert rig.core._defer_flush()
        clock["now"] += core_mod.FLUSH_DEFER_MAX / 2
        assert rig.core._defer_flush()
        clock["now"] += core_mod.FLUSH_DEFER_MAX / 2
        assert not rig.core._defer_flush()  # the bound: flush now
        assert rig.core._defer_flush()  # and a new window starts
        rig.core._q = real_q
        assert not rig.core._defer_flush()  # nothing queued: never defer
    finally:
        rig.core._q = real_q


def test_bundles_to_several_datapaths_go_out_together(rig):
    """One change touching two chassis: B's bundle is sent while A's barrier is still unanswered
    (the sends of a batch overlap, controller.core._send_all). Serialized, A would wait for its
    barrier before B got anything, and the bounded wait below would end unanswered."""
    a = rig.connect(DPID_A, rig.ports[:2])
    b = rig.connect(DPID_B, rig.ports[2:])
    rig.settle()
    for dpid in (DPID_A, DPID_B):
        rig.core.registry.get(dpid).reconciler.timeout = 10.0
    seen: list[bool] = []
    before_a, before_b = dict(a.table), dict(b.table)

    def b_changed_within(seconds: float) -> bool:
        deadline = time.monotonic() + seconds  # bounded: serialized sends never change B meanwhile
        while time.monotonic() < deadline:
            if b.table != before_b:
                return True
            time.sleep(0.01)
        return False

    def a_barrier(xid: int) -> None:
        def later() -> None:
            seen.append(b_changed_within(5.0))
            rig.core.on_barrier(DPID_A, xid)
        threading.Thread(target=later, daemon=True).start()

    a.on_barrier = a_barrier
    rig.service.create("security_group_rule", {  # the ports' group: flows on both chassis
        "security_group_id": rig.ports[0]["security_groups"][0], "direction": "ingress",
        "ethertype": "IPv4", "protocol": "tcp", "port_range_min": 22, "port_range_max": 22,
        "remote_ip_prefix": "192.0.2.0/24"})
    rig.settle(timeout=20)
    assert a.table != before_a and b.table != before_b  # the change reached both chassis
    assert seen and all(seen)
    assert a.table == rig.expected(DPID_A) and b.table == rig.expected(DPID_B)


def test_stats_read_again_when_the_worker_resizes_a_dict_mid_read(rig, monkeypatch):
    """Stats read live structures without the view lock; a dict resized under the read (the
    10,000-port bench got a 500 from GET stats that way) is read again, other errors still raise."""
    rig.connect(DPID_A, [])
    rig.settle()
    real = rig.core._gateway_report
    calls = {"n": 0}

    def racing() -> dict:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("dictionary changed size during iteration")
        return real()

    monkeypatch.setattr(rig.core, "_gateway_report", racing)
    assert f"{DPID_A:016x}" in rig.core.stats()["datapaths"]
    assert calls["n"] == 2

    def broken() -> dict:
        raise RuntimeError("something else")

    monkeypatch.setattr(rig.core, "_gateway_report", broken)
    with pytest.raises(RuntimeError, match="something else"):
        rig.core.stats()


def test_cyclic_gc_paused_while_a_big_batch_compiles_and_back_on_after(rig, monkeypatch):
    """A connect compiles the whole chassis with the cyclic GC off (controller.core
    CyclicGcPause: full collections walk every live object); a one-port batch keeps it on,
    and it is on again once the worker is idle."""
    seen: list[bool] = []
    real = rig.core.compiler.compile_owner

    def spy(view, ctx, owner):  # the core's own compiles (check mode's fresh ones are not spied)
        seen.append(gc.isenabled())
        return real(view, ctx, owner)

    monkeypatch.setattr(rig.core.compiler, "compile_owner", spy)
    assert gc.isenabled()
    rig.connect(DPID_A, rig.ports)
    rig.settle()
    owners = len(rig.core.registry.get(DPID_A).reconciler.owners())
    assert owners and seen.count(False) >= owners, "the connect's full compile ran with the GC on"
    assert gc.isenabled()
    seen.clear()
    rig.service.update("port", rig.ports[0]["id"], {"name": "renamed"})
    rig.settle()
    assert seen and all(seen), "a one-port batch paused the GC"
    assert gc.isenabled()


def test_gc_pause_holds_across_queued_heavy_batches_and_is_bounded(monkeypatch):
    """Back-to-back heavy batches (a restart's compile from the port cache, then the switch's
    connect) keep the cyclic GC paused between them: turned on in between, it walked the first
    batch's young objects once there and again after the second. Bounded by GC_HOLD_MAX, and a
    GC someone else turned off is left alone."""
    assert gc.isenabled()
    p = heap.CyclicGcPause()
    try:
        p.pause()
        assert not gc.isenabled()
        p.resume(more_queued=True)
        assert not gc.isenabled(), "resumed although another batch was queued"
        p.pause()
        p.resume(more_queued=False)
        assert gc.isenabled()
        monkeypatch.setattr(heap, "GC_HOLD_MAX", 0.0)
        p.pause()
        time.sleep(0.01)
        p.resume(more_queued=True)
        assert gc.isenabled(), "held past GC_HOLD_MAX"
        gc.disable()
        p.pause()
        p.resume(more_queued=False)
        assert not gc.isenabled(), "turned on a GC it had not paused"
    finally:
        gc.enable()


def test_serve_core_freezes_what_a_big_batch_built(rig):
    """With freeze_gc (tenantflow serve), a connect's full compile ends with its flows frozen out
    of the cyclic GC's walks (controller/heap.py LongLivedFreeze); stats say so."""
    try:
        rig.restart_core(freeze_gc=True)
        rig.connect(DPID_A, rig.ports)
        rig.settle()
        st = rig.core.stats()["gc"]
        assert st["freezes"] >= 1 and st["frozen_objects"] > 0, st
        flow = next(iter(rig.core.registry.get(DPID_A).reconciler._want.values()))
        assert gc.is_tracked(flow) and not any(o is flow for o in gc.get_objects())
    finally:
        gc.unfreeze()
