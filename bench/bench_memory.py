"""Memory the controller keeps per flow on a bench_scale-like chassis (issue 14: 10k ports ≤ 300 MB).

Why: bench_scale.py reports the controller's RSS at 10,000 ports (≈ 470 MB, ≈ 2.4 KB per flow) but
not where it goes. This builds the same chassis in-process (bench_engine.World: the apps, the view,
the engine), compiles every owner through ChassisEngine.full into a Reconciler the way
controller.core does it (core._ReconcilerSink → Reconciler.set_owner), and lets a switch take the
flows, as bench_scale's run goes:

  compiled            switch connected and read (empty), then every owner compiled (the bulk POST)
  first sync          the flush: every flow sent in one bundle (bench_scale's "after bulk" / "end")
  restart: compiled   a new reconciler + engine (a restarted controller) compile everything again
  restart: synced     its resync reads the switch's flows back: must send 0 flow-mods

and reports, per phase, RSS after gc + malloc_trim (Δ over the built world, bytes per flow), and per
structure the bytes a deep walk reaches from it that no structure listed before it reached
(`--no-walk` skips the walk). `--tracemalloc` runs the phases again in a child with tracemalloc on
(it inflates RSS, so never in the same process as the RSS figures): the top allocation sites by line
of what each phase added. The switch is this file's `DumpSwitch`, which keeps the flows as the
flow-stats entries a dump returns in a temporary file, not in this process (tests/unit/fakeswitch.py
keeps a parsed table and answers a dump with one `bytes +=` per flow: quadratic at 170,000 flows).
It runs on older reconcilers too (structures it does not find are skipped). The restart phases
run in the same process, after the first reconciler is freed: their RSS cannot fall below what the
allocator kept from the first round, so they are an upper bound for a restarted process.

    .venv/bin/python bench/bench_memory.py --ports 10000 --networks 500 --routers 50
"""
from __future__ import annotations

import argparse
import ctypes
import gc
import json
import struct
import subprocess
import sys
import time
import tracemalloc
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_engine import DPID, World, install_engine  # noqa: E402

_LIBC = ctypes.CDLL("libc.so.6")
_SKIP = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.MethodType,
         types.CodeType, types.FrameType)


def rss_mb() -> float:
    gc.collect()
    _LIBC.malloc_trim(0)
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def deep_bytes(roots: list, seen: set[int]) -> tuple[int, int]:
    """(bytes, objects) reachable from `roots` and not in `seen` (which grows): containers walked
    through gc.get_referents, classes, modules and functions not (they are shared code, not data)."""
    total = count = 0
    stack = list(roots)
    getsize, refs = sys.getsizeof, gc.get_referents
    while stack:
        o = stack.pop()
        i = id(o)
        if i in seen or isinstance(o, _SKIP):
            continue
        seen.add(i)
        total += getsize(o)
        count += 1
        stack.extend(refs(o))
    return total, count


