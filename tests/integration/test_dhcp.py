"""DHCP answered by the controller: real ISC dhclient and busybox udhcpc in VM namespaces."""
from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.testbed import serve_implemented
from tests.integration.test_dhcp_clients import (dhclient, ip_addr, ip_route, mtu, start_controller, udhcpc,
                                                 udhcpc_daemon, wait_file)

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not serve_implemented(), reason="tenantflow serve not implemented yet")]

CIDR, GW = "10.20.0.0/24", "10.20.0.1"
DNS = ["10.20.0.53", "10.20.0.54"]
ROUTE = {"destination": "192.168.50.0/24", "nexthop": "10.20.0.254"}


def dhcp_network(bed, name="dhcpnet", enable_dhcp=True, **net_fields):
    net = bed.api.create("networks", name=name, **net_fields)
    sub = bed.api.create("subnets", network_id=net["id"], cidr=CIDR, ip_version=4, name=name + "-sub",
                         enable_dhcp=enable_dhcp, dns_nameservers=DNS, host_routes=[ROUTE])
    return net, sub


def port_ip(port) -> str:
    return port["fixed_ips"][0]["ip_address"]


@pytest.fixture
def two_chassis(bed):
    start_controller(bed)
    c1, c2 = bed.add_chassis("c1"), bed.add_chassis("c2")
    assert c1.wait_connected(timeout=20) and c2.wait_connected(timeout=20), bed.diagnostics()
    return c1, c2


def test_dhclient_local_and_remote_chassis(bed, two_chassis):
    c1, c2 = two_chassis
    net, _ = dhcp_network(bed)
    assert net.get("mtu") in (None, 1450)
    p1, p2 = bed.api.port(net, name="web-1"), bed.api.port(net)
    vm1 = bed.add_vm(c1, p1, ip=False, mtu=1500)
    vm2 = bed.add_vm(c2, p2, ip=False, mtu=1500)
    for vm, port, host in ((vm1, p1, "web-1"), (vm2, p2, "host-" + port_ip(p2).replace(".", "-"))):
        ok, env, text = dhclient(vm)
        assert ok, f"{vm.name}: no lease\n{text}\n{bed.diagnostics()}"
        assert env["new_ip_address"] == port_ip(port)
        assert env["new_subnet_mask"] == "255.255.255.0"
        assert env["new_routers"] == GW
        assert env["new_domain_name_servers"].split() == DNS
        assert env["new_interface_mtu"] == "1450"
        assert env["new_host_name"] == host
        assert env["new_domain_name"] == "openstacklocal"
        assert env["new_rfc3442_classless_static_routes"].split() == \
            "24 192 168 50 10 20 0 254 0 10 20 0 1".split()
        assert f"inet {port_ip(port)}/24" in ip_addr(vm)
        assert f"default via {GW}" in ip_route(vm)
        assert mtu(vm) == 1450
        assert "rfc3442-classless-static-routes 24,192,168,50,10,20,0,254,0,10,20,0,1" in text
    # the two VMs now reach each other with their DHCP addresses (ARP answered by the controller)
    assert vm1.ping_ok(port_ip(p2))


def test_dhclient_init_reboot_reuses_its_lease(bed, two_chassis):
    c1, _ = two_chassis
    net, _ = dhcp_network(bed)
    p1 = bed.api.port(net)
    vm = bed.add_vm(c1, p1, ip=False)
    ok, env, text = dhclient(vm)
    assert ok, text
    vm.flush_ip()
    ok, env, text = dhclient(vm)  # same lease file: INIT-REBOOT REQUEST for the known address
    assert ok, text
    assert env["new_ip_address"] == port_ip(p1)
    base = vm.workdir / f"h5-dhclient-{vm.name}"
    assert Path(f"{base}.REBOOT").exists() or "DHCPREQUEST" in text


def test_udhcpc_gets_everything_and_renews(bed, two_chassis):
    _, c2 = two_chassis
    net, _ = dhcp_network(bed)
    port = bed.api.port(net)
    vm = bed.add_vm(c2, port, ip=False, mtu=1500)
    proc, base = udhcpc_daemon(vm)
    assert wait_file(Path(f"{base}.bound"), 20), bed.diagnostics()
    env = dict(line.split("=", 1) for line in Path(f"{base}.bound").read_text().splitlines() if "=" in line)
    assert env["ip"] == port_ip(port)
    assert env["subnet"] == "255.255.255.0"
    assert env["router"].split() == [GW]
    assert env["dns"].split() == DNS
    assert env["mtu"] == "1450"
    assert env["staticroutes"].split() == ["192.168.50.0/24", "10.20.0.254", "0.0.0.0/0", GW]
    assert "192.168.50.0/24 via 10.20.0.254" in ip_route(vm)
    assert mtu(vm) == 1450
    # renewal: SIGUSR1 makes udhcpc unicast a REQUEST (ciaddr set) to the server id
    proc.send_signal(signal.SIGUSR1)
    assert wait_file(Path(f"{base}.renew"), 15), bed.diagnostics()
    proc.terminate()


def test_udhcpc_once(bed, two_chassis):
    c1, _ = two_chassis
    net, _ = dhcp_network(bed)
    port = bed.api.port(net)
    vm = bed.add_vm(c1, port, ip=False)
    ok, env = udhcpc(vm)
    assert ok and env["ip"] == port_ip(port), bed.diagnostics()


def test_dhcp_disabled_subnet_gets_nothing(bed, two_chassis):
    c1, _ = two_chassis
    net, _ = dhcp_network(bed, name="nodhcp", enable_dhcp=False)
    port = bed.api.port(net)
    vm = bed.add_vm(c1, port, ip=False)
    res = vm.run(["busybox", "udhcpc", "-i", vm.ifname, "-n", "-q", "-t", "3", "-T", "1",
                  "-s", "/bin/true"], check=False, timeout=20)
    assert res.returncode != 0
    assert "inet " not in ip_addr(vm)
