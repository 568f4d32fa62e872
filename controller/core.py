"""The controller's brain, free of os-ken plumbing: feed → view → compile → reconcile.

Why one worker thread: the topology view is single-owner by design, compiles must see a
consistent view, and coalescing is natural — the worker drains everything pending (feed changes,
switch connects, port events), applies it all, then recomputes each dirty owner once per
chassis and sends one bundle per datapath. Packet-in handling reads the view under the same
lock, from its own thread (controller/dispatch.py), so a big resync never blocks the OpenFlow
receive loop.
"""
from __future__ import annotations

import logging
import os
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from os_ken.lib import hub

from apps.base import ChassisContext
from controller import checkpoint, heap, metrics, portcache, wire
from controller.reconciler import FlowEncodeError, Reconciler, ReconcileError, XidSource
from controller.gateway import GatewayConfig, Liveness, binding_updates
from flows import gateway as gateway_selection
from flows.tables import owner_label, split_cookie
from controller.registry import (IFNAME_INDEX, DatapathEntry, Registry, SwitchPort, build_context,
                                 dpid_name, port_ifnames, update_context)
from flows import compiler, engine
from flows.engine import ListingError
from flows.flow import Flow
from topology.store import CHASSIS, KINDS, PORT, Change, Compacted
from topology.view import TopologyView

LOG = logging.getLogger(__name__)

ACTIVE, DOWN = "ACTIVE", "DOWN"
# A batch touching more ports than this rebuilds the contexts it touches from scratch (as
# cheap as updating them then, and simpler to trust); fewer are updated in place.
CONTEXT_UPDATE_MAX = 256
BINDING_RETRY = 1.0  # seconds before a failed binding write is looked at again (a full context pass)


class AppCompiler:
    """The apps bound to flows.compiler: which owners a change names, and their flows.
    flows.engine.ChassisEngine drives compile_owner and owners_for_chassis per datapath."""

    def __init__(self, apps: list) -> None:
        self.apps = list(apps)
        self.flow_apps = [a for a in self.apps if hasattr(a, "compile")]
        # apps announcing external addresses their flows newly answer for (apps/nat.py: GARPs)
        self.announcers = [a for a in self.apps if hasattr(a, "announcements")]
        self.announce_kinds = frozenset(k for a in self.announcers for k in getattr(a, "announce_kinds", ()))

    def owners_for_change(self, view, change: Change) -> set[int]:
        return set(compiler.owners_for_change(self.flow_apps, view, change))

    def compile_owner(self, view, ctx: ChassisContext, owner: int) -> frozenset[Flow]:
        return frozenset(compiler.compile_owner(self.flow_apps, view, ctx, owner))

    def owners_for_port_location(self, view, port_id: str, ctx: ChassisContext | None = None) -> set[int]:
        """Owners a port's tap appearing on / vanishing from ctx's chassis may bring there."""
        return set(compiler.owners_for_port_location(self.flow_apps, view, port_id, ctx))

    def owners_for_chassis(self, view, ctx: ChassisContext) -> set[int]:
        return set(compiler.owners_for_chassis(self.flow_apps, view, ctx))


RETRY_FIRST, RETRY_MAX = 0.5, 30.0  # seconds: backoff of a datapath whose convergence failed
# seconds: the longest a burst of events may hold compiled flows back (_defer_flush); 0 = never
# defer (TENANTFLOW_FLUSH_DEFER, for same-run comparisons in bench/bench_scale.py --defer-ab)
FLUSH_DEFER_MAX = float(os.environ.get("TENANTFLOW_FLUSH_DEFER", "1.0"))
# HA: a standby share to compile afresh while one of our own chassis waits for MASTER is put off
# this long (then retried): the takeover's resync goes first (docs/ha.md, "Standby share")
WARM_LATER, WARM_LATER_MAX = 0.1, 5.0
BIG_BATCH = 1000  # changes or flow-mods after which the worker hands freed memory back to the OS
# batches that may compile or read back a whole chassis: cyclic GC paused (CyclicGcPause)
HEAVY_ITEMS = frozenset({"connected", "reset", "resync", "prewarm"})
# seconds between writes of the port cache (controller/portcache.py) while ports keep changing
PORT_CACHE_EVERY = 2.0
# seconds a chassis compiled from the port cache waits for its switch before that compile is dropped
PREWARM_MAX = 60.0
# seconds `stop` waits for the worker to write the compile checkpoint (≈ 2 s at 10,000 ports)
CHECKPOINT_STOP_WAIT = 30.0
STATS_READ_ATTEMPTS = 5  # lock-free stats: reads again if a dict changed size under it


def echo_patience(datapath, horizon: float) -> Callable[[bool], None] | None:
    """Keep-alive leniency for a reconciler waiting on `datapath` (see Reconciler.attach).

    ovs-vswitchd answers no echo while it commits a big bundle (10,000 ports: tens of seconds), and
    os-ken's keep-alive would drop the connection after its few misses — and the resync would start
    over, forever. While a request is out the allowance stretches to the reconciler's reply timeout
    (which still bounds a hung switch); the reply proves the switch alive, so the misses are forgotten."""
    configured = getattr(datapath, "max_unreplied_echo_requests", 0)
    interval = getattr(datapath, "echo_request_interval", 0) or 1.0
    if not configured or not hasattr(datapath, "unreplied_echo_requests"):
        return None  # keep-alive off
    lenient = max(configured, int(horizon / interval) + 2)

    def patience(waiting: bool) -> None:
        datapath.max_unreplied_echo_requests = lenient if waiting else configured
        if not waiting:
            datapath.unreplied_echo_requests.clear()
    return patience


def _differs_beyond_ports(a: ChassisContext, b: ChassisContext) -> bool:
    """True when two contexts of a chassis differ in more than their local ports."""
    return (a.name, a.datapath_id, a.uplinks, a.tunnel_ports, a.tunnel_ip, a.metadata_port) != \
        (b.name, b.datapath_id, b.uplinks, b.tunnel_ports, b.tunnel_ip, b.metadata_port)


class _ReconcilerSink:
    """flows.engine.Sink over a datapath's reconciler: an owner that fails to compile or encode
    is withdrawn (fail closed: no stale flow keeps allowing what the topology no longer allows),
    counted, reported by DatapathEntry.problems() and recompiled on every retry until it works."""

    def __init__(self, e: DatapathEntry, compiler: AppCompiler | None = None,
                 announce: list | None = None) -> None:
        self.e = e
        self.compiler = compiler
        self.announce = announce  # (flow key, PacketOut) of addresses that moved here (GARPs)

    def owners(self) -> set[int]:
        return set(self.e.reconciler.owners()) | self.e.failed_owners.keys()

    def put(self, owner: int, flows: frozenset[Flow]) -> None:
        c = self.compiler
        if c is not None and self.announce is not None and self.e.ctx is not None \
                and split_cookie(owner)[0] in c.announce_kinds:
            before = self.e.reconciler.desired_flows(owner)
            for app in c.announcers:
                try:
                    self.announce.extend(app.announcements(self.e.ctx, before, flows))
                except Exception:  # noqa: BLE001 — an announcement is best effort, flows are not
                    LOG.exception("announcements of owner %s on %s failed", owner_label(owner), self.e.ctx.name)
        self.e.reconciler.set_owner(owner, flows)
        self.e.failed_owners.pop(owner, None)

    def failed(self, owner: int, exc: Exception) -> None:
        name = self.e.ctx.name if self.e.ctx is not None else dpid_name(self.e.dpid)
        if isinstance(exc, FlowEncodeError):
            LOG.error("chassis %s: %s; its flows are withdrawn", name, exc)
        else:
            LOG.error("compile of owner %s on chassis %s failed; its flows are withdrawn",
                      owner_label(owner), name, exc_info=exc)
        self.e.compile_errors += 1
        self.e.failed_owners[owner] = f"{owner_label(owner)}: {type(exc).__name__}: {exc}"
        self.e.reconciler.set_owner(owner, ())


