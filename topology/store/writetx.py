"""One write transaction of the business layer: the store Txn plus the indexes its checks need.

Why: bulk creates (1,000 ports in one request) must not rescan every port per allocation, and a
one-port POST must not cost O(ports in the store). The indexes (IPs in use per subnet, MACs per
network, ports per network, subnets per network, `_key` pools, segmentation ids, default groups)
come from the store when it maintains them (SqliteTxn.index: committed state, overlaid with this
transaction's own writes, one bucket at a time), else are built from txn.list on first use; both
are kept current by the insert/replace/remove helpers, which every write of the service goes through.
"""
from __future__ import annotations

import builtins
import random
import time
import uuid
from typing import Any, Callable, Hashable, Iterable, Mapping, cast

import netaddr

from topology.model import errors
from topology.model.ipam import SubnetAllocator
from topology.model.schema import OWNER_KINDS
from topology.model.settings import Settings
from topology.store import (FLOATINGIP, NETWORK, PORT, RBAC_POLICY, ROUTER, SECURITY_GROUP, SECURITY_GROUP_RULE,
                            SUBNET, Record, Txn)

KEYED_KINDS = OWNER_KINDS  # kinds whose records own flows get a `_key` (topology.model.schema)
KEY_MIN, KEY_MAX = 1, 65535


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def new_id() -> str:
    return str(uuid.uuid4())


# --------------------------------------------------------------------------- record indexes
# What a write transaction needs to know about all records of a kind, as (bucket, item) pairs.
# With a store that maintains them (SqliteTxn.index) a transaction reads the committed buckets it
# touches and overlays its own writes: a one-port POST costs O(records it touches), not O(ports).
# Other stores (etcd) get the same answers built from txn.list on first use, as before.

Entries = Callable[[Record], Iterable[tuple[Hashable, Hashable]]]


def _port_ips(p: Record) -> list[tuple[str, str]]:
    return [(f["subnet_id"], f["ip_address"]) for f in p.get("fixed_ips") or ()]


def _port_mac(p: Record) -> list[tuple[str | None, str | None]]:
    return [(p.get("network_id"), p.get("mac_address"))]


def _port_network(p: Record) -> list[tuple[str | None, str | None]]:
    return [(p.get("network_id"), p["id"])]


def _subnet_network(s: Record) -> list[tuple[str | None, str | None]]:
    return [(s.get("network_id"), s["id"])]


def _key(r: Record) -> list[tuple[None, int]]:
    return [(None, r["_key"])] if "_key" in r else []


def _segment(n: Record) -> list[tuple[tuple[str, str | None], int]]:
    ntype = n.get("provider:network_type")
    if ntype in (None, "local"):
        return []
    return [((ntype, n.get("provider:physical_network")), n.get("provider:segmentation_id") or 0)]


def _default_sg(sg: Record) -> list[tuple[str | None, str | None]]:
    return [(sg.get("project_id"), sg["id"])] if sg.get("name") == "default" else []


def _project(r: Record) -> list[tuple[str | None, str]]:
    return [(r.get("project_id"), r["id"])]


# Kinds a project's quota counts (topology.model.quotas): records per project, for O(1) usage.
PROJECT_COUNTED = (NETWORK, SUBNET, PORT, ROUTER, FLOATINGIP, SECURITY_GROUP, SECURITY_GROUP_RULE, RBAC_POLICY)

INDEXES: dict[str, tuple[str, Entries]] = {
    "writetx.port.subnet_ip": (PORT, _port_ips),
    "writetx.port.network_mac": (PORT, _port_mac),
    "writetx.port.network": (PORT, _port_network),
    "writetx.subnet.network": (SUBNET, _subnet_network),
    "writetx.network.segment": (NETWORK, _segment),
    "writetx.security_group.default": (SECURITY_GROUP, _default_sg),
    **{f"writetx.{kind}.key": (kind, _key) for kind in KEYED_KINDS},
    **{f"writetx.{kind}.project": (kind, _project) for kind in PROJECT_COUNTED},
}


