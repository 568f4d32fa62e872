"""What the reconciler holds per flow (issue 14: ≈ 170,000 flows at 10,000 ports): one key object
per flow, shared by every per-key dict, and per key nothing but `_want`, `installed` and, until a
flush, `_dirty` (which also says where set_owner's encoded bytes are). These tests fail if a
per-key structure comes back (a set of dirty keys beside the bytes' places, instruction bytes per
key) or if a dict starts keeping a key object of its own."""
from __future__ import annotations

from controller import wire
from controller.reconciler import Reconciler
from flows.flow import Flow, Output, make_match
from flows.tables import Owner, cookie
from tests.unit.fakeswitch import FakeSwitch
from tests.unit.test_reconcile_prefetch import OWNERS, installed_switch, port_flows



def per_key_containers(rec: Reconciler, n: int) -> set[str]:
    """The reconciler's dicts and sets with at least `n` entries (n = the flows wanted)."""
    return {name for name, v in vars(rec).items() if isinstance(v, (dict, set)) and len(v) >= n}


def held(rec: Reconciler, key: tuple) -> bytes | None:
    """The flow-mod bytes the reconciler holds for `key` until the next flush (None: none)."""
    at = rec._dirty.get(key)
    return bytes(rec._enc_buf[at >> 16:(at >> 16) + (at & 0xFFFF)]) if at else None


def same_key_objects(a: dict, b: dict) -> bool:
    ids = {id(k) for k in b}
    return len(a) == len(b) and all(id(k) in ids for k in a)


def counting_encoder(rec: Reconciler, monkeypatch) -> list[Flow]:
    calls: list[Flow] = []
    real = rec.encoder.encoded
    monkeypatch.setattr(rec.encoder, "encoded", lambda f, body: calls.append(f) or real(f, body))
    return calls


def test_a_compile_onto_a_known_switch_keeps_one_dict_per_key_sharing_the_key_objects(monkeypatch):
    rec = Reconciler("dp", timeout=2)
    sw = FakeSwitch.for_reconciler(rec)
    rec.attach(sw.send)
    assert rec.resync() == 0 and rec.installed_known
    for k in OWNERS:
        rec.set_owner(cookie(Owner.PORT, k), port_flows(k, k))
    n = rec.desired_count()
    assert n == 2 * len(OWNERS)
    # dirty keys and the places of their bytes are one dict, keyed by the objects `_want` holds
    assert per_key_containers(rec, n) == {"_want", "_dirty"}
    assert same_key_objects(rec._dirty, rec._want)
    ref = wire.Encoder()
    for key, f in rec._want.items():
        assert held(rec, key) == ref.encoded(f, ref.body(f))
    calls = counting_encoder(rec, monkeypatch)
    assert rec.flush() == n
    assert calls == []  # sent as set_owner encoded them
    assert per_key_containers(rec, n) == {"_want", "installed"}
    assert same_key_objects(rec.installed, rec._want)
    assert all(rec.installed[k] is f for k, f in rec._want.items())
    assert not rec._dirty and not rec._enc_buf
    # a changed owner (a key gone, a new one, a body changed): still one key object per key
    rec.set_owner(cookie(Owner.PORT, 3), port_flows(3, 30))
    assert rec.flush() == 3
    assert same_key_objects(rec.installed, rec._want)
    assert rec.diff() == {"missing": [], "changed": [], "extra": []}


def test_a_restart_resync_keeps_the_places_of_the_flows_it_did_not_find(monkeypatch):
    """A prefetched resync finds most flows by their bytes; the wanted flows it did not find are
    sent with the bytes set_owner encoded (not encoded again), and `installed` uses `_want`'s keys."""
    sw = installed_switch()
    changed = next(f for f in port_flows(2, 2) if f.table == 60)
    sw.table[changed.key] = wire.Encoder().body(Flow(60, 100, changed.match, (Output(99),), changed.cookie))
    missing = next(f for f in port_flows(3, 3) if f.table == 0)
    del sw.table[missing.key]
    rec = Reconciler("dp", timeout=2)
    sw.on_error, sw.on_barrier, sw.on_flow_stats = rec.on_error, rec.on_barrier, rec.on_flow_stats
    rec.attach(sw.send)
    assert rec.prefetch()
    for k in OWNERS:
        rec.set_owner(cookie(Owner.PORT, k), port_flows(k, k))
    calls = counting_encoder(rec, monkeypatch)
    assert rec.resync() == 2
    assert calls == []
    assert rec.stats.last_resync_by_bytes == 2 * len(OWNERS) - 2
    assert sw.table[changed.key] == rec.encoder.body(changed) and missing.key in sw.table
    assert same_key_objects(rec.installed, rec._want)
    assert all(rec.installed[k] is f for k, f in rec._want.items())
    assert per_key_containers(rec, rec.desired_count()) == {"_want", "installed"}
    assert rec.resync() == 0


def test_contested_key_keeps_the_winners_bytes_until_the_winner_changes(monkeypatch, caplog):
    """A losing claim, and a loser leaving, keep the winner's held bytes; the winner leaving drops
    them (they are not the new winner's flow), and the new winner is encoded when sent."""
    rec = Reconciler("dp", timeout=2)
    sw = FakeSwitch.for_reconciler(rec)
    rec.attach(sw.send)
    assert rec.resync() == 0
    flows = {o: Flow(40, 5, make_match(metadata=1), (Output(o),), cookie(Owner.PORT, o)) for o in (6, 7, 8)}
    key = flows[6].key
    ref = wire.Encoder()
    rec.set_owner(flows[6].cookie, [flows[6]])
    rec.set_owner(flows[8].cookie, [flows[8]])     # loses: 6 is lower
    assert held(rec, key) == ref.encoded(flows[6], ref.body(flows[6]))
    rec.set_owner(flows[7].cookie, [flows[7]])     # loses too
    rec.set_owner(flows[8].cookie, [])             # a loser leaves: the winner's bytes stay
    assert held(rec, key) == ref.encoded(flows[6], ref.body(flows[6]))
    calls = counting_encoder(rec, monkeypatch)
    assert rec.flush() == 1 and calls == []
    assert sw.table[key] == rec.encoder.body(flows[6])
    rec.set_owner(flows[6].cookie, [flows[6]])     # unchanged: nothing dirty
    assert not rec._dirty
    rec.set_owner(flows[6].cookie, [])             # the winner leaves: 7 wins, no bytes held for it
    assert rec.desired_flow(key) is flows[7] and key in rec._dirty and held(rec, key) is None
    assert rec.flush() == 1 and calls == [flows[7]]
    assert sw.table[key] == rec.encoder.body(flows[7])
    assert rec.resync() == 0
