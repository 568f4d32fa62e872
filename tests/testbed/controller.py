"""Run `tenantflow serve` as a subprocess for a test: free ports, ready-wait, log capture.

Why a subprocess (not in-process): it is what users run, SIGTERM/kill -9/restart behaviour is
part of what tests prove, and os-ken's hub must not share a process with pytest.
"""
from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Mapping, Sequence

import requests

from .api import NeutronClient
from .proc import stop_process

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]


def tenantflow_bin() -> str:
    """$TF_BIN, else the repo's .venv/bin/tenantflow, else the one next to this Python, else PATH."""
    for cand in (os.environ.get("TF_BIN"), REPO / ".venv/bin/tenantflow",
                 Path(sys.executable).parent / "tenantflow", shutil.which("tenantflow")):
        if cand and Path(cand).exists():
            return str(cand)
    raise FileNotFoundError("tenantflow executable not found (run `make setup`)")


def serve_implemented() -> bool:
    """Whether `tenantflow serve` exists yet: controller.serve and the CLI entry point
    (topology.cli.main) are both importable (controller work lands in parallel)."""
    import importlib.util
    if os.environ.get("TF_BIN"):
        return True
    try:
        return all(importlib.util.find_spec(m) is not None
                   for m in ("controller.serve", "topology.cli.main"))
    except (ImportError, ValueError):
        return False


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free right now in this netns (never the fixed 9696/6653)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _tcp_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class ControllerError(RuntimeError):
    pass


class Controller:
    """One `tenantflow serve` process. Ports and store survive restart()."""

    def __init__(self, workdir: Path, ofp_host: str = "0.0.0.0", check_compile: bool = True) -> None:
        """check_compile: serve in check mode (every batch re-compiled from scratch and compared);
        stop() then fails if any difference was found. Benchmarks turn it off (it is slow)."""
        self.workdir = workdir
        self.check_compile = check_compile
        self.store_url = f"sqlite:///{workdir / 'tf.db'}"
        self.api_port = free_port()
        self.ofp_port = free_port("0.0.0.0")
        self.ofp_host = ofp_host
        self.log_path = workdir / "controller.log"
        self.proc: subprocess.Popen[str] | None = None
        self.extra_args: tuple[str, ...] = ()
        self.env: dict[str, str] = {}
        self.starts = 0

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def argv(self) -> list[str]:
        return [tenantflow_bin(), "serve", "--store", self.store_url,
                "--api-listen", f"127.0.0.1:{self.api_port}",
                "--ofp-listen", f"{self.ofp_host}:{self.ofp_port}",
                *(("--check-compile",) if self.check_compile else ()), *self.extra_args]

    def start(self, extra_args: Sequence[str] = (), env: Mapping[str, str] | None = None,
              timeout: float = 30.0) -> None:
        if self.proc and self.proc.poll() is None:
            raise ControllerError("controller already running")
        self.extra_args = tuple(extra_args)
        self.env = dict(env or {})
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        self.starts += 1
        with open(self.log_path, "a") as fh:
            fh.write(f"===== start #{self.starts}: {' '.join(self.argv())}\n")
            fh.flush()
            self.proc = subprocess.Popen(self.argv(), stdout=fh, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=full_env, cwd=self.workdir,
                                         start_new_session=True, text=True)
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        """Ready = the API answers GET / ; then give OpenFlow a few seconds to listen too."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                raise ControllerError(f"tenantflow serve exited with {self.proc and self.proc.returncode}"
                                      f"\n{self.log_tail()}")
            try:
                if requests.get(self.api_url + "/", timeout=1).status_code < 500:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.1)
        else:
            raise ControllerError(f"API not answering after {timeout}s\n{self.log_tail()}")
        ofp_deadline = time.monotonic() + min(10.0, timeout)
        while time.monotonic() < ofp_deadline and not _tcp_open("127.0.0.1", self.ofp_port):
            time.sleep(0.1)
        if not _tcp_open("127.0.0.1", self.ofp_port):
            log.warning("controller API is up but OpenFlow port %d is not listening", self.ofp_port)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int | None:
        """Stop with `sig` (SIGKILL to simulate a crash); returns the exit code."""
        if not self.proc:
            return None
        check_failures = self._check_failures()
        rc = stop_process(self.proc, sig, timeout)
        log.info("controller stopped with signal %d -> rc %s", sig, rc)
        if check_failures:
            lines = self.log_text().splitlines()
            first = next((i for i, ln in enumerate(lines) if "check mode:" in ln), len(lines))
            raise ControllerError(f"check mode: the incremental compile differed from a fresh one after "
                                  f"{check_failures} batches; first report:\n" + "\n".join(lines[first:first + 25]))
        return rc

    def _check_failures(self) -> int:
        """Check mode's count of differing batches, read from the running controller (0 if unknown)."""
        if not self.check_compile or not self.running():
            return 0
        try:
            r = requests.get(self.api_url + "/v2.0/tenantflow/stats", timeout=5)
            return int(r.json().get("check_failures", 0)) if r.status_code == 200 else 0
        except (requests.RequestException, ValueError):
            return 0

    def restart(self, timeout: float = 30.0) -> None:
        self.stop()
        self.start(self.extra_args, self.env, timeout)

    def client(self) -> NeutronClient:
        return NeutronClient(self.api_url)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])
