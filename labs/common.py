"""What every tenantflow lab shares: its own netns, OVS and `tenantflow serve`; checks; teardown.

Why one module: each lab (labs/<name>.py) only declares its topology and its scenario; how the
lab is isolated, started, checked and torn down is written once, here.

A lab run (`sudo labs/<name>.py [--check]`), unless --api/--controller are given:
  1. re-executes itself inside a fresh network namespace `tflab-<pid>` (so nothing it does
     touches the host's interfaces, and it never collides with `make demo` or another lab);
  2. starts a private Open vSwitch (ovsdb-server + ovs-vswitchd, userspace datapath) for its
     Mininet switches and a private `tenantflow serve` (SQLite store, free ports);
  3. builds the lab (Mininet hosts and switches, chassis joined with `tenantflow node init`,
     tenants created with the `tenantflow` CLI / the Neutron REST API, as a user would);
  4. `--check`: runs the scenario, one PASS/FAIL line per check, exit 1 on any FAIL;
     otherwise prints what to try and opens the Mininet CLI;
  5. tears everything down, even on failure, Ctrl-C or SIGTERM: Mininet, processes, OVS,
     the namespace; the outer process then kills whatever still carries the run's
     TF_LAB_ID and deletes the namespace (a crash of the inner process leaks nothing either).

Standard library only (runs under Debian's /usr/bin/python3, where Mininet lives); Mininet is
imported lazily so that the check runner can be unit-tested without it. Never import the
controller's modules here: labs are clients.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable, Sequence, TextIO

REPO = Path(__file__).resolve().parents[1]
TF_BIN = os.environ.get("TF_BIN", str(REPO / ".venv" / "bin" / "tenantflow"))
DHCLIENT_SCRIPT = str(REPO / "scripts" / "vm-dhclient-script")
NETNS_PREFIX = "tflab-"          # namespaces of lab runs (tests look for leftovers by it)
WORKROOT = Path(os.environ.get("TF_LAB_ROOT", "/tmp/tflab"))
OVS_SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"

# dhclient: private config; the distribution's dhclient-script would rewrite the machine's
# /etc/resolv.conf (Mininet hosts share the filesystem), ours only sets address/MTU/route.
DHCLIENT_CONF = """timeout 10;
retry 1;
request subnet-mask, broadcast-address, routers, interface-mtu, host-name, dhcp-lease-time;
"""


class LabError(RuntimeError):
    """A step of building the lab failed (printed as one line; the lab exits 2)."""


class Stop(BaseException):
    """SIGTERM/SIGHUP arrived: unwind like Ctrl-C so every `finally` tears down."""


# ---- checks ------------------------------------------------------------------------------
class Checker:
    """Prints every check as PASS or FAIL and remembers failures (exit status).

    A check compares what happened with what the lab expects; an expected failure (a
    cross-tenant ping that must not arrive) is a PASS when the ping fails.
    """

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self.passed = 0
        self.failed: list[str] = []

    def section(self, title: str) -> None:
        print(f"\n== {title}", file=self.out, flush=True)

    def note(self, text: str) -> None:
        print(f"   {text}", file=self.out, flush=True)

    def check(self, what: str, ok: bool, detail: str = "") -> bool:
        if ok:
            self.passed += 1
        else:
            self.failed.append(what)
        print(f"{'PASS' if ok else 'FAIL'}  {what}{'  (' + detail + ')' if detail else ''}",
              file=self.out, flush=True)
        return ok

    def equal(self, what: str, got: Any, want: Any) -> bool:
        return self.check(what, got == want, "" if got == want else f"got {got!r}, wanted {want!r}")

    def reach(self, what: str, got: bool, expect: bool) -> bool:
        """A reachability check: `got` = it arrived; `expect` = it should."""
        word = "passes" if got else "blocked"
        return self.check(f"{what}: {word}", got == expect,
                          "" if got == expect else f"expected {'pass' if expect else 'blocked'}")

    def summary(self) -> int:
        """Prints the total; returns the exit status (0 = every check passed)."""
        total = self.passed + len(self.failed)
        if self.failed:
            print(f"\n{len(self.failed)} of {total} checks FAILED: " + "; ".join(self.failed),
                  file=self.out, flush=True)
            return 1
        if total == 0:
            print("\nno checks ran: FAIL", file=self.out, flush=True)
            return 1
        print(f"\nall {total} checks PASS", file=self.out, flush=True)
        return 0


def run_checks(scenario: Callable[[], None], checker: Checker) -> int:
    """--check: runs the scenario; a step that raises counts as one FAIL (the checks so far
    stay printed); the exit status is non-zero unless every check passed."""
    try:
        scenario()
    except (LabError, OSError, subprocess.SubprocessError, ValueError, KeyError) as exc:
        checker.check("scenario ran to the end", False, f"{type(exc).__name__}: {exc}")
    return checker.summary()


def attempt(fn: Callable[[], bool], tries: int, pause: float = 0.3) -> bool:
    """True as soon as fn() is; at most `tries` calls (bounded retries for traffic checks)."""
    for i in range(max(1, tries)):
        if fn():
            return True
        if i + 1 < tries:
            time.sleep(pause)
    return False


def wait_until(fn: Callable[[], bool], timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if fn():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


# ---- processes -----------------------------------------------------------------------------
def sh(cmd: Sequence[str] | str, *, env: dict[str, str] | None = None, timeout: float = 30,
       check: bool = True) -> str:
    """Run a command (list or shell string); stdout. check=True raises LabError on failure."""
    shell = isinstance(cmd, str)
    full_env = {**os.environ, **(env or {})}
    try:
        proc = subprocess.run(cmd, shell=shell, env=full_env, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"timed out after {timeout:.0f} s: {cmd if shell else shlex.join(cmd)}") from exc
    if check and proc.returncode != 0:
        shown = cmd if shell else shlex.join(cmd)
        raise LabError(f"{shown}: exit {proc.returncode}: {(proc.stderr or proc.stdout).strip()}")
    return proc.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def processes_of_run(run_id: str) -> list[int]:
    """Pids whose environment carries TF_LAB_ID=run_id (everything a lab run started)."""
    needle = f"TF_LAB_ID={run_id}".encode()
    found = []
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == os.getpid():
            continue
        try:
            with open(f"/proc/{d}/environ", "rb") as fh:
                if needle in fh.read().split(b"\0"):
                    found.append(int(d))
        except OSError:
            continue
    return found


def kill_run(run_id: str) -> list[str]:
    """SIGKILL every leftover process of a run; their command lines."""
    pids = processes_of_run(run_id)
    names = []
    for pid in pids:
        try:
            names.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:80])
        except OSError:
            names.append(str(pid))
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return names


# ---- API -------------------------------------------------------------------------------------
class ApiError(LabError):
    def __init__(self, method: str, path: str, status: int, body: str) -> None:
        super().__init__(f"{method} {path} -> {status}: {body}")
        self.status = status


class Api:
    """A small Neutron REST client (stdlib only) acting as one project (None = admin)."""

    def __init__(self, url: str, project: str | None = None) -> None:
        self.url = url.rstrip("/")
        self.project = project

    def as_project(self, project: str | None) -> "Api":
        return Api(self.url, project)

    def call(self, method: str, path: str, body: dict[str, Any] | None = None,
             timeout: float = 30) -> Any:
        req = urllib.request.Request(f"{self.url}/v2.0/{path}", method=method,
                                     data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Content-Type": "application/json"})
        if self.project:
            req.add_header("X-Project-Id", self.project)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                data = resp.read()
        except urllib.error.HTTPError as exc:
            raise ApiError(method, path, exc.code, exc.read().decode(errors="replace")) from exc
        except urllib.error.URLError as exc:
            raise LabError(f"cannot reach the tenantflow API at {self.url}: {exc.reason}") from exc
        return json.loads(data) if data else None

    def get(self, path: str) -> Any:
        return self.call("GET", path)

    def list(self, collection: str, **filters: str) -> list[dict[str, Any]]:
        query = "&".join(f"{k}={v}" for k, v in filters.items())
        return self.get(f"{collection}{'?' + query if query else ''}")[collection]

    def answers(self) -> bool:
        try:
            urllib.request.urlopen(f"{self.url}/", timeout=2).read()
            return True
        except (urllib.error.URLError, OSError):
            return False


class Tf:
    """The `tenantflow` CLI as a user types it; every command is printed before it runs."""

    def __init__(self, url: str, echo: Callable[[str], None] | None = None) -> None:
        self.url = url
        self.echo = echo or (lambda s: print(f"   $ {s}", flush=True))

    def __call__(self, project: str | None, *args: str) -> Any:
        """Runs `tenantflow [--project P] ARGS`; for create/show/set/list with `-f json`, the
        parsed JSON, else the text output."""
        shown = shlex.join(["tenantflow", *(["--project", project] if project else []), *args])
        self.echo(shown)
        argv = [TF_BIN, "--url", self.url, *(["--project", project] if project else []), *args]
        wants_json = _takes_format(args)
        out = sh(argv + (["-f", "json"] if wants_json else []), timeout=60)
        return json.loads(out) if wants_json and out.strip() else out

    def raw(self, *args: str, check: bool = True) -> str:
        """A command with plain output (e.g. `flows --chassis c1 --diff`)."""
        self.echo(shlex.join(["tenantflow", *args]))
        return sh([TF_BIN, *args], timeout=60, check=check)


def _takes_format(args: Sequence[str]) -> bool:
    verbs = ("create", "show", "set", "update", "list")
    return len(args) >= 2 and args[1] in verbs


# ---- OVS -------------------------------------------------------------------------------------
class Ovs:
    """A private Open vSwitch (own rundir; started in the netns `runner` executes in).

    `runner` runs a shell command where the daemons should live (plain `sh` for the lab's
    own namespace; a Mininet host's `cmd` for a chassis in that host's namespace).
    """

    def __init__(self, rundir: Path, runner: Callable[[str], str] | None = None) -> None:
        self.rundir = rundir
        self.runner = runner or (lambda c: sh(c, timeout=30))

    @property
    def env(self) -> dict[str, str]:
        d = str(self.rundir)
        return {"OVS_RUNDIR": d, "OVS_DBDIR": d, "OVS_LOGDIR": d, "OVS_SYSCONFDIR": d}

    def exports(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.env.items())

    def start(self) -> "Ovs":
        self.rundir.mkdir(parents=True, exist_ok=True)
        d = self.rundir
        sh(["ovsdb-tool", "create", str(d / "conf.db"), OVS_SCHEMA], env=self.env)
        self.runner(f"env {self.exports()} ovsdb-server {d}/conf.db --remote=punix:{d}/db.sock "
                    f"--pidfile={d}/ovsdb-server.pid --detach --no-chdir "
                    f"--log-file={d}/ovsdb-server.log")
        self.vsctl("--no-wait", "init")
        self.runner(f"env {self.exports()} ovs-vswitchd unix:{d}/db.sock "
                    f"--pidfile={d}/ovs-vswitchd.pid --detach --no-chdir "
                    f"--log-file={d}/ovs-vswitchd.log")
        self.vsctl("set", "Open_vSwitch", ".", "other_config:vlan-limit=2")
        return self

    def vsctl(self, *args: str, check: bool = True) -> str:
        return sh(["ovs-vsctl", "--timeout=10", *args], env=self.env, check=check).strip()

    def ofctl(self, *args: str, check: bool = True) -> str:
        return sh(["ovs-ofctl", "-O", "OpenFlow13", *args], env=self.env, check=check)

    def appctl(self, *args: str, check: bool = True) -> str:
        return sh(["ovs-appctl", "--timeout=10", *args], env=self.env, check=check)

    def connected(self, bridge: str) -> bool:
        ids = self.vsctl("get", "bridge", bridge, "controller", check=False)
        uuids = ids.strip("[]").replace(",", " ").split()
        return bool(uuids) and all(
            self.vsctl("get", "controller", u, "is_connected", check=False) == "true" for u in uuids)

    def stop(self) -> None:
        """Both daemons exit (vswitchd removes its datapaths); SIGKILL if they hang."""
        for daemon, extra in (("ovs-vswitchd", ["--cleanup"]), ("ovsdb-server", [])):
            pidfile = self.rundir / f"{daemon}.pid"
            try:
                pid = int(pidfile.read_text().strip())
            except (OSError, ValueError):
                continue
            sh(["ovs-appctl", "--timeout=5", "-t", str(self.rundir / f"{daemon}.{pid}.ctl"),
                "exit", *extra], env=self.env, check=False, timeout=10)
            if not wait_until(partial(_gone, pid), 5, 0.05):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


def _gone(pid: int) -> bool:
    return not _alive(pid)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def flows_by_owner(flow_dump: str) -> dict[str, int]:
    """Counts `ovs-ofctl dump-flows` lines by the owner kind in the cookie's top byte."""
    kinds = {1: "pipeline", 2: "network", 3: "port", 4: "router", 5: "security-group",
             6: "floating-ip", 7: "chassis", 8: "learned"}
    counts: dict[str, int] = {}
    for line in flow_dump.splitlines():
        line = line.strip()
        if not line.startswith("cookie="):
            continue
        value = int(line.split(",", 1)[0].split("=", 1)[1], 16)
        kind = kinds.get(value >> 56, f"kind{value >> 56}")
        counts[kind] = counts.get(kind, 0) + 1
    return counts


