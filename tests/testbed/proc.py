"""Run commands (optionally inside a network namespace) with a mandatory timeout.

Why: every external command the test bed runs must be bounded in time, and a failure must say
which command failed and what it printed, so a broken test reads like a bug report.
"""
from __future__ import annotations

import logging
import os
import subprocess
from typing import Callable, Mapping, Sequence

log = logging.getLogger(__name__)

Cmd = Sequence[str] | str


class CommandError(RuntimeError):
    """A command exited non-zero (or timed out); carries its output for the failure message."""

    def __init__(self, cmd: Sequence[str], returncode: int | None, stdout: str, stderr: str,
                 timed_out: bool = False) -> None:
        self.cmd = list(cmd)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        self.timed_out = timed_out
        what = "timed out" if timed_out else f"exited {returncode}"
        super().__init__(f"command {what}: {' '.join(self.cmd)}\n"
                         f"--- stdout ---\n{stdout[-2000:]}\n--- stderr ---\n{stderr[-2000:]}")


def ns_prefix(ns: str | None) -> list[str]:
    """The argv prefix that runs a command inside netns `ns` (nothing for the current netns)."""
    return ["ip", "netns", "exec", ns] if ns else []


def as_argv(cmd: Cmd) -> list[str]:
    """Accept a list, or a string that is run by `sh -c` (handy for pipes in tests)."""
    return ["sh", "-c", cmd] if isinstance(cmd, str) else [str(c) for c in cmd]


def run(cmd: Cmd, *, ns: str | None = None, env: Mapping[str, str] | None = None,
        timeout: float = 15.0, check: bool = True, input: str | None = None
        ) -> subprocess.CompletedProcess[str]:
    """Run `cmd` (in netns `ns`) and return the CompletedProcess (text mode).

    `env` is added to os.environ (not a replacement). Raises CommandError on non-zero exit when
    `check`, and always on timeout (a hung command is never a pass).
    """
    argv = ns_prefix(ns) + as_argv(cmd)
    full_env = {**os.environ, **env} if env else None
    log.debug("run%s: %s", f" [{ns}]" if ns else "", " ".join(argv))
    try:
        res = subprocess.run(argv, env=full_env, timeout=timeout, text=True, input=input,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             stdin=None if input is not None else subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        err = exc.stderr.decode() if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        raise CommandError(argv, None, out, err, timed_out=True) from exc
    if check and res.returncode != 0:
        raise CommandError(argv, res.returncode, res.stdout, res.stderr)
    return res


def try_run(cmd: Cmd, *, ns: str | None = None, env: Mapping[str, str] | None = None,
            timeout: float = 10.0) -> bool:
    """Best-effort command for teardown: True on success, never raises."""
    try:
        return run(cmd, ns=ns, env=env, timeout=timeout, check=False).returncode == 0
    except (CommandError, OSError) as exc:
        log.warning("teardown command failed: %s", exc)
        return False


def popen(cmd: Cmd, *, ns: str | None = None, env: Mapping[str, str] | None = None,
          stdout: int | object = subprocess.PIPE, stderr: int | object = subprocess.PIPE
          ) -> subprocess.Popen[str]:
    """Start a background command (in netns `ns`); the caller owns stopping it."""
    argv = ns_prefix(ns) + as_argv(cmd)
    full_env = {**os.environ, **env} if env else None
    log.debug("popen%s: %s", f" [{ns}]" if ns else "", " ".join(argv))
    return subprocess.Popen(argv, env=full_env, text=True, stdin=subprocess.DEVNULL,
                            stdout=stdout, stderr=stderr, start_new_session=True)


def wait_until(predicate: "Callable[[], object]", timeout: float = 10.0,
               interval: float = 0.1) -> bool:
    """Poll `predicate` until it returns something truthy or `timeout` passes (bounded loop)."""
    import time
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def stop_process(proc: subprocess.Popen[str], sig: int = 15, timeout: float = 5.0) -> int | None:
    """Send `sig` to a process we started, wait, then SIGKILL if it lingers. Returns exit code."""
    if proc.poll() is not None:
        return proc.returncode
    try:
        proc.send_signal(sig)
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        log.warning("pid %d ignored signal %d for %.1fs; killing", proc.pid, sig, timeout)
        proc.kill()
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            log.error("pid %d did not die after SIGKILL", proc.pid)
            return None
