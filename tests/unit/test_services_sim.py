"""SERVICE (ARP responders, DHCP punts) inside the whole compiled pipeline (every registered app),
walked by the simulator."""
from __future__ import annotations

import pytest

from flows.fields import mac
from flows.simulator import packet
from flows.tables import R
from tests.unit.l2topo import BCAST, UPLINK, Topo, ctx, simulator

MAC_A, MAC_B, MAC_C, MAC_D = "fa:16:3e:00:00:0a", "fa:16:3e:00:00:0b", "fa:16:3e:00:00:0c", "fa:16:3e:00:00:0d"
MAC_DHCP = "fa:16:3e:00:00:02"


def _subnet(t: Topo, net: dict, cidr: str, gw: str | None, dhcp: bool) -> dict:
    return t._put("subnet", {"id": "s-" + net["id"], "network_id": net["id"], "cidr": cidr, "ip_version": 4,
                             "gateway_ip": gw, "enable_dhcp": dhcp, "dns_nameservers": [],
                             "host_routes": [], "allocation_pools": []})


@pytest.fixture
def topo():
    t = Topo()
    t.chassis("c1", "192.0.2.1")
    n1 = t.network("n1")  # vxlan
    _subnet(t, n1, "10.0.0.0/24", "10.0.0.1", True)
    dport = t.port(n1, MAC_DHCP, "10.0.0.2")
    t.update("port", dport["id"], device_owner="network:dhcp")
    a = t.port(n1, MAC_A, "10.0.0.3", "c1")
    b = t.port(n1, MAC_B, "10.0.0.4", "c1")
    n2 = t.network("ext", ntype="flat", physnet="physnet1")
    _subnet(t, n2, "172.24.4.0/24", None, False)
    c = t.port(n2, MAC_C, "172.24.4.3", "c1")
    d = t.port(n2, MAC_D, "172.24.4.4", "c2")  # remote: known, answered by c1's switch
    view = t.view()
    chassis = ctx("c1", {a["id"]: 1, b["id"]: 2, c["id"]: 3}, "192.0.2.1")
    return view, chassis, {"a": a, "b": b, "c": c, "d": d, "n1": n1, "n2": n2}


def arp(sha: str, spa: str, tpa: str, op: int = 1, dst: str = BCAST) -> dict:
    return packet(eth_src=sha, eth_dst=dst, eth_type=0x0806, arp_op=op, arp_sha=sha, arp_spa=spa,
                  arp_tha="00:00:00:00:00:00", arp_tpa=tpa)


def dhcp(src_mac: str) -> dict:
    return packet(eth_src=src_mac, eth_dst=BCAST, eth_type=0x0800, ip_proto=17, ipv4_src="0.0.0.0",
                  ipv4_dst="255.255.255.255", udp_src=68, udp_dst=67)


def test_dhcp_discover_is_punted_with_port_and_network(topo):
    view, c, o = topo
    res = simulator(view, c).run(dhcp(MAC_A), in_port=1)
    assert res.ports() == [], res.dump_trace()
    (p,) = res.punts
    assert p.userdata == b"dhcp"
    assert p.packet[R.IN_PORT] == o["a"]["_key"] and p.packet["metadata"] == o["n1"]["_key"]


def test_dhcp_on_disabled_subnet_is_not_punted(topo):
    view, c, _ = topo
    res = simulator(view, c).run(dhcp(MAC_C), in_port=3)
    assert res.punts == []


def assert_answered(res, in_port: int, asker_mac: str, asker_ip: str, ip: str, mac_: str) -> None:
    """One ARP reply `ip is-at mac_` back out of the asking port, no packet-in, nothing flooded."""
    assert res.punts == [] and res.ports() == [in_port], res.dump_trace()
    got = res.outputs[0].on_wire()
    want = arp(mac_, ip, asker_ip, op=2, dst=asker_mac)
    want["arp_tha"] = mac(asker_mac)
    assert got == want, res.dump_trace()


