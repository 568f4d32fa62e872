"""Every Mininet lab's own scenario (`labs/<name>.py --check`) passes, and leaves nothing behind.

Why a subprocess: a lab is a program users run (Debian's python3, where Mininet lives); its
exit status is the verdict (0 = every check PASS). Afterwards no namespace, link, process or
work directory of the run may be left: the lab tears down even when a check fails.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LABS = REPO / "labs"
sys.path.insert(0, str(LABS))
import common  # noqa: E402  (labs/common.py: the labs' shared module, stdlib only)

SYSTEM_PYTHON = "/usr/bin/python3"
# Per lab: a bound on its whole run (build + checks + teardown); measured here 10-45 s.
LABS_AND_TIMEOUTS = [("l2_isolation", 120), ("cloud", 240), ("security_groups", 180),
                     ("provider_vlan", 180)]


def _mininet_missing() -> bool:
    try:
        return subprocess.run([SYSTEM_PYTHON, "-c", "import mininet.net"], capture_output=True,
                              timeout=30).returncode != 0
    except (OSError, subprocess.TimeoutExpired):
        return True


def _links() -> set[str]:
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, timeout=10).stdout
    return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if ":" in line}


def _lab_namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10).stdout
    return {line.split()[0] for line in out.splitlines() if line.startswith(common.NETNS_PREFIX)}


def run_lab(name: str, timeout: float, *extra: str) -> tuple[int, str, int]:
    """Runs labs/<name>.py --check; (exit status, output, pid). On timeout: SIGTERM (the lab
    tears down), then SIGKILL after 60 s."""
    proc = subprocess.Popen([SYSTEM_PYTHON, str(LABS / f"{name}.py"), "--check", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            stdin=subprocess.DEVNULL, cwd=REPO)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate(timeout=10)
        out += f"\n[test_labs: timed out after {timeout:.0f} s]"
    return proc.returncode, out, proc.pid


@pytest.mark.skipif(os.geteuid() != 0, reason="labs need root")
@pytest.mark.skipif(_mininet_missing(), reason="Mininet missing for /usr/bin/python3 (make setup)")
@pytest.mark.parametrize(("lab", "timeout"), LABS_AND_TIMEOUTS, ids=[n for n, _ in LABS_AND_TIMEOUTS])
@pytest.mark.timeout(400)
def test_lab_check_passes_and_cleans_up(lab: str, timeout: float) -> None:
    if not (LABS / f"{lab}.py").exists():
        pytest.skip(f"labs/{lab}.py not written yet")
    links_before, ns_before = _links(), _lab_namespaces()
    rc, out, pid = run_lab(lab, timeout)
    assert rc == 0, f"labs/{lab}.py --check exited {rc}:\n{out[-6000:]}"
    assert "checks PASS" in out and "FAIL" not in out, out[-6000:]
    assert _lab_namespaces() == ns_before, f"namespaces left: {_lab_namespaces() - ns_before}"
    assert _links() == links_before, f"links left: {_links() - links_before}; gone: {links_before - _links()}"
    assert common.processes_of_run(str(pid)) == [], "processes of the run left"
    assert not (common.WORKROOT / str(pid)).exists(), "work directory left"
    assert "leftover process" not in out, out[-3000:]
