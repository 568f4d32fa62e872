"""Bound before plugged, on real OVS: a port whose binding:host_id names the chassis (as Nova
writes it before plugging the tap) has its flows on br-int before the tap exists; plugging the
VM adds only classify (in_port) and output (table 60), and traffic flows at once."""
from __future__ import annotations

import pytest

from tests.integration.test_l2 import all_lines, chassis_stats, flows_by_cookie, owner_cookie, settle
from tests.testbed import Bed, serve_implemented

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not serve_implemented(), reason="tenantflow serve not implemented yet")]


def _names_ofport(line: str) -> bool:
    """Classify (table 0, printed without `table=`: matches in_port) or output (60)."""
    return "in_port=" in line or "table=60," in line


def test_flows_are_in_before_the_tap_and_the_plug_adds_classify_and_output(bed: Bed) -> None:
    bed.start_controller()
    c1 = bed.add_chassis("c1")
    assert c1.wait_connected(timeout=20), bed.diagnostics()
    api = bed.api.as_project("tenant-b")
    net, _ = api.network_with_subnet("net-b", "10.0.0.0/24")
    a = bed.add_vm(c1, api.port(net, name="a"), name="a")
    assert bed.wait_port_status(a.port)
    port = api.port(net, name="b")
    bed.api.update("ports", port["id"], **{"binding:host_id": c1.name})  # admin, as Nova does
    settle(bed, [c1])
    ck = owner_cookie(bed, c1, "port", port["id"])
    assert ck is not None, "a port bound to c1 has no flows there before its tap"
    before = flows_by_cookie(c1)
    mine = before.get(ck, set())
    assert any(port["mac_address"] in ln for ln in mine), f"no lookup entry for the bound port: {sorted(mine)}"
    assert not any(_names_ofport(ln) for ln in mine), f"ofport flows before the tap: {sorted(mine)}"
    assert bed.api.show("ports", port["id"])["status"] == "DOWN"

    mods = chassis_stats(bed, c1)["flow_mods"]
    b = bed.add_vm(c1, port, name="b")
    assert bed.wait_port_status(b.port)
    settle(bed, [c1])
    after = flows_by_cookie(c1)
    added, removed = all_lines(after) - all_lines(before), all_lines(before) - all_lines(after)
    assert not removed, f"the plug removed flows: {sorted(removed)}"
    assert len(added) == 2 and all(_names_ofport(ln) for ln in added), f"the plug added: {sorted(added)}"
    assert chassis_stats(bed, c1)["flow_mods"] - mods == 2
    assert a.ping(b.ip) and b.ping(a.ip)
