"""The reconciler's own CPU for a resync onto an empty switch, without any switch: pure Python.

Why: bench_wire.py measures the reconciler against `ovs-ofctl --bundle` on a real OVS, where
the ratio also depends on how fast OVS parses and commits and on the machine's load. This
bench isolates our side (issue 14: the reconciler was CPU-bound on its own Python): the same
L2 flows as bench_wire (`l2_flows`), a transport that discards the bytes and answers the
flow-stats read, meter read and barrier at once, and the per-flow encoders compared in one
process:
  set_owner     declaring the flows (encodes each flow's body and wire bytes once)
  resync        read (empty), diff, sort, encode and "send" N bundle-adds, commit, barrier
  encode old    Encoder.bundle_add_flow per flow (match encoded per call: the path before)
  encode new    wire.bundle_add_encoded per flow from the flow's cached wire bytes
Both encoders' outputs are compared byte for byte before timing. Run:
.venv/bin/python bench/bench_encode.py [--quick] [--flows N] [--rounds R] (no OVS, no netns needed).
Prints a table and one JSON line.
"""
from __future__ import annotations

import argparse
import json
import struct
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from controller import wire  # noqa: E402
from controller.reconciler import Reconciler  # noqa: E402
from flows.flow import Flow, GotoTable, SetField, make_match  # noqa: E402
from flows.tables import Owner, cookie  # noqa: E402


def l2_flows(n: int) -> list[Flow]:
    """bench_wire.l2_flows (kept in step by hand: importing bench_wire pulls in the OVS test bed)."""
    out = []
    for i in range(n):
        owner = cookie(Owner.PORT, i // 4 + 1)
        out.append(Flow(40, 100, make_match(metadata=i % 250 + 1, eth_dst=0xFA163E000000 + i),
                        (SetField("reg7", i // 4 + 1), GotoTable(60)), owner))
    return out


class NullSwitch:
    """Answers what a resync waits for (flow stats, meter config, barrier) and drops the rest."""

    def __init__(self, rec: Reconciler) -> None:
        self.rec = rec
        self.bytes = 0

    def send(self, buf: bytes) -> bool:
        self.bytes += len(buf)
        _v, mtype, _len, xid = struct.unpack_from("!BBHI", buf, len(buf) - 8) if len(buf) >= 8 else (0, 0, 0, 0)
        if buf[1] == wire.OFPT_MULTIPART_REQUEST:
            self.rec.on_flow_stats(struct.unpack_from("!I", buf, 4)[0], b"", False)
        elif mtype == wire.OFPT_BARRIER_REQUEST:
            self.rec.on_barrier(xid)
        return True




def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--flows", type=int, default=50_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="one round (as make bench runs every bench)")
    args = ap.parse_args()
    if args.quick:
        args.rounds = 1
    flows = l2_flows(args.flows)
    by_owner: dict[int, list[Flow]] = {}
    for f in flows:
        by_owner.setdefault(f.cookie, []).append(f)

    res: dict[str, list[float]] = {"set_owner": [], "resync": [], "encode_old": [], "encode_new": []}
    new = getattr(wire, "bundle_add_encoded", None)
    for _ in range(args.rounds):
        rec = Reconciler("bench-encode", timeout=30)
        sw = NullSwitch(rec)
        t0 = time.process_time()
        for owner, fl in by_owner.items():
            rec.set_owner(owner, fl)
        t1 = time.process_time()
        rec.attach(sw.send)
        rec.resync()
        t2 = time.process_time()
        enc = rec.encoder
        want = [(0, f, body, enc.encoded(f, body)) for f in flows for body in (enc.body(f),)]
        t3 = time.process_time()
        for w in want:
            enc.bundle_add_flow(7, w[1], w[2], 9)
        t4 = time.process_time()
        res["set_owner"].append(t1 - t0)
        res["resync"].append(t2 - t1)
        res["encode_old"].append(t4 - t3)
        if new is not None:
            for w in want:
                new(7, w[3], 9)
            res["encode_new"].append(time.process_time() - t4)
    if new is not None:
        enc = wire.Encoder()
        for f in flows[:2000]:
            body = enc.body(f)
            assert new(7, enc.encoded(f, body), 9) == enc.bundle_add_flow(7, f, body, 9), f
    best = {k: min(v) for k, v in res.items() if v}
    n = len(flows)
    print(f"{n} L2 flows, reconciler CPU (process time), best of {args.rounds}:")
    for k, v in best.items():
        print(f"  {k:11s} {v:7.3f} s  {v / n * 1e6:6.2f} µs/flow")
    print(json.dumps({"bench": "encode", "flows": n, "seconds": {k: round(v, 4) for k, v in best.items()}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
