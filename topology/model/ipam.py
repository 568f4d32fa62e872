"""IP address management: default gateway/pools of a subnet, pool validation, allocation.

Why allocation is this simple: it always runs inside one store transaction, and store transactions
are serialised, so two requests can never pick the same free address. An allocator lives for one
transaction and keeps a cursor per pool, so a bulk create of N ports costs O(N + used), not O(N²).
"""
from __future__ import annotations

from typing import Iterable

import netaddr

from topology.model import errors


def host_range(cidr: str) -> tuple[int, int]:
    """First and last usable address (IPv4 excludes network and broadcast, except /31 and /32)."""
    net = netaddr.IPNetwork(cidr)
    first, last = net.first, net.last
    if net.version == 4 and net.prefixlen < 31:
        return first + 1, last - 1
    if net.version == 6 and net.prefixlen < 127:
        return first + 1, last
    return first, last


def default_gateway(cidr: str) -> str | None:
    first, last = host_range(cidr)
    if first > last:
        return None
    return str(netaddr.IPAddress(first, netaddr.IPNetwork(cidr).version))


def default_pools(cidr: str, gateway_ip: str | None) -> list[dict[str, str]]:
    """All usable addresses except the gateway, as Neutron computes them."""
    version = netaddr.IPNetwork(cidr).version
    first, last = host_range(cidr)
    ranges: list[tuple[int, int]] = [(first, last)] if first <= last else []
    if gateway_ip is not None:
        gw = int(netaddr.IPAddress(gateway_ip))
        split: list[tuple[int, int]] = []
        for a, b in ranges:
            if a <= gw <= b:
                if a <= gw - 1:
                    split.append((a, gw - 1))
                if gw + 1 <= b:
                    split.append((gw + 1, b))
            else:
                split.append((a, b))
        ranges = split
    return [{"start": str(netaddr.IPAddress(a, version)), "end": str(netaddr.IPAddress(b, version))}
            for a, b in ranges]


def check_pools(cidr: str, pools: list[dict[str, str]], gateway_ip: str | None) -> None:
    """Pools inside the subnet's usable range, not overlapping, not holding the gateway (all 400)."""
    net = netaddr.IPNetwork(cidr)
    first, last = host_range(cidr)
    ranges = []
    for pool in pools:
        start, end = netaddr.IPAddress(pool["start"]), netaddr.IPAddress(pool["end"])
        if start.version != net.version or end.version != net.version or int(start) > int(end) \
                or int(start) < first or int(end) > last:
            raise errors.InvalidAllocationPool(pool=f"{pool['start']}-{pool['end']}",
                                               detail=f"must lie within the usable range of {cidr}")
        ranges.append((int(start), int(end), pool))
    ranges.sort(key=lambda r: r[0])
    for (_a1, b1, p1), (a2, _b2, p2) in zip(ranges, ranges[1:]):
        if a2 <= b1:
            raise errors.InvalidAllocationPool(
                message=f"Found overlapping allocation pools: {p1['start']}-{p1['end']} and "
                        f"{p2['start']}-{p2['end']} for subnet {cidr}.")
    if gateway_ip is not None:
        gw = int(netaddr.IPAddress(gateway_ip))
        for a, b, pool in ranges:
            if a <= gw <= b:
                raise errors.GatewayConflictWithAllocationPools(ip_address=gateway_ip,
                                                                pool=f"{pool['start']}-{pool['end']}")


def check_gateway(cidr: str, gateway_ip: str | None) -> None:
    """The gateway must be a usable address of the subnet (400 otherwise)."""
    if gateway_ip is None:
        return
    net = netaddr.IPNetwork(cidr)
    ip = netaddr.IPAddress(gateway_ip)
    first, last = host_range(cidr)
    if ip.version != net.version or not first <= int(ip) <= last:
        raise errors.InvalidInput(error_message=f"Gateway IP {gateway_ip} is not a usable address of "
                                                f"subnet {cidr}")


def ip_in_subnet(cidr: str, ip: str) -> bool:
    """Whether `ip` may be assigned on the subnet (usable range; not network/broadcast)."""
    addr = netaddr.IPAddress(ip)
    net = netaddr.IPNetwork(cidr)
    if addr.version != net.version:
        return False
    first, last = host_range(cidr)
    return first <= int(addr) <= last


