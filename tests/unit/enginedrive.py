"""Test helper: drive flows.engine.ChassisEngine over several chassis the way controller.core does.

Why: the pure tests (no threads, no switch) must exercise the same engine the core uses — store
changes (inputs recorded before view.apply, owners named after), then each chassis' new local
ports (location owners + inputs), then one ChassisEngine.step per chassis — so that
"incremental == full compile" is a statement about the real engine, with no memo to reset.
"""
from __future__ import annotations

from typing import Callable, Iterable

from controller.core import AppCompiler, _differs_beyond_ports
from flows import compiler
from flows.engine import ChassisEngine, changed_inputs, location_inputs
from flows.flow import Flow
from topology.store import Change


class DictSink:
    """flows.engine.Sink into a dict {owner: flows} (empty owners dropped); failures raise."""

    def __init__(self) -> None:
        self.flows: dict[int, frozenset[Flow]] = {}

    def owners(self) -> set[int]:
        return set(self.flows)

    def put(self, owner: int, flows: frozenset[Flow]) -> None:
        if flows:
            self.flows[owner] = flows
        else:
            self.flows.pop(owner, None)

    def failed(self, owner: int, exc: Exception) -> None:
        raise exc


class EngineCloud:
    """One view, several chassis contexts, one ChassisEngine + DictSink per chassis."""

    def __init__(self, apps: list, view, contexts: dict) -> None:
        self.compiler = AppCompiler(apps)
        self.view = view
        self.ctx = dict(contexts)
        self.engines = {name: ChassisEngine() for name in contexts}
        self.sinks = {name: DictSink() for name in contexts}
        for name, c in self.ctx.items():
            self.engines[name].full(self.compiler, view, c, self.sinks[name])

    @property
    def state(self) -> dict[str, dict[int, frozenset[Flow]]]:
        return {name: sink.flows for name, sink in self.sinks.items()}

    def compiles(self) -> int:
        return sum(e.compiles for e in self.engines.values())

    def step(self, changes: Iterable[Change], contexts: dict | None = None) -> set[int]:
        """Apply a batch; returns every owner recompiled on any chassis."""
        named: set[int] = set()
        inputs: set[tuple] = set()
        for change in changes:
            inputs |= changed_inputs(self.view, change)
            self.view.apply(change)
            named |= self.compiler.owners_for_change(self.view, change)
        compiled: set[int] = set()
        for name, old in list(self.ctx.items()):
            new = (contexts or {}).get(name, old)
            self.ctx[name] = new
            eng, sink = self.engines[name], self.sinks[name]
            if _differs_beyond_ports(old, new):
                eng.full(self.compiler, self.view, new, sink)
                compiled |= eng.owners()
                continue
            extra: set[int] = set()
            moved: set[tuple] = set()
            if old.local_ports != new.local_ports:
                for pid in old.local_ports.keys() ^ new.local_ports.keys():  # as controller.core
                    extra |= self.compiler.owners_for_port_location(self.view, pid)
                moved = location_inputs(old.local_ports, new.local_ports)
            compiled |= eng.step(self.compiler, self.view, new, named | extra, inputs | moved, sink)
        return compiled

    def differences(self, fresh_apps: Callable[[], list], fresh_view) -> dict[str, set[int]]:
        """Owners whose incremental flows differ from a fresh compile (fresh apps, fresh view)."""
        out = {}
        for name, c in self.ctx.items():
            full = compiler.compile_chassis(fresh_apps(), fresh_view, c)
            got = self.sinks[name].flows
            diff = compiler.diff_owners(got, full)
            if diff:
                out[name] = diff
        return out
