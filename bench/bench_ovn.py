"""OVN side by side (issue 14): bench_scale's topology built in OVN, then tenantflow's bench_scale, same run.

What it does, in a private network namespace (it re-executes itself under scripts/netns-run, as
bench_scale does) with private run dirs for everything — nothing touches the host's OVS or OVN:

  OVN (23.03 on Debian 12): NB and SB ovsdb-servers, ovn-northd, one OVS (userspace datapath,
  br-int pre-created with datapath_type=netdev) with ovn-controller as chassis "bench1".
  1. topology, untimed, one ovn-nbctl transaction: M logical switches (a /24 each, native DHCP
     options as Neutron's OVN driver writes them, one localport per network as Neutron's
     metadata port), R logical routers with M/R router ports each, and the port groups of
     Neutron's default security group: `neutron_pg_drop` (drop all IP both ways, priority 1001)
     and `pg_default` (egress ip4/ip6 allow-related, ingress ip4/ip6 from the group's own
     address sets `$pg_default_ip4/6`, priority 1002);
  2. TIMED: one NB transaction creating N ports (addresses + port security "MAC IP", DHCPv4
     options, members of both port groups), then — as Nova plugs after the Neutron write — the
     taps (`type=internal`, `external_ids:iface-id`, 1,000 per ovs-vsctl transaction, as
     bench_scale) → until every flow is on the switch: flow count polled with OFPMP_AGGREGATE on
     the bridge's management socket (bench_scale's FlowCounter — `ovs-ofctl dump-aggregate`
     without a process spawn); done = every tap has `external_ids:ovn-installed=true`, the count
     has not moved for a quiet period, and `ovn-nbctl --wait=hv sync` returned (ovn-controller
     has processed everything the NB held); the figure is the first poll that saw the final count;
  3. flows per port (total on the switch / N);
  4. one more port, as bench_scale: tap pre-created, NB write → its flows on the switch (median);
  5. one port at a time plugged after its NB write (internal tap, link up): ovs-vsctl start →
     flows + ovn-installed (bench_scale's "from ovs-vsctl start" figure for internal taps);
  6. RSS of ovn-controller (and of northd and the two ovsdb-servers, for context).
  tenantflow: bench_scale's Bench with the same sizes, native hub, taps plugged after the POST.
  Then a table with the ratios tenantflow / OVN.

Usage: .venv/bin/python bench/bench_ovn.py [--quick] [--ports N] [--only ovn|tenantflow|both]
  (`make bench-ovn`, `make bench-ovn OVN_INSTALL=1` installs ovn-central + ovn-host first).
Exits 0 with a message when OVN is not installed. Not a test (timings are never asserted).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from bench_scale import (  # noqa: E402
    BRIDGE, CHASSIS, Bench, FlowCounter, ensure_netns, loadavg, report, rss_kb, run, summary, tap)
from tests.testbed.ovs import OvsInstance, pid_alive  # noqa: E402

OVN_BINARIES = ("ovn-northd", "ovn-controller", "ovn-nbctl", "ovn-sbctl", "ovsdb-server", "ovs-vswitchd")
OVN_SHARE = Path("/usr/share/ovn")
PORTS_PER_TXN = 1000


def q(s: str) -> str:
    """An OVSDB string atom, quoted (values with spaces or colons)."""
    return json.dumps(s)


def mac(kind: int, n: int) -> str:
    """fa:16:3e (Neutron's base MAC) + kind + a 16-bit index."""
    return f"fa:16:3e:{kind:02x}:{(n >> 8) & 0xff:02x}:{n & 0xff:02x}"


def net_prefix(i: int) -> str:
    """The /24 of network i, the same addressing as bench_scale's subnets."""
    return f"10.{i // 250}.{i % 250}"


def missing() -> list[str]:
    path = os.environ.get("PATH", "") + os.pathsep + "/usr/sbin:/sbin"
    return [b for b in OVN_BINARIES if shutil.which(b, path=path) is None] + \
        [str(p) for p in (OVN_SHARE / "ovn-nb.ovsschema", OVN_SHARE / "ovn-sb.ovsschema") if not p.exists()]


def install() -> int:
    """apt-get install ovn-central ovn-host without starting their services: the packages' own
    units would run northd on the host and an ovn-controller on the host's OVS (creating br-int
    there). A policy-rc.d answering 101 is Debian's documented way to say "don't start"; one we
    put there is removed again, an existing one is left alone."""
    policy = Path("/usr/sbin/policy-rc.d")
    ours = not policy.exists()
    if ours:
        policy.write_text("#!/bin/sh\n# bench_ovn.py: no service starts during apt-get install\nexit 101\n")
        policy.chmod(0o755)
    try:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        return subprocess.call(["apt-get", "install", "-y", "--no-install-recommends", "ovn-central", "ovn-host"],
                               env=env)
    finally:
        if ours:
            policy.unlink()


# ------------------------------------------------------------------------------ OVN bench

class OvnBench:
    """One chassis of OVN in private run dirs; `main()` returns the figures bench_scale reports."""

    DAEMONS = ("ovn-controller", "ovn-northd", "ovsdb-nb", "ovsdb-sb")

    def __init__(self, args) -> None:
        self.args = args
        self.dir = Path(tempfile.mkdtemp(prefix="tfovn-"))
        self.ovs = OvsInstance(self.dir / "ovs")
        self.ovn = self.dir / "ovn"
        self.counter: FlowCounter | None = None
        self.nb = f"unix:{self.ovn / 'nb.sock'}"
        self.sb = f"unix:{self.ovn / 'sb.sock'}"
        self.dhcp: dict[str, str] = {}  # cidr -> DHCP_Options uuid
        self.n_port = 0  # addresses handed out so far, per network
        self.result: dict = {"ports": args.ports, "networks": args.networks, "routers": args.routers}

    @property
    def env(self) -> dict[str, str]:
        d = str(self.ovn)
        return {**self.ovs.env, "OVN_RUNDIR": d, "OVN_DBDIR": d, "OVN_LOGDIR": d, "OVN_SYSCONFDIR": d,
                "OVN_PKGDATADIR": str(OVN_SHARE)}

    # -- daemons ---------------------------------------------------------------------------
    def _daemon(self, name: str, argv: list[str]) -> None:
        ctl = [] if name == "ovn-controller" else [f"--unixctl={self.ovn / (name + '.ctl')}"]  # it has no option
        run([*argv, f"--pidfile={self.ovn / (name + '.pid')}", *ctl, "--detach", "--no-chdir",
             f"--log-file={self.ovn / (name + '.log')}"], env=self.env, timeout=30)

    def pid(self, name: str) -> int | None:
        try:
            p = int((self.ovn / f"{name}.pid").read_text().strip())
        except (OSError, ValueError):
            return None
        return p if pid_alive(p) else None

    def start(self) -> None:
        self.ovn.mkdir(parents=True)
        self.ovs.start()
        # br-int first, userspace datapath, OpenFlow 1.5 for ovn-controller and 1.3 for FlowCounter
        self.ovs.add_bridge(BRIDGE, fail_mode="secure", protocols="OpenFlow13,OpenFlow15",
                            extra=("other_config:disable-in-band=true",))
        self.ovs.vsctl("set", "Open_vSwitch", ".", f"external_ids:system-id={CHASSIS}",
                       f"external_ids:ovn-remote={self.sb}", "external_ids:ovn-encap-type=geneve",
                       "external_ids:ovn-encap-ip=127.0.0.1", "external_ids:ovn-bridge-datapath-type=netdev")
        for db, schema in (("nb", "ovn-nb.ovsschema"), ("sb", "ovn-sb.ovsschema")):
            path = self.ovn / f"ovn{db}_db.db"
            run(["ovsdb-tool", "create", str(path), str(OVN_SHARE / schema)], env=self.env)
            self._daemon(f"ovsdb-{db}", ["ovsdb-server", str(path), f"--remote=punix:{self.ovn / (db + '.sock')}"])
        self.nbctl("init")
        run(["ovn-sbctl", f"--db={self.sb}", "--timeout=30", "init"], env=self.env, timeout=40)
        self._daemon("ovn-northd", ["ovn-northd", f"--ovnnb-db={self.nb}", f"--ovnsb-db={self.sb}"])
        self._daemon("ovn-controller", ["ovn-controller", f"unix:{self.ovs.db_sock}"])
        deadline = time.monotonic() + 30
        while CHASSIS not in run(["ovn-sbctl", f"--db={self.sb}", "--timeout=10", "--bare", "--columns=name",
                                  "list", "Chassis"], env=self.env):
            if time.monotonic() > deadline:
                raise RuntimeError(f"chassis {CHASSIS} did not register; see {self.ovn}/ovn-controller.log")
            time.sleep(0.1)
        self.nbctl("--wait=hv", "sync")
        self.counter = FlowCounter(self.ovs.rundir / f"{BRIDGE}.mgmt")

    def stop(self) -> None:
        if self.counter is not None:
            self.counter.close()
        for name in self.DAEMONS:
            p = self.pid(name)
            if p is None:
                continue
            ctl = self.ovn / (f"{name}.{p}.ctl" if name == "ovn-controller" else f"{name}.ctl")
            try:
                run(["ovs-appctl", "--timeout=5", "-t", str(ctl), "exit"],
                    env=self.env, timeout=10)
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                print(f"  {name}: exit request failed ({exc}); killing it", file=sys.stderr)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and pid_alive(p):
                time.sleep(0.05)
            if pid_alive(p):
                os.kill(p, signal.SIGKILL)
        self.ovs.stop()
        if not self.args.keep:
            shutil.rmtree(self.dir, ignore_errors=True)
        else:
            print(f"  kept {self.dir}")

    def nbctl(self, *args: str, timeout: float = 600) -> str:
        return run(["ovn-nbctl", f"--db={self.nb}", f"--timeout={int(timeout)}", *args], env=self.env,
                   timeout=timeout + 10)

    def rss(self) -> dict[str, dict[str, int]]:
        out = {}
        for name in self.DAEMONS:
            p = self.pid(name)
            if p is not None:
                out[name] = rss_kb(p)
        return out

    # -- topology -----------------------------------------------------------------------------
    def topology(self) -> None:
        """Switches + DHCP options + localports, routers, the default security group's port groups:
        one NB transaction (untimed, as bench_scale's topology)."""
        a = self.args
        cmds: list[str] = []

        def c(*words: str) -> None:
            cmds.extend(["--", *words])

        for i in range(a.networks):
            p = net_prefix(i)
            c("ls-add", f"net{i}")
            c("create", "DHCP_Options", f"cidr={p}.0/24", f"options:router={q(p + '.1')}",
              f"options:server_id={q(p + '.1')}", f"options:server_mac={q(mac(0xfe, i))}",
              'options:lease_time="43200"', 'options:mtu="1442"', f"options:dns_server={q('{' + p + '.2}')}")
            c("lsp-add", f"net{i}", f"meta-net{i}")  # Neutron's metadata/DHCP port: a localport
            c("lsp-set-type", f"meta-net{i}", "localport")
            c("lsp-set-addresses", f"meta-net{i}", f"{mac(0xfd, i)} {p}.2")
        per_router = max(1, a.networks // a.routers)
        for r in range(a.routers):
            c("lr-add", f"r{r}")
            for i in range(r * per_router, min(a.networks, (r + 1) * per_router)):
                c("lrp-add", f"r{r}", f"lrp-net{i}", mac(0xfc, i), f"{net_prefix(i)}.1/24")
                c("lsp-add", f"net{i}", f"rp-net{i}")
                c("lsp-set-type", f"rp-net{i}", "router")
                c("lsp-set-addresses", f"rp-net{i}", "router")
                c("lsp-set-options", f"rp-net{i}", f"router-port=lrp-net{i}")
        c("pg-add", "neutron_pg_drop")
        c("pg-add", "pg_default")
        for direction, port in (("from-lport", "inport"), ("to-lport", "outport")):
            c("--type=port-group", "acl-add", "neutron_pg_drop", direction, "1001",
              f"{port} == @neutron_pg_drop && ip", "drop")
        for ipv in ("4", "6"):
            c("--type=port-group", "acl-add", "pg_default", "from-lport", "1002",
              f"inport == @pg_default && ip{ipv}", "allow-related")
            c("--type=port-group", "acl-add", "pg_default", "to-lport", "1002",
              f"outport == @pg_default && ip{ipv} && ip{ipv}.src == $pg_default_ip{ipv}", "allow-related")
        self.nbctl(*cmds[1:])
        for row in self.nbctl("--format=csv", "--data=bare", "--no-headings", "--columns=_uuid,cidr",
                              "list", "DHCP_Options").split():
            uid, cidr = row.split(",")
            self.dhcp[cidr] = uid
        self.pg = {name: self.nbctl("--bare", "--columns=_uuid", "find", "Port_Group", f"name={name}").strip()
                   for name in ("neutron_pg_drop", "pg_default")}

    def port_cmds(self, ids: list[str]) -> list[str]:
        """One transaction's commands for these ports: created as Neutron's OVN driver does (row +
        switch reference + both port groups), addresses spread over the networks like bench_scale."""
        cmds: list[str] = []
        for k, pid in enumerate(ids):
            n = self.n_port
            self.n_port += 1
            i = n % self.args.networks
            host = 10 + n // self.args.networks
            addr = f"{mac(0, n)} {net_prefix(i)}.{host}"
            cmds += ["--", f"--id=@p{k}", "create", "Logical_Switch_Port", f"name={pid}", f"addresses={q(addr)}",
                     f"port_security={q(addr)}", f"dhcpv4_options={self.dhcp[net_prefix(i) + '.0/24']}",
                     f"options:requested-chassis={CHASSIS}",  # Nova set binding:host_id first
                     "--", "add", "Logical_Switch", f"net{i}", "ports", f"@p{k}"]
        refs = [f"@p{k}" for k in range(len(ids))]
        for uid in self.pg.values():
            cmds += ["--", "add", "Port_Group", uid, "ports", *refs]
        return cmds[1:]

    def add_taps(self, ids: list[str], up: bool = False) -> float:
        """The taps as Nova plugs them: internal ports carrying iface-id = the port's id."""
        t0 = time.perf_counter()
        for s in range(0, len(ids), PORTS_PER_TXN):
            args = ["ovs-vsctl", "--timeout=300"]
            for pid in ids[s:s + PORTS_PER_TXN]:
                name = tap(pid)
                args += ["--", "add-port", BRIDGE, name, "--", "set", "Interface", name, "type=internal",
                         f"external_ids:iface-id={pid}"]
            run(args, env=self.env, timeout=600)
            if up:
                for pid in ids[s:s + PORTS_PER_TXN]:
                    run(["ip", "link", "set", tap(pid), "up"])
        return time.perf_counter() - t0

    def installed(self) -> set[str]:
        out = run(["ovs-vsctl", "--timeout=30", "--bare", "--columns=name", "find", "Interface",
                   "external_ids:ovn-installed=true"], env=self.env, timeout=40)
        return set(out.split())

    # -- waiting ------------------------------------------------------------------------------
    def settle(self, t0: float, poll: float, want: set[str] | None = None, quiet: float = 1.0,
               timeout: float = 600.0) -> tuple[float, int, float]:
        """Poll the flow count until every tap in `want` is ovn-installed, the count has not moved
        for `quiet` s and `ovn-nbctl --wait=hv sync` returned with the count still unchanged (OVN has
        no "idle" to ask for; hv sync says ovn-controller caught up with the NB). Returns (s from t0 to
        the first poll that saw the final count, final count, s from t0 until all were installed)."""
        assert self.counter is not None
        samples: list[tuple[float, int]] = []
        deadline = time.monotonic() + timeout
        installed_at = None if want else t0
        last_check = 0.0
        # a few taps: one `ovs-vsctl wait-until` each returns the moment ovn-controller marks it
        # (polling `find` would round the figure up to its interval); many: `find` every 0.25 s
        waiters = [subprocess.Popen(["ovs-vsctl", f"--timeout={int(timeout)}", "wait-until", "Interface", name,
                                     'external_ids:ovn-installed="true"'], env={**os.environ, **self.env},
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                   for name in sorted(want or ())] if want and len(want) <= 5 else []
        changed = t0  # when the count last moved
        while True:
            now = time.perf_counter()
            samples.append((now, self.counter.count()))
            if len(samples) > 1 and samples[-1][1] != samples[-2][1]:
                changed = samples[-1][0]
            if time.monotonic() > deadline:
                for w in waiters:
                    w.kill()
                raise RuntimeError(f"no convergence within {timeout}s (last count {samples[-1][1]})")
            if installed_at is None and waiters:
                if all(w.poll() is not None for w in waiters):
                    installed_at = time.perf_counter()
            elif installed_at is None and now - last_check > 0.25:
                last_check = now
                if want is not None and want <= self.installed():
                    installed_at = time.perf_counter()
            if installed_at is not None:
                if now - max(changed, installed_at) >= quiet:
                    before = samples[-1][1]
                    self.nbctl("--wait=hv", "sync", timeout=300)
                    if self.counter.count() == before:
                        break
            time.sleep(poll)
        final = samples[-1][1]
        idx = 0
        for i, (_t, c) in enumerate(samples):
            if c != final:
                idx = i + 1
        return samples[min(idx, len(samples) - 1)][0] - t0, final, (installed_at or t0) - t0

    # -- measurements --------------------------------------------------------------------------
    def bulk(self) -> dict:
        n = self.args.ports
        ids = [str(uuid.uuid4()) for _ in range(n)]
        cmds = self.port_cmds(ids)
        t0 = time.perf_counter()
        self.nbctl(*cmds)
        out: dict = {"nb_write_s": round(time.perf_counter() - t0, 3)}
        out["tap_create_s"] = round(self.add_taps(ids), 3)
        out["tap_done_at_s"] = round(time.perf_counter() - t0, 3)
        secs, final, inst = self.settle(t0, 0.01, {tap(p) for p in ids}, quiet=2.0)
        out.update(seconds=round(secs, 3), flows=final, all_installed_s=round(inst, 3))
        return out

    def one_more(self, rounds: int) -> tuple[list[float], list[float]]:
        """bench_scale's one more port: tap first, then the NB write → its flows on the switch."""
        times, writes = [], []
        for _ in range(rounds):
            pid = str(uuid.uuid4())
            self.add_taps([pid])
            self.settle(time.perf_counter(), 0.05, quiet=0.5)
            cmds = self.port_cmds([pid])
            t0 = time.perf_counter()
            self.nbctl(*cmds)
            writes.append(time.perf_counter() - t0)
            secs, _final, _inst = self.settle(t0, 0.002, {tap(pid)}, quiet=1.0)
            times.append(secs)
        return times, writes

    def plug_after(self, rounds: int) -> list[dict]:
        """NB write, wait until OVN is idle, then plug an internal tap (link up): from ovs-vsctl's
        start until its flows are on the switch and it is ovn-installed (OVN's "port ready")."""
        out = []
        for _ in range(rounds):
            pid = str(uuid.uuid4())
            self.nbctl(*self.port_cmds([pid]))
            self.settle(time.perf_counter(), 0.05, quiet=0.5)
            before = self.counter.count() if self.counter else 0
            t0 = time.perf_counter()
            self.add_taps([pid], up=True)
            secs, final, inst = self.settle(t0, 0.002, {tap(pid)}, quiet=1.0)
            out.append({"flows_s": round(secs, 4), "installed_s": round(inst, 4), "new_flows": final - before})
        return out

    def main(self) -> dict:
        res = self.result
        res["loadavg_start"] = loadavg()
        self.start()
        res["version"] = run(["ovn-controller", "--version"]).split("\n")[0]
        res["rss_kb_idle"] = self.rss()
        t0 = time.perf_counter()
        self.topology()
        res["topology_nb_write_s"] = round(time.perf_counter() - t0, 3)
        _s, res["before_ports_flows"], _i = self.settle(time.perf_counter(), 0.05, quiet=1.0)
        res["topology_s"] = round(time.perf_counter() - t0, 3)
        res["bulk"] = self.bulk()
        res["rss_kb_after_bulk"] = self.rss()
        res["flows_per_port"] = round(res["bulk"]["flows"] / self.args.ports, 2)
        more, writes = self.one_more(self.args.one_more)
        res["one_more_s"] = [round(x, 4) for x in more]
        res["one_more_median_s"] = round(statistics.median(more), 4)
        res["one_more_nb_write_median_s"] = round(statistics.median(writes), 4)
        if self.args.plug_after:
            plugs = self.plug_after(self.args.plug_after)
            res["plug_after_internal"] = {"rounds": plugs,
                                          "from_plug_start": summary([max(p["flows_s"], p["installed_s"])
                                                                      for p in plugs])}
        res["rss_kb_end"] = self.rss()
        res["loadavg_end"] = loadavg()
        return res


def report_ovn(res: dict) -> None:
    b = res["bulk"]
    rss = res["rss_kb_end"].get("ovn-controller", {})
    print(f"--- OVN ({res['version']}) {res['ports']} ports / {res['networks']} switches / {res['routers']} routers,"
          f" load avg {res['loadavg_start']:.1f}→{res['loadavg_end']:.1f}")
    print(f"  NB write → all flows on switch (taps plugged after the write): {b['seconds']:.3f} s (NB transaction"
          f" {b['nb_write_s']:.3f} s; taps done at {b['tap_done_at_s']:.3f} s, all ovn-installed at"
          f" {b['all_installed_s']:.3f} s; after the plug {b['seconds'] - b['tap_done_at_s']:.3f} s)")
    print(f"  flows on switch {b['flows']} (before the ports {res['before_ports_flows']}), per port"
          f" {res['flows_per_port']}")
    print(f"  one more port (tap first): median {res['one_more_median_s'] * 1000:.1f} ms {res['one_more_s']}"
          f" (NB write alone {res['one_more_nb_write_median_s'] * 1000:.1f} ms)")
    if "plug_after_internal" in res:
        s = res["plug_after_internal"]["from_plug_start"]
        print(f"  tap (internal) plugged after the NB write, ovs-vsctl start → flows + ovn-installed:"
              f" median {s['median_ms']} ms, p90 {s['p90_ms']} ms ({s['n']} ports)")
    others = ", ".join(f"{k} {v['VmRSS'] / 1024:.1f}" for k, v in res["rss_kb_end"].items() if k != "ovn-controller")
    print(f"  ovn-controller RSS {rss.get('VmRSS', 0) / 1024:.1f} MB (peak {rss.get('VmHWM', 0) / 1024:.1f} MB);"
          f" others MB: {others}")


def ratios(ovn: dict, tf: dict) -> list[tuple[str, float, float, str]]:
    """(figure, tenantflow, OVN, unit) rows; ratio = tenantflow / OVN (lower is better for all)."""
    tb, ob = tf["bulk"], ovn["bulk"]
    rows = [("write → all flows on the switch, taps plugged after it", tb["seconds"], ob["seconds"], "s"),
            ("… of which after the last tap was plugged", tb["seconds"] - tb["tap_done_at_s"],
             ob["seconds"] - ob["tap_done_at_s"], "s"),
            ("flows per port (all flows on the switch / ports)", tf["flows_per_port"], ovn["flows_per_port"], ""),
            ("one more port (tap first), write → its flows, median", tf["one_more_median_s"] * 1000,
             ovn["one_more_median_s"] * 1000, "ms")]
    if "plug_after_internal" in tf and "plug_after_internal" in ovn:
        rows.append(("tap plugged after the write (internal) → flows + ready, median",
                     tf["plug_after_internal"]["from_plug_start"]["median_ms"],
                     ovn["plug_after_internal"]["from_plug_start"]["median_ms"], "ms"))
    oc = ovn["rss_kb_end"].get("ovn-controller", {})
    rows.append(("controller RSS at the end (tenantflow serve / ovn-controller)", tf["rss_kb_end"]["VmRSS"] / 1024,
                 oc.get("VmRSS", 0) / 1024, "MB"))
    return rows


def print_ratios(rows: list[tuple[str, float, float, str]], ovn: dict, tf: dict) -> None:
    print(f"--- same run, {ovn['ports']} ports / {ovn['networks']} networks / {ovn['routers']} routers;"
          f" tenantflow native hub; load avg OVN {ovn['loadavg_start']:.1f}→{ovn['loadavg_end']:.1f},"
          f" tenantflow {tf['loadavg_start']:.1f}→{tf['loadavg_end']:.1f}")
    print(f"| figure | tenantflow | OVN {ovn['version'].split()[-1]} | tenantflow / OVN |")
    print("|---|---|---|---|")
    for name, t, o, unit in rows:
        fmt = ".1f" if unit in ("ms", "MB") else (".3f" if unit == "s" else ".1f")
        print(f"| {name} | {t:{fmt}} {unit} | {o:{fmt}} {unit} | {t / o if o else float('nan'):.3f} |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="200 ports / 10 networks / 2 routers, 3 rounds each")
    ap.add_argument("--install", action="store_true", help="apt-get install ovn-central ovn-host if missing")
    ap.add_argument("--ports", type=int, default=None, help="default 1000 (200 with --quick)")
    ap.add_argument("--networks", type=int, default=None, help="default ports / 20")
    ap.add_argument("--routers", type=int, default=None, help="default networks / 5")
    ap.add_argument("--one-more", type=int, default=5)
    ap.add_argument("--plug-after", type=int, default=5, metavar="N", help="plug-after-write rounds (0: skip)")
    ap.add_argument("--only", choices=["ovn", "tenantflow", "both"], default="both")
    ap.add_argument("--keep", action="store_true", help="keep the temp dirs (logs, databases)")
    args = ap.parse_args()
    if args.only != "tenantflow" and missing():
        if args.install and not os.environ.get("TF_NETNS"):
            if install() != 0:
                print("bench_ovn: apt-get install ovn-central ovn-host failed", file=sys.stderr)
                return 1
        if missing():
            print(f"bench_ovn: OVN is not installed (missing: {', '.join(missing())}) — skipped. "
                  "`make bench-ovn OVN_INSTALL=1` (or --install, as root, with network) installs"
                  " ovn-central and ovn-host with apt.")
            return 0
    rc = ensure_netns([str(Path(__file__).resolve()), *[a for a in sys.argv[1:] if a != "--install"]])
    if rc is not None:
        return rc
    if args.ports is None:
        args.ports = 200 if args.quick else 1000
    args.networks = args.networks or max(1, args.ports // 20)
    args.routers = args.routers or max(1, args.networks // 5)
    if args.quick:
        args.one_more, args.plug_after = min(args.one_more, 3), min(args.plug_after, 3)
    out: dict = {"bench": "ovn", "args": vars(args)}
    if args.only in ("ovn", "both"):
        ob = OvnBench(args)
        try:
            out["ovn"] = ob.main()
        finally:
            ob.stop()
        report_ovn(out["ovn"])
    if args.only in ("tenantflow", "both"):
        ns = argparse.Namespace(quick=args.quick, ports=args.ports, networks=args.networks, routers=args.routers,
                                one_more=args.one_more, plug_after=args.plug_after, defer_ab=0, hub="native",
                                order="after", profile=False, env=[], keep=args.keep)
        tb = Bench(ns, "native")
        try:
            out["tenantflow"] = tb.main()
        finally:
            tb.stop()
        print("  (tenantflow, bench_scale's report: its 'taps pre-created' line is, here, taps plugged AFTER the POST)")
        report(out["tenantflow"])
    if "ovn" in out and "tenantflow" in out:
        rows = ratios(out["ovn"], out["tenantflow"])
        print_ratios(rows, out["ovn"], out["tenantflow"])
        out["ratios"] = {name: round(t / o, 4) if o else None for name, t, o, _u in rows}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
