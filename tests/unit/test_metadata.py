"""The metadata service's pure parts: answers (OpenStack and EC2 layouts), the proxy signature,
who is asking (pool address → port), per-VM limits, and DHCP's route to 169.254.169.254."""
from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import ipaddress
import json

from apps.dhcp import DhcpApp
from controller import metadata_answers as A
from controller.metadata_agent import MAX_IN_FLIGHT, Agent
from flows import metadata as M
from tests.unit.test_services_fixture import DHCP_IP, GW_IP, dhcp_frame, make_ctx, make_view, packet_in, parse_reply

PORT = {"id": "0123456789abcdef", "name": "web-1", "device_id": "inst-1", "project_id": "proj-1",
        "mac_address": "FA:16:3E:00:00:01", "network_id": "net-1",
        "fixed_ips": [{"subnet_id": "sub-6", "ip_address": "fd00::5"},
                      {"subnet_id": "sub-4", "ip_address": "10.0.0.5"}]}
DOC = {"port": PORT, "network": {"id": "net-1", "mtu": 1450},
       "subnets": [{"id": "sub-4", "cidr": "10.0.0.0/24", "gateway_ip": "10.0.0.1", "enable_dhcp": True,
                    "dns_nameservers": ["10.0.0.53"], "host_routes": [{"destination": "192.168.0.0/16",
                                                                       "nexthop": "10.0.0.254"}]},
                   {"id": "sub-6", "cidr": "fd00::/64", "gateway_ip": None, "enable_dhcp": True}],
       "instance": {"user_data": base64.b64encode(b"#!/bin/sh\necho hi\n").decode(),
                    "public_keys": {"k2": "ssh-rsa BBB", "k1": "ssh-ed25519 AAA"}}}
WHO = A.Who(DOC, "10.0.0.5", "az-1")


def body(path: str):
    status, ctype, data = A.answer(WHO, path)
    return status, (json.loads(data) if ctype == A.JSON else data.decode())


def test_openstack_meta_data():
    status, md = body("/openstack/latest/meta_data.json")
    assert status == 200
    assert md["uuid"] == "inst-1" and md["name"] == "web-1" and md["hostname"] == "web-1"
    assert md["project_id"] == "proj-1" and md["availability_zone"] == "az-1"
    assert md["public_keys"] == {"k1": "ssh-ed25519 AAA", "k2": "ssh-rsa BBB"}
    assert body("/openstack/2013-10-17/meta_data.json")[1] == md           # dated versions = latest
    assert body("/openstack/latest/user_data") == (200, "#!/bin/sh\necho hi\n")
    assert body("/openstack/latest/vendor_data.json") == (200, {})
    assert "latest" in body("/openstack")[1].split("\n")
    assert body("/openstack/latest/nope")[0] == 404 and body("/nope")[0] == 404


def test_network_data_from_the_ports_subnets():
    nd = body("/openstack/latest/network_data.json")[1]
    assert nd["links"] == [{"id": "tap0123456789a", "vif_id": PORT["id"], "type": "ovs", "mtu": 1450,
                            "ethernet_mac_address": "fa:16:3e:00:00:01"}]
    v6, v4 = nd["networks"]
    assert v4["type"] == "ipv4_dhcp" and v4["ip_address"] == "10.0.0.5" and v4["netmask"] == "255.255.255.0"
    assert v4["routes"] == [{"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": "10.0.0.1"},
                            {"network": "192.168.0.0", "netmask": "255.255.0.0", "gateway": "10.0.0.254"}]
    assert v6["type"] == "ipv6" and v6["ip_address"] == "fd00::5"
    assert nd["services"] == [{"type": "dns", "address": "10.0.0.53"}]


def test_ec2_paths():
    assert body("/latest/meta-data/instance-id") == (200, "inst-1")
    assert body("/2009-04-04/meta-data/local-ipv4") == (200, "10.0.0.5")
    assert body("/latest/meta-data/hostname") == (200, "web-1")
    assert body("/latest/meta-data/placement/availability-zone") == (200, "az-1")
    assert body("/latest/meta-data/public-keys/") == (200, "0=k1\n1=k2")
    assert body("/latest/meta-data/public-keys/1/openssh-key") == (200, "ssh-rsa BBB")
    assert body("/latest/meta-data/public-keys/0=k1/openssh-key") == (200, "ssh-ed25519 AAA")
    assert "public-keys/" in body("/latest/meta-data/")[1].split("\n")
    assert body("/latest/user-data") == (200, "#!/bin/sh\necho hi\n")
    assert body("/latest/meta-data/nope")[0] == 404


