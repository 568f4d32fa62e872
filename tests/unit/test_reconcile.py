"""Reconciler diff logic against a fake switch that applies our bundles and answers barriers."""
from __future__ import annotations

import logging
import struct

import pytest

from controller import wire
from controller.reconciler import Reconciler, ReconcileError
from flows.flow import Flow, GotoTable, Output, SetField, make_match
from flows.tables import Owner, cookie
from tests.unit.fakeswitch import FakeSwitch


def port_flows(key: int, out: int) -> frozenset[Flow]:
    ck = cookie(Owner.PORT, key)
    return frozenset({
        Flow(0, 100, make_match(in_port=out), (SetField("reg6", key), GotoTable(10)), ck),
        Flow(60, 100, make_match(reg7=key), (Output(out),), ck),
    })


@pytest.fixture
def rig():
    rec = Reconciler("test-dp", timeout=2)
    sw = FakeSwitch.for_reconciler(rec)
    rec.attach(sw.send)
    return rec, sw


def test_first_sync_installs_everything_then_nothing(rig):
    rec, sw = rig
    for k in range(1, 4):
        rec.set_owner(cookie(Owner.PORT, k), port_flows(k, k))
    assert rec.resync() == 6
    assert len(sw.table) == 6
    assert rec.flush() == 0
    assert rec.resync() == 0  # reconnect with identical state: zero flow-mods


def test_change_one_owner_touches_only_its_flows(rig):
    rec, sw = rig
    for k in range(1, 4):
        rec.set_owner(cookie(Owner.PORT, k), port_flows(k, k))
    rec.resync()
    rec.set_owner(cookie(Owner.PORT, 2), port_flows(2, 9))
    assert rec.flush() == 3
    mods = sw.last_mods()
    # in_port=2 → in_port=9 is a new key (delete + add); the output flow keeps its key (overwrite)
    assert sorted(m[0] for m in mods) == [wire.OFPFC_ADD, wire.OFPFC_ADD, wire.OFPFC_DELETE_STRICT]
    assert all(m[2][0] == cookie(Owner.PORT, 2) for m in mods if m[0] == wire.OFPFC_ADD)
    assert [m[1][2] for m in mods if m[0] == wire.OFPFC_DELETE_STRICT] == [make_match(in_port=2)]
    assert sw.table == {f.key: rec.encoder.body(f) for o in rec.owners() for f in rec.desired_flows(o)}


def test_removed_owner_is_deleted_strictly(rig):
    rec, sw = rig
    rec.set_owner(cookie(Owner.PORT, 1), port_flows(1, 1))
    rec.set_owner(cookie(Owner.PORT, 2), port_flows(2, 2))
    rec.resync()
    rec.set_owner(cookie(Owner.PORT, 2), ())
    assert rec.flush() == 2
    assert {m[0] for m in sw.last_mods()} == {wire.OFPFC_DELETE_STRICT}
    assert len(sw.table) == 2


def test_resync_deletes_unwanted_ours_keeps_learned_and_foreign(rig):
    rec, sw = rig
    enc = wire.Encoder()
    stray = Flow(40, 7, make_match(metadata=99), (Output(3),), cookie(Owner.NETWORK, 99))
    learned = Flow(42, 100, make_match(metadata=1, eth_dst=5), (Output(2),), cookie(Owner.LEARNED, 0))
    foreign = Flow(0, 1, make_match(in_port=77), (), 0)
    for f in (stray, learned, foreign):
        sw.table[f.key] = enc.body(f)
    rec.set_owner(cookie(Owner.PORT, 1), port_flows(1, 1))
    assert rec.resync() == 3
    assert stray.key not in sw.table and learned.key in sw.table and foreign.key in sw.table


def test_changed_body_is_overwritten_with_add_including_cookie(rig):
    rec, sw = rig
    f = Flow(40, 5, make_match(metadata=1), (Output(1),), cookie(Owner.NETWORK, 1))
    rec.set_owner(f.cookie, [f])
    rec.resync()
    g = Flow(40, 5, make_match(metadata=1), (Output(1),), cookie(Owner.NETWORK, 2))
    rec.set_owner(f.cookie, [])
    rec.set_owner(g.cookie, [g])
    assert rec.flush() == 1
    (cmd, key, body), = sw.last_mods()
    assert cmd == wire.OFPFC_ADD and body[0] == g.cookie


