"""Change.records(): a change's records once each. The apps' owners_for_change iterate it, so the
re-sync change of a plugged tap (old is new: flows.compiler.owners_for_port_location) costs one
record's work, and names exactly what the same change with two equal records names."""
from __future__ import annotations

from flows import compiler
from tests.unit import test_routing, test_security_groups_topo as sgt
from topology.store import Change


def test_records_once_each_without_none():
    a, b = {"id": "p"}, {"id": "p"}
    assert Change(1, "port", "p", a, a).records() == (a,)
    assert Change(1, "port", "p", a, b).records() == (a, b)
    assert Change(1, "port", "p", None, b).records() == (b,)
    assert Change(1, "port", "p", a, None).records() == (a,)
    assert Change(1, "port", "p", None, None).records() == ()


def _same_owners_with_one_record_or_two_equal(apps, view) -> int:
    n = 0
    for pid, port in view.records("port").items():
        one = compiler.owners_for_change(apps, view, Change(view.revision, "port", pid, port, port))
        two = compiler.owners_for_change(apps, view, Change(view.revision, "port", pid, port, dict(port)))
        assert one == two, pid
        n += bool(one)
    return n


def test_every_app_names_the_same_owners_for_a_resync_change_of_one_record():
    r = test_routing.routed_topo()
    assert _same_owners_with_one_record_or_two_equal(test_routing.apps(), r.topo.view()) > 5
    t = sgt.SecTopo()
    net = t.network("n1")
    g = t.default_group()
    for i in (1, 2, 3):
        t.vm(net, i, (g,))
    from apps.registry import default_apps
    assert _same_owners_with_one_record_or_two_equal(default_apps(), t.view()) >= 3
