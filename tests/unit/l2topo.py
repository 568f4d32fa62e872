"""Test helper: build Neutron-shaped topologies, chassis contexts and simulated fabrics quickly.

Conventions: VM ofports are small ints, tunnel ports 100 (vxlan) / 101 (gre) / 102 (geneve),
the physnet1 uplink is 200.
"""
from __future__ import annotations

import itertools
import uuid

from apps.base import ChassisContext
from apps.registry import default_apps
from flows import compiler
from flows.simulator import Fabric, Simulator, packet
from topology.store import KINDS, Change
from topology.view import TopologyView

TUNNEL_PORTS = {"vxlan": 100, "gre": 101, "geneve": 102}
UPLINK = 200


class Topo:
    """Records as the store would hold them, plus a Change log for incremental tests."""

    def __init__(self) -> None:
        self.data: dict[str, dict[str, dict]] = {k: {} for k in KINDS}
        self.changes: list[Change] = []
        self._keys = {k: itertools.count(1) for k in KINDS}
        self._rev = itertools.count(1)
        self.revision = 0

    def _put(self, kind: str, rec: dict) -> dict:
        old = self.data[kind].get(rec["id"])
        self.data[kind][rec["id"]] = rec
        self.revision = next(self._rev)
        self.changes.append(Change(self.revision, kind, rec["id"], old, rec))
        return rec

    def update(self, kind: str, rid: str, **fields) -> dict:
        rec = dict(self.data[kind][rid], **fields)
        return self._put(kind, rec)

    def delete(self, kind: str, rid: str) -> None:
        old = self.data[kind].pop(rid)
        self.revision = next(self._rev)
        self.changes.append(Change(self.revision, kind, rid, old, None))

    def chassis(self, name: str, tunnel_ip: str | None, physnets=("physnet1",)) -> dict:
        return self._put("chassis", {"id": str(uuid.uuid4()), "name": name, "_key": next(self._keys["chassis"]),
                                     "datapath_id": f"{next(self._keys['chassis']):016x}", "tunnel_ip": tunnel_ip,
                                     "bridge_mappings": {p: f"uplink-{p}" for p in physnets}})

    def network(self, name: str, ntype: str = "vxlan", seg: int | None = None, physnet: str | None = None,
                project: str = "p1", admin: bool = True) -> dict:
        key = next(self._keys["network"])
        return self._put("network", {
            "id": str(uuid.uuid4()), "name": name, "project_id": project, "admin_state_up": admin,
            "shared": False, "mtu": 1450, "router:external": False, "provider:network_type": ntype,
            "provider:physical_network": physnet, "provider:segmentation_id": seg if seg is not None else (
                None if ntype in ("local", "flat") else 1000 + key), "_key": key})

    def port(self, net: dict, mac: str, ip: str, host: str | None = None, admin: bool = True,
             name: str = "", port_security: bool = False) -> dict:
        """A VM port. Port security defaults off here: these tests are about L2, and a secured port
        with no security group is deny-all (Neutron semantics)."""
        return self._put("port", {
            "id": str(uuid.uuid4()), "name": name, "network_id": net["id"], "mac_address": mac,
            "fixed_ips": [{"subnet_id": "s-" + net["id"], "ip_address": ip}], "device_owner": "compute:nova",
            "device_id": "", "admin_state_up": admin, "status": "DOWN", "security_groups": [],
            "port_security_enabled": port_security, "allowed_address_pairs": [], "binding:host_id": host or "",
            "binding:profile": {}, "_key": next(self._keys["port"])})

    def view(self) -> TopologyView:
        return TopologyView.from_snapshot(self.revision, {k: dict(v) for k, v in self.data.items()})


def ctx(name: str, local: dict[str, int], tunnel_ip: str | None = None, uplinks=None,
        tunnel_ports=None) -> ChassisContext:
    return ChassisContext(name=name, datapath_id=1, local_ports=dict(local),
                          uplinks=dict(uplinks if uplinks is not None else {"physnet1": UPLINK}),
                          tunnel_ports=dict(tunnel_ports if tunnel_ports is not None else TUNNEL_PORTS),
                          tunnel_ip=tunnel_ip)


def chassis_flows(view, c) -> dict[int, frozenset]:
    return compiler.compile_chassis(default_apps(), view, c)


def simulator(view, c) -> Simulator:
    return Simulator(compiler.all_flows(chassis_flows(view, c)))


def fabric(view, contexts) -> Fabric:
    fab = Fabric()
    for c in contexts:
        fab.add_chassis(c.name, simulator(view, c), c.tunnel_ip, c.tunnel_ports, c.uplinks)
    return fab


def eth(src: str, dst: str, **more) -> dict:
    """An IPv4/ICMP-ish frame (fields only)."""
    fields = dict(eth_src=src, eth_dst=dst, eth_type=0x0800, ip_proto=1)
    fields.update(more)
    return packet(**fields)


BCAST = "ff:ff:ff:ff:ff:ff"
