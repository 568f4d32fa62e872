"""Our flow-mod bytes parse with os-ken's own parser into the flow os-ken would build."""
from __future__ import annotations

import struct
import pytest
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from controller import wire
from flows.fields import ipv4, mac
from flows.flow import (CT, NAT, Conjunction, Controller, CTClear, DecTtl, Flow, GotoTable, Learn,
                        LearnSpec, Meter, Move, Output, PopVlan, PushVlan, Resubmit, SetField,
                        WriteMetadata, make_match)


class _DP:
    ofproto = ofp
    ofproto_parser = parser


def _oskens(flow: Flow, xid: int):
    """Build the same flow-mod with os-ken's classes (the reference)."""
    match = parser.OFPMatch(**{n: (wire.user_value(n, v) if m is None else
                                   (wire.user_value(n, v), wire.user_value(n, m)))
                               for n, v, m in flow.match})
    inst = []
    applied = [wire.to_oskenaction(a) for a in flow.actions
               if not isinstance(a, (Meter, WriteMetadata, GotoTable))]
    for a in flow.actions:
        if isinstance(a, Meter):
            inst.append(parser.OFPInstructionMeter(a.meter_id))
    if applied:
        inst.append(parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, applied))
    for a in flow.actions:
        if isinstance(a, WriteMetadata):
            inst.append(parser.OFPInstructionWriteMetadata(a.value, a.mask))
    for a in flow.actions:
        if isinstance(a, GotoTable):
            inst.append(parser.OFPInstructionGotoTable(a.table))
    msg = parser.OFPFlowMod(_DP(), cookie=flow.cookie, table_id=flow.table, command=ofp.OFPFC_ADD,
                            idle_timeout=flow.idle_timeout, hard_timeout=flow.hard_timeout,
                            priority=flow.priority, buffer_id=ofp.OFP_NO_BUFFER, out_port=ofp.OFPP_ANY,
                            out_group=ofp.OFPG_ANY, match=match, instructions=inst)
    msg.set_xid(xid)
    msg.serialize()
    return msg


def _parse(buf: bytes):
    version, mtype, length, xid = parser.ofproto_parser.header(buf)
    return parser.ofproto_parser.msg(_DP(), version, mtype, length, xid, bytearray(buf))


LEARN = Learn(table=42, priority=100, idle_timeout=300, cookie=8 << 56, specs=(
    LearnSpec("match", dst="metadata", src="metadata", n_bits=64),
    LearnSpec("match", dst="eth_dst", src="eth_src", n_bits=48),
    LearnSpec("load", dst="reg7", value=3, n_bits=32),
    LearnSpec("output", src="in_port", n_bits=16)))

CASES = {
    "output": (Output(3),),
    "output_controller": (Output(0xFFFFFFFD),),
    "set_field_reg": (SetField("reg6", 5),),
    "set_field_mac": (SetField("eth_dst", mac("fa:16:3e:00:00:02")), Output(1)),
    "set_field_tunnel": (SetField("tunnel_id", 100), SetField("tun_ipv4_dst", ipv4("192.168.1.2")), Output(6)),
    "move": (Move("eth_src", "eth_dst", 48), Move("reg6", "reg7", 16, 0, 16)),
    "vlan": (PushVlan(), SetField("vlan_vid", 0x1000 | 100), Output(4), PopVlan(), Output(5)),
    "dec_ttl": (DecTtl(),),
    "resubmit": (Resubmit(41), Output(2)),
    "controller_userdata": (Controller(userdata=b"\x01\x02"),),
    "controller_plain": (Controller(),),
    "ct_zone_reg": (CT(zone_reg="reg13", table=21),),
    "ct_commit_nat": (CT(commit=True, zone=5, nat=NAT("src", ipv4("1.1.1.1"), ipv4("1.1.1.9")),
                         actions=(SetField("ct_mark", 1),)),),
    "ct_nat_reverse": (CT(zone=5, table=21, nat=NAT()),),
    "ct_clear": (CTClear(),),
    "conjunction": (Conjunction(7, 1, 2),),
    "learn": (LEARN, GotoTable(60)),
    "learn_constants": (Learn(table=42, priority=100, idle_timeout=300, cookie=8 << 56, specs=(
        LearnSpec("match", dst="metadata", value=1, n_bits=64),
        LearnSpec("match", dst="eth_dst", src="eth_src", n_bits=48),
        LearnSpec("load", dst="reg7", value=0xFFFFFFFE, n_bits=32))),),
    "meter": (Meter(2), Output(7)),
    "metadata_goto": (SetField("reg6", 1), WriteMetadata(7), GotoTable(10)),
    "metadata_masked": (WriteMetadata(7, 0xFFFF), GotoTable(10)),
    "drop": (),
}

