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

import contextlib
import logging
import sqlite3
import threading
import time
from typing import Any, Iterator

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


def _pack(record: Record | None) -> bytes | None:
    return None if record is None else msgpack.packb(record, use_bin_type=True)


def _unpack(data: bytes | None) -> Record | None:
    return None if data is None else msgpack.unpackb(data, raw=False, strict_map_key=False)


class SqliteTxn(Txn):
    """Reads see the transaction's own writes; records are decoded once per transaction."""

    def __init__(self, store: "SqliteStore") -> None:
        self._store = store
        self._decoded: dict[str, dict[str, Record]] = {}
        self._written: dict[tuple[str, str], Record | None] = {}

    def _kind(self, kind: str) -> dict[str, Record]:
        if kind not in KINDS:
            raise KeyError(f"unknown record kind {kind!r}")
        table = self._decoded.get(kind)
        if table is None:
            table = {rid: _unpack(data) for rid, data in self._store._cache[kind].items()}
            self._decoded[kind] = table
        return table

    def get(self, kind: str, rid: str) -> Record | None:
        return self._kind(kind).get(rid)

    def list(self, kind: str) -> list[Record]:
        return list(self._kind(kind).values())

    def put(self, kind: str, record: Record) -> None:
        rid = record["id"]
        self._kind(kind)[rid] = record
        self._written[(kind, rid)] = record

    def delete(self, kind: str, rid: str) -> None:
        table = self._kind(kind)
        if rid in table:
            del table[rid]
            self._written[(kind, rid)] = None


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
            if new is None:
                self._cache[kind].pop(rid, None)
            else:
                self._cache[kind][rid] = new
        self._cache_rev = rev

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
                    if data is None:
                        self._cache[kind].pop(rid, None)
                    else:
                        self._cache[kind][rid] = data
                self._cache_rev = self._last_written
                self._cond.notify_all()

    def _write(self, txn: SqliteTxn) -> list[tuple[tuple[str, str], bytes | None]]:
        """Write the transaction's net effect: one change row (one revision) per touched record."""
        rev = self._cache_rev
        rows_changes: list[tuple[Any, ...]] = []
        applied: list[tuple[tuple[str, str], bytes | None]] = []
        for (kind, rid), record in txn._written.items():
            old = self._cache[kind].get(rid)
            new = _pack(record)
            if old == new or (old is None and new is None):
                continue
            rev += 1
            rows_changes.append((rev, kind, rid, old, new))
            applied.append(((kind, rid), new))
            if new is None:
                self._conn.execute("DELETE FROM records WHERE kind=? AND id=?", (kind, rid))
            else:
                self._conn.execute("INSERT OR REPLACE INTO records (kind, id, data) VALUES (?,?,?)",
                                   (kind, rid, new))
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

    def changes(self, after: int, timeout: float | None = None) -> list[Change]:
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
