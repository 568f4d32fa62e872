"""DhcpApp: RFC 2131 message handling, options and reply addressing, against a real TopologyView."""
from __future__ import annotations

import ipaddress

import pytest

from apps.dhcp import DhcpApp, decode_classless_routes, encode_classless_routes
from tests.unit.test_services_fixture import (DHCP_IP, DHCP_MAC, GW_IP, NET3, OFPORTS, SUB1, VM1_IP,
                                              VM1_MAC, VM2_MAC, VM3_MAC, dhcp_frame, make_ctx,
                                              make_view, packet_in, parse_reply)

OFFER, ACK, NAK = 2, 5, 6


def ask(app, view, frame, port="vm1", net="net-1"):
    return app.packet_in(view, make_ctx(), packet_in(frame, port=port, net=net))


def one_reply(app, view, frame, **kw):
    out = ask(app, view, frame, **kw)
    assert len(out) == 1, app.stats
    return out[0]


def test_discover_gets_offer_with_all_options():
    app, view = DhcpApp(), make_view()
    out = one_reply(app, view, dhcp_frame("discover"))
    assert out.ofport == OFPORTS["vm1"]
    eth, ip, bootp, opts = parse_reply(out.data)
    assert opts["message-type"] == OFFER
    assert bootp.op == 2 and bootp.xid == 0x1234 and bootp.yiaddr == VM1_IP
    assert bootp.chaddr[:6] == bytes.fromhex(VM1_MAC.replace(":", ""))
    assert eth.src == DHCP_MAC and ip.src == DHCP_IP
    assert opts["server_id"] == DHCP_IP
    assert opts["subnet_mask"] == "255.255.255.0"
    assert opts["broadcast_address"] == "10.0.0.255"
    assert opts["router"] == GW_IP
    assert opts["name_server"] == ("8.8.8.8", "1.1.1.1")
    assert opts["hostname"] == b"vm1"
    assert opts["domain"] == b"openstacklocal"
    assert opts["interface-mtu"] == 1450
    assert opts["lease_time"] == 86400
    assert opts["renewal_time"] == 43200 and opts["rebinding_time"] == 75600
    assert opts["classless_static_routes"] == ["192.168.0.0/16:10.0.0.254", "0.0.0.0/0:10.0.0.1"]
    assert len(bytes(bootp)) >= 300  # RFC 1542 minimum BOOTP size


def test_unicast_reply_without_broadcast_flag():
    app, view = DhcpApp(), make_view()
    eth, ip, _, _ = parse_reply(one_reply(app, view, dhcp_frame("discover")).data)
    assert eth.dst == VM1_MAC and ip.dst == VM1_IP


def test_broadcast_flag_gets_broadcast_reply():
    app, view = DhcpApp(), make_view()
    eth, ip, bootp, _ = parse_reply(one_reply(app, view, dhcp_frame("discover", flags=0x8000)).data)
    assert eth.dst == "ff:ff:ff:ff:ff:ff" and ip.dst == "255.255.255.255"
    assert bootp.flags == 0x8000


def test_request_selecting_gets_ack():
    app, view = DhcpApp(), make_view()
    frame = dhcp_frame("request", extra=[("requested_addr", VM1_IP), ("server_id", DHCP_IP)])
    eth, ip, bootp, opts = parse_reply(one_reply(app, view, frame).data)
    assert opts["message-type"] == ACK and bootp.yiaddr == VM1_IP and ip.dst == VM1_IP


def test_request_wrong_address_gets_broadcast_nak():
    app, view = DhcpApp(), make_view()
    frame = dhcp_frame("request", extra=[("requested_addr", "10.0.0.99")])
    eth, ip, bootp, opts = parse_reply(one_reply(app, view, frame).data)
    assert opts["message-type"] == NAK
    assert bootp.yiaddr == "0.0.0.0" and eth.dst == "ff:ff:ff:ff:ff:ff" and ip.dst == "255.255.255.255"
    assert "lease_time" not in opts


