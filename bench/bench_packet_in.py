"""ARP and DHCP answers per second through a real OVS bridge and `tenantflow serve`.

What it measures: a VM namespace offers ARP requests (for a known address) or DHCP DISCOVERs at
a fixed rate for a few seconds on one port; answers (ARP replies / OFFERs) coming back to the VM
are counted. ARP is answered by tenantflow's in-switch responder (flows/services.py: no
packet-in; the controller's packet-in counter is read around the ARP runs to show it), DHCP by
the controller (its per-port token bucket lifted for the capacity runs; one run keeps the
default limits to show what a single flooding port can get). Same bed, same probe, same run:
bench/minimal_arp_app.py, a minimal os-ken app answering ARP by packet-in/packet-out, is the
baseline; the table prints tenantflow/minimal ratios per offered rate.

Run inside a dedicated netns (make bench does): scripts/netns-run tf-bench -- .venv/bin/python
bench/bench_packet_in.py [--quick]. Prints a table and one JSON line. Not a test: no asserts.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.testbed import Bed  # noqa: E402
from tests.testbed.controller import free_port  # noqa: E402
from tests.testbed.proc import popen  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

# Runs inside the VM: offer KIND frames at RATE/s for SECS, count answers. Bounded by count and time.
PROBE = r"""
import json, select, socket, struct, sys, threading, time
from scapy.all import ARP, BOOTP, DHCP, IP, UDP, Ether
kind, mac, ip, target = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
rate, secs = float(sys.argv[5]), float(sys.argv[6])
if kind == "arp":
    frame = bytearray(bytes(Ether(src=mac, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=mac, psrc=ip, pdst=target)))
else:
    chaddr = bytes.fromhex(mac.replace(":", "")) + b"\0" * 10
    frame = bytearray(bytes(Ether(src=mac, dst="ff:ff:ff:ff:ff:ff") / IP(src="0.0.0.0", dst="255.255.255.255")
                            / UDP(sport=68, dport=67, chksum=0) / BOOTP(chaddr=chaddr, xid=1)
                            / DHCP(options=[("message-type", "discover"), "end"])))
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
s.bind(("eth0", 0))
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
got = [0]
stop = threading.Event()
def rx():
    while not stop.is_set():
        r, _, _ = select.select([s], [], [], 0.1)
        if not r:
            continue
        data, addr = s.recvfrom(2048)
        if addr[2] == socket.PACKET_OUTGOING:
            continue
        if kind == "arp" and data[12:14] == b"\x08\x06" and data[20:22] == b"\x00\x02":
            got[0] += 1
        elif kind == "dhcp" and data[12:14] == b"\x08\x00" and data[23] == 17 and data[34:38] == b"\x00\x43\x00\x44":
            got[0] += 1
t = threading.Thread(target=rx, daemon=True)
t.start()
n = int(rate * secs)
t0 = time.monotonic()
for i in range(n):
    if kind == "dhcp":
        struct.pack_into("!I", frame, 46, i)
    s.send(frame)
    delay = t0 + (i + 1) / rate - time.monotonic()
    if delay > 0:
        time.sleep(delay)
sent_for = time.monotonic() - t0
time.sleep(1.0)
stop.set()
t.join(2)
print(json.dumps({"sent": n, "sent_for": round(sent_for, 3), "answered": got[0]}))
"""


def probe(bed: Bed, vm, kind: str, target: str, rate: float, secs: float) -> dict:
    script = bed.workdir / "h5-probe.py"
    script.write_text(PROBE)
    res = vm.run([sys.executable, str(script), kind, vm.mac, vm.ip or "0.0.0.0", target, str(rate), str(secs)],
                 check=False, timeout=secs + 30)
    if res.returncode != 0:
        return {"error": res.stderr[-500:]}
    out = json.loads(res.stdout.strip().splitlines()[-1])
    out["offered_pps"] = rate
    out["answered_pps"] = round(out["answered"] / max(out["sent_for"], 1e-6), 1)
    return out


def minimal_app_rows(bed: Bed, ch, vm, target: str, target_mac: str, rates: list[float], secs: float) -> list[dict]:
    """Same bed, same VM, same probe: tenantflow stopped, the bridge handed to bench/minimal_arp_app.py
    with one flow punting ARP requests to it — the baseline the issue asks for."""
    bed.stop_controller()
    port = free_port("0.0.0.0")
    log = open(bed.workdir / "minimal-arp-app.log", "w")
    app = popen([sys.executable, str(REPO / "bench" / "minimal_arp_app.py"), str(port)],
                env={"MINIMAL_ARP_ANSWERS": f"{target}={target_mac}"}, stdout=log, stderr=log)
    rows = []
    try:
        ch.ovs_vsctl("set-controller", ch.bridge, f"tcp:{bed.mgmt_gw}:{port}")
        ch.ofctl("del-flows", ch.bridge)
        ch.ofctl("add-flow", ch.bridge, "table=0,priority=100,arp,arp_op=1,actions=CONTROLLER:65535")
        if not ch.wait_connected(timeout=30):
            return [{"kind": "arp", "limits": "minimal os-ken app", "error": "app did not connect"}]
        for _ in range(10):
            if probe(bed, vm, "arp", target, 5, 1.0).get("answered"):
                break
        for rate in rates:
            row = probe(bed, vm, "arp", target, rate, secs)
            row.update(kind="arp", limits="minimal os-ken app")
            rows.append(row)
    finally:
        app.terminate()
        try:
            app.wait(timeout=10)
        except subprocess.TimeoutExpired:
            app.kill()
        log.close()
    return rows


def packet_ins(bed: Bed, chassis: str) -> int:
    """The controller's packet-in counter for one chassis (GET /v2.0/tenantflow/stats)."""
    dps = bed.api.get("tenantflow/stats")["datapaths"].values()
    return sum(int(d.get("packet_ins", 0)) for d in dps if d.get("chassis") == chassis)