class Overlay:
    """bucket → set of items as this transaction sees them: the store's committed index plus the
    transaction's own writes. A bucket is copied on first read (O(bucket)); writes to buckets not
    read yet wait as pending deltas, so a write costs O(its entries)."""

    def __init__(self, entries: Entries, committed: Mapping[Hashable, Mapping[Hashable, int]]) -> None:
        self.entries = entries
        self.committed = committed
        self.local: dict[Hashable, set] = {}
        self.pending: dict[Hashable, list[tuple[Hashable, bool]]] = {}

    def write(self, old: Record | None, new: Record | None) -> None:
        for rec, present in ((old, False), (new, True)):
            if rec is None:
                continue
            for bucket, item in self.entries(rec):
                items = self.local.get(bucket)
                if items is None:
                    self.pending.setdefault(bucket, []).append((item, present))
                elif present:
                    items.add(item)
                else:
                    items.discard(item)

    def bucket(self, bucket: Hashable) -> set:
        """The live set of one bucket (callers may mutate it, like the per-transaction indexes)."""
        items = self.local.get(bucket)
        if items is None:
            items = set(self.committed.get(bucket, ()))
            for item, present in self.pending.pop(bucket, ()):
                if present:
                    items.add(item)
                else:
                    items.discard(item)
            self.local[bucket] = items
        return items

    def buckets(self) -> list[Hashable]:
        return list(self.committed.keys() | self.local.keys() | self.pending.keys())


class KeyPool:
    """Lowest-free allocator of small integer keys (1..65535), reused after delete."""

    def __init__(self, kind: str, used: set[int]) -> None:
        self.kind = kind
        self.used = used
        self._cursor = KEY_MIN

    def allocate(self) -> int:
        key = self._cursor
        while key in self.used:
            key += 1
        if key > KEY_MAX:
            raise errors.ResourceExhausted(what=f"{self.kind} keys")
        self.used.add(key)
        self._cursor = key + 1
        return key

    def free(self, key: int) -> None:
        self.used.discard(key)
        self._cursor = min(self._cursor, key)


