"""In-memory, indexed copy of the store that compilers read.

Why: compilers must answer "which ports does network N have on chassis C" in O(answer), and the
controller applies the change feed one record at a time (1,000 port writes in a burst), so every
index is maintained incrementally on `apply` — never rebuilt. The view is pure (no I/O) and is
owned by one thread (the controller's compile loop); readers must not mutate returned records
or sets.

Indexes kept (all incremental):
  by_key(kind, key)                    `_key` of every kind → record
  ports_of_network(net)                network_id → ports
  ports_on_host(host)                  binding:host_id → ports
  ports_of_network_on_host(net, host)  (network_id, host) → ports
  hosts_of_network(net)                hosts with ≥ 1 bound port of the network
  networks_on_host(host)               networks with ≥ 1 port bound to the host
  subnets_of_network(net)
  chassis_by_name(name), chassis_by_datapath(dpid)
  rules_of_group(sg), ports_of_group(sg)  (security-group members)
  ports_by_ip(ip[, network_id]), ports_of_device(device_id), floatingips_of_port(port_id)
Other features can register their own with `add_index(kind, name, keyfunc)` + `find(name, value)`.
`View` is the Protocol of what compilers may read; flows/ is annotated against it.
"""
from __future__ import annotations

import logging
import sys
from typing import AbstractSet, Any, Callable, Iterable, Mapping, Protocol

from topology.store import (CHASSIS, FLOATINGIP, KINDS, NETWORK, PORT, SECURITY_GROUP_RULE, SUBNET,
                            Change, Record)

LOG = logging.getLogger(__name__)

KeyFunc = Callable[[Record], Iterable[Any]]
_EMPTY: frozenset = frozenset()


def parse_datapath_id(value: Any) -> int | None:
    """Datapath ids arrive as ints or as hex strings ('0000aabbccddeeff', '0x…'); compare as ints."""
    if value is None or value == "":
        return None
    if isinstance(value, int):
        return value
    try:
        return int(str(value), 16)
    except ValueError:
        LOG.warning("unparseable datapath_id %r", value)
        return None


def port_host(port: Record) -> str:
    """The chassis name a port is bound to ('' when unbound)."""
    return port.get("binding:host_id") or ""


class _Index:
    """value → set of record ids, for records of one kind; keyfunc gives a record's values."""

    __slots__ = ("kind", "keyfunc", "ids")

    def __init__(self, kind: str, keyfunc: KeyFunc):
        self.kind = kind
        self.keyfunc = keyfunc
        self.ids: dict[Any, set[str]] = {}

    def values_of(self, record: Record | None) -> set:
        if record is None:
            return set()
        try:
            return {v for v in self.keyfunc(record) if v is not None and v != ""}
        except (KeyError, TypeError, AttributeError, ValueError):
            LOG.warning("index %s: malformed %s record %r", self.keyfunc, self.kind, record.get("id"))
            return set()

    def update(self, rid: str, old: Record | None, new: Record | None) -> tuple[set, set]:
        """Move `rid` from old's values to new's; return (values that emptied, values that appeared)."""
        before, after = self.values_of(old), self.values_of(new)
        emptied, appeared = set(), set()
        for v in before - after:
            bucket = self.ids.get(v)
            if bucket is None:
                continue
            bucket.discard(rid)
            if not bucket:
                del self.ids[v]
                emptied.add(v)
        for v in after - before:
            bucket = self.ids.setdefault(v, set())
            if not bucket:
                appeared.add(v)
            bucket.add(rid)
        return emptied, appeared

    def get(self, value: Any) -> AbstractSet[str]:
        return self.ids.get(value, _EMPTY)


def _fixed_ips(port: Record) -> list[dict]:
    return port.get("fixed_ips") or []


