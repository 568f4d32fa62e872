"""The explicit incremental engine: every compile says what it read; a change recompiles its readers.

Why: which owners to recompile after a change used to be guessed by each app, helped by private
memos of what had been compiled before — so the answer depended on compile history. Here (after
OVN's lib/inc-proc-eng.h) a compile runs against a *recording* view and chassis context; the
engine keeps, per datapath, what each owner's last compile read and the reverse index
input → owners. After a batch, the inputs the changes touched name exactly the owners to
recompile. Nothing is remembered that the current view and context cannot recompute.

Inputs (hashable tuples; `changed_inputs` / `location_inputs` produce the same shapes):
  ("rec", kind, id)        a record read by id (view.get, view.port, …)
  ("key", kind, key)       a record read by its `_key` (view.by_key)
  ("ids", index, value)    which ids an index bucket holds (view.find_ids): membership only
  ("idx", index, value)    an index bucket's records (view.find and the named queries):
                           membership and every member's content
  ("all", kind)            every record of a kind (view.records)
  ("hosts", network)       view.hosts_of_network;  ("nets", host): view.networks_on_host
  ("revision",)            view.revision (changes with every change)
  ("local", port id)       whether a port is here (`id in ctx.local_ports`: plugged, or bound
                           here by binding:host_id and not plugged yet)
  ("ofport", port id)      its ofport here (ctx.local_ports.get / [id]; None while not plugged):
                           a pre-bound port's tap appearing changes only this input, so only
                           the flows that name the ofport recompile
  ("local*",)              the whole set of local ports (iterating or len(ctx.local_ports); a
                           loop that only picks the smaller side of a join uses `size_hint`)
  ("ofport*",)             every port's ofport (ctx.local_ports.items() / values())
  ("fact", name, args)     a derived input (see `fact`)
The rest of ChassisContext (name, uplinks, tunnel ports, tunnel IP) is not recorded: when it
changes the core recompiles the whole chassis (controller.core._differs_beyond_ports).

Facts are the engine's early cut-off: "is network N present on this chassis" is read by every
port of N, but its value flips rarely. A function decorated with `@fact` is evaluated once per
datapath, its own reads recorded; owners record only ("fact", …). When a change touches the
fact's reads it is re-evaluated, and only if its value differs are its readers recompiled — so
one more port on a network already here recompiles O(1) owners, not every port of the network.

Which owners exist on a chassis comes from the apps (owners_for_chassis, a full listing) and
from the owners each change names (owners_for_change: created, deleted, moved objects). The
listing is re-run when a fact flips or is first evaluated in an incremental step (something
reached or left this chassis: a network, a security group); owners no longer listed are
withdrawn. A tap appearing is not a reason by itself: its port names its own owners
(owners_for_port_location), and if it brings a network or group here, a fact flips.
"""
from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import AbstractSet, Any, Callable, Iterable, Iterator, Protocol

from flows.flow import Flow
from topology.store import Change, Record
from topology.view import IndexQueries, parse_datapath_id

Input = tuple
_REVISION: Input = ("revision",)
_LOCAL_ALL: Input = ("local*",)
_OFPORT_ALL: Input = ("ofport*",)


# ------------------------------------------------------------------ facts

_FACT_NAMES: dict[Callable[..., Any], str] = {}  # fn → "module.qualname", its input's name (made once)


