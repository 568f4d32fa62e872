"""IPv6 data plane with real packets: NDP answered by the controller, ping6 on a network and
across a router (hop limit 63), the router's link-local answering NS and echo, ICMPv6 time
exceeded / unreachable from the router, two tenants with the same IPv6 prefix kept apart, forged
RA and NA from a VM dropped.

VMs get their port's fixed IP statically (`ip -6 addr add … nodad`), so nothing here depends on
SLAAC/DHCPv6 from the controller (tests for those live with that feature). One bed for the
module; c1 and c2 so that NDP and routing cross a tunnel too.
"""
from __future__ import annotations

import ipaddress
import re
import time

import pytest

from tests.integration.test_security_helpers import eventually, scapy_send, start
from tests.testbed import serve_implemented

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not serve_implemented(), reason="tenantflow serve not implemented yet")]

P1, P2 = "2001:db8:61::", "2001:db8:62::"


def lla(mac: str) -> str:
    b = bytes.fromhex(mac.replace(":", ""))
    eui = bytes([b[0] ^ 2]) + b[1:3] + b"\xff\xfe" + b[3:]
    return str(ipaddress.IPv6Address(b"\xfe\x80" + b"\x00" * 6 + eui))


def v6_net(api, name: str, prefix: str):
    net = api.create("networks", name=name)
    sub = api.create("subnets", network_id=net["id"], cidr=prefix + "/64", ip_version=6, name=name + "-v6",
                     gateway_ip=prefix + "1")
    return net, sub


def _eui64_link_local(vm) -> None:
    """The link-local a VM whose NIC had the port's MAC from the start forms (the bed sets the MAC
    after the veth came up, so the kernel's own link-local derives from the veth's first MAC)."""
    vm.run(["sysctl", "-qw", "net.ipv6.conf.eth0.accept_ra=0"])  # routes are ours, not an RA's
    vm.run(["ip", "-6", "addr", "flush", "dev", "eth0", "scope", "link"])
    vm.run(["ip", "-6", "addr", "add", f"{lla(vm.mac)}/64", "dev", "eth0", "nodad"])


def v6_vm(bed, api, ch, net, sub, host: int, name: str, gateway: str | None = None):
    """A VM with the port's fixed IPv6 address configured by hand (no SLAAC/DHCPv6 needed)."""
    addr = str(ipaddress.ip_network(sub["cidr"])[host])
    port = api.port(net, name=name, fixed_ips=[{"subnet_id": sub["id"], "ip_address": addr}])
    vm = bed.add_vm(ch, port, ip=False, name=name)
    vm.ip6 = port["fixed_ips"][0]["ip_address"]
    _eui64_link_local(vm)
    vm.run(["ip", "-6", "addr", "add", f"{vm.ip6}/64", "dev", "eth0", "nodad"])
    if gateway:
        vm.run(["ip", "-6", "route", "replace", "default", "via", gateway, "dev", "eth0"])
    assert bed.wait_port_status(port), f"{name} not ACTIVE"
    return vm


def ping6(vm, ip: str, timeout: int = 3) -> str | None:
    """The reply line's hop limit text, or None without a reply."""
    res = vm.run(["ping", "-6", "-n", "-c", "1", "-w", str(timeout), ip], check=False, timeout=timeout + 5)
    m = re.search(r"ttl=(\d+)", res.stdout)
    return m.group(1) if res.returncode == 0 and m else None


@pytest.fixture(scope="module")
def env(module_bed):
    bed = module_bed
    c1, c2 = start(bed)
    t1 = bed.api.as_project("v6t1")
    n1, s1 = v6_net(t1, "v6a", P1)
    n2, s2 = v6_net(t1, "v6b", P2)
    rtr = t1.create("routers", name="v6r")
    for sub in (s1, s2):
        t1.put(f"routers/{rtr['id']}/add_router_interface", {"subnet_id": sub["id"]})
    vms = {"a": v6_vm(bed, t1, c1, n1, s1, 0xa, "v6-a", gateway=P1 + "1"),
           "b": v6_vm(bed, t1, c2, n1, s1, 0xb, "v6-b", gateway=P1 + "1"),
           "c": v6_vm(bed, t1, c2, n2, s2, 0xc, "v6-c", gateway=P2 + "1")}
    iface = {p["network_id"]: p for p in t1.list("ports", device_id=rtr["id"])}
    return bed, (c1, c2), t1, vms, iface, (n1, n2)


