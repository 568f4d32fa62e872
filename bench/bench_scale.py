"""Scale benchmark (issue 3): 1,000 ports through the API → their flows on a real OVS bridge.

What it does, against a private OVS (own run dir; run inside a dedicated netns — it re-executes
itself under scripts/netns-run when it is not in one) and a `tenantflow serve` subprocess (sqlite
store in a temp dir, random ports, apps with security groups):

  1. node init for one chassis (br-int, netdev datapath), wait for the OpenFlow connection;
  2. 50 networks + /24 subnets (bulk POSTs), 10 routers with 5 subnet interfaces each;
  3. the OVS interfaces tap<port id[:11]> (type=internal, one ovs-vsctl transaction) — port ids
     are chosen by the client (Neutron accepts `id` on POST), so the taps can exist first;
  4. TIMED: one bulk POST {"ports": [1,000 ports, 20 per network, default security group]}
     → until the switch holds every flow the controller wants (flow count polled over the
     bridge's management socket, the final count taken once the controller is idle, then every
     port's cookie checked on the switch) — "API → flows on switch, taps pre-created";
  5. the same again for 1,000 more ports on a second bridge-less run? No: a second timed figure
     with the taps created *after* the POST (ports first, then one ovs-vsctl transaction), on a
     fresh controller + store (`--order after`, run by default too);
  6. flows per port (total / ports, and by owner kind from the cookie high byte);
  7. one more port, several times: POST (tap pre-created) → its flows on the switch (median; timed by
     a flow-monitor subscription, FlowMonitor, not by polling);
  8. controller RSS (VmRSS / VmHWM from /proc) and its flow-mod counters;
  9. baseline in the same run: the switch's flows dumped and re-added with
     `ovs-ofctl --bundle add-flows` to an empty second bridge (ratio against the reconciler's own
     bundle rate, and against the whole API→switch figure).

Usage: .venv/bin/python bench/bench_scale.py [--quick] [--ports N] [--hub native|eventlet|both]
Prints a table and one JSON line per hub. Not a test (timings are never asserted).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from flows.tables import OWNER_SHIFT, Owner  # noqa: E402
from flowmonitor import FlowMonitor  # noqa: E402  (bench/, the script's own directory)
from tests.testbed.controller import Controller  # noqa: E402
from tests.testbed.api import NeutronClient  # noqa: E402
from tests.testbed.ovs import OvsInstance  # noqa: E402

BRIDGE = "br-int"
BASE_BRIDGE = "br-base"
CHASSIS = "bench1"



# ------------------------------------------------------------------------------ OpenFlow poller

class FlowCounter:
    """OFPMP_AGGREGATE over the bridge's management socket: flow count in ~1 ms, no process spawn,
    so polling every few ms neither lags nor loads the machine like ovs-ofctl would."""

    _REQ = struct.Struct("!BBHIHH4xB3xII4xQQ")

    def __init__(self, mgmt: Path) -> None:
        self.mgmt = mgmt
        self.port_status: list[tuple[float, int, str, bool]] = []  # (perf_counter, reason, name, link up)
        self._connect()

    def _connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(str(self.mgmt))
        self.sock.sendall(struct.pack("!BBHI", 4, 0, 8, 1))  # hello
        self._xid = 100
        self._recv_msg()  # hello from the switch
        # a service connection gets no asynchronous messages unless it asks: port-status only
        self.sock.sendall(struct.pack("!BBHI6I", 4, 28, 32, 2, 0, 0, 7, 7, 0, 0))

    def _recv_exact(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            c = self.sock.recv(n - len(buf))
            if not c:
                raise EOFError("switch closed the management connection")
            buf += c
        return buf

    def _recv_msg(self) -> tuple[int, int, bytes]:
        hdr = self._recv_exact(8)
        _v, mtype, length, xid = struct.unpack("!BBHI", hdr)
        return mtype, xid, hdr + self._recv_exact(length - 8)

    def count(self, cookie: int = 0, cookie_mask: int = 0) -> int:
        try:
            return self._count(cookie, cookie_mask)
        except (OSError, EOFError):  # OVS dropped us (at 10,000 ports its main loop stalls for seconds)
            self.sock.close()
            self._connect()
            return self._count(cookie, cookie_mask)

    def _count(self, cookie: int, cookie_mask: int) -> int:
        self._xid += 1
        match = struct.pack("!HH4x", 1, 4)
        req = self._REQ.pack(4, 18, self._REQ.size + len(match), self._xid, 2, 0, 0xFF, 0xFFFFFFFF,
                             0xFFFFFFFF, cookie, cookie_mask) + match
        self.sock.sendall(req)
        while True:
            mtype, xid, msg = self._recv_msg()
            if mtype == 19 and xid == self._xid:
                return struct.unpack_from("!I", msg, 32)[0]
            if mtype == 2:  # echo request
                self.sock.sendall(struct.pack("!BBHI", 4, 3, 8, xid))
            elif mtype == 12:  # port status: sent to every connection, this one too, as to the controller
                reason = msg[8]
                name = msg[32:48].split(b"\0", 1)[0].decode(errors="replace")
                config, state = struct.unpack_from("!II", msg, 48)  # OFPPC_PORT_DOWN, OFPPS_LINK_DOWN: bit 0
                self.port_status.append((time.perf_counter(), reason, name, not (config | state) & 1))

    def close(self) -> None:
        self.sock.close()


# ------------------------------------------------------------------------------ helpers

def run(cmd: list[str], env: dict | None = None, timeout: float = 120, input: str | None = None) -> str:
    p = subprocess.run(cmd, env={**os.environ, **(env or {})}, capture_output=True, text=True,
                       timeout=timeout, input=input)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:6])}…: rc={p.returncode}: {p.stderr.strip()[-2000:]}")
    return p.stdout


def rss_kb(pid: int) -> dict[str, int]:
    out = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(("VmRSS:", "VmHWM:", "RssAnon:", "RssFile:")):
                out[line.split(":")[0]] = int(line.split()[1])
    return out


def loadavg() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def tap(port_id: str) -> str:
    return "tap" + port_id[:11]


class Bench:
    def __init__(self, args, hub: str) -> None:
        self.args = args
        self.hub = hub
        self.dir = Path(tempfile.mkdtemp(prefix=f"tfscale-{hub}-"))
        self.ovs = OvsInstance(self.dir / "ovs")
        self.ctl: Controller | None = None
        self.api: NeutronClient | None = None
        self.counter: FlowCounter | None = None
        self.result: dict = {"hub": hub, "ports": args.ports}

    # -- set-up ---------------------------------------------------------------------------
    def start(self) -> None:
        self.ovs.start()
        (self.dir / "ctl").mkdir()
        self.ctl = Controller(self.dir / "ctl", ofp_host="127.0.0.1", check_compile=False)
        env = {"OSKEN_HUB_TYPE": self.hub}
        env.update(kv.split("=", 1) for kv in self.args.env)
        self.ctl.start(["--log-level", "INFO"], env=env)  # default apps (security groups included)
        self.api = self.ctl.client()
        tf = str(REPO / ".venv/bin/tenantflow")
        base = [tf, "node", "init", "--name", CHASSIS, "--bridge", BRIDGE, "--url", self.ctl.api_url]
        run(base, env=self.ovs.env)
        run(base + ["--controller", f"tcp:127.0.0.1:{self.ctl.ofp_port}"], env=self.ovs.env)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            st = self.stats()
            dps = [d for d in st["datapaths"].values() if d.get("connected") and d.get("chassis") == CHASSIS]
            if dps and st.get("idle"):
                break
            time.sleep(0.1)
        else:
            raise RuntimeError("bridge did not connect to the controller")
        self.counter = FlowCounter(self.ovs.rundir / f"{BRIDGE}.mgmt")

    def stop(self) -> None:
        if self.counter is not None:
            self.counter.close()
        if self.ctl is not None:
            self.ctl.stop()
        self.ovs.stop()
        if not self.args.keep:
            shutil.rmtree(self.dir, ignore_errors=True)

    def stats(self) -> dict:
        """The controller's stats; at 10,000 ports its API can stall > 10 s while the worker
        compiles (GIL), so a read timeout is retried (bounded) and the stall recorded."""
        for _ in range(30):
            t0 = time.perf_counter()
            try:
                return self.api.get("/v2.0/tenantflow/stats")
            except requests.exceptions.Timeout:
                stall = time.perf_counter() - t0
                self.result["api_stalls"] = self.result.get("api_stalls", 0) + 1
                print(f"  (stats API did not answer in {stall:.1f} s; retrying)", file=sys.stderr)
        raise RuntimeError("stats API unresponsive")

    def dp_stats(self) -> dict:
        for d in self.stats()["datapaths"].values():
            if d.get("chassis") == CHASSIS:
                return d
        return {}

    def topology(self) -> list[dict]:
        """50 networks/subnets, 10 routers × 5 interfaces. Returns the networks."""
        n_net = self.args.networks
        nets = self.api.post("/v2.0/networks", {"networks": [{"name": f"net{i}"} for i in range(n_net)]})["networks"]
        self.api.post("/v2.0/subnets", {"subnets": [
            {"network_id": n["id"], "cidr": f"10.{i // 250}.{i % 250}.0/24", "ip_version": 4, "name": f"sub{i}"}
            for i, n in enumerate(nets)]})
        subnets = {s["network_id"]: s for s in self.api.get("/v2.0/subnets")["subnets"]}
        per_router = max(1, n_net // self.args.routers)
        for r in range(self.args.routers):
            rtr = self.api.post("/v2.0/routers", {"router": {"name": f"r{r}"}})["router"]
            for n in nets[r * per_router:(r + 1) * per_router]:
                self.api.put(f"/v2.0/routers/{rtr['id']}/add_router_interface",
                             {"subnet_id": subnets[n["id"]]["id"]})
        return nets

    def add_taps(self, ids: list[str], per_txn: int = 1000) -> float:
        """OVSDB transactions adding every tap: internal ports through ovs-vsctl, up to `per_txn`
        per transaction (one for 1,000 ports; ovs-vsctl's own work grows faster than linearly with
        a transaction's size — 10,000 in one did not finish in 120 s); with `--tap-type patch`,
        peerless patch ports in one raw transaction (OvsInstance.add_ports)."""
        t0 = time.perf_counter()
        if self.args.tap_type == "patch":  # one raw OVSDB transaction, no ovs-vsctl
            self.ovs.add_ports(BRIDGE, [tap(pid) for pid in ids], "patch")
            return time.perf_counter() - t0
        for i in range(0, len(ids), per_txn):
            args = ["ovs-vsctl", "--timeout=300"]
            for pid in ids[i:i + per_txn]:
                name = tap(pid)
                args += ["--", "add-port", BRIDGE, name, "--", "set", "Interface", name, "type=internal"]
            run(args, env=self.ovs.env, timeout=600)
        return time.perf_counter() - t0

    # -- waiting ------------------------------------------------------------------------------
    def settle(self, t0: float, poll: float, timeout: float = 300.0) -> tuple[float, int]:
        """Poll the switch's flow count until the controller is idle with nothing left to send and
        the count is stable; return (seconds from t0 to the first poll that saw the final count,
        final count). Idle is checked through the stats API, at most every 100 ms."""
        samples: list[tuple[float, int]] = []
        deadline = time.monotonic() + timeout
        last_api = 0.0
        stable_since = None
        while time.monotonic() < deadline:
            now = time.perf_counter()
            samples.append((now, self.counter.count()))
            if now - last_api > 0.1:
                last_api = now
                st = self.stats()
                d = next((v for v in st["datapaths"].values() if v.get("chassis") == CHASSIS), {})
                if st.get("idle") and samples[-1][1] == d.get("desired_flows"):
                    if stable_since is None:
                        stable_since = now
                    elif now - stable_since > 0.3:
                        break
                else:
                    stable_since = None
            time.sleep(poll)
        else:
            raise RuntimeError(f"no convergence within {timeout}s (last count {samples[-1][1]})")
        final = samples[-1][1]
        idx = 0
        for i, (_t, c) in enumerate(samples):
            if c != final:
                idx = i + 1
        return samples[idx][0] - t0, final

    # -- measurements --------------------------------------------------------------------------
    def bulk(self, nets: list[dict], taps_first: bool, idle_before_taps: bool = False) -> dict:
        """POST all ports at once; their taps created before it, or after it — at once (the
        bench plugs as soon as the POST returns), or once the controller is idle with the
        POST's flows (`idle_before_taps`: Nova binds, then spends seconds building the VM)."""
        n = self.args.ports
        ids = [str(uuid.uuid4()) for _ in range(n)]
        bodies = [{"id": pid, "network_id": nets[i % len(nets)]["id"], "name": f"vm{i}", **self.binding()}
                  for i, pid in enumerate(ids)]
        out: dict = {"taps_first": taps_first}
        if taps_first:
            out["tap_create_s"] = round(self.add_taps(ids), 3)
            self.settle(time.perf_counter(), 0.05)  # the controller sees the taps; no flows yet
        before = self.dp_stats()
        prof = self.profiler("bulk")
        t0 = self.bulk_t0 = time.perf_counter()
        self.api.post("/v2.0/ports", {"ports": bodies})
        out["api_post_s"] = round(time.perf_counter() - t0, 3)
        if not taps_first:
            if idle_before_taps:
                out["post_flows_s"] = round(self.settle(t0, 0.01)[0], 3)
            out["tap_create_s"] = round(self.add_taps(ids), 3)
            out["tap_done_at_s"] = round(time.perf_counter() - t0, 3)
        secs, final = self.settle(t0, 0.01)
        self.stop_profiler(prof)
        if final <= self.before_ports:
            raise RuntimeError(f"no port flows reached the switch ({final} flows); see {self.ctl.log_path}")
        after = self.dp_stats()
        out["seconds"] = round(secs, 3)
        out["flows"] = final
        out["flow_mods"] = after.get("flow_mods", 0) - before.get("flow_mods", 0)
        out["bundles"] = after.get("bundles", 0) - before.get("bundles", 0)
        self.ids = ids
        return out

    def wait_active(self, t0: float, timeout: float = 300.0) -> float:
        """Seconds from t0 until every port of ours is bound to the chassis in the API (bindings
        are written after the flows are sent, so this is a separate, later figure). Internal
        ports are link-down, so their status is DOWN, not ACTIVE."""
        want = set(self.ids)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ports = self.api.get("/v2.0/ports", fields=["id", "status"], **{"binding:host_id": CHASSIS})["ports"]
            if want <= {p["id"] for p in ports}:
                secs = time.perf_counter() - t0
                self.settle(time.perf_counter(), 0.05)  # the status writes' recompiles are done too
                return round(secs, 3)
            time.sleep(0.2)
        raise RuntimeError("ports were not all bound")

    def profiler(self, label: str):
        """py-spy (a dev tool, not a dependency) on the controller while `label` runs (--profile)."""
        spy = shutil.which("py-spy") or str(REPO / ".venv/bin/py-spy")
        if not self.args.profile or not Path(spy).exists():
            return None
        out = self.dir / f"profile-{label}.txt"
        p = subprocess.Popen([spy, "record", "--pid", str(self.ctl.proc.pid), "--rate", "250", "--format", "raw",
                              "--nonblocking", "-o", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        return p

    @staticmethod
    def stop_profiler(p) -> None:
        if p is not None:
            p.send_signal(2)
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()

    def by_owner(self) -> dict[str, int]:
        text = run(["ovs-ofctl", "-O", "OpenFlow13", "--no-stats", "dump-flows", BRIDGE], env=self.ovs.env)
        kinds: dict[str, int] = {}
        port_cookies = set()
        for m in re.finditer(r"cookie=0x([0-9a-f]+)", text):
            ck = int(m.group(1), 16)
            try:
                name = Owner(ck >> OWNER_SHIFT).name.lower()
            except ValueError:
                name = f"kind{ck >> OWNER_SHIFT}"
            kinds[name] = kinds.get(name, 0) + 1
            if ck >> OWNER_SHIFT == Owner.PORT:
                port_cookies.add(ck)
        kinds["_port_owners_on_switch"] = len(port_cookies)
        (self.dir / "flows.txt").write_text(text)
        return kinds

    def binding(self) -> dict:
        """binding:host_id for a POST: as Nova writes it before it plugs the tap (--bind-first),
        or nothing (the controller finds the tap and binds the port itself)."""
        return {"binding:host_id": CHASSIS} if self.args.bind_first else {}

    def one_more(self, nets: list[dict], rounds: int) -> list[float]:
        times = []
        self.post_times: list[float] = []
        self.plug_quiet_times: list[float] = []
        monitor = FlowMonitor(self.ovs.rundir / f"{BRIDGE}.mgmt")
        for r in range(rounds):
            pid = str(uuid.uuid4())
            t_plug = time.perf_counter()
            self.add_taps([pid])
            self.settle(time.perf_counter(), 0.02)
            # OVS's own work for the plug (at 10,000 ports its reconfigure holds its main loop
            # ≈ 0.4 s) is not the POST's: wait until it answers barriers promptly again
            monitor.wait_quiet()
            self.plug_quiet_times.append(time.perf_counter() - t_plug)
            prof = self.profiler(f"one-more-{r}") if r == 0 else None
            t0 = time.perf_counter()
            self.api.post("/v2.0/ports", {"port": {"id": pid, "network_id": nets[r % len(nets)]["id"],
                                                   "name": f"extra{r}", **self.binding()}})
            self.post_times.append(time.perf_counter() - t0)
            times.append(self.settle_watched(t0, monitor))
            self.stop_profiler(prof)
        monitor.close()
        return times

    def settle_watched(self, t0: float, monitor: FlowMonitor, timeout: float = 60.0) -> float:
        """Seconds from t0 to the last flow update the switch pushed, once the controller is idle,
        the switch holds every desired flow and no update came for 0.3 s. The switch is asked
        for its count once, at the end: no poll competes with the bundle being timed."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            time.sleep(0.05)
            last = monitor.last_after(t0)
            if last is None or time.perf_counter() - last < 0.3 or not self.stats().get("idle"):
                continue
            if self.counter.count() == self.dp_stats().get("desired_flows") and monitor.last_after(t0) == last:
                return last - t0
        raise RuntimeError(f"no flow update for the new port within {timeout}s")

    def plug_start(self, port_id: str, kind: str) -> subprocess.Popen:
        """Start plugging a tap. kind "veth": as Nova does with a tap — the device exists and is
        up first (a veth; its peer stands in for the VM), then `ovs-vsctl add-port`; "internal":
        an OVS internal port (starts link-down), then `ip link set up`. ovs-vsctl returns once
        ovs-vswitchd has the port; the caller polls the switch and the API meanwhile."""
        name, peer = tap(port_id), "q" + port_id[:11]
        env = {**os.environ, **self.ovs.env}
        if kind == "veth":
            run(["ip", "link", "add", name, "type", "veth", "peer", "name", peer])
            for dev in (name, peer):
                run(["ip", "link", "set", dev, "up"])
            cmd = ["ovs-vsctl", "--timeout=60", "add-port", BRIDGE, name]
        else:
            cmd = ["sh", "-c", f"ovs-vsctl --timeout=60 add-port {BRIDGE} {name} -- set Interface {name}"
                   f" type=internal && ip link set {name} up"]
        return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def port_seen_at(self, name: str, after: float) -> float | None:
        """When the switch's port-status for NAME with link up reached our own OpenFlow connection
        (to the controller it goes at the same moment): the tap is plugged, as far as OpenFlow
        can tell. Resolution: the ~2 ms polling interval."""
        return next((t for t, _reason, n, up in self.counter.port_status if n == name and up and t >= after), None)

    def plug_after(self, nets: list[dict], rounds: int, kind: str = "veth") -> list[dict]:
        """One port at a time, as Nova boots a VM: POST the port (no tap yet; wait until the
        controller is idle), then plug its tap and measure until (a) the switch holds every flow
        the controller wants and (b) the API shows the port ACTIVE on this chassis. The clock
        starts when the switch announces the port up (OpenFlow port-status, seen on our own
        connection) — the target's "after its tap is plugged"; ovs-vsctl itself returns later
        (it waits for the whole reconfiguration), so its start and end are reported beside. Flow count and
        status are polled every ~2 ms / ~4 ms, during the plug too."""
        out = []
        for r in range(rounds):
            pid = str(uuid.uuid4())
            self.api.post("/v2.0/ports", {"port": {"id": pid, "network_id": nets[r % len(nets)]["id"],
                                                   "name": f"plug{r}", **self.binding()}})
            self.settle(time.perf_counter(), 0.02)
            before = self.counter.count()
            prof = self.profiler(f"plug-{r}") if r == 0 else None
            start = time.perf_counter()
            proc = self.plug_start(pid, kind)
            samples: list[tuple[float, int]] = []
            active_at = done_at = None
            last_api = 0.0
            deadline = start + 30
            while time.perf_counter() < deadline:
                now = time.perf_counter()
                if done_at is None and proc.poll() is not None:
                    done_at = now
                    if proc.returncode != 0:
                        raise RuntimeError(f"plug failed: {proc.stderr.read().decode()[-500:]}")
                samples.append((now, self.counter.count()))
                if active_at is None and now - last_api > 0.004:
                    last_api = now
                    port = self.api.get(f"/v2.0/ports/{pid}")["port"]
                    if port.get("status") == "ACTIVE" and port.get("binding:host_id") == CHASSIS:
                        active_at = time.perf_counter()
                if done_at is not None and active_at is not None and samples[-1][1] > before:
                    break
                time.sleep(0.002)
            self.stop_profiler(prof)
            secs, final = self.settle(start, 0.005)  # controller idle, count final
            flows_at = next((t for t, c in samples if c == final), start + secs)
            done_at = done_at or deadline
            active_at = active_at or deadline
            self.counter.count()  # read what the switch sent meanwhile
            added_at = self.port_seen_at(tap(pid), start) or start
            out.append({"plug_s": round(done_at - start, 4), "ovs_port_s": round(added_at - start, 4),
                        "flows_s": round(flows_at - added_at, 4), "active_s": round(active_at - added_at, 4),
                        "flows_from_start_s": round(flows_at - start, 4),
                        "active_from_start_s": round(active_at - start, 4),
                        "new_flows": final - before})
        return out

    def restart(self, timeout: float = 300.0) -> dict:
        """Controller restarted on the same store, switch keeping its flows (fail-mode secure):
        seconds from the new process's start until it is connected, idle, has read the switch
        (one resync) and wants exactly what the switch holds; flow-mods it sent (target 0)."""
        before = self.counter.count()
        self.ctl.stop()
        t0 = time.perf_counter()
        self.ctl.start(self.ctl.extra_args, self.ctl.env, timeout=120)
        self.api = self.ctl.client()
        api_s = time.perf_counter() - t0
        deadline = time.monotonic() + timeout
        connected_s = None
        while time.monotonic() < deadline:
            st = self.stats()
            d = next((v for v in st["datapaths"].values() if v.get("chassis") == CHASSIS), {})
            if connected_s is None and d.get("switch_connected", d.get("connected")):
                connected_s = time.perf_counter() - t0  # OVS's reconnect backoff ends here
            if (st.get("idle") and d.get("connected") and d.get("resyncs", 0) >= 1
                    and d.get("desired_flows") == d.get("installed_flows") == self.counter.count()):
                break
            time.sleep(0.05)
        else:
            raise RuntimeError(f"controller not ready {timeout}s after a restart; see {self.ctl.log_path}")
        ready = time.perf_counter() - t0
        d = self.dp_stats()
        return {"ready_s": round(ready, 3), "api_up_s": round(api_s, 3),
                "connected_s": round(connected_s if connected_s is not None else ready, 3),
                "flow_mods": d.get("flow_mods", 0), "bundles": d.get("bundles", 0), "resyncs": d.get("resyncs", 0),
                "flows_before": before, "flows_after": self.counter.count(),
                "rss_kb": rss_kb(self.ctl.proc.pid)}

    def cold_restart(self, bundle: int, timeout: float = 300.0) -> dict:
        """Controller restarted onto a switch that lost every flow (vswitchd restarted empty): the
        reconciler's first sync, with TENANTFLOW_FIRST_SYNC_BUNDLE=`bundle` (0: one bundle of the
        whole diff; else bundles of at most that many flow-mods, each confirmed first). Seconds
        from the switch reconnecting until it holds every flow, bundles sent."""
        want = self.counter.count()
        self.ctl.stop()
        run(["ovs-ofctl", "-O", "OpenFlow13", "del-flows", BRIDGE], env=self.ovs.env)
        env = dict(self.ctl.env, TENANTFLOW_FIRST_SYNC_BUNDLE=str(bundle))
        t0 = time.perf_counter()
        self.ctl.start(self.ctl.extra_args, env, timeout=120)
        self.api = self.ctl.client()
        deadline = time.monotonic() + timeout
        connected_s = None
        while time.monotonic() < deadline:
            d = self.dp_stats()
            if connected_s is None and d.get("connected"):
                connected_s = time.perf_counter() - t0
            if connected_s is not None and self.counter.count() >= want and self.stats().get("idle"):
                break
            time.sleep(0.02)
        else:
            raise RuntimeError(f"cold restart: switch not refilled in {timeout}s; see {self.ctl.log_path}")
        done = time.perf_counter() - t0
        d = self.dp_stats()
        return {"bundle_limit": bundle, "connected_s": round(connected_s, 3),
                "refill_s": round(done - connected_s, 3), "flow_mods": d.get("flow_mods", 0),
                "bundles": d.get("bundles", 0), "resyncs": d.get("resyncs", 0),
                "biggest_flush_s": round(d.get("biggest_flush_seconds") or 0, 3),
                "rss_kb": rss_kb(self.ctl.proc.pid)}

    def ofctl_baseline(self) -> dict:
        """Dump the switch's flows and re-add exactly them to an empty bridge with one bundle."""
        self.ovs.add_bridge(BASE_BRIDGE, fail_mode="secure")
        text = run(["ovs-ofctl", "-O", "OpenFlow13", "--no-stats", "--no-names", "dump-flows", BRIDGE],
                   env=self.ovs.env)
        lines = [ln.strip() for ln in text.splitlines() if ln.strip() and "reply" not in ln]
        path = self.dir / "baseline.txt"
        path.write_text("\n".join(lines) + "\n")
        t0 = time.perf_counter()
        run(["ovs-ofctl", "-O", "OpenFlow13", "--bundle", "add-flows", BASE_BRIDGE, str(path)],
            env=self.ovs.env, timeout=300)
        dt = time.perf_counter() - t0
        got = int(run(["ovs-ofctl", "-O", "OpenFlow13", "dump-aggregate", BASE_BRIDGE],
                      env=self.ovs.env).split("flow_count=")[1].split()[0])
        return {"flows": len(lines), "installed": got, "seconds": round(dt, 3),
                "flows_per_s": round(len(lines) / dt)}

    def main(self) -> dict:
        res = self.result
        res["loadavg_start"] = loadavg()
        res["bind_first"] = self.args.bind_first
        self.start()
        res["rss_kb_idle"] = rss_kb(self.ctl.proc.pid)
        t0 = time.perf_counter()
        nets = self.topology()
        res["topology_s"] = round(time.perf_counter() - t0, 3)
        self.settle(time.perf_counter(), 0.05)
        res["rss_kb_topology"] = rss_kb(self.ctl.proc.pid)
        res["before_ports_flows"] = self.before_ports = self.counter.count()
        res["bulk"] = self.bulk(nets, taps_first=self.args.order in ("before", "both"))
        res["rss_kb_after_bulk"] = rss_kb(self.ctl.proc.pid)
        res["all_active_s"] = self.wait_active(self.bulk_t0)
        res["rss_kb_bound"] = rss_kb(self.ctl.proc.pid)
        kinds = self.by_owner()
        res["flows_by_owner"] = kinds
        if not kinds.get("secgroup"):
            print("WARNING: no security-group flows on the switch: is the security app loaded?", file=sys.stderr)
        res["flows_per_port"] = round(res["bulk"]["flows"] / self.args.ports, 2)
        res["port_flows_per_port"] = round(kinds.get("port", 0) / self.args.ports, 2)
        d = self.dp_stats()
        res["controller"] = {k: d.get(k) for k in ("flow_mods", "bundles", "resyncs", "errors", "biggest_flush_mods",
                                                  "biggest_flush_seconds", "desired_flows")}
        if d.get("biggest_flush_seconds"):
            res["reconciler_flow_mods_per_s"] = round(d["biggest_flush_mods"] / d["biggest_flush_seconds"])
        more = self.one_more(nets, self.args.one_more)
        res["one_more_s"] = [round(x, 4) for x in more]
        res["one_more_median_s"] = round(statistics.median(more), 4)
        res["one_more_post_median_s"] = round(statistics.median(self.post_times), 4)
        res["one_more_plug_quiet_s"] = [round(x, 3) for x in self.plug_quiet_times]
        if self.args.plug_after:
            for kind in ("veth", "internal"):
                plugs = self.plug_after(nets, self.args.plug_after, kind)
                res[f"plug_after_{kind}"] = {
                    "rounds": plugs,
                    "after_plug": summary([max(p["flows_s"], p["active_s"]) for p in plugs]),  # the target
                    "flows": summary([p["flows_s"] for p in plugs]),
                    "active": summary([p["active_s"] for p in plugs]),
                    "from_plug_start": summary([max(p["flows_from_start_s"], p["active_from_start_s"])
                                                for p in plugs]),
                    "plug": summary([p["plug_s"] for p in plugs]),
                    "ovs_port": summary([p["ovs_port_s"] for p in plugs])}
        res["rss_kb_end"] = rss_kb(self.ctl.proc.pid)
        if self.args.restart:
            res["restart"] = self.restart()
            # same-run A/B of the first sync onto an empty switch: one bundle vs bounded bundles
            res["cold_restart"] = [self.cold_restart(b) for b in self.args.cold_ab]
        res["ofctl_baseline"] = self.ofctl_baseline()
        res["loadavg_end"] = loadavg()
        return res


def summary(xs: list[float]) -> dict:
    """median / p90 / max in ms of a latency list (p90 by nearest rank)."""
    ys = sorted(xs)
    p90 = ys[min(len(ys) - 1, max(0, int(round(0.9 * len(ys))) - 1))]
    return {"n": len(ys), "median_ms": round(statistics.median(ys) * 1000, 1), "p90_ms": round(p90 * 1000, 1),
            "max_ms": round(ys[-1] * 1000, 1)}


def after_order(args, hub: str, idle_first: bool = False) -> dict:
    """Second figure: ports written first, taps created after (fresh controller, store and OVS)."""
    b = Bench(args, hub)
    try:
        b.start()
        nets = b.topology()
        b.settle(time.perf_counter(), 0.05)
        b.before_ports = b.counter.count()
        return b.bulk(nets, taps_first=False, idle_before_taps=idle_first)
    finally:
        b.stop()


def defer_ab(args, hub: str, rounds: int) -> dict:
    """Same-run A/B of the worker's coalescing (controller.core._defer_flush): 1,000 ports, taps
    plugged after the write, fresh controller each time, alternating TENANTFLOW_FLUSH_DEFER=0
    (compile and send each slice of the port-status burst as it comes) and the default."""
    out: dict[str, dict[str, list[float]]] = {m: {"after_plug_s": [], "total_s": []} for m in ("off", "on")}
    for _ in range(rounds):
        for mode in ("off", "on"):
            a = argparse.Namespace(**vars(args))
            a.env = list(args.env) + (["TENANTFLOW_FLUSH_DEFER=0"] if mode == "off" else [])
            r = after_order(a, hub)
            out[mode]["after_plug_s"].append(round(r["seconds"] - r["tap_done_at_s"], 3))
            out[mode]["total_s"].append(r["seconds"])
    for mode in ("off", "on"):
        m = out[mode]
        print(f"  coalescing {mode:3}: controller time after the plug median "
              f"{statistics.median(m['after_plug_s']):.3f} s {m['after_plug_s']}; POST → all flows median "
              f"{statistics.median(m['total_s']):.3f} s {m['total_s']}")
    on, off = (statistics.median(out[m]["after_plug_s"]) for m in ("on", "off"))
    print(f"  after the plug, coalescing on / off: {on / off:.2f}")
    return out


def report(res: dict) -> None:
    b = res["bulk"]
    base = res["ofctl_baseline"]
    print(f"--- hub={res['hub']}  {res['ports']} ports, load avg {res['loadavg_start']:.1f}→{res['loadavg_end']:.1f}")
    print(f"  API POST → all flows on switch (taps pre-created): {b['seconds']:.3f} s "
          f"(POST itself {b['api_post_s']:.3f} s; taps took {b['tap_create_s']:.1f} s before)   target ≤ 2 s")
    if "after" in res:
        a = res["after"]
        print(f"  API POST → all flows on switch (taps created after): {a['seconds']:.3f} s "
              f"(ovs-vsctl done at {a['tap_done_at_s']:.3f} s; controller time after the plug"
              f" {a['seconds'] - a['tap_done_at_s']:.3f} s)   target ≤ 0.3 s after the plug")
    if "after_idle" in res:
        a = res["after_idle"]
        print(f"  … taps created once the POST's flows are in ({a['post_flows_s']:.3f} s): all flows at "
              f"{a['seconds']:.3f} s (ovs-vsctl {a['tap_create_s']:.3f} s, done at {a['tap_done_at_s']:.3f} s;"
              f" controller time after the plug {a['seconds'] - a['tap_done_at_s']:.3f} s)")
    print(f"  flows on switch {b['flows']}, per port {res['flows_per_port']} (port-owned "
          f"{res['port_flows_per_port']})   target ≤ 20;  by owner {res['flows_by_owner']}")
    print(f"  one more port: median {res['one_more_median_s'] * 1000:.1f} ms {res['one_more_s']}   target ≤ 50 ms"
          f" (the POST alone: median {res['one_more_post_median_s'] * 1000:.1f} ms; each tap plugged first, then"
          f" OVS left to finish its own work for it: {res['one_more_plug_quiet_s']} s)")
    for kind in ("veth", "internal"):
        if f"plug_after_{kind}" not in res:
            continue
        pa = res[f"plug_after_{kind}"]
        s, f, a, st, pl = pa["after_plug"], pa["flows"], pa["active"], pa["from_plug_start"], pa["plug"]
        ov = pa["ovs_port"]
        print(f"  tap ({kind}) plugged after the POST, one at a time ({s['n']} ports): switch has the port →"
              f" its flows on the switch AND ACTIVE: median {s['median_ms']} ms, p90 {s['p90_ms']} ms,"
              f" max {s['max_ms']} ms   target ≤ 50 ms\n      (flows {f['median_ms']} / {f['p90_ms']} ms,"
              f" ACTIVE {a['median_ms']} / {a['p90_ms']} ms; from ovs-vsctl's start {st['median_ms']} /"
              f" {st['p90_ms']} ms, of which OVS announcing the port {ov['median_ms']} / {ov['p90_ms']} ms;"
              f" ovs-vsctl returns after {pl['median_ms']} / {pl['p90_ms']} ms)")
    print(f"  all {res['ports']} ports bound (binding:host_id) in the API after {res['all_active_s']:.2f} s"
          " (status writes follow the flows)")
    if "reconciler_flow_mods_per_s" in res:
        c = res["controller"]
        print(f"  reconciler's biggest bundle: {c['biggest_flush_mods']} flow-mods"
              f" in {c['biggest_flush_seconds']:.3f} s = {res['reconciler_flow_mods_per_s']} flows/s"
              " (encode + send + OVS commit + barrier); "
              f"vs ovs-ofctl {res['reconciler_flow_mods_per_s'] / base['flows_per_s']:.2f}")
    big = b["flow_mods"] / b["seconds"] if b["seconds"] else 0
    print(f"  bulk: {b['flow_mods']} flow-mods in {b['bundles']} bundles; API→switch rate {big:.0f} flows/s")
    print(f"  ovs-ofctl --bundle add-flows of the same {base['flows']} flows: {base['seconds']:.3f} s "
          f"= {base['flows_per_s']} flows/s; whole API→switch path vs that: {big / max(base['flows_per_s'], 1):.2f}")
    if "restart" in res:
        r = res["restart"]
        print(f"  restart (same store, switch keeps its flows): ready after {r['ready_s']:.2f} s (API up"
              f" {r['api_up_s']:.2f} s, switch reconnected {r['connected_s']:.2f} s: the controller's part"
              f" {r['ready_s'] - r['connected_s']:.2f} s), {r['flow_mods']} flow-mods sent, {r['resyncs']} resync(s),"
              f" switch {r['flows_before']} → {r['flows_after']} flows, RSS {r['rss_kb']['VmRSS'] / 1024:.1f} MB"
              "   target 0 flow-mods, ≤ 5 s")
    for c in res.get("cold_restart", []):
        print(f"  cold restart (switch emptied), bundles ≤ {c['bundle_limit'] or 'all'}: switch refilled"
              f" {c['refill_s']:.2f} s after it reconnected ({c['connected_s']:.2f} s), {c['flow_mods']}"
              f" flow-mods in {c['bundles']} bundles, {c['resyncs']} resync(s)")
    print(f"  controller RSS idle (connected, no topology) {res['rss_kb_idle']['VmRSS'] / 1024:.1f} MB")
    print(f"  controller RSS after bulk {res['rss_kb_after_bulk']['VmRSS'] / 1024:.1f} MB, end "
          f"{res['rss_kb_end']['VmRSS'] / 1024:.1f} MB (peak {res['rss_kb_end']['VmHWM'] / 1024:.1f} MB)"
          "   target ≤ 100 MB")


def ensure_netns(argv: list[str]) -> int | None:
    """Re-run inside a fresh netns when not in one (never run OVS in the host's netns)."""
    if os.environ.get("TF_NETNS"):
        return None
    name = f"tfscale{os.getpid() % 100000}"
    try:
        return subprocess.call([str(REPO / "scripts/netns-run"), name, "--", sys.executable, *argv])
    finally:
        subprocess.call(["ip", "netns", "del", name])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="3 one-more rounds, native+eventlet, no 'after' run")
    ap.add_argument("--ports", type=int, default=1000)
    ap.add_argument("--networks", type=int, default=50)
    ap.add_argument("--routers", type=int, default=10)
    ap.add_argument("--one-more", type=int, default=7)
    ap.add_argument("--plug-after", type=int, default=9, metavar="N",
                    help="one at a time: POST, then plug the tap; plug → flows + ACTIVE latency (0: skip)")
    ap.add_argument("--defer-ab", type=int, default=0, metavar="N",
                    help="only the A/B of the worker's coalescing, N rounds (taps plugged after the write)")
    ap.add_argument("--bind-first", action=argparse.BooleanOptionalAction, default=True,
                    help="POST ports with binding:host_id naming the chassis, as Nova does before plugging "
                         "(--no-bind-first: the controller binds them when their taps appear)")
    ap.add_argument("--tap-type", choices=["internal", "patch"], default="internal",
                    help="taps of the bulk and one-more runs: OVS internal ports (kernel taps, ovs-vsctl)"
                         " or patch ports without a peer (OpenFlow ports with no datapath port, one raw"
                         " OVSDB transaction): the 10,000-port run, where 10,000 polled datapath ports"
                         " keep ovs-vswitchd busy (internal ports took it ~10 min to add)")
    ap.add_argument("--hub", choices=["native", "eventlet", "both"], default="both")
    ap.add_argument("--order", choices=["before", "after", "both"], default="both",
                    help="taps created before the POST (main figure), after it, or both")
    ap.add_argument("--restart", action=argparse.BooleanOptionalAction, default=True,
                    help="restart the controller at the end: ready time and flow-mods sent (target 0)")
    ap.add_argument("--cold-ab", type=int, nargs="*", default=[0, 20000, 0, 20000], metavar="N",
                    help="cold restarts (switch emptied) with TENANTFLOW_FIRST_SYNC_BUNDLE=N each (0: one bundle)")
    ap.add_argument("--profile", action="store_true", help="py-spy the controller (bulk, first extra port)")
    ap.add_argument("--env", action="append", default=[], metavar="K=V", help="extra env for tenantflow serve")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (logs, flow dumps)")
    args = ap.parse_args()
    rc = ensure_netns([str(Path(__file__).resolve()), *sys.argv[1:]])
    if rc is not None:
        return rc
    if args.quick:
        args.one_more = min(args.one_more, 5)
        args.plug_after = min(args.plug_after, 5)
    hubs = ["native", "eventlet"] if args.hub == "both" else [args.hub]
    if args.defer_ab:
        for hub in hubs:
            print(f"--- hub={hub}: {args.ports} ports, taps plugged after the write, coalescing off/on,"
                  f" {args.defer_ab} rounds, load avg {loadavg():.1f}")
            print(json.dumps({"bench": "scale_defer_ab", "hub": hub, **defer_ab(args, hub, args.defer_ab)}))
        return 0
    results = []
    for hub in hubs:
        b = Bench(args, hub)
        try:
            res = b.main()
        finally:
            b.stop()
        if args.order in ("after", "both") and not args.quick:
            res["after"] = after_order(args, hub)
            if args.bind_first:  # the ports' flows are in before the taps: what is left after the plug
                res["after_idle"] = after_order(args, hub, idle_first=True)
        report(res)
        results.append(res)
    for res in results:
        print(json.dumps({"bench": "scale", **res}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