# ---- the controller -----------------------------------------------------------------------
@dataclass
class Controller:
    """`tenantflow serve` the lab started (or the one given with --api/--controller)."""
    api_url: str
    ofp_host: str
    ofp_port: int
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    api_port: int = 9696

    @property
    def target(self) -> str:
        return f"tcp:{self.ofp_host}:{self.ofp_port}"

    @classmethod
    def start(cls, workdir: Path, ofp_host: str = "127.0.0.1", config: str = "",
              timeout: float = 40) -> "Controller":
        api_port, ofp_port = free_port(), free_port()
        log_path = workdir / "tenantflow.log"
        # Loopback only for a lab whose switches are in this netns; otherwise the chassis reach
        # both listeners over the lab's management network (and users over its API network).
        listen = "127.0.0.1" if ofp_host == "127.0.0.1" else "0.0.0.0"
        argv = [TF_BIN, "serve", "--store", f"sqlite:///{workdir}/tf.db",
                "--api-listen", f"{listen}:{api_port}", "--ofp-listen", f"{listen}:{ofp_port}"]
        if config:
            (workdir / "tenantflow.conf").write_text(config)
            argv += ["--config-file", str(workdir / "tenantflow.conf")]
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL)
        ctl = cls(f"http://127.0.0.1:{api_port}", ofp_host, ofp_port, proc, log_path, api_port)
        if not wait_until(lambda: proc.poll() is not None or Api(ctl.api_url).answers(), timeout, 0.2) \
                or proc.poll() is not None:
            tail = log_path.read_text(errors="replace")[-2000:]
            ctl.stop()
            raise LabError(f"tenantflow serve did not answer within {timeout:.0f} s:\n{tail}")
        return ctl

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