MATCHES = [
    make_match(in_port=1),
    make_match(metadata=7, eth_dst=(mac("01:00:00:00:00:00"), mac("01:00:00:00:00:00"))),
    make_match(eth_type=0x800, ip_proto=6, tcp_dst=(0x50, 0xFFF0), reg6=(1, 0xFF)),
    make_match(eth_type=0x806, arp_op=1, arp_tpa=ipv4("10.0.0.1")),
    make_match(eth_type=0x800, ct_state=(0x21, 0x21), ct_zone=3, conj_id=9),
    make_match(tunnel_id=100, tun_ipv4_dst=ipv4("10.0.0.9"), vlan_vid=(0x1000, 0x1000)),
]


@pytest.mark.parametrize("name", sorted(CASES))
def test_instructions_round_trip_through_oskens_parser(name):
    f = Flow(20, 100, make_match(reg7=3), CASES[name], cookie=(3 << 56) | 5, idle_timeout=7, hard_timeout=9)
    ours = wire.Encoder().flow_mod(f, 1234)
    ref = _oskens(f, 1234)
    parsed = _parse(ours)
    assert isinstance(parsed, parser.OFPFlowMod)
    assert parsed.to_jsondict() == _parse(bytes(ref.buf)).to_jsondict()
    assert parsed.cookie == f.cookie and parsed.priority == 100 and parsed.table_id == 20


@pytest.mark.parametrize("match", MATCHES, ids=range(len(MATCHES)))
def test_match_round_trip(match):
    f = Flow(0, 10, match, (Output(1),), cookie=1 << 56)
    ours = wire.Encoder().flow_mod(f, 7)
    parsed = _parse(ours)
    ref = _parse(bytes(_oskens(f, 7).buf))
    assert dict(parsed.match.items()) == dict(ref.match.items())
    cmd, key, body = wire.parse_flow_mod(ours)
    assert cmd == wire.OFPFC_ADD and key == f.key
    assert body == wire.Encoder().body(f)


def test_prerequisites_come_first_in_the_oxm_list():
    f = Flow(0, 10, make_match(eth_type=0x806, arp_op=1), (), cookie=1)
    ours = wire.Encoder().flow_mod(f, 1)
    fields = [k for k, _ in _parse(ours).match.items()]
    assert fields == ["eth_type", "arp_op"]


