"""North-south test setup shared by the NAT, router-ICMP and gateway-failover tests.

Why a module: each of those tests needs the same outside world — an outside learning switch,
chassis whose uplink maps `physnet1` to it, a flat external network on physnet1 with an
allocation pool, an outside host on it, and a router with its gateway there — and the copies
had started to drift. Only setup lives here; what each test proves stays in the test.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any, Iterable

from tests.testbed import Bed, Chassis, Host, PhysicalSwitch, wait_until

PHYSNET = "physnet1"
POOL = (10, 99)         # allocation pool of the external subnet: .10 - .99
OUTSIDE_HOST = 200      # the outside host's address in the external /24: .200
DEFAULT_GATEWAY = "default"


@dataclass
class Outside:
    """The external network as the tests see it."""
    bed: Bed
    sw: PhysicalSwitch
    net: dict[str, Any]
    subnet: dict[str, Any]
    host: Host

    @property
    def host_ip(self) -> str:
        return self.host.ip or ""


@dataclass
class Router:
    id: str
    gw_ip: str                 # the router's external (SNAT) address
    gw_port: dict[str, Any]    # its network:router_gateway port


def gateway_chassis(bed: Bed, sw: PhysicalSwitch, *names: str, timeout: float = 30.0) -> list[Chassis]:
    """Chassis whose uplink `ph-physnet1` is wired to `sw` (gateway-capable), connected."""
    out = [bed.add_chassis(n, bridge_mappings={PHYSNET: sw}) for n in names]
    for ch in out:
        assert ch.wait_connected(timeout=timeout), bed.diagnostics()
    return out


def outside(bed: Bed, sw: PhysicalSwitch, cidr: str, gateway_ip: str | None = DEFAULT_GATEWAY,
            mtu: int | None = None, host_name: str = "out1") -> Outside:
    """The flat external network on physnet1 (`cidr`, no DHCP, pool .10-.99; `gateway_ip`
    default .1, None for a subnet without one) and an outside host at .200 on `sw`."""
    net = ipaddress.ip_network(cidr)
    fields: dict[str, Any] = {"router:external": True, "provider:network_type": "flat",
                              "provider:physical_network": PHYSNET}
    if mtu is not None:
        fields["mtu"] = mtu
    ext = bed.api.create("networks", name="public", **fields)
    gw = str(net.network_address + 1) if gateway_ip == DEFAULT_GATEWAY else gateway_ip
    sub = bed.api.create("subnets", network_id=ext["id"], cidr=cidr, ip_version=4, gateway_ip=gw,
                         enable_dhcp=False,
                         allocation_pools=[{"start": str(net.network_address + POOL[0]),
                                            "end": str(net.network_address + POOL[1])}])
    host = sw.add_host(host_name, ip=f"{net.network_address + OUTSIDE_HOST}/{net.prefixlen}")
    return Outside(bed, sw, ext, sub, host)


def router(out: Outside, name: str, subnets: Iterable[dict[str, Any]]) -> Router:
    """A router with its gateway on the external network and an interface on each subnet."""
    api = out.bed.api
    rtr = api.create("routers", name=name, external_gateway_info={"network_id": out.net["id"]})
    for sub in subnets:
        api.put(f"routers/{rtr['id']}/add_router_interface", {"subnet_id": sub["id"]})
    rtr = api.show("routers", rtr["id"])
    gw_ip = rtr["external_gateway_info"]["external_fixed_ips"][0]["ip_address"]
    gw_port = api.list("ports", device_id=rtr["id"], device_owner="network:router_gateway")[0]
    return Router(rtr["id"], gw_ip, gw_port)


def echo_sources(bed: Bed, host: Host, filter_extra: str = "", count: int = 1, timeout: float = 20.0):
    """A capture on the outside host of ICMP echo requests to it: its lines name the source
    address the outside world sees (`<src> > <host ip>`), i.e. the SNAT address."""
    flt = f"icmp[icmptype] = icmp-echo and dst host {host.ip}" + (f" and {filter_extra}" if filter_extra else "")
    return bed.tcpdump(host, "eth0", flt, count=count, timeout=timeout)


def source_seen_outside(bed: Bed, vm: Host, out: Outside, timeout: float = 30.0) -> str:
    """The source address the outside host sees on `vm`'s pings to it (its SNAT or floating IP)."""
    cap = echo_sources(bed, out.host)
    assert wait_until(lambda: vm.ping_ok(out.host_ip), timeout, 0.3), bed.diagnostics()
    lines = cap.wait()
    assert lines, "the outside host saw no echo request"
    found = re.search(r"(\d+\.\d+\.\d+\.\d+) > " + re.escape(out.host_ip) + ":", lines[0])
    assert found, lines
    return found.group(1)
