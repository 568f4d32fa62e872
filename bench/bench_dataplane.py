"""TCP between two VMs through tenantflow's pipeline vs a NORMAL bridge and a minimal conntrack
pipeline, same run, same namespaces and veths (issue 14).

What it does (tests/testbed Bed: its own netns per chassis and VM, userspace datapath, TX offload
off on the veths): a controller, two chassis joined by the VXLAN underlay, two networks with a
router, the project's default security group (ingress from members, all egress), and VMs

  a, b    net1 on c1, port security + the default group        → "l2 + port security + groups"
  p, q    net1 on c1, port_security_enabled=false, no groups   → "l2, no port security"
  r       net2 on c1, default group; a → r through the router  → "routed"
  x       net1 on c2; a → x over VXLAN                         → "vxlan, two chassis"

then the controller is stopped (the bridge is fail-secure: flows stay) and c1's br-int is
loaded by hand with, in turn,

  normal  one flow, actions=NORMAL                             (baseline for ports without security)
  ct      ip → ct(table=1); +new → ct(commit),NORMAL; +est → NORMAL; the rest NORMAL
          (the minimal stateful firewall: the baseline for ports with security groups)

and a → b (and p → q) run again over them. Each case is one bounded iperf3 run (-t 3 -O 1; 2 s in
--quick), repeated --rounds times (the controller is restarted between rounds and its flows
waited for), medians reported. After each tenantflow case the datapath's megaflows are read
(`ovs-appctl dpctl/dump-flows`): how many, how many recirculations (each ct() is one), which
shows what a packet costs beyond the OpenFlow flow count.

Ratios are within the run; the machine is shared (2 cores, other jobs), so absolute Mbit/s vary
between runs and only the same-run ratios are meant to be compared. Not a test: nothing asserted.
Usage: scripts/netns-run tf-bench -- .venv/bin/python bench/bench_dataplane.py [--quick] [--rounds N]
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.testbed import Bed  # noqa: E402

PORT = 5201
HOT_PACKETS = 1000  # a megaflow that carried at least this many packets carried the iperf3 stream

CT_PIPELINE = [
    "table=0,priority=10,ip,actions=ct(table=1,zone=1)",
    "table=0,priority=0,actions=NORMAL",
    "table=1,priority=10,ct_state=+trk+new,ip,actions=ct(commit,zone=1),NORMAL",
    "table=1,priority=10,ct_state=+trk+est,ip,actions=NORMAL",
    "table=1,priority=0,actions=drop",
]


def iperf(client, server, secs: float) -> float | None:
    """One bounded iperf3 TCP run client → server; Mbit/s received (first second omitted)."""
    srv = server.popen(["timeout", str(int(secs) + 20), "iperf3", "-s", "-1", "-p", str(PORT)])
    try:
        for _ in range(10):  # the server needs a moment to listen; bounded retries
            proc = client.run(["timeout", str(int(secs) + 12), "iperf3", "-c", server.ip, "-p", str(PORT),
                               "-t", str(secs), "-O", "1", "-J"], check=False, timeout=secs + 20)
            out = json.loads(proc.stdout) if proc.stdout.strip().startswith("{") else {}
            if "sum_received" in out.get("end", {}):
                return float(out["end"]["sum_received"]["bits_per_second"]) / 1e6
            client.run(["sleep", "0.3"])
        return None
    finally:
        srv.kill()
        srv.wait(timeout=5)


def megaflows(ch) -> dict:
    """The chassis datapath's megaflows right after a run: count, recirculations, ct actions."""
    text = ch.appctl("dpctl/dump-flows", check=False)
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("flow-dump")]
    # the stream's own megaflows (both directions): what one of its packets costs; each one
    # beyond the first of a direction is a recirculation
    hot = [ln for ln in lines if int((re.findall(r"packets:(\d+)", ln) or ["0"])[0]) >= HOT_PACKETS]
    return {"megaflows": len(lines), "hot": len(hot), "hot_ct": sum(ln.count("ct(") for ln in hot),
            "hot_commits": sum(ln.count("ct(commit") for ln in hot),
            "sample": [ln[:400] for ln in lines if "eth_type(0x0800)" in ln][:3],
            "recirc_ids": len(set(re.findall(r"recirc_id\((0x[0-9a-f]+)\)", text))),
            "ct_actions": sum(ln.count("ct(") for ln in lines),
            "ct_commits": sum(ln.count("ct(commit") for ln in lines),
            # megaflows of established packets that still commit (+est matched, ct(commit in actions)
            "est_commits": sum(1 for ln in lines if re.search(r"ct_state\([^)]*\+est", ln) and "ct(commit" in ln)}


def passes_per_packet(ch) -> float | None:
    """Datapath passes per packet on the chassis since the last pmd-stats-clear (1 + the
    recirculations per packet; every ct(table=…) is one), from dpif-netdev/pmd-stats-show."""
    text = ch.appctl("dpif-netdev/pmd-stats-show", check=False)
    rx = sum(int(n) for n in re.findall(r"packets received:\s*(\d+)", text))
    recirc = sum(int(n) for n in re.findall(r"packet recirculations:\s*(\d+)", text))
    return round((rx + recirc) / rx, 2) if rx else None


