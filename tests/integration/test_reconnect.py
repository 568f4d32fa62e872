"""A switch that hangs up and comes back: the controller notices at once and converges again.

Regression: on os-ken 4's native hub a closed switch connection never reached DEAD_DISPATCHER
(controller/ofapp.py explains why), so the controller kept sending into it and waited 30 s for
replies that never came; the next connection then sat behind that wait.
"""
from __future__ import annotations

import time

import pytest

from tests.integration.test_l2 import chassis_stats, eventually, settle

pytestmark = pytest.mark.integration


def test_switch_hangs_up_and_reconnects(bed):
    ctl = bed.start_controller()
    c1 = bed.add_chassis("c1")
    t = bed.api.as_project("tenant1")
    net, _ = t.network_with_subnet("n1", "10.0.0.0/24")
    vm1, vm2 = bed.add_vm(c1, t.port(net)), bed.add_vm(c1, t.port(net))
    assert c1.wait_connected() and bed.wait_port_status(vm1.port) and bed.wait_port_status(vm2.port)
    settle(bed, [c1])

    c1.ovs_vsctl("del-controller", "br-int")
    assert eventually(lambda: not chassis_stats(bed, c1)["connected"], timeout=10), \
        "controller did not notice the switch hanging up"
    # A change while the switch is away must neither block the controller nor get lost.
    late = t.port(net)
    t0 = time.monotonic()
    c1.ovs_vsctl("set-controller", "br-int", f"tcp:{bed.mgmt_gw}:{ctl.ofp_port}")
    assert c1.wait_connected(timeout=20)
    vm3 = bed.add_vm(c1, late)
    settle(bed, [c1], timeout=20)
    assert time.monotonic() - t0 < 20
    assert bed.wait_port_status(late)
    assert vm3.ping_ok(vm1.ip) and vm1.ping_ok(vm2.ip)
