"""Remove what killed test runs left behind: netns, OVS daemons, mgmt links, run dirs.

Why by owner pid: several developers run beds at once on one machine; a bed whose owning
process is still alive is in use and is left alone unless --all is given.

    python -m tests.testbed.cleanup [--all] [--dry-run]      (scripts/cleanup-testbeds)
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import sys
from pathlib import Path

from . import netns
from .bed import PREFIX, WORKROOT
from .proc import run

log = logging.getLogger(__name__)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def _kill_pidfiles(workdir: Path, dry: bool) -> None:
    """SIGKILL OVS daemons started from this bed's run dirs (found by their pidfiles)."""
    for pidfile in workdir.rglob("*.pid"):
        try:
            pid = int(pidfile.read_text().strip())
        except (OSError, ValueError):
            continue
        if _alive(pid):
            log.info("kill %s pid %d", pidfile, pid)
            if not dry:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


def clean_bed(workdir: Path, force: bool, dry: bool) -> bool:
    """Tear down one bed dir. Returns False when it is in use and was left alone."""
    owner_file = workdir / "owner.json"
    owner: dict = {}
    if owner_file.exists():
        try:
            owner = json.loads(owner_file.read_text())
        except (OSError, ValueError):
            owner = {}
    pid = int(owner.get("pid", 0) or 0)
    if pid and _alive(pid) and not force:
        log.info("bed %s in use by pid %d; skipped", workdir.name, pid)
        return False
    prefix = owner.get("prefix", workdir.name)
    _kill_pidfiles(workdir, dry)
    all_ns = run(["ip", "netns", "list"], check=False, timeout=5).stdout.split("\n")
    names = {ln.split()[0] for ln in all_ns if ln.strip()}
    for ns in sorted(set(owner.get("namespaces", [])) | {n for n in names
                                                          if n.startswith(prefix + "-")}):
        log.info("delete netns %s", ns)
        if not dry:
            netns.delete(ns)
    home = owner.get("home_netns") or None
    if home is None or netns.exists(home):
        for ln in netns.links(home):
            if ln.startswith(prefix):
                log.info("delete link %s (netns %s)", ln, home or "current")
                if not dry:
                    netns.del_link(ln, home)
    if not dry:
        shutil.rmtree(workdir, ignore_errors=True)
    return True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--all", action="store_true", help="also beds whose owner is still running")
    ap.add_argument("--dry-run", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="cleanup: %(message)s")
    if os.geteuid() != 0:
        print("cleanup-testbeds must run as root", file=sys.stderr)
        return 1
    cleaned = 0
    if WORKROOT.exists():
        for workdir in sorted(WORKROOT.iterdir()):
            if workdir.is_dir() and workdir.name.startswith(PREFIX):
                cleaned += clean_bed(workdir, args.all, args.dry_run)
    # Orphan namespaces whose run dir is gone (e.g. /tmp wiped): only with --all, since an
    # owner cannot be checked for them.
    if args.all:
        for ln in run(["ip", "netns", "list"], check=False, timeout=5).stdout.splitlines():
            ns = ln.split()[0] if ln.strip() else ""
            if ns.startswith(PREFIX) and "-" in ns and len(ns.split("-")[0]) == len(PREFIX) + 6:
                log.info("delete orphan netns %s", ns)
                if not args.dry_run:
                    netns.delete(ns)
    log.info("%d bed(s) cleaned", cleaned)
    return 0


if __name__ == "__main__":
    sys.exit(main())