def wait_ping(a, b, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if a.ping(b.ip, count=1, timeout=2):
            return True
        time.sleep(0.5)
    return False


def load_flows(ch, flows: list[str]) -> None:
    ch.ofctl("del-flows", ch.bridge)
    for f in flows:
        ch.ofctl("add-flow", ch.bridge, f)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2 s runs, one round")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    secs = 2.0 if args.quick else 3.0
    rounds = 1 if args.quick else args.rounds
    res: dict[str, list[float]] = {}
    flows_seen: dict[str, dict] = {}
    passes: dict[str, list[float | None]] = {}
    with Bed("bench-dataplane") as bed:
        bed.start_controller()
        c1, c2 = bed.add_chassis("c1"), bed.add_chassis("c2")
        for ch in (c1, c2):
            if not ch.wait_connected(timeout=30):
                raise SystemExit("chassis did not connect:\n" + bed.diagnostics())
        api = bed.api
        net1, sub1 = api.network_with_subnet("dp1", "10.61.0.0/24")
        net2, sub2 = api.network_with_subnet("dp2", "10.62.0.0/24")
        rtr = api.create("routers", name="dp-r")
        for sub in (sub1, sub2):
            api.put(f"/v2.0/routers/{rtr['id']}/add_router_interface", {"subnet_id": sub["id"]})
        open_port = {"port_security_enabled": False, "security_groups": []}
        a = bed.add_vm(c1, api.port(net1), gateway=True, name="a")
        b = bed.add_vm(c1, api.port(net1), gateway=True, name="b")
        p = bed.add_vm(c1, api.port(net1, **open_port), name="p")
        q = bed.add_vm(c1, api.port(net1, **open_port), name="q")
        r = bed.add_vm(c1, api.port(net2), gateway=True, name="r")
        x = bed.add_vm(c2, api.port(net1), gateway=True, name="x")
        cases = [("l2 + port security + groups", a, b), ("l2, no port security", p, q),
                 ("routed", a, r), ("vxlan, two chassis", a, x)]

        def run(label: str, cli, srv, look: bool) -> None:
            c1.appctl("dpctl/del-flows", check=False)  # this case's megaflows only
            c2.appctl("dpctl/del-flows", check=False)
            c1.appctl("dpif-netdev/pmd-stats-clear", check=False)
            mbps = iperf(cli, srv, secs)
            passes.setdefault(label, []).append(passes_per_packet(c1))
            if mbps is not None:
                res.setdefault(label, []).append(mbps)
            if look:
                flows_seen[label] = megaflows(c1)

        for rnd in range(rounds):
            if rnd:
                bed.start_controller()
                for ch in (c1, c2):
                    ch.wait_connected(timeout=30)
            for _label, cli, srv in cases:
                if not wait_ping(cli, srv):
                    raise SystemExit(f"{cli.name} → {srv.name} does not ping:\n" + bed.diagnostics())
            for label, cli, srv in cases:
                run(label, cli, srv, look=rnd == 0)
            bed.stop_controller()
            load_flows(c1, ["priority=0,actions=NORMAL"])
            run("NORMAL bridge", a, b, look=rnd == 0)
            load_flows(c1, CT_PIPELINE)
            run("ct(commit) only", a, b, look=rnd == 0)
            c1.ofctl("del-flows", c1.bridge)  # the restarted controller installs its own
    med = {k: statistics.median(v) for k, v in res.items()}
    normal, ct = med.get("NORMAL bridge"), med.get("ct(commit) only")
    print(f"iperf3 TCP VM→VM, userspace datapath, median of {rounds} ({secs:.0f} s each):")
    for label in [c[0] for c in cases] + ["NORMAL bridge", "ct(commit) only"]:
        if label not in med:
            print(f"  {label:30} failed")
            continue
        line = f"  {label:30} {med[label]:8.0f} Mbit/s  passes/pkt {passes.get(label)}"
        if normal:
            line += f"   {med[label] / normal:.2f}× NORMAL"
        if ct:
            line += f"   {med[label] / ct:.2f}× ct-only"
        if label in flows_seen:
            fs = flows_seen[label]
            line += (f"   (megaflows {fs['megaflows']}, recirc ids {fs['recirc_ids']}, ct() {fs['ct_actions']},"
                     f" commits {fs['ct_commits']}, +est commits {fs['est_commits']};"
                     f" stream: {fs['hot']} megaflows, ct() {fs['hot_ct']}, commits {fs['hot_commits']})")
        print(line)
    print(json.dumps({"bench": "dataplane", "rounds": rounds,
                      "mbps": {k: [round(x) for x in v] for k, v in res.items()},
                      "median_mbps": {k: round(v) for k, v in med.items()}, "passes_per_packet": passes,
                      "megaflows": flows_seen}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
