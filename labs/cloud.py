#!/usr/bin/python3
"""Lab: the OpenStack networking guide's reference architecture, in Mininet.

    laptop ── api ──┐                                         (API network, 172.16.0.0/24)
                controller (tenantflow serve: API + OpenFlow)
                    └── mgmt ── compute1, compute2, network   (management, 192.168.100.0/24)
    compute1, compute2, network ── data                        (VXLAN underlay, 192.168.200.0/24)
    compute1, compute2, network ── ext ── router ── internet   (external 203.0.113.0/24,
                                                                "internet" 198.51.100.0/24)

Each node is a Mininet host running its own Open vSwitch (like a separate machine), joined
with `tenantflow node init` over the management network: br-int, a VXLAN tunnel port whose
endpoint is on br-phy (the data network), and an uplink for the flat external network
`external`. The switches mgmt/api/data/ext are plain learning switches (the physical network).
Tenants alice and bob each have a router and two subnets (the same CIDRs: they overlap), VMs
spread over both compute nodes and configured by DHCP; SNAT runs on the network node (the
router's gateway port is bound there), and alice's a1 has a floating IP reached from the
internet host through the physical router.

    sudo labs/cloud.py [--check]
"""
from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from common import Chassis, Checker, Lab, LabError, LabRun  # noqa: E402

CTL_MGMT, CTL_API, LAPTOP = common.MGMT_CONTROLLER, "172.16.0.10", "172.16.0.20"
NODES = {"compute1": 11, "compute2": 12, "network": 13}     # last octet on mgmt and data
EXT_CIDR, EXT_GW, EXT_POOL = "203.0.113.0/24", "203.0.113.1", ("203.0.113.10", "203.0.113.99")
INTERNET, INTERNET_GW = "198.51.100.10", "198.51.100.1"
SUBNETS = {"net1": "10.1.1.0/24", "net2": "10.1.2.0/24"}     # both tenants: overlapping
# vm -> (tenant, network, IP, compute node)
VMS = {"a1": ("alice", "net1", "10.1.1.11", "compute1"),
       "a2": ("alice", "net1", "10.1.1.12", "compute2"),
       "a3": ("alice", "net2", "10.1.2.13", "compute2"),
       "b1": ("bob", "net1", "10.1.1.21", "compute1"),
       "b2": ("bob", "net2", "10.1.2.22", "compute2")}
WEB = 8080


