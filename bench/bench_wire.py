"""Flow-mods per second into Open vSwitch: our encoder + reconciler vs `ovs-ofctl --bundle add-flows`.

What it measures, on one private OVS (userspace datapath, own run dir), N L2 flows shaped like
the pipeline's (table 40, metadata + eth_dst → set reg7, goto OUTPUT):
  ofctl   `ovs-ofctl -O OpenFlow13 --bundle add-flows BR FILE` (C, one bundle) — the reference;
  ours    Reconciler.resync() onto the empty bridge: read flows, diff, encode N flow-mods, one ONF
          bundle, commit, barrier — the real controller path minus os-ken's socket thread;
  again   the same resync with nothing changed: flow-stats read of N flows + diff, 0 flow-mods;
  one write  ours with the whole bundle in one write (as before SEND_CHUNK): the gain of pieces;
  naive   os-ken's own OFPFlowMod per flow (build + serialise + send), no bundle, then a barrier.
All go over the bridge's management socket (unix), so no TCP tuning is involved.

Run inside a dedicated netns (make bench does): scripts/netns-run tf-bench -- .venv/bin/python
bench/bench_wire.py [--quick] [--flows N]. Prints a table and one JSON line. Not a test.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from controller import wire  # noqa: E402
from controller import reconciler as reconciler_mod  # noqa: E402
from controller.reconciler import Reconciler  # noqa: E402
from flows.flow import Flow, GotoTable, SetField, make_match  # noqa: E402
from flows.tables import Owner, cookie  # noqa: E402
from tests.testbed.ovs import OvsInstance  # noqa: E402

BRIDGE = "tfbenchbr"


class PrivateOVS(OvsInstance):
    """The test bed's private OVS with one OpenFlow13-only bridge to load."""

    def __init__(self) -> None:
        super().__init__(Path(tempfile.mkdtemp(prefix="tfbw-")))
        self.dir = self.rundir

    def run(self, *cmd: str, timeout: float = 300) -> str:
        p = subprocess.run(cmd, env={**os.environ, **self.env}, capture_output=True, text=True, timeout=timeout)
        if p.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)}: {p.stderr.strip()}")
        return p.stdout

    def start(self) -> "PrivateOVS":
        super().start()
        self.run("ovs-vsctl", "add-br", BRIDGE, "--", "set", "bridge", BRIDGE, "datapath_type=netdev",
                 "fail_mode=secure", "protocols=OpenFlow13")
        deadline = time.monotonic() + 10
        while not (self.dir / f"{BRIDGE}.mgmt").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        super().stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def count(self) -> int:
        out = self.run("ovs-ofctl", "-O", "OpenFlow13", "dump-aggregate", BRIDGE)
        return int(out.split("flow_count=")[1].split()[0])

    def clear(self) -> None:
        self.run("ovs-ofctl", "-O", "OpenFlow13", "del-flows", BRIDGE)


