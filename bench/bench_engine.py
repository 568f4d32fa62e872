"""In-process cost of the incremental engine (flows/engine.py) on a bench_scale-like chassis.

Why: bench_scale.py measures the whole product path, where OVS, the API and the machine's load
dominate; the engine's own overhead (recording every read, keeping the reverse index) is a few
per cent of the compile and drowns there. This drives the same apps the controller runs, with no
threads, switch or API: 50 networks with /24 subnets, 10 routers × 5 interfaces, 1,000 ports
bound and plugged on one chassis, then

  full      a connect: list + compile every owner through ChassisEngine.full (fresh apps);
  one-more  a new port: its tap, its POST, the binder's write, each an engine step the way
            controller.core drives it (changed_inputs before view.apply, owners_for_change,
            location owners + inputs, ChassisEngine.step).

`--engine PATH` runs another engine module *as* flows.engine (e.g. `git show HEAD:flows/engine.py
> /tmp/e.py`); several `--engine` are run round by round, each in its own process, so versions
compare in one run. `--engine null` is the floor: the same owners compiled on the plain view with
nothing recorded (no reverse index: only the owners the changes name). Every run checks its flows
against a fresh compile (a benchmark of a wrong engine is worthless). Times are CPU seconds of the
process (time.process_time: less hit by other processes' load than wall time); ratios are against
the first engine (means: a full collection of Python's GC lands in some rounds, not in others, and
the engine's allocations move it); the JSON line is for tracking.

Instruction counts (stable on a loaded machine): `--callgrind LIB` brackets the measured phase with
callgrind requests from this library (`gcc -O2 -shared -fPIC -o libcgtoggle.so cgtoggle.c`):

    #include <valgrind/callgrind.h>
    void cg_start(void) { CALLGRIND_ZERO_STATS; CALLGRIND_START_INSTRUMENTATION; CALLGRIND_TOGGLE_COLLECT; }
    void cg_stop(void) { CALLGRIND_TOGGLE_COLLECT; CALLGRIND_DUMP_STATS; CALLGRIND_STOP_INSTRUMENTATION; }

    PYTHONHASHSEED=0 valgrind --tool=callgrind --instr-atstart=no --collect-atstart=no \
        --callgrind-out-file=/tmp/cg.out .venv/bin/python bench/bench_engine.py --child --engine E \
        --rounds 3 --only full --callgrind ./libcgtoggle.so      # then: grep ^totals /tmp/cg.out.1
"""
from __future__ import annotations

import argparse
import ctypes
import gc
import importlib.util
import json
import random
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CHASSIS, DPID, TUNNEL_IP = "c1", 0xA1, "192.0.2.11"
_RNG = random.Random(9)  # the same port ids every run: instruction counts compare across runs

NULL_ENGINE = '''
"""Not an engine: compiles the owners it is given on the plain view and records nothing."""
import importlib.util, sys
_spec = importlib.util.spec_from_file_location("flows._engine_for_null", %r)
_E = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = _E
_spec.loader.exec_module(_E)
globals().update({k: v for k, v in vars(_E).items() if not k.startswith("__")})

def changed_inputs(view, change, before=None):
    return set()

def location_inputs(before, after):
    return set()

class ChassisEngine(_E.ChassisEngine):
    def compile(self, compiler, view, ctx, owner):
        self.compiles += 1
        flows = compiler.compile_owner(view, ctx, owner)
        self.reads[owner] = ()
        return flows

    def invalidate(self, inputs, view, ctx):
        return set()
'''


def new_id() -> str:
    return str(uuid.UUID(int=_RNG.getrandbits(128), version=4))