@dataclass
class _ContextWork:
    """What changed since each chassis' context was built, so _refresh_context touches only the
    chassis (and the ports) a batch concerns: one tap on one chassis of 10,000 ports, or a port
    write among 20 chassis, used to rebuild every context and re-check every binding."""
    full: bool = False                                           # every chassis, from scratch
    port_ids: set[str] = field(default_factory=set)              # topology ports written
    names: set[str] = field(default_factory=set)                 # their interface names, old and new
    hosts: set[str] = field(default_factory=set)                 # their binding:host_id, old and new
    switch_names: dict[int, set[str]] = field(default_factory=dict)  # dpid → switch ports that changed
    rebuild: set[int] = field(default_factory=set)               # dpids whose context is built afresh

    def port_written(self, *records: dict | None) -> None:
        for rec in records:
            if rec is not None:
                self.port_ids.add(rec["id"])
                self.names.update(port_ifnames(rec))
                self.hosts.add(rec.get("binding:host_id") or "")

    def touches(self, e: DatapathEntry) -> bool:
        ctx = e.ctx
        return bool(self.full or ctx is None or e.dpid in self.rebuild or self.switch_names.get(e.dpid)
                    or e.chassis in self.hosts
                    or any(n in e.ports for n in self.names) or any(p in ctx.local_ports for p in self.port_ids))

    def small(self) -> bool:
        return len(self.port_ids) + len(self.names) <= CONTEXT_UPDATE_MAX


@dataclass
class _Item:
    kind: str  # changes | connected | port | disconnected | resync | retry | reset | warm | rebind |
    #            prewarm | prewarm-expire | portcache | stop
    dpid: int = 0
    payload: Any = None


def controller_view(revision: int, data) -> TopologyView:
    """The view the controller compiles from: the records plus the tap-name index binding needs."""
    view = TopologyView.from_snapshot(revision, data)
    view.add_index(PORT, IFNAME_INDEX, port_ifnames)
    return view


def _configure(apps: list, settings) -> None:
    for app in apps:  # apps with deployment settings (DHCP lease time, DNS domain, …)
        configure = getattr(app, "configure", None)
        if configure is not None:
            configure(settings)