class Connection:
    """A minimal OpenFlow 1.3 client on the bridge's management socket, feeding a Reconciler."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(str(path))
        self.sock.sendall(struct.pack("!BBHI", 4, 0, 8, 1))  # hello
        self.rec: Reconciler | None = None
        self.barriers: dict[int, threading.Event] = {}
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def send(self, buf: bytes) -> bool:
        with self._lock:
            self.sock.sendall(buf)
        return True

    def _recv_exact(self, n: int) -> bytes:
        chunks, got = [], 0
        while got < n:
            c = self.sock.recv(min(n - got, 1 << 20))
            if not c:
                raise EOFError
            chunks.append(c)
            got += len(c)
        return b"".join(chunks)

    def _read(self) -> None:
        try:
            while True:
                hdr = self._recv_exact(8)
                _v, mtype, length, xid = struct.unpack("!BBHI", hdr)
                msg = hdr + self._recv_exact(length - 8)
                rec = self.rec
                if mtype == 21:  # barrier reply
                    ev = self.barriers.pop(xid, None)
                    if ev is not None:
                        ev.set()
                    elif rec is not None:
                        rec.on_barrier(xid)
                elif mtype == 1 and rec is not None:
                    rec.on_error(wire.parse_error(msg))
                elif mtype == 19 and rec is not None:  # multipart reply
                    # flow stats, and the meter-config read a resync starts with (as ofapp routes them)
                    _mp_type, flags = struct.unpack_from("!HH", msg, 8)
                    rec.on_flow_stats(xid, msg[16:], bool(flags & 1))
        except (EOFError, OSError):
            return

    def barrier(self, xid: int = 0x7000_0000) -> None:
        ev = threading.Event()
        self.barriers[xid] = ev
        self.send(wire.barrier(xid))
        if not ev.wait(300):
            raise TimeoutError("barrier")


def l2_flows(n: int) -> list[Flow]:
    """n flows like the L2 lookup stage: one owner (port) per 4 flows, 250 networks."""
    out = []
    for i in range(n):
        owner = cookie(Owner.PORT, i // 4 + 1)
        out.append(Flow(40, 100, make_match(metadata=i % 250 + 1, eth_dst=0xFA163E000000 + i),
                        (SetField("reg7", i // 4 + 1), GotoTable(60)), owner))
    return out


def bench_ofctl(ovs: PrivateOVS, flows: list[Flow]) -> float:
    path = ovs.dir / "flows.txt"
    path.write_text("\n".join(f.ofctl() for f in flows) + "\n")
    t0 = time.perf_counter()
    ovs.run("ovs-ofctl", "-O", "OpenFlow13", "--bundle", "add-flows", BRIDGE, str(path))
    dt = time.perf_counter() - t0
    assert ovs.count() == len(flows), ovs.count()
    return dt


def bench_ours(ovs: PrivateOVS, flows: list[Flow], chunk: int | None = None) -> tuple[float, float, int, int]:
    """`chunk`: flow-mods per write (reconciler.SEND_CHUNK; a huge value = one write per bundle)."""
    saved = reconciler_mod.SEND_CHUNK
    if chunk is not None:
        reconciler_mod.SEND_CHUNK = chunk
    try:
        return _bench_ours(ovs, flows)
    finally:
        reconciler_mod.SEND_CHUNK = saved


# our process's CPU seconds: during the first resync, and declaring the flows before it (set_owner
# computes each flow's body and, since issue 14, its wire bytes once — work the resync then reuses)
CPU: dict[str, list[float]] = {"ours": [], "declare": []}


def _bench_ours(ovs: PrivateOVS, flows: list[Flow]) -> tuple[float, float, int, int]:
    conn = Connection(ovs.dir / f"{BRIDGE}.mgmt")
    rec = Reconciler("bench", timeout=300)
    conn.rec = rec
    by_owner: dict[int, list[Flow]] = {}
    for f in flows:
        by_owner.setdefault(f.cookie, []).append(f)
    c0 = time.process_time()
    for owner, fl in by_owner.items():
        rec.set_owner(owner, fl)
    CPU["declare"].append(time.process_time() - c0)
    rec.attach(conn.send)
    t0, c0 = time.perf_counter(), time.process_time()
    sent = rec.resync()
    dt = time.perf_counter() - t0
    CPU["ours"].append(time.process_time() - c0)
    assert ovs.count() == len(flows), ovs.count()
    t0 = time.perf_counter()
    sent_again = rec.resync()
    dt_again = time.perf_counter() - t0
    conn.sock.close()
    return dt, dt_again, sent, sent_again


def bench_naive(ovs: PrivateOVS, flows: list[Flow]) -> float:
    from os_ken.ofproto import ofproto_v1_3 as ofp
    from os_ken.ofproto import ofproto_v1_3_parser as parser

    class DP:
        ofproto = ofp
        ofproto_parser = parser

    conn = Connection(ovs.dir / f"{BRIDGE}.mgmt")
    dp = DP()
    t0 = time.perf_counter()
    for i, f in enumerate(flows):
        match = parser.OFPMatch(**{n: (wire.user_value(n, v) if m is None else (v, m)) for n, v, m in f.match})
        inst = [parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, [parser.OFPActionSetField(reg7=i // 4 + 1)]),
                parser.OFPInstructionGotoTable(60)]
        msg = parser.OFPFlowMod(dp, cookie=f.cookie, table_id=f.table, command=ofp.OFPFC_ADD, priority=f.priority,
                                buffer_id=ofp.OFP_NO_BUFFER, out_port=ofp.OFPP_ANY, out_group=ofp.OFPG_ANY,
                                match=match, instructions=inst)
        msg.set_xid(i + 1)
        msg.serialize()
        conn.send(bytes(msg.buf))
    conn.barrier()
    dt = time.perf_counter() - t0
    assert ovs.count() == len(flows), ovs.count()
    conn.sock.close()
    return dt


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--flows", type=int, default=50_000)
    ap.add_argument("--quick", action="store_true", help="one round (default: best of 3)")
    args = ap.parse_args()
    rounds = 1 if args.quick else 3
    flows = l2_flows(args.flows)
    ovs = PrivateOVS()
    try:
        ovs.start()
        res: dict[str, list[float]] = {"ofctl": [], "ours": [], "again": [], "one_write": [], "naive": []}
        for _ in range(rounds):
            res["ofctl"].append(bench_ofctl(ovs, flows))
            ovs.clear()
            dt, dt_again, sent, sent_again = bench_ours(ovs, flows)
            assert sent == len(flows) and sent_again == 0, (sent, sent_again)
            res["ours"].append(dt)
            res["again"].append(dt_again)
            ovs.clear()
            cpu = {k: list(v) for k, v in CPU.items()}
            res["one_write"].append(bench_ours(ovs, flows, chunk=1 << 30)[0])  # before pieces: one write
            CPU.update(cpu)
            ovs.clear()
            res["naive"].append(bench_naive(ovs, flows))
            ovs.clear()
    finally:
        ovs.stop()
    n = len(flows)
    best = {k: min(v) for k, v in res.items()}
    rate = {k: n / v for k, v in best.items()}
    print(f"{n} L2 flows into OVS (userspace datapath), best of {rounds}:")
    print(f"  ovs-ofctl --bundle add-flows : {best['ofctl']:7.3f} s  {rate['ofctl']:9.0f} flows/s")
    print(f"  tenantflow reconciler        : {best['ours']:7.3f} s  {rate['ours']:9.0f} flows/s"
          f"  (ratio to ovs-ofctl {rate['ours'] / rate['ofctl']:.2f})")
    print(f"    of which our CPU           : {min(CPU['ours']):7.3f} s  (the rest: OVS parsing and committing,"
          " and waiting for a core on a loaded machine)")
    print(f"    declaring the flows before : {min(CPU['declare']):7.3f} s  CPU (set_owner: bodies and wire bytes"
          " encoded once, untimed above)")
    print(f"  reconciler, one write/bundle : {best['one_write']:7.3f} s  {rate['one_write']:9.0f} flows/s"
          f"  (ratio to ovs-ofctl {rate['one_write'] / rate['ofctl']:.2f}; pieces of {reconciler_mod.SEND_CHUNK}"
          f" vs one write: {best['one_write'] / best['ours']:.2f}x)")
    print(f"  resync, nothing changed      : {best['again']:7.3f} s  0 flow-mods ({n} flows read and diffed)")
    print(f"  os-ken naive per-message     : {best['naive']:7.3f} s  {rate['naive']:9.0f} flows/s")
    print(json.dumps({"bench": "wire", "flows": n, "rounds": rounds,
                      "seconds": {k: round(v, 4) for k, v in best.items()},
                      "flows_per_s": {k: round(v) for k, v in rate.items()},
                      "ratio_ours_to_ofctl": round(rate["ours"] / rate["ofctl"], 3),
                      "ours_cpu_s": round(min(CPU["ours"]), 4),
                      "declare_cpu_s": round(min(CPU["declare"]), 4), "loadavg": os.getloadavg()[0]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
