"""Port security: a port sends only from its own MAC/IPs (plus allowed address pairs).

Walks packets through the whole compiled pipeline (every registered app plus ours) in the
offline simulator: a packet that reaches the destination's ofport was allowed.
"""
from __future__ import annotations

from flows import port_security as ps
from flows.simulator import packet
from flows.tables import T
from tests.unit.test_security_groups_topo import SecTopo, flows_of, reverse, sim_of, tcp

OTHER_MAC = "fa:16:3e:99:99:99"


def two_vms(**a_fields):
    """A and B on one network, both in an allow-everything group, on one chassis (ofports 1, 2)."""
    t = SecTopo()
    net = t.network("n1")
    g = t.group("open")
    for d in ("ingress", "egress"):
        t.rule(g, d)
    a = t.vm(net, 1, [g], **a_fields)
    b = t.vm(net, 2, [g])
    return t, a, b


def reaches(sim, pkt, in_port, out_port) -> bool:
    return out_port in sim.run(pkt, in_port).ports()


def arp(src_mac, spa, tpa, dst_mac="ff:ff:ff:ff:ff:ff", sha=None, op=1):
    return packet(eth_src=src_mac, eth_dst=dst_mac, eth_type=0x0806, arp_op=op, arp_sha=sha or src_mac,
                  arp_spa=spa, arp_tpa=tpa, arp_tha="00:00:00:00:00:00")


def test_own_addresses_pass_and_spoofed_sources_drop():
    t, a, b = two_vms()
    sim = sim_of(t, {a["id"]: 1, b["id"]: 2})
    good = tcp(a, b, 40000, 80)
    assert reaches(sim, good, 1, 2)
    assert not reaches(sim, dict(good, eth_src=packet(eth_src=OTHER_MAC)["eth_src"]), 1, 2)
    assert not reaches(sim, dict(good, ipv4_src=packet(ipv4_src="10.0.0.77")["ipv4_src"]), 1, 2)
    # B spoofing A's IP is dropped too
    assert not reaches(sim, dict(reverse(good), ipv4_src=good["ipv4_src"]), 2, 1)


def test_arp_with_foreign_sender_is_dropped():
    t, a, b = two_vms()
    sim = sim_of(t, {a["id"]: 1, b["id"]: 2})
    ok = arp(a["mac_address"], "10.0.0.1", "10.0.0.2", dst_mac=b["mac_address"], op=2)
    assert reaches(sim, ok, 1, 2)
    assert not reaches(sim, arp(a["mac_address"], "10.0.0.66", "10.0.0.2", dst_mac=b["mac_address"], op=2), 1, 2)
    assert not reaches(sim, arp(a["mac_address"], "10.0.0.1", "10.0.0.2", dst_mac=b["mac_address"],
                                sha=OTHER_MAC, op=2), 1, 2)
    assert not reaches(sim, arp(OTHER_MAC, "10.0.0.1", "10.0.0.2", dst_mac=b["mac_address"], op=2), 1, 2)


def test_dhcp_client_passes_even_from_0_0_0_0_and_server_replies_drop():
    t, a, b = two_vms()
    sim = sim_of(t, {a["id"]: 1, b["id"]: 2})
    discover = packet(eth_src=a["mac_address"], eth_dst="ff:ff:ff:ff:ff:ff", eth_type=0x0800, ip_proto=17,
                      ipv4_src="0.0.0.0", ipv4_dst="255.255.255.255", udp_src=68, udp_dst=67)
    res = sim.run(discover, 1)
    assert any(s.table == T.SERVICE for s in res.trace), res.dump_trace()
    offer = packet(eth_src=a["mac_address"], eth_dst=b["mac_address"], eth_type=0x0800, ip_proto=17,
                   ipv4_src="10.0.0.1", ipv4_dst="10.0.0.2", udp_src=67, udp_dst=68)
    res = sim.run(offer, 1)
    assert 2 not in res.ports() and not any(s.table == T.SERVICE for s in res.trace), res.dump_trace()


def test_router_advertisement_from_vm_dropped():
    t, a, b = two_vms()
    t.update("port", a["id"], fixed_ips=a["fixed_ips"] + [{"subnet_id": "v6", "ip_address": "2001:db8::1"}])
    sim = sim_of(t, {a["id"]: 1, b["id"]: 2})
    ra = packet(eth_src=a["mac_address"], eth_dst="33:33:00:00:00:01", eth_type=0x86DD, ip_proto=58,
                ipv6_src=int(ps.link_local(packet(eth_src=a["mac_address"])["eth_src"]).network_address),
                ipv6_dst=0xFF020000000000000000000000000001, icmpv6_type=134)
    res = sim.run(ra, 1)
    assert res.trace[1].flow is not None and res.trace[1].flow.actions == (), res.dump_trace()
    assert not res.outputs