def test_ping6_on_one_network_across_chassis(env):
    bed, _, _, vms, _, _ = env
    assert eventually(lambda: ping6(vms["a"], vms["b"].ip6) is not None, timeout=30), bed.diagnostics()
    assert ping6(vms["b"], vms["a"].ip6) is not None
    # the neighbour entry came from the controller's NA: the MAC of b's port
    neigh = vms["a"].run(["ip", "-6", "neigh", "show", vms["b"].ip6], check=False).stdout.lower()
    assert vms["b"].mac.lower() in neigh, neigh


def _dad_state(vm, addr: str, timeout: float = 8.0) -> str:
    """'ok' once `addr` is no longer tentative, 'dadfailed' if DAD failed (bounded wait)."""
    deadline = time.monotonic() + timeout
    out = ""
    while time.monotonic() < deadline:
        out = vm.run(["ip", "-6", "addr", "show", "dev", "eth0"], check=False).stdout
        line = next((ln for ln in out.splitlines() if f"{addr}/" in ln), "")
        if "dadfailed" in line:
            return "dadfailed"
        if line and "tentative" not in line:
            return "ok"
        time.sleep(0.3)
    return out


def test_dad_passes_for_own_address_fails_for_anothers(env):
    bed, (c1, _), t1, vms, _, (n1, _) = env
    sub = t1.list("subnets", network_id=n1["id"])[0]
    addr = str(ipaddress.ip_network(sub["cidr"])[0xd])
    port = t1.port(n1, name="v6-dad", fixed_ips=[{"subnet_id": sub["id"], "ip_address": addr}])
    vm = bed.add_vm(c1, port, ip=False, name="v6-dad")
    _eui64_link_local(vm)
    assert bed.wait_port_status(port)
    vm.run(["ip", "-6", "addr", "add", f"{addr}/64", "dev", "eth0"])  # with DAD: the controller stays silent
    assert _dad_state(vm, addr) == "ok", bed.diagnostics()
    taken = vms["b"].ip6  # b's address, on the wrong VM: the controller's all-nodes NA defends it
    vm.run(["ip", "-6", "addr", "add", f"{taken}/64", "dev", "eth0"])
    assert _dad_state(vm, taken) == "dadfailed"


def test_routed_ping6_hop_limit_63(env):
    bed, _, _, vms, _, _ = env
    assert eventually(lambda: ping6(vms["a"], vms["c"].ip6) is not None, timeout=30), bed.diagnostics()
    assert ping6(vms["a"], vms["c"].ip6) == "63"  # one router hop, decremented once
    assert ping6(vms["c"], vms["a"].ip6) == "63"


def test_router_sends_time_exceeded_and_unreachable(env):
    bed, _, _, vms, _, _ = env
    assert eventually(lambda: ping6(vms["a"], vms["c"].ip6) is not None, timeout=30), bed.diagnostics()
    out = vms["a"].run(["ping", "-6", "-n", "-c", "1", "-t", "1", "-w", "3", vms["c"].ip6], check=False,
                       timeout=10).stdout
    assert f"From {P1}1" in out and "Time exceeded" in out, out
    out = vms["a"].run(["ping", "-6", "-n", "-c", "1", "-w", "3", "2001:db8:99::1"], check=False, timeout=10).stdout
    assert f"From {P1}1" in out and "Destination unreachable" in out, out


def test_router_link_local_answers_ns_and_echo(env):
    bed, _, _, vms, iface, (n1, _) = env
    router_lla = lla(iface[n1["id"]]["mac_address"])
    ok = eventually(lambda: ping6(vms["a"], f"{router_lla}%eth0") is not None, timeout=20)
    assert ok, (vms["a"].run(["ping", "-6", "-c", "1", "-w", "2", f"{router_lla}%eth0"], check=False).stdout
                + vms["a"].run(["ip", "-6", "neigh"], check=False).stdout
                + vms["a"].run(["ip", "-6", "addr"], check=False).stdout + bed.diagnostics())
    assert ping6(vms["a"], P1 + "1") is not None  # its global address too
    neigh = vms["a"].run(["ip", "-6", "neigh", "show", router_lla, "dev", "eth0"], check=False).stdout.lower()
    assert iface[n1["id"]]["mac_address"].lower() in neigh and "router" in neigh, neigh


