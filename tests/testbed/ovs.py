"""A private Open vSwitch instance (ovsdb-server + ovs-vswitchd) in its own run directory.

Why: each chassis of the bed is a separate OVS, like a separate machine, and none of them may
touch the system instance (/var/run/openvswitch). The tools find an instance through
OVS_RUNDIR/OVS_DBDIR/OVS_LOGDIR/OVS_SYSCONFDIR, so `OvsInstance.env` is all a caller needs:
`ovs-vsctl` over the unix socket works from any netns, ovs-vswitchd itself runs in `netns`
(its bridges' internal ports and the ports it opens live there). Userspace datapath only.

Also usable by hand:  python -m tests.testbed.ovs start DIR [NETNS]   /   stop DIR
"""
from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sys
import time
from pathlib import Path

from .proc import CommandError, run

log = logging.getLogger(__name__)

SCHEMA = Path("/usr/share/openvswitch/vswitch.ovsschema")
OVS_BINARIES = ("ovsdb-tool", "ovsdb-server", "ovs-vswitchd", "ovs-vsctl", "ovs-ofctl", "ovs-appctl")


def missing_binaries() -> list[str]:
    """OVS programs not on PATH (integration tests skip when any is missing)."""
    from shutil import which
    extra = os.pathsep + "/usr/sbin:/sbin"
    return [b for b in OVS_BINARIES if which(b, path=os.environ.get("PATH", "") + extra) is None]