_BUILTIN_INDEXES: dict[str, tuple[str, KeyFunc]] = {
    "port.network": (PORT, lambda r: [r.get("network_id")]),
    "port.host": (PORT, lambda r: [port_host(r)]),
    "port.network_host": (PORT, lambda r: [(r.get("network_id"), port_host(r))] if port_host(r) else []),
    "port.group": (PORT, lambda r: list(r.get("security_groups") or [])),
    "port.ip": (PORT, lambda r: [ip.get("ip_address") for ip in _fixed_ips(r)]),
    "port.network_ip": (PORT, lambda r: [(r.get("network_id"), ip.get("ip_address")) for ip in _fixed_ips(r)]),
    "port.device": (PORT, lambda r: [r.get("device_id")]),
    "subnet.network": (SUBNET, lambda r: [r.get("network_id")]),
    "rule.group": (SECURITY_GROUP_RULE, lambda r: [r.get("security_group_id")]),
    "floatingip.port": (FLOATINGIP, lambda r: [r.get("port_id")]),
    "chassis.name": (CHASSIS, lambda r: [r.get("name")]),
    "chassis.datapath": (CHASSIS, lambda r: [parse_datapath_id(r.get("datapath_id"))]),
}


class View(Protocol):
    """What a compiler (flows/) may read of the controller's view, and all it may do to it.

    Why a Protocol: two classes serve it — TopologyView (the view itself) and the incremental
    engine's recording view (flows/engine.py), which notes every read as an input; compilers are
    annotated against this, so a query either class lacks is a type error, not a missed
    dependency. Feeding the view (from_snapshot, apply) is the controller's, not a compiler's.
    Query arguments may be None (a record's missing reference): the answer is then empty."""

    @property
    def revision(self) -> int: ...

    def add_index(self, kind: str, name: str, keyfunc: KeyFunc) -> None: ...
    def has_index(self, name: str) -> bool: ...
    def find(self, name: str, value: Any) -> list[Record]: ...
    def find_ids(self, name: str, value: Any) -> AbstractSet[str]: ...

    def get(self, kind: str, rid: str | None) -> Record | None: ...
    def records(self, kind: str) -> Mapping[str, Record]: ...
    def by_key(self, kind: str, key: int) -> Record | None: ...
    def network(self, rid: str | None) -> Record | None: ...
    def port(self, rid: str | None) -> Record | None: ...
    def subnet(self, rid: str | None) -> Record | None: ...
    def chassis(self, rid: str | None) -> Record | None: ...

    def ports_of_network(self, network_id: str | None) -> list[Record]: ...
    def port_ids_of_network(self, network_id: str | None) -> AbstractSet[str]: ...
    def ports_on_host(self, host: str | None) -> list[Record]: ...
    def ports_of_network_on_host(self, network_id: str | None, host: str | None) -> list[Record]: ...
    def hosts_of_network(self, network_id: str | None) -> AbstractSet[str]: ...
    def networks_on_host(self, host: str | None) -> AbstractSet[str]: ...
    def subnets_of_network(self, network_id: str | None) -> list[Record]: ...
    def chassis_by_name(self, name: str | None) -> Record | None: ...
    def chassis_by_datapath(self, dpid: int | str) -> Record | None: ...
    def rules_of_group(self, group_id: str | None) -> list[Record]: ...
    def ports_of_group(self, group_id: str | None) -> list[Record]: ...
    def ports_by_ip(self, ip: str | None, network_id: str | None = None) -> list[Record]: ...
    def ports_of_device(self, device_id: str | None) -> list[Record]: ...
    def floatingips_of_port(self, port_id: str | None) -> list[Record]: ...


