"""tcpdump captures for assertions about what crossed a wire (e.g. VXLAN VNIs on the underlay).

Why a pcap plus text: the pcap can be opened with scapy for exact fields, the text (`tcpdump -r
-n -e -vv`) is easy to grep and readable in a failure message.
"""
from __future__ import annotations

import logging
import signal
import subprocess
import time
from pathlib import Path

from .proc import popen, run, stop_process

log = logging.getLogger(__name__)


class Capture:
    """A running `tcpdump -w` in a netns. Use as a context manager or call `stop()`/`text()`."""

    def __init__(self, ns: str | None, iface: str, bpf: str, count: int, timeout: float,
                 pcap: Path) -> None:
        self.ns, self.iface, self.bpf, self.count, self.timeout, self.pcap = \
            ns, iface, bpf, count, timeout, pcap
        self.started = time.monotonic()
        argv = ["timeout", "-s", "INT", str(max(1, int(timeout))), "tcpdump", "-n", "-U",
                "-i", iface, "-c", str(count), "-w", str(pcap)] + (bpf.split() if bpf else [])
        self.proc: subprocess.Popen[str] = popen(argv, ns=ns)
        self._wait_listening()

    def _wait_listening(self, timeout: float = 5.0) -> None:
        """tcpdump prints 'listening on' to stderr once the socket is bound; wait for it so the
        traffic a test sends next is captured."""
        assert self.proc.stderr is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                break
            if "listening on" in line:
                return
        raise RuntimeError(f"tcpdump on {self.ns}/{self.iface} did not start: "
                           f"rc={self.proc.poll()} {line!r}")

    def stop(self) -> None:
        """End the capture now (SIGINT flushes the pcap)."""
        stop_process(self.proc, sig=signal.SIGINT, timeout=3)

    def wait(self, timeout: float | None = None) -> list[str]:
        """Wait until `count` packets were captured or the capture timeout passed; returns the
        packets as tcpdump text lines (one per packet with -vv continuation lines merged)."""
        left = (timeout if timeout is not None else self.timeout) + 2
        try:
            self.proc.wait(timeout=left)
        except subprocess.TimeoutExpired:
            self.stop()
        return self.lines()

    def lines(self) -> list[str]:
        if not self.pcap.exists() or self.pcap.stat().st_size == 0:
            return []
        out = run(["tcpdump", "-n", "-e", "-vv", "-r", str(self.pcap)], check=False,
                  timeout=15).stdout
        packets: list[str] = []
        for line in out.splitlines():
            if line.startswith((" ", "\t")) and packets:
                packets[-1] += " " + line.strip()
            elif line.strip():
                packets.append(line.strip())
        return packets

    def text(self) -> str:
        return "\n".join(self.lines())

    def packets(self) -> list:
        """The captured frames as scapy packets."""
        from scapy.utils import rdpcap
        return list(rdpcap(str(self.pcap))) if self.pcap.exists() else []

    def __enter__(self) -> "Capture":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