# ---- hosts (Mininet nodes) -----------------------------------------------------------------
def dhcp(nodes: Sequence[Any], workdir: Path, timeout: float = 15) -> None:
    """ISC dhclient on each node's default interface, in parallel, stopped once bound."""
    conf = workdir / "dhclient.conf"
    conf.write_text(DHCLIENT_CONF)
    pids = {}
    for node in nodes:
        intf = node.defaultIntf().name
        lease, pidf = workdir / f"{node.name}.leases", workdir / f"{node.name}.pid"
        pids[node.name] = node.cmd(
            f"timeout {int(timeout)} dhclient -d -1 -cf {conf} -lf {lease} -pf {pidf} "
            f"-sf {DHCLIENT_SCRIPT} {intf} </dev/null >{workdir}/{node.name}.dhcp.log 2>&1 & echo $!"
        ).split()[-1]
    wait_until(lambda: all(address(n)[0] for n in nodes), timeout, 0.2)
    for node in nodes:
        node.cmd(f"kill {pids[node.name]} 2>/dev/null; wait {pids[node.name]} 2>/dev/null; true")


def address(node: Any) -> tuple[str | None, str | None, int]:
    """(address/prefix, default gateway, MTU) of a node's default interface."""
    intf = node.defaultIntf().name
    got = node.cmd(f"ip -4 -o addr show dev {intf}").split()
    addr = got[got.index("inet") + 1] if "inet" in got else None
    route = node.cmd("ip -4 route show default").split()
    gw = route[route.index("via") + 1] if "via" in route else None
    mtu = node.cmd(f"cat /sys/class/net/{intf}/mtu").strip()
    return addr, gw, int(mtu) if mtu.isdigit() else 0


