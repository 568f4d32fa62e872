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


class FakeSwitch:
    def __init__(self, on_error: Callable[[wire.ErrorMsg], object], on_barrier: Callable[[int], object],
                 on_flow_stats: Callable[[int, bytes, bool], object]) -> None:
        self.on_error, self.on_barrier, self.on_flow_stats = on_error, on_barrier, on_flow_stats
        self.table: dict[tuple, tuple] = {}
        self.reject: set[tuple] = set()    # flow keys whose flow-mod gets an error reply
        self.fail_commits = 0              # this many next bundle commits fail (error, nothing applied)
        self.silent = False                # swallow everything: no replies at all (a hung switch)
        self.connected = True              # False: send() reports the connection gone
        self.sent: list[bytes] = []
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
        bundle: list = []
        for mtype, xid, msg in wire.iter_messages(buf):
            if mtype == wire.OFPT_EXPERIMENTER:
                exp_type, = struct.unpack_from("!I", msg, 12)
                if exp_type == wire.ONF_ET_BUNDLE_ADD_MESSAGE:
                    cmd, key, body = wire.parse_flow_mod(wire.unwrap_bundle_add(msg))
                    if key in self.reject:
                        self.on_error(wire.ErrorMsg(xid, 3, 2, msg[:64]))  # OFPET_FLOW_MOD_FAILED
                    else:
                        bundle.append((cmd, key, body))
                else:
                    kind, = struct.unpack_from("!H", msg, 20)
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
            elif mtype == wire.OFPT_BARRIER_REQUEST:
                self.on_barrier(xid)
            elif mtype == wire.OFPT_MULTIPART_REQUEST:
                self.on_flow_stats(xid, self.stats_body(), False)
        return True

    def stats_body(self) -> bytes:
        out = b""
        for (table, prio, match), (ck, idle, hard, instr) in self.table.items():
            m = self.enc.match(match)
            length = 48 + len(m) + len(instr)
            out += struct.pack("!HBxIIHHHH4xQQQ", length, table, 5, 0, prio, idle, hard, 0, ck, 0, 0) + m + instr
        return out

    def last_mods(self) -> list[tuple[int, tuple, tuple]]:
        return [wire.parse_flow_mod(m) for _, m in wire.flow_mods_in(self.sent[-1])]
