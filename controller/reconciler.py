"""Desired vs installed flows of one datapath, converged with minimal diffs in ONF bundles.

Why a reconciler: apps state *what* each owner needs; nothing ever pairs an install with an
uninstall. The reconciler keeps, per datapath, what it believes is installed (key → body) and
what every owner wants, and sends only the difference: ADD for new or changed flows (ADD
overwrites body and cookie in place), DELETE_STRICT for keys nobody wants — in one ordered,
atomic bundle, confirmed by a barrier. On (re)connect it reads the switch's flows first and
diffs against the full desired state, so an unchanged topology costs zero flow-mods.

Waiting uses threading primitives on purpose: os-ken's hub.Event ignores its timeout on the
native hub, and under OSKEN_HUB_TYPE=eventlet `tenantflow serve` monkey-patches threading so
these become green. Transport is injected (send bytes + replies fed back through on_* methods), so unit tests
drive it with a fake switch and integration tests with a real os-ken Datapath.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

from controller import metrics, wire
from flows.flow import Flow
from flows.tables import OWNER_SHIFT, Owner, owner_label

LOG = logging.getLogger(__name__)

OURS = frozenset(int(o) for o in Owner if o != Owner.LEARNED)  # cookie kinds we may delete


class XidSource:
    """Our xids live in the top half of the space; os-ken's counter is moved to the bottom half
    on connect, so replies to our messages never match os-ken's own requests."""

    def __init__(self) -> None:
        self._next = 0x80000000
        self._lock = threading.Lock()

    def take(self, n: int = 1) -> int:
        with self._lock:
            if self._next + n > 0xFFFFFFFF:
                self._next = 0x80000000
            first = self._next
            self._next += n
            return first


@dataclass
class Stats:
    flow_mods: int = 0        # ADD + DELETE_STRICT sent, ever
    bundles: int = 0
    errors: int = 0           # OpenFlow errors received for our messages
    resyncs: int = 0
    flush_failures: int = 0   # flushes that raised (timeout, disconnect, encoder): each ends in a resync
    last_flush_mods: int = 0
    last_flush_seconds: float = 0.0
    biggest_flush_mods: int = 0      # the largest bundle so far and how long it took (bench)
    biggest_flush_seconds: float = 0.0

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class _Wait:
    """One outstanding request: a barrier (or multipart) xid and what came back for it."""
    event: threading.Event
    errors: list = field(default_factory=list)
    chunks: list = field(default_factory=list)


class ReconcileError(RuntimeError):
    """The switch's state is uncertain after this: the caller resyncs the datapath."""


class FlowEncodeError(ValueError):
    """An owner's flow cannot be encoded; nothing of that owner's new flows was taken."""

    def __init__(self, owner: int, flow: Flow, cause: Exception) -> None:
        super().__init__(f"owner {owner_label(owner)}: cannot encode {flow!r}: {type(cause).__name__}: {cause}")
        self.owner = owner
        self.flow = flow


