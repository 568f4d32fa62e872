#!/usr/bin/python3
"""Lab: provider networks — a VLAN one and a flat one through a "physical" switch.

    compute1, compute2 ── mgmt ── controller             (management, 192.168.100.0/24)
    compute1, compute2 ══ phys ── out101   (access port, VLAN 101)
                    (trunks)  ├── out102   (access port, VLAN 102: same subnet, other VLAN)
                              └── outflat  (untagged only)

`phys` is an ordinary learning switch (OVS, NORMAL) standing for the data centre's top-of-rack
switch; each node's uplink on it is a trunk, mapped to physnet1 by `tenantflow node init
--bridge-mapping physnet1:<uplink>`. The admin creates the shared networks `provider-vlan101`
(type vlan, physnet1, segment 101, 10.101.0.0/24) and `provider-flat` (type flat, physnet1,
10.200.0.0/24); alice's VMs on them reach each other across the nodes and the hosts outside
the cloud with no overlay at all. tcpdump on the trunk shows the 802.1Q tag 101 on the VLAN
network's frames and none on the flat network's.

    sudo labs/provider_vlan.py [--check]
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from common import Chassis, Checker, Lab, LabError, LabRun  # noqa: E402

NODES = {"compute1": 11, "compute2": 12}
T = "alice"
# vm -> (network, node); addresses from IPAM
VMS = {"v1": ("provider-vlan101", "compute1"), "v2": ("provider-vlan101", "compute2"),
       "f1": ("provider-flat", "compute1"), "f2": ("provider-flat", "compute2")}
# outside host -> (IP, OVS port settings on the physical switch)
OUTSIDE = {"out101": ("10.101.0.100", ["tag=101"]),
           "out102": ("10.101.0.102", ["tag=102"]),
           "outflat": ("10.200.0.100", ["trunks=0"])}      # VLAN 0 = untagged frames only


class ProviderVlan(Lab):
    name = "provider_vlan"
    about = "a VLAN and a flat provider network through a physical switch to hosts outside"
    ofp_host = common.MGMT_CONTROLLER
    serve_config = ("[DEFAULT]\nflat_networks = physnet1\n"          # Neutron's ml2 settings
                    "network_vlan_ranges = physnet1:100:199\n")

    def __init__(self) -> None:
        self.ports: dict[str, dict[str, Any]] = {}
        self.nets: dict[str, dict[str, Any]] = {}
        self.chassis: dict[str, Chassis] = {}
        self.ip: dict[str, str] = {}

    def build(self, run: LabRun) -> None:
        if run.args.api:
            raise LabError("provider_vlan.py runs its own controller on the management network "
                           "(no --api/--controller)")
        tf = run.tf
        self.nets["provider-vlan101"] = tf(None, "network", "create", "provider-vlan101", "--share",
                                           "--provider-network-type", "vlan",
                                           "--provider-physical-network", "physnet1",
                                           "--provider-segment", "101")
        tf(None, "subnet", "create", "--network", "provider-vlan101", "--subnet-range", "10.101.0.0/24",
           "--gateway", "10.101.0.1", "provider-vlan101-subnet")
        self.nets["provider-flat"] = tf(None, "network", "create", "provider-flat", "--share",
                                        "--provider-network-type", "flat",
                                        "--provider-physical-network", "physnet1")
        tf(None, "subnet", "create", "--network", "provider-flat", "--subnet-range", "10.200.0.0/24",
           "--gateway", "10.200.0.1", "provider-flat-subnet")
        # outside hosts are not in any security group: let them in (and ping)
        tf(T, "security-group-rule", "create", "default", "--ingress", "--protocol", "icmp",
           "--remote-ip", "0.0.0.0/0")
        # on a network it does not own a tenant may not pick addresses (Neutron's policy):
        # IPAM chooses, DHCP hands it out
        for vm, (netname, _node) in VMS.items():
            self.ports[vm] = tf(T, "port", "create", "--network", netname, vm)
            self.ip[vm] = self.ports[vm]["fixed_ips"][0]["ip_address"]
        net = run.mininet()
        mgmt = net.addSwitch("mgmt", dpid="b1", failMode="standalone")
        phys = net.addSwitch("phys", dpid="b2", failMode="standalone")
        ctl, hosts = common.add_nodes(net, mgmt, list(NODES))
        for name, h in hosts.items():
            net.addLink(h, phys, intfName1=f"{name}-eth1", intfName2=f"p-{name}")
        for name in OUTSIDE:
            net.addLink(net.addHost(name, ip=None), phys, intfName1=f"{name}-eth0", intfName2=f"p-{name}")
        for vm, (_n, node) in VMS.items():
            h = net.addHost(vm, ip=None, mac=self.ports[vm]["mac_address"])
            net.addLink(h, hosts[node], intfName1=f"{vm}-eth0", intfName2=common.tap_name(self.ports[vm]))
        net.build()
        net.start()
        common.address_nodes(ctl, hosts, NODES)
        assert run.ovs is not None
        for name, (ip, settings) in OUTSIDE.items():
            run.ovs.vsctl("set", "port", f"p-{name}", *settings)
            net.get(name).cmd(f"ip addr add {ip}/24 dev {name}-eth0")
        api_url = f"http://{common.MGMT_CONTROLLER}:{run.controller.api_port}"
        for name, h in hosts.items():
            # no tunnel IP: provider networks need no overlay
            self.chassis[name] = Chassis(run, h, api_url, run.controller.target).start(
                mappings={"physnet1": f"{name}-eth1"})

        for vm, (_n, node) in VMS.items():
            self.chassis[node].plug(net.get(vm), self.ports[vm])
        ids = {p["id"] for p in self.ports.values()}

        def active() -> int:
            return sum(1 for p in run.api.list("ports") if p["id"] in ids and p["status"] == "ACTIVE")
        if not common.wait_until(lambda: active() == len(ids), 30):
            raise LabError(f"only {active()}/{len(ids)} VM ports ACTIVE")
        common.dhcp([net.get(vm) for vm in VMS], run.workdir)

    def scenario(self, run: LabRun, c: Checker) -> None:
        vm = run.net.get
        c.section("Provider networks as the admin made them")
        v = self.nets["provider-vlan101"]
        c.equal("provider-vlan101: vlan on physnet1, segment 101, MTU 1500 (no overlay overhead)",
                (v["provider:network_type"], v["provider:physical_network"], v["provider:segmentation_id"],
                 v["mtu"]), ("vlan", "physnet1", 101, 1500))
        for name, ch in self.chassis.items():
            c.check(f"{name}: no tunnel port on br-int (nothing is overlaid)",
                    not any(p.startswith("tf-") for p in ch.ovs.vsctl("list-ports", "br-int").split()))

        c.section("DHCP from the controller on provider networks")
        for name, (netname, node) in VMS.items():
            ip = self.ip[name]
            gw = "10.101.0.1" if "vlan" in netname else "10.200.0.1"
            c.equal(f"{name} on {node} ({netname}): {ip}/24 via {gw}, MTU 1500",
                    common.address(vm(name)), (f"{ip}/24", gw, 1500))

        c.section("VLAN 101: across the nodes through the physical switch, tag on the wire")
        cap = common.capture(run.net.get("phys"), "p-compute1", "vlan 101 and icmp", 2, 8, run.workdir)
        c.reach("ping v1 (compute1) -> v2 (compute2)", common.reaches(vm("v1"), vm("v2"), self.ip["v2"]), True)
        wire = cap()
        c.check("tcpdump -e on compute1's trunk port: 802.1Q frames with vlan 101",
                "vlan 101" in wire and "802.1Q" in wire, wire.splitlines()[0][:160] if wire else "none")
        c.reach("ping v1 -> out101 (outside host, access port VLAN 101)",
                common.reaches(vm("v1"), vm("out101"), "10.101.0.100"), True)
        c.reach("ping out101 -> v2", common.reaches(vm("out101"), vm("v2"), self.ip["v2"]), True)
        c.reach("ping v1 -> out102 (same subnet, VLAN 102)", common.ping(vm("v1"), "10.101.0.102", 1), False)
        c.reach("ping out102 -> v1", common.ping(vm("out102"), self.ip["v1"], 1), False)
        vlan_push = sum(1 for ln in self.chassis["compute1"].flows().splitlines()
                        if "push_vlan" in ln and ("4197->vlan_vid" in ln or "mod_vlan_vid:101" in ln))
        c.check("compute1's br-int pushes VLAN 101 on the way out (push_vlan, vlan_vid 101)", vlan_push > 0)

        c.section("Flat: untagged on the same trunk")
        cap = common.capture(run.net.get("phys"), "p-compute1", "icmp", 2, 8, run.workdir)
        c.reach("ping f1 (compute1) -> outflat", common.reaches(vm("f1"), vm("outflat"), "10.200.0.100"), True)
        wire = cap()
        c.check("tcpdump -e on compute1's trunk port: the flat network's frames carry no tag",
                bool(wire) and "802.1Q" not in wire, wire.splitlines()[0][:160] if wire else "none")
        c.reach("ping f2 (compute2) -> f1 (compute1)", common.reaches(vm("f2"), vm("f1"), self.ip["f1"]), True)
        c.reach(f"ping f1 -> v1's address {self.ip['v1']} (other network, no router)",
                common.ping(vm("f1"), self.ip["v1"], 1), False)

        c.section("Desired = installed")
        for name in NODES:
            diff = run.tf.raw("flows", "--url", run.controller.api_url, "--chassis", name, "--diff", check=False)
            c.equal(f"tenantflow flows --chassis {name} --diff", diff.strip().splitlines()[-1:], ["in sync"])

    def hints(self, run: LabRun) -> str:
        return f"""
*** provider_vlan ready: v1 {self.ip['v1']}@compute1, v2 {self.ip['v2']}@compute2 (VLAN 101);
    f1 {self.ip['f1']}@compute1, f2 {self.ip['f2']}@compute2 (flat); outside out101 10.101.0.100 (VLAN 101),
    out102 10.101.0.102 (VLAN 102), outflat 10.200.0.100 (untagged).
  mininet> v1 ping -c1 10.101.0.100                   # to the outside host on VLAN 101
  mininet> v1 ping -c1 10.101.0.102                   # VLAN 102: blocked by the physical switch
  mininet> sh tcpdump -n -e -i p-compute1 icmp or vlan  # tags on the trunk
  mininet> compute1 ovs-ofctl -O OpenFlow13 dump-flows br-int | grep vlan
  mininet> sh ovs-appctl fdb/show phys                  # the physical switch learned MACs per VLAN
  mininet> sh {common.TF_BIN} --url {run.controller.api_url} network show provider-vlan101
"""


if __name__ == "__main__":
    sys.exit(common.main(ProviderVlan()))
