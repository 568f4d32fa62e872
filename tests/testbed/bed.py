"""The multi-chassis test bed: controller, chassis (one OVS each, own netns), underlay, VMs.

Layout (all names carry the bed's unique prefix, e.g. `tf3a9c1e`):

    test netns (where pytest runs; scripts/netns-run)
      tenantflow serve  API 127.0.0.1:<port>, OpenFlow 0.0.0.0:<port>
      Linux bridge <prefix>mg  10.250.X.1/24  ── veth ──┐ (management network)
    <prefix>-<chassis> netns                             │
      mgmt 10.250.X.(10+i)/24 ───────────────────────────┘
      ovsdb-server + ovs-vswitchd (userspace datapath, own rundir)
      br-int (tenantflow node init) ── tap<port id[:11]> ── eth0 in VM netns <prefix>-<vm>
      br-phy (netdev, NORMAL) holds the tunnel IP 10.251.0.(10+i)/24, port `ul` ──┐
    <prefix>-ul netns: Linux bridge br0 (the underlay) ──────── c<i> ───────────┘

Nothing here touches the host's interfaces, and `close()` removes everything even after a
failed test (scripts/cleanup-testbeds removes what a killed run left behind).
"""
from __future__ import annotations

import ipaddress
import json
import logging
import os
import random
import shutil
import signal
import time
import uuid
from pathlib import Path
from typing import Any, Mapping, Sequence

from . import netns
from .api import NeutronApiError, NeutronClient
from .capture import Capture
from .controller import Controller, tenantflow_bin
from .hosts import Host
from .ovs import OvsInstance
from .physical import PhysicalSwitch
from .proc import CommandError, run, wait_until

log = logging.getLogger(__name__)

WORKROOT = Path(os.environ.get("TF_BED_ROOT", "/tmp/tfbed"))
REPO_ROOT = Path(__file__).resolve().parents[2]
PREFIX = "tf"                       # every bed's prefix starts with this (cleanup relies on it)
UNDERLAY_CIDR = "10.251.0.0/24"     # private to the bed's underlay netns: no clash possible