class DumpSwitch:
    """A switch in memory, but not in ours: applies our bundles (adds only: this bench never
    deletes), keeping each flow as the ofp_flow_stats entry a dump returns in a temporary file,
    so its table is not counted in this process' RSS; answers barriers, flow-stats (64 KiB
    multipart replies, as OVS) and meter-config requests (no meters)."""

    def __init__(self, rec) -> None:
        import tempfile
        from controller import wire
        self.wire, self.rec = wire, rec
        self.file = tempfile.TemporaryFile()
        self.flows = self.flow_mods = 0
        self._bundle: list[bytes] = []

    def send(self, buf: bytes) -> bool:
        w = self.wire
        for mtype, xid, msg in w.iter_messages(buf):
            if mtype == w.OFPT_EXPERIMENTER:
                (exp,) = struct.unpack_from("!I", msg, 12)
                if exp == w.ONF_ET_BUNDLE_ADD_MESSAGE:
                    self._bundle.append(self._entry(w.unwrap_bundle_add(msg)))
                elif struct.unpack_from("!H", msg, 20)[0] == w.BUNDLE_COMMIT_REQUEST:
                    self.file.write(b"".join(self._bundle))
                    self.flows += len(self._bundle)
                    self._bundle.clear()
            elif mtype == w.OFPT_BARRIER_REQUEST:
                self.rec.on_barrier(xid)
            elif mtype == w.OFPT_MULTIPART_REQUEST:
                (mp,) = struct.unpack_from("!H", msg, 8)
                if mp == w.OFPMP_METER_CONFIG:
                    self.rec.on_flow_stats(xid, b"", False)
                else:
                    self._dump(xid)
        return True

    def _dump(self, xid: int) -> None:
        f = self.file
        f.flush()
        end = f.tell()
        f.seek(0)
        chunk, more = bytearray(), True
        while more:
            while len(chunk) < 65536 and f.tell() < end:
                (length,) = struct.unpack("!H", f.read(2))
                chunk += struct.pack("!H", length) + f.read(length - 2)
            more = f.tell() < end
            self.rec.on_flow_stats(xid, bytes(chunk), more)
            chunk = bytearray()
        f.seek(end)

    def _entry(self, fm: bytes) -> bytes:
        """The flow-stats entry OVS would dump for this flow-mod (an OFPFC_ADD)."""
        self.flow_mods += 1
        assert fm[25] == self.wire.OFPFC_ADD, "this bench's switch takes adds only"
        cookie, table, idle, hard, prio = struct.unpack_from("!Q8xBxHHH", fm, 8)
        mlen = struct.unpack_from("!H", fm, 50)[0]
        rest = fm[48:]  # padded match + instructions
        assert len(rest) >= (mlen + 7) // 8 * 8
        return struct.pack("!HBxIIHHHH4xQQQ", 48 + len(rest), table, 5, 0, prio, idle, hard, 0, cookie, 0, 0) + rest


def structures(w, rec) -> list[tuple[str, list]]:
    """(name, roots) in attribution order: each structure is charged what earlier ones did not
    reach (a Flow held by `_desired` and `_want` counts once, under `_desired`). Attributes this
    version of the reconciler does not have are skipped (the bench runs on old and new code)."""
    eng = w.eng
    out = [("engine (reads, readers, facts)", [eng.reads, eng.readers, eng.facts, eng.fact_readers])]
    for attr in ("_desired", "_want", "_instr", "_owner_of", "_odd_owner", "_conflicts", "installed", "_encoded",
                 "_dirty", "_rejected", "meters"):
        if hasattr(rec, attr):
            out.append((f"reconciler.{attr}", [getattr(rec, attr)]))
    out += [("encoder caches", [rec.encoder.__dict__]), ("reconciler rest", [rec.__dict__]),
            ("apps (their own caches)", [w.compiler])]
    return out


