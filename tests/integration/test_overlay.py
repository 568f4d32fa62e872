"""VXLAN overlay across three chassis (issue 4), with real packets on a real underlay.

Layout (tenants A and B use the same CIDR and the same IPs, each its own VNI):
    c1: a1 (A, 10.0.0.11)   b2 (B, 10.0.0.12)
    c2: a2 (A, 10.0.0.12)
    c3: b1 (B, 10.0.0.11)               + a GRE network between c2 and c3
So A lives on c1+c2, B on c1+c3: a broadcast of A must reach c2 only, one of B c1 only, and
c3 must hold nothing of A. The last test deletes B's only port on c1 and checks that B's flows
leave c1 (module tests run in file order; that one goes last).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from tests.integration.test_l2 import (all_lines, cookie_of, eventually, fixed_ip, flows_by_cookie,
                                       owner_cookie, settle, static_neigh)
from tests.testbed import Bed, Chassis, Host, serve_implemented

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not serve_implemented(), reason="tenantflow serve not implemented yet")]


@dataclass
class Overlay:
    bed: Bed
    c1: Chassis
    c2: Chassis
    c3: Chassis
    net_a: dict[str, Any]
    net_b: dict[str, Any]
    a1: Host
    a2: Host
    b1: Host
    b2: Host

    @property
    def chassis(self) -> list[Chassis]:
        return [self.c1, self.c2, self.c3]


def _build(bed: Bed) -> Overlay:
    bed.start_controller()
    c1, c2, c3 = (bed.add_chassis(n) for n in ("c1", "c2", "c3"))
    for ch in (c1, c2, c3):
        assert ch.wait_connected(timeout=20), bed.diagnostics()
    api_a, api_b = bed.api.as_project("tenant-a"), bed.api.as_project("tenant-b")
    net_a, sub_a = api_a.network_with_subnet("net-a", "10.0.0.0/24")
    net_b, sub_b = api_b.network_with_subnet("net-b", "10.0.0.0/24")
    place = [(api_a, net_a, sub_a, "a1", "10.0.0.11", c1), (api_a, net_a, sub_a, "a2", "10.0.0.12", c2),
             (api_b, net_b, sub_b, "b1", "10.0.0.11", c3), (api_b, net_b, sub_b, "b2", "10.0.0.12", c1)]
    vms = []
    for api, net, sub, name, ip, ch in place:
        port = api.port(net, name=name, fixed_ips=fixed_ip(sub, ip))
        vms.append(bed.add_vm(ch, port, name=name))
    for vm in vms:
        assert bed.wait_port_status(vm.port), f"{vm.name} not ACTIVE"
    settle(bed, [c1, c2, c3])
    return Overlay(bed, c1, c2, c3, net_a, net_b, *vms)


@pytest.fixture(scope="module")
def ov(module_bed: Bed) -> Overlay:
    try:
        return _build(module_bed)
    except BaseException:
        print(module_bed.diagnostics())
        raise


def vni(net: dict[str, Any]) -> int:
    return int(net["provider:segmentation_id"])


def vnis_seen(lines: list[str]) -> set[int]:
    out = set()
    for ln in lines:
        if "vni " in ln:
            out.add(int(ln.split("vni ", 1)[1].split()[0].rstrip(",")))
    return out


def test_networks_are_vxlan_with_own_vni_and_mtu_1450(ov: Overlay) -> None:
    for net in (ov.net_a, ov.net_b):
        assert net["provider:network_type"] == "vxlan"
        assert net["mtu"] == 1450
    assert vni(ov.net_a) != vni(ov.net_b)
    assert ov.a1.run(["cat", "/sys/class/net/eth0/mtu"]).stdout.strip() == "1450"


def test_same_network_ping_and_tcp_across_chassis(ov: Overlay) -> None:
    assert eventually(lambda: ov.a1.ping(ov.a2.ip, count=1, timeout=2)), ov.bed.diagnostics()
    assert eventually(lambda: ov.b1.ping(ov.b2.ip, count=1, timeout=2)), ov.bed.diagnostics()
    assert ov.a2.ping(ov.a1.ip) and ov.b2.ping(ov.b1.ip)
    assert ov.a1.tcp_works(ov.a2, port=5001)
    assert ov.b1.tcp_works(ov.b2, port=5001)
    assert ov.a2.udp_works(ov.a1, port=5002)
    # Full-size TCP segments at the network MTU cross the tunnel (no silent black hole).
    big = ov.a1.run(["ping", "-n", "-c", "2", "-i", "0.2", "-w", "4", "-M", "do", "-s", "1422",
                     ov.a2.ip], check=False, timeout=10)
    assert big.returncode == 0, big.stdout


def test_tenants_isolated_across_chassis(ov: Overlay) -> None:
    assert ov.a1.ping(ov.a2.ip)                       # positive control through the same tunnel
    static_neigh(ov.a1, "10.0.0.99", ov.b1.mac)       # c1 -> b1 on c3
    static_neigh(ov.a2, "10.0.0.99", ov.b2.mac)       # c2 -> b2 on c1
    try:
        cap = ov.bed.tcpdump(ov.b1, "eth0", "icmp", count=1, timeout=3)
        assert not ov.a1.ping("10.0.0.99", count=3, timeout=2)
        assert not cap.wait(), "tenant A's frame reached tenant B's VM on another chassis"
        assert not ov.a2.ping("10.0.0.99", count=2, timeout=2)
    finally:
        for vm in (ov.a1, ov.a2):
            vm.run(["ip", "neigh", "del", "10.0.0.99", "dev", "eth0"], check=False)
    # Same IP in the other tenant: a2's 10.0.0.11 is a1, never b1.
    cap = ov.bed.tcpdump(ov.b1, "eth0", "icmp", count=1, timeout=3)
    assert ov.a2.ping("10.0.0.11")
    assert not cap.wait(), "ping to A's 10.0.0.11 reached B's 10.0.0.11"


def test_underlay_carries_vxlan_with_the_network_vni(ov: Overlay) -> None:
    bed = ov.bed
    cap = bed.tcpdump(bed.underlay_ns, ov.c2.underlay_port, "udp port 4789", count=4, timeout=6)
    assert ov.a1.ping(ov.a2.ip, count=2)
    lines = [ln for ln in cap.wait() if "VXLAN" in ln]     # outer headers (inner frames follow)
    assert lines, "no VXLAN on the underlay towards c2"
    assert vnis_seen(lines) == {vni(ov.net_a)}, lines
    assert all(ov.c2.tunnel_ip in ln for ln in lines), f"VXLAN on c2's link not to or from c2: {lines}"


def test_broadcast_reaches_only_chassis_with_the_network(ov: Overlay) -> None:
    bed = ov.bed

    def broadcast_from(vm: Host) -> dict[str, set[int]]:
        caps = {ch.name: bed.tcpdump(bed.underlay_ns, ch.underlay_port, "udp port 4789",
                                     count=50, timeout=4) for ch in ov.chassis}
        vm.run(["ping", "-b", "-n", "-c", "3", "-i", "0.3", "-w", "2", "10.0.0.255"], check=False,
               timeout=10)
        return {name: vnis_seen(cap.wait()) for name, cap in caps.items()}

    seen = broadcast_from(ov.a1)                     # A is on c1 and c2
    assert vni(ov.net_a) in seen["c2"], seen
    assert vni(ov.net_a) not in seen["c3"], f"A's broadcast reached c3 (no A ports there): {seen}"
    seen = broadcast_from(ov.b1)                     # B is on c3 and c1
    assert vni(ov.net_b) in seen["c1"], seen
    assert vni(ov.net_b) not in seen["c2"], f"B's broadcast reached c2 (no B ports there): {seen}"


def test_chassis_without_ports_of_a_network_has_none_of_its_flows(ov: Overlay) -> None:
    bed = ov.bed
    net_a = owner_cookie(bed, ov.c1, "network", ov.net_a["id"])
    ports_a = {owner_cookie(bed, ov.c1, "port", vm.port["id"]) for vm in (ov.a1, ov.a2)}
    assert net_a is not None and None not in ports_a
    on_c3 = flows_by_cookie(ov.c3)
    assert net_a not in on_c3, on_c3.get(net_a)
    assert not ports_a & set(on_c3), "port flows of tenant A on c3"
    assert f"tun_id={vni(ov.net_a):#x}" not in "\n".join(all_lines(on_c3))


def test_gre_network_between_two_chassis(ov: Overlay) -> None:
    bed = ov.bed
    net = bed.api.create("networks", name="gre-net", **{"provider:network_type": "gre"})
    assert net["provider:network_type"] == "gre"
    assert net["mtu"] == 1458
    sub = bed.api.create("subnets", network_id=net["id"], cidr="10.70.0.0/24", ip_version=4)
    g1 = bed.add_vm(ov.c2, bed.api.port(net, name="g1", fixed_ips=fixed_ip(sub, "10.70.0.11")), name="g1")
    g2 = bed.add_vm(ov.c3, bed.api.port(net, name="g2", fixed_ips=fixed_ip(sub, "10.70.0.12")), name="g2")
    for vm in (g1, g2):
        assert bed.wait_port_status(vm.port)
    cap = bed.tcpdump(bed.underlay_ns, ov.c3.underlay_port, "ip proto 47", count=2, timeout=8)
    assert eventually(lambda: g1.ping(g2.ip, count=1, timeout=2)), bed.diagnostics()
    lines = cap.wait()
    assert lines, "no GRE on the underlay"
    assert any(f"key=0x{int(net['provider:segmentation_id']):x}" in ln.lower() for ln in lines), lines
    assert g2.tcp_works(g1, port=5003)
    assert not g1.ping(ov.a2.ip, count=1, timeout=1)


def test_deleting_last_port_on_a_chassis_removes_network_flows(ov: Overlay) -> None:
    bed = ov.bed
    net_b = owner_cookie(bed, ov.c1, "network", ov.net_b["id"])
    port_b2 = owner_cookie(bed, ov.c1, "port", ov.b2.port["id"])
    assert net_b is not None and port_b2 is not None
    assert net_b in flows_by_cookie(ov.c1)
    b3_flows = [ln for ln in all_lines(flows_by_cookie(ov.c3)) if cookie_of(ln) == net_b]
    assert any(ov.c1.tunnel_ip in ln for ln in b3_flows), "c3 did not flood B to c1 before"

    bed.unplug_vm(ov.b2)
    bed.api.as_project("tenant-b").remove("ports", ov.b2.port["id"])
    settle(bed, ov.chassis)
    on_c1 = flows_by_cookie(ov.c1)
    assert net_b not in on_c1, f"B's network flows remain on c1: {on_c1.get(net_b)}"
    assert port_b2 not in on_c1
    assert f"tun_id={vni(ov.net_b):#x}" not in "\n".join(all_lines(on_c1))
    on_c3 = flows_by_cookie(ov.c3)
    assert net_b in on_c3, "B's flows vanished from c3, where b1 still is"
    assert not any(ov.c1.tunnel_ip in ln for ln in on_c3[net_b]), \
        f"c3 still replicates B to c1: {on_c3[net_b]}"
    assert port_b2 not in on_c3
    # A on c1 is untouched.
    assert ov.a1.ping(ov.a2.ip)
    # And B's broadcasts no longer go to c1.
    cap = bed.tcpdump(bed.underlay_ns, ov.c1.underlay_port, "udp port 4789", count=10, timeout=3)
    ov.b1.run(["ping", "-b", "-n", "-c", "3", "-i", "0.3", "-w", "2", "10.0.0.255"], check=False,
              timeout=10)
    assert vni(ov.net_b) not in vnis_seen(cap.wait())
