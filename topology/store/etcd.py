"""Shared store on etcd (through its HTTP gateway, via etcd3gw): several machines, one topology.

Why this design:
- Records are live keys `<prefix>/r/<kind>/<id>` (msgpack). Every transaction also writes one
  log entry `<prefix>/log/<uuid>` holding, per touched record, (kind, id, old, new). Log keys are
  never modified, so a log entry's mod_revision *is* its commit's etcd revision, and "all changes
  after R" is ONE range request (min_mod_revision) — no watch stream to manage, no per-revision
  walks, and old values come with the entry (etcd's own compaction cannot cut the feed).
- One etcd txn commits N records under one etcd revision C, but Change.revision must be strictly
  increasing, so revisions are derived: the i-th of n changes at C gets C*SUB + SUB - n + i. The
  last change of a commit is C*SUB + SUB - 1, which is what `revision()` returns. Consumers only
  compare revisions, and etcd writes outside our prefix just leave gaps.
- Optimistic concurrency: a transaction reads a local mirror that is exact at etcd revision R;
  commit compares the mod_revision of every record it read or wrote (0 = absent) and of a per-kind
  head key `<prefix>/h/<kind>` for every kind it listed (each commit touches the heads of the kinds
  it writes, so a list also catches creations and deletions). Any change since R → `Conflict`;
  the service re-runs the whole request (`topology.store.retry_on_conflict`). That is what keeps
  IPAM, MACs, keys and VNIs duplicate-free across API servers on different machines.
- The mirror (encoded records + their mod_revisions) is refreshed from the log before every read,
  with one request; the commit itself returns the log entries committed meanwhile, so a writer's
  mirror stays current without extra round trips.
- The log is trimmed to the last `keep_changes` commits; `<prefix>/meta/floor` says up to which
  etcd revision, and asking for changes before it raises `Compacted`, like SqliteStore.
"""
from __future__ import annotations

import builtins
import base64
import contextlib
import logging
import threading
import time
import uuid
from typing import Any, Iterator

import etcd3gw
import msgpack
from etcd3gw import exceptions as etcd_exc
from etcd3gw.types import TxnResponse

from topology.store import KINDS, Change, Compacted, Conflict, Record, Store, Txn

LOG = logging.getLogger(__name__)

SUB = 1_000_000                 # derived revisions per etcd revision (max changes per transaction)
DEFAULT_KEEP_CHANGES = 10_000   # log entries (= transactions) kept for the feed
POLL_INTERVAL = 0.1             # s; how soon a waiting feed reader notices another machine's commit
FEED_BATCH = 1_000              # log entries returned by one changes() call at most
TRIM_CHUNK = 100                # log keys deleted per etcd txn (etcd's default --max-txn-ops is 128)

Encoded = bytes


def _pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def _unpack(data: bytes | None) -> Any:
    return None if data is None else msgpack.unpackb(data, raw=False, strict_map_key=False)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str | None) -> bytes:
    return base64.b64decode(text) if text else b""


def _prefix_end(key: bytes) -> bytes:
    """The range end that covers every key starting with `key` (etcd's prefix convention)."""
    return key[:-1] + bytes([key[-1] + 1])


def derived(commit: int, index: int, count: int) -> int:
    """Revision of the index-th of `count` changes committed at etcd revision `commit`."""
    return commit * SUB + SUB - count + index


def last_of(commit: int) -> int:
    """Revision of the last change committed at etcd revision `commit` (0 for none)."""
    return commit * SUB + SUB - 1 if commit > 0 else 0


class EtcdTxn(Txn):
    """Reads come from the store's mirror (exact at one etcd revision) and are remembered for the
    commit's compares; reads see the transaction's own writes."""

    def __init__(self, store: "EtcdStore") -> None:
        self._store = store
        self._decoded: dict[str, dict[str, Record]] = {}
        self._written: dict[tuple[str, str], Record | None] = {}
        self.record_reads: set[tuple[str, str]] = set()
        self.kind_reads: set[str] = set()

    def _kind(self, kind: str) -> dict[str, Record]:
        if kind not in KINDS:
            raise KeyError(f"unknown record kind {kind!r}")
        table = self._decoded.get(kind)
        if table is None:
            table = {rid: _unpack(data) for rid, (_mod, data) in self._store._recs[kind].items()}
            self._decoded[kind] = table
        return table

    def get(self, kind: str, rid: str) -> Record | None:
        table = self._kind(kind)
        if (kind, rid) not in self._written:
            self.record_reads.add((kind, rid))
        return table.get(rid)

    def list(self, kind: str) -> list[Record]:
        self.kind_reads.add(kind)
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


