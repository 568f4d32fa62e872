"""ArpApp: who answers what, against a real TopologyView."""
from __future__ import annotations

from scapy.layers.l2 import ARP, Ether

from apps.arp import ArpApp
from tests.unit.test_services_fixture import (DHCP_IP, DHCP_MAC, EXT_IP, EXT_MAC, FIP_IP, GW_IP, NET2,
                                              OFPORTS, RGW_IP, RGW_MAC, RI_MAC, VM1_IP, VM1_MAC, VM2_IP,
                                              VM2_MAC, arp_request, make_ctx, make_view, packet_in)


def ask(app, view, frame, port="vm1", net="net-1"):
    return app.packet_in(view, make_ctx(), packet_in(frame, port=port, net=net))


def answer_of(app, view, tpa, **kw):
    out = ask(app, view, arp_request(tpa, **{k: v for k, v in kw.items() if k in ("spa", "mac")}),
              **{k: v for k, v in kw.items() if k in ("port", "net")})
    if not out:
        return None
    pkt = Ether(out[0].data)
    assert pkt[ARP].op == 2 and pkt[ARP].psrc == tpa
    assert pkt.src == pkt[ARP].hwsrc
    return out[0], pkt


def test_answers_port_ip_to_the_asking_port():
    app, view = ArpApp(), make_view()
    out, pkt = answer_of(app, view, VM2_IP)
    assert out.ofport == OFPORTS["vm1"]
    assert pkt[ARP].hwsrc == VM2_MAC
    assert pkt.dst == VM1_MAC and pkt[ARP].hwdst == VM1_MAC and pkt[ARP].pdst == VM1_IP


def test_answers_gateway_and_dhcp_port():
    app, view = ArpApp(), make_view()
    assert answer_of(app, view, GW_IP)[1][ARP].hwsrc == RI_MAC
    assert answer_of(app, view, DHCP_IP)[1][ARP].hwsrc == DHCP_MAC


def test_answers_allowed_address_pair():
    app, view = ArpApp(), make_view()
    _, pkt = answer_of(app, view, "10.0.0.77", port="vm2", spa=VM2_IP, mac=VM2_MAC)
    assert pkt[ARP].hwsrc == VM1_MAC


def test_shared_aap_address_is_not_answered():
    app, view = ArpApp(), make_view()
    assert answer_of(app, view, "10.0.0.100") is None


def test_floating_ip_answered_with_router_gateway_mac():
    app, view = ArpApp(), make_view()
    _, pkt = answer_of(app, view, FIP_IP, port="ext", net=NET2, spa=EXT_IP, mac=EXT_MAC)
    assert pkt[ARP].hwsrc == RGW_MAC
    assert answer_of(app, view, RGW_IP, port="ext", net=NET2, spa=EXT_IP, mac=EXT_MAC)[1][ARP].hwsrc == RGW_MAC
    # an unassociated floating IP is nobody's
    assert answer_of(app, view, "172.24.4.51", port="ext", net=NET2, spa=EXT_IP, mac=EXT_MAC) is None


def test_unknown_address_and_other_network_not_answered():
    app, view = ArpApp(), make_view()
    assert answer_of(app, view, "10.0.0.200") is None
    # same IP asked on another network: the network (metadata) scopes the answer
    assert answer_of(app, view, VM2_IP, net=NET2) is None
    assert app.stats["unknown"] == 2


def test_own_address_probe_and_gratuitous_are_silent():
    app, view = ArpApp(), make_view()
    assert answer_of(app, view, VM1_IP, spa="0.0.0.0") is None  # DAD probe for itself
    assert app.stats["own_address"] == 1
    assert answer_of(app, view, VM1_IP, spa=VM1_IP) is None  # gratuitous
    assert app.stats["gratuitous"] == 1


def test_dad_probe_for_someone_elses_address_is_answered():
    app, view = ArpApp(), make_view()
    assert answer_of(app, view, VM2_IP, spa="0.0.0.0") is not None


def test_reply_frames_are_ignored():
    app, view = ArpApp(), make_view()
    frame = bytes(Ether(src=VM1_MAC, dst=VM2_MAC) / ARP(op=2, hwsrc=VM1_MAC, psrc=VM1_IP, pdst=VM2_IP))
    assert ask(app, view, frame) == []


def test_sees_topology_changes():
    from topology.store import Change
    app, view = ArpApp(), make_view()
    assert answer_of(app, view, "10.0.0.50") is None
    rec = dict(view.get("port", "vm2"))
    new = dict(rec, fixed_ips=[{"subnet_id": "sub-1", "ip_address": "10.0.0.50"}])
    view.apply(Change(view.revision + 1, "port", "vm2", rec, new))
    assert answer_of(app, view, "10.0.0.50")[1][ARP].hwsrc == VM2_MAC
    assert answer_of(app, view, VM2_IP) is None