class Reconciler:
    def __init__(self, name: str, encoder: wire.Encoder | None = None, *, timeout: float = 30.0,
                 xids: XidSource | None = None) -> None:
        self.name = name
        self.encoder = encoder or wire.Encoder()
        self.timeout = timeout
        self.xids = xids or XidSource()
        self.stats = Stats()
        self._send: Callable[[bytes], bool] | None = None
        self._lock = threading.RLock()  # serialises flushes; replies arrive on another thread
        self._waits: dict[int, _Wait] = {}
        self._xid_ops: list[tuple[int, int, list]] = []  # (first xid, last xid, ops) of the bundle in flight
        self._ctl_xids: tuple[int, ...] = ()  # its open and commit xids (their errors fail the bundle)
        self.installed: dict[tuple, tuple] = {}
        self.installed_known = False
        self._desired: dict[int, dict[tuple, Flow]] = {}
        self._owner_of: dict[tuple, int] = {}
        self._want: dict[tuple, tuple[Flow, tuple]] = {}  # key → (winning flow, its encoded body)
        self._conflicts: dict[tuple, set[int]] = {}
        self._dirty: set[tuple] = set()
        self._desired_new: dict | None = None
        self._rejected: dict[tuple, tuple] = {}  # key → body the switch refused (not resent until it changes)

    # ------------------------------------------------------------------ desired state
    def set_owner(self, owner: int, flows: Iterable[Flow]) -> None:
        """Replace everything `owner` wants on this datapath (empty = owner gone).

        All-or-nothing: every changed flow is encoded before any state changes, so a flow that
        cannot be encoded raises FlowEncodeError and leaves this owner (and every other) as it was."""
        new = {f.key: f for f in flows}
        with self._lock:
            old = self._desired.get(owner, {})
            if new == old:
                return
            body = self.encoder.body
            bodies: dict[tuple, tuple] = {}
            for key, f in new.items():
                if old.get(key) != f:
                    try:
                        bodies[key] = body(f)
                    except Exception as exc:  # noqa: BLE001 — any encoder failure is this owner's
                        raise FlowEncodeError(owner, f, exc) from exc
            for key in old.keys() - new.keys():
                self._release(key, owner)
            self._desired_new = new
            try:
                for key, b in bodies.items():
                    self._claim(key, owner, b)
                    self._dirty.add(key)
            finally:
                self._desired_new = None
            if new:
                self._desired[owner] = new
            else:
                self._desired.pop(owner, None)

    def rejected_count(self) -> int:
        """Flows the switch refused and we still want: the datapath is not what we declared."""
        return sum(1 for key, body in self._rejected.items() if (w := self._want.get(key)) and w[1] == body)

    def owners(self) -> set[int]:
        return set(self._desired)

    def desired_count(self) -> int:
        """Number of flows wanted on the switch (cheap: no sorting, for stats polling)."""
        return len(self._want)

    def desired_flow(self, key: tuple) -> Flow | None:
        w = self._want.get(key)
        return None if w is None else w[0]

    def desired_flows(self, owner: int | None = None) -> list[Flow]:
        with self._lock:
            if owner is not None:
                return sorted(self._desired.get(owner, {}).values(), key=_sort_key)
            return sorted((fb[0] for fb in self._want.values()), key=_sort_key)

    def _claim(self, key: tuple, owner: int, body: tuple) -> None:
        cur = self._owner_of.get(key)
        if cur is None or cur == owner:
            self._owner_of[key] = owner
            f = self._desired_new[key] if self._desired_new is not None else self._desired[owner][key]
            self._want[key] = (f, body)
            return
        claims = self._conflicts.setdefault(key, {cur})
        claims.add(owner)
        winner = min(claims)
        LOG.error("compile bug on %s: flow key table=%s priority=%s match=%s claimed by owners %s; keeping %s",
                  self.name, key[0], key[1], key[2], sorted(owner_label(o) for o in claims),
                  owner_label(winner))
        self._owner_of[key] = winner
        if winner == owner:
            assert self._desired_new is not None  # only set_owner claims
            self._want[key] = (self._desired_new[key], body)
        else:
            f = self._desired[winner][key]
            self._want[key] = (f, self.encoder.body(f))  # encoded fine when the winner claimed it

    def _release(self, key: tuple, owner: int) -> None:
        self._dirty.add(key)
        claims = self._conflicts.get(key)
        if claims:
            claims.discard(owner)
            if len(claims) <= 1:
                self._conflicts.pop(key, None)
            if claims:
                winner = self._owner_of[key] = min(claims)
                f = self._desired[winner][key]
                self._want[key] = (f, self.encoder.body(f))
                return
        if self._owner_of.get(key) == owner:
            del self._owner_of[key]
            del self._want[key]

    # ------------------------------------------------------------------ transport
    def attach(self, send: Callable[[bytes], bool]) -> None:
        """A (re)connected datapath: installed state is unknown until `resync`."""
        with self._lock:
            self._send = send
            self.installed_known = False

    def detach(self, send: Callable[[bytes], bool] | None = None) -> None:
        """Forget the transport (only if it is still `send`, when given: a reconnect may
        already have attached a new one) and wake every waiter."""
        if send is not None and self._send != send:
            return
        self._send = None
        self.installed_known = False
        for w in list(self._waits.values()):
            w.event.set()

    @property
    def connected(self) -> bool:
        return self._send is not None

    # replies, called from the datapath's receive thread
    def on_error(self, err: wire.ErrorMsg) -> bool:
        """Route an OFPT_ERROR to its flow/owner; True if the xid was ours."""
        for first, last, ops in self._xid_ops:
            if first <= err.xid <= last:
                self.stats.errors += 1
                idx = err.xid - first
                if idx < len(ops):
                    op, key, f, _body = ops[idx]
                    label = owner_label(f.cookie) if f is not None else "-"
                    text = f.ofctl() if f is not None else f"table={key[0]},priority={key[1]} {key[2]}"
                    LOG.error("switch %s rejected %s of flow owned by %s: %s: %s", self.name,
                              "add" if op == wire.OFPFC_ADD else "delete", label, err.describe(), text)
                for w in self._waits.values():
                    w.errors.append(err)
                return True
        if err.xid in self._ctl_xids:  # the bundle's open or commit failed: every waiter sees it
            self.stats.errors += 1
            LOG.error("switch %s failed bundle control message xid %#x: %s", self.name, err.xid, err.describe())
            for w in self._waits.values():
                w.errors.append(err)
            return True
        waiter = self._waits.get(err.xid)
        if waiter is not None:
            self.stats.errors += 1
            waiter.errors.append(err)
            return True
        return False

    def on_barrier(self, xid: int) -> bool:
        w = self._waits.get(xid)
        if w is None:
            return False
        w.event.set()
        return True

    def on_flow_stats(self, xid: int, body: bytes, more: bool) -> bool:
        w = self._waits.get(xid)
        if w is None:
            return False
        w.chunks.append(body)
        if not more:
            w.event.set()
        return True

    def _request(self, buf: bytes, wait_xid: int, ops_range=None) -> _Wait:
        send = self._send
        if send is None:
            raise ReconcileError(f"{self.name}: not connected")
        w = _Wait(threading.Event())  # green under eventlet: serve monkey-patches threading
        self._waits[wait_xid] = w
        if ops_range is not None:
            self._xid_ops = [ops_range]
        try:
            if not send(buf):
                raise ReconcileError(f"{self.name}: send failed (datapath closing)")
            if not w.event.wait(timeout=self.timeout):
                raise ReconcileError(f"{self.name}: no reply within {self.timeout}s")
            if self._send is None:
                raise ReconcileError(f"{self.name}: disconnected while waiting")
            return w
        finally:
            self._waits.pop(wait_xid, None)

    # ------------------------------------------------------------------ convergence
    def resync(self) -> int:
        """Read the switch's flows and converge with one diff. Returns flow-mods sent."""
        with self._lock:
            xid = self.xids.take()
            w = self._request(wire.flow_stats_request(xid), xid)
            installed = {}
            foreign = 0
            for chunk in w.chunks:
                for fl in wire.parse_flow_stats(chunk):
                    if (fl.body[0] >> OWNER_SHIFT) in OURS:
                        installed[fl.key] = fl.body
                    else:
                        foreign += 1
            LOG.info("resync %s: switch has %d of our flows (%d learned/foreign left alone), we want %d",
                     self.name, len(installed), foreign, len(self._owner_of))
            self.installed = installed
            self.installed_known = True
            self._rejected.clear()
            self._dirty = set(installed) | set(self._owner_of)
            self.stats.resyncs += 1
            return self.flush()

    def pending(self) -> list[tuple[int, tuple, Flow | None, tuple | None]]:
        """The diff flush() would send: (command, key, desired flow or None, its body or None)."""
        ops: list[tuple[int, tuple, Flow | None, tuple | None]] = []
        want, installed, rejected = self._want.get, self.installed.get, self._rejected
        add, delete = wire.OFPFC_ADD, wire.OFPFC_DELETE_STRICT
        for key in self._dirty:
            w = want(key)
            have = installed(key)
            if w is not None:
                body = w[1]
                if have != body and not (rejected and rejected.get(key) == body):
                    ops.append((add, key, w[0], body))
            elif have is not None:
                ops.append((delete, key, None, None))
        # deletes first: a replaced flow never coexists with its successor at the same key anyway,
        # and freeing keys early keeps the switch's table smaller during a big change.
        ops.sort(key=lambda op: (op[0] != delete, op[1][0], -op[1][1]))
        return ops

    def flush(self) -> int:
        """Send the minimal diff for everything marked dirty. Returns flow-mods sent."""
        with self._lock:
            if not self.installed_known or self._send is None:
                return 0  # resync on connect sends everything needed
            ops = self.pending()
            if not ops:
                self._dirty.clear()
                self.stats.last_flush_mods = 0
                return 0
            t0 = time.monotonic()
            try:
                sent = self._send_bundle(ops)
            except Exception as exc:
                # Fail closed: nothing is forgotten. What the switch holds is uncertain (the bundle
                # may or may not have committed), so the next convergence reads it back (resync).
                self.installed_known = False
                self.stats.flush_failures += 1
                if isinstance(exc, ReconcileError):
                    raise
                raise ReconcileError(f"{self.name}: flush of {len(ops)} flow-mods failed: "
                                     f"{type(exc).__name__}: {exc}") from exc
            finally:
                self._xid_ops = []
            self._dirty.clear()
            st = self.stats
            st.last_flush_seconds = time.monotonic() - t0
            st.last_flush_mods = sent
            if sent >= st.biggest_flush_mods:
                st.biggest_flush_mods, st.biggest_flush_seconds = sent, st.last_flush_seconds
            metrics.observe_flush(self.name, st.last_flush_seconds)
            LOG.info("flushed %d flow-mods to %s in %.3fs", sent, self.name, st.last_flush_seconds)
            return sent

    def _send_bundle(self, ops: list) -> int:
        enc = self.encoder
        n = len(ops)
        base = self.xids.take(n + 3)
        bundle_id = base & 0x7FFFFFFF
        open_xid, first, commit_xid, barrier_xid = base, base + 1, base + 1 + n, base + 2 + n
        parts = [wire.bundle_ctrl(bundle_id, wire.BUNDLE_OPEN_REQUEST, open_xid)]
        add = wire.bundle_add
        xid = first
        add_cmd, flow_mod, delete_strict = wire.OFPFC_ADD, enc.flow_mod_body, enc.delete_strict
        append = parts.append
        for cmd, key, f, body in ops:
            inner = flow_mod(f, body, xid) if cmd == add_cmd else delete_strict(key, xid)
            append(add(bundle_id, inner, xid))
            xid += 1
        parts.append(wire.bundle_ctrl(bundle_id, wire.BUNDLE_COMMIT_REQUEST, commit_xid))
        parts.append(wire.barrier(barrier_xid))
        self.stats.bundles += 1
        self.stats.flow_mods += n
        self._ctl_xids = (open_xid, commit_xid)
        try:
            w = self._request(b"".join(parts), barrier_xid, (first, first + n - 1, ops))
        finally:
            self._ctl_xids = ()
        failed_idx = {e.xid - first for e in w.errors if first <= e.xid < first + n}
        commit_failed = any(e.xid in (open_xid, commit_xid) for e in w.errors)
        if commit_failed:
            LOG.error("bundle of %d flow-mods to %s failed to commit (%d flow errors)", n, self.name,
                      len(failed_idx))
            retry = [op for i, op in enumerate(ops) if i not in failed_idx]
            self._mark_rejected(ops, failed_idx)
            if failed_idx and retry:
                self._xid_ops = []
                return n + self._send_bundle(retry)
            # nothing identifiable: the switch state is uncertain; the caller resyncs
            raise ReconcileError(f"{self.name}: bundle of {n} flow-mods failed to commit")
        installed, rejected = self.installed, self._rejected
        for i, (cmd, key, _f, body) in enumerate(ops):
            if failed_idx and i in failed_idx:
                continue
            if cmd == wire.OFPFC_ADD:
                installed[key] = body
                if rejected:
                    rejected.pop(key, None)
            else:
                installed.pop(key, None)
        self._mark_rejected(ops, failed_idx)
        return n

    def _mark_rejected(self, ops: list, failed_idx: set[int]) -> None:
        for i in failed_idx:
            cmd, key, f, body = ops[i]
            if f is not None:
                self._rejected[key] = body

    # ------------------------------------------------------------------ inspection
    def diff(self) -> dict[str, list]:
        """Desired vs installed (as last read/confirmed): missing, extra, changed keys."""
        with self._lock:
            missing, changed, extra = [], [], []
            for key, (f, body) in self._want.items():
                have = self.installed.get(key)
                if have is None:
                    missing.append(f)
                elif have != body:
                    changed.append(f)
            for key, body in self.installed.items():
                if key not in self._want:
                    extra.append((key, body))
            return {"missing": sorted(missing, key=_sort_key), "changed": sorted(changed, key=_sort_key),
                    "extra": sorted(extra, key=lambda kb: (kb[0][0], -kb[0][1], kb[0][2]))}

    def read_installed(self) -> dict[tuple, tuple]:
        """Fresh flow-stats read without converging (for `flows --diff`)."""
        with self._lock:
            xid = self.xids.take()
            w = self._request(wire.flow_stats_request(xid), xid)
            out = {}
            for chunk in w.chunks:
                for fl in wire.parse_flow_stats(chunk):
                    out[fl.key] = fl.body
            return out


def _sort_key(f: Flow):
    return (f.table, -f.priority, f.match)
