"""Dhcpv6App: an RFC 8415 DHCPv6 server in the controller, answering from the store.

Stateless like the DHCPv4 server: a port's binding *is* its fixed IP on a dhcpv6-stateful
subnet, so Solicit/Request/Renew/Rebind all hand out that one address and nothing is kept.
Information-Request (dhcpv6-stateless, `dhclient -6 -S`) gets DNS servers (option 23) and the
domain search list (24). The server's DUID is a DUID-LL of a MAC derived from the network id:
stable per network across restarts and controllers (HA), which a client's Renew must name.
Replies go only to the asking port (packet-out to its ofport), from the server's link-local
address; a message whose source MAC is not the asking port's is dropped.
"""
from __future__ import annotations

import hashlib
import ipaddress
import logging

from apps import packets as P
from apps.base import ChassisContext, PacketIn, PacketOut
from apps.punt import PuntApp
from flows import ipv6_services as v6
from flows.flow import Flow
from flows.tables import R
from topology.model.ipam import link_local_address
from topology.store import NETWORK, PORT, SUBNET, Change

LOG = logging.getLogger(__name__)

DEFAULT_LEASE = 86400
DEFAULT_DOMAIN = "openstacklocal"
DUID_LL = 3
HW_ETHERNET = 1


def server_mac(network_id: str) -> str:
    """A locally administered unicast MAC derived from the network id (02:xx:xx:xx:xx:xx)."""
    digest = hashlib.sha256(str(network_id).encode()).digest()
    return ":".join(f"{b:02x}" for b in b"\x02" + digest[:5])


def server_duid(network_id: str) -> bytes:
    """DUID-LL (RFC 8415 §11.4) of the network's server MAC."""
    mac = bytes.fromhex(server_mac(network_id).replace(":", ""))
    return DUID_LL.to_bytes(2, "big") + HW_ETHERNET.to_bytes(2, "big") + mac