def fact(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Mark `fn(view, ctx, *args) -> hashable value` as a derived input of the engine.

    On a plain view it is just called. Under the engine's recording view, its value is kept per
    datapath and re-evaluated when one of its own reads changes; the compile that asked records
    only the fact, so it is recompiled when the value changes, not whenever the fact's inputs do.
    `fn` must be a pure function of what it reads through `view` and `ctx`."""
    _FACT_NAMES[fn] = f"{fn.__module__}.{fn.__qualname__}"

    @functools.wraps(fn)
    def wrapper(view, ctx, *args):
        evaluate = getattr(view, "evaluate_fact", None)
        if evaluate is None:
            return fn(view, ctx, *args)
        return evaluate(fn, args)
    return wrapper


def _fact_name(fn: Callable[..., Any]) -> str:
    name = _FACT_NAMES.get(fn)
    if name is None:
        name = _FACT_NAMES[fn] = f"{fn.__module__}.{fn.__qualname__}"
    return name


@dataclasses.dataclass(slots=True)
class _Fact:
    fn: Callable[..., Any]
    args: tuple
    value: Any
    reads: frozenset


# ------------------------------------------------------------------ recording view and context
# Cost matters here: every read of every compile passes through these (≈ 30 reads per owner,
# 30,000 for a 1,000-port chassis). Hence: bound `reads.add` kept in a slot, no per-compile
# dataclasses.replace (the engine reuses one recorder per batch and points it at each compile's
# set, `_use`), and the owner's own record — asked by every app of a compile — read once.

class _RecordingPorts(Mapping):
    """ctx.local_ports that notes what is asked: whether one port is here (("local", id)), its
    ofport (("ofport", id)), or the whole set."""

    __slots__ = ("_ports", "_reads", "_add")

    def __init__(self, ports: Mapping[str, int], reads: set) -> None:
        self._ports = ports
        self._use(reads)

    def _use(self, reads: set) -> None:
        self._reads, self._add = reads, reads.add

    def __getitem__(self, pid: str) -> int | None:
        self._add(("ofport", pid))
        return self._ports[pid]

    def __contains__(self, pid: object) -> bool:
        self._add(("local", pid))
        return pid in self._ports

    def get(self, pid: str, default: Any = None) -> Any:
        self._add(("ofport", pid))
        return self._ports.get(pid, default)

    def __iter__(self) -> Iterator[str]:
        self._add(_LOCAL_ALL)
        return iter(self._ports)

    def __len__(self) -> int:
        self._add(_LOCAL_ALL)
        return len(self._ports)

    def keys(self):
        self._add(_LOCAL_ALL)
        return self._ports.keys()

    def items(self):
        self._add(_LOCAL_ALL)
        self._add(_OFPORT_ALL)
        return self._ports.items()

    def values(self):
        self._add(_LOCAL_ALL)
        self._add(_OFPORT_ALL)
        return self._ports.values()


def size_hint(ports: Mapping[str, int]) -> int:
    """len(ctx.local_ports) *without* recording it: only for choosing which side of a join to
    loop over, never for the result (each loop records exactly what decides the result)."""
    return len(ports._ports) if isinstance(ports, _RecordingPorts) else len(ports)


def recording_context(ctx, reads: set):
    """A copy of a ChassisContext whose local_ports records reads into `reads`."""
    return dataclasses.replace(ctx, local_ports=_RecordingPorts(ctx.local_ports, reads))


class RecordingView(IndexQueries):
    """The TopologyView queries compilers use, each noting its input in `reads`. Anything else
    raises AttributeError: an unrecorded read would make the engine miss a dependency."""

    __slots__ = ("_view", "_ctx", "_rctx", "_reads", "_add", "_engine", "_kkind", "_kkey", "_krec",
                 "_gkind", "_grid", "_grec")
    _kkind: str | None       # the last by_key asked in this compile, and its answer
    _kkey: int | None
    _krec: Record | None
    _gkind: str | None       # the last get asked in this compile, and its answer
    _grid: str | None
    _grec: Record | None

    def __init__(self, view, ctx, reads: set, engine: "ChassisEngine | None", rctx=None) -> None:
        self._view, self._ctx, self._engine = view, ctx, engine
        self._rctx = rctx  # recording_context(ctx, reads), made when first needed
        self._use(reads)

    def _use(self, reads: set) -> None:
        """Record into `reads` from now on (the engine reuses one recorder for many compiles)."""
        self._reads, self._add = reads, reads.add
        if self._rctx is not None:
            self._rctx.local_ports._use(reads)
        self._kkind = self._kkey = self._krec = None
        self._gkind = self._grid = self._grec = None

    def context(self):
        """The recording ChassisContext that goes with this view (same reads)."""
        if self._rctx is None:
            self._rctx = recording_context(self._ctx, self._reads)
        return self._rctx

    # facts: evaluated (and kept) by the engine; inside a fact, nested facts are just called
    def evaluate_fact(self, fn: Callable[..., Any], args: tuple) -> Any:
        if self._engine is None:
            return fn(self, self.context(), *args)
        key = ("fact", _fact_name(fn), args)
        self._add(key)
        return self._engine.fact_value(key, fn, args, self._view, self._ctx)

    @property
    def revision(self) -> int:
        self._add(_REVISION)
        return self._view.revision

    def add_index(self, kind: str, name: str, keyfunc: Callable[[Record], Iterable[Any]]) -> None:
        self._view.add_index(kind, name, keyfunc)  # registering an index reads nothing

    def has_index(self, name: str) -> bool:
        return self._view.has_index(name)

    # plain access
    def get(self, kind: str, rid: str | None) -> Record | None:
        # most gets repeat the one before (each app of a compile looks up the owner's network,
        # port, …): the same answer, recorded once — as by_key below
        if rid == self._grid and kind == self._gkind:
            return self._grec
        self._add(("rec", kind, rid))
        rec = self._grec = self._view.get(kind, rid)
        self._gkind, self._grid = kind, rid
        return rec

    def records(self, kind: str) -> Mapping[str, Record]:
        self._add(("all", kind))
        return self._view.records(kind)

    def by_key(self, kind: str, key: int) -> Record | None:
        # every app of a compile asks for the owner's record by key: the same answer, read once
        # (the view does not change during a compile; `_use` forgets it before the next one)
        if key == self._kkey and kind == self._kkind:
            return self._krec
        self._add(("key", kind, key))
        rec = self._krec = self._view.by_key(kind, key)
        self._kkind, self._kkey = kind, key
        return rec

    # indexes
    def find(self, name: str, value: Any) -> list[Record]:
        self._add(("idx", name, value))
        return self._view.find(name, value)

    def find_ids(self, name: str, value: Any) -> AbstractSet[str]:
        self._add(("ids", name, value))
        return self._view.find_ids(name, value)

    def hosts_of_network(self, network_id: str | None) -> AbstractSet[str]:
        self._add(("hosts", network_id))
        return self._view.hosts_of_network(network_id)

    def networks_on_host(self, host: str | None) -> AbstractSet[str]:
        self._add(("nets", host))
        return self._view.networks_on_host(host)

    def chassis_by_name(self, name: str | None) -> Record | None:
        if not name:
            return None
        self._add(("idx", "chassis.name", name))
        return self._view.chassis_by_name(name)

    def chassis_by_datapath(self, dpid: int | str) -> Record | None:
        self._add(("idx", "chassis.datapath", parse_datapath_id(dpid)))
        return self._view.chassis_by_datapath(dpid)


# ------------------------------------------------------------------ what a change touches

# Port fields no compiler reads: the binder's ACTIVE/DOWN write (and the bookkeeping every write
# bumps). A change of only these recompiles nothing anywhere — at 20 chassis that write used to
# recompile the port's readers on each of them, for the same flows. Check mode
# (controller.core.check_compile) would catch a compiler that started reading one.
UNREAD_PORT_FIELDS = frozenset({"status", "updated_at", "revision_number"})


def compiles_nothing(change: Change) -> bool:
    """True for a port update that changed only fields no compiler reads (UNREAD_PORT_FIELDS)."""
    old, new = change.old, change.new
    if change.kind != "port" or old is None or new is None:
        return False
    keys = old.keys() | new.keys()
    return all(old.get(k) == new.get(k) for k in keys - UNREAD_PORT_FIELDS)


def changed_inputs(view, change: Change, before=None) -> set[Input]:
    """The inputs a store change touches. Call *before* view.apply(change); `before` is the
    view's record before the change (defaults to what the view holds now)."""
    kind, rid = change.kind, change.id
    if before is None:
        before = view.get(kind, rid)
    old = change.old
    if before is None:
        olds = [old] if old is not None else []
    elif old is None or old is before or old == before:  # usually the same record: index it once
        olds = [before]
    else:
        olds = [before, old]
    new = change.new
    out: set[Input] = {("rec", kind, rid), ("all", kind), _REVISION}
    for r in (*olds, new):
        if r is not None and r.get("_key") is not None:
            out.add(("key", kind, r["_key"]))
    new_values = view.index_values(kind, new)
    old_values: dict[str, set] = {}
    for r in olds:
        for name, values in view.index_values(kind, r).items():
            old_values.setdefault(name, set()).update(values)
    for name, after in new_values.items():
        before_values = old_values.get(name, set())
        for v in before_values | after:
            out.add(("idx", name, v))
        moved = before_values ^ after
        for v in moved:
            out.add(("ids", name, v))
        if name == "port.network_host":
            for net, host in moved:
                out.add(("hosts", net))
                out.add(("nets", host))
    return out


def location_inputs(before: Mapping[str, int | None], after: Mapping[str, int | None]) -> set[Input]:
    """The inputs a chassis' local-port change touches: ports that came or went (("local", id),
    ("ofport", id)), ports whose ofport changed (("ofport", id) only: plugged after being bound
    here, renumbered), and the whole-set inputs when the set or any ofport changed."""
    # (port, ofport) pairs in one and not the other, in C; then the exact tests on those few
    candidates = {p for p, _ in before.items() ^ after.items()}
    moved = {p for p in candidates if (p in before) != (p in after)}
    out: set[Input] = {("local", p) for p in moved}
    out |= {("ofport", p) for p in candidates if before.get(p) != after.get(p)}
    if moved:
        out.add(_LOCAL_ALL)
    if candidates:
        out.add(_OFPORT_ALL)
    return out


# ------------------------------------------------------------------ the per-datapath engine

class OwnerCompiler(Protocol):
    """What the engine drives (controller.core.AppCompiler: the apps bound to flows.compiler)."""

    def compile_owner(self, view, ctx, owner: int) -> frozenset[Flow]: ...

    def owners_for_chassis(self, view, ctx) -> set[int]: ...


class Sink(Protocol):
    """Where compiled owners go (the datapath's reconciler); `failed` withdraws and reports."""

    def owners(self) -> set[int]: ...

    def put(self, owner: int, flows: frozenset[Flow]) -> None: ...

    def failed(self, owner: int, exc: Exception) -> None: ...


class ListingError(RuntimeError):
    """Listing a chassis' owners failed during an incremental step (the caller goes full)."""


class ChassisEngine:
    """One datapath's dependency state: owner → inputs read, input → owners, facts."""

    def __init__(self) -> None:
        self.reads: dict[int, tuple[Input, ...]] = {}
        # input → the owners that read it: an int while one owner does (most inputs: no set
        # object per input for the GC to count), a set once several do; see readers_of
        self.readers: dict[Input, int | set[int]] = {}
        # input read by several owners → one of its equal tuple objects, which later owners' reads
        # tuples hold instead of their own (each read makes a new tuple: at 10,000 ports ≈ 100,000
        # duplicates of inputs such as ("rec", "network", id) or a fact, ≈ 6 MB)
        self._canon: dict[Input, Input] = {}
        self.facts: dict[Input, _Fact] = {}
        self.fact_readers: dict[Input, set[Input]] = {}   # raw input → facts that read it
        self.compiles = 0          # owner compiles so far (tests count them; never reset by us)
        self.relist_needed = False  # a fact flipped or appeared: the owner listing may differ
        # one recording view (+ context) for owner compiles and one for fact evaluations, reused
        # while view and ctx stay the same objects (a batch); dropped after each full/step
        self._owner_rec: RecordingView | None = None
        self._fact_rec: RecordingView | None = None

    # ---------------------------------------------------------------- bookkeeping
    def owners(self) -> set[int]:
        return set(self.reads)

    def clear(self) -> None:
        self._owner_rec = self._fact_rec = None
        self.reads.clear()
        self.readers.clear()
        self._canon.clear()
        self.facts.clear()
        self.fact_readers.clear()
        self.relist_needed = False

    def forget(self, owner: int) -> None:
        self._unread(owner, self.reads.pop(owner, ()))

    # ---------------------------------------------------------------- checkpoint
    def export_state(self) -> dict[str, Any]:
        """What a later process needs to carry on from this engine's last compile without
        compiling again (controller/checkpoint.py): plain data only. A fact's function goes by
        its name (the module attribute is the @fact wrapper, not the function kept here)."""
        return {"reads": self.reads, "readers": self.readers, "canon": self._canon,
                "facts": [(key, f.args, f.value, f.reads) for key, f in self.facts.items()],
                "fact_readers": self.fact_readers}

    def restore_state(self, state: Mapping[str, Any]) -> None:
        """The state `export_state` gave, from the same code over the same view and context.
        Raises KeyError for a fact this code does not define (nothing is changed then)."""
        fns = {name: fn for fn, name in _FACT_NAMES.items()}
        facts = {key: _Fact(fns[key[1]], args, value, reads) for key, args, value, reads in state["facts"]}
        self.clear()
        self.reads, self.readers, self._canon = state["reads"], state["readers"], state["canon"]
        self.facts, self.fact_readers = facts, state["fact_readers"]

    def readers_of(self, i: Input) -> set[int]:
        """The owners whose last compile read input `i`."""
        got = self.readers.get(i)
        if got is None:
            return set()
        return {got} if isinstance(got, int) else set(got)

    def _unread(self, owner: int, inputs: Iterable[Input]) -> None:
        readers = self.readers
        for i in inputs:
            owners = readers.get(i)
            if owners is None:
                continue
            if isinstance(owners, int):
                if owners != owner:
                    continue
            else:
                owners.discard(owner)
                if owners:
                    continue
            del readers[i]
            if self._canon:
                self._canon.pop(i, None)
            if i in self.facts:
                self._drop_fact(i)

    def _record(self, owner: int, reads: set) -> None:
        """owner now reads `reads`: update the reverse index by difference (so a fact read by
        this owner alone survives its recompile)."""
        old = self.reads.get(owner)
        readers = self.readers
        if old:
            if len(old) == len(reads) and reads.issuperset(old):
                return  # the same inputs as last time (the common recompile): nothing moves
            gone = set(old)
            fresh = reads - gone
            gone -= reads
        else:
            fresh, gone = reads, None
        canon = self._canon
        for i in fresh:
            got = readers.get(i)
            if got is None:
                readers[i] = owner
            elif isinstance(got, int):
                if got != owner:
                    readers[i] = {got, owner}
                    canon.setdefault(i, i)
            else:
                got.add(owner)
        # a tuple: a third of a frozenset's memory; of the canonical input objects where known
        self.reads[owner] = tuple(map(canon.get, reads, reads)) if canon else tuple(reads)
        if gone:
            self._unread(owner, gone)

    def _recorder(self, view, ctx, reads: set, engine: "ChassisEngine | None") -> RecordingView:
        """The recording view for one compile (engine=self) or fact evaluation (engine=None),
        pointed at `reads`: reused while view and ctx are the same objects."""
        rec = self._owner_rec if engine is not None else self._fact_rec
        if rec is not None and rec._view is view and rec._ctx is ctx:
            rec._use(reads)
            return rec
        rec = RecordingView(view, ctx, reads, engine)
        if engine is not None:
            self._owner_rec = rec
        else:
            self._fact_rec = rec
        return rec

    def _done(self) -> None:
        """End of a batch: the recorders must not keep a view alive."""
        self._owner_rec = self._fact_rec = None

    def _drop_fact(self, key: Input) -> None:
        f = self.facts.pop(key)
        for i in f.reads:
            facts = self.fact_readers.get(i)
            if facts is not None:
                facts.discard(key)
                if not facts:
                    del self.fact_readers[i]

    def _sweep_unread_facts(self, keys: Iterable[Input]) -> None:
        for key in keys:
            if key in self.facts and key not in self.readers:
                self._drop_fact(key)

    # ---------------------------------------------------------------- facts
    def fact_value(self, key: Input, fn: Callable[..., Any], args: tuple, view, ctx) -> Any:
        f = self.facts.get(key)
        if f is not None:
            return f.value
        self.relist_needed = True  # first asked here: something new reached this chassis
        return self._evaluate(key, fn, args, view, ctx).value

    def _evaluate(self, key: Input, fn: Callable[..., Any], args: tuple, view, ctx) -> _Fact:
        reads: set = set()
        rec = self._recorder(view, ctx, reads, None)
        value = fn(rec, rec.context(), *args)
        old = self.facts.get(key)
        if old is not None:
            self._drop_fact(key)
        f = self.facts[key] = _Fact(fn, args, value, frozenset(reads))
        for i in f.reads:
            self.fact_readers.setdefault(i, set()).add(key)
        return f

    # ---------------------------------------------------------------- compiling
    def compile(self, compiler: OwnerCompiler, view, ctx, owner: int) -> frozenset[Flow]:
        """Compile one owner through the recording view; remember what it read."""
        reads: set = set()
        self.compiles += 1
        rec = self._recorder(view, ctx, reads, self)
        try:
            flows = compiler.compile_owner(rec, rec.context(), owner)
        except Exception:
            self.forget(owner)  # a failed owner is recompiled on every retry anyway
            self._sweep_unread_facts(i for i in reads if i[0] == "fact")
            raise
        self._record(owner, reads)
        return flows

    def invalidate(self, inputs: Iterable[Input], view, ctx) -> set[int]:
        """Owners whose last compile read one of `inputs` (after facts' early cut-off)."""
        dirty: set[int] = set()
        stale: set[Input] = set()
        readers = self.readers
        for i in inputs:
            got = readers.get(i)
            if got is not None:
                if isinstance(got, int):
                    dirty.add(got)
                else:
                    dirty |= got
            facts = self.fact_readers.get(i)
            if facts:
                stale |= facts
        for key in stale:
            f = self.facts[key]
            before = f.value
            if self._evaluate(key, f.fn, f.args, view, ctx).value != before:
                dirty |= self.readers_of(key)
                self.relist_needed = True
        return dirty

    def _compile_into(self, compiler: OwnerCompiler, view, ctx, owners: Iterable[int], sink: Sink) -> None:
        for owner in owners:
            try:
                sink.put(owner, self.compile(compiler, view, ctx, owner))
            except Exception as exc:  # noqa: BLE001 — the sink withdraws and reports it
                self.forget(owner)
                sink.failed(owner, exc)

    def full(self, compiler: OwnerCompiler, view, ctx, sink: Sink) -> None:
        """Everything afresh: list the chassis' owners (may raise: nothing changed then),
        withdraw what is not listed, compile every listed owner."""
        listed = set(compiler.owners_for_chassis(view, ctx))
        self.clear()
        for owner in sink.owners() - listed:
            sink.put(owner, frozenset())
        try:
            self._compile_into(compiler, view, ctx, listed, sink)
        finally:
            self._done()
        self.relist_needed = False

    def step(self, compiler: OwnerCompiler, view, ctx, named: Iterable[int], inputs: Iterable[Input],
             sink: Sink, relist: bool = False) -> set[int]:
        """One incremental batch: recompile the owners `named` by the changes plus every owner
        that read a changed input; re-list the chassis' owners when a fact flipped or appeared
        or `relist` (see module doc).
        Returns the owners compiled. Raises ListingError (after compiling) if listing failed."""
        try:
            return self._step(compiler, view, ctx, named, inputs, sink, relist)
        finally:
            self._done()

    def _step(self, compiler: OwnerCompiler, view, ctx, named: Iterable[int], inputs: Iterable[Input],
              sink: Sink, relist: bool) -> set[int]:
        self.relist_needed = False
        inputs = set(inputs)
        dirty = set(named) | self.invalidate(inputs, view, ctx)
        self._compile_into(compiler, view, ctx, dirty, sink)
        if relist or self.relist_needed:
            try:
                listed = set(compiler.owners_for_chassis(view, ctx))
            except Exception as exc:
                raise ListingError(f"{type(exc).__name__}: {exc}") from exc
            for owner in (sink.owners() | self.owners()) - listed:
                self.forget(owner)
                sink.put(owner, frozenset())
            new = listed - self.owners() - dirty
            self._compile_into(compiler, view, ctx, new, sink)
            dirty |= new
        self.relist_needed = False
        return dirty