class OvsInstance:
    """One OVS (db + vswitchd). `start()` is idempotent; `stop()` never raises."""

    def __init__(self, rundir: str | Path, netns: str | None = None) -> None:
        self.rundir = Path(rundir)
        self.netns = netns

    @property
    def env(self) -> dict[str, str]:
        d = str(self.rundir)
        return {"OVS_RUNDIR": d, "OVS_DBDIR": d, "OVS_LOGDIR": d, "OVS_SYSCONFDIR": d,
                "OVS_PKGDATADIR": "/usr/share/openvswitch"}

    @property
    def db_sock(self) -> Path:
        return self.rundir / "db.sock"

    def __repr__(self) -> str:
        return f"OvsInstance({str(self.rundir)!r}, netns={self.netns!r})"

    # -- lifecycle -------------------------------------------------------------------------
    def _pid(self, daemon: str) -> int | None:
        try:
            pid = int((self.rundir / f"{daemon}.pid").read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if pid_alive(pid) else None  # a killed daemon's zombie is not running

    def running(self) -> bool:
        return self._pid("ovsdb-server") is not None and self._pid("ovs-vswitchd") is not None

    def start(self, timeout: float = 20.0) -> "OvsInstance":
        self.rundir.mkdir(parents=True, exist_ok=True)
        db = self.rundir / "conf.db"
        if not db.exists():
            run(["ovsdb-tool", "create", str(db), str(SCHEMA)], env=self.env)
        if self._pid("ovsdb-server") is None:
            run(["ovsdb-server", str(db), f"--remote=punix:{self.db_sock}",
                 "--remote=db:Open_vSwitch,Open_vSwitch,manager_options",
                 "--pidfile", "--detach", "--no-chdir",
                 f"--log-file={self.rundir / 'ovsdb-server.log'}"],
                ns=self.netns, env=self.env, timeout=timeout)
            run(["ovs-vsctl", "--timeout=10", "--no-wait", "init"], env=self.env, timeout=timeout)
        if self._pid("ovs-vswitchd") is None:
            run(["ovs-vswitchd", f"unix:{self.db_sock}", "--pidfile", "--detach", "--no-chdir",
                 f"--log-file={self.rundir / 'ovs-vswitchd.log'}"],
                ns=self.netns, env=self.env, timeout=timeout)
        # vswitchd answers the db (cur_cfg catches up) once it is really up.
        self.vsctl("--timeout=10", "set", "Open_vSwitch", ".", "other_config:vlan-limit=2",
                   timeout=timeout)
        log.info("OVS up in %s (netns %s)", self.rundir, self.netns or "current")
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Ask both daemons to exit (vswitchd with --cleanup), SIGKILL after `timeout`."""
        for daemon, args in (("ovs-vswitchd", ["exit", "--cleanup"]), ("ovsdb-server", ["exit"])):
            pid = self._pid(daemon)
            if pid is None:
                continue
            try:
                run(["ovs-appctl", "--timeout=5", "-t", str(self.rundir / f"{daemon}.{pid}.ctl"),
                     *args], env=self.env, timeout=8, check=False)
            except CommandError as exc:
                log.warning("%s exit request failed: %s", daemon, exc)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and pid_alive(pid):
                time.sleep(0.05)
            if pid_alive(pid):
                log.warning("%s pid %d still alive; SIGKILL", daemon, pid)
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    # -- tools -----------------------------------------------------------------------------
    def vsctl(self, *args: str, timeout: float = 15.0, check: bool = True) -> str:
        """`ovs-vsctl ARGS` against this instance; returns stdout stripped."""
        return run(["ovs-vsctl", "--timeout=10", *args], env=self.env, timeout=timeout,
                   check=check).stdout.strip()

    def ofctl(self, *args: str, timeout: float = 15.0, check: bool = True) -> str:
        """`ovs-ofctl -O OpenFlow13 ARGS` (bridge names resolve via this instance's rundir)."""
        return run(["ovs-ofctl", "-O", "OpenFlow13", *args], env=self.env, timeout=timeout,
                   check=check).stdout.strip()

    def appctl(self, *args: str, timeout: float = 15.0, check: bool = True) -> str:
        """`ovs-appctl ARGS` addressed to this instance's ovs-vswitchd."""
        pid = self._pid("ovs-vswitchd")
        target = str(self.rundir / f"ovs-vswitchd.{pid}.ctl") if pid else "ovs-vswitchd"
        return run(["ovs-appctl", "--timeout=10", "-t", target, *args], env=self.env,
                   timeout=timeout, check=check).stdout.strip()

    def transact(self, ops: list, timeout: float = 600.0) -> list:
        """One OVSDB transaction over the db socket (JSON-RPC), without ovs-vsctl: ovs-vsctl
        re-checks every existing port and interface name per add-port, which at 10,000 ports
        costs minutes of its own CPU. Raises on any operation's error."""
        with socket.socket(socket.AF_UNIX) as sk:
            sk.settimeout(timeout)
            sk.connect(str(self.db_sock))
            sk.sendall(json.dumps({"method": "transact", "params": ["Open_vSwitch", *ops],
                                   "id": 0}).encode())
            decoder, raw, text = json.JSONDecoder(), b"", ""
            while True:
                try:
                    reply, end = decoder.raw_decode(text.lstrip())
                except ValueError:  # reply not complete yet
                    chunk = sk.recv(1 << 20)
                    if not chunk:
                        raise RuntimeError("ovsdb-server closed the connection mid-reply") from None
                    raw += chunk
                    try:
                        text, raw = text + raw.decode(), b""
                    except UnicodeDecodeError:  # a multi-byte character split across reads
                        pass
                    continue
                text = text.lstrip()[end:]
                if reply.get("method") == "echo":  # keep-alive while we wait
                    sk.sendall(json.dumps({"result": reply["params"], "error": None,
                                           "id": reply["id"]}).encode())
                    continue
                break
        errors = [r for r in (reply.get("result") or []) if r and "error" in r]
        if reply.get("error") or errors:
            raise RuntimeError(f"ovsdb transact failed: {reply.get('error') or errors[:3]}")
        return reply["result"]

    def add_ports(self, bridge: str, names: list[str], port_type: str = "internal",
                  timeout: float = 600.0) -> None:
        """Add `names` to `bridge` as interfaces of `port_type` in one OVSDB transaction, then
        wait until ovs-vswitchd has applied it (cur_cfg reaches the next_cfg it bumped), as
        ovs-vsctl does; ofports are assigned by then. A "patch" port gets a peer that does not
        exist: an OpenFlow port with no datapath port behind it, which the userspace datapath
        does not poll (10,000 internal or dummy ports keep ovs-vswitchd's main loop busy)."""
        ops: list = []
        for i, name in enumerate(names):
            row: dict = {"name": name, "type": port_type}
            if port_type == "patch":
                row["options"] = ["map", [["peer", f"{name}-nopeer"]]]
            ops.append({"op": "insert", "table": "Interface", "uuid-name": f"i{i}", "row": row})
            ops.append({"op": "insert", "table": "Port", "uuid-name": f"p{i}",
                        "row": {"name": name, "interfaces": ["named-uuid", f"i{i}"]}})
        ops.append({"op": "mutate", "table": "Bridge", "where": [["name", "==", bridge]],
                    "mutations": [["ports", "insert",
                                   ["set", [["named-uuid", f"p{i}"] for i in range(len(names))]]]]})
        ops.append({"op": "mutate", "table": "Open_vSwitch", "where": [],
                    "mutations": [["next_cfg", "+=", 1]]})
        ops.append({"op": "select", "table": "Open_vSwitch", "where": [], "columns": ["next_cfg"]})
        want = self.transact(ops, timeout)[-1]["rows"][0]["next_cfg"]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            cur = self.transact([{"op": "select", "table": "Open_vSwitch", "where": [],
                                  "columns": ["cur_cfg"]}], timeout)[0]["rows"][0]["cur_cfg"]
            if cur >= want:
                return
            time.sleep(0.05)
        raise TimeoutError(f"ovs-vswitchd did not apply {len(names)} new ports in {timeout} s")

    def add_bridge(self, name: str, *, fail_mode: str | None = "secure",
                   protocols: str = "OpenFlow13", extra: tuple[str, ...] = ()) -> None:
        """A userspace (netdev) bridge; `extra` are additional `-- set ...` clauses."""
        args = ["--may-exist", "add-br", name, "--", "set", "bridge", name,
                "datapath_type=netdev", f"protocols={protocols}"]
        if fail_mode:
            args += [f"fail_mode={fail_mode}"]
        self.vsctl(*args, *extra)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours counts as dead.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def main(argv: list[str]) -> int:
    """CLI: start DIR [NETNS] | stop DIR — prints the env lines to `eval` in a shell."""
    if len(argv) < 2 or argv[0] not in ("start", "stop"):
        print("usage: python -m tests.testbed.ovs start DIR [NETNS] | stop DIR", file=sys.stderr)
        return 2
    inst = OvsInstance(argv[1], argv[2] if len(argv) > 2 else None)
    if argv[0] == "start":
        inst.start()
        for k, v in inst.env.items():
            print(f"export {k}={v}")
    else:
        inst.stop()
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    sys.exit(main(sys.argv[1:]))