def test_no_user_data_is_404_and_bad_base64_is_ignored():
    who = A.Who(dict(DOC, instance=None), "10.0.0.5")
    assert A.answer(who, "/openstack/latest/user_data")[0] == 404
    assert A.answer(who, "/latest/user-data")[0] == 404
    who = A.Who(dict(DOC, instance={"user_data": "!!"}), "10.0.0.5")
    assert A.answer(who, "/latest/user-data")[0] == 404


def test_instance_signature_is_hmac_sha256_hex():
    want = hmac.new(b"secret", b"inst-1", hashlib.sha256).hexdigest()
    assert A.instance_signature("inst-1", "secret") == want and len(want) == 64


def _peer(key: int, index: int) -> str:
    return str(ipaddress.IPv4Address(M.source_address(key, index)))


def test_who_maps_the_pool_address_to_the_port_and_its_ip():
    asked = []

    def lookup(key):
        asked.append(key)
        return DOC if key == 7 else None

    agent = Agent(lookup)
    who, status = agent.who(_peer(7, 0))      # index 0 = the first *IPv4* fixed IP
    assert status == 0 and who is not None and who.ip == "10.0.0.5" and who.instance_id == "inst-1"
    assert agent.who(_peer(7, 1)) == (None, 404)    # the port has one IPv4 address
    assert agent.who(_peer(8, 0)) == (None, 404)    # no such port
    assert agent.who("10.0.0.5") == (None, 403)     # not from the steering flows
    no_device = dict(DOC, port=dict(PORT, device_id=""))
    assert Agent(lambda k: no_device).who(_peer(7, 0)) == (None, 404)
    assert asked == [7, 7, 8]


def test_per_vm_limits():
    agent = Agent(lambda k: DOC, rate=0.001, burst=3)
    assert [agent.limit.allow(1) for _ in range(4)] == [True, True, True, False]
    assert agent.limit.allow(2)                      # another VM's budget is its own
    assert all(agent.enter(5) for _ in range(MAX_IN_FLIGHT)) and not agent.enter(5)
    agent.leave(5)
    assert agent.enter(5)


def _routes(app, view, ctx):
    out = app.packet_in(view, ctx, packet_in(dhcp_frame("discover")))
    return parse_reply(out[0].data)[3].get("classless_static_routes")


def test_dhcp_route_to_metadata_via_dhcp_port_when_isolated_else_via_gateway():
    meta_ctx = dataclasses.replace(make_ctx(), metadata_port=9)
    routed = make_view()                              # a router interface holds the gateway IP
    assert _routes(DhcpApp(), routed, meta_ctx) == [f"169.254.169.254/32:{GW_IP}", "192.168.0.0/16:10.0.0.254",
                                                    f"0.0.0.0/0:{GW_IP}"]

    def isolate(snap):
        del snap["port"]["ri1"]
    isolated = make_view(isolate)
    assert _routes(DhcpApp(), isolated, meta_ctx) == [f"169.254.169.254/32:{DHCP_IP}", "192.168.0.0/16:10.0.0.254",
                                                      f"0.0.0.0/0:{GW_IP}"]
    assert _routes(DhcpApp(), isolated, make_ctx()) == ["192.168.0.0/16:10.0.0.254", f"0.0.0.0/0:{GW_IP}"]
    forced = _routes(DhcpApp(force_metadata=True), routed, meta_ctx)
    assert forced[0] == f"169.254.169.254/32:{DHCP_IP}"


def test_open_connections_bounded_per_vm():
    import socket

    from controller.metadata_agent import MAX_CONNECTIONS, Server

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    server = Server(listener, Agent(lambda k: DOC))
    try:
        conns = [socket.socket() for _ in range(MAX_CONNECTIONS + 1)]
        assert all(server.verify_request(c, (_peer(7, 0), 1000 + i)) for i, c in enumerate(conns[:-1]))
        assert not server.verify_request(conns[-1], (_peer(7, 0), 2000))
        assert server.verify_request(conns[-1], (_peer(8, 0), 2000))    # another VM
        server.shutdown_request(conns[0])
        assert server.verify_request(socket.socket(), (_peer(7, 0), 3000))
        assert server.verify_request(socket.socket(), ("10.0.0.5", 1))  # not steered: the handler says 403
    finally:
        server.server_close()
