"""Shared topology and frame builders for the ARP/DHCP unit tests (no tests here).

The view is the real topology.view.TopologyView built from a hand-made snapshot, so the apps
are tested against the same interface the controller gives them. Frames are built with scapy,
a different implementation from the os-ken code under test.
"""
from __future__ import annotations

import copy

from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import ARP, Ether

from apps.base import ChassisContext, PacketIn
from flows.tables import R
from topology.view import TopologyView

NET1, NET2, NET3 = "net-1", "net-2", "net-3"
SUB1, SUB2, SUB3 = "sub-1", "sub-2", "sub-3"
DHCP_MAC, DHCP_IP = "fa:16:3e:00:00:02", "10.0.0.2"
VM1_MAC, VM1_IP = "fa:16:3e:00:00:10", "10.0.0.10"
VM2_MAC, VM2_IP = "fa:16:3e:00:00:11", "10.0.0.11"
VM3_MAC, VM3_IP = "fa:16:3e:00:00:31", "10.9.0.5"
RI_MAC, GW_IP = "fa:16:3e:00:00:12", "10.0.0.1"
RGW_MAC, RGW_IP = "fa:16:3e:00:00:13", "172.24.4.5"
EXT_MAC, EXT_IP = "fa:16:3e:00:00:14", "172.24.4.20"
FIP_IP = "172.24.4.50"
NET_KEYS = {NET1: 1, NET2: 3, NET3: 4}
PORT_KEYS = {"dhcp1": 2, "vm1": 10, "vm2": 11, "ri1": 12, "rgw": 13, "ext": 14, "vm3": 15}
OFPORTS = {"vm1": 5, "vm2": 6, "ext": 7, "vm3": 8}


def _port(pid, net, mac, ip, sub, **extra):
    rec = {"id": pid, "_key": PORT_KEYS[pid], "network_id": net, "mac_address": mac, "name": pid,
           "fixed_ips": [{"subnet_id": sub, "ip_address": ip}], "device_owner": "compute:nova",
           "device_id": "", "allowed_address_pairs": [], "admin_state_up": True}
    rec.update(extra)
    return rec


def snapshot() -> dict:
    networks = {
        NET1: {"id": NET1, "_key": 1, "name": "n1", "mtu": 1450, "admin_state_up": True,
               "provider:network_type": "vxlan", "router:external": False},
        NET2: {"id": NET2, "_key": 3, "name": "ext", "mtu": 1500, "admin_state_up": True,
               "provider:network_type": "flat", "router:external": True},
        NET3: {"id": NET3, "_key": 4, "name": "nodhcp", "mtu": 1450, "admin_state_up": True,
               "provider:network_type": "vxlan", "router:external": False},
    }
    subnets = {
        SUB1: {"id": SUB1, "network_id": NET1, "cidr": "10.0.0.0/24", "ip_version": 4,
               "gateway_ip": GW_IP, "enable_dhcp": True, "dns_nameservers": ["8.8.8.8", "1.1.1.1"],
               "host_routes": [{"destination": "192.168.0.0/16", "nexthop": "10.0.0.254"}]},
        SUB2: {"id": SUB2, "network_id": NET2, "cidr": "172.24.4.0/24", "ip_version": 4,
               "gateway_ip": None, "enable_dhcp": False, "dns_nameservers": [], "host_routes": []},
        SUB3: {"id": SUB3, "network_id": NET3, "cidr": "10.9.0.0/24", "ip_version": 4,
               "gateway_ip": "10.9.0.1", "enable_dhcp": False, "dns_nameservers": [], "host_routes": []},
    }
    ports = {
        "dhcp1": _port("dhcp1", NET1, DHCP_MAC, DHCP_IP, SUB1, device_owner="network:dhcp", name=""),
        "vm1": _port("vm1", NET1, VM1_MAC, VM1_IP, SUB1, allowed_address_pairs=[
            {"ip_address": "10.0.0.100", "mac_address": VM1_MAC}, {"ip_address": "10.0.5.0/24"},
            {"ip_address": "10.0.0.77"}]),
        "vm2": _port("vm2", NET1, VM2_MAC, VM2_IP, SUB1, name="", allowed_address_pairs=[
            {"ip_address": "10.0.0.100", "mac_address": VM2_MAC}]),
        "ri1": _port("ri1", NET1, RI_MAC, GW_IP, SUB1, device_owner="network:router_interface",
                     device_id="router-1"),
        "rgw": _port("rgw", NET2, RGW_MAC, RGW_IP, SUB2, device_owner="network:router_gateway",
                     device_id="router-1"),
        "ext": _port("ext", NET2, EXT_MAC, EXT_IP, SUB2),
        "vm3": _port("vm3", NET3, VM3_MAC, VM3_IP, SUB3),
    }
    routers = {"router-1": {"id": "router-1", "_key": 1,
                            "external_gateway_info": {"network_id": NET2}}}
    fips = {"fip-1": {"id": "fip-1", "_key": 1, "floating_network_id": NET2,
                      "floating_ip_address": FIP_IP, "router_id": "router-1", "port_id": "vm1",
                      "fixed_ip_address": VM1_IP},
            "fip-2": {"id": "fip-2", "_key": 2, "floating_network_id": NET2,
                      "floating_ip_address": "172.24.4.51", "router_id": None, "port_id": None}}
    return {"network": networks, "subnet": subnets, "port": ports, "router": routers,
            "floatingip": fips}