def echo_requests_seen(node: Any) -> int:
    """ICMP echo requests the node's namespace has received (Icmp InEchos, /proc/net/snmp)."""
    rows = [ln.split() for ln in node.cmd("cat /proc/net/snmp").splitlines() if ln.startswith("Icmp:")]
    return int(rows[1][rows[0].index("InEchos")]) if len(rows) >= 2 else 0


def ping(src: Any, ip: str, tries: int = 3) -> bool:
    return attempt(lambda: " 0% packet loss" in src.cmd(f"ping -n -c 1 -W 1 {ip}"), tries)


def reaches(src: Any, dst: Any, ip: str, tries: int = 3) -> bool:
    """src's ping of ip is answered and `dst` saw the request (with overlapping addresses a
    reply alone could come from another host that has the same IP)."""
    before = echo_requests_seen(dst)
    return ping(src, ip, tries) and echo_requests_seen(dst) > before


def listen(node: Any, port: int, udp: bool = False, seconds: int = 600) -> str:
    """An nc listener (keeps accepting; ends by itself after `seconds`); its pid."""
    pid = node.cmd(f"timeout {seconds} nc -lkn {'-u ' if udp else ''}-d {port} </dev/null "
                   f">/dev/null 2>&1 & echo $!").split()[-1]
    if not udp:
        wait_until(lambda: bool(node.cmd(f"ss -Hltn 'sport = :{port}'").strip()), 5, 0.1)
    return pid


def tcp(src: Any, ip: str, port: int, tries: int = 3) -> bool:
    """A TCP connection from src to ip:port succeeds (nc -z, 1 s per attempt)."""
    return attempt(lambda: src.cmd(f"nc -z -n -w 1 {ip} {port}; echo rc=$?").strip()
                   .endswith("rc=0"), tries)


