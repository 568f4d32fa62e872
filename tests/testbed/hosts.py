"""Hosts of the bed: a network namespace with one interface `eth0` (a VM, or an outside host).

Why helpers here: traffic assertions (ping, TCP/UDP with nc, DHCP clients) are the same in every
integration test, and each must be bounded in time and return a plain bool/str to assert on.
"""
from __future__ import annotations

import logging
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .proc import Cmd, popen, run, stop_process

log = logging.getLogger(__name__)


@dataclass
class Host:
    """A namespace host. `ip` is the address without prefix (None until configured)."""

    name: str
    ns: str
    mac: str
    workdir: Path = field(repr=False)
    ip: str | None = None
    ifname: str = "eth0"
    port: dict[str, Any] | None = field(default=None, repr=False)  # Neutron port (VMs only)
    chassis: Any = None                      # the Chassis it is plugged into (VMs only)
    tap: str | None = None                   # switch-side interface name (VMs only)
    _procs: list[subprocess.Popen[str]] = field(default_factory=list, repr=False)

    # -- generic -------------------------------------------------------------------------
    def run(self, cmd: Cmd, check: bool = True, timeout: float = 15.0
            ) -> subprocess.CompletedProcess[str]:
        """Run `cmd` (list, or shell string) inside this host's netns."""
        return run(cmd, ns=self.ns, check=check, timeout=timeout)

    def popen(self, cmd: Cmd) -> subprocess.Popen[str]:
        """Start a background command in this host; stopped automatically at teardown."""
        proc = popen(cmd, ns=self.ns)
        self._procs.append(proc)
        return proc

    def set_ip(self, cidr: str, gateway: str | None = None) -> None:
        """Configure `cidr` (e.g. '10.0.0.5/24') on eth0 and optionally a default route."""
        self.run(["ip", "addr", "replace", cidr, "dev", self.ifname])
        self.ip = cidr.split("/")[0]
        if gateway:
            self.run(["ip", "route", "replace", "default", "via", gateway])

    def flush_ip(self) -> None:
        self.run(["ip", "addr", "flush", "dev", self.ifname])
        self.ip = None

    # -- reachability --------------------------------------------------------------------
    def ping(self, ip: str, count: int = 2, timeout: float = 5.0, interval: float = 0.2) -> bool:
        """True when at least one echo reply came back within `timeout` seconds."""
        res = self.run(["ping", "-n", "-c", str(count), "-i", str(interval), "-w", str(int(timeout)),
                        ip], check=False, timeout=timeout + 5)
        return res.returncode == 0

    def ping_ok(self, ip: str, tries: int = 3, timeout: float = 3.0) -> bool:
        """Like ping() but retried: for the first packet after flows are (re)installed."""
        return any(self.ping(ip, count=1, timeout=timeout) for _ in range(tries))

    def nc_listen(self, port: int, udp: bool = False, timeout: float = 10.0) -> "Listener":
        """Start `nc -l` on `port`; read what it received with `Listener.received()`."""
        out = self.workdir / f"nc-{self.name}-{port}-{'u' if udp else 't'}-{time.monotonic_ns()}.out"
        argv = ["timeout", str(int(timeout)), "nc", "-l", "-n"] + (["-u"] if udp else []) + [str(port)]
        with open(out, "w") as fh:
            proc = popen(argv, ns=self.ns, stdout=fh, stderr=subprocess.STDOUT)
        self._procs.append(proc)
        _wait_listening(self, port, udp)
        return Listener(proc, out)

    def nc_send(self, ip: str, port: int, data: str = "hello", udp: bool = False,
                timeout: float = 5.0) -> bool:
        """Send `data` with nc; True when nc exited 0 (TCP: the connection was accepted)."""
        argv = ["nc", "-n", "-w", str(int(timeout))] + (["-u"] if udp else ["-N"]) + [ip, str(port)]
        res = run(argv, ns=self.ns, check=False, timeout=timeout + 5, input=data + "\n")
        return res.returncode == 0

    def tcp_works(self, server: "Host", port: int = 5001, timeout: float = 5.0) -> bool:
        """Connect from this host to `server`:port and check the bytes arrived."""
        assert server.ip, f"{server.name} has no IP"
        token = f"tf-{self.name}-{time.monotonic_ns()}"
        lst = server.nc_listen(port, timeout=timeout + 2)
        sent = run(["nc", "-n", "-N", "-w", str(int(timeout)), server.ip, str(port)], ns=self.ns,
                   check=False, timeout=timeout + 5, input=token + "\n").returncode == 0
        got = lst.wait_for(token, timeout=timeout)
        lst.stop()
        return sent and got

    def udp_works(self, server: "Host", port: int = 5002, timeout: float = 5.0) -> bool:
        """Send one UDP datagram to `server`:port and check it arrived."""
        assert server.ip, f"{server.name} has no IP"
        token = f"tf-{self.name}-{time.monotonic_ns()}"
        lst = server.nc_listen(port, udp=True, timeout=timeout + 2)
        run(["nc", "-n", "-u", "-w", "1", server.ip, str(port)], ns=self.ns, check=False,
            timeout=timeout + 5, input=token + "\n")
        got = lst.wait_for(token, timeout=timeout)
        lst.stop()
        return got

    # -- DHCP clients (their resolv.conf writes land in /etc/netns/NS, not the host's) -----
    def dhclient(self, timeout: float = 15.0) -> bool:
        """One ISC dhclient attempt on eth0 (-1: try once); True when an address was bound."""
        lease = self.workdir / f"dhclient-{self.name}.leases"
        pidf = self.workdir / f"dhclient-{self.name}.pid"
        res = self.run(["timeout", str(int(timeout)), "dhclient", "-1", "-v", "-lf", str(lease),
                        "-pf", str(pidf), self.ifname], check=False, timeout=timeout + 5)
        self.run(["sh", "-c", f"[ -f {pidf} ] && kill $(cat {pidf}) 2>/dev/null; true"],
                 check=False)
        self._refresh_ip()
        return res.returncode == 0 and self.ip is not None

    def udhcpc(self, timeout: float = 15.0) -> bool:
        """One busybox udhcpc run (-n: quit if no lease, -q: quit after lease)."""
        res = self.run(["udhcpc", "-i", self.ifname, "-n", "-q", "-t", "3", "-T", "2",
                        "-s", "/etc/udhcpc/default.script"], check=False, timeout=timeout + 5)
        self._refresh_ip()
        return res.returncode == 0 and self.ip is not None

    def _refresh_ip(self) -> None:
        out = self.run(["ip", "-4", "-o", "addr", "show", "dev", self.ifname], check=False).stdout
        fields = out.split()
        self.ip = fields[fields.index("inet") + 1].split("/")[0] if "inet" in fields else None

    def stop_background(self) -> None:
        for proc in self._procs:
            stop_process(proc, timeout=2)
        self._procs.clear()


class Listener:
    """A background `nc -l`; what it received is in a file."""

    def __init__(self, proc: subprocess.Popen[str], out: Path) -> None:
        self.proc, self.out = proc, out

    def received(self) -> str:
        try:
            return self.out.read_text(errors="replace")
        except OSError:
            return ""

    def wait_for(self, text: str, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.received():
                return True
            time.sleep(0.05)
        return text in self.received()

    def stop(self) -> None:
        stop_process(self.proc, timeout=2)


def _wait_listening(host: Host, port: int, udp: bool, timeout: float = 3.0) -> None:
    """Wait until the listener's socket exists (ss), so the client never races it."""
    flag = "-uln" if udp else "-tln"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = host.run(["ss", "-H", flag, f"sport = :{port}"], check=False, timeout=5).stdout
        if out.strip():
            return
        time.sleep(0.05)
    log.warning("%s: nothing listening on %s/%d after %.1fs", host.name,
                "udp" if udp else "tcp", port, timeout)