def ip_text(value: int, version: int) -> str:
    """str(netaddr.IPAddress(value, version)); IPv4 without building the IPAddress."""
    if version == 4 and 0 <= value <= 0xFFFFFFFF:
        return f"{value >> 24}.{value >> 16 & 0xFF}.{value >> 8 & 0xFF}.{value & 0xFF}"
    return str(netaddr.IPAddress(value, version))


class SubnetAllocator:
    """Free-address finder for one subnet within one transaction (lowest free first)."""

    def __init__(self, subnet: dict, used: Iterable[str]) -> None:
        self.subnet_id = subnet["id"]
        self.cidr = subnet["cidr"]
        self.version = netaddr.IPNetwork(self.cidr).version
        self.used: set[int] = {int(netaddr.IPAddress(ip)) for ip in used}
        self.ranges = sorted((int(netaddr.IPAddress(p["start"])), int(netaddr.IPAddress(p["end"])))
                             for p in subnet.get("allocation_pools") or [])
        self._range_idx = 0
        self._cursor = self.ranges[0][0] if self.ranges else 0
        self._last: tuple[str, int] | None = None   # the last address allocate() gave, as text and int

    def mark_used(self, ip: str) -> None:
        """Mark an address a record now holds as used (no 409: it may be one allocate() gave)."""
        last = self._last
        self.used.add(last[1] if last is not None and last[0] == ip else int(netaddr.IPAddress(ip)))

    def is_used(self, ip: str) -> bool:
        return int(netaddr.IPAddress(ip)) in self.used

    def reserve(self, ip: str) -> None:
        """Mark a specific address taken (409 if it already is)."""
        value = int(netaddr.IPAddress(ip))
        if value in self.used:
            raise errors.IpAddressAlreadyAllocated(ip=ip, subnet_id=self.subnet_id)
        self.used.add(value)

    def release(self, ip: str) -> None:
        value = int(netaddr.IPAddress(ip))
        self.used.discard(value)
        # Keep "lowest free first": move the cursor back if the freed address is below it.
        for idx, (a, b) in enumerate(self.ranges):
            if a <= value <= b and (idx < self._range_idx or (idx == self._range_idx and value < self._cursor)):
                self._range_idx, self._cursor = idx, value
                break

    def allocate(self) -> str | None:
        """The lowest free pool address, or None when the pools are exhausted."""
        while self._range_idx < len(self.ranges):
            a, b = self.ranges[self._range_idx]
            cursor = max(self._cursor, a)
            while cursor <= b:
                if cursor not in self.used:
                    self.used.add(cursor)
                    self._cursor = cursor + 1
                    text = ip_text(cursor, self.version)
                    self._last = (text, cursor)
                    return text
                cursor += 1
            self._range_idx += 1
            if self._range_idx < len(self.ranges):
                self._cursor = self.ranges[self._range_idx][0]
        return None


# ---- IPv6 address modes (Neutron's neutron_lib.constants / ipv6_utils) -----------------------
IPV6_SLAAC = "slaac"
DHCPV6_STATEFUL = "dhcpv6-stateful"
DHCPV6_STATELESS = "dhcpv6-stateless"
IPV6_MODES = (DHCPV6_STATEFUL, DHCPV6_STATELESS, IPV6_SLAAC)
AUTO_ADDRESS_MODES = (IPV6_SLAAC, DHCPV6_STATELESS)
# Router-side ports take explicit addresses (the gateway) on auto-address subnets and get no
# EUI-64 address of their own (Neutron's ROUTER_INTERFACE_OWNERS_SNAT).
ROUTER_INTERFACE_OWNERS = ("network:router_interface", "network:router_interface_distributed",
                           "network:ha_router_replicated_interface", "network:router_centralized_snat")


def is_auto_address_subnet(subnet: dict) -> bool:
    """SLAAC or DHCPv6-stateless: the VM forms its address itself from the prefix and its MAC."""
    return subnet.get("ipv6_address_mode") in AUTO_ADDRESS_MODES or \
        subnet.get("ipv6_ra_mode") in AUTO_ADDRESS_MODES


def eui64_address(cidr: str, mac: str) -> str:
    """The modified EUI-64 address (RFC 4291 App. A) a host with `mac` forms on the /64 `cidr`."""
    net = netaddr.IPNetwork(cidr)
    eui = int(netaddr.EUI(mac).eui64()) ^ (1 << 57)  # flip the universal/local bit
    return str(netaddr.IPAddress(net.first + eui, 6))


def link_local_address(mac: str) -> str:
    """fe80::/64 EUI-64 address of `mac` (what a router port answers NDP and sends RAs from)."""
    return eui64_address("fe80::/64", mac)