def seen_source(client: Any, server: Any, ip: str, port: int, tries: int = 3) -> str | None:
    """Connect client -> ip:port where `server` listens once; the source address it saw."""
    log = f"/tmp/tflab-seen-{os.getpid()}-{port}.log"
    pid = server.cmd(f"timeout 15 nc -lvn -d {port} </dev/null >{log} 2>&1 & echo $!").split()[-1]
    wait_until(lambda: bool(server.cmd(f"ss -Hltn 'sport = :{port}'").strip()), 5, 0.1)
    src = None
    if tcp(client, ip, port, tries):
        wait_until(lambda: "Connection received" in _read(log), 3, 0.1)
        for line in _read(log).splitlines():           # "Connection received on IP PORT"
            if line.startswith("Connection received on "):
                src = line.split()[3]
                break
    server.cmd(f"kill {pid} 2>/dev/null; wait {pid} 2>/dev/null; true")
    Path(log).unlink(missing_ok=True)
    return src


def _read(path: str) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""


def tap_name(port: dict[str, Any]) -> str:
    """Nova's interface name for a port: the controller binds `tap<id[:11]>` to it."""
    return f"tap{port['id'][:11]}"


class Chassis:
    """A cloud node: a Mininet host running its own OVS (like a separate machine), its
    br-int made and registered by `tenantflow node init` (run on the node, over the
    management network), VMs plugged as `tap<port id[:11]>` like Nova does."""

    def __init__(self, run: "LabRun", host: Any, api_url: str, controller: str) -> None:
        self.run, self.host, self.name = run, host, host.name
        self.api_url, self.controller = api_url, controller
        self.ovs = Ovs(run.workdir / f"ovs-{host.name}", runner=host.cmd)
        self.tunnel_ip: str | None = None

    def start(self, tunnel: tuple[str, str] | None = None,
              mappings: dict[str, str] | None = None) -> "Chassis":
        """OVS up; tunnel = (underlay interface, tunnel IP/prefix) for a br-phy like the
        environment notes describe; mappings = physnet -> uplink interface of this node."""
        self.ovs.start()
        self.run.on_teardown(self.ovs.stop)
        # the node's shell points the ovs-* tools at its own OVS (for the Mininet CLI)
        self.host.cmd("export " + " ".join(f"{k}={v}" for k, v in self.ovs.env.items()))
        if tunnel:
            intf, cidr = tunnel
            self.ovs.vsctl("add-br", "br-phy", "--", "set", "bridge", "br-phy", "datapath_type=netdev")
            self.ovs.vsctl("add-port", "br-phy", intf)
            self.host.cmd(f"ip link set {intf} up; ip link set br-phy up; ip addr add {cidr} dev br-phy")
            self.tunnel_ip = cidr.split("/")[0]
        argv = ["node", "init", "--name", self.name, "--url", self.api_url]
        if self.tunnel_ip:
            argv += ["--tunnel-ip", self.tunnel_ip, "--tunnel-type", "vxlan"]
        for physnet, intf in (mappings or {}).items():
            self.host.cmd(f"ip link set {intf} up")
            argv += ["--bridge-mapping", f"{physnet}:{intf}"]
        # twice: registered first, then pointed at the controller (a bridge that connects
        # before its chassis record exists would be registered under its datapath id)
        self.node_cmd(argv)
        self.node_cmd(argv + ["--controller", self.controller])
        if not wait_until(lambda: self.ovs.connected("br-int"), 30):
            raise LabError(f"{self.name}: br-int did not connect to {self.controller}")
        return self

    def node_cmd(self, argv: Sequence[str]) -> str:
        """`tenantflow ARGS` typed on this node; LabError unless it exits 0."""
        print(f"   {self.name}$ {shlex.join(['tenantflow', *argv])}", flush=True)
        out = self.host.cmd(f"{shlex.join([TF_BIN, *argv])} 2>&1; echo rc=$?").strip()
        if not out.endswith("rc=0"):
            raise LabError(f"{self.name}: tenantflow {' '.join(argv)}: {out}")
        return out[: -len("rc=0")]

    def plug(self, vm: Any, port: dict[str, Any]) -> None:
        """Attach the VM's link end (`tap<id[:11]>`, in this node) to br-int for the port."""
        tap = tap_name(port)
        self.host.cmd(f"ip link set {tap} up")
        self.ovs.vsctl("--may-exist", "add-port", "br-int", tap, "--", "set", "Interface", tap,
                       f"external_ids:iface-id={port['id']}",
                       f"external_ids:attached-mac={port['mac_address']}",
                       "external_ids:iface-status=active")

    def flows(self, *filters: str) -> str:
        return self.ovs.ofctl("--no-stats", "dump-flows", "br-int", *filters)


MGMT_NET = "192.168.100"        # the labs' management network (inside their own netns)
MGMT_CONTROLLER = f"{MGMT_NET}.10"


