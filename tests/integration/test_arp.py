"""ARP answered by the switch (SERVICE responder flows, no packet-in): arping and the kernel's
neighbour resolution in VM namespaces."""
from __future__ import annotations

import pytest

from tests.testbed import serve_implemented
from tests.integration.test_dhcp_clients import start_controller

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not serve_implemented(), reason="tenantflow serve not implemented yet")]


def arping(vm, ip: str, count: int = 2, timeout: int = 4) -> str:
    """busybox arping; returns its output ('Unicast reply from IP [MAC]' lines)."""
    res = vm.run(["busybox", "arping", "-c", str(count), "-w", str(timeout), "-I", vm.ifname, ip],
                 check=False, timeout=timeout + 5)
    return res.stdout + res.stderr


def neigh(vm, ip: str) -> str:
    return vm.run(["ip", "neigh", "show", ip], check=False).stdout


@pytest.fixture
def arpnet(bed):
    start_controller(bed)
    c1, c2 = bed.add_chassis("c1"), bed.add_chassis("c2")
    assert c1.wait_connected(timeout=20) and c2.wait_connected(timeout=20), bed.diagnostics()
    net, sub = bed.api.network_with_subnet("arpnet", "10.30.0.0/24")
    p1, p2 = bed.api.port(net), bed.api.port(net)
    ghost = bed.api.port(net)  # a port no VM carries: only the switch's responder can answer for it
    vm1, vm2 = bed.add_vm(c1, p1), bed.add_vm(c2, p2)
    return bed, net, sub, vm1, vm2, ghost


def test_arping_answered_for_vm_and_for_a_port_without_vm(arpnet):
    bed, _, _, vm1, vm2, ghost = arpnet
    out = ""
    for _ in range(5):  # flows may still be arriving right after the VMs were plugged
        out = arping(vm1, vm2.ip)
        if vm2.mac.lower() in out.lower():
            break
    assert vm2.mac.lower() in out.lower(), out + bed.diagnostics()
    gip = ghost["fixed_ips"][0]["ip_address"]
    out = arping(vm1, gip)
    assert ghost["mac_address"].lower() in out.lower(), out


def test_request_for_a_known_address_is_not_flooded(arpnet):
    bed, _, _, vm1, vm2, ghost = arpnet
    arping(vm1, vm2.ip)  # warm-up
    cap = bed.tcpdump(vm2, vm2.ifname, "arp and arp[6:2] == 1", count=1, timeout=4)
    arping(vm1, ghost["fixed_ips"][0]["ip_address"], count=3)
    assert cap.wait() == [], "ARP request for a known address reached another VM"


def packet_ins(bed, chassis) -> int:
    """The controller's packet-in counter of one chassis' datapath (GET /v2.0/tenantflow/stats)."""
    dps = [d for d in bed.api.get("tenantflow/stats")["datapaths"].values() if d.get("chassis") == chassis.name]
    assert len(dps) == 1, dps
    return int(dps[0]["packet_ins"])


def test_known_address_is_answered_without_a_packet_in(arpnet):
    bed, _, _, vm1, vm2, ghost = arpnet
    out = ""
    for _ in range(5):  # warm-up: flows may still be arriving right after the VMs were plugged
        out = arping(vm1, vm2.ip)
        if vm2.mac.lower() in out.lower():
            break
    assert vm2.mac.lower() in out.lower(), out + bed.diagnostics()
    c1 = bed.chassis["c1"]  # vm1's chassis: where its requests would be punted
    before = packet_ins(bed, c1)
    out = (arping(vm1, vm2.ip, count=5, timeout=8)
           + arping(vm1, ghost["fixed_ips"][0]["ip_address"], count=5, timeout=8))
    assert out.lower().count("reply from") >= 8, out  # answered, loss-free in a quiet namespace
    assert packet_ins(bed, c1) == before, "an ARP request for a known address reached the controller"


def test_kernel_arp_resolves_through_the_switch(arpnet):
    _, _, _, vm1, vm2, _ = arpnet
    vm1.run(["ip", "neigh", "flush", "all"], check=False)
    assert vm1.ping_ok(vm2.ip)
    assert vm2.mac.lower() in neigh(vm1, vm2.ip).lower()


def test_unknown_address_gets_no_answer_on_overlay(arpnet):
    _, _, _, vm1, _, _ = arpnet
    out = arping(vm1, "10.30.0.222", count=2, timeout=2)
    assert "reply" not in out.lower()


def test_gateway_ip_resolves(arpnet):
    bed, net, sub, vm1, _, _ = arpnet
    try:
        router = bed.api.create("routers", name="r1")
        bed.api.put(f"routers/{router['id']}/add_router_interface", {"subnet_id": sub["id"]})
    except Exception as exc:  # noqa: BLE001 - routers land with the routing issue
        pytest.skip(f"routers API not available yet: {exc}")
    rif = bed.api.list("ports", device_owner="network:router_interface", network_id=net["id"])
    assert rif, "no router interface port"
    out = ""
    for _ in range(5):
        out = arping(vm1, sub["gateway_ip"])
        if rif[0]["mac_address"].lower() in out.lower():
            break
    assert rif[0]["mac_address"].lower() in out.lower(), out