class EtcdStore(Store):
    def __init__(self, host: str = "127.0.0.1", port: int = 2379, prefix: str = "/tenantflow",
                 keep_changes: int = DEFAULT_KEEP_CHANGES, timeout: float = 30.0) -> None:
        self.endpoint = f"{host}:{port}"
        self.prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""
        self.keep_changes = keep_changes
        self._client = etcd3gw.client(host=host, port=port, timeout=timeout)
        self._feed_client = etcd3gw.client(host=host, port=port, timeout=timeout)  # own session per thread role
        self._lock = threading.RLock()
        self._cond = threading.Condition(threading.Lock())
        self._recs: dict[str, dict[str, tuple[int, Encoded]]] = {k: {} for k in KINDS}
        self._heads: dict[str, int] = {}
        self._mirror_rev = 0      # etcd revision at which the mirror is exact (0 = not loaded)
        self._last_commit = 0     # etcd revision of our store's last commit
        self._commits = 0
        self._closed = False
        p = self.prefix.encode()
        self._rec_prefix = p + b"/r/"
        self._head_prefix = p + b"/h/"
        self._log_prefix = p + b"/log/"
        self._floor_key = p + b"/meta/floor"
        with self._lock:
            self._refresh()
        LOG.info("etcd store at %s prefix %r: revision %d", self.endpoint, self.prefix or "/", self.revision())

    # -- keys ------------------------------------------------------------------------------
    def _rec_key(self, kind: str, rid: str) -> bytes:
        return self._rec_prefix + kind.encode() + b"/" + rid.encode()

    def _head_key(self, kind: str) -> bytes:
        return self._head_prefix + kind.encode()

    def _split_rec_key(self, key: bytes) -> tuple[str, str]:
        kind, _, rid = key[len(self._rec_prefix):].decode().partition("/")
        return kind, rid

    # -- etcd requests ------------------------------------------------------------------------
    def _txn(self, compare: list[dict], success: list[dict], client: Any = None) -> TxnResponse:
        payload = {"compare": compare, "success": success, "failure": []}
        try:
            return (client or self._client).transaction(payload)
        except (etcd_exc.ConnectionFailedError, etcd_exc.ConnectionTimeoutError) as exc:
            raise ConnectionError(f"cannot reach etcd at {self.endpoint}: "
                                  f"{exc.detail_text or type(exc).__name__}") from exc
        except etcd_exc.Etcd3Exception as exc:
            detail = exc.detail_text or type(exc).__name__
            if "too many operations" in detail or "request is too large" in detail:
                raise RuntimeError(
                    f"etcd at {self.endpoint} refused a transaction of {len(success)} operations: {detail} "
                    "(start etcd with larger --max-txn-ops / --max-request-bytes for bulk requests)") from exc
            raise

    def _range(self, key: bytes, end: bytes | None = None, **opts: Any) -> dict:
        req: dict[str, Any] = {"key": _b64(key)}
        if end is not None:
            req["range_end"] = _b64(end)
        req.update(opts)
        return {"request_range": req}

    def _log_range(self, min_mod: int, **opts: Any) -> dict:
        opts.setdefault("sort_order", "ASCEND")
        opts.setdefault("sort_target", "MOD")
        if min_mod > 0:
            opts["min_mod_revision"] = min_mod
        return self._range(self._log_prefix, _prefix_end(self._log_prefix), **opts)

    @staticmethod
    def _kvs(response: dict) -> list[dict]:
        return response.get("response_range", {}).get("kvs", [])

    def _floor_of(self, response: dict) -> int:
        kvs = self._kvs(response)
        return int(_unpack(_unb64(kvs[0].get("value")))) if kvs else 0

    # -- mirror --------------------------------------------------------------------------------
    def _refresh(self) -> None:
        """Bring the mirror up to etcd's current revision with one request. Caller holds the lock."""
        if self._mirror_rev == 0:
            self._reload()
            return
        resp = self._txn([], [self._log_range(self._mirror_rev + 1), self._range(self._floor_key)])
        responses = resp.get("responses", [])
        if self._floor_of(responses[1]) > self._mirror_rev:
            LOG.info("etcd store mirror at %d is older than the log floor; reloading", self._mirror_rev)
            self._reload()
            return
        self._apply_log(self._kvs(responses[0]))
        self._mirror_rev = max(self._mirror_rev, int(resp["header"]["revision"]))

    def _reload(self) -> None:
        resp = self._txn([], [
            self._range(self._rec_prefix, _prefix_end(self._rec_prefix)),
            self._range(self._head_prefix, _prefix_end(self._head_prefix)),
            self._log_range(0, sort_order="DESCEND", keys_only=True, limit=1),
            self._range(self._floor_key)])
        rec_r, head_r, last_r, floor_r = resp.get("responses", [])
        recs: dict[str, dict[str, tuple[int, Encoded]]] = {k: {} for k in KINDS}
        for kv in self._kvs(rec_r):
            kind, rid = self._split_rec_key(_unb64(kv["key"]))
            if kind in recs:
                recs[kind][rid] = (int(kv["mod_revision"]), _unb64(kv.get("value")))
        heads = {_unb64(kv["key"])[len(self._head_prefix):].decode(): int(kv["mod_revision"])
                 for kv in self._kvs(head_r)}
        last = [int(kv["mod_revision"]) for kv in self._kvs(last_r)]
        self._recs, self._heads = recs, heads
        self._last_commit = max(last + [self._floor_of(floor_r)])
        self._mirror_rev = int(resp["header"]["revision"])

    def _apply_log(self, kvs: list[dict]) -> None:
        for kv in kvs:
            commit = int(kv["mod_revision"])
            if commit <= self._mirror_rev:
                continue
            for kind, rid, _old, new in _unpack(_unb64(kv.get("value"))):
                self._apply_one(commit, kind, rid, new)

    def _apply_one(self, commit: int, kind: str, rid: str, new: Encoded | None) -> None:
        table = self._recs.setdefault(kind, {})
        if new is None:
            table.pop(rid, None)
        else:
            table[rid] = (commit, new)
        self._heads[kind] = commit
        self._last_commit = max(self._last_commit, commit)

    # -- Store API ---------------------------------------------------------------------------------
    def revision(self) -> int:
        with self._lock:
            self._refresh()
            return last_of(self._last_commit)

    def snapshot(self) -> tuple[int, dict[str, dict[str, Record]]]:
        with self._lock:
            self._refresh()
            encoded = {k: {rid: data for rid, (_m, data) in v.items()} for k, v in self._recs.items()}
            rev = last_of(self._last_commit)
        return rev, {k: {rid: _unpack(d) for rid, d in v.items()} for k, v in encoded.items()}

    def get(self, kind: str, rid: str) -> Record | None:
        with self._lock:
            self._refresh()
            entry = self._recs[kind].get(rid)
        return None if entry is None else _unpack(entry[1])

    def list(self, kind: str) -> list[Record]:
        with self._lock:
            self._refresh()
            values = [data for _m, data in self._recs[kind].values()]
        return [_unpack(d) for d in values]

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Txn]:
        """Raises topology.store.Conflict at commit when another writer changed what was read."""
        with self._lock:
            self._refresh()
            txn = EtcdTxn(self)
            yield txn
            committed = self._commit(txn)
        if committed:
            with self._cond:
                self._cond.notify_all()
            self._maybe_trim()

    def _commit(self, txn: EtcdTxn) -> bool:
        """One etcd txn: compares on everything read or written, then records, heads and log entry."""
        entries: list[tuple[str, str, Encoded | None, Encoded | None]] = []
        for (kind, rid), record in txn._written.items():
            current = self._recs[kind].get(rid)
            old = current[1] if current else None
            new = None if record is None else _pack(record)
            if old != new:
                entries.append((kind, rid, old, new))
        if not entries:
            return False
        mods: dict[bytes, int] = {}
        for kind, rid in txn.record_reads | {(k, r) for k, r, _o, _n in entries}:
            current = self._recs[kind].get(rid)
            mods[self._rec_key(kind, rid)] = current[0] if current else 0
        for kind in txn.kind_reads:
            mods[self._head_key(kind)] = self._heads.get(kind, 0)
        compare = [{"key": _b64(k), "result": "EQUAL", "target": "MOD", "mod_revision": m}
                   for k, m in mods.items()]
        # First op: log entries committed since the mirror's revision (seen before our own writes).
        success = [self._log_range(self._mirror_rev + 1)]
        for kind, rid, _old, new in entries:
            key = _b64(self._rec_key(kind, rid))
            success.append({"request_delete_range": {"key": key}} if new is None
                           else {"request_put": {"key": key, "value": _b64(new)}})
        log_key = self._log_prefix + uuid.uuid4().hex.encode()
        for kind in sorted({e[0] for e in entries}):
            success.append({"request_put": {"key": _b64(self._head_key(kind)), "value": _b64(log_key)}})
        success.append({"request_put": {"key": _b64(log_key), "value": _b64(_pack(entries))}})
        success.append(self._range(self._floor_key))
        resp = self._txn(compare, success)
        if not resp.get("succeeded"):
            LOG.debug("etcd txn conflict on %d compared keys; the caller retries", len(compare))
            raise Conflict("the records this transaction read changed before it committed")
        commit = int(resp["header"]["revision"])
        if self._floor_of(resp["responses"][-1]) > self._mirror_rev:
            # entries committed meanwhile were already trimmed (absurdly slow body): reload on next read
            self._mirror_rev = 0
        else:
            self._apply_log(self._kvs(resp["responses"][0]))
            for kind, rid, _old, new in entries:
                self._apply_one(commit, kind, rid, new)
            self._mirror_rev = commit
        self._commits += 1
        return True

    # -- log trimming -----------------------------------------------------------------------------
    def _maybe_trim(self) -> None:
        """Every ~1% of keep_changes commits, cut the log back to keep_changes entries."""
        every = max(1, self.keep_changes // 100)
        if self._commits % every:
            return
        try:
            with self._lock:
                self.trim()
        except (etcd_exc.Etcd3Exception, ConnectionError):
            LOG.exception("etcd store: trimming the change log failed; will retry later")

    def trim(self) -> None:
        """Delete the oldest log entries beyond keep_changes; raise the floor in the same txn."""
        for _ in range(1000):  # bounded: TRIM_CHUNK entries per round
            resp = self._txn([], [self._log_range(0, count_only=True), self._range(self._floor_key)])
            count_r, floor_r = resp["responses"]
            excess = int(count_r.get("response_range", {}).get("count", 0)) - self.keep_changes
            if excess <= 0:
                return
            floor_kvs = self._kvs(floor_r)
            floor_mod = int(floor_kvs[0]["mod_revision"]) if floor_kvs else 0
            oldest = self._kvs(self._txn([], [self._log_range(0, keys_only=True,
                                                                limit=min(excess, TRIM_CHUNK))])["responses"][0])
            if not oldest:
                return
            new_floor = max(int(kv["mod_revision"]) for kv in oldest)
            ops = [{"request_delete_range": {"key": kv["key"]}} for kv in oldest]
            ops.append({"request_put": {"key": _b64(self._floor_key), "value": _b64(_pack(new_floor))}})
            done = self._txn([{"key": _b64(self._floor_key), "result": "EQUAL", "target": "MOD",
                               "mod_revision": floor_mod}], ops)
            if not done.get("succeeded"):
                return  # another machine is trimming right now
            LOG.debug("etcd store: trimmed %d log entries up to revision %d", len(oldest), new_floor)

    # -- change feed --------------------------------------------------------------------------------
    def changes(self, after: int, timeout: float | None = None) -> builtins.list[Change]:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            found = self._read_changes(after)
            if found:
                return found
            if deadline is None:
                return []
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._closed:
                return []
            with self._cond:
                self._cond.wait(min(remaining, POLL_INTERVAL))

    def _read_changes(self, after: int) -> builtins.list[Change]:
        commit_after, index = divmod(after, SUB)
        start = commit_after + 1 if index == SUB - 1 else commit_after
        resp = self._txn([], [self._log_range(max(start, 1), limit=FEED_BATCH), self._range(self._floor_key)],
                         client=self._feed_client)
        log_r, floor_r = resp["responses"]
        floor = self._floor_of(floor_r)
        if floor and after < last_of(floor):
            raise Compacted(f"changes after {after} were compacted (kept from {last_of(floor)})")
        out: list[Change] = []
        for kv in self._kvs(log_r):
            commit = int(kv["mod_revision"])
            entries = _unpack(_unb64(kv.get("value")))
            for i, (kind, rid, old, new) in enumerate(entries):
                rev = derived(commit, i, len(entries))
                if rev > after:
                    out.append(Change(rev, kind, rid, _unpack(old), _unpack(new)))
        return out

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            with self._cond:
                self._cond.notify_all()
            for client in (self._client, self._feed_client):
                client.session.close()
