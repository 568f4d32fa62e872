"""A restarted controller compiles each chassis from the port cache (controller/portcache.py)
before its switch reconnects; the switch's real ports then only diff against the cached ones.

The oracle is the one of test_core_faults: a from-scratch compile with fresh apps over the
store must equal the switch's table, and check mode re-does every batch from scratch."""
from __future__ import annotations

import time

import pytest

from apps.registry import default_apps
from controller import core as core_mod
from controller import portcache
from controller.registry import SwitchPort
from tests.unit.test_core_faults import DPID_A, Rig
from tests.unit.test_reconcile_prefetch import flow_stats_requests


def _wait(cond, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def _restart(rig: Rig, path: str, sole_writer: bool = True) -> None:
    rig.restart_core(sole_writer=sole_writer, check_with=default_apps, port_cache=path)


def _first_run(rig: Rig, path: str, ports: list[dict]):
    """The previous process: connected, converged, port cache written."""
    rig.core.port_cache = path
    sw = rig.connect(DPID_A, ports)
    rig.settle()
    _wait(lambda: DPID_A in portcache.load(path), what="the port cache")
    return sw


@pytest.fixture
def rig(monkeypatch):
    monkeypatch.setattr(core_mod, "RETRY_FIRST", 0.05)
    r = Rig()
    yield r
    r.close()
    assert r.core.check_failures == 0, "check mode found the incremental compile differing from a fresh one"


def test_a_restart_compiles_before_the_switch_connects_and_sends_nothing(rig, tmp_path):
    path = str(tmp_path / "tf.db.ports")
    sw = _first_run(rig, path, rig.ports)
    table = dict(sw.table)
    assert table == rig.expected(DPID_A)
    _restart(rig, path)
    e = rig.core.registry.get(DPID_A)
    assert e is not None and e.prewarm and not e.connected
    _wait(lambda: e.compiled, what="the compile from the port cache")
    rec = e.reconciler
    assert not e.connected and rec.desired_count() == len(table)
    compiled_before = e.engine.compiles
    since = len(sw.sent)
    rig.connect(DPID_A, rig.ports)
    rig.settle()
    assert sw.table == table
    assert rec.stats.flow_mods == 0 and rec.stats.resyncs == 1
    assert flow_stats_requests(sw, since) == 1
    assert rec.stats.last_resync_by_bytes == len(table)  # the early compile kept every flow's bytes
    assert e.engine.compiles == compiled_before  # same ports: nothing compiled again on connect
    assert rig.health(DPID_A)["healthy"] and rig.health(DPID_A)["compiled_before_connect"]


def test_ports_that_changed_while_it_was_down_are_diffed_on_connect(rig, tmp_path):
    """The cache is stale: a tap went away and another one was renumbered while no controller
    ran. The connect corrects exactly that, and the switch ends as a fresh compile wants."""
    path = str(tmp_path / "tf.db.ports")
    sw = _first_run(rig, path, rig.ports)
    _restart(rig, path)
    e = rig.core.registry.get(DPID_A)
    _wait(lambda: e.compiled, what="the compile from the port cache")
    compiled_before = e.engine.compiles
    taps = Rig.taps(rig.ports[:3])
    taps[1] = SwitchPort(taps[1].name, 77, True)
    rig.connect(DPID_A, [], taps)
    rig.settle()
    _wait(lambda: rig.health(DPID_A)["healthy"] and sw.table == rig.expected(DPID_A), what="convergence")
    assert e.ctx.local_ports[rig.ports[1]["id"]] == 77
    assert 0 < e.engine.compiles - compiled_before < 40  # the ports' owners, not the chassis
    gone = rig.ports[3]["id"]  # its tap went away: still bound here, DOWN, ofport None
    _wait(lambda: rig.core.view.port(gone)["status"] == "DOWN", what="the unplugged port DOWN")
    assert e.ctx.local_ports[gone] is None


def test_a_switch_that_never_comes_back_has_its_early_compile_dropped(rig, tmp_path, monkeypatch):
    path = str(tmp_path / "tf.db.ports")
    _first_run(rig, path, rig.ports)
    monkeypatch.setattr(core_mod, "PREWARM_MAX", 0.3)
    _restart(rig, path)
    e = rig.core.registry.get(DPID_A)
    _wait(lambda: e.compiled, what="the compile from the port cache")
    _wait(lambda: not e.prewarm and not e.compiled and e.reconciler.desired_count() == 0,
          what="the early compile dropped")
    assert not e.reconciler.keep_encoded


@pytest.mark.parametrize("content", [b"", b"\x00garbage", b"\x81\xa7version\x63"])
def test_an_unusable_port_cache_only_costs_the_head_start(rig, tmp_path, content):
    path = tmp_path / "tf.db.ports"
    sw = _first_run(rig, str(path), rig.ports)
    table = dict(sw.table)
    path.write_bytes(content)
    _restart(rig, str(path))
    assert rig.core.registry.get(DPID_A) is None  # nothing prewarmed
    rig.connect(DPID_A, rig.ports)
    rig.settle()
    rec = rig.core.registry.get(DPID_A).reconciler
    assert sw.table == table and rec.stats.flow_mods == 0


def test_a_cached_datapath_now_another_chassis_is_not_prewarmed(rig, tmp_path):
    path = tmp_path / "tf.db.ports"
    _first_run(rig, str(path), rig.ports)
    cached = portcache.load(str(path))
    chassis, ports = cached[DPID_A]
    portcache.save(str(path), {DPID_A: ("someone-else", ports)})
    _restart(rig, str(path))
    assert rig.core.registry.get(DPID_A) is None


def test_derived_path():
    assert portcache.derived_path("sqlite:////var/lib/tenantflow/tenantflow.db") == \
        "/var/lib/tenantflow/tenantflow.db.ports"
    assert portcache.derived_path("etcd://127.0.0.1:2379") is None
    assert portcache.derived_path("memory://") is None


def test_ha_does_not_compile_from_the_port_cache(rig, tmp_path):
    """With several controllers the ownership decides what this one compiles, after it is
    known: nothing is compiled at start from the cache."""
    path = str(tmp_path / "tf.db.ports")
    _first_run(rig, path, rig.ports)
    _restart(rig, path, sole_writer=False)
    assert rig.core.registry.get(DPID_A) is None


def test_port_cache_on_the_command_line(tmp_path):
    from controller import config
    db = f"sqlite:///{tmp_path}/tf.db"
    assert config.load(["--store", db]).port_cache == f"{tmp_path}/tf.db.ports"
    assert config.load(["--store", db, "--port-cache", str(tmp_path / "p")]).port_cache == str(tmp_path / "p")
    assert config.load(["--store", db, "--port-cache", ""]).port_cache is None