def test_key_claimed_by_two_owners_is_logged_and_resolved_deterministically(rig, caplog):
    rec, sw = rig
    a = Flow(40, 5, make_match(metadata=1), (Output(1),), cookie(Owner.PORT, 2))
    b = Flow(40, 5, make_match(metadata=1), (Output(2),), cookie(Owner.PORT, 1))
    with caplog.at_level(logging.ERROR):
        rec.set_owner(a.cookie, [a])
        rec.set_owner(b.cookie, [b])
    assert "compile bug" in caplog.text
    rec.resync()
    assert sw.table[a.key][0] == b.cookie  # lowest owner wins
    rec.set_owner(b.cookie, [])
    rec.flush()
    assert sw.table[a.key][0] == a.cookie  # the other claim takes over


def test_rejected_flow_is_logged_with_owner_and_not_resent(rig, caplog):
    rec, sw = rig
    bad = Flow(10, 1, make_match(reg6=1), (GotoTable(5),), cookie(Owner.ROUTER, 4))
    good = Flow(10, 2, make_match(reg6=2), (Output(1),), cookie(Owner.ROUTER, 4))
    sw.reject.add(bad.key)
    rec.set_owner(bad.cookie, [bad, good])
    with caplog.at_level(logging.ERROR):
        assert rec.resync() == 2
    assert "router:4" in caplog.text and "goto_table:5" in caplog.text
    assert good.key in sw.table and bad.key not in sw.table
    assert rec.stats.errors == 1
    assert rec.flush() == 0


def test_nothing_sent_before_installed_state_is_known():
    rec = Reconciler("dp")
    rec.set_owner(1, port_flows(1, 1))
    assert rec.flush() == 0


def test_a_big_bundle_goes_out_in_pieces_and_is_still_one_bundle(rig, monkeypatch):
    """A bundle bigger than SEND_CHUNK is written in pieces (encoded while the switch parses the
    previous one); it stays one bundle — one open, one commit — and a rejection in a later piece
    is still pinned on its flow."""
    from controller import reconciler as reconciler_mod
    monkeypatch.setattr(reconciler_mod, "SEND_CHUNK", 4)
    rec, sw = rig
    for k in range(1, 8):
        rec.set_owner(cookie(Owner.PORT, k), port_flows(k, k))
    victim = next(iter(f.key for f in port_flows(7, 7) if f.table == 60))
    sw.reject.add(victim)
    writes = len(sw.sent)
    assert rec.resync() == 14
    pieces = sw.sent[writes + 1:]  # after the flow-stats read (and the meter read, if any)
    assert len([p for p in pieces if wire.flow_mods_in(p)]) >= 4  # 14 flow-mods, 4 a piece
    assert rec.stats.bundles == 1
    assert len(sw.table) == 13 and victim not in sw.table
    assert rec.rejected_count() == 1
    assert len(sw.last_mods()) == 14  # every piece of the last bundle
    sw.reject.clear()
    assert rec.resync() == 1 and len(sw.table) == 14


class _OskenDatapath:
    """The three attributes of os-ken's Datapath its echo keep-alive loop reads."""
    def __init__(self, misses: int, interval: float) -> None:
        self.max_unreplied_echo_requests = misses
        self.echo_request_interval = interval
        self.unreplied_echo_requests: list[int] = []


def test_the_keepalive_is_patient_while_a_bundle_is_out_and_strict_again_after():
    """A switch committing a big bundle answers no echo; os-ken must not drop it meanwhile
    (10,000 ports: the resync restarted forever), but a hung switch is still bounded."""
    from controller.core import echo_patience
    dp = _OskenDatapath(misses=4, interval=1.0)
    rec = Reconciler("test-dp", timeout=30)
    sw = FakeSwitch.for_reconciler(rec)
    seen: list[int] = []

    def send(buf: bytes) -> bool:
        seen.append(dp.max_unreplied_echo_requests)
        dp.unreplied_echo_requests.extend([1, 2, 3, 4, 5])  # echoes unanswered during the commit
        return sw.send(buf)
    rec.attach(send, echo_patience(dp, rec.timeout))
    for k in range(1, 4):
        rec.set_owner(cookie(Owner.PORT, k), port_flows(k, k))
    assert rec.resync() == 6
    assert seen and min(seen) >= 30          # lenient for the whole reply timeout while waiting
    assert dp.max_unreplied_echo_requests == 4 and dp.unreplied_echo_requests == []
    assert echo_patience(_OskenDatapath(misses=0, interval=1.0), 30) is None  # keep-alive off