class Chassis:
    """One simulated compute node. Use `.ovs_vsctl/.ofctl/.appctl/.run`, `.dump_flows()`."""

    def __init__(self, bed: "Bed", name: str, index: int) -> None:
        self.bed, self.name, self.index = bed, name, index
        self.ns = bed.ns_name(name)
        self.workdir = bed.workdir / name
        self.ovs = OvsInstance(self.workdir, self.ns)
        self.mgmt_ip = str(bed.mgmt_net.network_address + 10 + index)
        self.tunnel_ip: str | None = None
        self.underlay_port: str | None = None      # its port name in the underlay netns
        self.bridge = "br-int"
        self.bridge_mappings: dict[str, str] = {}  # physnet -> uplink interface in this netns
        self.vms: list[Host] = []

    def __repr__(self) -> str:
        return f"Chassis({self.name!r}, ns={self.ns!r}, tunnel_ip={self.tunnel_ip!r})"

    @property
    def env(self) -> dict[str, str]:
        """Environment that points ovs-vsctl/ovs-ofctl/ovs-appctl at this chassis' OVS."""
        return self.ovs.env

    def ovs_vsctl(self, *args: str, check: bool = True, timeout: float = 15.0) -> str:
        return self.ovs.vsctl(*args, check=check, timeout=timeout)

    def ofctl(self, *args: str, check: bool = True, timeout: float = 15.0) -> str:
        """`ovs-ofctl -O OpenFlow13 ARGS`, e.g. `c.ofctl("dump-flows", "br-int")`."""
        return self.ovs.ofctl(*args, check=check, timeout=timeout)

    def appctl(self, *args: str, check: bool = True, timeout: float = 15.0) -> str:
        return self.ovs.appctl(*args, check=check, timeout=timeout)

    def run(self, cmd: Any, check: bool = True, timeout: float = 15.0):
        """Run a command inside the chassis netns (with this chassis' OVS environment)."""
        return run(cmd, ns=self.ns, env=self.env, check=check, timeout=timeout)

    def dump_flows(self, bridge: str | None = None, *filters: str) -> list[str]:
        """Flow lines of `bridge` (default br-int) without the reply header, stats stripped
        (`--no-stats`), so two dumps compare equal when nothing changed."""
        out = self.ofctl("--no-stats", "dump-flows", bridge or self.bridge, *filters)
        return [ln.strip() for ln in out.splitlines() if ln.strip() and "reply" not in ln]

    def wait_flow(self, text: str, bridge: str | None = None, timeout: float = 10.0) -> bool:
        """Wait until some flow line of `bridge` contains `text` (e.g. a MAC or 'tun_id=0x64')."""
        return wait_until(lambda: any(text in ln for ln in self.dump_flows(bridge)), timeout, 0.2)

    def controller_connected(self, bridge: str | None = None) -> bool:
        """True when every controller of `bridge` reports is_connected=true."""
        ids = self.ovs_vsctl("get", "bridge", bridge or self.bridge, "controller", check=False)
        uuids = ids.strip("[]").replace(",", " ").split()
        if not uuids:
            return False
        return all(self.ovs_vsctl("get", "controller", u, "is_connected", check=False) == "true"
                   for u in uuids)

    def wait_connected(self, bridge: str | None = None, timeout: float = 20.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.controller_connected(bridge):
                return True
            time.sleep(0.2)
        return False

    def node_init(self, extra_args: Sequence[str] = (), timeout: float = 60.0) -> str:
        """Run `tenantflow node init` for this chassis (from the test netns, with OVS_RUNDIR of
        this chassis, so ovs-vsctl reaches its OVS and the API is on 127.0.0.1).

        Two runs: first without --controller (bridge, tunnels, uplinks, chassis record), then
        with it. Why: a bridge that reaches the controller before its chassis record exists is
        auto-registered under its datapath id, and node init's own registration then gets 409.
        The second run is also the idempotency check ("running it twice changes nothing").
        """
        ctl = self.bed.controller
        if ctl is None:
            raise RuntimeError("node_init needs a controller: call bed.start_controller() first")
        argv = [tenantflow_bin(), "node", "init", "--name", self.name, "--bridge", self.bridge,
                "--url", ctl.api_url]
        if self.tunnel_ip:
            argv += ["--tunnel-ip", self.tunnel_ip]
        for phys, port in self.bridge_mappings.items():
            argv += ["--bridge-mapping", f"{phys}:{port}"]
        argv += list(extra_args)
        first = run(argv, env=self.env, timeout=timeout).stdout
        targets = [f"tcp:{self.bed.mgmt_gw}:{c.ofp_port}" for c in [ctl, *self.bed.extra_controllers]]
        second = run(argv + [a for t in targets for a in ("--controller", t)],
                     env=self.env, timeout=timeout).stdout
        return first + second

    def make_bridge_by_hand(self) -> None:
        """br-int as node init would make it, without a controller (for bed self-tests)."""
        self.ovs.add_bridge(self.bridge, fail_mode="secure")
        for port in self.bridge_mappings.values():
            self.ovs_vsctl("--may-exist", "add-port", self.bridge, port)


class Bed:
    """Context manager owning every process, netns, veth and bridge of one test bed."""

    def __init__(self, label: str = "") -> None:
        self.prefix = f"{PREFIX}{random.getrandbits(24):06x}"
        self.label = label
        self.workdir = WORKROOT / self.prefix
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.home_netns = netns.current_netns_name()
        self.namespaces: list[str] = []
        self.chassis: dict[str, Chassis] = {}
        self.switches: dict[str, PhysicalSwitch] = {}
        self.vms: list[Host] = []
        self.captures: list[Capture] = []
        self.controller: Controller | None = None
        # more `tenantflow serve` processes on the same (etcd) store: node init points every
        # bridge at all of them too (HA, tests/integration/test_ha.py); the test starts/stops them
        self.extra_controllers: list[Controller] = []
        self._api: NeutronClient | None = None
        self.mgmt_bridge = f"{self.prefix}mg"
        self.mgmt_net = self._pick_mgmt_net()
        self.mgmt_gw = str(self.mgmt_net.network_address + 1)
        self.underlay_ns = self.ns_name("ul")
        self.underlay_net = ipaddress.ip_network(UNDERLAY_CIDR)
        self._underlay_ready = False
        self._closed = False
        self._save_owner()
        self._make_mgmt()
        log.info("bed %s (%s) in netns %r, mgmt %s", self.prefix, label, self.home_netns,
                 self.mgmt_net)

    # -- naming and bookkeeping ----------------------------------------------------------
    def ns_name(self, name: str) -> str:
        return f"{self.prefix}-{name}"

    def register_namespace(self, ns: str) -> None:
        if ns not in self.namespaces:
            self.namespaces.append(ns)
            self._save_owner()

    def _save_owner(self) -> None:
        """State for scripts/cleanup-testbeds: who owns the bed and what it made."""
        data = {"pid": os.getpid(), "home_netns": self.home_netns, "prefix": self.prefix,
                "label": self.label, "namespaces": self.namespaces,
                "links": [self.mgmt_bridge]}
        (self.workdir / "owner.json").write_text(json.dumps(data))

    def _pick_mgmt_net(self) -> ipaddress.IPv4Network:
        """10.250.X.0/24 with X not used by another bed in this netns."""
        used = {str(ipaddress.ip_interface(a).network) for a in netns.addresses(None)}
        rng = random.Random(self.prefix)
        for _ in range(300):
            net = ipaddress.ip_network(f"10.250.{rng.randrange(1, 255)}.0/24")
            if str(net) not in used:
                return net
        raise RuntimeError("no free 10.250.X.0/24 management subnet in this netns")

    def _make_mgmt(self) -> None:
        netns.add_bridge(self.mgmt_bridge, None)
        netns.add_addr(self.mgmt_bridge, f"{self.mgmt_gw}/{self.mgmt_net.prefixlen}", None)

    def _make_underlay(self) -> None:
        if self._underlay_ready:
            return
        netns.add(self.underlay_ns)
        self.register_namespace(self.underlay_ns)
        netns.add_bridge("br0", self.underlay_ns)
        self._underlay_ready = True

    # -- controller ----------------------------------------------------------------------
    def start_controller(self, extra_args: Sequence[str] = (),
                         env: Mapping[str, str] | None = None, timeout: float = 30.0) -> Controller:
        """Start `tenantflow serve` (sqlite store in the bed dir, free ports) and wait until
        its API answers. `env` adds variables (e.g. {"OSKEN_HUB_TYPE": "eventlet"})."""
        if self.controller is None:
            self.controller = Controller(self.workdir)
        self.controller.start(extra_args, env, timeout)
        self._api = self.controller.client()
        return self.controller

    def stop_controller(self, sig: int = signal.SIGTERM) -> int | None:
        """Stop it with `sig` (SIGKILL = crash). Returns its exit code."""
        return self.controller.stop(sig) if self.controller else None

    def restart_controller(self, timeout: float = 30.0) -> None:
        """Stop (SIGTERM) and start again with the same ports, store and arguments."""
        if self.controller is None:
            raise RuntimeError("no controller to restart")
        self.controller.restart(timeout)

    @property
    def api(self) -> NeutronClient:
        """Neutron API client (admin, default project); `bed.api.as_project("p")` for a tenant."""
        if self._api is None:
            raise RuntimeError("bed.api needs bed.start_controller() first")
        return self._api

    # -- chassis -------------------------------------------------------------------------
    def add_chassis(self, name: str, tunnel: bool = True,
                    bridge_mappings: Mapping[str, PhysicalSwitch | str] | None = None,
                    init: bool | None = None, node_init_args: Sequence[str] = ()) -> Chassis:
        """A chassis: netns + own OVS + mgmt link (+ underlay and br-phy with the tunnel IP).

        bridge_mappings: physnet -> PhysicalSwitch (a veth uplink `ph-<physnet>` is wired to that
        switch's trunk) or -> an interface name you created in the chassis netns yourself.
        init: True runs `tenantflow node init`; False makes br-int by hand (no controller);
        None (default) = node init when a controller is running.
        """
        if name in self.chassis:
            raise ValueError(f"chassis {name!r} exists")
        ch = Chassis(self, name, len(self.chassis))
        self.chassis[name] = ch
        netns.add(ch.ns)
        self.register_namespace(ch.ns)
        # management link
        peer = f"{self.prefix}m{ch.index}"
        netns.add_veth("mgmt", ch.ns, peer, None)
        netns.enslave(peer, self.mgmt_bridge, None)
        netns.add_addr("mgmt", f"{ch.mgmt_ip}/{self.mgmt_net.prefixlen}", ch.ns)
        ch.ovs.start()
        if tunnel:
            self._plug_underlay(ch)
        for phys, target in (bridge_mappings or {}).items():
            if isinstance(target, PhysicalSwitch):
                uplink = f"ph-{phys}"[:15]
                target.connect_chassis(ch, uplink)
                ch.bridge_mappings[phys] = uplink
            else:
                ch.bridge_mappings[phys] = netns.check_ifname(str(target))
        if init is None:
            init = self.controller is not None and self.controller.running()
        if init:
            ch.node_init(node_init_args)
        else:
            ch.make_bridge_by_hand()
        return ch

    def _plug_underlay(self, ch: Chassis) -> None:
        self._make_underlay()
        ch.underlay_port = f"c{ch.index}"
        netns.add_veth("ul", ch.ns, ch.underlay_port, self.underlay_ns)
        netns.enslave(ch.underlay_port, "br0", self.underlay_ns)
        ch.ovs.add_bridge("br-phy", fail_mode=None, protocols="OpenFlow10,OpenFlow13")
        ch.ovs_vsctl("--may-exist", "add-port", "br-phy", "ul")
        ch.tunnel_ip = str(self.underlay_net.network_address + 10 + ch.index)
        run(["ip", "link", "set", "br-phy", "up"], ns=ch.ns)
        netns.add_addr("br-phy", f"{ch.tunnel_ip}/{self.underlay_net.prefixlen}", ch.ns)

    # -- VMs -----------------------------------------------------------------------------
    def add_vm(self, chassis: Chassis, port: Mapping[str, Any], ip: bool | str = True,
               gateway: bool | str = False, mtu: int | None = None, name: str | None = None
               ) -> Host:
        """A VM = netns with eth0 (the port's MAC) whose veth peer `tap<port id[:11]>` is on the
        chassis' br-int (external_ids:iface-id = port id, like Nova).

        ip: True = the port's first fixed IP with its subnet's prefix (asks the API);
            'a.b.c.d/n' = that; False = none (e.g. for DHCP tests).
        gateway: True = the subnet's gateway_ip as default route; or an explicit IP.
        mtu: None = the network's mtu when the API knows it.
        """
        name = name or f"vm{len(self.vms)}"
        vm = Host(name=name, ns=self.ns_name(name), mac=str(port["mac_address"]),
                  workdir=self.workdir, port=dict(port), tap=f"tap{str(port['id'])[:11]}")
        netns.add(vm.ns)
        self.register_namespace(vm.ns)
        self.vms.append(vm)
        self._plug(vm, chassis)
        cidr, gw = self._vm_addressing(port, ip, gateway)
        if mtu is None:
            mtu = self._network_mtu(port)
        if mtu:
            vm.run(["ip", "link", "set", "eth0", "mtu", str(mtu)])
        if cidr:
            vm.set_ip(cidr, gw)
        return vm

    def _plug(self, vm: Host, chassis: Chassis) -> None:
        assert vm.tap and vm.port
        netns.add_veth("eth0", vm.ns, vm.tap, chassis.ns, a_mac=vm.mac)
        chassis.ovs_vsctl("--may-exist", "add-port", chassis.bridge, vm.tap, "--", "set",
                          "Interface", vm.tap, f"external_ids:iface-id={vm.port['id']}",
                          f"external_ids:attached-mac={vm.mac}", "external_ids:iface-status=active")
        vm.chassis = chassis
        chassis.vms.append(vm)

    def unplug_vm(self, vm: Host) -> None:
        """Remove the VM's tap from its chassis (the VM netns stays, eth0 disappears)."""
        ch = vm.chassis
        if ch is None:
            return
        ch.ovs_vsctl("--if-exists", "del-port", ch.bridge, vm.tap)
        netns.del_link(vm.tap, ch.ns)
        ch.vms.remove(vm)
        vm.chassis = None

    def move_vm(self, vm: Host, chassis: Chassis) -> None:
        """Re-plug `vm` into another chassis keeping MAC, IP, MTU and default route."""
        cfg = vm.run(["ip", "-4", "-o", "addr", "show", "dev", "eth0"], check=False).stdout.split()
        cidr = cfg[cfg.index("inet") + 1] if "inet" in cfg else None
        route = vm.run(["ip", "route", "show", "default"], check=False).stdout.split()
        gw = route[route.index("via") + 1] if "via" in route else None
        mtu = vm.run(["cat", "/sys/class/net/eth0/mtu"], check=False).stdout.strip()
        self.unplug_vm(vm)
        self._plug(vm, chassis)
        if mtu:
            vm.run(["ip", "link", "set", "eth0", "mtu", mtu])
        if cidr:
            vm.set_ip(cidr, gw)

    def _vm_addressing(self, port: Mapping[str, Any], ip: bool | str, gateway: bool | str
                       ) -> tuple[str | None, str | None]:
        if not ip:
            return None, gateway if isinstance(gateway, str) else None
        subnet = None
        if ip is True or gateway is True:
            fixed = (port.get("fixed_ips") or [None])[0]
            if not fixed:
                raise ValueError(f"port {port.get('id')} has no fixed_ips; pass ip='a.b.c.d/n'")
            subnet = self.api.show("subnets", fixed["subnet_id"])
            cidr = f"{fixed['ip_address']}/{ipaddress.ip_network(subnet['cidr']).prefixlen}"
        if isinstance(ip, str):
            if "/" not in ip:
                raise ValueError("ip must be a CIDR like '10.0.0.5/24'")
            cidr = ip
        gw = gateway if isinstance(gateway, str) else (subnet or {}).get("gateway_ip") \
            if gateway else None
        return cidr, gw

    def _network_mtu(self, port: Mapping[str, Any]) -> int | None:
        if self._api is None or "network_id" not in port:
            return None
        try:
            return self.api.show("networks", port["network_id"]).get("mtu")
        except (NeutronApiError, OSError) as exc:
            log.warning("cannot read mtu of network %s: %s", port.get("network_id"), exc)
            return None

    def wait_port_status(self, port: Mapping[str, Any] | str, status: str = "ACTIVE",
                         timeout: float = 15.0) -> bool:
        """Wait until the API shows the port with `status` (the controller bound it)."""
        pid = port if isinstance(port, str) else port["id"]
        return wait_until(lambda: self.api.show("ports", pid).get("status") == status,
                          timeout, 0.2)

    def fake_port(self, ip: str | None = None) -> dict[str, Any]:
        """A port-like dict (id, mac_address) for VMs that need no API (bed self-tests)."""
        pid = str(uuid.uuid4())
        mac = "fa:16:3e:%02x:%02x:%02x" % tuple(random.getrandbits(8) for _ in range(3))
        return {"id": pid, "mac_address": mac,
                "fixed_ips": [{"ip_address": ip.split("/")[0]}] if ip else []}

    # -- outside world -------------------------------------------------------------------
    def add_physical_switch(self, name: str = "phys") -> PhysicalSwitch:
        """An outside VLAN switch (OVS bridge `sw` in netns <prefix>-<name>). Chassis connect
        through bridge_mappings={'physnet1': switch}; hosts with `switch.add_host(...)`."""
        sw = PhysicalSwitch(self, name, self.ns_name(name), self.workdir / name)
        self.register_namespace(sw.ns)
        self.switches[name] = sw
        return sw.start()

    # -- captures ------------------------------------------------------------------------
    def tcpdump(self, ns: Any, iface: str, filter: str = "", count: int = 10,
                timeout: float = 5.0) -> Capture:
        """Start capturing on `iface` in `ns` (a netns name or anything with `.ns`); returns
        once tcpdump listens. `cap.wait()` -> packet text lines; `cap.packets()` -> scapy."""
        ns_name = ns if isinstance(ns, str) or ns is None else ns.ns
        pcap = self.workdir / f"cap-{len(self.captures)}-{iface}.pcap"
        cap = Capture(ns_name, iface, filter, count, timeout, pcap)
        self.captures.append(cap)
        return cap

    # -- diagnostics and teardown ---------------------------------------------------------
    def diagnostics(self, lines: int = 80) -> str:
        """Controller log tail + each chassis' br-int flows and vswitchd log tail."""
        parts = []
        if self.controller:
            parts.append(f"===== controller log ({self.controller.log_path})\n"
                         f"{self.controller.log_tail(lines)}")
        for ch in self.chassis.values():
            try:
                flows = "\n".join(ch.dump_flows())
            except CommandError as exc:
                flows = f"(dump-flows failed: {exc})"
            try:
                vlog = "\n".join((ch.workdir / "ovs-vswitchd.log").read_text(
                    errors="replace").splitlines()[-20:])
            except OSError:
                vlog = ""
            parts.append(f"===== chassis {ch.name} br-int flows\n{flows}\n"
                         f"===== chassis {ch.name} ovs-vswitchd.log tail\n{vlog}")
        return "\n".join(parts)

    def close(self, keep_workdir: bool = False) -> None:
        """Stop everything and delete every netns/link the bed made. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        for cap in self.captures:
            cap.stop()
        for vm in self.vms:
            vm.stop_background()
        if self.controller:
            self.controller.stop()
        for ch in self.chassis.values():
            ch.ovs.stop()
        for sw in self.switches.values():
            sw.stop()
        for ns in reversed(self.namespaces):
            netns.delete(ns)
        netns.del_link(self.mgmt_bridge, None)
        for ln in netns.links(None):
            if ln.startswith(self.prefix):
                netns.del_link(ln, None)
        if keep_workdir or os.environ.get("TF_KEEP_BED"):
            log.info("bed %s closed; files kept in %s", self.prefix, self.workdir)
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> "Bed":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