def test_allowed_address_pair_cidr_and_mac_pass():
    t, a, b = two_vms(allowed_address_pairs=[{"ip_address": "192.168.7.0/24", "mac_address": OTHER_MAC},
                                             {"ip_address": "10.0.0.50"}])
    sim = sim_of(t, {a["id"]: 1, b["id"]: 2})
    base = tcp(a, b, 40000, 80)
    vip = packet(ipv4_src="10.0.0.50")["ipv4_src"]
    assert reaches(sim, dict(base, ipv4_src=vip), 1, 2)  # pair without MAC: the port's MAC
    in_cidr = packet(eth_src=OTHER_MAC, ipv4_src="192.168.7.33")
    assert reaches(sim, dict(base, **in_cidr), 1, 2)
    # the CIDR pair is bound to its MAC, and addresses outside it stay spoofed
    assert not reaches(sim, dict(base, ipv4_src=in_cidr["ipv4_src"]), 1, 2)
    assert not reaches(sim, dict(base, eth_src=in_cidr["eth_src"],
                                 ipv4_src=packet(ipv4_src="192.168.8.1")["ipv4_src"]), 1, 2)
    assert reaches(sim, arp(OTHER_MAC, "192.168.7.33", "10.0.0.2", dst_mac=b["mac_address"], op=2), 1, 2)


def test_port_security_off_lets_spoofed_traffic_through():
    t, a, b = two_vms(port_security_enabled=False, security_groups=[])
    sim = sim_of(t, {a["id"]: 1, b["id"]: 2})
    spoofed = dict(tcp(a, b, 40000, 80), **packet(eth_src=OTHER_MAC, ipv4_src="10.9.9.9"))
    # L2 lookup is by destination MAC, so the spoofed frame still reaches B
    assert reaches(sim, spoofed, 1, 2)
    assert reaches(sim, arp(OTHER_MAC, "10.9.9.9", "10.0.0.2", dst_mac=b["mac_address"], op=2), 1, 2)


def test_port_security_off_has_only_bypass_flows():
    t, a, b = two_vms(port_security_enabled=False, security_groups=[])
    flows = flows_of(t, {a["id"]: 1, b["id"]: 2})[ps.port_cookie(a)]
    mine = [f for f in flows if f.table in (T.PORT_SEC, T.EGRESS_SG, T.INGRESS_SG)]
    assert len(mine) == 3 and all(f.priority >= ps.P_BYPASS for f in mine)
    ct = [f for f in flows if f.table in (T.EGRESS_CT, T.INGRESS_CT)]  # conntrack skipped both ways
    assert len(ct) == 2 and not any(type(a).__name__ == "CT" for f in ct for a in f.actions)


def test_trusted_network_ports_are_not_filtered():
    port = {"id": "x", "_key": 9, "mac_address": "fa:16:3e:00:00:09", "device_owner": "network:router_interface",
            "fixed_ips": [{"ip_address": "10.0.0.254"}], "port_security_enabled": True}
    assert not ps.is_secured(port)
    assert ps.port_flows(port) == ps.bypass_flows(port)


def test_flow_budget_per_port():
    t, a, b = two_vms()
    flows = [f for f in flows_of(t, {a["id"]: 1, b["id"]: 2})[ps.port_cookie(a)] if f.table == T.PORT_SEC]
    assert len(flows) == 4  # IPv4 allow, ARP allow, DHCP client, per-port drop


def test_ipv6_port_allows_its_addresses_link_local_and_unspecified():
    port = {"id": "x", "_key": 3, "mac_address": "fa:16:3e:00:00:03",
            "fixed_ips": [{"ip_address": "10.0.0.3"}, {"ip_address": "2001:db8::3"}]}
    v6 = [f for f in ps.port_flows(port) if ("eth_type", 0x86DD, None) in f.match]
    srcs = {dict((n, v) for n, v, _ in f.match)["ipv6_src"] for f in v6}
    assert srcs == {0x20010DB8000000000000000000000003, 0, int(ps.link_local(0xFA163E000003).network_address)}