def add_nodes(net: Any, mgmt: Any, names: Sequence[str]) -> tuple[Any, dict[str, Any]]:
    """Before net.build(): the controller node (this lab's own netns, where serve runs) and
    one Mininet host per cloud node, all on the management switch `mgmt` (node's eth0)."""
    ctl = net.addHost("controller", inNamespace=False, ip=None)
    net.addLink(ctl, mgmt, intfName1="ctl-mgmt", intfName2="m-controller")
    hosts = {}
    for name in names:
        hosts[name] = net.addHost(name, ip=None)
        net.addLink(hosts[name], mgmt, intfName1=f"{name}-eth0", intfName2=f"m-{name}")
    return ctl, hosts


def address_nodes(ctl: Any, hosts: dict[str, Any], octets: dict[str, int]) -> None:
    """After net.start(): management addresses (controller .10, node i .octets[i])."""
    ctl.cmd(f"ip addr add {MGMT_CONTROLLER}/24 dev ctl-mgmt")
    for name, host in hosts.items():
        host.cmd(f"ip addr add {MGMT_NET}.{octets[name]}/24 dev {name}-eth0")


def capture(where: Any, intf: str, bpf: str, count: int, seconds: int, workdir: Path) -> Callable[[], str]:
    """Start tcpdump on `intf` in `where` (a Mininet node); returns a function that waits for
    it (count packets or `seconds`) and gives its text output."""
    out = workdir / f"tcpdump-{intf}-{time.monotonic_ns()}.txt"
    pid = where.cmd(f"timeout {seconds} tcpdump -l -n -e -i {intf} -c {count} {shlex.quote(bpf)} "
                    f">{out} 2>{out}.err & echo $!").split()[-1]
    wait_until(lambda: "listening on" in _read(f"{out}.err"), 5, 0.05)

    def result() -> str:
        wait_until(lambda: not _alive(int(pid)), seconds + 2, 0.1)
        return _read(str(out))
    return result


def settle(run: "LabRun", *chassis: str, timeout: float = 15) -> bool:
    """Wait until each chassis has what the topology wants (`tenantflow flows --diff` in sync):
    a check right after a change then sees the change, not the flows before it."""
    def in_sync() -> bool:
        try:
            return all(run.api.get(f"tenantflow/flows?chassis={c}&diff=true")["diff"]["in_sync"]
                       for c in chassis)
        except (LabError, KeyError, TypeError):
            return False
    return wait_until(in_sync, timeout, 0.2)


def one_switch(run: "LabRun", ports: dict[str, dict[str, Any]], chassis: str = "s1") -> Any:
    """Mininet with one switch `s1` (datapath id 1, registered as chassis `chassis`) on the
    lab's controller and a host per port, plugged as `tap<port id[:11]>`, addresses by DHCP.

    Why here: a one-switch lab is the classic Mininet set-up (`mn --switch ovs,datapath=user
    --controller remote`), shared by the labs that need no second chassis."""
    from mininet.node import RemoteController
    assert run.ovs is not None
    if not any(c["name"] == chassis for c in run.api.list("chassis")):   # kept by an --api controller
        run.tf(None, "chassis", "create", chassis, "--datapath-id", "1")
    net = run.mininet()
    net.addController(RemoteController("c0", ip=run.controller.ofp_host, port=run.controller.ofp_port))
    s1 = net.addSwitch("s1", dpid="1")
    for host, port in ports.items():
        net.addLink(net.addHost(host, ip=None, mac=port["mac_address"]), s1, intfName2=tap_name(port))
    net.build()
    net.start()
    ovs = run.ovs
    if not wait_until(lambda: ovs.connected("s1"), 20):
        raise LabError("s1 did not connect to the controller")
    ids = {p["id"] for p in ports.values()}

    def active() -> int:
        return sum(1 for p in run.api.list("ports") if p["id"] in ids and p["status"] == "ACTIVE")
    if not wait_until(lambda: active() == len(ids), 20):
        raise LabError(f"only {active()}/{len(ids)} ports ACTIVE")
    dhcp([net.get(h) for h in ports], run.workdir)
    return net