class Core:
    def __init__(self, store, service, apps: list, settings, *, feed_timeout: float = 1.0,
                 check_with: Callable[[], list] | None = None, is_master: Callable[[int], bool] | None = None,
                 gateway: GatewayConfig | None = None, port_cache: str | None = None,
                 checkpoint_file: str | None = None, freeze_gc: bool = False) -> None:
        """`check_with`: a factory of fresh app instances turns on check mode (see check_compile).
        `is_master(dpid)` (HA, controller/ownership.py): False = this controller is slave there.
        `port_cache`: file of the switches' ports across restarts (controller/portcache.py).
        `checkpoint_file`: each chassis' compiled state across a clean restart (controller/checkpoint.py;
        used with the port cache only).
        `freeze_gc`: freeze what big batches built out of the cyclic GC's walks (controller/heap.py)."""
        self.store = store
        self.service = service
        self.settings = settings
        _configure(apps, settings)
        self.compiler = AppCompiler(apps)
        self.check_with = check_with
        self.check_failures = 0   # check mode: batches after which incremental != from-scratch
        self.packet_apps = {bytes(a.userdata): a for a in apps if getattr(a, "userdata", None)}
        self.encoder = wire.Encoder()
        self.xids = XidSource()
        self.registry = Registry(lambda dpid: Reconciler(dpid_name(dpid), self.encoder, xids=self.xids))
        self.view_lock = threading.RLock()
        self.view = TopologyView()
        self.feed_timeout = feed_timeout
        self._q = hub.Queue()
        self._bind_q = hub.Queue()
        self._bindings_pending: list[tuple[str, str, str]] = []
        self._threads: list = []
        self._stopping = False
        self.ready = threading.Event()
        self.batches = 0
        self._dead_chassis: list[str] = []  # stats.gateway.dead, as of the last gateway duties
        self._warm_since: float | None = None  # since when standby compiles wait for a takeover
        self._warm_wake = False  # a "warm" item is scheduled
        self.deferred_flushes = 0  # compiles/flushes left to the next, already queued batch (_defer_flush)
        self._carry: tuple[set[int], set[tuple], _ContextWork] | None = None  # (dirty, inputs, ctx work) left over
        self._defer_since: float | None = None
        self._busy = False
        self._release_due = False  # a big batch's garbage waits for release_memory (see _process)
        self._gc_pause = heap.CyclicGcPause()
        self._gc_freeze = heap.LongLivedFreeze(freeze_gc)
        self._binding = False
        self._rebind_pending = False  # a "rebind" item is scheduled (a binding write failed)
        # HA hooks: a slave datapath is never sent to; becoming master calls request_resync,
        # which reads the switch and sends only the difference. `compiles(dpid)`: keep desired
        # flows for it (we own it, or master it); the others keep a warm view and context but no
        # compile — K controllers share the compile work instead of each doing all of it. A
        # chassis that becomes ours compiles afresh before its first (resync) flush.
        self.is_master: Callable[[int], bool] = is_master or (lambda dpid: True)
        self.compiles: Callable[[int], bool] = lambda dpid: True
        # HA standby share: another member's chassis we would inherit, compiled (warm, never
        # sent) after our own chassis' flushes, so a standby compile never delays them
        self.standby: Callable[[int], bool] = lambda dpid: False
        self.ha_stats: Callable[[], dict] = lambda: {"mode": "single"}  # who owns which chassis
        # One controller: nothing but us writes a switch's flows, so its flows are read as it
        # connects (Reconciler.prefetch) and the read is still true when the first compile is
        # done. HA: False — the read must follow MASTER (another master may still be writing).
        self.sole_writer = True
        # Gateway failover (controller/gateway.py): chassis liveness into the store, gateway
        # ports' binding:host_id, GARPs. HA: `owned_elsewhere(dpid)` = another live controller
        # owns that datapath (it, not we, speaks for the chassis).
        self.gateway = gateway or GatewayConfig()
        self.liveness = Liveness(self.gateway, time.monotonic())
        self.owned_elsewhere: Callable[[int], bool] = lambda dpid: False
        self._announce: dict[int, list] = {}   # dpid → GARPs waiting for the flush
        self._liveness_wake: float | None = None
        self.gateway_stats = {"liveness_writes": 0, "binding_writes": 0, "garps_sent": 0}
        self.port_cache = port_cache
        self._ports_changed = False      # a switch's ports changed since the port cache was written
        self._ports_saved_at = 0.0
        self._port_cache_wake = False    # a "portcache" item is scheduled
        self.checkpoint_file = checkpoint_file
        self._checkpoint_fp = checkpoint.fingerprint(settings, apps, self.gateway) if checkpoint_file else ""
        self._checkpointed: dict[int, dict] = {}  # dpid → its saved compile, until the prewarm uses it
        self._checkpoint_rev = -1                 # the revision that saved compile is of
        self.checkpoint_stats: dict[str, Any] = {"file": checkpoint_file, "loaded": None, "restored": 0,
                                                 "saved": None}
        self._worker_done = threading.Event()

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        rev, data = self.store.snapshot()
        with self.view_lock:
            self.view = controller_view(rev, data)
        self._rev = rev
        LOG.info("topology loaded at revision %d", rev)
        self._prewarm()
        self._threads = [hub.spawn(self._feed_loop), hub.spawn(self._work_loop), hub.spawn(self._bind_loop)]
        self.liveness.started = time.monotonic()
        self._wake_liveness_at(self.liveness.started + self.gateway.startup_grace)

    def _prewarm(self) -> None:
        """Before the worker starts: each chassis of the port cache that the topology still
        knows under that datapath gets its ports back, and the first batch compiles it (not
        sent: no switch yet), so a restart's compile overlaps the switches' reconnect. One
        controller only: in HA the ownership decides what we compile, after it is known."""
        if not self.port_cache or not self.sole_writer:
            return
        cached = portcache.load(self.port_cache)
        n = 0
        for dpid, (chassis, ports) in cached.items():
            rec = self.view.chassis_by_datapath(dpid)
            if rec is None or rec.get("name") != chassis:
                continue
            e = self.registry.entry(dpid)
            e.ports, e.chassis, e.prewarm = ports, chassis, True
            e.reconciler.keep_encoded = True  # the resync on connect finds the switch's flows by them
            n += 1
            hub.spawn_after(PREWARM_MAX, self._q.put, _Item("prewarm-expire", dpid))
        if n:
            LOG.info("port cache %s: compiling %d chassis before their switches connect", self.port_cache, n)
            self._q.put(_Item("prewarm"))

    def _load_checkpoint(self) -> None:
        """The previous process's compile of the prewarmed chassis, if it is of this very
        topology revision and code (controller/checkpoint.py); _converge uses it instead of a compile.
        Worker thread, in the prewarm batch: the OpenFlow listener is not held up by it (≈ 1 s at
        10,000 ports), and the batch is heavy, so the cyclic GC does not walk what is unpickled."""
        path = self.checkpoint_file
        if not path:
            return
        t0 = time.monotonic()
        cp, why = checkpoint.load(path, self._checkpoint_fp, self._rev)
        if cp is not None:
            self._checkpointed = {dpid: st for dpid, st in cp.datapaths.items()
                                  if (e := self.registry.get(dpid)) is not None and st.get("chassis") == e.chassis}
            self._checkpoint_rev = cp.revision
            why = f"{len(self._checkpointed)} chassis"
        self.checkpoint_stats["loaded"] = why
        LOG.info("compile checkpoint %s: %s (%.3fs)", path, why, time.monotonic() - t0)

    def _restore_checkpoint(self, e: DatapathEntry) -> bool:
        """Take the saved compile of `e` instead of compiling it: only if nothing changed since it
        was saved (the view at its revision, the context equal, no state held here yet)."""
        saved = self._checkpointed.pop(e.dpid, None)
        if saved is None:
            return False
        name = e.ctx.name if e.ctx is not None else dpid_name(e.dpid)
        if self.view.revision != self._checkpoint_rev or saved["ctx"] != e.ctx \
                or e.reconciler.owners() or e.engine.owners() or e.failed_owners:
            LOG.info("chassis %s: its compile checkpoint no longer fits (revision %d vs %d, context %s); compiling",
                     name, self.view.revision, self._checkpoint_rev,
                     "equal" if saved["ctx"] == e.ctx else "differs")
            return False
        try:
            e.engine.restore_state(saved["engine"])
            e.reconciler.restore_desired(saved["reconciler"])
        except Exception:  # noqa: BLE001 — a checkpoint that does not fit this code: compile instead
            LOG.exception("chassis %s: restoring its compile checkpoint failed; compiling", name)
            e.engine.clear()
            for owner in e.reconciler.owners():
                e.reconciler.set_owner(owner, ())
            return False
        self.checkpoint_stats["restored"] += 1
        LOG.info("chassis %s: %d owners, %d flows taken from the compile checkpoint", name,
                 len(e.reconciler.owners()), e.reconciler.desired_count())
        return True

    def _write_checkpoint(self) -> None:
        """At a clean stop (worker thread, nothing compiling): every chassis whose compile is
        complete and matches the view, with its context, engine state and desired flows."""
        path = self.checkpoint_file
        if not path or not self.sole_writer or self._carry is not None:
            return
        t0 = time.monotonic()
        datapaths = {}
        for e in self.registry.all():
            if e.compiled and not e.needs_full and e.ctx is not None and not e.failed_owners \
                    and e.listing_failed is None and e.chassis and self.compiles(e.dpid):
                datapaths[e.dpid] = {"chassis": e.chassis, "ctx": e.ctx, "engine": e.engine.export_state(),
                                     "reconciler": e.reconciler.export_desired()}
        if not datapaths:
            return
        if self._ports_changed and self.port_cache:  # the context the next start rebuilds from it
            self._ports_saved_at = 0.0
            self._save_port_cache()
        if checkpoint.save(path, self._checkpoint_fp, self.view.revision, datapaths):
            self.checkpoint_stats["saved"] = len(datapaths)
            LOG.info("compile checkpoint %s: %d chassis at revision %d written in %.3fs", path, len(datapaths),
                     self.view.revision, time.monotonic() - t0)

    def _save_port_cache(self) -> None:
        """Write the switches' ports (worker thread), at most every PORT_CACHE_EVERY seconds:
        one write for a burst of taps, a wake-up for the last of it."""
        path = self.port_cache
        if not path:
            return
        now = time.monotonic()
        wait = self._ports_saved_at + PORT_CACHE_EVERY - now
        if wait > 0:
            if not self._port_cache_wake:
                self._port_cache_wake = True
                hub.spawn_after(wait, self._q.put, _Item("portcache"))
            return
        datapaths = {e.dpid: (e.chassis, dict(e.ports)) for e in self.registry.all()
                     if e.connected and e.chassis is not None}
        if not datapaths:
            return  # nothing connected (yet): keep what the file has
        self._ports_changed = False
        self._ports_saved_at = now
        portcache.save(path, datapaths)

    def stop(self) -> None:
        self._stopping = True
        self._q.put(_Item("stop"))
        self._bind_q.put(None)
        for e in self.registry.all():
            e.reconciler.detach()
        if self.checkpoint_file and self._threads:  # the worker writes it as it stops: wait for that
            if not self._worker_done.wait(CHECKPOINT_STOP_WAIT):
                LOG.warning("worker did not stop within %.0fs; no compile checkpoint written", CHECKPOINT_STOP_WAIT)

    # ------------------------------------------------------------------ events (any thread)
    def datapath_connected(self, datapath, dpid: int, ports: Iterable[SwitchPort]) -> None:
        e = self.registry.get(dpid)
        if e is not None and e.prewarm and self.sole_writer:
            # the worker may be in the middle of this chassis' compile from the port cache: the
            # switch dumps its flows meanwhile (attach_datapath attached this connection)
            e.reconciler.prefetch()
        self._q.put(_Item("connected", dpid, (datapath, {p.name: p for p in ports})))

    def port_status(self, dpid: int, reason: str, port: SwitchPort) -> None:
        self._q.put(_Item("port", dpid, (reason, port)))

    def datapath_disconnected(self, datapath, dpid: int) -> None:
        # Detach now, not when the worker gets to the item: the worker may be the one waiting
        # (up to the reply timeout) for an answer this dead connection will never send.
        e = self.registry.get(dpid)
        if e is not None:
            e.reconciler.detach(datapath.send)
        self._q.put(_Item("disconnected", dpid, datapath))

    def request_resync(self, dpid: int) -> None:
        self._q.put(_Item("resync", dpid))

    def attach_datapath(self, datapath, dpid: int) -> None:
        """Called on the receive thread as soon as a datapath is known, so replies route at once."""
        datapath.xid = random.randint(0, 0x7FFF0000)  # keep os-ken's xids out of our half (XidSource)
        e = self.registry.entry(dpid)
        e.reconciler.attach(datapath.send, echo_patience(datapath, e.reconciler.timeout))

    # replies (receive thread) — cheap, never block
    def on_error(self, dpid: int, err: wire.ErrorMsg) -> None:
        e = self.registry.get(dpid)
        if e is None or not e.reconciler.on_error(err):
            LOG.error("switch %s sent error %s for xid %#x (not a flow-mod of ours)",
                      dpid_name(dpid), err.describe(), err.xid)

    def on_barrier(self, dpid: int, xid: int) -> None:
        e = self.registry.get(dpid)
        if e is not None:
            e.reconciler.on_barrier(xid)

    def on_flow_stats(self, dpid: int, xid: int, body: bytes, more: bool) -> None:
        e = self.registry.get(dpid)
        if e is not None:
            e.reconciler.on_flow_stats(xid, body, more)

    # ------------------------------------------------------------------ feed
    def _feed_loop(self) -> None:
        while not self._stopping:
            try:
                changes = self.store.changes(after=self._rev, timeout=self.feed_timeout)
            except Compacted:
                LOG.warning("change feed compacted after %d; reloading the snapshot", self._rev)
                self._q.put(_Item("reset"))
                hub.sleep(self.feed_timeout)
                continue
            except Exception:  # noqa: BLE001 — a store hiccup must not end the feed
                if self._stopping:  # shutdown closed the store under a read in progress
                    return
                LOG.exception("change feed read failed after revision %d; retrying", self._rev)
                hub.sleep(1.0)
                continue
            if changes:
                self._rev = changes[-1].revision
                self._q.put(_Item("changes", payload=changes))

    # ------------------------------------------------------------------ worker
    def _work_loop(self) -> None:
        first = True
        while True:
            items = [self._q.get()]
            while True:
                try:
                    items.append(self._q.get(block=False))
                except hub.QueueEmpty:
                    break
            if any(i.kind == "stop" for i in items):
                try:
                    self._write_checkpoint()
                except Exception:  # noqa: BLE001 — stopping anyway; the next start compiles
                    LOG.exception("writing the compile checkpoint failed")
                finally:
                    self._worker_done.set()
                return
            self._busy = True
            try:
                self._process(items)
            except Exception:  # noqa: BLE001 — the loop must survive anything a batch throws
                # Fail closed: the view may hold changes whose owners were never recompiled, so
                # every datapath recomputes everything on the retry.
                LOG.exception("controller batch of %d items failed; full recompute of every datapath",
                              len(items))
                for e in self.registry.all():
                    e.needs_full = True
                    e.last_error = "a controller batch failed"
                    self._schedule_retry(e)
            finally:
                self._busy = False
            self.batches += 1
            if first:
                first = False
            if self.check_with is not None and self._q.empty():
                self.check_compile()
            if self._q.empty():
                self.ready.set()

    def _process(self, items: list[_Item]) -> None:
        work = sum(len(it.payload) for it in items if it.kind == "changes")
        mods_before = sum(e.reconciler.stats.flow_mods for e in self.registry.all())
        carried = len(self._carry[0]) if self._carry is not None else 0
        heavy = (work + carried >= BIG_BATCH or any(it.kind in HEAVY_ITEMS for it in items)
                 or any((e.needs_full or e.needs_resync) and self.compiles(e.dpid) for e in self.registry.connected()))
        if heavy:
            self._gc_pause.pause()
        try:
            self._process_items(items)
        finally:
            more_queued = not self._q.empty()
            work += sum(e.reconciler.stats.flow_mods for e in self.registry.all()) - mods_before
            if work >= BIG_BATCH or heavy:  # a restart's compile + resync sends nothing, frees much
                self._release_due = True
            if self._release_due and not more_queued:
                # not while more work waits (a restart's compile from the port cache, then the
                # switch's connect), and before the GC is back on: the batches' young objects
                # are frozen (serve) or walked once by collect(1), not walked when the GC
                # resumes (its first young collection) and again here
                self._release_due = False
                heap.release_memory(self._gc_freeze)
            self._gc_pause.resume(more_queued)

    def _process_items(self, items: list[_Item]) -> None:
        # dirty: owners the changes name (created, deleted, moved); inputs: what the changes touched
        # (flows.engine), their readers recompile; both carried over from a batch left uncompiled
        dirty, inputs, work = self._carry if self._carry is not None else (set(), set(), _ContextWork())
        self._carry = None
        gateway_due = False           # liveness / gateway bindings to look at after this batch
        e: DatapathEntry | None
        for it in items:
            if it.kind == "changes":
                gateway_due = True
                with self.view_lock:
                    for ch in it.payload:
                        if engine.compiles_nothing(ch):  # e.g. the binder's status write
                            self.view.apply(ch)
                            continue
                        try:
                            inputs |= engine.changed_inputs(self.view, ch)
                        except Exception:  # noqa: BLE001
                            LOG.exception("inputs of %s %s rev %d failed; full recompute",
                                          ch.kind, ch.id, ch.revision)
                            for e in self.registry.all():
                                e.needs_full = True
                        if ch.kind == PORT:
                            work.port_written(self.view.port(ch.id), ch.old, ch.new)
                        elif ch.kind == CHASSIS:
                            work.full = True
                        self.view.apply(ch)
                        try:
                            dirty |= self.compiler.owners_for_change(self.view, ch)
                        except Exception:  # noqa: BLE001
                            LOG.exception("owners_for_change failed for %s %s rev %d; full recompute",
                                          ch.kind, ch.id, ch.revision)
                            for e in self.registry.all():
                                e.needs_full = True
            elif it.kind == "reset":
                try:
                    rev, data = self.store.snapshot()
                except Exception:  # noqa: BLE001 — the feed keeps asking for a reset until one works
                    LOG.exception("reloading the topology snapshot failed; flows stay until it works")
                    continue
                with self.view_lock:
                    self.view = controller_view(rev, data)
                self._rev = rev
                for e in self.registry.all():
                    e.needs_full = True
                work.full = gateway_due = True
            elif it.kind == "connected":
                datapath, ports = it.payload
                e = self.registry.entry(it.dpid)
                e.datapath, e.ports = datapath, ports
                if not e.reconciler.attached_to(datapath.send):
                    e.reconciler.attach(datapath.send, echo_patience(datapath, e.reconciler.timeout))
                if self.sole_writer and self.compiles(e.dpid) and self.is_master(e.dpid):
                    e.reconciler.prefetch()  # the switch dumps its flows while we compile (resync)
                e.needs_resync = True
                e.compiled_early = e.prewarm and e.compiled and e.ctx is not None
                if e.compiled_early:
                    # compiled from the port cache: the real ports diff against the cached ones
                    work.rebuild.add(e.dpid)
                    LOG.info("datapath %s: compiled before it connected; diffing its ports", dpid_name(e.dpid))
                else:
                    e.needs_full = True
                    e.ctx = None
                e.prewarm = False
                self._ports_changed = True
                self._ensure_chassis(e)
                if e.chassis:
                    self.liveness.connected(e.chassis)
                gateway_due = True  # e.ctx None: its context is built from scratch
            elif it.kind == "port":
                e = self.registry.get(it.dpid)
                if e is None or not e.connected:
                    continue
                reason, sp = it.payload
                if reason == "delete":
                    e.ports.pop(sp.name, None)
                else:
                    e.ports[sp.name] = sp
                work.switch_names.setdefault(e.dpid, set()).add(sp.name)
                self._ports_changed = True
            elif it.kind == "rebind":  # a binding write failed: every context and binding looked at again
                self._rebind_pending = False
                work.full = True
            elif it.kind == "disconnected":
                e = self.registry.get(it.dpid)
                if e is not None and e.datapath is it.payload:
                    LOG.info("datapath %s (%s) disconnected", dpid_name(it.dpid), e.chassis)
                    e.datapath = None
                    e.reconciler.detach(it.payload.send)  # not a newer connection already attached
                    if e.chassis:
                        self.liveness.disconnected(e.chassis, time.monotonic())
                        self._wake_liveness_at(time.monotonic() + self.gateway.dead_after)
            elif it.kind == "warm":
                self._warm_wake = False
            elif it.kind == "portcache":
                self._port_cache_wake = False
            elif it.kind == "prewarm-expire":
                e = self.registry.get(it.dpid)
                if e is not None and e.prewarm and not e.connected:
                    LOG.info("datapath %s did not connect within %.0fs of start; its compile from the port"
                             " cache is dropped", dpid_name(e.dpid), PREWARM_MAX)
                    e.prewarm = False
                    e.drop_compiled()
                    e.reconciler.drop_kept_bytes()
                    e.ctx = None
            elif it.kind == "prewarm":
                self._load_checkpoint()
            elif it.kind == "liveness":
                gateway_due = True
            elif it.kind == "resync":
                e = self.registry.get(it.dpid)
                if e is not None:
                    e.needs_resync = True
            elif it.kind == "retry":
                e = self.registry.get(it.dpid)
                if e is not None:
                    e.retry_scheduled = False
                    if e.connected and e.chassis is None:
                        self._ensure_chassis(e)
                        work.full = True
        if not gateway_due and self._defer_flush():
            # switch events only (a burst of port-statuses) and more already queued: compile with
            # the rest of the burst, so the owners its taps share (networks, routers, security
            # groups with their member lists) compile once rather than once per slice of it
            self._carry = (dirty, inputs, work)
            return
        sends: list[tuple[DatapathEntry, Callable[[], None]]] = []
        entries = [e for e in self.registry.all() if e.connected or e.prewarm]
        warm = [e for e in entries if self.standby(e.dpid)]
        own = [e for e in entries if not self.standby(e.dpid)]
        waiting = bool(warm) and any(self.compiles(e.dpid) and not self.is_master(e.dpid) for e in own)
        if not waiting:
            self._warm_since = None
        elif any(e.needs_full for e in warm):
            # a takeover waits for the switch's MASTER: a standby share never compiled (it grew
            # with the same reassignment) would make its resync wait for seconds of compiles;
            # such a chassis loses nothing by compiling in full a moment later (bounded: a
            # switch that never answers the role request does not keep it cold)
            now = time.monotonic()
            self._warm_since = self._warm_since or now
            if now - self._warm_since < WARM_LATER_MAX:
                warm = [e for e in warm if not e.needs_full]
                if not self._warm_wake:  # one wake-up pending at a time, whatever the batch rate
                    self._warm_wake = True
                    hub.spawn_after(WARM_LATER, self._q.put, _Item("warm", 0))
        for e in own + [None] + warm:
            if e is None:  # own chassis compiled: flush them before any standby compile
                self._send_all(sends)
                sends = []
                continue
            try:
                extra, moved = self._refresh_context(e, work) if work.touches(e) else (set(), set())
                send = self._converge(e, dirty | extra if extra else dirty, inputs | moved if moved else inputs)
            except Exception as exc:  # noqa: BLE001 — one datapath's failure never skips the others
                self._convergence_failed(e, exc)
                send = None
            if send is not None:
                sends.append((e, send))
            else:
                self._after_converge(e)
        self._send_all(sends)
        self._checkpointed.clear()  # its one chance was this (the prewarm) batch: free it
        if gateway_due:
            self._gateway_duties()
        if self._bindings_pending and not any(e.flush_deferred for e in self.registry.connected()):
            # after the flush: status writes never delay flows reaching the switch, and a port
            # is never ACTIVE before its flows are there (a deferred flush keeps them waiting)
            self._bind_q.put(self._bindings_pending)
            self._bindings_pending = []
        if self._ports_changed and self.port_cache:
            self._save_port_cache()

    def _convergence_failed(self, e: DatapathEntry, exc: Exception) -> None:
        LOG.error("convergence of datapath %s (%s) failed; full recompute and resync",
                  dpid_name(e.dpid), e.chassis, exc_info=exc)
        e.needs_full = e.needs_resync = True
        e.reconcile_errors += 1
        e.last_error = f"{type(exc).__name__}: {exc}"

    def _after_converge(self, e: DatapathEntry) -> None:
        if e.needs_retry() and self.is_master(e.dpid):
            self._schedule_retry(e)
        else:
            e.retry_attempt = 0

    def _send_all(self, sends: list[tuple[DatapathEntry, Callable[[], None]]]) -> None:
        """Send every datapath's bundle of this batch at once and wait for all the barriers.

        Why: compiled one after the other, the bundles used to go out one after the other too,
        each waiting for its switch's barrier before the next chassis was even sent to — so a
        change touching C chassis cost C switch round trips (and each switch's commit time) in
        series. Each datapath has its own reconciler and connection; the sends overlap, and the
        batch ends when the slowest switch has answered (or its reply timeout fired)."""
        def one(e: DatapathEntry, send: Callable[[], None]) -> None:
            try:
                send()
            except Exception as exc:  # noqa: BLE001 — one datapath's failure never skips the others
                self._convergence_failed(e, exc)

        if len(sends) > 1:
            threads = [hub.spawn(one, e, send) for e, send in sends[1:]]
            one(*sends[0])
            hub.joinall(threads)
        elif sends:
            one(*sends[0])
        for e, _send in sends:
            self._after_converge(e)

    # ------------------------------------------------------------------ gateway failover
    def _wake_liveness_at(self, when: float) -> None:
        """Have the worker look at chassis liveness again at `when` (monotonic), once."""
        if self._stopping or (self._liveness_wake is not None and self._liveness_wake <= when):
            return
        self._liveness_wake = when
        hub.spawn_after(max(0.0, when - time.monotonic()) + 0.01, self._q.put, _Item("liveness"))

    def _gateway_duties(self) -> None:
        """Liveness writes that are due, and gateway ports whose binding:host_id is not the
        active gateway chassis (controller/gateway.py). Store writes happen off the worker."""
        now = time.monotonic()
        if self._liveness_wake is not None and self._liveness_wake <= now:
            self._liveness_wake = None
        try:
            with self.view_lock:
                chassis = self.view.records(CHASSIS).values()
                writes, wake = self.liveness.due(chassis, now, self.owned_elsewhere)
                bindings = binding_updates(self.view, self._may_bind_gateway)
                self._dead_chassis = sorted(c.get("name") or "" for c in chassis
                                            if not gateway_selection.chassis_alive(c))
        except Exception:  # noqa: BLE001 — retried at the next batch; flows are not affected
            LOG.exception("gateway liveness/binding check failed")
            return
        if wake is not None:
            self._wake_liveness_at(wake)
        if writes:
            LOG.info("chassis liveness: %s", ", ".join(f"{n} {'up' if a else 'down'}" for n, a in writes))
            hub.spawn(self._write_liveness, writes)
        if bindings:
            LOG.info("gateway ports: %s", ", ".join(f"{p[:8]}→{h or '(none)'}" for p, h, _s in bindings))
            self.gateway_stats["binding_writes"] += len(bindings)
            self._bindings_pending.extend(bindings)

    def _gateway_report(self) -> dict:
        """stats.gateway: counters, chassis whose connection to us is down, chassis the store
        records as dead (what the gateway selection uses)."""
        # no view lock: stats must answer while the worker compiles (it holds the lock for a
        # whole chassis' compile); the worker refreshes `_dead_chassis` after each store batch
        return dict(self.gateway_stats, disconnected=sorted(self.liveness.down_since), dead=list(self._dead_chassis))

    def _may_bind_gateway(self, active: str | None) -> bool:
        """HA: the controller that owns the active gateway chassis writes its binding."""
        if active is None:
            return True
        rec = self.view.chassis_by_name(active)
        dpid = (rec or {}).get("datapath_id")
        return not (isinstance(dpid, int) and self.owned_elsewhere(dpid))

    def _write_liveness(self, writes: list[tuple[str, bool]]) -> None:
        for name, alive in writes:
            try:
                if self.service.set_chassis_alive(name, alive):
                    self.gateway_stats["liveness_writes"] += 1
            except Exception:  # noqa: BLE001 — the next batch or wake-up tries again
                LOG.warning("could not record chassis %s as %s", name, "up" if alive else "down", exc_info=True)
                self._wake_liveness_at(time.monotonic() + 1.0)

    def _send_announcements(self, dpid: int, datapath, items: list, left: int) -> None:
        """Send the GARPs of `items` ((flow key, PacketOut)) on `dpid` if we are still its master
        and the address still lives there; repeat `left` more times, garp_interval apart."""
        e = self.registry.get(dpid)
        if e is None or e.datapath is not datapath or not self.is_master(dpid):
            return
        live = [(k, o) for k, o in items if e.reconciler.desired_flow(k) is not None]
        if not live:
            return
        try:
            datapath.send(b"".join(wire.packet_out(self.xids.take(), o.ofport, o.data) for _k, o in live))
        except Exception:  # noqa: BLE001 — a closing connection: its successor announces
            LOG.warning("sending gratuitous ARPs to %s failed", dpid_name(dpid), exc_info=True)
            return
        e.packet_outs += len(live)
        self.gateway_stats["garps_sent"] += len(live)
        if left > 0 and not self._stopping:
            hub.spawn_after(self.gateway.garp_interval, self._send_announcements, dpid, datapath, live, left - 1)

    # ------------------------------------------------------------------ chassis and binding
    def _ensure_chassis(self, e: DatapathEntry) -> None:
        with self.view_lock:
            rec = self.view.chassis_by_datapath(e.dpid)
        if rec is not None:
            e.chassis = rec.get("name")
            return
        if not getattr(self.settings, "auto_register_chassis", True):
            LOG.warning("datapath %s has no chassis record and auto-registration is off; no flows",
                        dpid_name(e.dpid))
            e.chassis = None
            return
        name = dpid_name(e.dpid)
        try:
            rec = self.service.register_chassis(name, e.dpid)
        except Exception as exc:  # noqa: BLE001 — retried with backoff, reported as a problem
            LOG.exception("could not register chassis %s; will retry", name)
            e.chassis_failed = f"{type(exc).__name__}: {exc}"
            return
        e.chassis_failed = None
        e.chassis = (rec or {}).get("name", name) if isinstance(rec, dict) else name
        LOG.info("registered datapath %s as chassis %s", dpid_name(e.dpid), e.chassis)

    def _refresh_context(self, e: DatapathEntry, work: _ContextWork | None = None) -> tuple[set[int], set[tuple]]:
        """Bring e.ctx up to date with the switch's ports and the store; returns (owners the
        location change names, engine inputs it touched) for this chassis.

        Only local ports changed (the common case: taps come and go) → the owners those ports
        name (flows.compiler.owners_for_port_location) plus the readers of their location
        (flows.engine.location_inputs), so one new tap costs a handful of compiles, not a
        recompile of the whole chassis. Anything else → full recompile. A small batch updates
        the context in place (registry.update_context: the ports it names, not every port)."""
        with self.view_lock:
            rec = self.view.chassis_by_datapath(e.dpid)
            if rec is not None:
                e.chassis = rec.get("name")
            if e.chassis is None:
                return set(), set()
            old = e.ctx
            updated = None
            if work is not None and old is not None and not work.full and work.small() and old.name == e.chassis \
                    and e.dpid not in work.rebuild:
                updated = update_context(old, e.up, e.plugged, rec, e.ports,
                                         work.names | work.switch_names.get(e.dpid, set()), work.port_ids,
                                         lambda n: list(self.view.find_ids(IFNAME_INDEX, n)), self.view.port)
            if updated is not None and old is not None:
                ctx, up, e.plugged, only = updated
                before = {p: old.local_ports[p] for p in only if p in old.local_ports}
                after = {p: ctx.local_ports[p] for p in only if p in ctx.local_ports}
                changed = before != after
            else:
                plugged: dict[str, str] = {}
                ctx, up = build_context(e.chassis, e.dpid, rec, e.ports,
                                        lambda n: list(self.view.find_ids(IFNAME_INDEX, n)),
                                        self.view.ports_on_host(e.chassis), plugged)
                e.plugged, only = plugged, None
                before, after = (old.local_ports if old is not None else {}), ctx.local_ports
                changed = ctx != old
            extra: set[int] = set()
            moved: set[tuple] = set()
            old_up, e.up = e.up, up
            if changed:
                e.ctx = ctx
                if old is None or e.needs_full or not e.compiled or _differs_beyond_ports(old, ctx):
                    e.needs_full = True
                else:
                    extra = self._location_owners(before, after, ctx)
                    moved = engine.location_inputs(before, after)
                LOG.info("chassis %s: %d local ports, uplinks %s, tunnels %s", ctx.name, len(ctx.local_ports),
                         ctx.uplinks, ctx.tunnel_ports)
        if e.connected:  # ports from the port cache (prewarm) are not the switch's word
            self._update_bindings(e, up, old, only, old_up)
        return extra, moved

    def _location_owners(self, before: dict[str, int | None], after: dict[str, int | None],
                         ctx: ChassisContext | None = None) -> set[int]:
        """Owners touched by ports that appeared on or vanished from ctx's chassis (view lock
        held). A port plugged after it was bound here (or renumbered) names none: only the
        readers of its ofport recompile (flows.engine.location_inputs)."""
        changed = before.keys() ^ after.keys()
        owners: set[int] = set()
        for pid in changed:
            try:
                owners |= self.compiler.owners_for_port_location(self.view, pid, ctx)
            except Exception:  # noqa: BLE001 — fall back to a full recompile, logged with the port
                LOG.exception("owners for location change of port %s failed; full recompile", pid)
                for e in self.registry.all():
                    e.needs_full = True
        return owners

    def _update_bindings(self, e: DatapathEntry, up: dict[str, bool], old: ChassisContext | None,
                         only: set[str] | None = None, old_up: dict[str, bool] | None = None) -> None:
        """Queue binding/status writes for the binder thread: they go to the store, so they must
        not hold up compiling and flushing flows (1,000 taps appearing = 1,000 port updates).
        `only`: the ports an in-place context update recomputed (the others are as they were)."""
        if e.chassis is None:
            return
        if only is not None:
            todo = [(pid, e.chassis, ACTIVE if up[pid] else DOWN) for pid in only if pid in up]
            todo += [(pid, e.chassis, DOWN) for pid in only if pid not in up and old_up and pid in old_up]
        else:
            previous = {p for p, ofport in old.local_ports.items() if ofport is not None} if old is not None else set()
            todo = [(pid, e.chassis, ACTIVE if link else DOWN) for pid, link in up.items()]
            todo += [(pid, e.chassis, DOWN) for pid in previous - set(up)]
        with self.view_lock:
            todo = [t for t in todo if self._binding_differs(*t)]
        if todo:
            self._bindings_pending.extend(todo)

    def _binding_differs(self, port_id: str, host: str, status: str) -> bool:
        port = self.view.port(port_id)
        return port is not None and (port.get("binding:host_id") != host or port.get("status") != status)

    def _bind_loop(self) -> None:
        while True:
            batch = self._bind_q.get()
            if batch is None:
                return
            latest: dict[str, tuple[str, str]] = {}
            while True:
                for pid, host, status in batch:
                    latest[pid] = (host, status)
                try:
                    batch = self._bind_q.get(block=False)
                except hub.QueueEmpty:
                    break
                if batch is None:
                    return
            self._binding = True
            try:
                with self.view_lock:
                    todo = [(pid, h, s) for pid, (h, s) in latest.items() if self._binding_differs(pid, h, s)]
                self._write_bindings(todo)
                if len(todo) >= BIG_BATCH:
                    heap.release_memory(self._gc_freeze)
            finally:
                self._binding = False

    def _write_bindings(self, todo: list[tuple[str, str, str]]) -> None:
        if len(todo) > 1:
            try:
                self.service.set_port_bindings(todo)
                return
            except Exception:  # noqa: BLE001 — e.g. a store hiccup: retry one by one
                LOG.warning("batch binding of %d ports failed; writing one by one", len(todo), exc_info=True)
        for port_id, host, status in todo:
            self._bind(port_id, host, status)

    def _bind(self, port_id: str, host: str, status: str) -> None:
        try:
            self.service.set_port_binding(port_id, host, status)
        except Exception:  # noqa: BLE001 — e.g. port deleted meanwhile
            LOG.warning("could not set binding of port %s to %s/%s; looking again in %.0f s", port_id, host,
                        status, BINDING_RETRY, exc_info=True)
            # contexts are updated in place, port by port: only a full pass finds this one again
            # (one pass pending at a time, however many writes failed: a store outage fails them all)
            if not self._rebind_pending:
                self._rebind_pending = True
                hub.spawn_after(BINDING_RETRY, self._q.put, _Item("rebind", 0))

    # ------------------------------------------------------------------ compile + reconcile
    def _defer_flush(self) -> bool:
        """Coalesce without sleeping: when more events queued up while we compiled (the rest of a
        burst — OVS announces 1,000 new taps over half a second, and is too busy adding them to
        take a bundle meanwhile), keep the compiled flows and let the next batch send them all in
        one bundle. Bounded: a steady stream still flushes every FLUSH_DEFER_MAX seconds."""
        if FLUSH_DEFER_MAX <= 0 or self._q.empty():
            self._defer_since = None
            return False
        now = time.monotonic()
        if self._defer_since is None:
            self._defer_since = now
        elif now - self._defer_since >= FLUSH_DEFER_MAX:
            self._defer_since = None
            return False
        self.deferred_flushes += 1
        return True

    def _converge(self, e: DatapathEntry, dirty: set[int], inputs: set[tuple]) -> Callable[[], None] | None:
        """Compile `e`'s dirty owners; returns its send (run by _send_all), or None (nothing to send)."""
        if e.ctx is None:
            return None
        if not self.compiles(e.dpid):  # HA: another controller owns it — its compile, not ours
            if e.compiled or e.reconciler.owners():
                LOG.info("chassis %s is owned elsewhere: its desired flows are dropped here", e.ctx.name)
                e.drop_compiled()
            e.needs_full = e.needs_resync = True
            self._announce.pop(e.dpid, None)
            return None
        rec = e.reconciler
        t0 = time.monotonic()
        with self.view_lock:
            pending = self._announce.setdefault(e.dpid, [])
            sink = _ReconcilerSink(e, self.compiler, pending if self.gateway.garp_count > 0 else None)
            full = e.needs_full
            if full and self._checkpointed and self._restore_checkpoint(e):
                full = e.needs_full = False  # the previous process's compile of this very state
                e.listing_failed = None
                e.compiled = e.from_checkpoint = True
            if full:
                e.from_checkpoint = False
                # per owner, not compile_chassis: one broken owner must not block all the others
                try:
                    e.engine.full(self.compiler, self.view, e.ctx, sink)
                except Exception as exc:  # noqa: BLE001 — the listing failed: reported, retried
                    LOG.exception("listing owners for chassis %s failed; keeping previous flows", e.ctx.name)
                    e.compile_errors += 1
                    e.listing_failed = f"{type(exc).__name__}: {exc}"
                else:
                    e.listing_failed = None
                    e.needs_full = False
                    e.compiled = True
            else:
                named = dirty | e.failed_owners.keys() if e.failed_owners else dirty
                try:
                    e.engine.step(self.compiler, self.view, e.ctx, named, inputs, sink)
                except ListingError as exc:
                    LOG.error("re-listing owners for chassis %s failed (%s); full recompute on retry",
                              e.ctx.name, exc)
                    e.compile_errors += 1
                    e.listing_failed = str(exc)
                    e.needs_full = True
        t1 = time.monotonic()
        metrics.observe_compile(dpid_name(e.dpid), t1 - t0)
        if not e.connected:  # compiled from the port cache (prewarm): the switch comes later
            e.needs_resync = True
            LOG.info("chassis %s compiled before its switch connected in %.3fs", e.ctx.name, t1 - t0)
            return None
        if not self.is_master(e.dpid) or not e.compiled:
            # HA: slave (or owner still waiting for the switch's MASTER) — warm, never sends;
            # resync when made master. Never compiled (its listing failed): sending would delete
            # every flow the previous master left, so nothing goes out until a full compile works.
            e.needs_resync = True
            self._announce.pop(e.dpid, None)  # the master announces
            return None
        if not e.needs_resync and rec.installed_known and self._defer_flush():
            e.flush_deferred = True  # the batch already queued sends it, with its own changes
            return None
        e.flush_deferred = False
        return lambda: self._send(e, t0, t1, full)

    def _send(self, e: DatapathEntry, t0: float, t1: float, full: bool = False) -> None:
        """Converge the switch with what _converge compiled (see _send_all: runs alongside the
        other datapaths' sends of the batch)."""
        rec = e.reconciler
        name = e.ctx.name if e.ctx is not None else dpid_name(e.dpid)
        resync = e.needs_resync or not rec.installed_known
        try:
            if resync:
                sent = rec.resync()
                e.needs_resync = False
            else:
                sent = rec.flush()
        except Exception as exc:  # noqa: BLE001 — whatever it was, the switch is read back next time
            if isinstance(exc, ReconcileError):
                LOG.error("reconcile of %s failed: %s; will resync", name, exc)
            else:
                LOG.exception("reconcile of %s failed; will resync", name)
            e.needs_resync = True
            e.reconcile_errors += 1
            e.last_error = f"{type(exc).__name__}: {exc}"
            return
        if sent or full or resync:  # a restart's full compile and resync are logged even if nothing changed
            LOG.info("chassis %s: %scompile %.3fs, %s%d flow-mods in %.3fs (sent with the batch's others)",
                     name, "full " if full else "", t1 - t0, "resync + " if resync else "", sent,
                     time.monotonic() - t1)
        garps = self._announce.pop(e.dpid, None)
        if garps and e.datapath is not None:  # the flows that answer for them are on the switch now
            self._send_announcements(e.dpid, e.datapath, garps, self.gateway.garp_count - 1)

    def check_compile(self) -> list[str]:
        """Check mode: compile every healthy datapath from scratch — fresh app instances, a fresh
        copy of the view — and compare with what the incremental engine declared. Any difference
        is a bug in an app's owners_for_* answers or a read the engine did not record
        (flows/engine.py); it is logged and counted."""
        try:
            apps = self.check_with() if self.check_with is not None else []
            _configure(apps, self.settings)
        except Exception as exc:  # noqa: BLE001 — the check itself failing counts as a difference
            LOG.exception("check mode: fresh app instances could not be made")
            self.check_failures += 1
            return [f"fresh apps: {type(exc).__name__}: {exc}"]
        fresh_apps = AppCompiler(apps).flow_apps
        with self.view_lock:
            view = controller_view(self.view.revision, {k: dict(self.view.records(k)) for k in KINDS})
            entries = [(e.ctx, {f.key: f for f in e.reconciler.desired_flows()})
                       for e in self.registry.connected()
                       if e.ctx is not None and e.compiled and not e.problems()]
        found = []
        for ctx, declared in entries:
            try:
                fresh = compiler.compile_chassis(fresh_apps, view, ctx)
            except Exception as exc:  # noqa: BLE001 — a check that cannot run is a difference too
                found.append(f"{ctx.name}: fresh compile failed: {type(exc).__name__}: {exc}")
                continue
            want = {f.key: f for flows in fresh.values() for f in flows}
            missing = [want[k] for k in want.keys() - declared.keys()]
            extra = [declared[k] for k in declared.keys() - want.keys()]
            changed = [want[k] for k in want.keys() & declared.keys() if want[k] != declared[k]]
            for label, flows in (("missing", missing), ("extra", extra), ("changed", changed)):
                for f in sorted(flows, key=lambda f: f.key)[:5]:
                    found.append(f"{ctx.name}: {label} ({owner_label(f.cookie)}) {f.ofctl()}")
        if found:
            self.check_failures += 1
            LOG.error("check mode: incremental compile differs from a fresh one:\n  %s", "\n  ".join(found))
        return found

    def desired_flows(self, e: DatapathEntry, owner: int | None = None) -> list[Flow]:
        """What this controller wants on `e` (sorted like Reconciler.desired_flows), for the
        inspection API (tenantflow flows --diff, trace) on any controller: a chassis compiled here
        answers from its desired state; one owned elsewhere (HA: not compiled here) is compiled
        afresh from the current view, without keeping anything."""
        if e.compiled or e.ctx is None:
            return e.reconciler.desired_flows(owner)
        with self.view_lock:
            fresh = compiler.compile_chassis(self.compiler.flow_apps, self.view, e.ctx)
        flows = [f for o, fl in fresh.items() if owner is None or o == owner for f in fl]
        return sorted(flows, key=lambda f: (f.table, -f.priority, f.match))

    def _schedule_retry(self, e: DatapathEntry) -> None:
        """Converge `e` again after a growing delay (RETRY_FIRST doubling up to RETRY_MAX)."""
        if e.retry_scheduled or self._stopping:
            return
        delay = min(RETRY_MAX, RETRY_FIRST * 2 ** e.retry_attempt)
        e.retry_attempt += 1
        e.retry_scheduled = True
        hub.spawn_after(delay, self._q.put, _Item("retry", e.dpid))

    # ------------------------------------------------------------------ inspection
    def stats(self) -> dict:
        """A snapshot read without the view lock (stats must answer while the worker compiles),
        so a dict the worker resizes mid-read can raise RuntimeError: read again (bounded)."""
        for attempt in range(STATS_READ_ATTEMPTS):
            try:
                return self._stats_once()
            except RuntimeError as exc:
                if attempt == STATS_READ_ATTEMPTS - 1 or "changed size during iteration" not in str(exc):
                    raise
                LOG.debug("stats: %s while the worker ran; reading again", exc)
                time.sleep(0.001)
        raise AssertionError("unreachable")

    def _stats_once(self) -> dict:
        out = {}
        for e in self.registry.all():
            out[dpid_name(e.dpid)] = dict(e.reconciler.stats.as_dict(), chassis=e.chassis,
                                          connected=e.connected, packet_ins=e.packet_ins,
                                          # the OpenFlow connection is up (receive thread); `connected`:
                                          # the worker has taken it in (after a compile under way)
                                          switch_connected=e.reconciler.connected,
                                          packet_in_errors=e.packet_in_errors, packet_outs=e.packet_outs,
                                          desired_flows=e.reconciler.desired_count(),
                                          installed_flows=len(e.reconciler.installed),
                                          desired_meters=e.reconciler.meters.desired_count(),
                                          installed_meters=len(e.reconciler.meters.installed),
                                          healthy=not (problems := e.problems()), problems=problems,
                                          compile_errors=e.compile_errors,
                                          reconcile_errors=e.reconcile_errors,
                                          master=self.is_master(e.dpid), compiled=e.compiled,
                                          compiled_before_connect=e.compiled_early,
                                          from_checkpoint=e.from_checkpoint)
        return {"datapaths": out, "revision": getattr(self, "_rev", 0), "batches": self.batches,
                "deferred_flushes": self.deferred_flushes, "check_failures": self.check_failures, "ha": self.ha_stats(),
                "gateway": self._gateway_report(), "gc": self._gc_freeze.stats(),
                "checkpoint": dict(self.checkpoint_stats),
                "idle": self._q.empty() and not self._busy and self._bind_q.empty() and not self._binding}