class IndexQueries:
    """The named queries compilers use, each one lookup by id or one index bucket. Defined once on
    top of `get`/`find`/`find_ids`, so the controller's view and the engine's recording view
    (flows/engine.py, which notes every read) answer them identically."""

    __slots__ = ()

    def get(self, kind: str, rid: str | None) -> Record | None:
        raise NotImplementedError

    def find(self, name: str, value: Any) -> list[Record]:
        raise NotImplementedError

    def find_ids(self, name: str, value: Any) -> AbstractSet[str]:
        raise NotImplementedError

    def network(self, rid: str | None) -> Record | None:
        return self.get(NETWORK, rid)

    def port(self, rid: str | None) -> Record | None:
        return self.get(PORT, rid)

    def subnet(self, rid: str | None) -> Record | None:
        return self.get(SUBNET, rid)

    def chassis(self, rid: str | None) -> Record | None:
        return self.get(CHASSIS, rid)

    def ports_of_network(self, network_id: str | None) -> list[Record]:
        return self.find("port.network", network_id)

    def port_ids_of_network(self, network_id: str | None) -> AbstractSet[str]:
        return self.find_ids("port.network", network_id)

    def ports_on_host(self, host: str | None) -> list[Record]:
        return self.find("port.host", host) if host else []

    def ports_of_network_on_host(self, network_id: str | None, host: str | None) -> list[Record]:
        return self.find("port.network_host", (network_id, host)) if host else []

    def subnets_of_network(self, network_id: str | None) -> list[Record]:
        return self.find("subnet.network", network_id)

    def rules_of_group(self, group_id: str | None) -> list[Record]:
        return self.find("rule.group", group_id)

    def ports_of_group(self, group_id: str | None) -> list[Record]:
        return self.find("port.group", group_id)

    def ports_by_ip(self, ip: str | None, network_id: str | None = None) -> list[Record]:
        if network_id is None:
            return self.find("port.ip", ip)
        return self.find("port.network_ip", (network_id, ip))

    def ports_of_device(self, device_id: str | None) -> list[Record]:
        return self.find("port.device", device_id)

    def floatingips_of_port(self, port_id: str | None) -> list[Record]:
        return self.find("floatingip.port", port_id)


def _share_strings(record: Record) -> None:
    """Intern a record's top-level string values and its fixed IPs' subnet ids, in place (equal
    values, no key added: safe for anyone holding the dict). Why (issue 14): every record the
    store decodes carries its own copy of the tenant, network and subnet ids, timestamps, status,
    vnic/vif types, …, repeated over 10,000 ports; one shared copy saves ≈ 0.8 KB per port."""
    intern = sys.intern
    for k, v in record.items():
        if type(v) is str:
            record[k] = intern(v)
    ips = record.get("fixed_ips")
    if type(ips) is list:
        for ip in ips:
            if type(ip) is dict and type(ip.get("subnet_id")) is str:
                ip["subnet_id"] = intern(ip["subnet_id"])