def test_delete_strict_and_bundle_wrappers_parse():
    enc = wire.Encoder()
    f = Flow(40, 5, make_match(metadata=3), (Output(1),), cookie=2 << 56)
    inner = enc.delete_strict(f.key, 99)
    msg = _parse(inner)
    assert msg.command == ofp.OFPFC_DELETE_STRICT and msg.priority == 5 and msg.table_id == 40
    wrapped = wire.bundle_add(17, inner, 99)
    ref_inner = parser.OFPFlowMod(_DP(), table_id=40, command=ofp.OFPFC_DELETE_STRICT, priority=5,
                                  buffer_id=ofp.OFP_NO_BUFFER, out_port=ofp.OFPP_ANY,
                                  out_group=ofp.OFPG_ANY, match=parser.OFPMatch(metadata=3))
    ref = parser.ONFBundleAddMsg(_DP(), 17, wire.BUNDLE_ATOMIC | wire.BUNDLE_ORDERED, ref_inner, [])
    ref.set_xid(99)
    ref.serialize()
    assert wrapped == bytes(ref.buf)  # os-ken only sends bundle-adds, so compare bytes
    ctrl = _parse(wire.bundle_ctrl(17, wire.BUNDLE_COMMIT_REQUEST, 100))
    assert isinstance(ctrl, parser.ONFBundleCtrlMsg) and ctrl.type == ofp.ONF_BCT_COMMIT_REQUEST
    assert [c for c, _ in wire.flow_mods_in(wrapped + wire.barrier(5))] == [wire.OFPFC_DELETE_STRICT]


def test_flow_stats_decoder_reads_an_oskens_encoded_entry():
    f = Flow(21, 51, make_match(eth_type=0x800, ipv4_src=(ipv4("10.0.0.0"), 0xFFFFFF00)),
             (CTClear(), Output(2), GotoTable(40)), cookie=(5 << 56) | 1, idle_timeout=3)
    enc = wire.Encoder()
    stats = parser.OFPFlowStats(table_id=f.table, duration_sec=12, duration_nsec=0, priority=f.priority,
                                idle_timeout=3, hard_timeout=0, flags=0, cookie=f.cookie, packet_count=4,
                                byte_count=400, match=_oskens(f, 1).match,
                                instructions=_oskens(f, 1).instructions)
    # os-ken has no serialiser for flow stats: build the entry from our pieces + its match/instructions
    import struct
    mbuf = bytearray()
    stats.match.serialize(mbuf, 0)
    ibuf = bytearray()
    for i in stats.instructions:
        i.serialize(ibuf, len(ibuf))
    length = 48 + len(mbuf) + len(ibuf)
    entry = struct.pack("!HBxIIHHHH4xQQQ", length, 21, 12, 0, 51, 3, 0, 0, f.cookie, 4, 400) + mbuf + ibuf
    (got,) = list(wire.parse_flow_stats(entry))
    assert got.key == f.key
    assert got.body == enc.body(f)
    assert got.duration_sec == 12 and got.packet_count == 4


def test_parse_error():
    import struct
    buf = struct.pack("!BBHIHH", 4, 1, 12 + 4, 77, 3, 2) + b"abcd"
    err = wire.parse_error(buf)
    assert (err.xid, err.type, err.code, err.data) == (77, 3, 2, b"abcd")
    assert "BAD_TABLE_ID" in err.describe()


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_action_and_message_is_8_byte_aligned(name):
    """OVS rejects instructions whose length is not a multiple of 8 (OFPBRC_BAD_LEN); os-ken's
    lenient parser does not, so check the lengths themselves (this caught learn's lost padding)."""
    f = Flow(20, 100, make_match(reg7=3), CASES[name], cookie=(3 << 56) | 5)
    msg = wire.Encoder().flow_mod(f, 1)
    assert len(msg) % 8 == 0 and struct.unpack_from("!H", msg, 2)[0] == len(msg)
    for action in CASES[name]:
        if not isinstance(action, (GotoTable, WriteMetadata, Meter)):
            assert len(wire._serialize_action(action)) % 8 == 0, action


def test_bundle_add_flow_is_bundle_add_of_the_flow_mod():
    """The reconciler's fused encoding equals the two-step one, byte for byte."""
    from flows.flow import Flow, GotoTable, SetField, make_match
    enc = wire.Encoder()
    for f in (Flow(40, 100, make_match(metadata=7, eth_dst=0xFA163E000001), (SetField("reg7", 3), GotoTable(60)),
                   0x0300000000000003),
              Flow(0, 0, (), (), 1 << 56, idle_timeout=5, hard_timeout=9)):
        body = enc.body(f)
        assert enc.bundle_add_flow(0x1234, f, body, 77) == wire.bundle_add(0x1234, enc.flow_mod_body(f, body, 77), 77)


