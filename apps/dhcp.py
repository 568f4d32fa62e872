"""DhcpApp: an RFC 2131 DHCPv4 server in the controller, answering from the store.

Stateless on purpose: a port's lease *is* its fixed IP, so there is no lease table to lose on
restart and nothing to replicate between controllers. The server identity is the network's
DHCP port (device_owner network:dhcp), as in Neutron. Replies go only to the port that asked
(packet-out to its ofport); clients whose chaddr is not the MAC of the asking port get nothing.
"""
from __future__ import annotations

import dataclasses
import ipaddress
import time
import logging
from dataclasses import dataclass

from apps import packets as P
from apps.base import ChassisContext, PacketIn, PacketOut
from apps.punt import PuntApp
from flows import services
from flows.tables import R
from topology.store import NETWORK, PORT

LOG = logging.getLogger(__name__)

DEFAULT_LEASE = 86400
DEFAULT_DOMAIN = "openstacklocal"
OVERLAY_OVERHEAD = {"vxlan": 50, "geneve": 50, "gre": 42}

# Option tags (RFC 2132, RFC 3442).
OPT_MASK, OPT_ROUTER, OPT_DNS, OPT_HOSTNAME, OPT_DOMAIN = 1, 3, 6, 12, 15
OPT_MTU, OPT_BROADCAST, OPT_LEASE, OPT_T1, OPT_T2 = 26, 28, 51, 58, 59
OPT_MESSAGE, OPT_CLASSLESS_ROUTES = 56, 121
METADATA_ROUTE = "169.254.169.254/32"


def _ip_bytes(text: str) -> bytes:
    return ipaddress.IPv4Address(text).packed


