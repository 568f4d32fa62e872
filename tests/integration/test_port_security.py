"""Port security with scapy-forged frames: spoofed MAC/IP/ARP dropped, pairs allowed, off = open.

The receiver is in an allow-everything group, so whatever is dropped is dropped by port
security, not by a security group. Each check sends one forged frame and looks for it with
tcpdump on the receiver; a genuine frame through the same path is the positive control.
"""
from __future__ import annotations

import time

import pytest

from tests.integration.test_security_helpers import eventually, fresh_network, group, rule, scapy_send, start
from tests.testbed import serve_implemented

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not serve_implemented(), reason="tenantflow serve not implemented yet")]

FOREIGN_MAC = "fa:16:3e:66:66:66"


@pytest.fixture(scope="module")
def env(module_bed):
    c1, c2 = start(module_bed)
    return module_bed, c1, c2


@pytest.fixture
def pair(env):
    """Sender a (c1) and receiver b (c2), both in an open group, on a fresh network."""
    bed, c1, c2 = env
    api = bed.api
    net, sub = fresh_network(api, "ps")
    open_ = group(api, "open")
    rule(api, open_, "ingress")
    pa = api.port(net, security_groups=[open_["id"]])
    pb = api.port(net, security_groups=[open_["id"]])
    a, b = bed.add_vm(c1, pa), bed.add_vm(c2, pb)
    assert eventually(lambda: a.ping(b.ip, count=1, timeout=2)), bed.diagnostics()
    return bed, api, a, b, pa, sub


MARKER_PORT = 7999


def seen(bed, a, b, frame: str, bpf: str, timeout: float = 20.0) -> bool:
    """Send scapy `frame` (an expression) from a, then a genuine marker datagram; True if b's
    eth0 saw a packet matching `bpf` other than the marker.

    The marker makes a negative answer conclusive (the path worked, the frame was dropped) and
    ends the capture early, whatever scapy's start-up time.
    """
    cap = bed.tcpdump(b, b.ifname, f"({bpf}) or (udp dst port {MARKER_PORT})", count=100, timeout=timeout)
    marker = udp_frame(a, b, dport=MARKER_PORT)
    scapy_send(a, f"sendp({frame}, iface='eth0', count=3, inter=0.2)\n"
                  f"time.sleep(0.5)\nsendp({marker}, iface='eth0', count=3, inter=0.2)")
    deadline = time.monotonic() + timeout
    lines: list[str] = []
    while time.monotonic() < deadline:
        lines = cap.lines()
        if any(f".{MARKER_PORT}:" in ln for ln in lines):
            break
        time.sleep(0.3)
    cap.stop()
    lines = cap.lines()
    assert any(f".{MARKER_PORT}:" in ln for ln in lines), f"marker never arrived: {lines}\n{bed.diagnostics()}"
    return any(f".{MARKER_PORT}:" not in ln for ln in lines)


def udp_frame(a, b, src_mac=None, src_ip=None, sport=4444, dport=7777) -> str:
    return (f"Ether(src='{src_mac or a.mac}', dst='{b.mac}')/IP(src='{src_ip or a.ip}', dst='{b.ip}')"
            f"/UDP(sport={sport}, dport={dport})/Raw(b'tenantflow-spoof-test')")


def arp_frame(a, b, hwsrc=None, psrc=None) -> str:
    return (f"Ether(src='{a.mac}', dst='{b.mac}')/ARP(op=2, hwsrc='{hwsrc or a.mac}', psrc='{psrc or a.ip}', "
            f"hwdst='{b.mac}', pdst='{b.ip}')")


def spoofed_ip(sub: dict, last: int = 201) -> str:
    """An address of the subnet that no port holds (pools allocate from the bottom)."""
    return ".".join(sub["cidr"].split("/")[0].split(".")[:3] + [str(last)])


def test_spoofed_mac_ip_and_arp_are_dropped(pair):
    bed, api, a, b, pa, sub = pair
    assert seen(bed, a, b, udp_frame(a, b), "udp port 7777"), "genuine frame not delivered"
    assert not seen(bed, a, b, udp_frame(a, b, src_mac=FOREIGN_MAC), "udp port 7777")
    assert not seen(bed, a, b, udp_frame(a, b, src_ip=spoofed_ip(sub)), "udp port 7777")
    assert seen(bed, a, b, arp_frame(a, b), "arp"), "genuine ARP reply not delivered"
    assert not seen(bed, a, b, arp_frame(a, b, psrc=spoofed_ip(sub)), "arp")
    assert not seen(bed, a, b, arp_frame(a, b, hwsrc=FOREIGN_MAC), "arp")


def test_dhcp_server_replies_from_a_vm_are_dropped(pair):
    bed, api, a, b, pa, sub = pair
    assert seen(bed, a, b, udp_frame(a, b, sport=4444, dport=68), "udp port 68")  # control
    assert not seen(bed, a, b, udp_frame(a, b, sport=67, dport=68), "udp port 68")


def test_allowed_address_pairs_pass(pair):
    bed, api, a, b, pa, sub = pair
    vip, cidr_ip = spoofed_ip(sub, 201), "192.168.77.5"
    api.update("ports", pa["id"], allowed_address_pairs=[
        {"ip_address": vip}, {"ip_address": "192.168.77.0/24", "mac_address": FOREIGN_MAC}])
    assert eventually(lambda: seen(bed, a, b, udp_frame(a, b, src_ip=vip), "udp port 7777"), timeout=15), \
        bed.diagnostics()
    assert seen(bed, a, b, udp_frame(a, b, src_mac=FOREIGN_MAC, src_ip=cidr_ip), "udp port 7777")
    assert seen(bed, a, b, arp_frame(a, b, psrc=vip), "arp")
    # the pair's MAC is bound to its CIDR, and other addresses stay spoofed
    assert not seen(bed, a, b, udp_frame(a, b, src_mac=FOREIGN_MAC), "udp port 7777")
    assert not seen(bed, a, b, udp_frame(a, b, src_ip=spoofed_ip(sub, 202)), "udp port 7777")


def test_port_security_off_lets_forged_frames_pass(pair):
    bed, api, a, b, pa, sub = pair
    assert not seen(bed, a, b, udp_frame(a, b, src_ip=spoofed_ip(sub)), "udp port 7777")
    api.update("ports", pa["id"], security_groups=[], port_security_enabled=False)
    assert eventually(lambda: seen(bed, a, b, udp_frame(a, b, src_ip=spoofed_ip(sub)), "udp port 7777"),
                      timeout=15), bed.diagnostics()
    assert seen(bed, a, b, udp_frame(a, b, src_mac=FOREIGN_MAC), "udp port 7777")
    assert seen(bed, a, b, arp_frame(a, b, psrc=spoofed_ip(sub), hwsrc=FOREIGN_MAC), "arp")