def test_request_for_another_server_gets_nak():
    app, view = DhcpApp(), make_view()
    frame = dhcp_frame("request", extra=[("requested_addr", VM1_IP), ("server_id", "10.0.0.3")])
    _, _, _, opts = parse_reply(one_reply(app, view, frame).data)
    assert opts["message-type"] == NAK


def test_renewal_unicast_to_ciaddr():
    app, view = DhcpApp(), make_view()
    frame = dhcp_frame("request", ciaddr=VM1_IP, src=VM1_IP, dst=DHCP_IP)
    eth, ip, bootp, opts = parse_reply(one_reply(app, view, frame).data)
    assert opts["message-type"] == ACK
    assert ip.dst == VM1_IP and eth.dst == VM1_MAC and bootp.ciaddr == VM1_IP


def test_renewal_with_wrong_ciaddr_naks():
    app, view = DhcpApp(), make_view()
    frame = dhcp_frame("request", ciaddr="10.0.0.44", src="10.0.0.44", dst=DHCP_IP)
    _, _, _, opts = parse_reply(one_reply(app, view, frame).data)
    assert opts["message-type"] == NAK


def test_inform_acks_without_lease():
    app, view = DhcpApp(), make_view()
    frame = dhcp_frame("inform", ciaddr=VM1_IP, src=VM1_IP)
    eth, ip, bootp, opts = parse_reply(one_reply(app, view, frame).data)
    assert opts["message-type"] == ACK and bootp.yiaddr == "0.0.0.0" and ip.dst == VM1_IP
    assert "lease_time" not in opts and "renewal_time" not in opts
    assert opts["subnet_mask"] == "255.255.255.0"


@pytest.mark.parametrize("msg", ["release", "decline"])
def test_release_and_decline_are_silent_and_counted(msg):
    app, view = DhcpApp(), make_view()
    assert ask(app, view, dhcp_frame(msg, ciaddr=VM1_IP, extra=[("requested_addr", VM1_IP)])) == []
    assert app.stats[msg] == 1


def test_unknown_mac_gets_nothing():
    app, view = DhcpApp(), make_view()
    assert ask(app, view, dhcp_frame("discover", mac="fa:16:3e:99:99:99")) == []
    assert app.stats["unknown_client"] == 1


def test_mac_of_another_port_on_this_port_gets_nothing():
    app, view = DhcpApp(), make_view()
    assert ask(app, view, dhcp_frame("discover", mac=VM2_MAC), port="vm1") == []


def test_dhcp_disabled_subnet_gets_nothing():
    app, view = DhcpApp(), make_view()
    assert ask(app, view, dhcp_frame("discover", mac=VM3_MAC), port="vm3", net=NET3) == []
    assert app.stats["no_dhcp"] == 1


def test_no_gateway_omits_router_option_and_default_route():
    def mutate(snap):
        snap["subnet"][SUB1]["gateway_ip"] = None
    app, view = DhcpApp(), make_view(mutate)
    _, _, _, opts = parse_reply(one_reply(app, view, dhcp_frame("discover")).data)
    assert "router" not in opts
    assert opts["classless_static_routes"] == ["192.168.0.0/16:10.0.0.254"]


def test_no_host_routes_no_option_121_and_no_dns():
    def mutate(snap):
        snap["subnet"][SUB1]["host_routes"] = []
        snap["subnet"][SUB1]["dns_nameservers"] = []
    app, view = DhcpApp(), make_view(mutate)
    _, _, _, opts = parse_reply(one_reply(app, view, dhcp_frame("discover")).data)
    assert "classless_static_routes" not in opts and "name_server" not in opts
    assert opts["router"] == GW_IP