# ---- the lab run -----------------------------------------------------------------------------
@dataclass
class LabRun:
    """Everything one run made, owned for teardown (reverse order of creation)."""
    name: str
    args: argparse.Namespace
    workdir: Path
    ovs: Ovs | None = None
    # set before build(); the placeholder only keeps the type simple for the labs
    controller: Controller = field(default_factory=lambda: Controller("", "", 0))
    net: Any = None                                   # mininet.net.Mininet
    cleanups: list[Callable[[], None]] = field(default_factory=list)
    api: Api = field(default_factory=lambda: Api("http://127.0.0.1:9696"))
    tf: Tf = field(default_factory=lambda: Tf("http://127.0.0.1:9696"))

    def on_teardown(self, fn: Callable[[], None]) -> None:
        self.cleanups.append(fn)

    @staticmethod
    def _stop_mininet(net: Any, timeout: int = 60) -> None:
        """net.stop(), bounded: a node's shell left in the middle of a command would make it
        wait forever, so after `timeout` s the nodes are killed and the links deleted directly."""
        # Off the controller first: a switch vanishing while connected makes the controller
        # send flow-mods to a dying bridge and wait for their replies.
        for sw in net.switches:
            sh(["ovs-vsctl", "--timeout=5", "del-controller", sw.name], check=False)
        previous = signal.signal(signal.SIGALRM, _raise_stop)
        signal.alarm(timeout)
        try:
            net.stop()
            return
        except (Exception, Stop) as exc:  # noqa: BLE001 — whatever Mininet raised, teardown goes on
            print(f"*** teardown: mininet stop failed ({type(exc).__name__}: {exc}); forcing", file=sys.stderr)
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, previous)
        for node in [*net.hosts, *net.switches]:
            try:
                os.kill(node.pid, signal.SIGKILL)
            except (ProcessLookupError, TypeError, AttributeError):
                pass
        for link in net.links:              # ends in this netns (the others go with their node's)
            for intf in (link.intf1, link.intf2):
                sh(["ip", "link", "del", intf.name], check=False)
        for sw in net.switches:
            sh(["ovs-vsctl", "--timeout=5", "--if-exists", "del-br", sw.name], check=False)

    def mininet(self, **kwargs: Any) -> Any:
        """A Mininet on the private OVS: userspace datapath, OpenFlow 1.3, offloads off."""
        from mininet.link import TCLink
        from mininet.net import Mininet
        from mininet.node import OVSSwitch
        switch = partial(OVSSwitch, datapath="user", protocols="OpenFlow13")
        # TCP on the userspace datapath needs TX checksum offload off on veths
        self.net = Mininet(switch=switch, link=partial(TCLink, txo=False, rxo=False),
                           controller=None, autoSetMacs=False, build=False, **kwargs)
        return self.net

    def teardown(self) -> None:
        for fn in reversed(self.cleanups):
            try:
                fn()
            except (LabError, OSError, subprocess.SubprocessError) as exc:
                print(f"*** teardown: {exc}", file=sys.stderr)
        self.cleanups.clear()
        if self.net is not None:
            self._stop_mininet(self.net)
            self.net = None
        self.controller.stop()
        if self.ovs is not None:
            self.ovs.stop()
        # Background commands the hosts started (nc listeners, captures) outlive Mininet's
        # shells: everything still carrying this run's id goes.
        kill_run(os.environ.get("TF_LAB_ID", ""))
        shutil.rmtree(self.workdir, ignore_errors=True)


class Lab:
    """One lab: subclasses set `name`/`about` and implement build/scenario/hints."""
    name = "lab"
    about = ""
    #: where the controller's OpenFlow port must be reachable from ("127.0.0.1": the lab's
    #: own Mininet switches; another address: chassis in their own namespaces reach it there)
    ofp_host = "127.0.0.1"
    #: `tenantflow serve --config-file` contents (e.g. the physnets of a lab's provider networks)
    serve_config = ""

    def build(self, run: LabRun) -> None:
        raise NotImplementedError

    def scenario(self, run: LabRun, c: Checker) -> None:
        raise NotImplementedError

    def hints(self, run: LabRun) -> str:
        return ""


def shared_hints(run: LabRun) -> str:
    """The commands every lab's prompt supports (printed after the lab's own)."""
    url = run.controller.api_url
    osc = REPO / ".venv" / "bin" / "openstack"
    where = f"ip netns exec {run.args.in_netns} " if run.args.in_netns else ""
    return f"""  mininet> sh openstack network list              # {osc}, OS_AUTH_TYPE=none OS_ENDPOINT={url}
  mininet> sh tenantflow chassis list             # {TF_BIN}, TENANTFLOW_URL={url}
Another terminal (the lab's netns, its OVS):  {where}env {run.ovs.exports() if run.ovs else ''} bash
Controller log: {run.controller.log_path or '(external controller)'}.  `exit` at the prompt tears everything down.
"""


