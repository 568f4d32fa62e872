#!/usr/bin/env python3
"""One bulk `POST /v2.0/ports` of N ports, in-process (falcon.testing, no sockets, no controller).

Why: at 10,000 ports the bulk POST was 3.7-4.0 s of bench_scale's "API POST -> all flows on
switch" (policy checks per port, the SQLite commit). bench_scale measures it through the whole
stack (OVS, controller, GIL shared with the worker); this isolates the API + store part so a
change to it can be measured in seconds, with CPU time beside wall time on a noisy machine.

Same topology and request as `bench_scale.py --networks 500 --routers 50 --ports 10000`
(networks + /24 subnets by bulk POSTs, routers with interfaces, a chassis `bench1`, every port
with `id`, `network_id`, `name`, `binding:host_id`), on a SQLite file under /tmp (WAL,
synchronous=FULL, as in production), noauth admin. Each round uses a fresh store.

    .venv/bin/python bench/bench_api_bulk.py [--ports 10000] [--networks 500] [--routers 50]
                                              [--rounds 3] [--profile out.prof] [--quick]
"""
from __future__ import annotations

import argparse
import cProfile
import gc
import pstats
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import falcon.testing

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from topology.api.app import create_app  # noqa: E402
from topology.model.service import Service  # noqa: E402
from topology.store.backends import open_store  # noqa: E402

CHASSIS = "bench1"


def build(db: Path, n_net: int, n_routers: int) -> tuple[Service, falcon.testing.TestClient, list[dict]]:
    svc = Service(open_store(f"sqlite://{db}"))
    client = falcon.testing.TestClient(create_app(svc))

    def call(method: str, path: str, body: dict) -> dict:
        resp = client.simulate_request(method, path, json=body)
        assert resp.status_code in (200, 201), resp.text
        return resp.json

    svc.register_chassis(CHASSIS, 1, "127.0.0.1", {})
    nets = call("POST", "/v2.0/networks", {"networks": [{"name": f"net{i}"} for i in range(n_net)]})["networks"]
    subnets = call("POST", "/v2.0/subnets", {"subnets": [
        {"network_id": n["id"], "cidr": f"10.{i // 250}.{i % 250}.0/24", "ip_version": 4, "name": f"sub{i}"}
        for i, n in enumerate(nets)]})["subnets"]
    by_net = {s["network_id"]: s for s in subnets}
    per_router = max(1, n_net // n_routers)
    for r in range(n_routers):
        rtr = call("POST", "/v2.0/routers", {"router": {"name": f"r{r}"}})["router"]
        for n in nets[r * per_router:(r + 1) * per_router]:
            call("PUT", f"/v2.0/routers/{rtr['id']}/add_router_interface", {"subnet_id": by_net[n["id"]]["id"]})
    return svc, client, nets


class GcTime:
    """Seconds the cyclic garbage collector ran while `on` (gc.callbacks), and how many runs."""

    def __init__(self) -> None:
        self.on, self.seconds, self.runs, self._start = False, 0.0, 0, 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict) -> None:
        if not self.on:
            return
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._start
            self.runs += 1


GC = GcTime()


def one_round(args: argparse.Namespace, prof: cProfile.Profile | None) -> dict[str, float]:
    tmp = Path(tempfile.mkdtemp(prefix="tf-bulk-"))
    try:
        svc, client, nets = build(tmp / "store.db", args.networks, args.routers)
        bodies = [{"id": str(uuid.uuid4()), "network_id": nets[i % len(nets)]["id"], "name": f"vm{i}",
                   "binding:host_id": CHASSIS} for i in range(args.ports)]
        rev0 = svc.store.revision()
        if prof is not None:
            prof.enable()
        GC.on, GC.seconds, GC.runs = True, 0.0, 0
        c0, t0 = time.process_time(), time.perf_counter()
        resp = client.simulate_request("POST", "/v2.0/ports", json={"ports": bodies})
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        GC.on = False
        if prof is not None:
            prof.disable()
        assert resp.status_code == 201, resp.text[:500]
        assert len(resp.json["ports"]) == args.ports
        changes = svc.store.revision() - rev0
        svc.store.close()
        return {"wall": wall, "cpu": cpu, "changes": changes, "gc": GC.seconds, "gc_runs": GC.runs}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ports", type=int, default=10000)
    ap.add_argument("--networks", type=int, default=500)
    ap.add_argument("--routers", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--profile", metavar="FILE", help="cProfile the POSTs into FILE, print the top 30")
    ap.add_argument("--quick", action="store_true", help="1,000 ports, 50 networks, 10 routers, 1 round (make bench)")
    args = ap.parse_args()
    if args.quick:
        args.ports, args.networks, args.routers, args.rounds = 1000, 50, 10, 1
    prof = cProfile.Profile() if args.profile else None
    rounds = []
    for i in range(args.rounds):
        r = one_round(args, prof)
        rounds.append(r)
        print(f"round {i + 1}: POST {args.ports} ports: wall {r['wall']:.3f} s, cpu {r['cpu']:.3f} s, "
              f"{r['changes']:.0f} store changes, of it in the garbage collector {r['gc']:.3f} s "
              f"({r['gc_runs']} runs)", flush=True)
    print(f"median of {len(rounds)}: wall {statistics.median(r['wall'] for r in rounds):.3f} s, "
          f"cpu {statistics.median(r['cpu'] for r in rounds):.3f} s")
    if prof is not None:
        prof.dump_stats(args.profile)
        pstats.Stats(args.profile).sort_stats("cumulative").print_stats(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
