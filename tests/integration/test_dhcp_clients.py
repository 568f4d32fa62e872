"""DHCP client helpers for the ARP/DHCP integration tests (no tests here).

Why own scripts instead of the distributions' dhclient-script / udhcpc default.script: they
would write resolv.conf and run hooks; ours record exactly what the client received (env of the
script) and apply only the address, MTU and routes inside the VM's namespace.
"""
from __future__ import annotations

import os
import shlex
import time
from pathlib import Path

DHCLIENT_CONF = """\
option rfc3442-classless-static-routes code 121 = array of unsigned integer 8;
timeout 15;
retry 1;
request subnet-mask, broadcast-address, routers, domain-name, domain-name-servers, host-name,
        interface-mtu, rfc3442-classless-static-routes, dhcp-lease-time, dhcp-renewal-time,
        dhcp-rebinding-time;
"""

# Records the environment per event, then the shared VM script applies address, MTU and route.
VM_DHCLIENT_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "vm-dhclient-script"
DHCLIENT_SCRIPT = f"""#!/bin/sh
env | sort > "{{out}}.$reason"
exec {VM_DHCLIENT_SCRIPT}
"""

# The event's file appears (renamed into place) only once the address and routes are applied, so a
# test that waits for it never reads the routes half-done.
UDHCPC_SCRIPT = """#!/bin/sh
ev="$1"
env | sort > "{out}.$ev.tmp"
case "$ev" in
bound|renew)
    ip addr replace "$ip/$mask" dev "$interface"
    [ -n "$mtu" ] && ip link set dev "$interface" mtu "$mtu"
    for r in $router; do ip route replace default via "$r" dev "$interface"; break; done
    set -- $staticroutes
    while [ $# -ge 2 ]; do ip route replace "$1" via "$2" dev "$interface"; shift 2; done
    ;;
esac
mv "{out}.$ev.tmp" "{out}.$ev"
exit 0
"""


def _write(path: Path, text: str, mode: int = 0o644) -> Path:
    path.write_text(text)
    os.chmod(path, mode)
    return path


def read_env(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    out = {}
    for line in path.read_text(errors="replace").splitlines():
        k, sep, v = line.partition("=")
        if sep:
            out[k] = v
    return out


def dhclient(vm, timeout: float = 20.0, extra: tuple = ()) -> tuple[bool, dict[str, str], str]:
    """ISC dhclient, one attempt (-1), private conf/lease/pid/script. → (bound?, env, lease text)."""
    base = vm.workdir / f"h5-dhclient-{vm.name}"
    conf = _write(base.with_suffix(".conf"), DHCLIENT_CONF)
    script = _write(base.with_suffix(".sh"), DHCLIENT_SCRIPT.format(out=base), 0o755)
    lease, pidf = base.with_suffix(".leases"), base.with_suffix(".pid")
    cmd = ["timeout", str(int(timeout)), "dhclient", "-1", "-v", "-cf", str(conf), "-lf", str(lease),
           "-pf", str(pidf), "-sf", str(script), *extra, vm.ifname]
    res = vm.run(cmd, check=False, timeout=timeout + 5)
    vm.run(["sh", "-c", f"[ -f {pidf} ] && kill $(cat {pidf}) 2>/dev/null; true"], check=False)
    env = {}
    for reason in ("BOUND", "REBOOT", "RENEW"):
        env = read_env(Path(f"{base}.{reason}")) or env
    text = lease.read_text(errors="replace") if lease.exists() else ""
    return res.returncode == 0 and bool(env), env, text + res.stdout + res.stderr


def udhcpc_script(vm) -> tuple[Path, Path]:
    base = vm.workdir / f"h5-udhcpc-{vm.name}"
    return _write(base.with_suffix(".sh"), UDHCPC_SCRIPT.format(out=base), 0o755), base


def udhcpc(vm, timeout: float = 20.0) -> tuple[bool, dict[str, str]]:
    """busybox udhcpc once (-n: fail if no lease, -q: quit once bound). → (bound?, env)."""
    script, base = udhcpc_script(vm)
    res = vm.run(["busybox", "udhcpc", "-i", vm.ifname, "-n", "-q", "-t", "4", "-T", "2", "-s", str(script)],
                 check=False, timeout=timeout)
    env = read_env(Path(f"{base}.bound"))
    return res.returncode == 0 and bool(env), env


def udhcpc_daemon(vm):
    """udhcpc in the foreground of a background process (renewal with SIGUSR1). → (proc, base)."""
    script, base = udhcpc_script(vm)
    proc = vm.popen(["busybox", "udhcpc", "-f", "-i", vm.ifname, "-t", "4", "-T", "2", "-s", str(script)])
    return proc, base


def wait_file(path: Path, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return True
        time.sleep(0.1)
    return path.exists()


def ip_addr(vm) -> str:
    return vm.run(["ip", "-4", "-o", "addr", "show", "dev", vm.ifname], check=False).stdout


def ip_route(vm) -> str:
    return vm.run(["ip", "-4", "route", "show"], check=False).stdout


def mtu(vm) -> int:
    out = vm.run(["cat", f"/sys/class/net/{vm.ifname}/mtu"], check=False).stdout.strip()
    return int(out or 0)


def q(text: str) -> str:
    return shlex.quote(text)


def start_controller(bed, env: dict[str, str] | None = None):
    """`tenantflow serve` with chassis registered by `node init` only.

    Why auto-registration is off: a bridge that reaches the controller before `node init` posts
    its chassis gets auto-registered by datapath id, and node init's POST then answers 409.
    """
    cfg = bed.workdir / "h5-serve.conf"
    cfg.write_text("[DEFAULT]\nauto_register_chassis = false\n")
    return bed.start_controller(extra_args=["--config-file", str(cfg)], env=env)
