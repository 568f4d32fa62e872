"""Packet-in → the PacketApp named by the punt flow's userdata → packet-outs.

Why a queue and a thread of its own: the OpenFlow receive loop must keep reading barrier
replies and errors while apps think, and a packet-in flood must not grow memory without bound
— when the queue is full the packet is dropped and counted (the switch's controller meter is
the first line of defence, this is the second). Nothing an app or a malformed packet does may
end the loop: every failure is logged with its context and counted.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Callable

from os_ken.lib import hub

from apps.base import PacketIn, PacketOut
from controller import wire

LOG = logging.getLogger(__name__)

_REGS = {f"reg{i}" for i in range(16)} | {"metadata"}
TICK_INTERVAL = 1.0  # seconds between calls of the apps' `periodic` (their own schedule decides)


@dataclass
class RawPacketIn:
    """What the receive thread hands over (cheap to build: no parsing on that thread)."""
    dpid: int
    datapath: Any
    table: int
    cookie: int
    match: tuple      # canonical match items (name, value, mask)
    data: bytes
    userdata: bytes


class Dispatcher:
    def __init__(self, core, *, queue_size: int = 2048) -> None:
        self.core = core
        self._q = hub.Queue(queue_size)
        self.dropped = 0
        self.handled = 0
        self.errors = 0
        self.unknown = 0
        self._thread = None
        self._ticker = None
        self._stopping = False
        self._xid = 0x40000000

    def start(self) -> None:
        self._thread = hub.spawn(self._loop)
        self._ticker = hub.spawn(self._tick_loop)

    def stop(self) -> None:
        self._stopping = True
        try:
            self._q.put(None, block=False)
        except Exception:  # noqa: BLE001 — queue full: the loop checks nothing else, drop one
            pass

    def submit(self, pkt: RawPacketIn) -> None:
        try:
            self._q.put(pkt, block=False)
        except Exception:  # noqa: BLE001 — hub.Queue raises queue.Full / eventlet Full
            self.dropped += 1
            if self.dropped % 1000 == 1:
                LOG.warning("packet-in queue full: %d packet-ins dropped so far", self.dropped)

    def _loop(self) -> None:
        while True:
            pkt = self._q.get()
            if pkt is None:
                return
            try:
                self.handle(pkt)
            except Exception:  # noqa: BLE001 — never let one packet end dispatch
                self.errors += 1
                LOG.exception("packet-in from %016x table %d cookie %#x (%d bytes) failed",
                              pkt.dpid, pkt.table, pkt.cookie, len(pkt.data))

    def _tick_loop(self) -> None:
        while not self._stopping:
            hub.sleep(TICK_INTERVAL)
            try:
                self.tick(time.monotonic())
            except Exception:  # noqa: BLE001 — a periodic sender's bug must not end the timer
                self.errors += 1
                LOG.exception("periodic packet-outs failed")

    def tick(self, now: float) -> int:
        """Packet-outs apps send on their own schedule (`periodic(view, ctx, now)`: unsolicited
        router advertisements), for each connected datapath this controller is master of (an HA
        slave never sends). Returns how many were sent."""
        apps = [a for a in self.core.packet_apps.values() if hasattr(a, "periodic")]
        is_master = getattr(self.core, "is_master", lambda dpid: True)
        sent = 0
        for e in list(self.core.registry.all()) if apps else ():
            if e.ctx is None or e.datapath is None or not is_master(e.dpid):
                continue
            for app in apps:
                with self.core.view_lock:
                    outs = app.periodic(self.core.view, e.ctx, now) or []
                self.send(e.datapath, outs, e)
                sent += len(outs)
        return sent

    def handle(self, pkt: RawPacketIn) -> list[PacketOut]:
        e = self.core.registry.get(pkt.dpid)
        app = self.core.packet_apps.get(pkt.userdata)
        if e is None or e.ctx is None or app is None:
            self.unknown += 1
            LOG.debug("packet-in from %016x with userdata %r: no app/chassis", pkt.dpid, pkt.userdata)
            return []
        e.packet_ins += 1
        regs = {n: v for n, v, _m in pkt.match if n in _REGS}
        in_port = next((v for n, v, _m in pkt.match if n == "in_port"), 0)
        pin = PacketIn(datapath_id=pkt.dpid, chassis=e.ctx.name, in_ofport=in_port, table=pkt.table,
                       cookie=pkt.cookie, registers=regs, data=pkt.data, userdata=pkt.userdata)
        try:
            with self.core.view_lock:
                outs = app.packet_in(self.core.view, e.ctx, pin) or []
        except Exception:  # noqa: BLE001 — an app bug is logged with the packet's context
            e.packet_in_errors += 1
            self.errors += 1
            LOG.exception("app %s failed on packet-in from %s port %s (%d bytes: %s)",
                          getattr(app, "name", app), e.ctx.name, in_port, len(pkt.data), pkt.data[:64].hex())
            return []
        self.handled += 1
        self.send(pkt.datapath, outs, e)
        return outs

    def send(self, datapath, outs: list[PacketOut], e=None) -> None:
        if not outs or datapath is None:
            return
        parts = []
        for o in outs:
            self._xid = (self._xid + 1) & 0x7FFFFFFF or 0x40000000
            parts.append(wire.packet_out(self._xid, o.ofport, o.data))
        datapath.send(b"".join(parts))
        if e is not None:
            e.packet_outs += len(outs)


Submit = Callable[[RawPacketIn], None]
