"""Flow changes on an OVS bridge, timed as OVS pushes them (benches only).

A flow-monitor subscription (the ONF 1870 extension OVS speaks in OpenFlow 1.3; what
`ovs-ofctl -O OpenFlow13 monitor BR watch:` sends) on its own management-socket connection;
a thread stamps each update's arrival.
"""
from __future__ import annotations

import socket
import struct
import threading
import time
from pathlib import Path


class FlowMonitor:
    """Times flow changes without polling: a flow-monitor subscription (ONF extension 1870,
    what `ovs-ofctl -O OpenFlow13 monitor BR watch:` sends) on its own management connection.

    Why: at 10,000 ports a dump-aggregate costs OVS's main thread ≈ 17 ms (170,000 flows), so
    polling every few ms both competes with the bundle it times and sets the resolution. OVS
    pushes an update when a flow is added, modified or deleted (a bundle's updates once it
    committed); a thread stamps each update's arrival, so "all flows in" is the last update after
    the POST. Only for small changes: a bulk of 170,000 updates would flood it."""

    # multipart ONF 1870: id, flags, match_len, out_port, table; an empty OXM match
    _REQ = struct.Struct("!BBHIHH4xII" "IHHIB3x" "HH4x")

    def __init__(self, mgmt: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(str(mgmt))
        self.sock.sendall(struct.pack("!BBHI", 4, 0, 8, 1))  # hello
        self.updates: list[float] = []   # perf_counter of each update message
        self.acked = threading.Event()  # the request's own (empty) reply: subscribed
        self._barriers: dict[int, float] = {}  # xid → arrival of its barrier reply
        self._barrier_xid = 1000
        self._closed = False
        self.sock.sendall(self._REQ.pack(4, 18, self._REQ.size, 2, 0xFFFF, 0, 0x4F4E4600, 1870,
                                         1, 2 | 4 | 8, 4, 0xFFFFFFFF, 0xFF, 1, 4))  # ADD|DELETE|MODIFY, any table
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        if not self.acked.wait(10):
            raise RuntimeError("the switch did not accept the flow monitor request")

    def _read(self) -> None:
        buf = b""
        while not self._closed:
            try:
                chunk = self.sock.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            now = time.perf_counter()
            buf += chunk
            while len(buf) >= 8:
                _v, mtype, length, xid = struct.unpack_from("!BBHI", buf)
                if len(buf) < length:
                    break
                msg, buf = buf[:length], buf[length:]
                if mtype == 2:  # echo request
                    try:
                        self.sock.sendall(struct.pack("!BBHI", 4, 3, 8, xid))
                    except OSError:  # closed under us (close() from the bench's thread)
                        return
                elif mtype == 1:
                    raise RuntimeError(f"flow monitor refused: {msg.hex()}")
                elif mtype == 21:  # barrier reply
                    self._barriers[xid] = now
                elif mtype == 19 and xid == 2:
                    self.acked.set()
                elif mtype in (19, 4):  # updates (multipart reply, xid 0), or paused/resumed (experimenter)
                    self.updates.append(now)

    def barrier_rtt(self, timeout: float = 10.0) -> float:
        """Seconds OVS took to answer a barrier: its main loop's current latency (a reconfigure
        after an add-port at 10,000 ports holds it ≈ 0.4 s)."""
        self._barrier_xid += 1
        xid = self._barrier_xid
        t0 = time.perf_counter()
        self.sock.sendall(struct.pack("!BBHI", 4, 20, 8, xid))
        while xid not in self._barriers:
            if time.perf_counter() - t0 > timeout:
                raise RuntimeError(f"no barrier reply from the switch in {timeout}s")
            time.sleep(0.001)
        return self._barriers.pop(xid) - t0

    def wait_quiet(self, under: float = 0.02, times: int = 3, timeout: float = 30.0) -> None:
        """Return once `times` barriers in a row came back within `under` seconds."""
        deadline = time.perf_counter() + timeout
        ok = 0
        while ok < times:
            if time.perf_counter() > deadline:
                raise RuntimeError(f"the switch stayed busy for {timeout}s")
            ok = ok + 1 if self.barrier_rtt() < under else 0
            time.sleep(0.01)

    def last_after(self, t0: float) -> float | None:
        return self.updates[-1] if self.updates and self.updates[-1] >= t0 else None

    def close(self) -> None:
        self._closed = True
        self.sock.close()
