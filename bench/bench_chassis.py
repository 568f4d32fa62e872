"""Many-chassis benchmark (issue 10), first version: C chassis, P ports, 1 vs 3 controllers.

What it does, per run (one run with 1 controller, one with 3, same sizes, same machine), inside
the test bed (tests/testbed: every chassis its own netns + OVS + tunnel endpoint) and an etcd
started here:

  1. etcd, K `tenantflow serve --store etcd://…` (no check mode), C chassis pointed at all K;
     wait until every datapath has exactly one master (the controllers' own stats);
  2. N networks + /24 subnets, R routers (each with N/R interfaces);
  3. the taps of P ports (type=internal, one OVSDB transaction per chassis; ids chosen by us);
  4. TIMED "API → all flows": one bulk POST of P ports (spread over networks and chassis) →
     every port bound and every chassis' master idle with desired == installed flows;
  5. TIMED "one more port" (tap first) → its flows on every chassis that needs them (median of a
     few; the last flow update any chassis' OVS pushed, bench/flowmonitor.py), once bound and
     converged everywhere;
  6. with K > 1, TIMED "kill -9 of a controller" → every chassis it owned has a confirmed master
     among the survivors, then → converged (the heirs compile what they inherit: only owners
     compile, docs/ha.md); flow-mods the survivors sent on takeover (0 = nothing changed);
  7. RSS of every controller (VmRSS/VmHWM);
  8. for 4 and 5, CPU seconds of the controllers, all ovs-vswitchd, all ovsdb-server, etcd and
     this bench (/proc/<pid>/stat): where the seconds go on a machine whose cores they share.

Usage (make bench runs --quick): scripts/netns-run tf-bench -- .venv/bin/python bench/bench_chassis.py
[--quick] [--chassis C] [--ports P] [--networks N] [--routers R] [--controllers 1,3].
Prints a table and one JSON line. Not a test: no asserts. Timings are from this 2-core machine,
where every controller, every OVS and etcd share the same two cores.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import time
import uuid
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flowmonitor import FlowMonitor  # noqa: E402  (bench/, the script's own directory)

from tests.testbed import Bed, Controller  # noqa: E402
from tests.unit.test_store_etcd import EtcdServer  # noqa: E402


def rss_kb(pid: int) -> dict[str, int]:
    out = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(("VmRSS:", "VmHWM:")):
                out[line.split(":")[0]] = int(line.split()[1])
    return out


def cpu_s(pid: int | None) -> float:
    """User + system CPU seconds of a process so far (0 when it is gone)."""
    if pid is None:
        return 0.0
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stats(ctl: Controller) -> dict:
    return requests.get(ctl.api_url + "/v2.0/tenantflow/stats", timeout=30).json()


def wait(fn, timeout: float, poll: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = fn()
        if got:
            return got
        time.sleep(poll)
    raise RuntimeError(f"{what} not reached within {timeout}s")


class Cloud:
    def __init__(self, args, controllers: int) -> None:
        self.args, self.k = args, controllers
        self.stalls = 0  # API reads that timed out while waiting for convergence
        self.etcd = EtcdServer().start()
        self.bed = Bed(f"bench-chassis-{controllers}")
        url = self.etcd.store_url()
        self.ctls = []
        for i in range(controllers):
            wd = self.bed.workdir / f"ctl{i}"
            wd.mkdir()
            ctl = Controller(wd, check_compile=False)
            ctl.store_url = url
            self.ctls.append(ctl)
        self.bed.controller, self.bed.extra_controllers = self.ctls[0], self.ctls[1:]

    def close(self) -> None:
        for ctl in self.ctls[1:]:
            ctl.stop(signal.SIGKILL if not ctl.running() else signal.SIGTERM)
        self.bed.extra_controllers = []
        self.bed.close()
        self.etcd.stop()

    def live(self) -> list[Controller]:
        return [c for c in self.ctls if c.running()]

    def masters(self) -> dict[str, list[int]]:
        """chassis name → indexes of live controllers that are confirmed master of it."""
        out: dict[str, list[int]] = {ch: [] for ch in self.bed.chassis}
        for i, c in enumerate(self.ctls):
            if not c.running():
                continue
            for dp in stats(c)["datapaths"].values():
                if dp.get("master") and dp.get("connected") and dp.get("chassis") in out:
                    out[dp["chassis"]].append(i)
        return out

    def one_master_each(self) -> bool:
        return all(len(v) == 1 for v in self.masters().values())

    def converged(self, ports: set[str]) -> bool:
        """Every port bound, every controller idle, every chassis' master in sync. An API read that
        times out (a controller busy compiling 100 chassis can stall its API past 10 s) is "not
        yet", counted in self.stalls; settle's deadline bounds the wait."""
        try:
            return self._converged(ports)
        except requests.exceptions.Timeout:
            self.stalls += 1
            return False

    def _converged(self, ports: set[str]) -> bool:
        if self.args.bind_first:
            ports = set()  # the POST wrote binding:host_id: bound from the start, nothing to list
        if ports and len(ports) <= 10:  # one more port: ask for it, not for the list of all ports
            # (listing thousands of ports every 50 ms cost the controller more CPU than the change)
            if not all(self.bed.api.get(f"/v2.0/ports/{pid}")["port"].get("binding:host_id") for pid in ports):
                return False
        elif ports:
            bound = {p["id"] for p in self.bed.api.get("/v2.0/ports", fields=["id", "binding:host_id"])["ports"]
                     if p.get("binding:host_id")}
            if not ports <= bound:
                return False
        seen = 0
        for c in self.live():
            st = stats(c)
            if not st.get("idle"):
                return False
            for dp in st["datapaths"].values():
                if dp.get("master"):
                    seen += 1
                    if dp["desired_flows"] != dp["installed_flows"] or dp["problems"]:
                        return False
        return seen == len(self.bed.chassis)

    def settle(self, ports: set[str], t0: float, timeout: float = 600.0) -> float:
        """Seconds from t0 to the first of two consecutive converged polls 0.3 s apart."""
        first = None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            now = time.perf_counter()
            if self.converged(ports):
                if first is None:
                    first = now
                elif now - first > 0.3:
                    return first - t0
            else:
                first = None
            time.sleep(0.05)
        raise RuntimeError(f"no convergence within {timeout:.0f} s: {self.not_converged()}")

    def not_converged(self) -> str:
        """What the controllers say is still missing (for the failure message), and their logs."""
        out = []
        for i, c in enumerate(self.live()):
            try:
                st = stats(c)
            except requests.exceptions.RequestException as exc:
                out.append(f"controller {i}: stats unreadable ({exc.__class__.__name__})")
                continue
            bad = [f"{dp.get('chassis')}: desired {dp.get('desired_flows')} installed {dp.get('installed_flows')}"
                   f" {dp.get('problems')}" for dp in st["datapaths"].values()
                   if dp.get("master") and (dp["desired_flows"] != dp["installed_flows"] or dp["problems"])]
            out.append(f"controller {i} (log {c.log_path}): idle={st.get('idle')}, {len(bad)} masters not in sync"
                       + (f", e.g. {bad[:3]}" if bad else ""))
        return "; ".join(out)

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far: controllers, every ovs-vswitchd, every ovsdb-server, etcd, this bench."""
        ovs = [ch.ovs for ch in self.bed.chassis.values()]
        own = os.times()
        return {"controllers": sum(cpu_s(c.proc.pid) for c in self.live() if c.proc),
                "ovs_vswitchd": sum(cpu_s(o._pid("ovs-vswitchd")) for o in ovs),
                "ovsdb_server": sum(cpu_s(o._pid("ovsdb-server")) for o in ovs),
                "etcd": cpu_s(getattr(getattr(self.etcd, "proc", None), "pid", None)),
                "bench": own.user + own.system}

    @staticmethod
    def cpu_delta(before: dict[str, float], after: dict[str, float], wall: float) -> dict[str, float]:
        out = {k: round(after[k] - before[k], 2) for k in after}
        out["wall"] = round(wall, 2)
        return out

    def flow_mods(self) -> int:
        return sum(dp.get("flow_mods", 0) for c in self.live() for dp in stats(c)["datapaths"].values())

    @staticmethod
    def switch_masters(ch) -> list[str]:
        """Controller targets the switch holds as connected masters (`ovs-vsctl list controller`)."""
        out = ch.ovs_vsctl("--format=csv", "--data=bare", "--no-headings", "--columns=target,role,is_connected",
                           "list", "controller")
        rows = [ln.split(",") for ln in out.splitlines() if ln.count(",") == 2]
        return [t for t, role, connected in rows if role == "master" and connected == "true"]

    def binding(self, ch) -> dict:
        """binding:host_id naming the tap's chassis, as Nova writes it before plugging
        (--bind-first); without it the controller binds the port when it finds the tap."""
        return {"binding:host_id": ch.name} if self.args.bind_first else {}

    def add_taps(self, ch, ids: list[str]) -> None:
        argv: list[str] = ["--timeout=120"]
        for pid in ids:
            name = "tap" + pid[:11]
            argv += ["--", "add-port", ch.bridge, name, "--", "set", "Interface", name, "type=internal"]
        ch.ovs_vsctl(*argv, timeout=300)

    def run(self) -> dict:
        a = self.args
        res: dict = {"controllers": self.k, "chassis": a.chassis, "ports": a.ports, "networks": a.networks,
                     "routers": a.routers, "bind_first": a.bind_first}
        res["ha_lease_ttl"] = a.ha_lease_ttl
        ttl = ["--ha-lease-ttl", str(a.ha_lease_ttl)] if a.ha_lease_ttl else []
        self.bed.start_controller(["--controller-id", "ctl0", *ttl], timeout=60)
        for i, c in enumerate(self.ctls[1:], 1):
            c.start(["--controller-id", f"ctl{i}", *ttl], timeout=60)
        t0 = time.perf_counter()
        chassis = [self.bed.add_chassis(f"c{i}") for i in range(a.chassis)]
        for ch in chassis:
            ch.wait_connected(timeout=60)
        wait(self.one_master_each, 60, 0.2, "one master per chassis")
        res["chassis_up_s"] = round(time.perf_counter() - t0, 2)
        res["masters_per_controller"] = sorted(
            sum(1 for v in self.masters().values() if v == [i]) for i in range(self.k))
        api = self.bed.api
        nets = api.post("/v2.0/networks", {"networks": [{"name": f"n{i}"} for i in range(a.networks)]})["networks"]
        subs = api.post("/v2.0/subnets", {"subnets": [
            {"network_id": n["id"], "cidr": f"10.{i // 250}.{i % 250}.0/24", "ip_version": 4}
            for i, n in enumerate(nets)]})["subnets"]
        per = max(1, a.networks // max(1, a.routers))
        for r in range(a.routers):
            rtr = api.post("/v2.0/routers", {"router": {"name": f"r{r}"}})["router"]
            for s in subs[r * per:(r + 1) * per]:
                api.put(f"/v2.0/routers/{rtr['id']}/add_router_interface", {"subnet_id": s["id"]})
        ids = [str(uuid.uuid4()) for _ in range(a.ports)]
        for ci, ch in enumerate(chassis):
            self.add_taps(ch, ids[ci::len(chassis)])
        self.settle(set(), time.perf_counter())
        mods0 = self.flow_mods()
        cpu0 = self.cpu()
        t0 = time.perf_counter()
        api.post("/v2.0/ports", {"ports": [{"id": pid, "network_id": nets[i % len(nets)]["id"], "name": f"p{i}",
                                            **self.binding(chassis[i % len(chassis)])}
                                           for i, pid in enumerate(ids)]})
        res["api_to_all_flows_s"] = round(self.settle(set(ids), t0), 3)
        # CPU seconds spent meanwhile (to the end of the settle polls), per process kind
        res["cpu_bulk_s"] = self.cpu_delta(cpu0, self.cpu(), time.perf_counter() - t0)
        res["flow_mods_bulk"] = self.flow_mods() - mods0
        res["flows_total"] = sum(dp["installed_flows"] for c in self.live() for dp in stats(c)["datapaths"].values()
                                 if dp.get("master"))
        one, polled, reached = [], [], []
        cpu0 = self.cpu()
        t_one = 0.0
        # every chassis' flow changes as OVS pushes them (bench/flowmonitor.py): the figure is the
        # last update any chassis got for the new port, not the 50 ms poll of the controllers
        monitors = {ch.name: FlowMonitor(ch.ovs.rundir / f"{ch.bridge}.mgmt") for ch in chassis}
        for r in range(a.one_more):
            pid = str(uuid.uuid4())
            self.add_taps(chassis[r % len(chassis)], [pid])
            self.settle(set(), time.perf_counter())
            t0 = time.perf_counter()
            api.post("/v2.0/ports", {"port": {"id": pid, "network_id": nets[r % len(nets)]["id"],
                                              **self.binding(chassis[r % len(chassis)])}})
            polled.append(self.settle({pid}, t0))
            t_one += time.perf_counter() - t0
            lasts = [t for m in monitors.values() if (t := m.last_after(t0)) is not None]
            one.append(max(lasts) - t0 if lasts else float("nan"))
            reached.append(len(lasts))
        for m in monitors.values():
            m.close()
        res["one_more_port_s_median"] = round(statistics.median(one), 4) if one else None
        res["one_more_port_s"] = [round(x, 4) for x in one]
        res["one_more_port_chassis"] = reached  # chassis whose flows changed for it
        res["one_more_port_polled_s"] = [round(x, 3) for x in polled]  # converged per the controllers' stats
        res["cpu_one_more_s"] = self.cpu_delta(cpu0, self.cpu(), t_one)  # incl. the taps and settles
        res["rss_kb"] = [rss_kb(c.proc.pid) for c in self.live() if c.proc]
        res["api_stalls"] = self.stalls
        res["compiled_per_controller"] = sorted(
            sum(1 for dp in stats(c)["datapaths"].values() if dp.get("compiled")) for c in self.live())
        if self.k > 1:
            victim = self.ctls[1]
            owned = [ch for ch, v in self.masters().items() if v == [1]]
            mods0 = sum(dp.get("flow_mods", 0) for c in self.ctls if c is not victim
                        for dp in stats(c)["datapaths"].values())
            live_ports = {str(c.ofp_port) for c in self.ctls if c is not victim}
            t0 = time.perf_counter()
            victim.stop(signal.SIGKILL)
            wait(lambda: all(len(self.masters()[ch]) == 1 for ch in owned), 60, 0.05, "takeover")
            res["takeover_s"] = round(time.perf_counter() - t0, 3)
            res["takeover_chassis"] = len(owned)
            # the heirs compile what they inherit (only owners compile) and resync: converged when
            # every master is idle with desired == installed
            res["takeover_converged_s"] = round(self.settle(set(), t0), 3)
            res["takeover_flow_mods"] = sum(dp.get("flow_mods", 0) for c in self.live()
                                            for dp in stats(c)["datapaths"].values()) - mods0

            def one_live_master(name: str) -> bool:
                ports = [t.rsplit(":", 1)[-1] for t in self.switch_masters(self.bed.chassis[name])]
                return len(ports) == 1 and ports[0] in live_ports
            # what ovsdb shows (`ovs-vsctl list controller`): ovs-vswitchd refreshes a controller's
            # role and is_connected there only every few seconds, so this one lags the switch
            wait(lambda: all(one_live_master(ch) for ch in owned), 60, 0.05, "takeover in ovsdb")
            res["takeover_ovsdb_s"] = round(time.perf_counter() - t0, 3)
        return res


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="4 chassis, 40 ports (make bench)")
    p.add_argument("--chassis", type=int, default=100)
    p.add_argument("--ports", type=int, default=10000)
    p.add_argument("--networks", type=int, default=200)
    p.add_argument("--routers", type=int, default=20)
    p.add_argument("--one-more", type=int, default=5)
    p.add_argument("--controllers", default="1,3")
    p.add_argument("--ha-lease-ttl", type=int, default=0, metavar="S",
                   help="controllers' --ha-lease-ttl (0: their default, 2 s). At 100 chassis on 2 cores the "
                        "default lets a starved controller miss its keep-alives and fence itself: docs/ha.md")
    p.add_argument("--bind-first", action=argparse.BooleanOptionalAction, default=True,
                   help="POST ports with binding:host_id naming their chassis, as Nova does before plugging")
    args = p.parse_args()
    if args.quick:
        args.chassis, args.ports, args.networks, args.routers, args.one_more = 4, 40, 4, 1, 3
    results = []
    for k in (int(x) for x in args.controllers.split(",")):
        cloud = Cloud(args, k)
        try:
            results.append(cloud.run())
            print(json.dumps({"bench": "chassis", "run": results[-1]}), flush=True)  # kept if a later run fails
        finally:
            cloud.close()
    keys = ["controllers", "chassis_up_s", "masters_per_controller", "api_to_all_flows_s", "flow_mods_bulk",
            "flows_total", "one_more_port_s_median", "compiled_per_controller", "takeover_s", "takeover_ovsdb_s",
            "takeover_chassis", "takeover_converged_s", "takeover_flow_mods", "cpu_bulk_s", "one_more_port_s",
            "one_more_port_chassis", "one_more_port_polled_s", "api_stalls"]
    for key in keys:
        print(f"{key:24}" + "".join(f"{str(r.get(key, '-')):>22}" for r in results))
    for r in results:
        print(f"{'rss_kb (K=' + str(r['controllers']) + ')':24}" + " ".join(str(x.get('VmRSS')) for x in r["rss_kb"]))
    if len(results) == 2 and results[0].get("api_to_all_flows_s") and results[1].get("api_to_all_flows_s"):
        print(f"ratio api_to_all_flows K={results[1]['controllers']} / K={results[0]['controllers']}: "
              f"{results[1]['api_to_all_flows_s'] / results[0]['api_to_all_flows_s']:.2f}")
    print(json.dumps({"bench": "chassis", "results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