def _bundle_opens(buf: bytes) -> int:
    return sum(1 for mtype, _x, msg in wire.iter_messages(buf) if mtype == wire.OFPT_EXPERIMENTER
               and struct.unpack_from("!I", msg, 12)[0] == wire.ONF_ET_BUNDLE_CONTROL
               and struct.unpack_from("!H", msg, 20)[0] == wire.BUNDLE_OPEN_REQUEST)


def test_a_first_sync_onto_an_empty_switch_goes_in_bounded_bundles_each_confirmed_first(rig):
    """First sync (the switch holds none of our flows): bundles of at most first_sync_bundle, the
    next one opened only once the switch has committed the previous (its table has grown); sent
    by table, then descending priority, so every prefix fails closed. Afterwards a change is one
    bundle again, whatever its size, and a resync of the same state sends nothing."""
    rec, sw = rig
    rec.first_sync_bundle = 4
    for k in range(1, 8):
        rec.set_owner(cookie(Owner.PORT, k), port_flows(k, k))
    table_at_open: list[int] = []
    send = sw.send

    def spy(buf: bytes) -> bool:
        table_at_open.extend([len(sw.table)] * _bundle_opens(buf))
        return send(buf)
    rec.attach(spy)
    assert rec.resync() == 14
    assert table_at_open == [0, 4, 8, 12]  # 4 + 4 + 4 + 2, each committed before the next opens
    assert rec.stats.bundles == 4 and len(sw.table) == 14
    order = [(f.table, -f.priority) for f in sorted((f for o in rec.owners() for f in rec.desired_flows(o)),
                                                     key=lambda f: (f.table, -f.priority))]
    assert order == sorted(order)
    table_at_open.clear()
    for k in range(1, 8):
        rec.set_owner(cookie(Owner.PORT, k), port_flows(k, k + 20))  # 7 new keys + 7 deletes + 7 overwrites
    assert rec.flush() == 21
    assert table_at_open == [14]  # not a first sync: one atomic bundle
    assert rec.resync() == 0


def test_a_first_sync_failing_midway_keeps_what_committed_and_the_resync_sends_the_rest(rig):
    rec, sw = rig
    rec.first_sync_bundle = 4
    for k in range(1, 6):
        rec.set_owner(cookie(Owner.PORT, k), port_flows(k, k))
    send = sw.send
    armed = [True]

    def fail_second(buf: bytes) -> bool:
        if armed[0] and _bundle_opens(buf) and len(sw.table) == 4:
            sw.fail_commits, armed[0] = 1, False  # the second bundle's commit fails, once
        return send(buf)
    rec.attach(fail_second)
    with pytest.raises(ReconcileError):
        rec.resync()
    assert len(sw.table) == 4 and len(rec.installed) == 4 and not rec.installed_known
    assert rec.resync() == 6 and len(sw.table) == 10  # the switch now holds some: one bundle


def test_first_sync_bundle_zero_means_one_bundle(rig):
    rec, sw = rig
    rec.first_sync_bundle = 0
    for k in range(1, 8):
        rec.set_owner(cookie(Owner.PORT, k), port_flows(k, k))
    assert rec.resync() == 14 and rec.stats.bundles == 1


# ---------------------------------------------------------------- memory: one copy of each flow (issue 14)