class Cloud(Lab):
    name = "cloud"
    about = "the reference architecture: controller, two compute nodes, a network node"
    ofp_host = CTL_MGMT
    serve_config = "[DEFAULT]\nflat_networks = external\n"     # Neutron's ml2 flat_networks

    def __init__(self) -> None:
        self.ports: dict[str, dict[str, Any]] = {}
        self.nets: dict[tuple[str, str], dict[str, Any]] = {}
        self.routers: dict[str, dict[str, Any]] = {}
        self.chassis: dict[str, Chassis] = {}
        self.fip = ""
        self.gw_ip: dict[str, str] = {}

    # -- build -------------------------------------------------------------------------------
    def build(self, run: LabRun) -> None:
        if run.args.api:
            raise LabError("cloud.py runs its own controller on the management network "
                           "(no --api/--controller)")
        self.tenants(run)
        net = run.mininet()
        sw = {name: net.addSwitch(name, dpid=f"{i + 0xa1:x}", failMode="standalone")
              for i, name in enumerate(("mgmt", "api", "data", "ext"))}
        # the controller node is this lab's own namespace (serve runs here)
        ctl, hosts = common.add_nodes(net, sw["mgmt"], list(NODES))
        net.addLink(ctl, sw["api"], intfName1="ctl-api", intfName2="a-controller")
        laptop = net.addHost("laptop", ip=None)
        net.addLink(laptop, sw["api"], intfName2="a-laptop")
        for node, h in hosts.items():
            net.addLink(h, sw["data"], intfName1=f"{node}-eth1", intfName2=f"d-{node}")
            net.addLink(h, sw["ext"], intfName1=f"{node}-eth2", intfName2=f"x-{node}")
        router = net.addHost("router", ip=None)
        internet = net.addHost("internet", ip=None)
        net.addLink(router, sw["ext"], intfName1="router-eth0", intfName2="x-router")
        net.addLink(router, internet, intfName1="router-eth1", intfName2="internet-eth0")
        for vm, (_t, _n, _ip, node) in VMS.items():
            h = net.addHost(vm, ip=None, mac=self.ports[vm]["mac_address"])
            net.addLink(h, hosts[node], intfName1=f"{vm}-eth0", intfName2=common.tap_name(self.ports[vm]))
        net.build()
        net.start()

        common.address_nodes(ctl, hosts, NODES)
        ctl.cmd(f"ip addr add {CTL_API}/24 dev ctl-api")
        laptop.cmd(f"ip addr add {LAPTOP}/24 dev laptop-eth0")
        router.cmd(f"ip addr add {EXT_GW}/24 dev router-eth0; "
                   f"ip addr add {INTERNET_GW}/24 dev router-eth1; sysctl -qw net.ipv4.ip_forward=1")
        internet.cmd(f"ip addr add {INTERNET}/24 dev internet-eth0; "
                     f"ip route add default via {INTERNET_GW}")

        api_url = f"http://{CTL_MGMT}:{run.controller.api_port}"
        for node, octet in NODES.items():
            self.chassis[node] = Chassis(run, hosts[node], api_url, run.controller.target).start(
                tunnel=(f"{node}-eth1", f"192.168.200.{octet}/24"),
                mappings={"external": f"{node}-eth2"})
        for vm, (_t, _n, _ip, node) in VMS.items():
            self.chassis[node].plug(net.get(vm), self.ports[vm])
        ids = {p["id"] for p in self.ports.values()}
        if not common.wait_until(lambda: self._active(run, ids) == len(ids), 30):
            raise LabError(f"only {self._active(run, ids)}/{len(ids)} VM ports ACTIVE")
        common.dhcp([net.get(vm) for vm in VMS], run.workdir)
        self.external(run)

    def tenants(self, run: LabRun) -> None:
        """Networks, subnets, routers and the VMs' ports, as each tenant would."""
        tf = run.tf
        for tenant in ("alice", "bob"):
            router = tf(tenant, "router", "create", f"{tenant}-router")
            self.routers[tenant] = router
            for net, cidr in SUBNETS.items():
                self.nets[tenant, net] = tf(tenant, "network", "create", f"{tenant}-{net}")
                tf(tenant, "subnet", "create", "--network", f"{tenant}-{net}", "--subnet-range",
                   cidr, f"{tenant}-{net}-subnet")
                tf(tenant, "router", "add-interface", f"{tenant}-router", f"{tenant}-{net}-subnet")
            # the default group: members reach each other; the web port and ping from anywhere
            tf(tenant, "security-group-rule", "create", "default", "--ingress", "--protocol", "tcp",
               "--dst-port", str(WEB), "--remote-ip", "0.0.0.0/0")
            tf(tenant, "security-group-rule", "create", "default", "--ingress", "--protocol", "icmp",
               "--remote-ip", "0.0.0.0/0")
        for vm, (tenant, net, ip, _node) in VMS.items():
            self.ports[vm] = tf(tenant, "port", "create", "--network", f"{tenant}-{net}",
                                "--fixed-ip", f"subnet={tenant}-{net}-subnet,ip-address={ip}", vm)

    def external(self, run: LabRun) -> None:
        """The external network (its physnet is known once the nodes map it), router
        gateways (SNAT bound to the network node) and a1's floating IP."""
        tf = run.tf
        tf(None, "network", "create", "public", "--external", "--provider-network-type", "flat",
           "--provider-physical-network", "external")
        tf(None, "subnet", "create", "--network", "public", "--subnet-range", EXT_CIDR,
           "--no-dhcp", "--gateway", EXT_GW, "--allocation-pool",
           f"start={EXT_POOL[0]},end={EXT_POOL[1]}", "public-subnet")
        for tenant in ("alice", "bob"):
            r = run.tf(tenant, "router", "set", f"{tenant}-router", "--external-gateway", "public")
            self.gw_ip[tenant] = r["external_gateway_info"]["external_fixed_ips"][0]["ip_address"]
            gw_port = run.api.list("ports", device_id=r["id"], device_owner="network:router_gateway")
            # like Neutron's L3 agent scheduling: the gateway lives on the network node
            run.tf(None, "port", "set", gw_port[0]["id"], "--host", "network")
        fip = run.tf("alice", "floating-ip", "create", "public", "--port", "a1")
        self.fip = fip["floating_ip_address"]

    def _active(self, run: LabRun, ids: set[str]) -> int:
        return sum(1 for p in run.api.list("ports") if p["id"] in ids and p["status"] == "ACTIVE")

    # -- scenario ----------------------------------------------------------------------------
    def scenario(self, run: LabRun, c: Checker) -> None:
        net = run.net
        vm = net.get

        c.section("Management network: every node's br-int is connected to the controller")
        for name, ch in self.chassis.items():
            c.check(f"{name}: br-int connected to {run.controller.target}", ch.ovs.connected("br-int"))
        chassis = {x["name"]: x for x in run.api.list("chassis")}
        for name, octet in NODES.items():
            c.equal(f"chassis {name} registered with tunnel IP 192.168.200.{octet}",
                    (chassis.get(name) or {}).get("tunnel_ip"), f"192.168.200.{octet}")

        c.section("API network: the laptop reaches the API, not the management network")
        got = vm("laptop").cmd(f"curl -s -o /dev/null -w '%{{http_code}}' -m 5 "
                               f"http://{CTL_API}:{run.controller.api_port}/v2.0/networks").strip()
        c.equal(f"laptop: GET http://{CTL_API}:{run.controller.api_port}/v2.0/networks", got, "200")
        c.reach("laptop ping compute1's management address 192.168.100.11",
                common.ping(vm("laptop"), "192.168.100.11", 1), False)

        c.section("DHCP from the controller on both compute nodes")
        for name, (_t, netname, ip, node) in VMS.items():
            gw = SUBNETS[netname].replace(".0/24", ".1")
            c.equal(f"{name} on {node}: {ip}/24 via {gw}, MTU 1450", common.address(vm(name)),
                    (f"{ip}/24", gw, 1450))

        c.section("East-west across compute nodes, over VXLAN on the data network")
        vni = self.nets["alice", "net1"]["provider:segmentation_id"]
        cap = common.capture(net.get("data"), "d-compute1", "udp port 4789", 4, 8, run.workdir)
        c.reach("ping a1 (compute1) -> a2 (compute2), same network",
                common.reaches(vm("a1"), vm("a2"), "10.1.1.12"), True)
        wire = cap()
        c.check(f"tcpdump on the underlay (data switch, compute1's port) shows VXLAN vni {vni}",
                re.search(rf"\bvni {vni}\b", wire) is not None, wire.splitlines()[0][:150] if wire else "no packet")
        out = vm("a1").cmd("ping -n -c 1 -W 2 10.1.2.13")
        c.reach("ping a1 (net1, compute1) -> a3 (net2, compute2), routed by alice-router",
                " 0% packet loss" in out or common.ping(vm("a1"), "10.1.2.13"), True)
        c.check("a3's reply has TTL 63: one router hop, routed on the sending chassis",
                "ttl=63" in vm("a1").cmd("ping -n -c 1 -W 2 10.1.2.13"))
        common.listen(vm("a3"), WEB)
        c.reach("tcp a1 -> a3:8080 (routed, across chassis)", common.tcp(vm("a1"), "10.1.2.13", WEB), True)

        c.section("Tenants stay apart (the same CIDRs on both sides)")
        c.reach("ping b1 (bob) -> bob's b2 across bob-router", common.reaches(vm("b1"), vm("b2"), "10.1.2.22"), True)
        c.reach("ping a1 (alice) -> 10.1.1.21 (bob's b1)", common.ping(vm("a1"), "10.1.1.21", 1), False)
        c.reach("ping b1 (bob) -> 10.1.2.13 (alice's a3)", common.ping(vm("b1"), "10.1.2.13", 1), False)
        c.reach("tcp b1 (bob) -> 10.1.2.13:8080 (alice's a3)", common.tcp(vm("b1"), "10.1.2.13", WEB, 1), False)

        c.section("North-south: SNAT on the network node, a floating IP from the internet")
        src = common.seen_source(vm("a3"), vm("internet"), INTERNET, 9000)
        c.equal(f"a3 (no floating IP) -> internet:9000 is seen from alice-router's {self.gw_ip['alice']}",
                src, self.gw_ip["alice"])
        src = common.seen_source(vm("b1"), vm("internet"), INTERNET, 9001)
        c.equal(f"b1 -> internet:9001 is seen from bob-router's {self.gw_ip['bob']}", src, self.gw_ip["bob"])
        snat = f"nat(src={self.gw_ip['alice']})"
        on = {name: snat in ch.flows("table=36") for name, ch in self.chassis.items()}
        c.equal(f"the SNAT flow ({snat}) is on the network node only", on,
                {"compute1": False, "compute2": False, "network": True})
        common.listen(vm("a1"), WEB)
        c.reach(f"tcp internet -> a1's floating IP {self.fip}:8080 (through the physical router)",
                common.tcp(vm("internet"), self.fip, WEB), True)
        c.reach(f"ping internet -> {self.fip}", common.ping(vm("internet"), self.fip), True)
        src = common.seen_source(vm("a1"), vm("internet"), INTERNET, 9002)
        c.equal(f"a1 -> internet:9002 is seen from its floating IP {self.fip}", src, self.fip)
        fip_here = {name: f"nw_dst={self.fip}" in ch.flows("table=35") for name, ch in self.chassis.items()}
        c.equal("the floating IP is translated on a1's compute node (compute1) only", fip_here,
                {"compute1": True, "compute2": False, "network": False})
        c.reach("tcp internet -> a3's fixed IP 10.1.2.13:8080 (no route into a tenant)",
                common.tcp(vm("internet"), "10.1.2.13", WEB, 1), False)

        c.section("Move a1 to compute2 (same port, MAC and address): its flows move, the FIP follows")
        self.move(run, "a1", "compute2")
        common.settle(run, *NODES)
        host = run.api.get(f"ports/{self.ports['a1']['id']}")["port"]["binding:host_id"]
        c.equal("a1's port is bound to compute2 (binding:host_id)", host, "compute2")
        mac = self.ports["a1"]["mac_address"]
        where = {n: sum(1 for ln in ch.flows().splitlines() if mac in ln and "cookie=0x3" in ln)
                 for n, ch in self.chassis.items()}
        c.check("a1's port flows left compute1 and are on compute2",
                where["compute1"] == 0 and where["compute2"] > 0, f"flows with a1's MAC: {where}")
        c.reach("ping a1 (now compute2) -> a2", common.reaches(vm("a1"), vm("a2"), "10.1.1.12"), True)
        c.reach("ping a1 (now compute2) -> b1's address (bob)", common.ping(vm("a1"), "10.1.1.21", 1), False)
        # The physical switch still has the floating IP's MAC on compute1's port (nothing told
        # it otherwise: no gratuitous ARP on a move) until a1 sends something from compute2.
        fip_mac = self.fip_mac(run)
        assert run.ovs is not None
        names = {run.ovs.vsctl("get", "Interface", f"x-{n}", "ofport"): f"x-{n}" for n in NODES}
        fdb = [names.get(ln.split()[0], ln.split()[0]) for ln in run.ovs.appctl("fdb/show", "ext").splitlines()
               if fip_mac and fip_mac in ln]
        c.note(f"ovs-appctl fdb/show ext: the floating IP's MAC {fip_mac} is learned on {fdb or 'no port'}")
        src = common.seen_source(vm("a1"), vm("internet"), INTERNET, 9003)
        c.equal(f"a1 (now compute2) -> internet:9003 is seen from its floating IP {self.fip}", src, self.fip)
        c.reach(f"ping internet -> {self.fip} (translated on compute2 now)",
                common.ping(vm("internet"), self.fip), True)
        fip_here = {name: f"nw_dst={self.fip}" in ch.flows("table=35") for name, ch in self.chassis.items()}
        c.equal("the floating IP flows moved with a1", fip_here,
                {"compute1": False, "compute2": True, "network": False})

        c.section("Desired = installed on every node")
        for name in NODES:
            diff = run.tf.raw("flows", "--url", run.controller.api_url, "--chassis", name, "--diff",
                              check=False)
            c.equal(f"tenantflow flows --chassis {name} --diff", diff.strip().splitlines()[-1:], ["in sync"])

    def fip_mac(self, run: LabRun) -> str:
        """The MAC the floating IP uses outside (its network:floatingip port's)."""
        ports = run.api.list("ports", device_owner="network:floatingip")
        return next((p["mac_address"] for p in ports
                     if any(f["ip_address"] == self.fip for f in p["fixed_ips"])), "")

    def move(self, run: LabRun, vm: str, node: str) -> None:
        """Unplug the VM's tap from its node and plug a new link into `node`, keeping the port
        (the same recipe as the exercise in docs/labs.md)."""
        net, port = run.net, self.ports[vm]
        host, tap = net.get(vm), common.tap_name(port)
        old = VMS[vm][3]
        self.chassis[old].ovs.vsctl("--if-exists", "del-port", "br-int", tap)
        net.delLinkBetween(host, net.get(old))
        net.addLink(host, net.get(node), intfName1=f"{vm}-eth0", intfName2=tap)
        host.intf(f"{vm}-eth0").setMAC(port["mac_address"])
        self.chassis[node].plug(host, port)
        _tenant, netname, ip, _node = VMS[vm]
        host.cmd(f"ip addr add {ip}/24 dev {vm}-eth0; ip link set {vm}-eth0 mtu 1450; "
                 f"ip route add default via {SUBNETS[netname].replace('.0/24', '.1')}")
        if not common.wait_until(lambda: run.api.get(f"ports/{port['id']}")["port"]
                                 ["binding:host_id"] == node, 15):
            raise LabError(f"{vm}'s port was not bound to {node} after the move")

    def hints(self, run: LabRun) -> str:
        api = run.controller.api_url
        tf = f"{common.TF_BIN} --url {api}"
        return f"""
*** cloud ready. Nodes: controller (this netns), compute1, compute2, network (own OVS each).
    VMs: alice a1 10.1.1.11@compute1, a2 10.1.1.12@compute2, a3 10.1.2.13@compute2 (a1's floating IP {self.fip});
         bob b1 10.1.1.21@compute1, b2 10.1.2.22@compute2. internet {INTERNET}, physical router {EXT_GW}.
  mininet> a1 ping -c1 10.1.1.12                       # east-west over VXLAN
  mininet> a1 ping -c1 10.1.2.13                       # routed by alice-router on compute1
  mininet> internet ping -c1 {self.fip}                 # floating IP through the physical router
  mininet> a3 curl -s -m 2 {INTERNET}:80; internet nc -l 80   # SNAT on the network node
  mininet> compute1 ovs-ofctl -O OpenFlow13 dump-flows br-int
  mininet> network ovs-ofctl -O OpenFlow13 dump-flows br-int table=36
  mininet> compute1 ovs-appctl ofproto/trace br-int \\
             in_port=tap{self.ports['a1']['id'][:11]},dl_src={self.ports['a1']['mac_address']},ip,nw_src=10.1.1.11,nw_dst=10.1.1.12
  mininet> sh tcpdump -n -e -i d-compute1 udp port 4789   # the underlay
  mininet> sh {tf} --project alice port list
  mininet> sh {tf} chassis list
  mininet> sh {common.TF_BIN} flows --url {api} --chassis network --owner router {self.routers['alice']['id']}
  mininet> laptop curl -s http://{CTL_API}:{run.controller.api_port}/v2.0/networks
"""


if __name__ == "__main__":
    sys.exit(common.main(Cloud()))
