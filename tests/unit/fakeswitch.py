"""A switch in memory that applies the real encoded OpenFlow messages, with fault injection.

Why: the reconciler and the core are only trustworthy if they are tested against what they
actually send. This fake decodes our byte stream (bundle open/add/commit, barrier, flow-stats
request), applies ONF bundles atomically like OVS, answers barriers and flow-stats with real
encoded replies, and can be told to misbehave: reject chosen flow keys (an error per flow-mod,
bundle still commits), fail a commit, stay silent (no barrier reply), or be disconnected.
Replies go to three callbacks, so it drives a bare Reconciler or a whole Core (per dpid).
"""
from __future__ import annotations

import struct
from typing import Callable

from controller import wire


def _continues_bundle(buf: bytes) -> bool:
    """A write that starts inside a bundle (with a bundle-add, not the bundle's open)."""
    return len(buf) >= 16 and buf[1] == wire.OFPT_EXPERIMENTER and \
        struct.unpack_from("!I", buf, 12)[0] == wire.ONF_ET_BUNDLE_ADD_MESSAGE


class FakeSwitch:
    def __init__(self, on_error: Callable[[wire.ErrorMsg], object], on_barrier: Callable[[int], object],
                 on_flow_stats: Callable[[int, bytes, bool], object]) -> None:
        self.on_error, self.on_barrier, self.on_flow_stats = on_error, on_barrier, on_flow_stats
        self.table: dict[tuple, tuple] = {}
        self.meters: dict[int, tuple] = {}  # meter id → (flags, rate, burst) of its one drop band
        self.meter_mods: list[tuple[int, int, tuple | None]] = []  # every meter-mod applied or refused
        self.reject: set[tuple] = set()    # flow keys whose flow-mod gets an error reply
        self.fail_commits = 0              # this many next bundle commits fail (error, nothing applied)
        self.silent = False                # swallow everything: no replies at all (a hung switch)
        self.connected = True              # False: send() reports the connection gone
        self.sent: list[bytes] = []
        self._bundle: list = []            # flow-mods of the open bundle, applied at its commit
        self.enc = wire.Encoder()
        self.xid = 0                       # os-ken's Datapath.xid, set by Core.attach_datapath

    @classmethod
    def for_reconciler(cls, rec) -> "FakeSwitch":
        return cls(rec.on_error, rec.on_barrier, rec.on_flow_stats)

    @classmethod
    def for_core(cls, core, dpid: int) -> "FakeSwitch":
        return cls(lambda err: core.on_error(dpid, err), lambda xid: core.on_barrier(dpid, xid),
                   lambda xid, body, more: core.on_flow_stats(dpid, xid, body, more))

    def send(self, buf: bytes) -> bool:
        if not self.connected:
            return False
        self.sent.append(buf)
        if self.silent:
            return True
        bundle = self._bundle  # a bundle may span several writes (controller.reconciler.SEND_CHUNK)
        for mtype, xid, msg in wire.iter_messages(buf):
            if mtype == wire.OFPT_EXPERIMENTER:
                exp_type, = struct.unpack_from("!I", msg, 12)
                if exp_type == wire.ONF_ET_BUNDLE_ADD_MESSAGE:
                    cmd, key, body = wire.parse_flow_mod(wire.unwrap_bundle_add(msg))
                    if key in self.reject:
                        self.on_error(wire.ErrorMsg(xid, 3, 2, msg[:64]))  # OFPET_FLOW_MOD_FAILED
                    elif cmd == wire.OFPFC_ADD and self._missing_meter(body[3]):
                        self.on_error(wire.ErrorMsg(xid, 12, 2, msg[:64]))  # OFPMMFC_INVALID_METER
                    else:
                        bundle.append((cmd, key, body))
                else:
                    kind, = struct.unpack_from("!H", msg, 20)
                    if kind == wire.BUNDLE_OPEN_REQUEST:
                        bundle.clear()
                    if kind == wire.BUNDLE_COMMIT_REQUEST:
                        if self.fail_commits:
                            self.fail_commits -= 1
                            self.on_error(wire.ErrorMsg(xid, 17, 0, msg[:64]))  # OFPET_BUNDLE_FAILED
                            continue
                        for cmd, key, body in bundle:
                            if cmd == wire.OFPFC_ADD:
                                self.table[key] = body
                            else:
                                self.table.pop(key, None)
                        bundle.clear()
            elif mtype == wire.OFPT_BARRIER_REQUEST:
                self.on_barrier(xid)
            elif mtype == wire.OFPT_METER_MOD:
                self._meter_mod(xid, msg)
            elif mtype == wire.OFPT_MULTIPART_REQUEST:
                mp_type, = struct.unpack_from("!H", msg, 8)
                if mp_type == wire.OFPMP_METER_CONFIG:
                    self.on_flow_stats(xid, wire.meter_config_body(self.meters), False)
                else:
                    self.on_flow_stats(xid, self.stats_body(), False)
        return True

    def _missing_meter(self, instr: bytes) -> bool:
        """OVS refuses a flow whose meter instruction names a meter it does not have."""
        if len(instr) >= 8 and struct.unpack_from("!HH", instr, 0) == (6, 8):
            return struct.unpack_from("!I", instr, 4)[0] not in self.meters
        return False

    def _meter_mod(self, xid: int, msg: bytes) -> None:
        """Apply a meter-mod as OVS does: ADD of an existing id and MODIFY of a missing one fail
        (OFPET_METER_MOD_FAILED), DELETE also removes every flow whose meter instruction names it."""
        (cmd, mid, band), = wire.meter_mods_in(msg)
        self.meter_mods.append((cmd, mid, band))
        if cmd == wire.OFPMC_ADD and mid in self.meters:
            self.on_error(wire.ErrorMsg(xid, 12, 1, msg[:64]))  # OFPMMFC_METER_EXISTS
        elif cmd == wire.OFPMC_MODIFY and mid not in self.meters:
            self.on_error(wire.ErrorMsg(xid, 12, 3, msg[:64]))  # OFPMMFC_UNKNOWN_METER
        elif cmd == wire.OFPMC_DELETE:
            self.meters.pop(mid, None)
            uses = struct.pack("!HHI", 6, 8, mid)  # OFPIT_METER naming it
            for key in [k for k, body in self.table.items() if body[3].startswith(uses)]:
                del self.table[key]
        else:
            assert band is not None
            self.meters[mid] = band

    def stats_body(self) -> bytes:
        out = b""
        for (table, prio, match), (ck, idle, hard, instr) in self.table.items():
            m = self.enc.match(match)
            length = 48 + len(m) + len(instr)
            out += struct.pack("!HBxIIHHHH4xQQQ", length, table, 5, 0, prio, idle, hard, 0, ck, 0, 0) + m + instr
        return out

    def last_mods(self) -> list[tuple[int, tuple, tuple]]:
        """Flow-mods of the last write — all pieces of it when it ended a bundle sent in several."""
        start = len(self.sent) - 1
        while start > 0 and _continues_bundle(self.sent[start]):
            start -= 1
        return [wire.parse_flow_mod(m) for buf in self.sent[start:] for _, m in wire.flow_mods_in(buf)]
