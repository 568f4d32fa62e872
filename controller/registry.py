"""Connected datapaths and what the switch tells us about them (ports), mapped onto the topology.

Why separate from the os-ken app: binding a switch port to a topology port, an uplink or a
tunnel is a pure function of (OVS port names, chassis record, topology view), so it is unit
tested without a switch, and the core rebuilds a chassis' ChassisContext whenever either side
changes.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable

from apps.base import ChassisContext
from controller.reconciler import Reconciler
from flows.engine import ChassisEngine
from flows.metadata import METADATA_IFNAME
from flows.view_helpers import is_vm_port

LOG = logging.getLogger(__name__)

# Tunnel ports `tenantflow node init` creates (flow-based: remote_ip=flow, key=flow).
TUNNEL_PORTS = {"tf-vxlan": "vxlan", "tf-gre": "gre", "tf-geneve": "geneve"}
IFNAME_INDEX = "tf.port.ifname"
OFPP_MAX = 0xFFFFFF00  # ofports above this are reserved (LOCAL etc.)


def port_ifnames(port: dict) -> list[str]:
    """OVS interface names that carry this topology port: tap+id[:11] (Nova) or binding:profile."""
    names = []
    rid = port.get("id") or ""
    if rid:
        names.append("tap" + rid[:11])
    profile = port.get("binding:profile") or {}
    if isinstance(profile, dict) and profile.get("interface_name"):
        names.append(str(profile["interface_name"]))
    return names


@dataclass
class SwitchPort:
    name: str
    ofport: int
    up: bool


@dataclass
class DatapathEntry:
    dpid: int
    reconciler: Reconciler
    datapath: Any = None                     # os-ken Datapath while connected
    ports: dict[str, SwitchPort] = field(default_factory=dict)
    chassis: str | None = None
    ctx: ChassisContext | None = None
    up: dict[str, bool] = field(default_factory=dict)         # plugged topology port → link up (with ctx)
    plugged: dict[str, str] = field(default_factory=dict)     # switch port name → topology port (with ctx)
    needs_resync: bool = False
    needs_full: bool = True
    engine: ChassisEngine = field(default_factory=ChassisEngine)  # what each owner's compile read here
    # HA: the desired state is complete (a full compile ran and every batch since was applied).
    # A chassis this controller neither owns nor masters is not compiled: no engine state, no
    # desired flows (drop_compiled); it compiles afresh when it becomes ours (controller/core.py).
    compiled: bool = False
    packet_ins: int = 0
    packet_in_errors: int = 0
    packet_outs: int = 0
    # fail-closed bookkeeping (controller/core.py): what is wrong now, and how often it went wrong
    failed_owners: dict[int, str] = field(default_factory=dict)  # owner → why its compile failed
    listing_failed: str | None = None      # why the full owner list of this chassis could not be had
    chassis_failed: str | None = None      # why the chassis could not be registered
    compile_errors: int = 0
    reconcile_errors: int = 0
    last_error: str | None = None
    retry_attempt: int = 0
    retry_scheduled: bool = False
    flush_deferred: bool = False           # compiled flows wait for the next, already queued batch
    # compiled before its switch connected, from the ports a previous process saw
    # (controller/portcache.py): on connect the real ports diff against them, no full compile
    prewarm: bool = False
    compiled_early: bool = False  # this connection's compile was the prewarm one (stats)
    from_checkpoint: bool = False  # its last full compile was taken from the checkpoint (controller/checkpoint.py)

    @property
    def connected(self) -> bool:
        return self.datapath is not None

    def needs_retry(self) -> bool:
        """Something a later attempt can fix (a switch's refusal is not: it waits for a change)."""
        return bool(self.connected and (self.chassis_failed or self.listing_failed or self.failed_owners
                                        or self.needs_resync or self.needs_full
                                        or not self.reconciler.installed_known))

    def drop_compiled(self) -> None:
        """Not ours to compile any more (another controller owns it): forget the engine state and
        the desired flows, which would go stale unmaintained and cost memory; the next compile
        here starts from scratch and the next flush from a resync."""
        for owner in self.reconciler.owners():
            self.reconciler.set_owner(owner, ())
        self.engine.clear()
        self.failed_owners.clear()
        self.listing_failed = None
        self.compiled = False
        self.needs_full = self.needs_resync = True

    def problems(self) -> list[str]:
        """Why this datapath's flows may not be what the topology wants (empty = healthy)."""
        out = []
        if self.chassis_failed:
            out.append(f"chassis not registered: {self.chassis_failed}")
        if self.listing_failed:
            out.append(f"owners not listed: {self.listing_failed}")
        out += [f"compile failed: {reason}" for reason in list(self.failed_owners.values())]
        if self.connected and (self.needs_resync or not self.reconciler.installed_known):
            out.append(f"switch state unknown, resync pending: {self.last_error or 'not read yet'}")
        rec = self.reconciler
        meters = rec.meters.rejected_count() if rec.meters.rejected else 0  # rejected_count() has both
        if (flows := rec.rejected_count() - meters):
            out.append(f"{flows} flows rejected by the switch")
        if meters:
            out.append(f"{meters} meters rejected by the switch")
        return out


def dpid_name(dpid: int) -> str:
    """Name of an auto-registered chassis: the datapath id in ovs-ofctl's 16-hex-digit spelling."""
    return f"{dpid:016x}"


def build_context(name: str, dpid: int, chassis: dict | None, ports: dict[str, SwitchPort],
                  find_port: Callable[[str], list[str]],
                  bound_here: Iterable[dict] = (),
                  plugged: dict[str, str] | None = None) -> tuple[ChassisContext, dict[str, bool]]:
    """ChassisContext for a chassis + {topology port id: link up} of its plugged ports.

    `find_port(ifname)` returns topology port ids whose interface name is `ifname`;
    `bound_here` the port records whose binding:host_id names this chassis: the VM ports among
    them that are not plugged yet are local with ofport None (their flows go in ahead of the tap;
    router and other `network:*` ports are never plugged, they keep their own rules).
    `plugged`, if given, is filled with {switch port name → topology port id} (update_context's input).
    """
    local: dict[str, int | None] = {}
    up: dict[str, bool] = {}
    tunnels: dict[str, int] = {}
    uplinks: dict[str, int] = {}
    metadata_port = 0
    by_name: dict[str, str] = {}
    mappings = (chassis or {}).get("bridge_mappings") or {}
    if isinstance(mappings, list):  # tolerate ["physnet:port", …]
        mappings = dict(m.split(":", 1) for m in mappings if ":" in m)
    by_portname = {v: k for k, v in mappings.items()}
    for sp in ports.values():
        if sp.ofport <= 0 or sp.ofport >= OFPP_MAX:
            continue
        if sp.name in TUNNEL_PORTS:
            tunnels[TUNNEL_PORTS[sp.name]] = sp.ofport
            continue
        if sp.name in by_portname:
            uplinks[by_portname[sp.name]] = sp.ofport
            continue
        if sp.name == METADATA_IFNAME:   # the metadata agent's port (flows/metadata.py)
            metadata_port = sp.ofport
            continue
        ids = find_port(sp.name)
        if len(ids) > 1:
            LOG.error("interface %s on %s matches several topology ports %s; binding none", sp.name, name,
                      sorted(ids))
            continue
        for pid in ids:
            local[pid] = sp.ofport
            up[pid] = sp.up
            by_name[sp.name] = pid
    for port in bound_here:
        if port.get("id") not in local and is_vm_port(port):
            local[port["id"]] = None
    ctx = ChassisContext(name=name, datapath_id=dpid, local_ports=local, uplinks=uplinks,
                         tunnel_ports=tunnels, tunnel_ip=(chassis or {}).get("tunnel_ip"),
                         metadata_port=metadata_port)
    if plugged is not None:
        plugged.clear()
        plugged.update(by_name)
    return ctx, up


def _special(name: str, by_portname: dict) -> bool:
    return name in TUNNEL_PORTS or name in by_portname or name == METADATA_IFNAME


def update_context(old: ChassisContext, old_up: dict[str, bool], plugged: dict[str, str],
                   chassis: dict | None, ports: dict[str, SwitchPort], names: Iterable[str],
                   port_ids: Iterable[str], find_port: Callable[[str], list[str]],
                   port_record: Callable[[str], dict | None]
                   ) -> tuple[ChassisContext, dict[str, bool], dict[str, str], set[str]] | None:
    """What build_context would return after a few changes, without walking every port.

    Why: a tap plugged on a chassis of 10,000 ports rebuilt the whole context (and re-checked
    every binding) on each port-status and each port write: O(local ports) per event.
    `names`: switch ports that came, went or changed (port-status), plus the interface names of
    the topology ports that changed (old and new records: what `find_port` answers for them may
    have changed); `port_ids`: topology ports whose records changed. `plugged` is the previous
    call's {switch port name → topology port id}. Returns the new (ctx, up, plugged, the topology
    ports whose entries it recomputed — nothing else can differ from `old`), or None
    when only a full build_context gives the right answer: an uplink, tunnel or metadata port
    changed, or two switch ports name the same topology port (build_context's last one wins)."""
    mappings = (chassis or {}).get("bridge_mappings") or {}
    if isinstance(mappings, list):
        mappings = dict(m.split(":", 1) for m in mappings if ":" in m)
    by_portname = {v: k for k, v in mappings.items()}
    plugged = dict(plugged)
    name_of = {pid: n for n, pid in plugged.items()}
    if len(name_of) != len(plugged):
        return None
    touched = set(port_ids)
    for n in set(names):
        if _special(n, by_portname):
            return None
        pid = plugged.pop(n, None)
        if pid is not None:
            name_of.pop(pid, None)
            touched.add(pid)
        sp = ports.get(n)
        if sp is None or sp.ofport <= 0 or sp.ofport >= OFPP_MAX:
            continue
        ids = find_port(n)
        if len(ids) > 1:
            LOG.error("interface %s on %s matches several topology ports %s; binding none", n, old.name,
                      sorted(ids))
            continue
        for pid in ids:
            if pid in name_of:
                return None
            plugged[n], name_of[pid] = pid, n
            touched.add(pid)
    local = dict(old.local_ports)
    up = dict(old_up)
    for pid in touched:
        name = name_of.get(pid)
        if name is not None:
            sp = ports[name]
            local[pid], up[pid] = sp.ofport, sp.up
            continue
        up.pop(pid, None)
        rec = port_record(pid)
        if rec is not None and (rec.get("binding:host_id") or "") == old.name and is_vm_port(rec):
            local[pid] = None
        else:
            local.pop(pid, None)
    return replace(old, local_ports=local), up, plugged, touched


class Registry:
    """dpid → DatapathEntry. Entries (and their reconcilers' desired state) outlive connections."""

    def __init__(self, make_reconciler: Callable[[int], Reconciler]) -> None:
        self._entries: dict[int, DatapathEntry] = {}
        self._make = make_reconciler

    def entry(self, dpid: int) -> DatapathEntry:
        e = self._entries.get(dpid)
        if e is None:
            e = self._entries[dpid] = DatapathEntry(dpid, self._make(dpid))
        return e

    def get(self, dpid: int) -> DatapathEntry | None:
        return self._entries.get(dpid)

    def by_chassis(self, name: str) -> DatapathEntry | None:
        """The entry of chassis `name`, the connected one first: after a restart a port-cache entry
        of the chassis' old datapath id can linger uncompiled until it expires (controller/core.py
        PREWARM_MAX) while the switch is back under a new id."""
        found = [e for e in self._entries.values() if e.chassis == name]
        return max(found, key=lambda e: (e.connected, e.compiled), default=None)

    def all(self) -> list[DatapathEntry]:
        return list(self._entries.values())

    def connected(self) -> list[DatapathEntry]:
        return [e for e in self._entries.values() if e.connected]
