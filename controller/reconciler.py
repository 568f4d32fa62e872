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
import os
import threading
import time
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Callable, Iterable, Iterator

from controller import metrics, wire
from flows.flow import Flow
from flows.tables import MAX_METER_ID, OWNER_SHIFT, Owner, owner_label

LOG = logging.getLogger(__name__)
SEND_CHUNK = 2000  # flow-mods per write of a bundle: the switch parses one while we encode the next
# First sync onto a switch holding none of our flows: bundles of at most this many flow-mods, each
# confirmed before the next (0: one bundle). Atomicity buys nothing there (all adds, nothing to
# replace), and one bundle of 160k flow-mods keeps OVS from answering anything until it commits.
# Env override for same-run comparisons (bench/bench_scale.py --env).
FIRST_SYNC_BUNDLE = int(os.environ.get("TENANTFLOW_FIRST_SYNC_BUNDLE", "0"))

OURS = frozenset(int(o) for o in Owner if o != Owner.LEARNED)  # cookie kinds we may delete


# A pending op (Reconciler.pending): (send order, desired flow, key) for an ADD (its flow-mod
# bytes: those set_owner encoded, or made when sent; see _enc_buf), (order, None, key) for a
# DELETE_STRICT. Nothing else per op: a first sync makes 170,000 of them at 10,000 ports.
Op = tuple[int, "Flow | None", tuple]
_ADD_ORDER = 1 << 24  # adds after deletes (see pending); then table << 16, then 0xFFFF - priority
_ORDER = itemgetter(0)


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
    meter_mods: int = 0       # meter ADD/MODIFY/DELETE sent, ever (MeterTable)
    last_resync_by_bytes: int = 0  # flows the last resync found by their encoded bytes (see prefetch)

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
        self.first_sync_bundle = FIRST_SYNC_BUNDLE
        self.xids = xids or XidSource()
        self.stats = Stats()
        self._send: Callable[[bytes], bool] | None = None
        self._patience: Callable[[bool], None] | None = None  # keep-alive leniency while waiting
        self._lock = threading.RLock()  # serialises flushes; replies arrive on another thread
        self._waits: dict[int, _Wait] = {}
        self._xid_ops: list[tuple[int, int, list]] = []  # (first xid, last xid, ops) of the bundle in flight
        self._ctl_xids: tuple[int, ...] = ()  # its open and commit xids (their errors fail the bundle)
        # Memory (issue 14: ≈ 170,000 flows at 10,000 ports): each flow is held once, as the Flow the
        # compile made, and its key tuple; everything else refers to those objects. Bodies and wire
        # bytes are derived from the Flow when needed (the encoder caches instruction bytes per
        # action list), not kept per flow.
        # key → what the switch holds: the desired Flow object it was installed as (its body is
        # `encoder.body(flow)`: sent and confirmed, or read back equal) or, otherwise, the body
        # read back (cookie, idle_timeout, hard_timeout, instruction bytes); see `_body`.
        self.installed: dict[tuple, tuple | Flow] = {}
        self.installed_known = False
        self._desired: dict[int, tuple[Flow, ...]] = {}   # owner → its flows (one per key)
        # key → the winning owner's flow there. Its body is `encoder.body(f)`: the encoder's cache by
        # action list, not a dict of instruction bytes per key here (≈ 5 MB at 170,000 flows; a
        # lookup by the actions costs about what one by the key did).
        self._want: dict[tuple, Flow] = {}
        # key → owner, only where the winning owner is not the flow's cookie (the compiler checks
        # that every flow carries its owner's cookie, so this is normally empty); see _owner
        self._odd_owner: dict[tuple, int] = {}
        self._conflicts: dict[tuple, dict[int, Flow]] = {}  # contested key → every claimant's flow
        self._rejected: dict[tuple, tuple] = {}  # key → body the switch refused (not resent until it changes)
        # The keys the next flush diffs, each → where its flow-mod bytes (after the header) are in
        # `_enc_buf`, as offset << 16 | length, or 0: none held. set_owner encodes them while the
        # switch's state is known, for the flush that follows, which drops both whole. Not a bytes
        # object per flow: 170,000 of them, freed after a first sync, stayed in the allocator's
        # half-used arenas (≈ 40 MB of RSS at 10,000 ports). Not a set of dirty keys beside a dict
        # of places either: a compile marks every key dirty and the set cost 8 MB more at 10,000
        # ports. Bytes are for `_want[key]` as it is now (_set_winner and _release zero the place).
        self._dirty: dict[tuple, int] = {}
        self._enc_buf = bytearray()
        self.meters = MeterTable(name)  # meters declared by the flows that use them (flows/qos.py)
        # A flow-stats read sent before the resync that uses it (see prefetch): (xid, its wait,
        # the transport it went out on).
        self._prefetched: tuple[int, _Wait, Callable[[bytes], bool]] | None = None
        # set_owner keeps encoded bytes although the switch is not attached yet: a compile before
        # the switch connects (controller/portcache.py), for the resync that follows (see prefetch)
        self.keep_encoded = False

    # ------------------------------------------------------------------ desired state
    def set_owner(self, owner: int, flows: Iterable[Flow]) -> None:
        """Replace everything `owner` wants on this datapath (empty = owner gone).

        All-or-nothing: every changed flow is encoded before any state changes, so a flow that
        cannot be encoded raises FlowEncodeError and leaves this owner (and every other) as it was.
        A flow equal to the one already held for its key keeps the held object (one copy of each
        flow: `_want` and `installed` name it)."""
        new = {f.key: f for f in flows}
        with self._lock:
            held = self._desired.get(owner)
            old = {f.key: f for f in held} if held else {}
            if new == old:
                return
            encode = self.encoder.encoded_with_meters
            changed: list[tuple[tuple, Flow, bytes]] = []
            metered: dict[tuple, tuple] = {}  # changed key → its meter-declaring actions
            for key, f in new.items():
                if old:
                    o = old.get(key)
                    if o is not None and o == f:
                        new[key] = o
                        continue
                try:
                    b, ms = encode(f)
                except Exception as exc:  # noqa: BLE001 — any encoder failure is this owner's
                    raise FlowEncodeError(owner, f, exc) from exc
                changed.append((key, f, b))
                if ms:
                    metered[key] = ms
            for key in old.keys() - new.keys():
                self._release(key, owner)
            # a flush follows and sends these bytes (else they are encoded again then), or a resync
            # whose read is already on its way and finds its flows by them (see prefetch)
            keep = self.installed_known or self._prefetched is not None or self.keep_encoded
            buf, dirty, want = self._enc_buf, self._dirty, self._want
            odd, conflicts = self._odd_owner, self._conflicts
            for key, f, b in changed:
                cur = want.get(key)
                if f.cookie == owner and (cur is None or (cur.cookie == owner and not (odd and key in odd))) \
                        and not (conflicts and key in conflicts):
                    # uncontested, nobody else's (a full compile: every key): what _claim does then,
                    # inline — hot, once per flow
                    want[key] = f
                    if keep:
                        dirty[key] = len(buf) << 16 | len(b)
                        buf += b
                    else:
                        dirty[key] = 0
                    continue
                self._claim(key, owner, f)
                if keep and want[key] is f:
                    dirty[key] = len(buf) << 16 | len(b)
                    buf += b
                else:
                    dirty.setdefault(key, 0)  # lost to another claim: the winner's bytes stay
            self.meters.set_owner(owner, new, (c[0] for c in changed), metered)
            if new:
                self._desired[owner] = tuple(new.values())
            else:
                self._desired.pop(owner, None)

    # ------------------------------------------------------------------ checkpoint
    def export_desired(self) -> dict:
        """The desired state as plain data for a restarted controller (controller/checkpoint.py),
        with every wanted flow's flow-mod bytes, so its first resync finds the switch's entries by
        them as after a compile (see prefetch)."""
        with self._lock:
            enc = self.encoder
            buf = bytearray()
            places: dict[tuple, int] = {}
            for key, f in self._want.items():
                b = enc.encoded(f, enc.body(f))
                places[key] = len(buf) << 16 | len(b)
                buf += b
            return {"desired": self._desired, "want": self._want, "odd_owner": self._odd_owner,
                    "conflicts": self._conflicts, "meter_flows": self.meters._by_flow,
                    "meter_claims": self.meters._claims, "places": places, "bytes": buf}

    def restore_desired(self, state: dict) -> None:
        """Take `export_desired`'s state as if every owner had just been compiled here: all of it
        dirty, nothing known of the switch (the next resync reads it). Only for a reconciler that
        holds nothing yet (a restart)."""
        with self._lock:
            if self._desired or self.installed_known:
                raise RuntimeError(f"{self.name}: restore into a reconciler that already holds state")
            self._desired, self._want = state["desired"], state["want"]
            self._odd_owner, self._conflicts = state["odd_owner"], state["conflicts"]
            self.meters._by_flow, self.meters._claims = state["meter_flows"], state["meter_claims"]
            self.meters.dirty = set(self.meters._claims)
            self._dirty, self._enc_buf = state["places"], state["bytes"]
            self.keep_encoded = True

    def _body(self, have: tuple | Flow) -> tuple:
        """The body of an `installed` value."""
        return self.encoder.body(have) if isinstance(have, Flow) else have

    def _owner(self, key: tuple) -> int | None:
        """The owner whose flow `_want[key]` is (None: nobody wants the key)."""
        f = self._want.get(key)
        if f is None:
            return None
        odd = self._odd_owner
        return odd.get(key, f.cookie) if odd else f.cookie

    def _set_winner(self, key: tuple, owner: int, f: Flow) -> None:
        """`f` is now wanted at `key`: dirty, and no bytes held for it yet."""
        self._want[key] = f
        self._dirty[key] = 0
        if owner != f.cookie:
            self._odd_owner[key] = owner
        elif self._odd_owner:
            self._odd_owner.pop(key, None)

    def rejected_count(self) -> int:
        """Flows (and meters) the switch refused and we still want: the datapath is not what we declared."""
        return sum(1 for key, b in list(self._rejected.items())
                   if (f := self._want.get(key)) is not None and self.encoder.body(f) == b) \
            + (self.meters.rejected_count() if self.meters.rejected else 0)

    def owners(self) -> set[int]:
        return set(self._desired)

    def desired_count(self) -> int:
        """Number of flows wanted on the switch (cheap: no sorting, for stats polling)."""
        return len(self._want)

    def desired_flow(self, key: tuple) -> Flow | None:
        return self._want.get(key)

    def desired_flows(self, owner: int | None = None) -> list[Flow]:
        with self._lock:
            if owner is not None:
                return sorted(self._desired.get(owner, ()), key=_sort_key)
            return sorted(self._want.values(), key=_sort_key)

    def _claim(self, key: tuple, owner: int, f: Flow) -> None:
        """`f`: `owner`'s new (already encoded) flow at `key`."""
        cur = self._owner(key)
        claims = self._conflicts.get(key)
        if claims is not None:
            claims[owner] = f
        if cur is None or cur == owner:
            self._set_winner(key, owner, f)
            return
        if claims is None:
            claims = self._conflicts[key] = {cur: self._want[key], owner: f}
        winner = min(claims)
        LOG.error("compile bug on %s: flow key table=%s priority=%s match=%s claimed by owners %s; keeping %s",
                  self.name, key[0], key[1], key[2], sorted(owner_label(o) for o in claims),
                  owner_label(winner))
        if winner == owner:
            self._set_winner(key, owner, f)
        elif winner != cur:  # cannot happen (the winner is the smallest claim): kept for clarity
            self._set_winner(key, winner, claims[winner])

    def _release(self, key: tuple, owner: int) -> None:
        self._dirty.setdefault(key, 0)
        claims = self._conflicts.get(key)
        if claims:
            claims.pop(owner, None)
            if len(claims) <= 1:
                self._conflicts.pop(key, None)
            if claims:
                winner = min(claims)
                if winner != self._owner(key):
                    self._set_winner(key, winner, claims[winner])
                return
        if self._owner(key) == owner:
            del self._want[key]
            self._dirty[key] = 0
            if self._odd_owner:
                self._odd_owner.pop(key, None)

    # ------------------------------------------------------------------ transport
    def attach(self, send: Callable[[bytes], bool],
               patience: Callable[[bool], None] | None = None) -> None:
        """A (re)connected datapath: installed state is unknown until `resync`.

        patience(True) is called before each request and patience(False) after it: a switch
        busy committing a big bundle answers no keep-alive for seconds, and the transport must
        not drop it for that while this reconciler's own reply timeout bounds the wait."""
        with self._lock:
            self._drop_prefetch()  # a read on the previous connection answers nothing here
            self._send = send
            self._patience = patience
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

    def drop_kept_bytes(self) -> None:
        """The resync `keep_encoded` kept bytes for will not come (the switch never connected)."""
        with self._lock:
            self.keep_encoded = False
            if not self.installed_known:
                self._drop_encoded()

    def attached_to(self, send: Callable[[bytes], bool]) -> bool:
        """Already attached to this transport (a second attach would drop its prefetched read)."""
        return self._send is not None and self._send == send

    # replies, called from the datapath's receive thread
    def on_error(self, err: wire.ErrorMsg) -> bool:
        """Route an OFPT_ERROR to its flow/owner; True if the xid was ours."""
        if self.meters.on_error(err):
            self.stats.errors += 1
            w = self._waits.get(err.xid)  # the meter config read: an error is its answer
            if w is not None:
                w.errors.append(err)
                w.event.set()
            return True
        for first, last, ops in self._xid_ops:
            if first <= err.xid <= last:
                self.stats.errors += 1
                idx = err.xid - first
                if idx < len(ops):
                    _order, f, key = ops[idx]
                    op = wire.OFPFC_ADD if f is not None else wire.OFPFC_DELETE_STRICT
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

    def _request(self, buf: bytes | Iterable[bytes], wait_xid: int, ops_range=None) -> _Wait:
        """Send `buf` (bytes, or pieces sent in order as they come) and wait for `wait_xid`'s reply."""
        send = self._send
        if send is None:
            raise ReconcileError(f"{self.name}: not connected")
        w = _Wait(threading.Event())  # green under eventlet: serve monkey-patches threading
        self._waits[wait_xid] = w
        if ops_range is not None:
            self._xid_ops = [ops_range]
        patience = self._patience
        if patience is not None:
            patience(True)
        try:
            for piece in ((buf,) if isinstance(buf, bytes) else buf):
                if not send(piece):
                    raise ReconcileError(f"{self.name}: send failed (datapath closing)")
            if not w.event.wait(timeout=self.timeout):
                raise ReconcileError(f"{self.name}: no reply within {self.timeout}s")
            if self._send is None:
                raise ReconcileError(f"{self.name}: disconnected while waiting")
            return w
        finally:
            self._waits.pop(wait_xid, None)
            if patience is not None:
                patience(False)

    def prefetch(self) -> bool:
        """Ask for the switch's flows now, for the resync that follows the first compile: OVS
        dumps them (≈ 1 s at 170,000 flows, in its own process) while the compile runs, instead
        of after it. Only for a switch nobody else writes to until that resync (one controller;
        in HA the read follows MASTER): the read must still be what the switch holds when the
        resync diffs. The compile meanwhile keeps each flow's encoded bytes (set_owner), so the
        resync finds most entries by their bytes (wire.match_flow_stats). False: not sent."""
        with self._lock:
            send = self._send
            if send is None or self.installed_known or self._prefetched is not None:
                return False
            xid = self.xids.take()
            w = _Wait(threading.Event())
            self._waits[xid] = w
            if self._patience is not None:
                self._patience(True)  # the switch may skip keep-alives while it dumps
            self._prefetched = (xid, w, send)
            if not send(wire.flow_stats_request(xid)):
                self._drop_prefetch()
                return False
            return True

    def _drop_prefetch(self) -> None:
        """Forget the prefetched read (used, or on a connection gone): its reply is not waited for."""
        pre, self._prefetched = self._prefetched, None
        if pre is not None:
            self._waits.pop(pre[0], None)
            if self._patience is not None:
                self._patience(False)

    def _read_flows(self) -> _Wait:
        """The switch's flows: the prefetched read if one is out on this connection, else a new one."""
        pre = self._prefetched
        if pre is not None and pre[2] is self._send:
            xid, w, _send = pre
            try:
                if not w.event.wait(timeout=self.timeout):
                    raise ReconcileError(f"{self.name}: no flow-stats reply within {self.timeout}s")
                if self._send is None:
                    raise ReconcileError(f"{self.name}: disconnected while waiting")
            finally:
                self._drop_prefetch()
            return w
        self._drop_prefetch()
        xid = self.xids.take()
        return self._request(wire.flow_stats_request(xid), xid)

    # ------------------------------------------------------------------ convergence
    def resync(self) -> int:
        """Read the switch's flows and converge with one diff. Returns flow-mods sent."""
        with self._lock:
            w = self._read_flows()
            # flows we still hold the encoded bytes of (a prefetch, or set_owner before a flush):
            # an entry equal to them byte for byte is that flow; the rest is decoded
            buf, want, held = self._enc_buf, self._want, self._dirty
            known = {bytes(buf[o >> 16:(o >> 16) + (o & 0xFFFF)]): key for key, o in held.items() if o}
            hits: list[tuple] = []
            decoded: list[wire.InstalledFlow] = []
            read: dict[tuple, tuple] = {}
            foreign = 0
            for chunk in w.chunks:
                wire.match_flow_stats(chunk, known, hits, decoded)
                for fl in decoded:
                    if (fl.body[0] >> OWNER_SHIFT) in OURS:
                        read[fl.key] = fl.body
                    else:
                        foreign += 1
                decoded.clear()
            w.chunks.clear()
            known.clear()
            self.stats.last_resync_by_bytes = len(hits)
            # a flow found by its bytes is installed exactly as wanted: the diff looks only at the
            # decoded entries and at the wanted flows not found. All found (a restart onto a switch
            # that kept its flows): `installed` is a copy of `_want` (no key hashed again). The
            # wanted flows not found keep the places of their bytes (the flush sends those).
            found: dict[tuple, tuple | Flow]
            rest: list[tuple] = []  # the wanted keys not found, as `_want` holds them
            if len(hits) == len(want):
                found = dict(want)
            else:
                found = {k: want[k] for k in hits}
                rest = [k for k in want if k not in found]
            del hits
            dirty = dict.fromkeys(read, 0)
            if rest:
                place = held.get
                dirty.update({k: place(k, 0) for k in rest})
            installed = self._installed_from(read, found, rest)
            del rest
            LOG.info("resync %s: switch has %d of our flows (%d by their bytes; %d learned/foreign left alone),"
                     " we want %d", self.name, len(installed), self.stats.last_resync_by_bytes, foreign,
                     len(self._want))
            self.installed = installed
            self._read_meters()
            self.installed_known = True
            self.keep_encoded = False
            self._rejected.clear()
            self._dirty = dirty
            self.stats.resyncs += 1
            return self.flush()

    def _installed_from(self, read: dict[tuple, tuple], found: dict[tuple, tuple | Flow],
                        rest: list[tuple]) -> dict[tuple, tuple | Flow]:
        """`installed` from a flow-stats read: `found` (key → the wanted Flow, entries matched by
        their bytes), `rest` (the other wanted keys) and `read` (key → body, entries decoded): a
        flow read back with the body of the flow we want there is recorded as that Flow, under the
        key object `_want` holds, so the read's own keys, matches and bodies are not kept (≈ 550
        bytes a flow at 10,000 ports). Only a few entries decoded and none found by their bytes
        (a switch that lost most flows) keep the read's keys: looking each up beats a walk of `_want`."""
        installed = found
        if not read:
            return installed
        ins, want = self.encoder.instructions, self._want
        pop = read.pop
        if found or len(read) * 4 >= len(want):
            wanted: Iterable[tuple[tuple, Flow]] = ((k, want[k]) for k in rest) if found else want.items()
            for key, f in wanted:
                got = pop(key, None)
                if got is not None:
                    installed[key] = f if got == (f.cookie, f.idle_timeout, f.hard_timeout, ins(f.actions)) else got
        else:  # nothing found by bytes, a few decoded entries: look each up
            for key in [k for k in read if k in want]:
                f = want[key]
                b = pop(key)
                installed[key] = f if b == (f.cookie, f.idle_timeout, f.hard_timeout, ins(f.actions)) else b
        installed.update(read)  # ours, not wanted (or not as read): deleted by the flush
        return installed

    def pending(self) -> list[Op]:
        """The diff flush() would send: (order, desired flow, key) for an ADD, (order, None, key)
        for a DELETE_STRICT (see Op)."""
        ops: list[Op] = []
        append = ops.append
        want, rejected, body_of = self._want.get, self._rejected, self.encoder.body
        installed = self.installed.get if self.installed else None  # an empty switch: no lookups
        for key in self._dirty:
            f = want(key)
            have = installed(key) if installed is not None else None
            if f is not None:
                if have is f:
                    continue  # installed as this very flow
                if have is not None or rejected:
                    body = body_of(f)
                    if have is not None and (body_of(have) if isinstance(have, Flow) else have) == body:
                        continue
                    if rejected and rejected.get(key) == body:
                        continue
                append((_ADD_ORDER | key[0] << 16 | (0xFFFF - key[1]), f, key))
            elif have is not None:
                append((key[0] << 16 | (0xFFFF - key[1]), None, key))
        # deletes first: a replaced flow never coexists with its successor at the same key anyway,
        # and freeing keys early keeps the switch's table smaller during a big change. Then by
        # table, then by descending priority: all in the order int (_ADD_ORDER), sorted in C.
        ops.sort(key=_ORDER)
        return ops

    def flush(self) -> int:
        """Send the minimal diff for everything marked dirty. Returns flow-mods sent."""
        with self._lock:
            if not self.installed_known or self._send is None:
                return 0  # resync on connect sends everything needed
            ops = self.pending()
            meters_before, meters_after = self.meters.pending() if self.meters.dirty else ((), ())
            if not ops and not meters_before and not meters_after:
                self._drop_encoded()
                self.meters.dirty.clear()
                self.stats.last_flush_mods = 0
                return 0
            t0 = time.monotonic()
            try:
                self._send_meters(meters_before)
                sent = self._send_slices(ops) if ops else 0
                self._send_meters(meters_after)
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
            self._drop_encoded()
            self.meters.dirty.clear()
            st = self.stats
            st.last_flush_seconds = time.monotonic() - t0
            st.last_flush_mods = sent
            if sent >= st.biggest_flush_mods:
                st.biggest_flush_mods, st.biggest_flush_seconds = sent, st.last_flush_seconds
            metrics.observe_flush(self.name, st.last_flush_seconds)
            LOG.info("flushed %d flow-mods to %s in %.3fs", sent, self.name, st.last_flush_seconds)
            return sent

    def _drop_encoded(self) -> None:
        """After a flush: nothing dirty, no bytes held."""
        self._dirty.clear()
        if self._enc_buf:
            self._enc_buf = bytearray()

    def _send_slices(self, ops: list) -> int:
        """One bundle, or, on a first sync (the switch holds none of our flows, so every op is an
        add), bundles of at most `first_sync_bundle`, each committed and confirmed before the next.
        Still fail-closed in between: ops go by table, then descending priority, so a table filled
        up to some priority gives a packet either its final verdict or the table-miss drop."""
        size = self.first_sync_bundle
        if size <= 0 or len(ops) <= size or self.installed:
            return self._send_bundle(ops)
        sent = 0
        for start in range(0, len(ops), size):
            sent += self._send_bundle(ops[start:start + size])
            self._xid_ops = []
        return sent

    def _send_bundle(self, ops: list) -> int:
        enc = self.encoder
        n = len(ops)
        base = self.xids.take(n + 3)
        bundle_id = base & 0x7FFFFFFF
        open_xid, first, commit_xid, barrier_xid = base, base + 1, base + 1 + n, base + 2 + n

        def chunks() -> Iterator[bytes]:
            """The bundle in pieces of SEND_CHUNK messages, encoded while the switch parses the
            previous piece (one write after encoding all of it left OVS idle meanwhile)."""
            parts = [wire.bundle_ctrl(bundle_id, wire.BUNDLE_OPEN_REQUEST, open_xid)]
            add = wire.bundle_add
            xid = first
            add_flow, delete_strict, encode = wire.bundle_add_encoded, enc.delete_strict, enc.encoded
            buf, cached = self._enc_buf, self._dirty.get

            body_of = enc.body

            def encoded(f: Flow, key: tuple) -> bytes | bytearray:
                at = cached(key)
                if not at:
                    return encode(f, body_of(f))
                start = at >> 16
                return buf[start:start + (at & 0xFFFF)]
            for start in range(0, n, SEND_CHUNK):
                chunk = ops[start:start + SEND_CHUNK]
                parts.extend([add_flow(bundle_id, encoded(f, key), x) if f is not None
                              else add(bundle_id, delete_strict(key, x), x)
                              for x, (_o, f, key) in zip(range(xid, xid + len(chunk)), chunk)])
                xid += len(chunk)
                if start + SEND_CHUNK < n:
                    yield b"".join(parts)
                    parts = []
            parts.append(wire.bundle_ctrl(bundle_id, wire.BUNDLE_COMMIT_REQUEST, commit_xid))
            parts.append(wire.barrier(barrier_xid))
            yield b"".join(parts)

        self.stats.bundles += 1
        self.stats.flow_mods += n
        self._ctl_xids = (open_xid, commit_xid)
        try:
            w = self._request(chunks(), barrier_xid, (first, first + n - 1, ops))
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
        for i, (_o, f, key) in enumerate(ops):
            if failed_idx and i in failed_idx:
                continue
            if f is not None:
                installed[key] = f  # installed as this flow: its body is what was sent
                if rejected:
                    rejected.pop(key, None)
            else:
                installed.pop(key, None)
        self._mark_rejected(ops, failed_idx)
        return n

    def _send_meters(self, ops) -> None:
        """Meter-mods are not bundle messages in OVS: sent plain, then a barrier; a rejected one
        is logged, remembered and not re-sent until its band changes (as rejected flows)."""
        if not ops:
            return
        base = self.xids.take(len(ops) + 1)
        buf = self.meters.encode(list(ops), base) + wire.barrier(base + len(ops))
        self.stats.meter_mods += len(ops)
        self._request(buf, base + len(ops))
        self.meters.confirm(list(ops))

    def _read_meters(self) -> None:
        """The switch's meters (OFPMP_METER_CONFIG), diffed on the next flush. A switch without
        meter support answers with an error: then it has none."""
        xid = self.meters.reading_xid = self.xids.take()
        try:
            w = self._request(wire.meter_config_request(xid), xid)
        finally:
            self.meters.reading_xid = 0
        if w.errors:
            LOG.warning("switch %s refused the meter config request (%s): assuming no meters", self.name,
                        w.errors[0].describe())
        self.meters.read(w.chunks)

    def _mark_rejected(self, ops: list, failed_idx: set[int]) -> None:
        for i in failed_idx:
            _o, f, key = ops[i]
            if f is not None:
                self._rejected[key] = self.encoder.body(f)

    # ------------------------------------------------------------------ inspection
    def diff(self) -> dict[str, list]:
        """Desired vs installed (as last read/confirmed): missing, extra, changed keys."""
        with self._lock:
            missing, changed, extra = [], [], []
            for key, f in self._want.items():
                have = self.installed.get(key)
                if have is None:
                    missing.append(f)
                elif have is not f and self._body(have) != self.encoder.body(f):
                    changed.append(f)
            for key, have in self.installed.items():
                if key not in self._want:
                    extra.append((key, self._body(have)))
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

    def read_installed_meters(self) -> dict[int, tuple | None]:
        """Fresh meter-config read without converging (for `flows --diff`): ours only, as MeterTable.read."""
        with self._lock:
            xid = self.meters.reading_xid = self.xids.take()   # an error answers the request (on_error)
            try:
                w = self._request(wire.meter_config_request(xid), xid)
            finally:
                self.meters.reading_xid = 0
            if w.errors:  # no meter support: then it has none (as _read_meters assumes)
                return {}
            return MeterTable.ours(w.chunks)