class WriteTx:
    def __init__(self, txn: Txn, settings: Settings) -> None:
        self.txn = txn
        self.settings = settings
        self.now = now()
        self._keys: dict[str, KeyPool] = {}
        self._ips: dict[str, set[str]] | None = None          # subnet id -> IPs in use
        self._allocators: dict[str, SubnetAllocator] = {}
        self._macs: dict[str, set[str]] | None = None         # network id -> MACs in use
        self._ports_by_net: dict[str, dict[str, None]] | None = None
        self._segments: dict[tuple[str, str | None], set[int]] | None = None
        self._default_sgs: dict[str, str] | None = None       # project -> default SG id
        self._mac_prefix: int | None = None
        # Store-maintained indexes (SqliteTxn.index): every write goes through write() below.
        index = getattr(txn, "index", None)
        self._overlays: dict[str, Overlay] = {}
        self._overlays_of: dict[str, list[Overlay]] = {}
        if index is not None:
            for name, (kind, entries) in INDEXES.items():
                ov = Overlay(entries, index(name, kind, entries))
                self._overlays[name] = ov
                self._overlays_of.setdefault(kind, []).append(ov)

    # ---- plain access -----------------------------------------------------------------
    def get(self, kind: str, rid: str) -> Record | None:
        return self.txn.get(kind, rid)

    def list(self, kind: str) -> list[Record]:
        return self.txn.list(kind)

    # ---- writes keeping the indexes current --------------------------------------------
    def insert(self, kind: str, rec: Record) -> Record:
        if kind in KEYED_KINDS and "_key" not in rec:
            rec["_key"] = self.keys(kind).allocate()
        if kind == PORT:
            self._index_port(None, rec)
        self._overlay(kind, None, rec)
        self.txn.put(kind, rec)
        return rec

    def replace(self, kind: str, old: Record, new: Record, bump: bool = True) -> Record:
        if bump:
            new["revision_number"] = old.get("revision_number", 0) + 1
            new["updated_at"] = self.now
        if kind == PORT:
            self._index_port(old, new)
        self._overlay(kind, old, new)
        self.txn.put(kind, new)
        return new

    def remove(self, kind: str, rec: Record) -> None:
        if kind in KEYED_KINDS and "_key" in rec:
            self.keys(kind).free(rec["_key"])
        if kind == PORT:
            self._index_port(rec, None)
        self._overlay(kind, rec, None)
        self.txn.delete(kind, rec["id"])

    def _overlay(self, kind: str, old: Record | None, new: Record | None) -> None:
        for ov in self._overlays_of.get(kind, ()):
            ov.write(old, new)

    def _index_port(self, old: Record | None, new: Record | None) -> None:
        """Keep the per-transaction structures current (allocators always; the list-built
        indexes when there are no overlays — overlays follow writes themselves)."""
        old_ips = {(f["subnet_id"], f["ip_address"]) for f in old["fixed_ips"]} if old else set()
        new_ips = {(f["subnet_id"], f["ip_address"]) for f in new["fixed_ips"]} if new else set()
        for sid, ip in old_ips - new_ips:
            if self._ips is not None:
                self._ips.get(sid, set()).discard(ip)
            if sid in self._allocators:
                self._allocators[sid].release(ip)
        for sid, ip in new_ips - old_ips:
            if self._ips is not None:
                self._ips.setdefault(sid, set()).add(ip)
            if sid in self._allocators:
                self._allocators[sid].mark_used(ip)
        if self._macs is not None:
            if old:
                self._macs.get(old["network_id"], set()).discard(old["mac_address"])
            if new:
                self._macs.setdefault(new["network_id"], set()).add(new["mac_address"])
        if self._ports_by_net is not None:
            if old:
                self._ports_by_net.get(old["network_id"], {}).pop(old["id"], None)
            if new:
                self._ports_by_net.setdefault(new["network_id"], {})[new["id"]] = None

    # ---- indexes -------------------------------------------------------------------------
    def keys(self, kind: str) -> KeyPool:
        pool = self._keys.get(kind)
        if pool is None:
            ov = self._overlays.get(f"writetx.{kind}.key")
            if ov is not None:
                used = ov.bucket(None)
            else:
                used = {r["_key"] for r in self.txn.list(kind) if "_key" in r}
            pool = KeyPool(kind, used)
            self._keys[kind] = pool
        return pool

    def project_ids(self, kind: str, project: str) -> set[str]:
        """Ids of `kind` records owned by `project` as this transaction sees them (its own writes
        included), for quota usage. Without a store index it is built from one listing on first
        use and then follows this transaction's writes like the store-backed ones."""
        name = f"writetx.{kind}.project"
        ov = self._overlays.get(name)
        if ov is None:
            committed: dict[Hashable, dict[Hashable, int]] = {}
            for rec in self.txn.list(kind):
                committed.setdefault(rec.get("project_id"), {})[rec["id"]] = 1
            ov = Overlay(_project, committed)
            self._overlays[name] = ov
            self._overlays_of.setdefault(kind, []).append(ov)
        return ov.bucket(project)

    def _subnet_ips(self, subnet_id: str) -> set[str]:
        ov = self._overlays.get("writetx.port.subnet_ip")
        if ov is not None:
            return ov.bucket(subnet_id)
        if self._ips is None:
            ips: dict[str, set[str]] = {}
            for port in self.txn.list(PORT):
                for f in port["fixed_ips"]:
                    ips.setdefault(f["subnet_id"], set()).add(f["ip_address"])
            self._ips = ips
        return self._ips.get(subnet_id, set())

    def allocator(self, subnet: Record) -> SubnetAllocator:
        alloc = self._allocators.get(subnet["id"])
        if alloc is None:
            alloc = SubnetAllocator(subnet, self._subnet_ips(subnet["id"]))
            self._allocators[subnet["id"]] = alloc
        return alloc

    def forget_allocator(self, subnet_id: str) -> None:
        """Pools of the subnet changed: rebuild its allocator on next use."""
        self._allocators.pop(subnet_id, None)

    def claim_ip(self, subnet: Record, ip: str) -> None:
        self.allocator(subnet).reserve(ip)

    def alloc_ip(self, subnet: Record) -> str | None:
        return self.allocator(subnet).allocate()

    def ips_in_use(self, subnet_id: str) -> set[str]:
        return set(self._subnet_ips(subnet_id))

    def macs(self, network_id: str) -> set[str]:
        ov = self._overlays.get("writetx.port.network_mac")
        if ov is not None:
            return ov.bucket(network_id)
        if self._macs is None:
            macs: dict[str, set[str]] = {}
            for port in self.txn.list(PORT):
                macs.setdefault(port["network_id"], set()).add(port["mac_address"])
            self._macs = macs
        return self._macs.setdefault(network_id, set())

    def new_mac(self, network_id: str) -> str:
        used = self.macs(network_id)
        prefix = self._mac_prefix
        if prefix is None:
            prefix = self._mac_prefix = int(netaddr.EUI(self.settings.base_mac)) & 0xFFFFFF000000
        for _ in range(100):
            mac = _mac_text(prefix | random.getrandbits(24))
            if mac not in used:
                return mac
        raise errors.ResourceExhausted(what="MAC addresses")

    def ports_of(self, network_id: str) -> builtins.list[Record]:
        ov = self._overlays.get("writetx.port.network")
        if ov is not None:
            ids: Iterable[str] = sorted(ov.bucket(network_id), key=self._seq_order(PORT))
        else:
            if self._ports_by_net is None:
                index: dict[str, dict[str, None]] = {}
                for port in self.txn.list(PORT):
                    index.setdefault(port["network_id"], {})[port["id"]] = None
                self._ports_by_net = index
            ids = list(self._ports_by_net.get(network_id, {}))
        return [p for pid in ids if (p := self.txn.get(PORT, pid)) is not None]

    def _seq_order(self, kind: str) -> Callable[[str], tuple]:
        """Creation order (what a listing-built index had), for ids from an unordered bucket."""
        def order(rid: str) -> tuple:
            rec = self.txn.get(kind, rid)
            return ((rec or {}).get("_seq", 0), rid)
        return order

    def subnets_of(self, network_id: str) -> builtins.list[Record]:
        ov = self._overlays.get("writetx.subnet.network")
        if ov is not None:
            subnets = [s for sid in ov.bucket(network_id) if (s := self.txn.get(SUBNET, sid)) is not None]
        else:
            subnets = [s for s in self.txn.list(SUBNET) if s["network_id"] == network_id]
        subnets.sort(key=lambda s: (s.get("_seq", 0), s["id"]))
        return subnets

    def segments(self) -> dict[tuple[str, str | None], set[int]]:
        """(network_type, physnet) -> segmentation ids in use (flat networks use 0)."""
        if self._segments is None:
            segs: dict[tuple[str, str | None], set[int]] = {}
            ov = self._overlays.get("writetx.network.segment")
            if ov is not None:
                for key in ov.buckets():
                    items = ov.bucket(key)
                    if items:
                        segs[cast("tuple[str, str | None]", key)] = items
            else:
                for net in self.txn.list(NETWORK):
                    for key, seg in _segment(net):
                        segs.setdefault(key, set()).add(seg)
            self._segments = segs
        return self._segments

    def default_sgs(self) -> dict[str, str]:
        if self._default_sgs is None:
            ov = self._overlays.get("writetx.security_group.default")
            if ov is not None:
                found: dict[str, str] = {}
                for project in ov.buckets():
                    ids = ov.bucket(project)
                    if ids:
                        found[cast(str, project)] = self._last_listed(SECURITY_GROUP, ids)
                self._default_sgs = found
            else:
                self._default_sgs = {sg["project_id"]: sg["id"] for sg in self.txn.list(SECURITY_GROUP)
                                     if sg["name"] == "default"}
        return self._default_sgs

    def _last_listed(self, kind: str, ids: set[str]) -> str:
        """Of several ids, the one a listing-built dict would have kept (the last listed)."""
        if len(ids) == 1:
            return next(iter(ids))
        return max(ids, key=self._seq_order(kind))

    def seq(self) -> int:
        """A per-transaction ordinal so records made in one second keep their creation order."""
        self._seq = getattr(self, "_seq", 0) + 1
        return int(time.time() * 1000) * 1000 + self._seq


def _mac_text(value: int) -> str:
    """str(netaddr.EUI(value, dialect=netaddr.mac_unix_expanded)), without building the EUI."""
    return (f"{value >> 40 & 0xFF:02x}:{value >> 32 & 0xFF:02x}:{value >> 24 & 0xFF:02x}:"
            f"{value >> 16 & 0xFF:02x}:{value >> 8 & 0xFF:02x}:{value & 0xFF:02x}")


def base_fields(body: dict[str, Any], project: str, tx: WriteTx) -> dict[str, Any]:
    """Fields every Neutron resource carries."""
    return {
        "id": body.get("id") or new_id(),
        "tenant_id": project,
        "project_id": project,
        "description": body.get("description", ""),
        "tags": [],
        "created_at": tx.now,
        "updated_at": tx.now,
        "revision_number": 0,
        "_seq": tx.seq(),
    }
