"""Registry.by_chassis: which entry answers for a chassis name when two datapaths carry it."""
from __future__ import annotations

from controller.reconciler import Reconciler
from controller.registry import Registry


def make_registry() -> Registry:
    return Registry(lambda dpid: Reconciler(f"{dpid:016x}"))


def test_the_connected_entry_answers_for_its_chassis() -> None:
    reg = make_registry()
    stale, live = reg.entry(1), reg.entry(2)        # stale: a cached dpid the switch left
    stale.chassis = live.chassis = "c1"
    stale.prewarm = stale.compiled = True
    assert reg.by_chassis("c1") is stale            # nothing connected: the one there is
    live.datapath = object()
    assert reg.by_chassis("c1") is live
    stale.datapath = object()
    live.datapath = None
    assert reg.by_chassis("c1") is stale


def test_unknown_chassis_is_none() -> None:
    reg = make_registry()
    reg.entry(1).chassis = "c1"
    assert reg.by_chassis("c2") is None