class Dhcpv6App(PuntApp):
    """FlowApp (DHCPv6 punts) + PacketApp (the server)."""

    name = "dhcp6"
    userdata = v6.USERDATA_DHCPV6
    default_rate = 10.0

    def __init__(self, dns_domain: str | None = None, lease_time: int | None = None,
                 rate: float | None = None, burst: float | None = None, meter_id: int = 0) -> None:
        super().__init__(rate, burst, meter_id)
        self.dns_domain = dns_domain
        self.lease_time = lease_time

    def configure(self, settings) -> None:
        """Deployment settings (the DHCPv4 server's dns_domain and lease time apply here too)."""
        super().configure(settings)  # rate limit and punt meters (apps.punt)
        if self.dns_domain is None:
            self.dns_domain = getattr(settings, "dns_domain", None)
        if self.lease_time is None:
            self.lease_time = getattr(settings, "dhcp_lease_time", None)

    # ---------------------------------------------------------------- FlowApp
    def owners_for_change(self, view, change: Change):
        return v6.owners_changed(view, change)

    def owners_for_chassis(self, view, ctx: ChassisContext):
        return v6.owners_on_chassis(view, ctx)

    def compile(self, view, ctx: ChassisContext, owner: int) -> list[Flow]:
        return v6.compile_owner(view, ctx, owner, "dhcp6", self.meter_id)

    # ---------------------------------------------------------------- PacketApp
    def answer(self, view, ctx: ChassisContext, pkt: PacketIn) -> list[PacketOut]:
        req = P.parse_dhcpv6(pkt.data)
        if req is None:
            self.stats["malformed"] += 1
            return []
        port_key = pkt.registers.get(R.IN_PORT, 0)
        port = view.by_key(PORT, port_key) if port_key else None
        net = view.by_key(NETWORK, pkt.registers.get(R.NETWORK, 0))
        if port is None or net is None or port.get("network_id") != net.get("id") \
                or str(port.get("mac_address") or "").lower() != req.eth_src:
            self.stats["unknown_client"] += 1
            LOG.debug("DHCPv6 %s from unknown client %s (port key %s)", req.name, req.eth_src, port_key)
            return []
        subnets = v6.dhcpv6_subnets(view, net["id"])
        if not subnets:
            self.stats["no_dhcp"] += 1
            return []
        reply = self.reply(view, req, port, net, subnets)
        if reply is None:
            return []
        msg_type, options = reply
        self.stats[P.DH6_NAMES.get(msg_type, str(msg_type)).lower()] += 1
        mac = server_mac(net["id"])
        frame = P.build_dhcpv6_reply(server_mac=mac, server_ip=link_local_address(mac), eth_dst=req.eth_src,
                                     ip_dst=req.src, msg_type=msg_type, xid=req.xid, options=options)
        return [PacketOut(pkt.in_ofport, frame)]

    # ---------------------------------------------------------------- the protocol
    def _lifetimes(self) -> tuple[int, int, int, int]:
        """(T1, T2, preferred, valid): renew at 50 %, rebind at 80 % (RFC 8415 §21.4 advice)."""
        lease = int(self.lease_time or DEFAULT_LEASE)
        return lease // 2, lease * 4 // 5, lease, lease

    @staticmethod
    def _stateful_ips(view, port: dict) -> list[str]:
        out = []
        for f in port.get("fixed_ips") or ():
            sn = view.get(SUBNET, f.get("subnet_id"))
            if sn is not None and int(sn.get("ip_version", 4)) == 6 and v6.is_dhcpv6_stateful(sn) \
                    and sn.get("enable_dhcp", True) and ":" in str(f.get("ip_address")):
                out.append(str(f["ip_address"]))
        return out

    def _config_options(self, subnets: list[dict]) -> bytes:
        """DNS servers (23) and domain search list (24), as dnsmasq gives them for Neutron."""
        dns: list[str] = []
        for sn in subnets:
            dns += [d for d in sn.get("dns_nameservers") or () if ":" in d and d not in dns]
        out = b""
        if dns:
            out += P.dhcpv6_option(P.D6O_DNS_SERVERS, b"".join(ipaddress.IPv6Address(d).packed for d in dns))
        domain = str(self.dns_domain if self.dns_domain is not None else DEFAULT_DOMAIN).strip(".")
        encoded = P.encode_domain_list([domain]) if domain else b""
        if encoded:
            out += P.dhcpv6_option(P.D6O_DOMAIN_LIST, encoded)
        return out

    def _ia_options(self, req: P.Dhcpv6Frame, ips: list[str]) -> bytes:
        """One IA_NA per IA_NA asked for, holding the port's address(es); addresses the client
        names that are not (any longer) its own come back with lifetimes 0 (RFC 8415 §18.3.4)."""
        t1, t2, preferred, valid = self._lifetimes()
        out = b""
        for ia in req.ia_na:
            if not ips:
                out += P.encode_ia_na(ia.iaid, 0, 0, P.encode_status(P.STATUS_NOADDRS_AVAIL,
                                                                     "no addresses for this port"))
                continue
            sub = b"".join(P.encode_iaaddr(ip, preferred, valid) for ip in ips)
            sub += b"".join(P.encode_iaaddr(a, 0, 0) for a in ia.addresses if a not in ips)
            out += P.encode_ia_na(ia.iaid, t1, t2, sub)
        return out

    def reply(self, view, req: P.Dhcpv6Frame, port: dict, net: dict,
              subnets: list[dict]) -> tuple[int, bytes] | None:
        """(message type, options) of the answer to `req`, or None to stay silent (RFC 8415 §16)."""
        duid = server_duid(net["id"])
        mt = req.msg_type
        if mt != P.DH6_INFORMATION_REQUEST and req.client_id is None:
            self.stats["no_client_id"] += 1
            return None
        named_us = req.server_id == duid
        if mt in (P.DH6_SOLICIT, P.DH6_CONFIRM, P.DH6_REBIND) and req.server_id is not None:
            self.stats["has_server_id"] += 1  # §16.2, §16.5, §16.7: must not carry one
            return None
        if mt in (P.DH6_REQUEST, P.DH6_RENEW, P.DH6_RELEASE, P.DH6_DECLINE) and not named_us:
            self.stats["other_server"] += 1  # for another server (or none named): not ours to answer
            return None
        if mt == P.DH6_INFORMATION_REQUEST and req.server_id is not None and not named_us:
            self.stats["other_server"] += 1
            return None
        head = P.dhcpv6_option(P.D6O_SERVERID, duid)
        if req.client_id is not None:
            head += P.dhcpv6_option(P.D6O_CLIENTID, req.client_id)
        if mt == P.DH6_INFORMATION_REQUEST:
            return P.DH6_REPLY, head + self._config_options(subnets)
        ips = self._stateful_ips(view, port)
        if mt == P.DH6_SOLICIT:
            if not ips:
                return P.DH6_ADVERTISE, head + P.encode_status(P.STATUS_NOADDRS_AVAIL, "no addresses for this port")
            body = self._ia_options(req, ips) + self._config_options(subnets)
            if req.rapid_commit:
                return P.DH6_REPLY, head + P.dhcpv6_option(P.D6O_RAPID_COMMIT, b"") + body
            return P.DH6_ADVERTISE, head + P.dhcpv6_option(P.D6O_PREFERENCE, b"\xff") + body
        if mt in (P.DH6_REQUEST, P.DH6_RENEW, P.DH6_REBIND):
            return P.DH6_REPLY, head + self._ia_options(req, ips) + self._config_options(subnets)
        if mt == P.DH6_CONFIRM:
            addrs = [a for ia in req.ia_na for a in ia.addresses]
            if not addrs:
                return None  # §18.3.3: nothing to confirm
            nets = [ipaddress.IPv6Network(s["cidr"], strict=False) for s in view.subnets_of_network(net["id"])
                    if int(s.get("ip_version", 4)) == 6]
            on_link = all(any(ipaddress.IPv6Address(a) in n for n in nets) for a in addrs)
            code = P.STATUS_SUCCESS if on_link else P.STATUS_NOT_ON_LINK
            return P.DH6_REPLY, head + P.encode_status(code, "all addresses on link" if on_link else "not on link")
        if mt == P.DH6_RELEASE:
            LOG.info("DHCPv6 RELEASE from %s (port %s)", req.eth_src, port.get("id"))
            return P.DH6_REPLY, head + P.encode_status(P.STATUS_SUCCESS, "released")
        if mt == P.DH6_DECLINE:
            LOG.warning("DHCPv6 DECLINE from %s (port %s): %s reported in use", req.eth_src, port.get("id"),
                        [a for ia in req.ia_na for a in ia.addresses])
            return P.DH6_REPLY, head + P.encode_status(P.STATUS_SUCCESS, "declined")
        self.stats["ignored"] += 1
        return None