def run_bed(label: str, env: dict[str, str], plan: list[tuple[str, float]], secs: float,
            baseline_rates: list[float] | None = None) -> list[dict]:
    rows = []
    with Bed(label) as bed:
        cfg = bed.workdir / "h5-serve.conf"  # chassis registered by node init only
        cfg.write_text("[DEFAULT]\nauto_register_chassis = false\n")
        bed.start_controller(extra_args=["--config-file", str(cfg)], env=env)
        ch = bed.add_chassis("c1")
        if not ch.wait_connected(timeout=30):
            raise SystemExit("chassis did not connect:\n" + bed.diagnostics())
        net, _ = bed.api.network_with_subnet("benchnet", "10.60.0.0/24")
        p1, p2 = bed.api.port(net), bed.api.port(net)
        vm = bed.add_vm(ch, p1)
        target = p2["fixed_ips"][0]["ip_address"]
        warm = probe(bed, vm, "arp", target, 5, 1.0)  # flows in place?
        for _ in range(10):
            if warm.get("answered"):
                break
            time.sleep(1)
            warm = probe(bed, vm, "arp", target, 5, 1.0)
        for kind, rate in plan:
            before = packet_ins(bed, ch.name)
            row = probe(bed, vm, kind, target, rate, secs)
            row.update(kind=kind, limits="default" if not env else "lifted",
                       packet_ins=packet_ins(bed, ch.name) - before)
            if kind == "arp":
                row["limits"] = "switch responder" + (" (default)" if not env else "")
            rows.append(row)
        if baseline_rates:
            rows += minimal_app_rows(bed, ch, vm, target, str(p2["mac_address"]), baseline_rates, secs)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="shorter runs, fewer rates")
    args = ap.parse_args()
    secs = 2.0 if args.quick else 5.0
    arp_rates: list[float] = [2000, 5000, 10000, 20000] if args.quick else [4000, 8000, 12000, 16000, 32000, 64000]
    dhcp_rates: list[float] = [500, 2000, 5000] if args.quick else [1000, 2000, 4000, 8000]
    lifted = {"TENANTFLOW_DHCP_RATE": "1000000"}  # ARP has no packet-in path, so no bucket to lift
    rows = run_bed("bench-packet-in", lifted,
                   [("arp", r) for r in arp_rates] + [("dhcp", r) for r in dhcp_rates], secs,
                   baseline_rates=arp_rates)
    rows += run_bed("bench-packet-in-limited", {}, [("arp", arp_rates[-2]), ("dhcp", 2000)], secs)
    minimal_at = {r["offered_pps"]: r.get("answered_pps", 0) for r in rows if r["limits"] == "minimal os-ken app"}
    print(f"{'kind':5} {'limits':28} {'offered/s':>10} {'answered/s':>11} {'answered':>9} {'sent':>7} "
          f"{'pkt-ins':>8} {'vs minimal':>10}")
    for r in rows:
        if "error" in r:
            print(f"{r['kind']:5} {r['limits']:28} error: {r['error']}")
            continue
        base = minimal_at.get(r["offered_pps"]) if r["limits"] == "switch responder" else None
        ratio = f"{r['answered_pps'] / base:.2f}" if base else "-"
        r["vs_minimal"] = round(r["answered_pps"] / base, 2) if base else None
        print(f"{r['kind']:5} {r['limits']:28} {r['offered_pps']:>10.0f} {r['answered_pps']:>11.1f} "
              f"{r['answered']:>9} {r['sent']:>7} {r.get('packet_ins', '-')!s:>8} {ratio:>10}")
    best = {"arp": max((r.get("answered_pps", 0) for r in rows if r["limits"] == "switch responder"), default=0),
            "dhcp": max((r.get("answered_pps", 0) for r in rows if r["kind"] == "dhcp" and r["limits"] == "lifted"),
                        default=0)}
    arp_pins = sum(r.get("packet_ins", 0) for r in rows if r["kind"] == "arp")
    minimal = max(minimal_at.values(), default=0)
    if minimal:
        print(f"ARP answered/s, best rate: tenantflow switch responder {best['arp']:.0f} ({arp_pins} packet-ins), "
              f"minimal os-ken app {minimal:.0f} (same bed, same probe): ratio {best['arp'] / minimal:.2f}")
    print(json.dumps({"bench": "packet_in", "max_answered_pps": best, "minimal_app_arp_pps": minimal,
                      "arp_packet_ins": arp_pins, "rows": rows}))


if __name__ == "__main__":
    main()