def _sort_key(f: Flow):
    return (f.table, -f.priority, f.match)


# ---------------------------------------------------------------------------------- meters

MAX_OUR_METER = MAX_METER_ID + 1  # flows.tables.MeterPurpose: meters from here up are someone else's


class MeterTable:
    """Desired vs installed OpenFlow meters of one datapath (flows/qos.py explains the model).

    An owner declares a meter by using it: a `flows.qos.MeterUse` instruction in one of its flows
    carries the meter's drop band. `set_owner` collects them from the flows that changed (so the
    reconciler's hot path pays nothing for flows without meters), and `pending` is the diff the
    next flush sends: ADD / MODIFY before the flow bundle (a flow may not name a missing meter),
    DELETE after it (OVS deletes the flows that still use a deleted meter). On resync the
    switch's meters are read (OFPMP_METER_CONFIG) and diffed, so a restart sends no meter-mod."""

    def __init__(self, name: str) -> None:
        self.name = name
        # owner → its (flow key, that flow's MeterUse actions) pairs: one or two per port, so pairs,
        # not a dict; the owner's bands are derived from them (_bands)
        self._by_flow: dict[int, tuple[tuple[tuple, tuple], ...]] = {}
        self._claims: dict[int, dict[int, tuple]] = {}       # meter id → owner → band
        self.installed: dict[int, tuple | None] = {}         # as read / confirmed (None: not one drop band)
        self.dirty: set[int] = set()
        self.rejected: dict[int, tuple | None] = {}          # meter id → band the switch refused
        self._inflight: dict[int, tuple[int, int, tuple | None]] = {}  # xid → (command, meter id, band)
        self.reading_xid = 0  # xid of the meter config request in flight

    # ---------------------------------------------------------------- desired
    def set_owner(self, owner: int, new: dict, changed: Iterable[tuple], found: dict[tuple, tuple]) -> None:
        """`new` = the owner's flows by key; `changed` = keys whose flow is new or different, of
        which `found` = those that declare meters, with their meter actions (Encoder.
        encoded_with_meters). `changed` is read only if the owner held meters before."""
        prev = self._by_flow.get(owner)
        if prev is None and not found:
            return
        found = dict(found)
        if prev:
            changed = set(changed)
            for key, ms in prev:
                if key in new and key not in changed:
                    found[key] = ms
        bands = self._bands(owner, found.values(), log=True)
        old = self._bands(owner, (ms for _k, ms in prev), log=False) if prev else {}
        for mid in old.keys() | bands.keys():
            if old.get(mid) == bands.get(mid):
                continue
            claims = self._claims.setdefault(mid, {})
            if mid in bands:
                claims[owner] = bands[mid]
            else:
                claims.pop(owner, None)
            if not claims:
                del self._claims[mid]
            elif len(set(claims.values())) > 1:
                LOG.error("compile bug on %s: meter %d declared differently by owners %s; keeping %s's",
                          self.name, mid, sorted(owner_label(o) for o in claims), owner_label(min(claims)))
            self.dirty.add(mid)
        if found:
            self._by_flow[owner] = tuple(found.items())
        else:
            self._by_flow.pop(owner, None)

    def _bands(self, owner: int, found: Iterable[tuple], log: bool) -> dict[int, tuple]:
        """meter id → band an owner declares with these MeterUse actions (within the owner, the
        smaller band if it declares one twice)."""
        bands: dict[int, tuple] = {}
        for ms in found:
            for m in ms:
                have = bands.get(m.meter_id)
                if have is not None and have != m.band:
                    if log:
                        LOG.error("compile bug on %s: owner %s declares meter %d as %s and %s; keeping the smaller",
                                  self.name, owner_label(owner), m.meter_id, have, m.band)
                    bands[m.meter_id] = min(have, m.band)
                else:
                    bands[m.meter_id] = m.band
        return bands

    def want(self, mid: int) -> tuple | None:
        claims = self._claims.get(mid)
        return claims[min(claims)] if claims else None

    def desired_count(self) -> int:
        """len(desired()) without building it (stats polling)."""
        return len(self._claims)

    def desired(self) -> dict[int, tuple]:
        return {mid: claims[min(claims)] for mid, claims in list(self._claims.items())}

    # ---------------------------------------------------------------- diff
    def read(self, chunks: list[bytes]) -> None:
        """Installed meters from OFPMP_METER_CONFIG reply bodies (ours only); everything dirty."""
        installed = self.ours(chunks)
        want = self.want
        for mid, band in installed.items():  # a band read back as declared: keep the declared object
            w = want(mid)
            if w is not None and w == band:
                installed[mid] = w
        self.installed = installed
        self.rejected.clear()
        self.dirty = set(self.installed) | set(self._claims)

    @staticmethod
    def ours(chunks: list[bytes]) -> dict[int, tuple | None]:
        """{meter id: band} of OFPMP_METER_CONFIG reply bodies, only the ids in our space."""
        got: dict[int, tuple | None] = {}
        for chunk in chunks:
            got.update(wire.parse_meter_config(chunk))
        return {mid: band for mid, band in got.items() if 0 < mid < MAX_OUR_METER}

    def pending(self) -> tuple[list[tuple[int, int, tuple | None]], list[tuple[int, int, tuple | None]]]:
        """(adds and modifies, deletes) as (command, meter id, band)."""
        before: list[tuple[int, int, tuple | None]] = []
        after: list[tuple[int, int, tuple | None]] = []
        for mid in sorted(self.dirty):
            want = self.want(mid)
            if want is not None:
                if mid not in self.installed:
                    if self.rejected.get(mid, ()) != want:
                        before.append((wire.OFPMC_ADD, mid, want))
                elif self.installed[mid] != want and self.rejected.get(mid, ()) != want:
                    before.append((wire.OFPMC_MODIFY, mid, want))
            elif mid in self.installed:
                after.append((wire.OFPMC_DELETE, mid, None))
        return before, after

    def encode(self, ops: list, first_xid: int) -> bytes:
        self._inflight = {first_xid + i: op for i, op in enumerate(ops)}
        return b"".join(wire.meter_mod(first_xid + i, cmd, mid, band) for i, (cmd, mid, band) in enumerate(ops))

    def on_error(self, err: wire.ErrorMsg) -> bool:
        if err.xid and err.xid == self.reading_xid:
            return True
        op = self._inflight.get(err.xid)
        if op is None:
            return False
        cmd, mid, band = op
        LOG.error("switch %s rejected %s of meter %d %s: %s", self.name,
                  {wire.OFPMC_ADD: "add", wire.OFPMC_MODIFY: "modify"}.get(cmd, "delete"), mid, band,
                  err.describe())
        self.rejected[mid] = band
        return True

    def confirm(self, ops: list) -> None:
        """After the barrier: what was not rejected is now installed."""
        failed = {op[1] for xid, op in self._inflight.items() if self.rejected.get(op[1], ()) == op[2]}
        for cmd, mid, band in ops:
            if mid in failed:
                continue
            if cmd == wire.OFPMC_DELETE:
                self.installed.pop(mid, None)
            else:
                self.installed[mid] = band
                self.rejected.pop(mid, None)
        self._inflight = {}

    def rejected_count(self) -> int:
        return sum(1 for mid, band in list(self.rejected.items()) if self.want(mid) == band)