# ------------------------------------------------------------ cached encoding (issue 14)

def _compiled_chassis() -> list[list[Flow]]:
    """Every flow the L2, routing, NAT, port-security and security-group compilers emit for
    two small topologies (a routed one on two chassis, one with the default security group),
    one list per chassis."""
    from flows import compiler
    from tests.unit import test_routing, test_security_groups_topo as sgt

    def ordered(flows) -> list[Flow]:
        return sorted(flows, key=lambda f: (f.table, -f.priority, f.match, f.cookie))

    r = test_routing.routed_topo()
    out = [ordered(compiler.all_flows(compiler.compile_chassis(test_routing.apps(), r.topo.view(), c)))
           for c in r.contexts()]
    t = sgt.SecTopo()
    net = t.network("n1")
    g = t.default_group()
    web = t.group("web")
    t.rule(web, "ingress", protocol="tcp", port_range_min=80, port_range_max=90, remote_ip_prefix="10.9.0.0/16")
    vms = [t.vm(net, i, (g, web) if i % 2 else (g,)) for i in (1, 2, 3)]
    out.append(ordered(compiler.all_flows(sgt.flows_of(t, {vm["id"]: i for i, vm in enumerate(vms, 1)}))))
    return out


def _reference_flow_mod(f: Flow, xid: int) -> bytes:
    """The flow-mod as the encoder built it before issue 14 (one `oxm_tlv` per item, sorted by
    OXM_RANK — the order checked against a real OVS), from scratch with struct."""
    ents = sorted((wire.OXM_RANK[n], wire.oxm_tlv(n, v, m)) for n, v, m in f.match)
    oxms = b"".join(b for _r, b in ents)
    mlen = 4 + len(oxms)
    match = struct.pack("!HH", 1, mlen) + oxms + bytes((-mlen) % 8)
    instr = wire.Encoder().instructions(f.actions)
    return struct.pack("!BBHIQQBBHHHIIIH2x", 4, 14, 48 + len(match) + len(instr), xid, f.cookie, 0, f.table, 0,
                       f.idle_timeout, f.hard_timeout, f.priority, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF,
                       0) + match + instr


def _assert_cached_path_identical(enc: wire.Encoder, f: Flow, xid: int, bundle_id: int) -> None:
    body = enc.body(f)
    cached = enc.encoded(f, body)
    reference = _reference_flow_mod(f, xid)
    assert wire.Encoder().flow_mod(f, xid) == reference
    assert wire.flow_mod_encoded(cached, xid) == reference
    assert wire.bundle_add_encoded(bundle_id, cached, xid) == wire.bundle_add(bundle_id, reference, xid) \
        == enc.bundle_add_flow(bundle_id, f, body, xid)
    from flows.qos import METER_TYPES
    assert enc.encoded_with_meters(f) == (cached, tuple(a for a in f.actions if type(a) in METER_TYPES))


def test_cached_encoding_is_byte_identical_for_every_compiled_flow():
    """The reconciler sends `bundle_add_encoded` of bytes encoded once per flow: for every flow
    the compilers make, those bytes equal the per-call encoding (and so os-ken's, above)."""
    flows = [f for chassis in _compiled_chassis() for f in chassis]
    assert len(flows) > 200 and {f.table for f in flows} > {0, 40}
    enc = wire.Encoder()
    for i, f in enumerate(flows):
        _assert_cached_path_identical(enc, f, 0x8000_0000 + i, 0x7FFF_0000 + i)