def encode_classless_routes(routes: list[tuple[str, str]]) -> bytes:
    """RFC 3442 option 121 body: per route, prefix width, significant octets, router."""
    out = bytearray()
    for dest, router in routes:
        net = ipaddress.IPv4Network(dest, strict=False)
        width = net.prefixlen
        out.append(width)
        out += net.network_address.packed[: (width + 7) // 8]
        out += _ip_bytes(router)
    return bytes(out)


def decode_classless_routes(data: bytes) -> list[tuple[str, str]]:
    """Inverse of encode_classless_routes (tests and debugging)."""
    routes, i = [], 0
    while i < len(data):
        width = data[i]
        n = (width + 7) // 8
        dest = bytes(data[i + 1:i + 1 + n]) + b"\x00" * (4 - n)
        router = data[i + 1 + n:i + 5 + n]
        if width > 32 or len(router) != 4:
            raise ValueError("truncated option 121")
        routes.append((f"{ipaddress.IPv4Address(dest)}/{width}", str(ipaddress.IPv4Address(router))))
        i += 5 + n
    return routes


@dataclass(frozen=True, slots=True)
class Lease:
    """Everything a reply needs about one client, resolved from the store."""
    ip: str
    subnet: dict
    network: dict
    port: dict
    server_ip: str
    server_mac: str
    metadata_via: str | None = None   # option 121 gets 169.254.169.254/32 via this (see _metadata_route)


class DhcpApp(PuntApp):
    """FlowApp + PacketApp for DHCPv4 (see module doc)."""

    name = "dhcp"
    userdata = services.USERDATA_DHCP
    default_rate = 10.0

    def __init__(self, dns_domain: str | None = None, lease_time: int | None = None,
                 rate: float | None = None, burst: float | None = None, meter_id: int = 0,
                 force_metadata: bool = False) -> None:
        super().__init__(rate, burst, meter_id)
        self.dns_domain = dns_domain
        self.lease_time = lease_time
        self.force_metadata = force_metadata
        # Observation only (the answers stay stateless): port id → when its last ACKed lease runs out,
        # for the active-leases metric. One entry per port at most; expired ones are pruned on read.
        self._leased: dict[str, float] = {}

    def configure(self, settings) -> None:
        """Deployment settings (topology.model.settings.Settings); explicit constructor args win."""
        super().configure(settings)  # rate limit and punt meters (apps.punt)
        if self.dns_domain is None:
            self.dns_domain = getattr(settings, "dns_domain", None)
        if self.lease_time is None:
            self.lease_time = getattr(settings, "dhcp_lease_time", None)

    @staticmethod
    def _setting(value, default):
        return value if value is not None else default

    def active_leases(self) -> int:
        """Ports whose last ACKed lease has not run out (nor been released)."""
        now = time.monotonic()
        for pid in [p for p, until in list(self._leased.items()) if until <= now]:
            del self._leased[pid]
        return len(self._leased)

    # ---------------------------------------------------------------- PacketApp
    def answer(self, view, ctx: ChassisContext, pkt: PacketIn) -> list[PacketOut]:
        port_key = pkt.registers.get(R.IN_PORT, 0)
        req = P.parse_dhcp(pkt.data)
        if req is None:
            self.stats["malformed"] += 1
            return []
        lease = self._lease(view, port_key, pkt.registers.get(R.NETWORK, 0), req)
        if lease is None:
            return []
        if getattr(ctx, "metadata_port", 0):
            lease = dataclasses.replace(lease, metadata_via=self._metadata_route(view, lease))
        frame = self._reply(view, req, lease)
        if frame is None:
            return []
        return [PacketOut(pkt.in_ofport, frame)]

    def _lease(self, view, port_key: int, net_key: int, req: P.DhcpFrame) -> Lease | None:
        port = view.by_key(PORT, port_key) if port_key else None
        net = view.by_key(NETWORK, net_key) if net_key else None
        if port is None and not port_key and net is not None:  # no port register: MAC in the network
            port = next((p for p in view.ports_of_network(net["id"])
                         if (p.get("mac_address") or "").lower() == req.chaddr), None)
        if port is None or (port.get("mac_address") or "").lower() != req.chaddr:
            self.stats["unknown_client"] += 1
            LOG.debug("DHCP %s from unknown client %s (port key %s)",
                      P.MSG_NAMES.get(req.msg_type), req.chaddr, port_key)
            return None
        found = services.dhcp_subnet(view, port)
        ni = self.network_index(view, port.get("network_id"))
        if found is None or ni is None:
            self.stats["no_dhcp"] += 1
            return None
        subnet, ip = found
        server = self._server(ni, subnet)
        if server is None:
            self.stats["no_server"] += 1
            LOG.warning("network %s has no DHCP port: cannot answer %s", ni.network.get("id"), req.chaddr)
            return None
        return Lease(ip, subnet, ni.network, port, server[0], server[1])

    @staticmethod
    def _server(ni: services.NetworkIndex, subnet: dict) -> tuple[str, str] | None:
        """(IP, MAC) of the network's DHCP port, preferring its address in `subnet`."""
        dport = ni.dhcp_port
        if dport is None:
            return None
        ips = [f.get("ip_address") for f in dport.get("fixed_ips") or ()
               if services.ip_int(f.get("ip_address")) is not None]
        same = [f.get("ip_address") for f in dport.get("fixed_ips") or ()
                if f.get("subnet_id") == subnet.get("id") and services.ip_int(f.get("ip_address")) is not None]
        chosen = (same or ips or [None])[0]
        if chosen is None:
            return None
        return chosen, (dport.get("mac_address") or "").lower()

    def _reply(self, view, req: P.DhcpFrame, lease: Lease) -> bytes | None:
        mt = req.msg_type
        name = P.MSG_NAMES.get(mt, str(mt))
        if mt == P.DISCOVER:
            self.stats["offer"] += 1
            return self._build(view, req, lease, P.OFFER)
        if mt == P.REQUEST:
            server_id = req.ip_option(P.OPT_SERVER_ID)
            wanted = req.ip_option(P.OPT_REQUESTED_IP) or (req.ciaddr if req.ciaddr != P.ZERO_IP else None)
            if server_id is not None and server_id != lease.server_ip:
                self.stats["nak"] += 1
                LOG.info("DHCP REQUEST from %s names server %s, not %s: NAK",
                         req.chaddr, server_id, lease.server_ip)
                return self._nak(req, lease, "wrong server")
            if wanted != lease.ip:
                self.stats["nak"] += 1
                LOG.info("DHCP REQUEST from %s for %s, its address is %s: NAK", req.chaddr, wanted, lease.ip)
                return self._nak(req, lease, "wrong address")
            self.stats["ack"] += 1
            self._leased[str(lease.port.get("id"))] = time.monotonic() + (self.lease_time or 86400)
            return self._build(view, req, lease, P.ACK)
        if mt == P.INFORM:
            self.stats["inform"] += 1
            return self._build(view, req, lease, P.ACK, inform=True)
        if mt == P.DECLINE:
            self.stats["decline"] += 1
            LOG.warning("DHCP DECLINE from %s (port %s): address %s reported in use",
                        req.chaddr, lease.port.get("id"), req.ip_option(P.OPT_REQUESTED_IP) or lease.ip)
            return None
        if mt == P.RELEASE:
            self.stats["release"] += 1
            self._leased.pop(str(lease.port.get("id")), None)
            LOG.info("DHCP RELEASE from %s (port %s) of %s", req.chaddr, lease.port.get("id"), req.ciaddr)
            return None
        self.stats["ignored"] += 1  # OFFER/ACK/NAK are server messages
        LOG.debug("DHCP %s from client %s ignored", name, req.chaddr)
        return None

    # ---------------------------------------------------------------- building
    def options(self, view, lease: Lease, msg_type: int, inform: bool = False) -> list[tuple[int, bytes]]:
        """Options in a fixed order; lease-time options are left out of an INFORM ACK."""
        net = ipaddress.IPv4Network(lease.subnet["cidr"], strict=False)
        gateway = lease.subnet.get("gateway_ip")
        opts: list[tuple[int, bytes]] = [(P.OPT_MSG_TYPE, bytes([msg_type])),
                                         (P.OPT_SERVER_ID, _ip_bytes(lease.server_ip))]
        if not inform:
            lease_s = int(self._setting(self.lease_time, DEFAULT_LEASE))
            opts += [(OPT_LEASE, lease_s.to_bytes(4, "big")),
                     (OPT_T1, int(lease_s * 0.5).to_bytes(4, "big")),
                     (OPT_T2, int(lease_s * 0.875).to_bytes(4, "big"))]
        opts += [(OPT_MASK, net.netmask.packed), (OPT_BROADCAST, net.broadcast_address.packed)]
        if gateway:
            opts.append((OPT_ROUTER, _ip_bytes(gateway)))
        dns = [d for d in lease.subnet.get("dns_nameservers") or () if services.ip_int(d) is not None]
        if dns:
            opts.append((OPT_DNS, b"".join(_ip_bytes(d) for d in dns)))
        opts.append((OPT_HOSTNAME, services.hostname_for(lease.port, lease.ip).encode("ascii")))
        domain = str(self._setting(self.dns_domain, DEFAULT_DOMAIN)).strip(".")
        if domain:
            opts.append((OPT_DOMAIN, domain.encode("ascii", "replace")[:255]))
        opts.append((OPT_MTU, self._mtu(lease.network).to_bytes(2, "big")))
        routes = self._routes(lease.subnet, gateway)
        if lease.metadata_via and not any(d == METADATA_ROUTE for d, _ in routes):
            routes.insert(0, (METADATA_ROUTE, lease.metadata_via))
            if gateway and not any(d.endswith("/0") for d, _ in routes):
                routes.append(("0.0.0.0/0", gateway))
        if routes:
            opts.append((OPT_CLASSLESS_ROUTES, encode_classless_routes(routes)))
        return opts

    def _metadata_route(self, view, lease: Lease) -> str | None:
        """Neutron's rule (dnsmasq driver): 169.254.169.254/32 via the DHCP port on an isolated
        subnet — no router interface holds its gateway IP — or always with force_metadata; via
        the gateway otherwise. Either way the metadata flow (flows/metadata.py) catches the
        request in SERVICE, before routing: the next hop only has to be an address whose ARP is
        answered."""
        gw = lease.subnet.get("gateway_ip")
        if self.force_metadata or not gw:
            return lease.server_ip
        for p in view.ports_of_network(lease.network.get("id")):
            if str(p.get("device_owner") or "").startswith(("network:router_interface", "network:ha_router")):
                if any(f.get("ip_address") == gw for f in p.get("fixed_ips") or ()):
                    return str(gw)
        return lease.server_ip

    @staticmethod
    def _mtu(network: dict) -> int:
        mtu = network.get("mtu")
        if isinstance(mtu, int) and 68 <= mtu <= 65535:
            return mtu
        return 1500 - OVERLAY_OVERHEAD.get(network.get("provider:network_type") or "vxlan", 0)

    @staticmethod
    def _routes(subnet: dict, gateway: str | None) -> list[tuple[str, str]]:
        """host_routes as (cidr, nexthop) + the default via the gateway (RFC 3442: clients
        that take 121 ignore option 3, so the default route must be in 121 too)."""
        routes = []
        for hr in subnet.get("host_routes") or ():
            try:
                dest = ipaddress.IPv4Network(hr.get("destination"), strict=False)
                hop = ipaddress.IPv4Address(hr.get("nexthop"))
            except (ValueError, TypeError):
                continue
            routes.append((str(dest), str(hop)))
        if routes and gateway and not any(d.endswith("/0") for d, _ in routes):
            routes.append(("0.0.0.0/0", gateway))
        return routes

    def _build(self, view, req: P.DhcpFrame, lease: Lease, msg_type: int, inform: bool = False) -> bytes:
        yiaddr = P.ZERO_IP if inform else lease.ip
        ciaddr = req.ciaddr if msg_type == P.ACK else P.ZERO_IP
        # RFC 2131 §4.1: ciaddr → unicast there; broadcast bit → broadcast; else to yiaddr/chaddr.
        if req.ciaddr != P.ZERO_IP:
            ip_dst, eth_dst = req.ciaddr, req.chaddr
        elif req.broadcast_flag:
            ip_dst, eth_dst = P.BROADCAST_IP, P.BROADCAST_MAC
        else:
            ip_dst, eth_dst = yiaddr, req.chaddr
        return P.build_dhcp_reply(server_mac=lease.server_mac, server_ip=lease.server_ip,
                                  eth_dst=eth_dst, ip_dst=ip_dst, request=req, yiaddr=yiaddr,
                                  ciaddr=ciaddr, options=self.options(view, lease, msg_type, inform))

    @staticmethod
    def _nak(req: P.DhcpFrame, lease: Lease, why: str) -> bytes:
        """NAKs are broadcast (RFC 2131 §4.1, giaddr 0) so a client in any state sees them."""
        opts = [(P.OPT_MSG_TYPE, bytes([P.NAK])), (P.OPT_SERVER_ID, _ip_bytes(lease.server_ip)),
                (OPT_MESSAGE, why.encode("ascii"))]
        return P.build_dhcp_reply(server_mac=lease.server_mac, server_ip=lease.server_ip,
                                  eth_dst=P.BROADCAST_MAC, ip_dst=P.BROADCAST_IP, request=req,
                                  yiaddr=P.ZERO_IP, ciaddr=P.ZERO_IP, options=opts)
