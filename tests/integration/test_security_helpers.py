"""Shared helpers for the security integration tests (no tests here).

Why a module-scoped bed: starting OVS per chassis and the controller costs seconds; each test
builds its own network/groups/VMs on the shared bed, so tests never depend on one another.
"""
from __future__ import annotations

import itertools
import sys
import time
from typing import Any, Callable

from tests.testbed import Bed

_subnets = itertools.count(40)


def start(bed: Bed, chassis: tuple[str, ...] = ("c1", "c2")) -> list:
    """Controller with port security + security groups, and chassis connected to it."""
    bed.start_controller()
    out = [bed.add_chassis(name) for name in chassis]
    for ch in out:
        assert ch.wait_connected(timeout=30), bed.diagnostics()
    return out


def eventually(fn: Callable[[], bool], timeout: float = 20.0, interval: float = 0.5) -> bool:
    """True as soon as fn() is; False if it never is within `timeout` (bounded polling)."""
    deadline = time.monotonic() + timeout
    while True:
        if fn():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def fresh_network(api, name: str) -> tuple[dict, dict]:
    """A network with its own /24, so tests sharing a bed never collide."""
    return api.network_with_subnet(name, f"10.{next(_subnets)}.0.0/24")


def group(api, name: str, egress_any: bool = True) -> dict:
    """A new group; Neutron gives it 'egress any' rules — drop them when egress_any is False."""
    g = api.create("security-groups", name=name)
    if not egress_any:
        for r in api.list("security-group-rules", security_group_id=g["id"]):
            api.remove("security-group-rules", r["id"])
    return g


def rule(api, g: dict, direction: str, protocol: Any = None, ports: tuple[int, int] | None = None,
         **more: Any) -> dict:
    fields: dict[str, Any] = {"security_group_id": g["id"], "direction": direction, "ethertype": "IPv4"}
    if protocol is not None:
        fields["protocol"] = protocol
    if ports is not None:
        fields["port_range_min"], fields["port_range_max"] = ports
    fields.update(more)
    return api.create("security-group-rules", **fields)


def vm_port(api, net: dict, groups: list[dict], **fields: Any) -> dict:
    return api.port(net, security_groups=[g["id"] for g in groups], **fields)


def tcp(client, server, port: int, timeout: float = 3.0) -> bool:
    return client.tcp_works(server, port=port, timeout=timeout)


def udp(client, server, port: int, timeout: float = 3.0) -> bool:
    return client.udp_works(server, port=port, timeout=timeout)


def ping(client, server) -> bool:
    return client.ping(server.ip, count=1, timeout=2)


def scapy_send(host, code: str, timeout: float = 20.0) -> None:
    """Run scapy `code` in the host's netns (`sendp(...)` on eth0; names from scapy.all)."""
    script = "import time\nfrom scapy.all import *\nconf.verb = 0\n" + code
    host.run([sys.executable, "-c", script], timeout=timeout)


def conntrack(chassis) -> str:
    """The chassis datapath's conntrack table (for failure messages)."""
    try:
        return chassis.appctl("dpctl/dump-conntrack", check=False)
    except Exception as exc:  # noqa: BLE001 — diagnostics only
        return f"(dump-conntrack failed: {exc})"
