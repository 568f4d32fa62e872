"""The 'outside world' of provider networks: a VLAN-aware switch with trunk and access ports.

Why an OVS bridge: the kernel here has no 8021q module (no VLAN sub-interfaces), so an outside
VLAN switch is modelled as an OVS bridge in fail_mode standalone (NORMAL learning switch) of its
own OVS instance in its own netns: ports with tag=N are access ports of VLAN N, ports without a
tag are trunks (tagged frames pass, untagged frames = the native/flat network).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from . import netns
from .hosts import Host
from .ovs import OvsInstance

if TYPE_CHECKING:
    from .bed import Bed, Chassis

log = logging.getLogger(__name__)

BRIDGE = "sw"


class PhysicalSwitch:
    """Made by `Bed.add_physical_switch(name)`; ports are numbered, names are local to its netns."""

    def __init__(self, bed: "Bed", name: str, ns: str, workdir: Path) -> None:
        self.bed, self.name, self.ns, self.workdir = bed, name, ns, workdir
        self.ovs = OvsInstance(workdir / "ovs", ns)
        self.hosts: dict[str, Host] = {}
        self.trunks: dict[str, str] = {}   # chassis name -> switch port

    def start(self) -> "PhysicalSwitch":
        netns.add(self.ns)
        self.ovs.start()
        self.ovs.add_bridge(BRIDGE, fail_mode="standalone", protocols="OpenFlow10,OpenFlow13")
        return self

    def connect_chassis(self, chassis: "Chassis", uplink: str) -> str:
        """Trunk: veth from interface `uplink` in the chassis netns to this switch. Returns the
        switch-side port name. (Bed.add_chassis does this for bridge_mappings={phys: switch}.)"""
        port = f"t{len(self.trunks)}-{chassis.name}"[:15]
        netns.add_veth(uplink, chassis.ns, port, self.ns)
        self.ovs.vsctl("--may-exist", "add-port", BRIDGE, port)
        self.trunks[chassis.name] = port
        return port

    def add_host(self, name: str, vlan: int | None = None, ip: str | None = None,
                 gateway: str | None = None, mac: str | None = None) -> Host:
        """An outside host on an access port of VLAN `vlan` (None: untagged, for flat networks).
        `ip` is a CIDR like '192.168.100.10/24'."""
        ns = self.bed.ns_name(name)
        netns.add(ns)
        port = f"a{len(self.hosts)}-{name}"[:15]
        netns.add_veth("eth0", ns, port, self.ns)
        extra = [f"tag={vlan}"] if vlan is not None else []
        self.ovs.vsctl("--may-exist", "add-port", BRIDGE, port, *extra)
        host = Host(name=name, ns=ns, mac=mac or _mac_of(ns), workdir=self.bed.workdir)
        if mac:
            host.run(["ip", "link", "set", "eth0", "address", mac])
        if ip:
            host.set_ip(ip, gateway)
        self.bed.register_namespace(ns)
        self.hosts[name] = host
        return host

    def stop(self) -> None:
        for host in self.hosts.values():
            host.stop_background()
        self.ovs.stop()


def _mac_of(ns: str) -> str:
    from .proc import run
    out = run(["cat", "/sys/class/net/eth0/address"], ns=ns).stdout
    return out.strip()