def test_hostname_falls_back_to_host_ip():
    def mutate(snap):
        snap["port"]["vm1"]["name"] = "my vm_1"  # not a DNS label
    app, view = DhcpApp(), make_view(mutate)
    _, _, _, opts = parse_reply(one_reply(app, view, dhcp_frame("discover")).data)
    assert opts["hostname"] == b"host-10-0-0-10"


def test_settings_from_constructor_and_from_configure():
    app, view = DhcpApp(dns_domain="example.org.", lease_time=600), make_view()
    _, _, _, opts = parse_reply(one_reply(app, view, dhcp_frame("discover")).data)
    assert opts["domain"] == b"example.org" and opts["lease_time"] == 600
    assert opts["renewal_time"] == 300 and opts["rebinding_time"] == 525

    class S:
        dns_domain, dhcp_lease_time = "lab.test", 1200
    configured = DhcpApp()
    configured.configure(S())  # what controller.core does with the serve settings
    _, _, _, opts = parse_reply(one_reply(configured, view, dhcp_frame("discover")).data)
    assert opts["domain"] == b"lab.test" and opts["lease_time"] == 1200
    app.configure(S())  # explicit constructor values win
    _, _, _, opts = parse_reply(one_reply(app, view, dhcp_frame("discover")).data)
    assert opts["domain"] == b"example.org" and opts["lease_time"] == 600


def test_mtu_defaults_from_network_type_when_missing():
    def mutate(snap):
        del snap["network"]["net-1"]["mtu"]
    app, view = DhcpApp(), make_view(mutate)
    _, _, _, opts = parse_reply(one_reply(app, view, dhcp_frame("discover")).data)
    assert opts["interface-mtu"] == 1450


def test_no_dhcp_port_no_answer():
    def mutate(snap):
        del snap["port"]["dhcp1"]
    app, view = DhcpApp(), make_view(mutate)
    assert ask(app, view, dhcp_frame("discover")) == []
    assert app.stats["no_server"] == 1


def test_server_messages_from_client_are_ignored():
    app, view = DhcpApp(), make_view()
    assert ask(app, view, dhcp_frame("offer")) == []


def test_rate_limit_per_port():
    app, view = DhcpApp(rate=1, burst=3), make_view()
    answered = sum(len(ask(app, view, dhcp_frame("discover"))) for _ in range(10))
    assert answered == 3 and app.stats["rate_limited"] == 7
    # another port is not affected by vm1's flood
    assert len(ask(app, view, dhcp_frame("discover", mac=VM2_MAC), port="vm2")) == 1


def test_classless_routes_encoding_rfc3442_examples():
    # RFC 3442 §3 examples: 0/0 → 1 byte, 10.0.0.0/8 → 2 bytes, 10.17.0.0/16, 10.27.129.0/24 ...
    routes = [("0.0.0.0/0", "10.0.0.1"), ("10.0.0.0/8", "10.0.0.2"), ("10.229.0.128/25", "10.0.0.3"),
              ("192.168.1.7/32", "0.0.0.0")]
    data = encode_classless_routes(routes)
    assert data[:5] == bytes([0, 10, 0, 0, 1])
    assert data[5:11] == bytes([8, 10, 10, 0, 0, 2])
    assert data[11:20] == bytes([25, 10, 229, 0, 128, 10, 0, 0, 3])
    assert data[20:] == bytes([32, 192, 168, 1, 7, 0, 0, 0, 0])
    assert decode_classless_routes(data) == routes


def test_reply_ip_and_udp_checksums_valid():
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    app, view = DhcpApp(), make_view()
    pkt = Ether(one_reply(app, view, dhcp_frame("discover")).data)
    ip_sum, udp_sum = pkt[IP].chksum, pkt[UDP].chksum
    del pkt[IP].chksum, pkt[UDP].chksum
    again = Ether(bytes(pkt))
    assert again[IP].chksum == ip_sum and again[UDP].chksum == udp_sum
    assert ipaddress.IPv4Address(pkt[IP].src) == ipaddress.IPv4Address(DHCP_IP)
