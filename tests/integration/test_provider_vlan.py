"""Provider networks (issue 3, and issue 4's "VLAN provider test with VMs on two chassis").

The outside world is an OVS bridge in standalone mode (a learning switch, see
tests/testbed/physical.py): a trunk port towards each chassis' uplink (`ph-physnet1`, the
bridge mapping physnet1) and access ports to outside hosts. VLAN 101 carries the provider
network; an untagged access port carries a flat network on the same physnet.
Proven: a VM and the outside host ping both ways, frames on the trunk carry VLAN 101, the
outside host's MAC is learned in the datapath (table 42, cookie kind LEARNED, made by OVS's
`learn` action, not by the controller), VMs on two chassis reach each other over the physical
network and both reach the outside host; the same for a flat network (untagged on the trunk).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import pytest

from tests.integration.test_l2 import (LEARNED_KIND, OWNER_SHIFT, allow_icmp_in, cookie_of,
                                       eventually, fixed_ip, settle)
from tests.testbed import Bed, Chassis, Host, PhysicalSwitch, serve_implemented

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not serve_implemented(), reason="tenantflow serve not implemented yet")]

VLAN = 101
UPLINK_ADDED_BY_HAND: set[str] = set()
log = logging.getLogger(__name__)
L2_LEARN_TABLE = 42


@dataclass
class Provider:
    bed: Bed
    sw: PhysicalSwitch
    c1: Chassis
    c2: Chassis
    vlan_net: dict[str, Any]
    vlan_sub: dict[str, Any]
    outside: Host           # on the VLAN 101 access port


def _build(bed: Bed) -> Provider:
    bed.start_controller()
    sw = bed.add_physical_switch("phys")
    c1 = bed.add_chassis("c1", tunnel=False, bridge_mappings={"physnet1": sw})
    c2 = bed.add_chassis("c2", tunnel=False, bridge_mappings={"physnet1": sw})
    for ch in (c1, c2):
        assert ch.wait_connected(timeout=20), bed.diagnostics()
        if "ph-physnet1" not in ch.ovs_vsctl("list-ports", "br-int"):
            # node init should have added it (test_node_init_plugs_the_uplink says whether it
            # did); plug it by hand so the traffic tests below still say something.
            log.error("node init left uplink ph-physnet1 off br-int on %s; adding it", ch.name)
            ch.ovs_vsctl("--may-exist", "add-port", "br-int", "ph-physnet1")
            UPLINK_ADDED_BY_HAND.add(ch.name)
    net = bed.api.create("networks", name="prov-vlan", shared=True,
                         **{"provider:network_type": "vlan", "provider:physical_network": "physnet1",
                            "provider:segmentation_id": VLAN})
    sub = bed.api.create("subnets", network_id=net["id"], cidr="10.50.0.0/24", ip_version=4,
                         allocation_pools=[{"start": "10.50.0.10", "end": "10.50.0.99"}])
    outside = sw.add_host("out1", vlan=VLAN, ip="10.50.0.200/24")
    return Provider(bed, sw, c1, c2, net, sub, outside)


@pytest.fixture(scope="module")
def prov(module_bed: Bed) -> Provider:
    try:
        return _build(module_bed)
    except BaseException:
        print(module_bed.diagnostics())
        raise


def vm_on(p: Provider, ch: Chassis, name: str, ip: str, net=None, sub=None) -> Host:
    port = p.bed.api.port(net or p.vlan_net, name=name, fixed_ips=fixed_ip(sub or p.vlan_sub, ip))
    allow_icmp_in(p.bed.api, port)
    vm = p.bed.add_vm(ch, port, name=name)
    assert p.bed.wait_port_status(port), f"{name} not ACTIVE"
    return vm


def learned(ch: Chassis, mac: str) -> list[str]:
    lines = ch.dump_flows(None, f"table={L2_LEARN_TABLE}")
    return [ln for ln in lines if mac.lower() in ln.lower()
            and cookie_of(ln) >> OWNER_SHIFT == LEARNED_KIND]


def test_node_init_plugs_the_uplink(prov: Provider) -> None:
    assert not UPLINK_ADDED_BY_HAND, \
        f"tenantflow node init did not add uplink ph-physnet1 to br-int on {sorted(UPLINK_ADDED_BY_HAND)}"
    for ch in (prov.c1, prov.c2):
        assert ch.bridge_mappings == {"physnet1": "ph-physnet1"}
        rec = [c for c in prov.bed.api.list("chassis") if c["name"] == ch.name]
        assert rec and rec[0]["bridge_mappings"] == {"physnet1": "ph-physnet1"}, rec


def test_vlan_network_vm_and_outside_host(prov: Provider) -> None:
    p, bed = prov, prov.bed
    assert p.vlan_net["provider:network_type"] == "vlan"
    assert p.vlan_net["provider:segmentation_id"] == VLAN
    vm = vm_on(p, p.c1, "v1", "10.50.0.11")
    settle(bed, [p.c1, p.c2])
    # BPF "icmp" also matches tagged frames here (the kernel keeps the tag out of band), so
    # capture all ICMP and read the tag from tcpdump -e's text.
    trunk = bed.tcpdump(p.sw.ns, p.sw.trunks["c1"], "icmp", count=4, timeout=8)
    assert eventually(lambda vm=vm: vm.ping(p.outside.ip, count=1, timeout=2)), bed.diagnostics()
    assert vm.ping(p.outside.ip, count=2)
    lines = [ln for ln in trunk.wait() if "ICMP" in ln]
    assert lines, "no ICMP of the VLAN network on the trunk"
    assert all(f"vlan {VLAN}," in ln for ln in lines), f"ICMP on the trunk without VLAN {VLAN}: {lines}"
    # The other way round: the outside host reaches the VM.
    assert eventually(lambda: p.outside.ping(vm.ip, count=1, timeout=2)), bed.diagnostics()
    # The outside MAC was learned in the datapath (table 42, cookie LEARNED), not by the controller.
    assert eventually(lambda: learned(p.c1, p.outside.mac), 5), \
        f"outside MAC {p.outside.mac} not learned in table {L2_LEARN_TABLE}: " \
        f"{p.c1.dump_flows(None, f'table={L2_LEARN_TABLE}')}"
    # A VLAN 102 host on the same switch is out of reach.
    other = p.sw.add_host("out2", vlan=102, ip="10.50.0.201/24")
    assert not vm.ping(other.ip, count=2, timeout=2)


def test_vlan_network_vms_on_two_chassis(prov: Provider) -> None:
    p, bed = prov, prov.bed
    v2 = vm_on(p, p.c1, "v2", "10.50.0.12")
    v3 = vm_on(p, p.c2, "v3", "10.50.0.13")
    settle(bed, [p.c1, p.c2])
    trunk = bed.tcpdump(p.sw.ns, p.sw.trunks["c2"], "icmp", count=2, timeout=8)
    assert eventually(lambda: v2.ping(v3.ip, count=1, timeout=2)), bed.diagnostics()
    lines = [ln for ln in trunk.wait() if "ICMP" in ln]
    assert lines and all(f"vlan {VLAN}," in ln for ln in lines), \
        f"VM to VM on two chassis did not cross the physical network tagged: {lines}"
    assert v3.ping(v2.ip)
    assert v2.tcp_works(v3, port=5001)
    for vm in (v2, v3):
        assert eventually(lambda vm=vm: vm.ping(p.outside.ip, count=1, timeout=2)), bed.diagnostics()
        assert p.outside.ping(vm.ip)
    assert eventually(lambda: learned(p.c2, p.outside.mac), 5)


def test_flat_network_untagged(prov: Provider) -> None:
    p, bed = prov, prov.bed
    net = bed.api.create("networks", name="prov-flat", shared=True,
                         **{"provider:network_type": "flat", "provider:physical_network": "physnet1"})
    sub = bed.api.create("subnets", network_id=net["id"], cidr="10.60.0.0/24", ip_version=4,
                         allocation_pools=[{"start": "10.60.0.10", "end": "10.60.0.99"}])
    host = p.sw.add_host("flat1", vlan=None, ip="10.60.0.200/24")
    f1 = vm_on(p, p.c1, "f1", "10.60.0.11", net, sub)
    f2 = vm_on(p, p.c2, "f2", "10.60.0.12", net, sub)
    settle(bed, [p.c1, p.c2])
    trunk = bed.tcpdump(p.sw.ns, p.sw.trunks["c1"], "icmp", count=2, timeout=8)
    assert eventually(lambda: f1.ping(host.ip, count=1, timeout=2)), bed.diagnostics()
    lines = [ln for ln in trunk.wait() if "ICMP" in ln]
    assert lines, "no ICMP on the trunk for the flat network"
    assert not any("802.1Q" in ln or "vlan " in ln for ln in lines), f"flat traffic tagged: {lines}"
    assert host.ping(f1.ip) and host.ping(f2.ip)
    assert eventually(lambda: f1.ping(f2.ip, count=1, timeout=2))
    # Flat and VLAN 101 stay apart although they share physnet1.
    assert not f1.ping(p.outside.ip, count=2, timeout=2)
