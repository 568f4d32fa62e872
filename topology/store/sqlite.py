"""Embedded store: one SQLite file (WAL, synchronous=FULL), msgpack records, a revisioned change log.

Why this design:
- Durability: a write is acknowledged only after COMMIT with synchronous=FULL, so `kill -9` at any
  point loses nothing acknowledged; the revision is max(changes.revision), so it continues after restart.
- Speed: readers are served from an in-memory cache of encoded records that is brought up to date
  from the change log whenever the file's revision moved (also when another process wrote it).
- Feed: `changes()` waits on a Condition notified after in-process commits and polls the file
  briefly so writes from another process are seen too. Plain `threading` works natively and
  under eventlet monkey-patching alike.
"""
from __future__ import annotations

import builtins
import contextlib
import logging
import sqlite3
import threading
import time
from typing import Any, Callable, Hashable, Iterable, Iterator, Mapping, overload

import msgpack

from topology.store import KINDS, Change, Compacted, Record, Store, Txn

LOG = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS records (kind TEXT NOT NULL, id TEXT NOT NULL, data BLOB NOT NULL,
                                    PRIMARY KEY (kind, id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS changes (revision INTEGER PRIMARY KEY, kind TEXT NOT NULL, id TEXT NOT NULL,
                                    old BLOB, new BLOB);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""

DEFAULT_KEEP_CHANGES = 100_000
POLL_INTERVAL = 0.25  # s; how soon a write by *another process* is noticed by a waiting feed reader

Entries = Callable[[Record], Iterable[tuple[Hashable, Hashable]]]


def _pack(record: Record | None) -> bytes | None:
    return None if record is None else msgpack.packb(record, use_bin_type=True)


@overload
def _unpack(data: bytes) -> Record: ...
@overload
def _unpack(data: bytes | None) -> Record | None: ...
def _unpack(data: bytes | None) -> Record | None:
    return None if data is None else msgpack.unpackb(data, raw=False, strict_map_key=False)


class RecordIndex:
    """bucket → {item: count} over the committed records of one kind, kept current by the store.

    Why in the store: a write transaction of the business layer needs facts about *all* records
    of a kind (IPs in use per subnet, MACs per network, free `_key`s). Rebuilding those per
    transaction costs O(records); the store sees every committed put/delete (its own and, via the
    change log, other processes'), so it keeps them current in O(records written) — and a failed
    transaction cannot leave them inconsistent, because they only change on COMMIT.
    `entries(record)` yields the (bucket, item) pairs a record contributes; counts make two
    records contributing the same pair safe. Read-only for everybody but the store.
    """

    __slots__ = ("kind", "entries", "buckets")

    def __init__(self, kind: str, entries: Entries) -> None:
        self.kind = kind
        self.entries = entries
        self.buckets: dict[Hashable, dict[Hashable, int]] = {}

    def update(self, record: Record | None, sign: int) -> None:
        if record is None:
            return
        buckets = self.buckets
        for bucket, item in self.entries(record):
            items = buckets.get(bucket)
            if items is None:
                items = buckets[bucket] = {}
            count = items.get(item, 0) + sign
            if count > 0:
                items[item] = count
            else:
                items.pop(item, None)
                if not items:
                    del buckets[bucket]


class SqliteTxn(Txn):
    """Reads see the transaction's own writes. Records are decoded lazily, one `get` at a time
    (a create-port transaction reads a handful of records, not every port); `list` decodes the
    whole kind once. Decoded records belong to this transaction only (never shared)."""

    def __init__(self, store: "SqliteStore") -> None:
        self._store = store
        self.base_revision = store._cache_rev
        self._decoded: dict[str, dict[str, Record | None]] = {k: {} for k in KINDS}
        self._complete: set[str] = set()
        self._written: dict[tuple[str, str], Record | None] = {}
        self._order: dict[str, dict[str, None]] = {k: {} for k in KINDS}  # new ids, in write order

    def _table(self, kind: str) -> dict[str, Record | None]:
        table = self._decoded.get(kind)
        if table is None:
            raise KeyError(f"unknown record kind {kind!r}")
        return table

    def get(self, kind: str, rid: str) -> Record | None:
        table = self._table(kind)
        written = self._written
        if (kind, rid) in written:
            return written[(kind, rid)]
        try:
            return table[rid]
        except KeyError:
            rec = _unpack(self._store._cache[kind].get(rid))
            table[rid] = rec
            return rec

    def list(self, kind: str) -> list[Record]:
        table = self._table(kind)
        committed = self._store._cache[kind]
        if kind not in self._complete:
            for rid, data in committed.items():
                if rid not in table:
                    table[rid] = _unpack(data)
            self._complete.add(kind)
        written = self._written
        out = []
        for rid in committed:
            rec = written[(kind, rid)] if (kind, rid) in written else table[rid]
            if rec is not None:
                out.append(rec)
        for rid in self._order[kind]:
            rec = written.get((kind, rid))
            if rec is not None and rid not in committed:
                out.append(rec)
        return out

    def put(self, kind: str, record: Record) -> None:
        self._table(kind)
        rid = record["id"]
        self._written[(kind, rid)] = record
        self._order[kind][rid] = None

    def delete(self, kind: str, rid: str) -> None:
        if self.get(kind, rid) is not None:
            self._written[(kind, rid)] = None

    def index(self, name: str, kind: str, entries: Entries) -> Mapping[Hashable, Mapping[Hashable, int]]:
        """The store's committed index `name` (see RecordIndex) as of this transaction's start,
        WITHOUT this transaction's own writes; read-only. Built on first use per store."""
        return self._store._record_index(name, kind, entries).buckets


class SqliteStore(Store):
    def __init__(self, path: str = ":memory:", keep_changes: int = DEFAULT_KEEP_CHANGES) -> None:
        self.path = path
        self.keep_changes = keep_changes
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30.0)
        if path != ":memory:":
            self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.executescript(SCHEMA)
        self._cache: dict[str, dict[str, bytes]] = {k: {} for k in KINDS}
        self._cache_rev = -1
        self._indexes: dict[str, RecordIndex] = {}          # built record indexes, by name
        self._indexes_of: dict[str, list[RecordIndex]] = {k: [] for k in KINDS}
        with self._lock:
            self._refresh()
        self._closed = False

    # -- internal ------------------------------------------------------------------------
    def _db_revision(self) -> int:
        row = self._conn.execute("SELECT max(revision) FROM changes").fetchone()
        return row[0] or 0

    def _compacted_rev(self) -> int:
        row = self._conn.execute("SELECT value FROM meta WHERE key='compacted'").fetchone()
        return row[0] if row else 0

    def _reload_all(self, rev: int) -> None:
        cache: dict[str, dict[str, bytes]] = {k: {} for k in KINDS}
        for kind, rid, data in self._conn.execute("SELECT kind, id, data FROM records"):
            cache.setdefault(kind, {})[rid] = data
        self._cache = cache
        self._cache_rev = rev
        self._drop_indexes()  # rebuilt from the new cache on next use

    def _refresh(self) -> None:
        """Bring the cache up to the file's revision (cheap when nothing changed). Caller holds the lock."""
        rev = self._db_revision()
        if rev == self._cache_rev:
            return
        if self._cache_rev < 0 or self._cache_rev < self._compacted_rev() or rev < self._cache_rev:
            self._reload_all(rev)
            return
        for kind, rid, new in self._conn.execute(
                "SELECT kind, id, new FROM changes WHERE revision > ? ORDER BY revision", (self._cache_rev,)):
            self._apply(kind, rid, new)
        self._cache_rev = rev

    def _apply(self, kind: str, rid: str, new: bytes | None, new_record: Record | None = None) -> None:
        """Put committed bytes into the cache and keep the record indexes of the kind current."""
        table = self._cache[kind]
        old = table.pop(rid, None) if new is None else table.get(rid)
        if new is not None:
            table[rid] = new
        indexes = self._indexes_of[kind]
        if not indexes:
            return
        try:
            old_record = _unpack(old)
            if new is not None and new_record is None:
                new_record = _unpack(new)
            for index in indexes:
                index.update(old_record, -1)
                index.update(new_record, 1)
        except Exception:  # noqa: BLE001 — a bad keyfunc must not fail a committed write; rebuild later
            LOG.exception("record index of %s failed on %s; dropping the indexes", kind, rid)
            self._drop_indexes()

    def _drop_indexes(self) -> None:
        self._indexes = {}
        self._indexes_of = {k: [] for k in KINDS}

    def _record_index(self, name: str, kind: str, entries: Entries) -> RecordIndex:
        """The index `name` over committed records of `kind`; built (one decode per record) on first
        use, then maintained by every commit and refresh. Caller holds the lock."""
        index = self._indexes.get(name)
        if index is None:
            if kind not in self._indexes_of:
                raise KeyError(f"unknown record kind {kind!r}")
            index = RecordIndex(kind, entries)
            for data in self._cache[kind].values():
                index.update(_unpack(data), 1)
            self._indexes[name] = index
            self._indexes_of[kind].append(index)
        return index

    # -- Store API --------------------------------------------------------------------------
    def revision(self) -> int:
        with self._lock:
            self._refresh()
            return self._cache_rev

    def snapshot(self) -> tuple[int, dict[str, dict[str, Record]]]:
        with self._lock:
            self._refresh()
            encoded = {k: dict(v) for k, v in self._cache.items()}
            rev = self._cache_rev
        return rev, {k: {rid: _unpack(d) for rid, d in v.items()} for k, v in encoded.items()}

    def get(self, kind: str, rid: str) -> Record | None:
        with self._lock:
            self._refresh()
            data = self._cache[kind].get(rid)
        return _unpack(data)

    def list(self, kind: str) -> list[Record]:
        with self._lock:
            self._refresh()
            values = list(self._cache[kind].values())
        return [_unpack(d) for d in values]

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Txn]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._refresh()
                txn = SqliteTxn(self)
                yield txn
                changed = self._write(txn)
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            if changed:
                for (kind, rid), data in changed:
                    self._apply(kind, rid, data, txn._written.get((kind, rid)))
                self._cache_rev = self._last_written
                self._cond.notify_all()

    def _write(self, txn: SqliteTxn) -> builtins.list[tuple[tuple[str, str], bytes | None]]:
        """Write the transaction's net effect: one change row (one revision) per touched record."""
        rev = self._cache_rev
        rows_changes: list[tuple[Any, ...]] = []
        applied: list[tuple[tuple[str, str], bytes | None]] = []
        deleted: list[tuple[str, str]] = []
        written: list[tuple[str, str, bytes]] = []
        cache = self._cache
        for (kind, rid), record in txn._written.items():
            old = cache[kind].get(rid)
            new = _pack(record)
            if old == new or (old is None and new is None):
                continue
            rev += 1
            rows_changes.append((rev, kind, rid, old, new))
            applied.append(((kind, rid), new))
            if new is None:
                deleted.append((kind, rid))
            else:
                written.append((kind, rid, new))
        # One statement per table (each (kind, id) is in the net effect once, so order is moot).
        if deleted:
            self._conn.executemany("DELETE FROM records WHERE kind=? AND id=?", deleted)
        if written:
            written.sort()   # in key order: the B-tree fills page by page
            self._conn.executemany("INSERT OR REPLACE INTO records (kind, id, data) VALUES (?,?,?)", written)
        if rows_changes:
            self._conn.executemany("INSERT INTO changes (revision, kind, id, old, new) VALUES (?,?,?,?,?)",
                                   rows_changes)
            self._compact(rev)
        self._last_written = rev
        return applied

    def _compact(self, rev: int) -> None:
        """Keep the change log bounded; remember up to where it was cut so readers get Compacted."""
        floor = rev - self.keep_changes
        if floor <= 0 or floor <= self._compacted_rev():
            return
        # Cut in chunks (every 1% of keep) so compaction is not one row per commit.
        if floor - self._compacted_rev() < max(1, self.keep_changes // 100):
            return
        self._conn.execute("DELETE FROM changes WHERE revision <= ?", (floor,))
        self._conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('compacted', ?)", (floor,))

    def changes(self, after: int, timeout: float | None = None) -> builtins.list[Change]:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while True:
                self._refresh()
                if after < self._compacted_rev():
                    raise Compacted(f"changes after {after} were compacted (kept from {self._compacted_rev()})")
                if self._cache_rev > after:
                    rows = self._conn.execute(
                        "SELECT revision, kind, id, old, new FROM changes WHERE revision > ? ORDER BY revision",
                        (after,)).fetchall()
                    return [Change(r, k, i, _unpack(o), _unpack(n)) for r, k, i, o, n in rows]
                if deadline is None:
                    return []
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return []
                self._cond.wait(min(remaining, POLL_INTERVAL))

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._conn.close()
