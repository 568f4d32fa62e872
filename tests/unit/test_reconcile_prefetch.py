"""A restart reads the switch while it compiles (Reconciler.prefetch) and finds its flows by their
encoded bytes (wire.match_flow_stats); whatever does not match byte for byte is decoded as before.

Why these tests: the prefetched read is only sound if it is the one the resync diffs against
on the same connection, and the byte match only if it never calls a differing flow installed.
Each case below fails if either shortcut lies (a flow-mod too many, or one missing).
"""
from __future__ import annotations

import struct

from controller import wire
from controller.reconciler import Reconciler
from flows.flow import Flow, GotoTable, Output, SetField, make_match
from flows.tables import Owner, cookie
from tests.unit.fakeswitch import FakeSwitch

OWNERS = range(1, 21)


def port_flows(key: int, out: int) -> frozenset[Flow]:
    ck = cookie(Owner.PORT, key)
    return frozenset({
        Flow(0, 100, make_match(in_port=out, eth_src=0x02_00_00_00_00_00 | key),
             (SetField("reg6", key), GotoTable(10)), ck),
        Flow(60, 100, make_match(reg7=key), (Output(out),), ck),
    })


def installed_switch(kind: type[FakeSwitch] = FakeSwitch) -> FakeSwitch:
    """A switch holding every owner's flows, put there by a first controller."""
    first = Reconciler("dp", timeout=2)
    sw = kind.for_reconciler(first)
    first.attach(sw.send)
    for k in OWNERS:
        first.set_owner(cookie(Owner.PORT, k), port_flows(k, k))
    assert first.resync() == 2 * len(OWNERS)
    return sw


def restarted(sw: FakeSwitch) -> Reconciler:
    """A new controller's reconciler on `sw`, its read prefetched as it connects."""
    rec = Reconciler("dp", timeout=2)
    sw.on_error, sw.on_barrier, sw.on_flow_stats = rec.on_error, rec.on_barrier, rec.on_flow_stats
    rec.attach(sw.send)
    return rec


def flow_stats_requests(sw: FakeSwitch, since: int = 0) -> int:
    return sum(1 for buf in sw.sent[since:] for mtype, _x, msg in wire.iter_messages(buf)
               if mtype == wire.OFPT_MULTIPART_REQUEST and struct.unpack_from("!H", msg, 8)[0] == wire.OFPMP_FLOW)


def held_bytes(rec: Reconciler) -> dict[tuple, int]:
    """key → place in rec._enc_buf of the flow-mod bytes the reconciler holds for the next flush."""
    return {key: at for key, at in rec._dirty.items() if at}


def test_a_prefetched_read_is_the_resync_read_and_every_flow_is_found_by_its_bytes():
    sw = installed_switch()
    since = len(sw.sent)
    rec = restarted(sw)
    assert rec.prefetch()
    assert flow_stats_requests(sw, since) == 1
    for k in OWNERS:  # the compile, after the read went out
        rec.set_owner(cookie(Owner.PORT, k), port_flows(k, k))
    assert rec.resync() == 0
    assert flow_stats_requests(sw, since) == 1  # no second read
    assert rec.stats.last_resync_by_bytes == 2 * len(OWNERS)
    assert all(have is rec.desired_flow(key) for key, have in rec.installed.items())
    assert len(rec.installed) == 2 * len(OWNERS) and not held_bytes(rec)  # the bytes went with the flush
    assert rec.diff() == {"missing": [], "changed": [], "extra": []}


def test_a_prefetched_read_with_differences_sends_exactly_the_difference():
    sw = installed_switch()
    rec = restarted(sw)
    changed = next(f for f in port_flows(2, 2) if f.table == 60)
    sw.table[changed.key] = rec.encoder.body(Flow(60, 100, changed.match, (Output(99),), changed.cookie))
    stray = Flow(60, 5, make_match(reg7=77), (Output(1),), cookie(Owner.PORT, 77))
    sw.table[stray.key] = rec.encoder.body(stray)
    missing = next(f for f in port_flows(3, 3) if f.table == 0)
    del sw.table[missing.key]
    foreign = Flow(60, 5, make_match(reg7=78), (Output(1),), 0x1234)  # not ours: left alone
    sw.table[foreign.key] = rec.encoder.body(foreign)
    assert rec.prefetch()
    for k in OWNERS:
        rec.set_owner(cookie(Owner.PORT, k), port_flows(k, k))
    assert rec.resync() == 3
    mods = sorted((m[0], m[1]) for m in sw.last_mods())
    assert mods == sorted([(wire.OFPFC_ADD, changed.key), (wire.OFPFC_ADD, missing.key),
                           (wire.OFPFC_DELETE_STRICT, stray.key)])
    assert rec.stats.last_resync_by_bytes == 2 * len(OWNERS) - 2
    assert foreign.key in sw.table
    assert rec.resync() == 0


