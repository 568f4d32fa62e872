#!/usr/bin/python3
"""Mininet lab: two tenants with the same subnet on one userspace OVS switch run by tenantflow.

Equivalent to `mn --switch ovs,datapath=user,protocols=OpenFlow13
--controller remote,ip=127.0.0.1,port=6653 --link tc,txo=False,rxo=False`, except that the
ports are created through tenantflow's Neutron API first and each host's switch port is named
`tap` + port id[:11], so the controller binds it to that port (Nova's naming convention).

Topology: alice has 10.0.0.0/24 (a1, a2) and 10.0.1.0/24 (a3) joined by a router; bob has
10.0.0.0/24 too (b1, b2; b1 has a2's address). Hosts get their addresses by DHCP from the
controller (or, with --static, straight from their ports). Every port is in its tenant's
`default` security group, which lets members reach each other on any protocol.

Needs: a running `tenantflow serve` (e.g. `make demo`, or `.venv/bin/tenantflow serve`) and
Open vSwitch (`scripts/ovs-start`). Runs with Debian's python3 (Mininet lives there); uses only
the standard library besides Mininet. Never run `mn -c`: it deletes every OVS bridge.

    sudo labs/mininet_two_tenants.py [--api URL] [--controller-ip IP] [--controller-port N]
                                     [--no-cli] [--keep] [--static]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from mininet.cli import CLI
from mininet.link import TCLink
from mininet.log import info, setLogLevel
from mininet.net import Mininet
from mininet.node import OVSSwitch, RemoteController

# (tenant, network name, CIDR, [(host, fixed IP)]); b1 deliberately has a2's address.
NETWORKS = [
    ("alice", "lab-alice", "10.0.0.0/24", [("a1", "10.0.0.11"), ("a2", "10.0.0.12")]),
    ("alice", "lab-alice2", "10.0.1.0/24", [("a3", "10.0.1.13")]),
    ("bob", "lab-bob", "10.0.0.0/24", [("b1", "10.0.0.12"), ("b2", "10.0.0.21")]),
]
ROUTERS = {"alice": ("lab-alice-router", ["lab-alice", "lab-alice2"])}
SWITCH_DPID = "0000000000000001"   # Mininet's default for s1
TCP_PORT = 5001

# Private dhclient files: the distribution's dhclient-script would rewrite the machine's
# /etc/resolv.conf (Mininet hosts share the filesystem), so this one only sets address,
# MTU and default route inside the host's namespace.
DHCLIENT_CONF = """timeout 10;
retry 1;
request subnet-mask, broadcast-address, routers, interface-mtu, host-name, dhcp-lease-time;
"""
DHCLIENT_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts",
                               "vm-dhclient-script")


class Api:
    """Minimal Neutron API client (stdlib only, so the lab runs under Debian's python3)."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")

    def call(self, method: str, path: str, project: str | None = None,
             body: dict[str, Any] | None = None) -> Any:
        req = urllib.request.Request(f"{self.url}/v2.0/{path}", method=method,
                                     data=json.dumps(body).encode() if body else None,
                                     headers={"Content-Type": "application/json"})
        if project:
            req.add_header("X-Project-Id", project)
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                data = resp.read()
        except urllib.error.HTTPError as exc:
            raise SystemExit(f"{method} {path} -> {exc.code}: {exc.read().decode()}") from exc
        except urllib.error.URLError as exc:
            raise SystemExit(f"cannot reach the tenantflow API at {self.url}: {exc.reason}") from exc
        return json.loads(data) if data else None


@dataclass
class LabHost:
    name: str
    tenant: str
    ip: str
    prefix: int
    gateway: str | None
    mtu: int
    mac: str
    port: str


@dataclass
class Topology:
    """What the lab created in the API, so that it can be removed in reverse order."""
    hosts: list[LabHost] = field(default_factory=list)
    undo: list[tuple[str, str, str, dict[str, Any] | None]] = field(default_factory=list)

    def remove(self, api: Api) -> None:
        for method, path, project, body in reversed(self.undo):
            try:
                api.call(method, path, project, body)
            except SystemExit as exc:          # keep removing the rest
                info(f"*** cleanup: {exc}\n")
        self.undo.clear()


def create_topology(api: Api, topo: Topology) -> None:
    """Networks, subnets, one port per host (its fixed IP given), alice's router."""
    subnets: dict[str, str] = {}
    for tenant, net_name, cidr, members in NETWORKS:
        net = api.call("POST", "networks", tenant, {"network": {"name": net_name}})["network"]
        topo.undo.append(("DELETE", f"networks/{net['id']}", tenant, None))
        sub = api.call("POST", "subnets", tenant, {"subnet": {
            "name": net_name, "network_id": net["id"], "cidr": cidr, "ip_version": 4}})["subnet"]
        subnets[net_name] = sub["id"]
        for host, ip in members:
            port = api.call("POST", "ports", tenant, {"port": {
                "name": f"lab-{host}", "network_id": net["id"],
                "fixed_ips": [{"subnet_id": sub["id"], "ip_address": ip}]}})["port"]
            topo.undo.append(("DELETE", f"ports/{port['id']}", tenant, None))
            topo.hosts.append(LabHost(host, tenant, ip, int(cidr.split("/")[1]), sub.get("gateway_ip"),
                                      int(net.get("mtu") or 1500), port["mac_address"], port["id"]))
    for tenant, (name, nets) in ROUTERS.items():
        router = api.call("POST", "routers", tenant, {"router": {"name": name}})["router"]
        topo.undo.append(("DELETE", f"routers/{router['id']}", tenant, None))
        for net_name in nets:
            body = {"subnet_id": subnets[net_name]}
            api.call("PUT", f"routers/{router['id']}/add_router_interface", tenant, body)
            topo.undo.append(("PUT", f"routers/{router['id']}/remove_router_interface", tenant, body))


def detach(net: Mininet) -> None:
    """Take s1 off the controller before Mininet deletes its ports and the bridge.

    Why: the controller would otherwise react to the vanishing ports with flow-mods for a
    switch that is being deleted and wait for replies that never come (30 s), delaying the
    next switch that connects (the next lab run).
    """
    net.get("s1").vsctl("del-controller", "s1")


def wait_active(api: Api, hosts: list[LabHost], timeout: float = 20.0) -> int:
    ids = {h.port for h in hosts}
    deadline = time.monotonic() + timeout
    active = 0
    while time.monotonic() < deadline:
        ports = api.call("GET", "ports")["ports"]
        active = sum(1 for p in ports if p["id"] in ids and p.get("status") == "ACTIVE")
        if active == len(ids):
            break
        time.sleep(0.5)
    return active


def configure_addresses(net: Mininet, hosts: list[LabHost], workdir: str | None) -> bool:
    """DHCP from the controller (workdir given) or static from the ports; True if all as expected."""
    if workdir:
        conf, script = os.path.join(workdir, "dhclient.conf"), DHCLIENT_SCRIPT
        with open(conf, "w") as f:
            f.write(DHCLIENT_CONF)
    ok = True
    for h in hosts:
        node = net.get(h.name)
        intf = node.defaultIntf().name
        if workdir:
            # In the foreground (-d) of a background job: its pid is ours to stop once bound
            # (the lease lasts a day), rather than a daemon that forks after binding.
            lease, pidf = (os.path.join(workdir, f"{h.name}.{ext}") for ext in ("leases", "pid"))
            pid = node.cmd(f"timeout 15 dhclient -d -1 -cf {conf} -lf {lease} -pf {pidf} -sf {script} "
                           f"{intf} </dev/null >/dev/null 2>&1 & echo $!").split()[-1]
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and "inet " not in node.cmd(f"ip -4 -o addr show dev {intf}"):
                time.sleep(0.1)
            node.cmd(f"kill {pid} 2>/dev/null; wait {pid} 2>/dev/null; true")
        else:
            node.cmd(f"ip addr replace {h.ip}/{h.prefix} dev {intf}; ip link set dev {intf} mtu {h.mtu}")
            if h.gateway:
                node.cmd(f"ip route replace default via {h.gateway} dev {intf}")
        got = node.cmd(f"ip -4 -o addr show dev {intf}").split()
        addr = got[got.index("inet") + 1] if "inet" in got else "nothing"
        route = node.cmd("ip -4 route show default").split()
        gw = route[2] if len(route) > 2 else "-"
        mtu = node.cmd(f"cat /sys/class/net/{intf}/mtu").strip()
        good = (addr, gw, mtu) == (f"{h.ip}/{h.prefix}", h.gateway or "-", str(h.mtu))
        ok &= good
        info(f"*** {h.name} ({h.tenant}): {addr}, gateway {gw}, MTU {mtu}"
             f"{'' if good else '  <-- UNEXPECTED'}\n")
    return ok


def echo_requests_seen(node: Any) -> int:
    """ICMP echo requests this host's namespace has received (Icmp InEchos, /proc/net/snmp)."""
    rows = [line.split() for line in node.cmd("cat /proc/net/snmp").splitlines() if line.startswith("Icmp:")]
    return int(rows[1][rows[0].index("InEchos")]) if len(rows) >= 2 else 0


def reaches(src: Any, dst: Any, ip: str, tries: int) -> bool:
    """src's ping of ip is answered *by dst*: with overlapping addresses, a reply alone could
    come from the source tenant's own host with that IP, so dst must have seen the request."""
    before = echo_requests_seen(dst)
    answered = any(" 0% packet loss" in src.cmd(f"ping -n -c 1 -W 1 {ip}") for _ in range(tries))
    return answered and echo_requests_seen(dst) > before


def ping_matrix(net: Mininet, hosts: list[LabHost]) -> bool:
    """pingall with expectations: same tenant passes (routed or not), other tenant is blocked."""
    ok = True
    info("*** Ping: all pairs (X = did not reach it); same tenant should pass, other tenant be blocked\n")
    for src in hosts:
        cells, bad = [], []
        for dst in hosts:
            if dst is src:
                continue
            expect = src.tenant == dst.tenant
            got = reaches(net.get(src.name), net.get(dst.name), dst.ip, 3 if expect else 1)
            cells.append(dst.name if got else "X")
            if got != expect:
                bad.append(f"{dst.name} {'passes' if got else 'blocked'}")
        ok &= not bad
        info(f"*** {src.name} ({src.tenant}) -> {' '.join(f'{c:2}' for c in cells)}"
             f"{'  <-- UNEXPECTED: ' + ', '.join(bad) if bad else ''}\n")
    return ok


def tcp_checks(net: Mininet, hosts: list[LabHost]) -> bool:
    """TCP (nc) across the router within alice, and from bob to alice (blocked)."""
    by_name = {h.name: h for h in hosts}
    server = net.get("a1")
    pid = server.cmd(f"timeout 30 nc -lkn -d {TCP_PORT} </dev/null >/dev/null 2>&1 & echo $!").split()[-1]
    for _ in range(50):
        if server.cmd(f"ss -Hltn 'sport = :{TCP_PORT}'").strip():
            break
        time.sleep(0.1)
    ok = True
    for src, expect, why in (("a3", True, "alice, routed"), ("a2", True, "alice, same network"),
                             ("b2", False, "bob")):
        node = net.get(src)
        got = any(node.cmd(f"nc -z -n -w 1 {by_name['a1'].ip} {TCP_PORT}; echo rc=$?").strip().endswith("rc=0")
                  for _ in range(3 if expect else 1))
        ok &= got == expect
        info(f"*** tcp {src} -> a1:{TCP_PORT} ({why}): {'passes' if got else 'blocked'}"
             f"{'' if got == expect else '  <-- UNEXPECTED'}\n")
    server.cmd(f"kill {pid} 2>/dev/null; wait {pid} 2>/dev/null; true")
    return ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--api", default="http://127.0.0.1:9696")
    ap.add_argument("--controller-ip", default="127.0.0.1")
    ap.add_argument("--controller-port", type=int, default=6653)
    ap.add_argument("--no-cli", action="store_true", help="check and exit (no Mininet prompt)")
    ap.add_argument("--keep", action="store_true", help="keep the API resources afterwards")
    ap.add_argument("--static", action="store_true",
                    help="configure the hosts' addresses from their ports instead of DHCP")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root (Mininet)")
    setLogLevel("info")
    api = Api(args.api)
    topo = Topology()
    workdir = None if args.static else tempfile.mkdtemp(prefix="tf-lab-")
    net = None
    ok = False
    try:
        create_topology(api, topo)
        switch = partial(OVSSwitch, datapath="user", protocols="OpenFlow13")
        net = Mininet(switch=switch, link=partial(TCLink, txo=False, rxo=False),
                      controller=None, autoSetMacs=False, build=False)
        net.addController(RemoteController("c0", ip=args.controller_ip, port=args.controller_port))
        s1 = net.addSwitch("s1", dpid=SWITCH_DPID)
        for h in topo.hosts:
            host = net.addHost(h.name, ip=None, mac=h.mac)   # address: DHCP or --static below
            net.addLink(host, s1, intfName2=f"tap{h.port[:11]}")
        net.build()
        net.start()
        active = wait_active(api, topo.hosts)
        info(f"*** ports ACTIVE: {active}/{len(topo.hosts)}\n")
        info(f"*** Addresses {'from the ports (--static)' if args.static else 'by DHCP from the controller'}\n")
        ok = active == len(topo.hosts)
        ok &= configure_addresses(net, topo.hosts, workdir)
        ok &= ping_matrix(net, topo.hosts)
        ok &= tcp_checks(net, topo.hosts)
        info(f"*** {'all results as expected' if ok else 'SOME RESULTS UNEXPECTED'}\n")
        if not args.no_cli:
            CLI(net)
    finally:
        # API resources first, while the switch still listens: the controller removes their
        # flows from a live switch; then the switch leaves the controller, then Mininet stops.
        if not args.keep:
            topo.remove(api)
        if net is not None:
            detach(net)
            net.stop()          # removes only this lab's switch (unlike `mn -c`)
        if workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
