"""One write transaction of the business layer: the store Txn plus indexes built once per transaction.

Why: bulk creates (1,000 ports in one request) must not rescan every port per allocation. The
indexes (IPs in use per subnet, MACs per network, ports per network, `_key` pools, segmentation
ids) are built lazily on first use and kept current by the insert/replace/remove helpers, which
every write of the service goes through.
"""
from __future__ import annotations

import random
import time
import uuid
from typing import Any

import netaddr

from topology import errors
from topology.ipam import SubnetAllocator
from topology.settings import Settings
from topology.store import (CHASSIS, FLOATINGIP, NETWORK, PORT, ROUTER, SECURITY_GROUP, SUBNET, Record,
                            Txn)

KEYED_KINDS = (NETWORK, PORT, ROUTER, SECURITY_GROUP, FLOATINGIP, CHASSIS)
KEY_MIN, KEY_MAX = 1, 65535


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def new_id() -> str:
    return str(uuid.uuid4())


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
        self.txn.put(kind, rec)
        return rec

    def replace(self, kind: str, old: Record, new: Record, bump: bool = True) -> Record:
        if bump:
            new["revision_number"] = old.get("revision_number", 0) + 1
            new["updated_at"] = self.now
        if kind == PORT:
            self._index_port(old, new)
        self.txn.put(kind, new)
        return new

    def remove(self, kind: str, rec: Record) -> None:
        if kind in KEYED_KINDS and "_key" in rec:
            self.keys(kind).free(rec["_key"])
        if kind == PORT:
            self._index_port(rec, None)
        self.txn.delete(kind, rec["id"])

    def _index_port(self, old: Record | None, new: Record | None) -> None:
        old_ips = {(f["subnet_id"], f["ip_address"]) for f in old["fixed_ips"]} if old else set()
        new_ips = {(f["subnet_id"], f["ip_address"]) for f in new["fixed_ips"]} if new else set()
        if self._ips is not None:
            for sid, ip in old_ips - new_ips:
                self._ips.get(sid, set()).discard(ip)
                if sid in self._allocators:
                    self._allocators[sid].release(ip)
            for sid, ip in new_ips - old_ips:
                self._ips.setdefault(sid, set()).add(ip)
                if sid in self._allocators:
                    self._allocators[sid].used.add(int(netaddr.IPAddress(ip)))
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
            pool = KeyPool(kind, {r["_key"] for r in self.txn.list(kind) if "_key" in r})
            self._keys[kind] = pool
        return pool

    def _ip_index(self) -> dict[str, set[str]]:
        if self._ips is None:
            ips: dict[str, set[str]] = {}
            for port in self.txn.list(PORT):
                for f in port["fixed_ips"]:
                    ips.setdefault(f["subnet_id"], set()).add(f["ip_address"])
            self._ips = ips
        return self._ips

    def allocator(self, subnet: Record) -> SubnetAllocator:
        alloc = self._allocators.get(subnet["id"])
        if alloc is None:
            alloc = SubnetAllocator(subnet, self._ip_index().get(subnet["id"], ()))
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
        return set(self._ip_index().get(subnet_id, ()))

    def macs(self, network_id: str) -> set[str]:
        if self._macs is None:
            macs: dict[str, set[str]] = {}
            for port in self.txn.list(PORT):
                macs.setdefault(port["network_id"], set()).add(port["mac_address"])
            self._macs = macs
        return self._macs.setdefault(network_id, set())

    def new_mac(self, network_id: str) -> str:
        used = self.macs(network_id)
        prefix = int(netaddr.EUI(self.settings.base_mac)) & 0xFFFFFF000000
        for _ in range(100):
            mac = str(netaddr.EUI(prefix | random.getrandbits(24), dialect=netaddr.mac_unix_expanded))
            if mac not in used:
                return mac
        raise errors.ResourceExhausted(what="MAC addresses")

    def ports_of(self, network_id: str) -> list[Record]:
        if self._ports_by_net is None:
            index: dict[str, dict[str, None]] = {}
            for port in self.txn.list(PORT):
                index.setdefault(port["network_id"], {})[port["id"]] = None
            self._ports_by_net = index
        return [p for pid in list(self._ports_by_net.get(network_id, {}))
                if (p := self.txn.get(PORT, pid)) is not None]

    def subnets_of(self, network_id: str) -> list[Record]:
        subnets = [s for s in self.txn.list(SUBNET) if s["network_id"] == network_id]
        subnets.sort(key=lambda s: (s.get("_seq", 0), s["id"]))
        return subnets

    def segments(self) -> dict[tuple[str, str | None], set[int]]:
        """(network_type, physnet) -> segmentation ids in use (flat networks use 0)."""
        if self._segments is None:
            segs: dict[tuple[str, str | None], set[int]] = {}
            for net in self.txn.list(NETWORK):
                ntype = net.get("provider:network_type")
                if ntype in (None, "local"):
                    continue
                key = (ntype, net.get("provider:physical_network"))
                segs.setdefault(key, set()).add(net.get("provider:segmentation_id") or 0)
            self._segments = segs
        return self._segments

    def default_sgs(self) -> dict[str, str]:
        if self._default_sgs is None:
            self._default_sgs = {sg["project_id"]: sg["id"] for sg in self.txn.list(SECURITY_GROUP)
                                 if sg["name"] == "default"}
        return self._default_sgs

    def seq(self) -> int:
        """A per-transaction ordinal so records made in one second keep their creation order."""
        self._seq = getattr(self, "_seq", 0) + 1
        return int(time.time() * 1000) * 1000 + self._seq


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
