"""IPv6 services answered by the controller, against the kernel's own SLAAC and ISC dhclient -6.

One VM on a network with three IPv6 subnets behind one router port (SLAAC, DHCPv6-stateful,
DHCPv6-stateless): the RA it solicits makes the kernel form exactly the port's EUI-64 addresses
on the two autonomous prefixes, a default route via the router port's link-local and the
network MTU; `dhclient -6` gets the port's stateful address, `dhclient -6 -S` the DNS servers and
domain search list.
"""
from __future__ import annotations

import ipaddress
import time
from pathlib import Path

import pytest

from tests.integration.test_dhcp_clients import read_env, start_controller
from tests.testbed import serve_implemented
from topology.model.ipam import link_local_address

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not serve_implemented(), reason="tenantflow serve not implemented yet")]

SLAAC, STATEFUL, STATELESS = "2001:db8:61::/64", "2001:db8:62::/64", "2001:db8:63::/64"
DNS6 = "2001:db8:63::53"

DHCLIENT6_CONF = """\
timeout 15;
retry 1;
also request dhcp6.name-servers, dhcp6.domain-search;
"""
SCRIPT = """#!/bin/sh
env | sort > "{out}.$reason.tmp"
mv "{out}.$reason.tmp" "{out}.$reason"
exit 0
"""


def _until(check, timeout: float, step: float = 0.25):
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got or time.monotonic() >= deadline:
            return got
        time.sleep(step)


def _global_v6(vm) -> set[str]:
    """The VM's usable global IPv6 addresses (DAD done)."""
    out = vm.run(["ip", "-6", "-o", "addr", "show", "dev", "eth0", "scope", "global"], check=False).stdout
    return {line.split()[3].split("/")[0] for line in out.splitlines() if "tentative" not in line}


def dhclient6(vm, tag: str, *flags: str, timeout: int = 20) -> tuple[dict[str, str], str]:
    """ISC dhclient -6 once with a private conf/lease/pid and a script that only records its env."""
    base = vm.workdir / f"dh6-{tag}-{vm.name}"
    conf = base.with_suffix(".conf")
    conf.write_text(DHCLIENT6_CONF)
    script = base.with_suffix(".sh")
    script.write_text(SCRIPT.format(out=base))
    script.chmod(0o755)
    lease, pidf = base.with_suffix(".leases"), base.with_suffix(".pid")
    cmd = ["timeout", str(timeout), "dhclient", "-6", *flags, "-1", "-v", "-cf", str(conf), "-lf", str(lease),
           "-pf", str(pidf), "-sf", str(script), "eth0"]
    res = vm.run(cmd, check=False, timeout=timeout + 5)
    vm.run(["sh", "-c", f"[ -f {pidf} ] && kill $(cat {pidf}) 2>/dev/null; true"], check=False)
    env: dict[str, str] = {}
    for reason in ("BOUND6", "REBOOT6", "INFORM6", "RENEW6"):
        env = read_env(Path(f"{base}.{reason}")) or env
    return env, res.stdout + res.stderr + (lease.read_text(errors="replace") if lease.exists() else "")


def test_slaac_and_dhcpv6_clients(bed):
    start_controller(bed)
    c1 = bed.add_chassis("c1")
    assert c1.wait_connected(timeout=20), bed.diagnostics()
    api = bed.api
    net = api.create("networks", name="v6net")
    subs = {}
    for name, cidr, mode in (("slaac", SLAAC, "slaac"), ("stateful", STATEFUL, "dhcpv6-stateful"),
                             ("stateless", STATELESS, "dhcpv6-stateless")):
        subs[name] = api.create("subnets", network_id=net["id"], cidr=cidr, ip_version=6, name=name,
                                ipv6_ra_mode=mode, ipv6_address_mode=mode,
                                dns_nameservers=[DNS6] if name == "stateless" else [])
    router = api.create("routers", name="r6")
    for sub in subs.values():
        api.put(f"routers/{router['id']}/add_router_interface", {"subnet_id": sub["id"]})
    [rport] = api.list("ports", device_id=router["id"], device_owner="network:router_interface")
    assert len(rport["fixed_ips"]) == 3  # Neutron: one router port for all IPv6 subnets of a network
    port = api.port(net, name="v6vm")
    by_subnet = {f["subnet_id"]: f["ip_address"] for f in port["fixed_ips"]}
    auto = {by_subnet[subs["slaac"]["id"]], by_subnet[subs["stateless"]["id"]]}
    stateful_ip = by_subnet[subs["stateful"]["id"]]
    mac = port["mac_address"]
    assert by_subnet[subs["slaac"]["id"]] == str(ipaddress.IPv6Network(SLAAC)[0] + (
        int(ipaddress.IPv6Address(link_local_address(mac))) & ((1 << 64) - 1)))

    vm = bed.add_vm(c1, port, ip=False)
    bed.wait_port_status(port)
    assert c1.wait_flow("icmp_type=133", timeout=15), bed.diagnostics()
    # the kernel's own SLAAC, EUI-64 interface ids; re-up so the link-local is the port MAC's
    vm.run(["ip", "link", "set", "eth0", "down"])
    for key, value in (("disable_ipv6", 0), ("accept_ra", 2), ("autoconf", 1), ("addr_gen_mode", 0)):
        vm.run(["sysctl", "-qw", f"net.ipv6.conf.eth0.{key}={value}"])
    vm.run(["ip", "link", "set", "eth0", "up"])

    got = _until(lambda: _global_v6(vm) if _global_v6(vm) >= auto else None, 20)
    assert got == auto, f"SLAAC addresses {_global_v6(vm)}, want {auto}\n{bed.diagnostics()}"
    gw = link_local_address(rport["mac_address"])
    route = vm.run(["ip", "-6", "route", "show", "default"], check=False).stdout
    assert f"default via {gw} dev eth0 proto ra" in route, route
    assert vm.run(["cat", "/proc/sys/net/ipv6/conf/eth0/mtu"]).stdout.strip() == "1450"

    env, text = dhclient6(vm, "stateful")
    assert env.get("new_ip6_address") == stateful_ip, text
    assert env.get("new_dhcp6_domain_search", "").strip(". ") == "openstacklocal", env
    env, text = dhclient6(vm, "stateless", "-S")
    assert env.get("new_dhcp6_name_servers") == DNS6, text + str(env)
    assert env.get("new_dhcp6_domain_search", "").strip(". ") == "openstacklocal", env
    assert "new_ip6_address" not in env
