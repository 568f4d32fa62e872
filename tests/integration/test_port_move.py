"""A port moves between chassis (issue 4): its binding follows the tap, flows follow the binding.

The VM keeps its MAC and IP (bed.move_vm re-plugs the same namespace into another chassis),
so observers keep their ARP entries: connectivity must come back from the flows alone — the
old chassis stops claiming the port, the new one delivers it, and every other chassis tunnels
to the new location.
"""
from __future__ import annotations

import time

import pytest

from tests.integration.test_l2 import eventually, flows_by_cookie, owner_cookie, settle
from tests.testbed import Bed, serve_implemented

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not serve_implemented(), reason="tenantflow serve not implemented yet")]

RESTORE_TIMEOUT = 15.0


def _local(flow: str) -> bool:
    """Classify (table 0, which ovs-ofctl does not print: matches in_port) or output (60)."""
    return "in_port=" in flow or "table=60," in flow


def test_port_moves_between_chassis(bed: Bed) -> None:
    bed.start_controller()
    c1, c2, c3 = (bed.add_chassis(n) for n in ("c1", "c2", "c3"))
    for ch in (c1, c2, c3):
        assert ch.wait_connected(timeout=20), bed.diagnostics()
    api = bed.api.as_project("tenant-m")
    net, _ = api.network_with_subnet("net-m", "10.0.0.0/24")
    mover = bed.add_vm(c1, api.port(net, name="mover"), name="mover")
    far = bed.add_vm(c3, api.port(net, name="far"), name="far")     # remote before and after
    near = bed.add_vm(c2, api.port(net, name="near"), name="near")  # becomes local to the mover
    for vm in (mover, far, near):
        assert bed.wait_port_status(vm.port)
    assert eventually(lambda: far.ping(mover.ip, count=1, timeout=2)), bed.diagnostics()
    assert eventually(lambda: near.ping(mover.ip, count=1, timeout=2)), bed.diagnostics()
    settle(bed, [c1, c2, c3])
    ck = owner_cookie(bed, c1, "port", mover.port["id"])
    assert ck is not None and ck in flows_by_cookie(c1)

    for src, dst in ((c1, c2), (c2, c1)):
        bed.move_vm(mover, dst)
        t0 = time.monotonic()
        assert eventually(lambda dst=dst: bed.api.show("ports", mover.port["id"])["binding:host_id"] == dst.name,
                          RESTORE_TIMEOUT), f"binding did not follow the tap to {dst.name}"
        for observer in (far, near):
            assert eventually(lambda observer=observer: observer.ping(mover.ip, count=1, timeout=1), RESTORE_TIMEOUT), \
                f"{observer.name} cannot reach the port after it moved to {dst.name}\n{bed.diagnostics()}"
        restored = time.monotonic() - t0
        assert mover.ping(far.ip) and mover.tcp_works(far, port=5001)
        settle(bed, [c1, c2, c3])
        # Flows followed: the old chassis neither classifies nor delivers the port locally any
        # more; if it still has ports of the network, it tunnels to the new chassis (else it has
        # nothing of the network at all); the new chassis does both.
        old_flows = flows_by_cookie(src).get(ck, set())
        new_flows = flows_by_cookie(dst).get(ck, set())
        assert not any(_local(ln) for ln in old_flows), \
            f"{src.name} still handles the moved port locally: {sorted(old_flows)}"
        assert src.vms == [] and not old_flows or \
            any(f"{dst.tunnel_ip}->tun_dst" in ln for ln in old_flows), \
            f"{src.name} does not tunnel to {dst.name} for the moved port: {sorted(old_flows)}"
        assert any("in_port=" in ln for ln in new_flows) and any("table=60," in ln for ln in new_flows), \
            f"{dst.name} lacks local flows for the moved port: {sorted(new_flows)}"
        assert mover.tap not in src.ovs_vsctl("list-ports", "br-int")
        print(f"moved {src.name}->{dst.name}: restored in {restored:.1f}s")
    assert bed.api.show("ports", mover.port["id"])["status"] == "ACTIVE"