def make_view(mutate=None) -> TopologyView:
    snap = copy.deepcopy(snapshot())
    if mutate:
        mutate(snap)
    return TopologyView.from_snapshot(1, snap)


def make_ctx(local=("vm1", "vm2", "ext", "vm3")) -> ChassisContext:
    return ChassisContext(name="c1", datapath_id=1, local_ports={p: OFPORTS[p] for p in local})


def packet_in(data: bytes, port: str = "vm1", net: str = NET1, userdata: bytes = b"") -> PacketIn:
    regs = {R.IN_PORT: PORT_KEYS.get(port, 0), R.NETWORK: NET_KEYS.get(net, 0)}
    return PacketIn(datapath_id=1, chassis="c1", in_ofport=OFPORTS.get(port, 99), table=15,
                    cookie=0, registers=regs, data=data, userdata=userdata)


def arp_request(tpa: str, spa: str = VM1_IP, mac: str = VM1_MAC) -> bytes:
    return bytes(Ether(src=mac, dst="ff:ff:ff:ff:ff:ff") /
                 ARP(op=1, hwsrc=mac, psrc=spa, hwdst="00:00:00:00:00:00", pdst=tpa))


def dhcp_frame(msg: str, mac: str = VM1_MAC, xid: int = 0x1234, flags: int = 0,
               ciaddr: str = "0.0.0.0", src: str = "0.0.0.0", dst: str = "255.255.255.255",
               extra: list | None = None) -> bytes:
    opts = [("message-type", msg)] + list(extra or []) + ["end"]
    raw_mac = bytes.fromhex(mac.replace(":", ""))
    return bytes(Ether(src=mac, dst="ff:ff:ff:ff:ff:ff") / IP(src=src, dst=dst) /
                 UDP(sport=68, dport=67) /
                 BOOTP(op=1, chaddr=raw_mac + b"\x00" * 10, xid=xid, flags=flags, ciaddr=ciaddr) /
                 DHCP(options=opts))


def parse_reply(data: bytes):
    """scapy decode of a reply: (Ether, IP, BOOTP, {option name: value})."""
    pkt = Ether(data)
    opts = {}
    for o in pkt[DHCP].options:
        if isinstance(o, tuple):
            opts[o[0]] = o[1] if len(o) == 2 else o[1:]
    return pkt, pkt[IP], pkt[BOOTP], opts