def install_engine(path: str | None) -> None:
    """Make `path` the flows.engine every app imports (before anything imports it)."""
    sys.path.insert(0, str(ROOT))
    if path is None:
        return
    if path == "null":
        code = NULL_ENGINE % str(ROOT / "flows" / "engine.py")
        null = Path(f"/tmp/bench_engine_null_{abs(hash(str(ROOT)))}.py")
        null.write_text(code)
        path = str(null)
    import flows  # the package, not its engine
    spec = importlib.util.spec_from_file_location("flows.engine", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["flows.engine"] = mod
    flows.engine = mod
    spec.loader.exec_module(mod)


class DictSink:
    """flows.engine.Sink into a dict; a failed owner is a bench failure."""

    def __init__(self) -> None:
        self.flows: dict[int, frozenset] = {}

    def owners(self) -> set[int]:
        return set(self.flows)

    def put(self, owner: int, flows: frozenset) -> None:
        if flows:
            self.flows[owner] = flows
        else:
            self.flows.pop(owner, None)

    def failed(self, owner: int, exc: Exception) -> None:
        raise exc


class World:
    """The store + the controller's view + the chassis context: bench_scale's topology, and one
    engine over it."""

    def __init__(self, ports: int, networks: int, routers: int) -> None:
        from apps.registry import default_apps
        from controller.core import AppCompiler, controller_view
        from flows import engine
        from topology.model.service import Service
        from topology.model.settings import Settings
        from topology.store.backends import open_store
        self.engine, self.default_apps, self.AppCompiler = engine, default_apps, AppCompiler
        self.controller_view = controller_view
        self.store = open_store("memory://")
        self.service = Service(self.store, Settings())
        self.service.register_chassis(CHASSIS, DPID, TUNNEL_IP)
        self.nets = [self.service.create_network({"name": f"net{i}"}) for i in range(networks)]
        subnets = [self.service.create_subnet({"network_id": n["id"], "cidr": f"10.{i // 250}.{i % 250}.0/24",
                                               "ip_version": 4}) for i, n in enumerate(self.nets)]
        per = max(1, networks // routers)
        for r in range(routers):
            rtr = self.service.create_router({"name": f"r{r}"})
            for s in subnets[r * per:(r + 1) * per]:
                self.service.add_router_interface(rtr["id"], {"subnet_id": s["id"]})
        ids = [new_id() for _ in range(ports)]
        for i, pid in enumerate(ids):
            self.service.create_port({"id": pid, "network_id": self.nets[i % networks]["id"], "name": f"vm{i}"})
        self.service.set_port_bindings([(pid, CHASSIS, "ACTIVE") for pid in ids])
        self.local = {pid: 10 + i for i, pid in enumerate(ids)}
        self.ports_n = ports
        self.rev, data = self.store.snapshot()
        self.view = controller_view(self.rev, data)
        self.extra = 0
        self.compiler = AppCompiler(default_apps())
        self.eng = engine.ChassisEngine()
        self.sink = DictSink()
        self.ctx = self.context()

    def context(self) -> Any:
        from apps.base import ChassisContext
        return ChassisContext(CHASSIS, DPID, dict(self.local), tunnel_ports={"vxlan": 1}, tunnel_ip=TUNNEL_IP)

    def full(self) -> float:
        self.compiler = self.AppCompiler(self.default_apps())
        self.eng, self.sink = self.engine.ChassisEngine(), DictSink()
        t0 = time.process_time()
        self.eng.full(self.compiler, self.view, self.ctx, self.sink)
        return time.process_time() - t0

    def _batch(self, new_ctx: Any) -> float:
        changes = self.store.changes(self.rev)
        if changes:
            self.rev = max(c.revision for c in changes)
        t0 = time.process_time()
        named: set[int] = set()
        inputs: set = set()
        for ch in changes:
            inputs |= self.engine.changed_inputs(self.view, ch)
            self.view.apply(ch)
            named |= self.compiler.owners_for_change(self.view, ch)
        if new_ctx is not None:
            old, self.ctx = self.ctx, new_ctx
            for pid in old.local_ports.keys() ^ new_ctx.local_ports.keys():
                named |= self.compiler.owners_for_port_location(self.view, pid)
            inputs |= self.engine.location_inputs(old.local_ports, new_ctx.local_ports)
        self.eng.step(self.compiler, self.view, self.ctx, named, inputs, self.sink)
        return time.process_time() - t0

    def one_more(self) -> float:
        """tap appears, POST, binder's write: the three worker batches of one more port."""
        self.extra += 1
        pid = new_id()
        self.local[pid] = 10 + self.ports_n + self.extra  # above every bulk port's ofport (10 + i)
        spent = self._batch(self.context())
        self.service.create_port({"id": pid, "network_id": self.nets[self.extra % len(self.nets)]["id"]})
        spent += self._batch(None)
        self.service.set_port_binding(pid, CHASSIS, "ACTIVE")
        spent += self._batch(None)
        return spent

    def check(self) -> None:
        from flows import compiler
        rev, data = self.store.snapshot()
        fresh = compiler.compile_chassis(self.default_apps(), self.controller_view(rev, data), self.context())
        diff = compiler.diff_owners(self.sink.flows, fresh)
        if diff:
            raise SystemExit(f"engine {self.engine.__file__}: {len(diff)} owners differ from a fresh compile")


def one_process(args) -> dict[str, Any]:
    """One engine, this process: warm up, then `rounds` of each phase."""
    install_engine(args.engine[0] if args.engine else None)
    w = World(args.ports, args.networks, args.routers)
    w.full()
    w.one_more()  # warm: first-use caches of the apps, both phases
    gc.collect()
    cg = ctypes.CDLL(args.callgrind) if args.callgrind else None
    out: dict[str, list[float]] = {"full_s": [], "one_more_s": []}
    if cg:
        cg.cg_start()
    for _ in range(args.rounds):
        if args.only in (None, "full"):
            out["full_s"].append(w.full())
        if args.only in (None, "one-more"):
            out["one_more_s"].append(statistics.median(w.one_more() for _ in range(args.one_more)))
    if cg:
        cg.cg_stop()
    w.check()
    return {"engine": args.engine[0] if args.engine else "flows/engine.py", "compiles": w.eng.compiles, **out}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--engine", action="append", default=[], metavar="PATH",
                    help="engine module file run as flows.engine, or 'null' (repeat to compare)")
    ap.add_argument("--ports", type=int, default=1000)
    ap.add_argument("--networks", type=int, default=50)
    ap.add_argument("--routers", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=5, help="processes per engine (interleaved)")
    ap.add_argument("--per-process", type=int, default=3,
                    help="fulls (and one-more medians) per process: the mean counts the GC's full collections fairly")
    ap.add_argument("--one-more", type=int, default=20, help="one-more ports per round (median taken)")
    ap.add_argument("--only", choices=["full", "one-more"], help="one phase (for callgrind)")
    ap.add_argument("--callgrind", metavar="LIB", help="shared library with cg_start/cg_stop")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child or len(args.engine) <= 1 and args.rounds == 1:
        print(json.dumps(one_process(args)))
        return 0
    engines = args.engine or [None]
    res: dict[str, dict[str, list[float]]] = {str(e): {"full_s": [], "one_more_s": []} for e in engines}
    base = [sys.executable, __file__, "--child", "--rounds", str(args.per_process), "--ports", str(args.ports),
            "--networks", str(args.networks), "--routers", str(args.routers), "--one-more", str(args.one_more)]
    if args.only:
        base += ["--only", args.only]
    for _ in range(args.rounds):
        for e in engines:
            got = subprocess.run(base + (["--engine", e] if e else []), check=True, capture_output=True,
                                 text=True).stdout.strip().splitlines()[-1]
            one = json.loads(got)
            for k in ("full_s", "one_more_s"):
                res[str(e)][k] += one[k]
    first = res[str(engines[0])]

    def med(v: list[float]) -> float:  # the mean: a full GC collection lands in some fulls, not others
        return statistics.fmean(v) if v else float("nan")

    print(f"{'engine':32} {'full (s)':>9} {'ratio':>6} {'one more (ms)':>14} {'ratio':>6}")
    summary = {}
    for e in engines:
        r = res[str(e)]
        full, one = med(r["full_s"]), med(r["one_more_s"])
        summary[str(e or "flows/engine.py")] = {"full_s": round(full, 4), "one_more_ms": round(one * 1e3, 3)}
        print(f"{str(e or 'flows/engine.py'):32} {full:9.3f} {full / med(first['full_s']):6.3f} "
              f"{one * 1e3:14.2f} {one / med(first['one_more_s']):6.3f}")
    print(json.dumps({"bench": "engine", "ports": args.ports, "rounds": args.rounds, "results": summary}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
