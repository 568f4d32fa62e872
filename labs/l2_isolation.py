#!/usr/bin/python3
"""Lab: L2 isolation — one switch, two tenants with the same CIDR.

alice and bob each create a network with subnet 10.0.0.0/24 (VXLAN networks: own VNI,
MTU 1450) and two VMs on the one switch s1; b1 deliberately has a2's address. The VMs get
their addresses by DHCP from the controller. Pings within a tenant pass, across tenants they
do not, and 10.0.0.12 means a2 to alice and b1 to bob. The flows on s1 are counted by the
owner in their cookie (network, port, ...), and one port's flows are shown.

    sudo labs/l2_isolation.py [--check] [--api URL --controller HOST:PORT]
"""
from __future__ import annotations

import sys
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402  (labs are scripts; common.py sits beside them)
from common import Checker, Lab, LabRun  # noqa: E402

CHASSIS = "s1"                 # the switch's chassis record (datapath id 1, Mininet's for s1)
# host -> (tenant, IP); b1 has a2's address
HOSTS = {"a1": ("alice", "10.0.0.11"), "a2": ("alice", "10.0.0.12"),
         "b1": ("bob", "10.0.0.12"), "b2": ("bob", "10.0.0.21")}


class L2Isolation(Lab):
    name = "l2_isolation"
    about = __doc__.splitlines()[0]

    def __init__(self) -> None:
        self.ports: dict[str, dict[str, Any]] = {}
        self.nets: dict[str, dict[str, Any]] = {}

    def build(self, run: LabRun) -> None:
        tf = run.tf
        for tenant in ("alice", "bob"):
            net = tf(tenant, "network", "create", f"{tenant}-net")
            tf(tenant, "subnet", "create", "--network", f"{tenant}-net",
               "--subnet-range", "10.0.0.0/24", f"{tenant}-subnet")
            self.nets[tenant] = net
            if run.args.api:                    # someone else's controller: leave it clean
                run.on_teardown(partial(run.api.as_project(tenant).call, "DELETE",
                                        f"networks/{net['id']}"))
        for host, (tenant, ip) in HOSTS.items():
            port = tf(tenant, "port", "create", "--network", f"{tenant}-net",
                      "--fixed-ip", f"subnet={tenant}-subnet,ip-address={ip}", host)
            self.ports[host] = port
            if run.args.api:
                run.on_teardown(partial(run.api.as_project(tenant).call, "DELETE",
                                        f"ports/{port['id']}"))
        common.one_switch(run, self.ports, CHASSIS)

    def scenario(self, run: LabRun, c: Checker) -> None:
        net = run.net
        mtu = int(self.nets["alice"].get("mtu") or 1450)
        c.section("Addresses by DHCP from the controller (address, gateway 10.0.0.1, MTU)")
        for host, (_tenant, ip) in HOSTS.items():
            c.equal(f"{host} got {ip}/24 via 10.0.0.1, MTU {mtu}", common.address(net.get(host)),
                    (f"{ip}/24", "10.0.0.1", mtu))

        c.section("Ping within a tenant passes, across tenants it is blocked")
        for src, dst, expect in (("a1", "a2", True), ("b2", "b1", True), ("a1", "b2", False),
                                 ("b2", "a1", False), ("a2", "b1", False)):
            ip = HOSTS[dst][1]
            got = common.reaches(net.get(src), net.get(dst), ip, 3 if expect else 1)
            c.reach(f"ping {src} ({HOSTS[src][0]}) -> {dst} ({HOSTS[dst][0]}) at {ip}", got, expect)

        c.section("The same address in both tenants: 10.0.0.12 is a2 for alice, b1 for bob")
        c.reach("a1 pings 10.0.0.12 and b1 (bob) sees it",
                common.reaches(net.get("a1"), net.get("b1"), "10.0.0.12", 1), False)
        c.reach("b2 pings 10.0.0.12 and a2 (alice) sees it",
                common.reaches(net.get("b2"), net.get("a2"), "10.0.0.12", 1), False)
        neigh = net.get("a1").cmd("ip neigh show 10.0.0.12").split()
        c.equal("a1's ARP entry for 10.0.0.12 is a2's MAC",
                neigh[neigh.index("lladdr") + 1] if "lladdr" in neigh else None,
                self.ports["a2"]["mac_address"])

        c.section("TCP within a tenant, and across (blocked)")
        common.listen(net.get("a2"), 5001)
        c.reach("tcp a1 -> a2:5001 (alice)", common.tcp(net.get("a1"), "10.0.0.12", 5001), True)
        c.reach("tcp b2 -> 10.0.0.12:5001 (bob's b1 has no listener; a2's is alice's)",
                common.tcp(net.get("b2"), "10.0.0.12", 5001, 1), False)

        c.section("The flows on s1 by owner (cookie top byte = kind, the rest = object key)")
        assert run.ovs is not None
        dump = run.ovs.ofctl("--no-stats", "dump-flows", "s1")
        counts = common.flows_by_owner(dump)
        c.note("ovs-ofctl -O OpenFlow13 dump-flows s1: " +
               ", ".join(f"{k} {n}" for k, n in sorted(counts.items())))
        for kind in ("pipeline", "network", "port"):
            c.check(f"s1 has {kind}-owned flows", counts.get(kind, 0) > 0, f"{counts}")
        a1 = self.ports["a1"]
        own = run.tf.raw("flows", "--url", run.controller.api_url, "--chassis", CHASSIS,
                         "--owner", "port", a1["id"])
        a1_flows = [ln for ln in own.splitlines() if ln.strip()]
        c.check("tenantflow flows --owner port <a1> lists a1's flows, all owned by a1",
                bool(a1_flows) and all(a1["id"] in ln for ln in a1_flows), f"{len(a1_flows)} flows")
        for ln in a1_flows[:4]:
            c.note(ln[:140])
        cookie = next((f.split(",")[0].split("=")[1] for f in dump.splitlines()
                       if a1["mac_address"] in f and "cookie=0x3" in f), None)
        if cookie:
            mine = run.ovs.ofctl("--no-stats", "dump-flows", "s1", f"cookie={cookie}/-1")
            c.note(f"ovs-ofctl dump-flows s1 cookie={cookie}/-1: "
                   f"{sum(1 for x in mine.splitlines() if 'cookie=' in x)} flows (a1's port)")
        c.check("a port cookie of a1 is on the switch", cookie is not None)
        diff = run.tf.raw("flows", "--url", run.controller.api_url, "--chassis", CHASSIS, "--diff",
                          check=False)
        c.equal("tenantflow flows --diff: desired = installed", diff.strip().splitlines()[-1:],
                ["in sync"])

    def hints(self, run: LabRun) -> str:
        api = run.controller.api_url
        return f"""
*** l2_isolation ready: alice a1 10.0.0.11, a2 10.0.0.12; bob b1 10.0.0.12 (= a2's), b2 10.0.0.21
  mininet> a1 ping -c1 10.0.0.12                 # alice -> a2: passes
  mininet> a1 ping -c1 10.0.0.21                 # alice -> bob's b2: blocked
  mininet> b2 ping -c1 10.0.0.12                 # bob -> b1 (same IP as a2): passes, a2 never sees it
  mininet> sh ovs-ofctl -O OpenFlow13 dump-flows s1
  mininet> sh ovs-ofctl -O OpenFlow13 dump-flows s1 cookie=0x0300000000000000/0xff00000000000000
  mininet> sh {common.TF_BIN} flows --url {api} --chassis s1 --diff
  mininet> sh {common.TF_BIN} --url {api} --project alice port list
  mininet> sh ovs-appctl ofproto/trace s1 \\
             in_port=1,dl_src={self.ports['a1']['mac_address']},dl_dst=ff:ff:ff:ff:ff:ff,arp
"""


if __name__ == "__main__":
    sys.exit(common.main(L2Isolation()))