def test_a_restart_reads_the_switch_back_sends_nothing_and_keeps_none_of_the_read():
    """A new reconciler (a restarted controller) with the same desired state reads the switch's
    flows and sends 0 flow-mods; a flow read back equal to the one wanted is recorded as that
    Flow under the key object `_want` holds, so nothing of the read (keys, matches, bodies) is
    kept. A flow read back different is overwritten, and one nobody wants is deleted."""
    first = Reconciler("dp", timeout=2)
    sw = FakeSwitch.for_reconciler(first)
    first.attach(sw.send)
    for k in range(1, 5):
        first.set_owner(cookie(Owner.PORT, k), port_flows(k, k))
    assert first.resync() == 8
    rec = Reconciler("dp", timeout=2)
    sw.on_error, sw.on_barrier, sw.on_flow_stats = rec.on_error, rec.on_barrier, rec.on_flow_stats
    rec.attach(sw.send)
    for k in range(1, 5):
        rec.set_owner(cookie(Owner.PORT, k), port_flows(k, k))
    assert rec.resync() == 0
    assert len(rec.installed) == 8
    want_keys = {id(k): k for k in rec._want}
    for key, have in rec.installed.items():
        assert have is rec.desired_flow(key)
        assert id(key) in want_keys
    assert rec.diff() == {"missing": [], "changed": [], "extra": []}
    # the switch changed behind our back: one body differs, one stray flow of ours
    changed = next(f for f in port_flows(2, 2) if f.table == 60)
    sw.table[changed.key] = rec.encoder.body(Flow(60, 100, changed.match, (Output(99),), changed.cookie))
    stray = Flow(60, 5, make_match(reg7=77), (Output(1),), cookie(Owner.PORT, 77))
    sw.table[stray.key] = rec.encoder.body(stray)
    rec.installed_known = False
    assert rec.resync() == 2
    assert sorted(m[0] for m in sw.last_mods()) == [wire.OFPFC_ADD, wire.OFPFC_DELETE_STRICT]
    assert sw.table[changed.key] == rec.encoder.body(changed) and stray.key not in sw.table
    assert rec.installed[changed.key] is rec.desired_flow(changed.key)
    assert rec.resync() == 0


def test_diff_reports_missing_changed_and_extra_against_what_was_read(rig):
    rec, sw = rig
    rec.set_owner(cookie(Owner.PORT, 1), port_flows(1, 1))
    rec.resync()
    a, b = sorted(port_flows(1, 1), key=lambda f: f.table)
    del sw.table[a.key]
    sw.table[b.key] = rec.encoder.body(Flow(b.table, b.priority, b.match, (Output(5),), b.cookie))
    extra = Flow(60, 7, make_match(reg7=9), (), cookie(Owner.PORT, 9))
    sw.table[extra.key] = rec.encoder.body(extra)
    rec.installed = rec.read_installed()
    d = rec.diff()
    assert d["missing"] == [a] and d["changed"] == [b] and d["extra"] == [(extra.key, rec.encoder.body(extra))]


def test_an_identical_recompile_keeps_the_flow_objects_already_held(rig):
    """The engine recompiles an owner into new, equal Flow objects: nothing is sent and the
    reconciler keeps the objects it holds (one copy of each flow, named by `installed`)."""
    rec, sw = rig
    owner = cookie(Owner.PORT, 1)
    rec.set_owner(owner, port_flows(1, 1))
    rec.resync()
    held = {f.key: f for f in rec.desired_flows(owner)}
    again = port_flows(1, 1) | {Flow(70, 1, make_match(reg7=1), (Output(2),), owner)}
    rec.set_owner(owner, again)
    assert rec.flush() == 1
    for f in rec.desired_flows(owner):
        if f.key in held:
            assert f is held[f.key] and rec.desired_flow(f.key) is f and rec.installed[f.key] is f
    assert len(rec.desired_flows(owner)) == 3