def test_cached_encoding_is_byte_identical_for_random_flows():
    import random

    from flows.fields import FIELDS, full_mask
    rnd = random.Random(14)
    names = sorted(FIELDS)
    acts = list(CASES.values())
    enc = wire.Encoder()
    for _ in range(500):
        fields: dict = {}
        for name in rnd.sample(names, rnd.randint(0, 6)):
            fm = full_mask(name)
            v = rnd.randint(0, fm)
            fields[name] = (v, rnd.randint(1, fm)) if rnd.random() < 0.3 else v
        f = Flow(rnd.randint(0, 254), rnd.randint(0, 0xFFFF), make_match(**fields), rnd.choice(acts),
                 cookie=rnd.randint(0, (1 << 64) - 1), idle_timeout=rnd.choice((0, 0, 300)),
                 hard_timeout=rnd.choice((0, 7)))
        _assert_cached_path_identical(enc, f, rnd.randint(0, 0xFFFF_FFFF), rnd.randint(0, 0x7FFF_FFFF))


def test_encoded_with_meters_names_the_meter_declaring_actions():
    """The reconciler's MeterTable takes a flow's meters from `encoded_with_meters` (one cache
    lookup per flow): the metered instruction and the metered punt, not a plain meter or punt."""
    from flows.qos import MeteredController, MeterUse
    use = MeterUse(7, rate=1000, burst=100)
    punt = MeteredController(userdata=b"\x01", meter_id=9, rate=50, burst=10)
    enc = wire.Encoder()
    for acts, metered in (((use, Output(1)), (use,)), ((punt,), (punt,)), ((use, punt), (use, punt)),
                          ((Meter(7), Output(1)), ()), ((Output(2),), ())):
        f = Flow(40, 5, make_match(metadata=1), acts, 1)
        assert enc.encoded_with_meters(f) == (enc.encoded(f, enc.body(f)), metered)
        assert enc.encoded_with_meters(f)[1] == metered  # and from the cache


def test_reconciler_sends_the_per_flow_encoding():
    """What a resync writes, flow-mod by flow-mod, equals a fresh encoder's bytes of the flow."""
    for flows in _compiled_chassis():
        _check_resync_bytes(flows)


def _check_resync_bytes(flows: list[Flow]) -> None:
    from controller.reconciler import Reconciler
    from tests.unit.fakeswitch import FakeSwitch
    rec = Reconciler("t")
    sw = FakeSwitch.for_reconciler(rec)
    by_owner: dict[int, list[Flow]] = {}
    for f in flows:
        by_owner.setdefault(f.cookie, []).append(f)
    for owner, fl in by_owner.items():
        rec.set_owner(owner, fl)
    rec.attach(sw.send)
    assert rec.resync() == len(flows)
    ref = wire.Encoder()
    seen = 0
    for mtype, xid, msg in wire.iter_messages(b"".join(sw.sent)):
        if mtype == wire.OFPT_EXPERIMENTER and struct.unpack_from("!I", msg, 12)[0] == wire.ONF_ET_BUNDLE_ADD_MESSAGE:
            _cmd, key, _body = wire.parse_flow_mod(wire.unwrap_bundle_add(msg))
            want = rec.desired_flow(key)
            assert want is not None and wire.unwrap_bundle_add(msg) == _reference_flow_mod(want, xid)
            seen += 1
    assert seen == len(flows) and sw.table == {f.key: ref.body(f) for f in flows}


def test_the_encoders_caches_are_bounded(monkeypatch):
    """Action lists carry ports' own values: a cache that only grew would keep every deleted
    port's entries forever. At the bound a cache starts again; the bytes do not change."""
    monkeypatch.setattr(wire, "ENCODER_CACHE_MAX", 10)
    enc = wire.Encoder()
    for i in range(100):
        f = Flow(40, 5, make_match(metadata=i), (SetField("reg7", i), Output(i + 1), GotoTable(60)), 1)
        assert enc.encoded_with_meters(f) == (wire.Encoder().encoded(f, wire.Encoder().body(f)), ())
        assert enc.instructions(f.actions) == wire.Encoder().instructions(f.actions)
        assert len(enc._instr) <= 10 and len(enc._action) <= 10
