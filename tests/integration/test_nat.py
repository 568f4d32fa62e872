"""North-south with real packets: a router with a gateway on a flat external network (physnet1,
an outside learning switch with an outside host on an access port), floating IPs and SNAT.

c1 and c2 both map physnet1; c1 is the router's gateway chassis (first by name). vm-fip on c2
has a floating IP; vm-snat on c1 and vm-snat2 on c2 have none (vm-snat2's traffic reaches c1
over the VXLAN transit key and is SNATed there).
Proven: the outside host pings the floating IP and the VM sees the outside host's real
address; the VM pings out and the outside host sees the floating IP; the VM without a
floating IP reaches the outside host, which sees the router's gateway IP (SNAT), TCP included,
from the gateway chassis and from the other chassis;
ARP for the floating IP is answered from c2's uplink only and for the gateway IP from c1's only.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from tests.integration import nat_bed
from tests.integration.test_l2 import allow_icmp_in, eventually, fixed_ip
from tests.testbed import Bed, Chassis, Host, PhysicalSwitch, serve_implemented

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not serve_implemented(), reason="tenantflow serve not implemented yet")]

OUTSIDE_IP = "172.30.0.200"


@dataclass
class Env:
    bed: Bed
    sw: PhysicalSwitch
    c1: Chassis
    c2: Chassis
    outside: Host
    vm_fip: Host
    vm_snat: Host
    vm_snat2: Host
    fip: dict[str, Any]
    gw_ip: str
    gw_mac: str


def _build(bed: Bed) -> Env:
    bed.start_controller()
    sw = bed.add_physical_switch("phys")
    c1, c2 = nat_bed.gateway_chassis(bed, sw, "c1", "c2")
    api = bed.api
    out = nat_bed.outside(bed, sw, "172.30.0.0/24")
    net, sub = api.network_with_subnet("inside", "10.71.0.0/24")
    rtr = nat_bed.router(out, "r1", [sub])
    ext, outside, gw_ip, gw_port = out.net, out.host, rtr.gw_ip, rtr.gw_port
    assert outside.ip == OUTSIDE_IP
    p_fip = api.port(net, name="vm-fip", fixed_ips=fixed_ip(sub, "10.71.0.20"))
    p_snat = api.port(net, name="vm-snat", fixed_ips=fixed_ip(sub, "10.71.0.30"))
    p_snat2 = api.port(net, name="vm-snat2", fixed_ips=fixed_ip(sub, "10.71.0.31"))
    allow_icmp_in(api, p_fip)
    api.create("security-group-rules", security_group_id=p_fip["security_groups"][0], direction="ingress",
               ethertype="IPv4", protocol="tcp", port_range_min=5001, port_range_max=5009,
               remote_ip_prefix="0.0.0.0/0")
    vm_fip = bed.add_vm(c2, p_fip, gateway=True, name="vm-fip")
    vm_snat = bed.add_vm(c1, p_snat, gateway=True, name="vm-snat")
    vm_snat2 = bed.add_vm(c2, p_snat2, gateway=True, name="vm-snat2")
    for p in (p_fip, p_snat, p_snat2):
        assert bed.wait_port_status(p)
    fip = api.create("floatingips", floating_network_id=ext["id"], port_id=p_fip["id"])
    return Env(bed, sw, c1, c2, outside, vm_fip, vm_snat, vm_snat2, fip, gw_ip, gw_port["mac_address"])


@pytest.fixture(scope="module")
def env(module_bed: Bed) -> Env:
    try:
        return _build(module_bed)
    except BaseException:
        print(module_bed.diagnostics())
        raise


def test_outside_host_reaches_floating_ip_and_vm_sees_real_source(env: Env):
    fip = env.fip["floating_ip_address"]
    cap = env.bed.tcpdump(env.vm_fip, "eth0", "icmp[icmptype] = icmp-echo", count=1, timeout=15)
    assert eventually(lambda: env.outside.ping_ok(fip), timeout=30), env.bed.diagnostics()
    lines = cap.wait()
    assert lines and f"{OUTSIDE_IP} > {env.vm_fip.ip}" in lines[0], lines


def test_vm_with_floating_ip_goes_out_as_its_floating_ip(env: Env):
    fip = env.fip["floating_ip_address"]
    cap = env.bed.tcpdump(env.outside, "eth0", "icmp[icmptype] = icmp-echo", count=1, timeout=15)
    assert eventually(lambda: env.vm_fip.ping_ok(OUTSIDE_IP), timeout=30), env.bed.diagnostics()
    lines = cap.wait()
    assert lines and f"{fip} > {OUTSIDE_IP}" in lines[0], lines
    assert env.vm_fip.run(["ip", "addr"]).stdout.count(fip) == 0  # the VM never holds it


def test_tcp_to_floating_ip(env: Env):
    listener = env.vm_fip.nc_listen(5005, timeout=15)
    assert eventually(lambda: env.outside.nc_send(env.fip["floating_ip_address"], 5005, "via-fip"), timeout=20)
    assert listener.wait_for("via-fip")


def test_snat_vm_without_floating_ip_reaches_outside_as_gateway_ip(env: Env):
    cap = env.bed.tcpdump(env.outside, "eth0", f"icmp[icmptype] = icmp-echo and host {OUTSIDE_IP}",
                          count=1, timeout=15)
    assert eventually(lambda: env.vm_snat.ping_ok(OUTSIDE_IP), timeout=30), env.bed.diagnostics()
    lines = cap.wait()
    assert lines and f"{env.gw_ip} > {OUTSIDE_IP}" in lines[0], lines
    listener = env.outside.nc_listen(5006, timeout=15)
    assert env.vm_snat.nc_send(OUTSIDE_IP, 5006, "via-snat")
    assert listener.wait_for("via-snat")


def test_snat_from_the_other_chassis_via_the_gateway_chassis(env: Env):
    cap = env.bed.tcpdump(env.outside, "eth0", f"icmp[icmptype] = icmp-echo and host {OUTSIDE_IP}",
                          count=1, timeout=15)
    assert eventually(lambda: env.vm_snat2.ping_ok(OUTSIDE_IP), timeout=30), env.bed.diagnostics()
    lines = cap.wait()
    assert lines and f"{env.gw_ip} > {OUTSIDE_IP}" in lines[0], lines
    listener = env.outside.nc_listen(5007, timeout=15)
    assert env.vm_snat2.nc_send(OUTSIDE_IP, 5007, "via-transit")
    assert listener.wait_for("via-transit")


def test_snat_gives_outside_no_way_in(env: Env):
    # the VM without a floating IP is not reachable from outside: nothing maps to it
    assert not env.outside.ping(env.vm_snat.ip, count=2, timeout=3)
    # the gateway IP itself answers ping (routers answer ICMP, tests/integration/test_router_icmp.py),
    # but nothing unsolicited gets in through it
    assert not env.outside.nc_send(env.gw_ip, 5008, "no-way-in", timeout=3)


def test_arp_answers_come_from_the_hosting_chassis_only(env: Env):
    fip = env.fip["floating_ip_address"]
    for ip in (fip, env.gw_ip):
        env.outside.run(["ip", "neigh", "flush", "all"], check=False)
        env.outside.run(["arping", "-c", "2", "-w", "4", "-I", "eth0", ip], check=False, timeout=10)
    fip_ports = _flow_packets(env.c2, "arp_tpa=" + fip) , _flow_packets(env.c1, "arp_tpa=" + fip)
    gw_ports = _flow_packets(env.c1, "arp_tpa=" + env.gw_ip), _flow_packets(env.c2, "arp_tpa=" + env.gw_ip)
    assert fip_ports[0] > 0 and fip_ports[1] is None, fip_ports
    assert gw_ports[0] > 0 and gw_ports[1] is None, gw_ports


def _flow_packets(ch: Chassis, needle: str) -> int | None:
    """n_packets summed over br-int's table-0 flows containing `needle`; None if no such flow."""
    total, found = 0, False
    for line in ch.ofctl("dump-flows", "br-int", "table=0").splitlines():
        if needle in line and "arp_op=1" in line:
            found = True
            total += int(line.split("n_packets=")[1].split(",")[0])
    return total if found else None
