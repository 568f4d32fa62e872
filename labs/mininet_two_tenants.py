#!/usr/bin/python3
"""Mininet lab: two tenants with the same subnet on one userspace OVS switch run by tenantflow.

Equivalent to `mn --switch ovs,datapath=user,protocols=OpenFlow13
--controller remote,ip=127.0.0.1,port=6653 --link tc,txo=False,rxo=False`, except that the
ports are created through tenantflow's Neutron API first and each host's switch port is named
`tap` + port id[:11], so the controller binds it to that port (Nova's naming convention).

Needs: a running `tenantflow serve` (e.g. `make demo`, or `.venv/bin/tenantflow serve`) and
Open vSwitch (`scripts/ovs-start`). Runs with Debian's python3 (Mininet lives there); uses only
the standard library besides Mininet. Never run `mn -c`: it deletes every OVS bridge.

    sudo labs/mininet_two_tenants.py [--api URL] [--controller-ip IP] [--controller-port N]
                                     [--no-cli] [--keep]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
from functools import partial
from typing import Any

from mininet.cli import CLI
from mininet.link import TCLink
from mininet.log import info, setLogLevel
from mininet.net import Mininet
from mininet.node import OVSSwitch, RemoteController

TENANTS = {"alice": ["10.0.0.11", "10.0.0.12"], "bob": ["10.0.0.12", "10.0.0.21"]}


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
        return json.loads(data) if data else None


def create_topology(api: Api) -> list[dict[str, Any]]:
    """Per tenant: a network, subnet 10.0.0.0/24 and one port per IP. Returns host specs."""
    hosts = []
    for tenant, ips in TENANTS.items():
        net = api.call("POST", "networks", tenant, {"network": {"name": f"lab-{tenant}"}})["network"]
        sub = api.call("POST", "subnets", tenant, {"subnet": {
            "name": f"lab-{tenant}", "network_id": net["id"], "cidr": "10.0.0.0/24",
            "ip_version": 4}})["subnet"]
        for i, ip in enumerate(ips, 1):
            port = api.call("POST", "ports", tenant, {"port": {
                "name": f"lab-{tenant}{i}", "network_id": net["id"],
                "fixed_ips": [{"subnet_id": sub["id"], "ip_address": ip}]}})["port"]
            hosts.append({"name": f"{tenant[0]}{i}", "tenant": tenant, "ip": ip,
                          "mac": port["mac_address"], "port": port["id"], "net": net["id"]})
    return hosts


def delete_topology(api: Api, hosts: list[dict[str, Any]]) -> None:
    for h in hosts:
        api.call("DELETE", f"ports/{h['port']}", h["tenant"])
    for net in {(h["tenant"], h["net"]) for h in hosts}:
        api.call("DELETE", f"networks/{net[1]}", net[0])


def wait_active(api: Api, hosts: list[dict[str, Any]], timeout: float = 20.0) -> int:
    ids = {h["port"] for h in hosts}
    deadline = time.monotonic() + timeout
    active = 0
    while time.monotonic() < deadline:
        ports = api.call("GET", "ports")["ports"]
        active = sum(1 for p in ports if p["id"] in ids and p.get("status") == "ACTIVE")
        if active == len(ids):
            break
        time.sleep(0.5)
    return active


def check(net: Mininet, hosts: list[dict[str, Any]]) -> bool:
    """Same tenant pings pass, cross-tenant pings are blocked. True when all are as expected."""
    by_name = {h["name"]: h for h in hosts}
    cases = [("a1", "a2", True), ("b1", "b2", True), ("a1", "b2", False), ("b2", "a1", False)]
    ok = True
    for src, dst, expect in cases:
        out = net.get(src).cmd(f"ping -n -c 1 -W 1 {by_name[dst]['ip']}")
        passed = " 0% packet loss" in out
        ok &= passed == expect
        info(f"*** {src} ({by_name[src]['tenant']}) -> {dst} {by_name[dst]['ip']} "
             f"({by_name[dst]['tenant']}): {'passes' if passed else 'blocked'}"
             f"{'' if passed == expect else '  <-- UNEXPECTED'}\n")
    return ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--api", default="http://127.0.0.1:9696")
    ap.add_argument("--controller-ip", default="127.0.0.1")
    ap.add_argument("--controller-port", type=int, default=6653)
    ap.add_argument("--no-cli", action="store_true", help="check and exit (no Mininet prompt)")
    ap.add_argument("--keep", action="store_true", help="keep the API resources afterwards")
    args = ap.parse_args()
    setLogLevel("info")
    api = Api(args.api)
    hosts = create_topology(api)
    switch = partial(OVSSwitch, datapath="user", protocols="OpenFlow13")
    net = Mininet(switch=switch, link=partial(TCLink, txo=False, rxo=False),
                  controller=None, autoSetMacs=False, build=False)
    net.addController(RemoteController("c0", ip=args.controller_ip, port=args.controller_port))
    s1 = net.addSwitch("s1")
    for h in hosts:
        host = net.addHost(h["name"], ip=f"{h['ip']}/24", mac=h["mac"])
        net.addLink(host, s1, intfName2=f"tap{h['port'][:11]}")
    ok = False
    try:
        net.build()
        net.start()
        info(f"*** ports ACTIVE: {wait_active(api, hosts)}/{len(hosts)}\n")
        ok = check(net, hosts)
        if not args.no_cli:
            CLI(net)
    finally:
        net.stop()          # removes only this lab's switch (unlike `mn -c`)
        if not args.keep:
            delete_topology(api, hosts)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