def test_arp_for_known_address_is_answered_in_the_switch_not_flooded(topo):
    view, c, o = topo
    sim = simulator(view, c)
    for tpa, mac_ in (("10.0.0.4", MAC_B), ("10.0.0.2", MAC_DHCP)):  # a VM and the DHCP port
        assert_answered(sim.run(arp(MAC_A, "10.0.0.3", tpa), in_port=1), 1, MAC_A, "10.0.0.3", tpa, mac_)
    res = sim.run(arp(MAC_C, "172.24.4.3", "172.24.4.4"), in_port=3)  # remote port on a flat network
    assert_answered(res, 3, MAC_C, "172.24.4.3", "172.24.4.4", MAC_D)


def test_own_address_probe_is_not_answered(topo):
    """A DHCP client's duplicate-address check (sender 0.0.0.0) or a gratuitous ARP for its own
    address must get no answer (OVN: ls_in_arp_rsp skips the owner's port); nor is it flooded."""
    view, c, _ = topo
    sim = simulator(view, c)
    for spa in ("0.0.0.0", "10.0.0.3"):
        res = sim.run(arp(MAC_A, spa, "10.0.0.3"), in_port=1)
        assert res.punts == [] and res.ports() == [], res.dump_trace()
    # someone else probing for A's address is answered (the address is taken)
    assert_answered(sim.run(arp(MAC_B, "0.0.0.0", "10.0.0.3"), in_port=2), 2, MAC_B, "0.0.0.0", "10.0.0.3", MAC_A)


def test_arp_for_unknown_address_dropped_on_overlay_flooded_on_provider(topo):
    view, c, _ = topo
    sim = simulator(view, c)
    res = sim.run(arp(MAC_A, "10.0.0.3", "10.0.0.99"), in_port=1)
    assert res.ports() == [] and res.punts == [], res.dump_trace()
    res = sim.run(arp(MAC_C, "172.24.4.3", "172.24.4.99"), in_port=3)
    assert res.punts == [] and UPLINK in res.ports(), res.dump_trace()


def test_arp_replies_and_other_traffic_follow_l2(topo):
    view, c, _ = topo
    sim = simulator(view, c)
    res = sim.run(arp(MAC_A, "10.0.0.3", "10.0.0.4", op=2, dst=MAC_B), in_port=1)
    assert res.ports() == [2] and res.punts == []
    ping = packet(eth_src=MAC_A, eth_dst=MAC_B, eth_type=0x0800, ip_proto=1, ipv4_src="10.0.0.3",
                  ipv4_dst="10.0.0.4")
    assert sim.run(ping, in_port=1).ports() == [2]


def test_punts_behind_port_security(topo):
    """With port security on (PORT_SEC before SERVICE), client requests still reach the punt and
    the responder; a spoofed ARP request is dropped before it is answered."""
    from apps.registry import default_apps
    from flows import compiler
    from flows.simulator import Simulator
    from topology.store import Change
    view, c, o = topo
    secured = {**o["a"], "port_security_enabled": True}
    view.apply(Change(view.revision + 1, "port", secured["id"], o["a"], secured))
    sim = Simulator(compiler.all_flows(compiler.compile_chassis(default_apps(), view, c)))
    res = sim.run(dhcp(MAC_A), in_port=1)
    assert [p.userdata for p in res.punts] == [b"dhcp"], res.dump_trace()
    assert_answered(sim.run(arp(MAC_A, "10.0.0.3", "10.0.0.4"), in_port=1), 1, MAC_A, "10.0.0.3", "10.0.0.4", MAC_B)
    res = sim.run(arp(MAC_A, "10.0.0.66", "10.0.0.4"), in_port=1)  # foreign sender IP
    assert res.punts == [] and res.ports() == [], res.dump_trace()
    res = sim.run(arp(MAC_D, "10.0.0.3", "10.0.0.4"), in_port=1)  # foreign sender MAC
    assert res.punts == [] and res.ports() == [], res.dump_trace()
    res = sim.run(dhcp(MAC_B), in_port=1)  # someone else's MAC
    assert res.punts == []
