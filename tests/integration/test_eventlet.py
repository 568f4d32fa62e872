"""The two-tenant L2 acceptance with the controller on os-ken's eventlet hub (issue 3).

Why: os-ken defaults to native threads, but OSKEN_HUB_TYPE=eventlet must keep working; the
API server, store and worker threads are then green threads, which is where blocking calls
would stall the whole controller (flows never arriving, pings failing).
"""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.test_l2 import assert_two_tenant_l2, settle, two_tenants_one_chassis
from tests.testbed import Bed, serve_implemented

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not serve_implemented(), reason="tenantflow serve not implemented yet")]


def test_two_tenants_with_eventlet_hub(bed: Bed) -> None:
    t = two_tenants_one_chassis(bed, env={"OSKEN_HUB_TYPE": "eventlet"})
    ctl = bed.controller
    assert ctl is not None and ctl.proc is not None
    environ = Path(f"/proc/{ctl.proc.pid}/environ").read_bytes().split(b"\0")
    assert b"OSKEN_HUB_TYPE=eventlet" in environ
    assert_two_tenant_l2(t)
    assert t.a1.tcp_works(t.a2, port=5001)
    # A change after start-up still converges (the feed and worker run under eventlet too).
    port = t.api_b.port(t.net_b, name="b3")
    vm = bed.add_vm(t.ch, port, name="b3")
    assert bed.wait_port_status(port)
    settle(bed, [t.ch])
    assert vm.ping_ok(t.b1.ip)
    assert "Traceback" not in ctl.log_text(), ctl.log_tail(80)
