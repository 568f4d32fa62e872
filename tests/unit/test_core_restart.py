"""A restarted controller (a new Core on the same store) reconnecting to a switch that kept its
flows: one read of the switch, asked for as it connects when this controller is the switch's
only writer (Core.sole_writer), and 0 flow-mods. In HA the read follows MASTER instead."""
from __future__ import annotations

import pytest

from controller import core as core_mod
from tests.unit.test_core_faults import DPID_A, Rig
from tests.unit.test_reconcile_prefetch import flow_stats_requests


@pytest.mark.parametrize("sole_writer", [True, False])
def test_a_restart_reads_the_switch_once_and_sends_nothing(monkeypatch, sole_writer):
    monkeypatch.setattr(core_mod, "RETRY_FIRST", 0.05)
    rig = Rig()
    try:
        sw = rig.connect(DPID_A, rig.ports)
        rig.settle()
        table = dict(sw.table)
        assert table == rig.expected(DPID_A)
        rig.restart_core(sole_writer=sole_writer)  # same store, same switch
        since = len(sw.sent)
        rig.connect(DPID_A, rig.ports)
        rig.settle()
        rec = rig.core.registry.get(DPID_A).reconciler
        assert sw.table == table
        assert rec.stats.flow_mods == 0 and rec.stats.resyncs == 1
        assert flow_stats_requests(sw, since) == 1
        # prefetched: the compile kept every flow's bytes and the read matched them all
        assert rec.stats.last_resync_by_bytes == (len(table) if sole_writer else 0)
        assert rig.health(DPID_A)["healthy"]
    finally:
        rig.close()
