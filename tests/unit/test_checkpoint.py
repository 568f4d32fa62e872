"""A cleanly stopped controller leaves each chassis' compile in a checkpoint
(controller/checkpoint.py); the next one takes it instead of compiling, but only for the very
topology revision, chassis context and code it was made by. Anything else compiles as before.

Oracles: the switch's table equal to a from-scratch compile with fresh apps (Rig.expected), the
engine's compile counter (0 = nothing compiled), and check mode, which re-does every batch after
the restore from scratch and counts any difference (the rig fixture asserts none)."""
from __future__ import annotations

import os

import pytest

from apps.registry import default_apps
from controller import checkpoint
from controller import portcache
from tests.unit.test_core_faults import DPID_A, Rig
from tests.unit import test_core_prewarm
from tests.unit.test_core_prewarm import _wait

rig = test_core_prewarm.rig  # the fixture: a Core in check mode, asserted clean at the end


@pytest.fixture
def files(tmp_path):
    return str(tmp_path / "tf.db.ports"), str(tmp_path / "tf.db.compiled")


def _restart(rig: Rig, files) -> None:
    ports, compiled = files
    rig.restart_core(check_with=default_apps, port_cache=ports, checkpoint_file=compiled)


def _running(rig: Rig, files):
    """A controller with both files configured, connected and converged, its port cache written."""
    _restart(rig, files)
    sw = rig.connect(DPID_A, rig.ports)
    rig.settle()
    _wait(lambda: DPID_A in portcache.load(files[0]), what="the port cache")
    assert sw.table == rig.expected(DPID_A)
    return sw


def _prewarmed(rig: Rig):
    e = rig.core.registry.get(DPID_A)
    assert e is not None and e.prewarm and not e.connected
    _wait(lambda: e.compiled, what="the chassis compiled (or restored) before its switch connects")
    return e


def test_a_clean_restart_takes_the_compile_from_the_checkpoint_and_sends_nothing(rig, files):
    sw = _running(rig, files)
    table = dict(sw.table)
    _restart(rig, files)  # the old controller writes the checkpoint as it stops
    assert os.stat(files[1]).st_mode & 0o777 == 0o600
    e = _prewarmed(rig)
    assert e.engine.compiles == 0 and e.from_checkpoint  # nothing compiled
    assert e.reconciler.desired_count() == len(table)
    assert rig.core.stats()["checkpoint"]["loaded"] == "1 chassis"
    rig.connect(DPID_A, rig.ports)
    rig.settle()
    rec = e.reconciler
    assert sw.table == table
    assert rec.stats.flow_mods == 0 and rec.stats.resyncs == 1
    assert rec.stats.last_resync_by_bytes == len(table)  # found by the saved bytes, as after a compile
    assert e.engine.compiles == 0
    assert rig.health(DPID_A)["healthy"] and rig.health(DPID_A)["from_checkpoint"]
    # and it carries on incrementally from the restored state: one more port, a handful of compiles
    net = rig.ports[0]["network_id"]
    new = rig.service.create_port({"network_id": net})
    rig.core.port_status(DPID_A, "add", Rig.taps(rig.ports + [new])[-1])
    rig.settle()
    rig.wait_healthy(DPID_A)
    assert 0 < e.engine.compiles < len(e.engine.owners()) and e.from_checkpoint
    assert sw.table == rig.expected(DPID_A) != table


def test_a_topology_written_while_it_was_down_is_compiled(rig, files):
    sw = _running(rig, files)
    rig.core.stop()  # checkpoint written at this revision …
    rig.service.create_port({"network_id": rig.ports[0]["network_id"]})  # … and the store moves on
    _restart(rig, files)
    e = _prewarmed(rig)
    assert e.engine.compiles > 0 and not e.from_checkpoint
    assert "the store is at" in rig.core.stats()["checkpoint"]["loaded"]
    rig.connect(DPID_A, rig.ports)
    rig.settle()
    assert sw.table == rig.expected(DPID_A)


def test_ports_that_moved_while_it_was_down_are_compiled(rig, files):
    """The context the port cache rebuilds differs from the saved one: a tap gone."""
    sw = _running(rig, files)
    rig.core.stop()
    cached = portcache.load(files[0])
    chassis, ports = cached[DPID_A]
    ports.pop(sorted(ports)[0])
    portcache.save(files[0], {DPID_A: (chassis, ports)})
    _restart(rig, files)
    e = _prewarmed(rig)
    assert e.engine.compiles > 0 and not e.from_checkpoint
    rig.connect(DPID_A, rig.ports)
    rig.settle()
    assert sw.table == rig.expected(DPID_A)


@pytest.mark.parametrize("spoil, why", [
    ("code", "written by other code or settings"),
    ("mode", "writable by group or others"),
    ("garbage", "unusable"),
])
def test_a_checkpoint_of_other_code_or_untrusted_or_broken_is_not_used(rig, files, monkeypatch, spoil, why):
    sw = _running(rig, files)
    rig.core.stop()
    if spoil == "code":
        monkeypatch.setattr(checkpoint, "_code_digest", "another version of the compilers")
    elif spoil == "mode":
        os.chmod(files[1], 0o666)
    else:
        with open(files[1], "r+b") as fh:
            fh.seek(20)
            fh.write(b"\xff" * 64)
    _restart(rig, files)
    e = _prewarmed(rig)
    assert e.engine.compiles > 0 and not e.from_checkpoint
    assert why in rig.core.stats()["checkpoint"]["loaded"]
    rig.connect(DPID_A, rig.ports)
    rig.settle()
    assert sw.table == rig.expected(DPID_A)
    assert e.reconciler.stats.flow_mods == 0


def test_no_checkpoint_without_the_port_cache_or_in_ha(rig, files):
    """HA: the ownership decides what is compiled (no prewarm, nothing written either)."""
    rig.restart_core(sole_writer=False, port_cache=files[0], checkpoint_file=files[1])
    rig.connect(DPID_A, rig.ports)
    rig.settle()
    rig.core.stop()
    assert not os.path.exists(files[1])


def test_derived_path_beside_an_sqlite_database():
    assert checkpoint.derived_path("sqlite:////var/lib/tf.db") == "/var/lib/tf.db.compiled"
    assert checkpoint.derived_path("sqlite:///:memory:") is None
    assert checkpoint.derived_path("etcd://127.0.0.1:2379") is None


def test_a_checkpoint_that_does_not_fit_is_refused_by_its_header_alone(tmp_path):
    """Other code or another revision is refused before the (large) body is unpickled: the body
    here is cut short, which only a read of it would notice."""
    path = str(tmp_path / "tf.db.compiled")
    assert checkpoint.save(path, "fp", 7, {1: {"chassis": "a", "ctx": None}})
    cp, why = checkpoint.load(path, "fp", 7)
    assert why == "ok" and cp is not None and cp.revision == 7 and cp.datapaths[1]["chassis"] == "a"
    with open(path, "r+b") as fh:
        fh.truncate(os.path.getsize(path) - 5)
    assert checkpoint.load(path, "other fp", 7) == (None, "written by other code or settings")
    assert checkpoint.load(path, "fp", 8) == (None, "written at revision 7, the store is at 8")
    cp, why = checkpoint.load(path, "fp", 7)
    assert cp is None and why.startswith("unusable")