def test_conflicting_owners_whose_flows_carry_other_cookies(rig, caplog):
    """Ownership does not assume a flow's cookie names its owner (the compiler checks that, the
    reconciler does not rely on it): the lowest owner wins a contested key, the next takes over
    when it leaves, and the key is deleted when the last one does."""
    rec, sw = rig
    f1 = Flow(40, 5, make_match(metadata=1), (Output(1),), cookie(Owner.PORT, 7))
    f2 = Flow(40, 5, make_match(metadata=1), (Output(2),), cookie(Owner.PORT, 8))
    with caplog.at_level(logging.ERROR):
        rec.set_owner(20, [f1])
        rec.set_owner(10, [f2])
    assert "compile bug" in caplog.text
    rec.resync()
    assert sw.table[f1.key] == rec.encoder.body(f2)   # owner 10 wins
    assert rec.desired_flows(20) == [f1] and rec.desired_flows(10) == [f2]
    rec.set_owner(10, [])
    assert rec.flush() == 1 and sw.table[f1.key] == rec.encoder.body(f1)
    rec.set_owner(30, [Flow(41, 5, make_match(metadata=2), (), cookie(Owner.PORT, 9))])
    rec.set_owner(20, [])
    assert rec.flush() == 2 and f1.key not in sw.table and len(sw.table) == 1
    assert rec.owners() == {30} and rec.desired_count() == 1
    assert rec.resync() == 0


def held_bytes(rec: Reconciler) -> dict[tuple, int]:
    """key → place in rec._enc_buf of the flow-mod bytes the reconciler holds for the next flush."""
    return {key: at for key, at in rec._dirty.items() if at}


def _sent_adds(sw: FakeSwitch, since: int) -> dict[tuple, bytes]:
    """key → the flow-mod (inside its bundle-add) of every ADD written since sw.sent[since]."""
    out = {}
    for mtype, _xid, msg in wire.iter_messages(b"".join(sw.sent[since:])):
        if mtype == wire.OFPT_EXPERIMENTER and struct.unpack_from("!I", msg, 12)[0] == wire.ONF_ET_BUNDLE_ADD_MESSAGE:
            inner = wire.unwrap_bundle_add(msg)
            cmd, key, _body = wire.parse_flow_mod(inner)
            if cmd == wire.OFPFC_ADD:
                out[key] = inner
    return out


def test_flows_encoded_by_set_owner_on_a_known_switch_are_sent_as_encoded_once(rig, monkeypatch):
    """On a switch whose state is known, set_owner's encoding is what the flush sends (not
    encoded again), byte for byte a fresh encoder's flow-mod, also for a flow changed twice before
    the flush and for a key contested by two owners (the winner's flow is sent)."""
    from controller import reconciler as reconciler_mod
    monkeypatch.setattr(reconciler_mod, "SEND_CHUNK", 3)  # several writes
    rec, sw = rig
    assert rec.resync() == 0 and rec.installed_known
    for k in range(1, 5):
        rec.set_owner(cookie(Owner.PORT, k), port_flows(k, k))
    rec.set_owner(cookie(Owner.PORT, 2), port_flows(2, 9))       # changed before the flush
    a = Flow(40, 5, make_match(metadata=1), (Output(1),), cookie(Owner.PORT, 7))
    b = Flow(40, 5, make_match(metadata=1), (Output(2),), cookie(Owner.PORT, 6))
    rec.set_owner(a.cookie, [a])
    rec.set_owner(b.cookie, [b])                                   # wins: the lower owner
    assert len(held_bytes(rec)) == 9  # in_port=2 went before it was sent; the contested key once
    calls = []
    real = rec.encoder.encoded
    monkeypatch.setattr(rec.encoder, "encoded", lambda f, body: calls.append(f) or real(f, body))
    since = len(sw.sent)
    assert rec.flush() == 9
    assert calls == [] and not held_bytes(rec) and not rec._enc_buf
    sent = _sent_adds(sw, since)
    ref = wire.Encoder()
    assert len(sent) == 9
    for key, msg in sent.items():
        f = rec.desired_flow(key)
        assert f is not None and msg[8:] == ref.encoded(f, ref.body(f)), f
    assert sent[a.key][8:] == ref.encoded(b, ref.body(b))
    assert rec.resync() == 0


def test_flows_set_while_the_switch_state_is_unknown_are_encoded_when_sent(rig, monkeypatch):
    rec, sw = rig
    for k in range(1, 3):
        rec.set_owner(cookie(Owner.PORT, k), port_flows(k, k))
    assert not held_bytes(rec)
    since = len(sw.sent)
    assert rec.resync() == 4
    ref = wire.Encoder()
    sent = _sent_adds(sw, since)
    assert {k: m[8:] for k, m in sent.items()} == \
        {f.key: ref.encoded(f, ref.body(f)) for o in rec.owners() for f in rec.desired_flows(o)}