class TopologyView(IndexQueries):
    """Records per kind by id, plus incremental indexes. Build with `from_snapshot`, feed `apply`.
    Serves the `View` protocol (tests/unit/test_schema.py checks both views against it)."""

    def __init__(self) -> None:
        self.revision = 0
        self._records: dict[str, dict[str, Record]] = {k: {} for k in KINDS}
        self._by_key: dict[str, dict[int, str]] = {k: {} for k in KINDS}
        self._indexes: dict[str, _Index] = {}
        self._by_kind: dict[str, list[_Index]] = {k: [] for k in KINDS}
        # (network, host) presence, derived from port.network_host buckets appearing/emptying.
        self._hosts_of_network: dict[str, set[str]] = {}
        self._networks_on_host: dict[str, set[str]] = {}
        for name, (kind, fn) in _BUILTIN_INDEXES.items():
            self.add_index(kind, name, fn)

    # ------------------------------------------------------------------ building / feeding
    @classmethod
    def from_snapshot(cls, revision: int, data: Mapping[str, Mapping[str, Record]]) -> "TopologyView":
        view = cls()
        for kind, records in data.items():
            if kind not in view._records:
                LOG.warning("snapshot holds unknown kind %r; ignored", kind)
                continue
            for rid, record in records.items():
                view._put(kind, rid, record)
        view.revision = revision
        return view

    def apply(self, change: Change) -> None:
        """Apply one feed change. Idempotent: re-applying the same change leaves the view equal."""
        if change.kind not in self._records:
            LOG.warning("change %s for unknown kind %r ignored", change.revision, change.kind)
            return
        if change.new is None:
            self._delete(change.kind, change.id)
        else:
            self._put(change.kind, change.id, change.new)
        self.revision = max(self.revision, change.revision)

    def _put(self, kind: str, rid: str, record: Record) -> None:
        _share_strings(record)
        rid = sys.intern(rid)
        old = self._records[kind].get(rid)
        self._records[kind][rid] = record
        self._reindex(kind, rid, old, record)

    def _delete(self, kind: str, rid: str) -> None:
        old = self._records[kind].pop(rid, None)
        if old is not None:
            self._reindex(kind, rid, old, None)

    def _reindex(self, kind: str, rid: str, old: Record | None, new: Record | None) -> None:
        keys = self._by_key[kind]
        old_key = old.get("_key") if old else None
        new_key = new.get("_key") if new else None
        if old_key is not None and keys.get(old_key) == rid and old_key != new_key:
            del keys[old_key]
        if new_key is not None:
            keys[new_key] = rid
        for index in self._by_kind[kind]:
            emptied, appeared = index.update(rid, old, new)
            if index is self._indexes.get("port.network_host"):
                for net, host in emptied:
                    _discard(self._hosts_of_network, net, host)
                    _discard(self._networks_on_host, host, net)
                for net, host in appeared:
                    self._hosts_of_network.setdefault(net, set()).add(host)
                    self._networks_on_host.setdefault(host, set()).add(net)

    def has_index(self, name: str) -> bool:
        """Whether `name` is registered (features register theirs on first use)."""
        return name in self._indexes

    def add_index(self, kind: str, name: str, keyfunc: KeyFunc) -> None:
        """Register an extra incremental index (e.g. by another feature app); built from current data."""
        if name in self._indexes:
            raise ValueError(f"index {name!r} already exists")
        index = _Index(kind, keyfunc)
        for rid, record in self._records[kind].items():
            index.update(rid, None, record)
        self._indexes[name] = index
        self._by_kind[kind].append(index)

    def index_values(self, kind: str, record: Record | None) -> dict[str, set]:
        """{index name: values `record` has there} for every index over `kind`: what the
        incremental engine (flows/engine.py) invalidates when such a record changes."""
        return {name: index.values_of(record) for name, index in self._indexes.items() if index.kind == kind}

    def find(self, name: str, value: Any) -> list[Record]:
        """Records whose index `name` yields `value`."""
        index = self._indexes[name]
        recs = self._records[index.kind]
        return [recs[i] for i in index.get(value)]

    def find_ids(self, name: str, value: Any) -> AbstractSet[str]:
        """Ids for index `name` = value. Read-only: do not mutate the returned set."""
        return self._indexes[name].get(value)

    # ------------------------------------------------------------------ plain access
    def get(self, kind: str, rid: str | None) -> Record | None:
        return self._records[kind].get(rid) if rid else None

    def records(self, kind: str) -> Mapping[str, Record]:
        """All records of a kind by id (read-only by convention)."""
        return self._records[kind]

    def by_key(self, kind: str, key: int) -> Record | None:
        rid = self._by_key[kind].get(key)
        return self._records[kind].get(rid) if rid is not None else None

    # ------------------------------------------------------------------ indexed queries
    def hosts_of_network(self, network_id: str | None) -> AbstractSet[str]:
        """Chassis names with at least one port of the network bound (binding:host_id)."""
        return self._hosts_of_network.get(network_id, _EMPTY) if network_id else _EMPTY

    def networks_on_host(self, host: str | None) -> AbstractSet[str]:
        """Network ids with at least one port bound to `host`."""
        return self._networks_on_host.get(host, _EMPTY) if host else _EMPTY

    def chassis_by_name(self, name: str | None) -> Record | None:
        if not name:
            return None
        ids = self.find_ids("chassis.name", name)
        return self._records[CHASSIS][min(ids)] if ids else None

    def chassis_by_datapath(self, dpid: int | str) -> Record | None:
        ids = self.find_ids("chassis.datapath", parse_datapath_id(dpid))
        return self._records[CHASSIS][min(ids)] if ids else None



def _discard(index: dict[str, set[str]], key: str, value: str) -> None:
    bucket = index.get(key)
    if bucket is not None:
        bucket.discard(value)
        if not bucket:
            del index[key]
