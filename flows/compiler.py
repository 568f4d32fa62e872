"""Generic driver over the feature apps: desired flows per owner, and which owners a change touches.

Why a driver: the core should not know what an app is for. It asks "which owners does this
change name?" (`owners_for_change`: created, deleted, moved objects), and flows/engine.py adds
every owner whose last compile read an input the change touched; the reconciler diffs each
owner's frozenset against what it believes installed. Several apps may
contribute to one owner; their flows are unioned. With CHECK_FLOWS (default on; the runtime may
switch it off) every flow is checked against the pipeline map, must carry its owner's cookie,
and no two flows of a chassis may share a key (table, priority, match) with different bodies.

Convention: call owners_for_change/changed_owners *after* view.apply(change); deletions are
resolved from change.old.
"""
from __future__ import annotations

import logging
from typing import Iterable, Mapping

from flows.flow import CT, Flow, GotoTable, Resubmit
from flows.tables import PIPELINE, PipelineError, check_flow, owner_label
from topology.store import Change
from topology.view import View

LOG = logging.getLogger(__name__)

CHECK_FLOWS = True

FlowsByOwner = dict[int, frozenset[Flow]]


class CompileError(RuntimeError):
    """An app failed or produced an invalid flow for an owner; carries the context to log."""

    def __init__(self, message: str, owner: int, app: str, chassis: str):
        super().__init__(f"{message} (owner={_owner_text(owner)}, app={app}, chassis={chassis})")
        self.owner, self.app, self.chassis = owner, app, chassis


def _owner_text(owner: int) -> str:
    return f"{owner_label(owner)} ({owner:#x})"


# table → tables it may jump to, as plain ints: the per-flow check runs for every compiled flow
# (tens of thousands on a resync), so it avoids enum lookups; a violation is re-checked by
# tables.check_flow, which raises with the full message.
_NEXT: dict[int, frozenset] = {int(t): frozenset(int(n) for n in spec.next_tables) for t, spec in PIPELINE.items()}
_JUMPS = (GotoTable, Resubmit, CT)


def _check(flows: Iterable[Flow], owner: int, app: str, ctx) -> None:
    """Cookie and pipeline check of every flow: the quick test (table declared, every jump
    allowed) inline, as it runs per compiled flow; a failure goes to check_flow for the message."""
    nexts, jumps = _NEXT, _JUMPS
    for f in flows:
        if f.cookie != owner:
            raise CompileError(f"flow carries cookie {f.cookie:#x}: {f.ofctl()}", owner, app, ctx.name)
        nxt = nexts.get(f.table)
        if nxt is not None:
            for a in f.actions:
                if type(a) in jumps:
                    target = a.table
                    if target is not None and target not in nxt:
                        break
            else:
                continue
        try:
            check_flow(f)
        except PipelineError as exc:
            raise CompileError(str(exc), owner, app, ctx.name) from exc


def compile_owner(apps: Iterable, view: View, ctx, owner: int, check: bool | None = None) -> frozenset[Flow]:
    """Union of every app's flows for `owner` on ctx's chassis (empty = owner has no flows there)."""
    check = CHECK_FLOWS if check is None else check
    out: set[Flow] = set()
    for app in apps:
        name = getattr(app, "name", type(app).__name__)
        try:
            flows = app.compile(view, ctx, owner)
        except CompileError:
            raise
        except Exception as exc:  # an app bug must name the object, not kill the compile loop silently
            LOG.exception("app %s failed compiling owner %s on %s", name, _owner_text(owner), ctx.name)
            raise CompileError(f"{type(exc).__name__}: {exc}", owner, name, ctx.name) from exc
        flows = list(flows or ())
        if check:
            _check(flows, owner, name, ctx)
        out.update(flows)
    return frozenset(out)


def compile_owners(apps: Iterable, view: View, ctx, owners: Iterable[int],
                   check: bool | None = None) -> FlowsByOwner:
    """{owner: flows} for the given owners; owners with no flows map to an empty frozenset."""
    apps = list(apps)
    return {o: compile_owner(apps, view, ctx, o, check) for o in owners}


def owners_for_chassis(apps: Iterable, view: View, ctx) -> set[int]:
    owners: set[int] = set()
    for app in apps:
        owners.update(app.owners_for_chassis(view, ctx))
    return owners


def compile_chassis(apps: Iterable, view: View, ctx, check: bool | None = None) -> FlowsByOwner:
    """Full desired state of one chassis: only owners that have at least one flow there."""
    apps = list(apps)
    check = CHECK_FLOWS if check is None else check
    result = {o: fl for o, fl in compile_owners(apps, view, ctx, owners_for_chassis(apps, view, ctx),
                                                check).items() if fl}
    if check:
        check_conflicts(result, ctx.name)
    return result


def owners_for_change(apps: Iterable, view: View, change: Change) -> set[int]:
    """Every owner whose flows might change on ANY chassis after `change`."""
    owners: set[int] = set()
    for app in apps:
        owners.update(app.owners_for_change(view, change))
    return owners


def changed_owners(apps: Iterable, view: View, changes: Iterable[Change]) -> set[int]:
    """Union of owners_for_change over a batch (dedupes: a burst of writes compiles each owner once)."""
    apps = list(apps)
    owners: set[int] = set()
    for change in changes:
        owners |= owners_for_change(apps, view, change)
    return owners


def owners_for_port_location(apps: Iterable, view: View, port_id: str, ctx=None) -> set[int]:
    """Owners to recompute when a port's tap appears on / vanishes from ctx's chassis (ctx: the
    context after the change) without a store write. An app with `owners_for_port_location(view,
    ctx, port)` answers for that chassis exactly; the others (and ctx=None) treat it as a re-sync
    change of that port (old == new), which names what it may touch on any chassis."""
    port = view.port(port_id)
    if port is None:
        return set()
    change = Change(view.revision, "port", port_id, port, port)
    owners: set[int] = set()
    for app in apps:
        exact = getattr(app, "owners_for_port_location", None) if ctx is not None else None
        owners.update(exact(view, ctx, port) if exact is not None else app.owners_for_change(view, change))
    return owners


def check_conflicts(flows_by_owner: Mapping[int, frozenset[Flow]], chassis: str = "?") -> None:
    """Raise CompileError if two flows share a key with different bodies (OpenFlow would keep one)."""
    seen: dict[tuple, Flow] = {}
    for owner, flows in flows_by_owner.items():
        for f in flows:
            other = seen.setdefault(f.key, f)
            if other is not f and other != f:
                raise CompileError(f"key conflict:\n  {other.ofctl()}\n  {f.ofctl()}", owner, "*", chassis)


def diff_owners(old: Mapping[int, frozenset[Flow]], new: Mapping[int, frozenset[Flow]]) -> set[int]:
    """Owners whose flow sets differ between two compiles (missing = empty)."""
    return {o for o in set(old) | set(new) if old.get(o, frozenset()) != new.get(o, frozenset())}


def all_flows(flows_by_owner: Mapping[int, frozenset[Flow]]) -> frozenset[Flow]:
    out: set[Flow] = set()
    for flows in flows_by_owner.values():
        out |= flows
    return frozenset(out)