def parse_args(lab: Lab, argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog=f"labs/{lab.name}.py", description=lab.about)
    ap.add_argument("--check", action="store_true",
                    help="run the scenario: PASS/FAIL per check, exit 1 on any failure, tear down")
    ap.add_argument("--api", help="use this tenantflow API (default: start a private serve)")
    ap.add_argument("--controller", metavar="HOST:PORT",
                    help="OpenFlow address of that controller (with --api)")
    ap.add_argument("--in-netns", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if bool(args.api) != bool(args.controller):
        ap.error("--api and --controller go together")
    return args


def main(lab: Lab, argv: Sequence[str] | None = None) -> int:
    """Entry point of every lab."""
    args = parse_args(lab, argv)
    if os.geteuid() != 0:
        print("run as root (Mininet, namespaces, Open vSwitch)", file=sys.stderr)
        return 2
    if not args.api and not args.in_netns:
        return _outer(lab, argv if argv is not None else sys.argv[1:])
    return _inner(lab, args)


def _outer(lab: Lab, argv: Sequence[str]) -> int:
    """Runs the lab in a fresh netns; afterwards nothing of the run is left, however it ended."""
    run_id = f"{os.getpid()}"
    ns = f"{NETNS_PREFIX}{run_id}"
    sh(["ip", "netns", "add", ns])
    got_signal: list[int] = []

    def forward(sig: int, _frame: Any) -> None:
        got_signal.append(sig)
        if child is not None and child.poll() is None and sig != signal.SIGINT:
            child.send_signal(sig)        # Ctrl-C reaches the child by itself (same tty group)

    child: subprocess.Popen[bytes] | None = None
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, forward)
    rc = 1
    try:
        sh(["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"])
        env = {**os.environ, "TF_LAB_ID": run_id}
        child = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable,
                                  str(Path(sys.argv[0]).resolve()), *argv, "--in-netns", ns],
                                 env=env)
        while True:
            try:
                rc = child.wait(1)
                break
            except subprocess.TimeoutExpired:
                if got_signal and got_signal[-1] != signal.SIGINT and not wait_child(child, 60):
                    child.kill()
    finally:
        left = kill_run(run_id)
        if left:
            print(f"*** teardown: killed {len(left)} leftover process(es) of the run: "
                  + "; ".join(left), file=sys.stderr)
        sh(["ip", "netns", "del", ns], check=False)
        shutil.rmtree(WORKROOT / run_id, ignore_errors=True)
    return rc if not got_signal or rc else 130


def wait_child(child: subprocess.Popen[bytes], timeout: float) -> bool:
    try:
        child.wait(timeout)
        return True
    except subprocess.TimeoutExpired:
        return False


def _raise_stop(sig: int, _frame: Any) -> None:
    raise Stop(signal.Signals(sig).name)


def _inner(lab: Lab, args: argparse.Namespace) -> int:
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_stop)
    run_id = os.environ.get("TF_LAB_ID") or str(os.getpid())
    os.environ["TF_LAB_ID"] = run_id
    WORKROOT.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix=f"{run_id}-", dir=WORKROOT)) if not args.in_netns \
        else WORKROOT / run_id
    workdir.mkdir(parents=True, exist_ok=True)
    run = LabRun(lab.name, args, workdir)
    from mininet.log import setLogLevel
    setLogLevel("warning" if args.check else "info")
    checker = Checker()
    rc = 2
    try:
        # The private OVS for the lab's Mininet switches: every ovs-* call of this process
        # and of the Mininet nodes (they inherit the environment) reaches it.
        run.ovs = Ovs(workdir / "ovs").start()
        os.environ.update(run.ovs.env)
        if args.api:
            host, _, port = args.controller.rpartition(":")
            run.controller = Controller(args.api, host, int(port))
        else:
            print(f"*** {lab.name}: tenantflow serve (private, in netns {args.in_netns})", flush=True)
            run.controller = Controller.start(workdir, lab.ofp_host, lab.serve_config)
        run.api = Api(run.controller.api_url)
        run.tf = Tf(run.controller.api_url)
        # At the prompt (`sh ...`, node shells inherit it): `tenantflow` and `openstack` on PATH
        # (last, so /usr/bin/python3 stays Mininet's) and pointed at this lab's API.
        os.environ["PATH"] = f"{os.environ.get('PATH', '/usr/bin:/bin')}:{Path(TF_BIN).parent}"
        os.environ.update({"TENANTFLOW_URL": run.controller.api_url, "OS_AUTH_TYPE": "none",
                           "OS_ENDPOINT": run.controller.api_url})
        print(f"*** {lab.name}: building", flush=True)
        lab.build(run)
        if args.check:
            rc = run_checks(lambda: lab.scenario(run, checker), checker)
        else:
            print(lab.hints(run) + shared_hints(run), flush=True)
            from mininet.cli import CLI
            CLI(run.net)
            rc = 0
    except (KeyboardInterrupt, Stop) as exc:
        print(f"\n*** {lab.name}: interrupted ({type(exc).__name__}{': ' + str(exc) if str(exc) else ''}); "
              "tearing down", file=sys.stderr)
        rc = 130
    except LabError as exc:
        print(f"*** {lab.name}: FAIL  {exc}", file=sys.stderr)
        if run.controller and run.controller.log_path and run.controller.log_path.exists():
            tail = run.controller.log_path.read_text(errors="replace").splitlines()[-15:]
            print("*** controller log tail:\n" + "\n".join(tail), file=sys.stderr)
        rc = 2
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):   # nothing may stop teardown
            signal.signal(sig, signal.SIG_IGN)
        run.teardown()
    return rc
