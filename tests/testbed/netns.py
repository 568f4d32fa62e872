"""Network namespaces, veth pairs and Linux bridges — the plumbing of the test bed.

Why its own module: every object of the bed (chassis, VM, underlay, outside switch) is made of
these few kernel objects, and teardown must be able to remove them by name even after a crash.
Interface names are limited to 15 characters (IFNAMSIZ - 1); we check it here, once.
"""
from __future__ import annotations

import logging
import os
import shutil
import signal
from pathlib import Path

from .proc import run, try_run

log = logging.getLogger(__name__)

IFNAMSIZ = 15
NETNS_DIR = Path("/var/run/netns")
ETC_NETNS = Path("/etc/netns")


def check_ifname(name: str) -> str:
    if not name or len(name) > IFNAMSIZ:
        raise ValueError(f"interface name {name!r} must be 1..{IFNAMSIZ} characters")
    return name


def exists(ns: str) -> bool:
    return (NETNS_DIR / ns).exists()


def current_netns_name() -> str:
    """Name of the named netns this process runs in ('' when it is not a named one)."""
    res = run(["ip", "netns", "identify", str(os.getpid())], check=False, timeout=5)
    return res.stdout.strip()


def in_host_netns() -> bool:
    """True when this process shares the host's (PID 1's) network namespace.

    /proc/1/ns/net is not always readable (sandboxes); then "not in a named netns" is taken as
    "host", which errs on the safe side.
    """
    try:
        return os.readlink("/proc/self/ns/net") == os.readlink("/proc/1/ns/net")
    except OSError:
        return current_netns_name() == ""


def add(ns: str, private_etc: bool = True) -> None:
    """Create netns `ns` with lo up. With `private_etc`, give it its own /etc/netns/NS/resolv.conf
    so DHCP clients run inside it cannot rewrite the host's /etc/resolv.conf."""
    if not exists(ns):
        run(["ip", "netns", "add", ns])
    run(["ip", "link", "set", "lo", "up"], ns=ns)
    if private_etc:
        etc = ETC_NETNS / ns
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "resolv.conf").touch()


def pids(ns: str) -> list[int]:
    res = run(["ip", "netns", "pids", ns], check=False, timeout=5)
    return [int(p) for p in res.stdout.split() if p.isdigit()]


def kill_all(ns: str) -> None:
    """SIGKILL every process left inside `ns` (only ever called on namespaces the bed made)."""
    for pid in pids(ns):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def delete(ns: str) -> None:
    """Kill what still runs inside `ns`, then delete it and its /etc/netns entry. Never raises."""
    if exists(ns):
        kill_all(ns)
        try_run(["ip", "netns", "del", ns])
    shutil.rmtree(ETC_NETNS / ns, ignore_errors=True)


def add_veth(a: str, a_ns: str | None, b: str, b_ns: str | None, mtu: int | None = None,
             a_mac: str | None = None) -> None:
    """Create veth a<->b with each end directly in its namespace (None = current netns), both up,
    TX checksum offload off on both ends (TCP fails on the userspace datapath otherwise).

    a_mac is set at creation, before the link comes up, so the kernel's IPv6 link-local (EUI-64)
    is derived from it and not from a random MAC that port security would then drop."""
    check_ifname(a)
    check_ifname(b)
    cmd = ["ip", "link", "add", a]
    if a_mac:
        cmd += ["address", a_mac]
    if a_ns:
        cmd += ["netns", a_ns]
    cmd += ["type", "veth", "peer", "name", b]
    if b_ns:
        cmd += ["netns", b_ns]
    run(cmd)
    for ifname, ns in ((a, a_ns), (b, b_ns)):
        if mtu:
            run(["ip", "link", "set", ifname, "mtu", str(mtu)], ns=ns)
        offload_off(ifname, ns)
        run(["ip", "link", "set", ifname, "up"], ns=ns)


def offload_off(ifname: str, ns: str | None) -> None:
    run(["ethtool", "-K", ifname, "tx", "off"], ns=ns)


def add_bridge(name: str, ns: str | None) -> None:
    """A Linux bridge that forwards at once (no STP, no forward delay)."""
    check_ifname(name)
    run(["ip", "link", "add", name, "type", "bridge", "stp_state", "0", "forward_delay", "0"], ns=ns)
    run(["ip", "link", "set", name, "up"], ns=ns)


def enslave(ifname: str, bridge: str, ns: str | None) -> None:
    run(["ip", "link", "set", ifname, "master", bridge], ns=ns)


def add_addr(ifname: str, cidr: str, ns: str | None) -> None:
    run(["ip", "addr", "replace", cidr, "dev", ifname], ns=ns)


def del_link(ifname: str, ns: str | None) -> bool:
    return try_run(["ip", "link", "del", ifname], ns=ns)


def links(ns: str | None) -> list[str]:
    """Interface names in `ns` (without the @peer suffix)."""
    res = run(["ip", "-o", "link", "show"], ns=ns, check=False, timeout=5)
    names = []
    for line in res.stdout.splitlines():
        parts = line.split(":", 2)
        if len(parts) >= 2:
            names.append(parts[1].strip().split("@")[0])
    return names


def addresses(ns: str | None) -> list[str]:
    """All IPv4 CIDRs configured in `ns` (used to avoid subnet clashes between parallel beds)."""
    res = run(["ip", "-4", "-o", "addr", "show"], ns=ns, check=False, timeout=5)
    out = []
    for line in res.stdout.splitlines():
        fields = line.split()
        if "inet" in fields:
            out.append(fields[fields.index("inet") + 1])
    return out