def run(args) -> dict:
    from apps.registry import default_apps
    from controller.core import AppCompiler, _ReconcilerSink
    from flows.engine import ChassisEngine
    from controller.reconciler import Reconciler
    from controller.registry import DatapathEntry
    install_engine(None)
    trace = args.tracemalloc
    t0 = time.monotonic()
    w = World(args.ports, args.networks, args.routers)
    out: dict = {"ports": args.ports, "build_s": round(time.monotonic() - t0, 1), "phases": {}}
    base = rss_mb()
    out["rss_world_mb"] = round(base, 1)
    snaps = []
    if trace:
        tracemalloc.start(1)
        snaps.append(("world", tracemalloc.take_snapshot()))

    def phase(name: str, rec) -> None:
        r = rss_mb()
        out["phases"][name] = {"rss_mb": round(r, 1), "over_world_mb": round(r - base, 1),
                               "bytes_per_flow": round((r - base) * 2**20 / rec.desired_count())}
        if trace:
            snaps.append((name, tracemalloc.take_snapshot()))

    def compile_all(rec) -> None:
        """A connect's full compile, as controller.core._converge does it."""
        e = DatapathEntry(DPID, rec)
        e.ctx = w.ctx
        w.compiler, w.eng = AppCompiler(default_apps()), ChassisEngine()
        e.engine = w.eng
        w.eng.full(w.compiler, w.view, w.ctx, _ReconcilerSink(e))

    # the controller up, the switch connected and empty (read: nothing of ours), then the ports'
    # flows compiled (bench_scale's bulk POST) and sent in one bundle
    rec = Reconciler("bench-memory", timeout=600)
    sw = DumpSwitch(rec)
    rec.attach(sw.send)
    assert rec.resync() == 0
    compile_all(rec)
    nflows = rec.desired_count()
    out["flows"], out["owners"] = nflows, len(rec.owners())
    phase("compiled", rec)
    sent = rec.flush()
    assert sent == nflows == sw.flows, (sent, nflows, sw.flows)
    phase("first sync", rec)
    # a restart: a new reconciler and engine compile everything again, then read the switch
    sw.rec = None
    del rec
    rec = Reconciler("bench-memory", timeout=600)
    compile_all(rec)
    phase("restart: compiled", rec)
    sw.rec = rec
    rec.attach(sw.send)
    sent = rec.resync()
    assert sent == 0, f"restart resync sent {sent} flow-mods"
    assert rec.desired_count() == nflows and len(rec.installed) == nflows
    phase("restart: synced", rec)
    out["restart_flow_mods"] = sent

    if not args.no_walk and not trace:
        seen: set[int] = set()
        deep_bytes([w.view, w.store, w.service, w.ctx], seen)  # the world: not ours to count
        walked = {}
        for name, roots in structures(w, rec):
            b, n = deep_bytes(roots, seen)
            walked[name] = {"mb": round(b / 2**20, 1), "bytes_per_flow": round(b / nflows), "objects": n}
        out["structures_after_restart"] = walked
    if trace:
        tops = {}
        for (_a, before), (name, after) in zip(snaps, snaps[1:]):
            stats = after.compare_to(before, "lineno")
            tops[name] = [f"{s.size_diff / 2**20:+8.2f} MB {s.count_diff:+9d}  "
                          f"{s.traceback[0].filename.replace(str(ROOT) + '/', '')}:{s.traceback[0].lineno}"
                          for s in stats[:args.top]]
            tops[name].insert(0, f"{sum(s.size_diff for s in stats) / 2**20:+8.2f} MB total")
        out["tracemalloc"] = tops
        tracemalloc.stop()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ports", type=int, default=10000)
    ap.add_argument("--networks", type=int, default=500)
    ap.add_argument("--routers", type=int, default=50)
    ap.add_argument("--tracemalloc", action="store_true", help="also: top allocation lines per phase (child)")
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--no-walk", action="store_true", help="skip the per-structure deep walk")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--quick", action="store_true", help="1,000 ports (make bench)")
    args = ap.parse_args()
    if args.quick:
        args.ports, args.networks, args.routers = 1000, 50, 10
    if args.child:
        print(json.dumps(run(args)))
        return 0
    trace = args.tracemalloc
    args.tracemalloc = False
    res = run(args)
    n = res["flows"]
    print(f"{args.ports} ports, {res['owners']} owners, {n} flows (world built in {res['build_s']} s); "
          f"RSS of the built world {res['rss_world_mb']} MB; restart sent {res['restart_flow_mods']} flow-mods")
    print(f"{'phase':18} {'RSS MB':>8} {'Δ world MB':>11} {'B/flow':>8}")
    for name, p in res["phases"].items():
        print(f"{name:18} {p['rss_mb']:8.1f} {p['over_world_mb']:11.1f} {p['bytes_per_flow']:8d}")
    if "structures_after_restart" in res:
        print("deep walk after restart (each charged what the ones above did not reach):")
        for name, s in res["structures_after_restart"].items():
            print(f"  {name:32} {s['mb']:7.1f} MB {s['bytes_per_flow']:6d} B/flow {s['objects']:9d} objects")
    if trace:
        cmd = [sys.executable, __file__, "--child", "--tracemalloc", "--ports", str(args.ports), "--networks",
               str(args.networks), "--routers", str(args.routers), "--top", str(args.top)]
        got = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
        res["tracemalloc"] = got["tracemalloc"]
        for name, lines in got["tracemalloc"].items():
            print(f"tracemalloc, allocated during {name!r} (top {args.top} lines):")
            for line in lines:
                print("   ", line)
    print(json.dumps({"bench": "memory", **{k: v for k, v in res.items() if k != "tracemalloc"}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