def test_a_read_prefetched_on_a_connection_that_dropped_is_not_used():
    sw = installed_switch()
    rec = restarted(sw)
    assert rec.prefetch()
    rec.detach()
    empty = FakeSwitch.for_reconciler(rec)  # it came back empty (vswitchd restarted)
    rec.attach(empty.send)
    for k in OWNERS:
        rec.set_owner(cookie(Owner.PORT, k), port_flows(k, k))
    assert rec.resync() == 2 * len(OWNERS)  # read anew: the old read said all were there
    assert flow_stats_requests(empty) == 1
    assert len(empty.table) == 2 * len(OWNERS)


class ReorderingSwitch(FakeSwitch):
    """Dumps each match's TLVs in reverse order: the same flows, other bytes."""

    def stats_body(self) -> bytes:
        out = b""
        for (table, prio, match), (ck, idle, hard, instr) in self.table.items():
            ours = self.enc.match(match)
            end, at, pieces = struct.unpack_from("!H", ours, 2)[0], 4, []
            while at < end:
                size = 4 + ours[at + 3]  # header + its payload length
                pieces.append(ours[at:at + size])
                at += size
            tlvs = b"".join(reversed(pieces))
            mlen = 4 + len(tlvs)
            m = struct.pack("!HH", 1, mlen) + tlvs + bytes((-mlen) % 8)
            out += struct.pack("!HBxIIHHHH4xQQQ", 48 + len(m) + len(instr), table, 5, 0, prio, idle, hard, 0,
                               ck, 0, 0) + m + instr
        return out


def test_entries_whose_bytes_differ_are_decoded_and_still_count_as_installed():
    sw = installed_switch(ReorderingSwitch)
    rec = restarted(sw)
    assert rec.prefetch()
    for k in OWNERS:
        rec.set_owner(cookie(Owner.PORT, k), port_flows(k, k))
    assert rec.resync() == 0
    # two-field matches came back reordered (decoded); one-field ones byte for byte
    assert rec.stats.last_resync_by_bytes == len(OWNERS)
    assert all(have is rec.desired_flow(key) for key, have in rec.installed.items())


def test_without_a_prefetch_the_resync_reads_then_decodes_as_before():
    sw = installed_switch()
    since = len(sw.sent)
    rec = restarted(sw)
    for k in OWNERS:
        rec.set_owner(cookie(Owner.PORT, k), port_flows(k, k))
    assert not held_bytes(rec)  # nothing kept: no read is on its way
    assert rec.resync() == 0
    assert flow_stats_requests(sw, since) == 1
    assert rec.stats.last_resync_by_bytes == 0
    assert all(have is rec.desired_flow(key) for key, have in rec.installed.items())


def test_match_flow_stats_returns_the_known_value_only_for_identical_bytes():
    enc = wire.Encoder()
    f = Flow(60, 100, make_match(reg7=5), (Output(3),), cookie(Owner.PORT, 5))
    other = Flow(60, 100, make_match(reg7=5), (Output(4),), cookie(Owner.PORT, 5))

    def entry(fl: Flow, flags: int = 0, packets: int = 0) -> bytes:
        m, instr = enc.match(fl.match), enc.instructions(fl.actions)
        return struct.pack("!HBxIIHHHH4xQQQ", 48 + len(m) + len(instr), fl.table, 7, 9, fl.priority,
                           fl.idle_timeout, fl.hard_timeout, flags, fl.cookie, packets, 99) + m + instr

    known = {enc.encoded(f, enc.body(f)): "f"}
    hits: list = []
    decoded: list = []
    wire.match_flow_stats(entry(f, flags=1, packets=5) + entry(other), known, hits, decoded)
    assert hits == ["f"]  # counters, durations and flags are not identity
    assert [(x.key, x.body) for x in decoded] == [(other.key, enc.body(other))]
    assert [(x.key, x.body) for x in wire.parse_flow_stats(entry(other))] == [(other.key, enc.body(other))]