def test_same_prefix_tenants_isolated(env):
    bed, (c1, c2), t1, vms, _, _ = env
    t2 = bed.api.as_project("v6t2")
    n, s = v6_net(t2, "v6x", P1)  # tenant 1's prefix, and tenant 1's addresses
    x = v6_vm(bed, t2, c1, n, s, 0xa, "v6-x")
    y = v6_vm(bed, t2, c2, n, s, 0xb, "v6-y")
    cap = bed.tcpdump(vms["b"], "eth0", f"icmp6 and ether src {x.mac}", count=1, timeout=8)
    assert eventually(lambda: ping6(x, y.ip6) is not None, timeout=30), bed.diagnostics()
    assert not cap.wait(), "tenant 1's VM saw tenant 2's traffic"


def _seen(bed, sender, receiver, frame: str, bpf: str, timeout: float = 15.0) -> list[str]:
    """Send a scapy frame from `sender` then a genuine echo as marker; what `receiver` saw of `bpf`."""
    cap = bed.tcpdump(receiver, "eth0", f"({bpf}) or (icmp6 and ip6[40] == 128)", count=50, timeout=timeout)
    marker = (f"Ether(src='{sender.mac}', dst='{receiver.mac}')/IPv6(src='{sender.ip6}', dst='{receiver.ip6}')"
              "/ICMPv6EchoRequest(id=7, seq=1)")
    scapy_send(sender, f"sendp({frame}, iface='eth0', count=3, inter=0.2)\n"
                       f"time.sleep(0.5)\nsendp({marker}, iface='eth0', count=3, inter=0.2)")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not any("echo request" in ln for ln in cap.lines()):
        time.sleep(0.3)
    cap.stop()
    lines = cap.lines()
    assert any("echo request" in ln for ln in lines), f"marker never arrived: {lines}\n{bed.diagnostics()}"
    return [ln for ln in lines if "echo request" not in ln]


def test_forged_router_advertisement_dropped(env):
    bed, _, _, vms, _, _ = env
    a, b = vms["a"], vms["b"]
    assert eventually(lambda: ping6(a, b.ip6) is not None, timeout=20)
    ra = (f"Ether(src='{a.mac}', dst='33:33:00:00:00:01')/IPv6(src='{lla(a.mac)}', dst='ff02::1')"
          f"/ICMPv6ND_RA(routerlifetime=1800)/ICMPv6NDOptPrefixInfo(prefix='2001:db8:bad::', prefixlen=64)")
    assert _seen(bed, a, b, ra, "icmp6 and ip6[40] == 134") == []


def test_forged_neighbor_advertisement_dropped(env):
    bed, _, _, vms, _, _ = env
    a, b = vms["a"], vms["b"]
    assert eventually(lambda: ping6(a, b.ip6) is not None, timeout=20)
    forged = (f"Ether(src='{a.mac}', dst='{b.mac}')/IPv6(src='{a.ip6}', dst='{b.ip6}')"
              f"/ICMPv6ND_NA(tgt='{P1}1', R=1, S=0, O=1)/ICMPv6NDOptDstLLAddr(lladdr='{a.mac}')")
    genuine = (f"Ether(src='{a.mac}', dst='{b.mac}')/IPv6(src='{a.ip6}', dst='{b.ip6}')"
               f"/ICMPv6ND_NA(tgt='{a.ip6}', R=0, S=0, O=1)/ICMPv6NDOptDstLLAddr(lladdr='{a.mac}')")
    # BPF on the target's last 32 bits (ip6[60:4]): a's kernel answers b's NUD probes with genuine NAs
    assert _seen(bed, a, b, forged, "icmp6 and ip6[40] == 136 and ip6[60:4] == 1") == []  # the router's
    assert _seen(bed, a, b, genuine, "icmp6 and ip6[40] == 136 and ip6[60:4] == 0xa"), "a's own NA must pass"
    # the router stays reachable from b: its neighbour entry was not poisoned
    assert ping6(b, P1 + "1") is not None
