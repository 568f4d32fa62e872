"""Flow values are range-checked when built (flows.flow.FlowError), not deep in the encoder."""
from __future__ import annotations

import pytest

from flows.fields import FIELDS, ipv4
from flows.flow import (CT, NAT, Conjunction, Controller, Flow, FlowError, GotoTable, Learn, LearnSpec,
                        Meter, Move, Output, PushVlan, Resubmit, SetField, WriteMetadata, flow, make_match)
from flows.tables import T

U32 = 0xFFFF_FFFF
U64 = (1 << 64) - 1


def test_flowerror_is_a_valueerror():
    assert issubclass(FlowError, ValueError)


# ------------------------------------------------------------------------------- match

@pytest.mark.parametrize("fields, needle", [
    (dict(reg7=1 << 40), "reg7"),
    (dict(reg7=U32 + 1), "reg7"),
    (dict(reg0=-1), "reg0"),
    (dict(metadata=1 << 64), "metadata"),
    (dict(in_port=1 << 32), "in_port"),
    (dict(vlan_vid=0x2000), "vlan_vid"),  # 13 bits incl. OFPVID_PRESENT
    (dict(eth_type=0x10000), "eth_type"),
    (dict(ip_proto=256), "ip_proto"),
    (dict(tcp_dst=65536), "tcp_dst"),
    (dict(udp_src=-5), "udp_src"),
    (dict(ct_mark=1 << 32), "ct_mark"),
    (dict(ct_zone=1 << 16), "ct_zone"),
    (dict(ip_dscp=64), "ip_dscp"),
    (dict(vlan_pcp=8), "vlan_pcp"),
    (dict(eth_dst=1 << 48), "eth_dst"),
    (dict(ipv4_dst=1 << 32), "ipv4_dst"),
    (dict(ipv4_dst="10.0.0.1"), "ipv4_dst"),  # addresses are ints inside a Flow
    (dict(reg6=1.0), "reg6"),
    (dict(reg6=None), "reg6"),
    (dict(nonsense=1), "nonsense"),
    (dict(nonsense=(1, 1)), "nonsense"),
    (dict(reg6=(1, 1 << 32)), "reg6"),        # mask wider than the field
    (dict(reg6=(1, -1)), "reg6"),             # negative mask
    (dict(reg6=(1 << 33, 0xFF)), "reg6"),     # value wider than the field, even if masked
    (dict(reg6=(1, 2, 3)), "reg6"),           # not a (value, mask) pair
    (dict(ipv4_src=(ipv4("10.0.0.0"), "255.255.255.0")), "ipv4_src"),
])
def test_bad_match_values_raise(fields, needle):
    with pytest.raises(FlowError, match=needle):
        make_match(**fields)
    with pytest.raises(FlowError, match=needle):
        flow(T.OUTPUT, 1, 0, match=fields)


def test_error_message_names_field_and_value():
    with pytest.raises(FlowError) as exc:
        make_match(eth_type=0x800, reg7=1 << 40)
    assert "reg7" in str(exc.value) and str(1 << 40) in str(exc.value)


@pytest.mark.parametrize("fields", [
    dict(reg7=U32), dict(reg7=0), dict(reg15=U32), dict(metadata=U64), dict(in_port=U32),
    dict(vlan_vid=0x1FFF), dict(vlan_vid=(0x1000, 0x1000)), dict(eth_type=0xFFFF), dict(ip_proto=255),
    dict(tcp_dst=65535), dict(udp_dst=(0x50, 0xFFF0)), dict(ct_mark=U32), dict(ct_zone=0xFFFF),
    dict(ct_state=(0x21, 0x21)), dict(ct_label=(1 << 128) - 1), dict(ipv6_dst=(1 << 128) - 1),
    dict(ipv4_dst=(ipv4("10.0.0.0"), 0xFFFFFF00)), dict(eth_dst=(1 << 40, 1 << 40)),
    dict(tunnel_id=U64), dict(reg6=(0xFF, 0x0F)),  # value bits outside the mask: canonicalised away
    dict(ip_proto=T.EGRESS_SG),  # an IntEnum is an int
])
def test_edge_values_pass(fields):
    m = make_match(**fields)
    f = Flow(T.OUTPUT, 1, m)
    assert f.match == m


def test_checked_match_is_a_plain_equal_tuple():
    a = make_match(reg6=3, eth_type=0x800)
    b = (("eth_type", 0x800, None), ("reg6", 3, None))
    assert a == b and hash(a) == hash(b) and repr(a) == repr(b) and isinstance(a, tuple)
    assert Flow(0, 1, a) == Flow(0, 1, b) and hash(Flow(0, 1, a)) == hash(Flow(0, 1, b))


@pytest.mark.parametrize("match, needle", [
    ((("reg7", 1 << 40, None),), "reg7"),
    ((("reg7", -1, None),), "reg7"),
    ((("bogus", 1, None),), "bogus"),
    ((("reg6", 1, None), ("eth_type", 0x800, None)), "sorted"),      # not canonical order
    ((("reg6", 1, None), ("reg6", 2, None)), "sorted"),              # duplicate field
    ((("reg6", 0xFF, 0x0F),), "canonical"),                          # value bits outside the mask
    ((("reg6", 0, 0),), "canonical"),                                # zero mask
    ((("reg6", 1, 1 << 32),), "reg6"),                               # mask too wide
    ((("reg6", 1),), "not \\(field, value, mask\\)"),
    ([("reg6", 1, None)], "tuple"),
])
def test_hand_built_matches_are_checked_by_flow(match, needle):
    with pytest.raises(FlowError, match=needle):
        Flow(T.SERVICE, 1, match)


# --------------------------------------------------------------------------------- Flow

@pytest.mark.parametrize("kw, needle", [
    (dict(table=255), "table"),
    (dict(table=-1), "table"),
    (dict(table="0"), "table"),
    (dict(priority=70000), "priority"),
    (dict(priority=-1), "priority"),
    (dict(priority=1.5), "priority"),
    (dict(cookie=1 << 64), "cookie"),
    (dict(cookie=-1), "cookie"),
    (dict(idle_timeout=65536), "idle_timeout"),
    (dict(hard_timeout=-1), "hard_timeout"),
])
def test_bad_flow_header_raises(kw, needle):
    args = dict(table=0, priority=1, match=(), actions=(), cookie=0) | kw
    with pytest.raises(FlowError, match=needle):
        Flow(**args)


def test_flow_edge_values_pass():
    f = Flow(254, 0xFFFF, make_match(reg7=U32), (Output(1),), U64, 0xFFFF, 0xFFFF)
    assert f.key == (254, 0xFFFF, (("reg7", U32, None),))
    Flow(T.DROP, 0, ())


def test_flow_action_list_checks():
    with pytest.raises(FlowError, match="tuple"):
        Flow(0, 1, (), [Output(1)])
    with pytest.raises(FlowError, match="more than one GotoTable"):
        Flow(0, 1, (), (GotoTable(10), GotoTable(20)))
    with pytest.raises(FlowError, match="more than one WriteMetadata"):
        Flow(0, 1, (), (WriteMetadata(1), WriteMetadata(2)))
    with pytest.raises(FlowError, match="ct_mark"):
        Flow(0, 1, (), (SetField("ct_mark", 1),))  # OVS: ct fields only inside ct(exec(...))
    Flow(0, 1, (), (SetField("reg6", 1), SetField("reg7", 2), WriteMetadata(1), Meter(1), GotoTable(10)))


# ------------------------------------------------------------------------------ actions

@pytest.mark.parametrize("make, needle", [
    (lambda: SetField("reg7", 1 << 40), "reg7"),
    (lambda: SetField("reg7", -1), "reg7"),
    (lambda: SetField("nonsense", 1), "nonsense"),
    (lambda: SetField("vlan_vid", 0x2000), "vlan_vid"),
    (lambda: SetField("ipv4_dst", "10.0.0.1"), "ipv4_dst"),
    (lambda: Output(1 << 32), "port"),
    (lambda: Output(-1), "port"),
    (lambda: Output(None), "port"),
    (lambda: GotoTable(255), "goto_table"),
    (lambda: GotoTable(-1), "goto_table"),
    (lambda: Resubmit(256), "resubmit"),
    (lambda: Resubmit(10, in_port=1 << 16), "in_port"),
    (lambda: CT(zone=1 << 16), "zone"),
    (lambda: CT(zone=-1), "zone"),
    (lambda: CT(table=255), "ct table"),
    (lambda: CT(zone_reg="metadata"), "zone_reg"),
    (lambda: CT(zone=3, zone_reg="reg6"), "exclusive"),
    (lambda: CT(actions=(SetField("ct_mark", 1),)), "commit"),
    (lambda: CT(commit=True, actions=(SetField("reg6", 1),)), "ct_mark"),
    (lambda: CT(commit=True, actions=(SetField("ct_mark", 1 << 32),)), "ct_mark"),
    (lambda: NAT("src", 1 << 32), "ip_min"),
    (lambda: NAT("src", ipv4("10.0.0.9"), ipv4("10.0.0.1")), "empty"),
    (lambda: NAT("sideways"), "kind"),
    (lambda: NAT("", 5), "no address"),
    (lambda: Conjunction(1 << 32, 1, 2), "conj_id"),
    (lambda: Conjunction(1, 1, 1), "n_clauses"),
    (lambda: Conjunction(1, 1, 65), "n_clauses"),
    (lambda: Conjunction(1, 3, 2), "clause"),
    (lambda: Conjunction(1, 0, 2), "clause"),
    (lambda: Controller(max_len=1 << 16), "max_len"),
    (lambda: Controller(meter_id=1 << 32), "meter_id"),
    (lambda: Controller(userdata="x"), "userdata"),
    (lambda: Meter(0), "meter_id"),
    (lambda: Meter(1 << 32), "meter_id"),
    (lambda: WriteMetadata(1 << 64), "value"),
    (lambda: WriteMetadata(1, -1), "mask"),
    (lambda: PushVlan(0x0800), "ethertype"),
    (lambda: Move("reg6", "reg7", 33), "reg"),
    (lambda: Move("reg6", "reg7", 16, 0, 17), "reg7"),
    (lambda: Move("reg6", "nonsense", 8), "nonsense"),
    (lambda: Move("reg6", "reg7", 0), "reg6"),
    (lambda: LearnSpec("match", dst="reg7", value=1 << 32, n_bits=32), "value"),
    (lambda: LearnSpec("match", dst="reg7", src="reg6", n_bits=0), "n_bits"),
    (lambda: LearnSpec("load", dst="reg7", src="eth_src", n_bits=48), "reg7"),
    (lambda: LearnSpec("load", dst="nonsense", value=1, n_bits=8), "nonsense"),
    (lambda: LearnSpec("copy", dst="reg7", value=1, n_bits=8), "kind"),
    (lambda: LearnSpec("match", dst="reg7", src="reg6", value=1, n_bits=8), "exclusive"),
    (lambda: Learn(table=255, priority=1, specs=()), "table"),
    (lambda: Learn(table=42, priority=70000, specs=()), "priority"),
    (lambda: Learn(table=42, priority=1, specs=(), idle_timeout=1 << 16), "idle_timeout"),
    (lambda: Learn(table=42, priority=1, specs=[]), "specs"),
])
def test_bad_actions_raise(make, needle):
    with pytest.raises(FlowError, match=needle):
        make()


def test_edge_actions_pass():
    SetField("reg7", U32), SetField("metadata", U64), SetField("vlan_vid", 0x1FFF)
    Output(U32), Output(0xFFFFFFFD), GotoTable(254), GotoTable(T.OUTPUT), Resubmit(255), Resubmit(0, 0xFFFF)
    CT(zone=0xFFFF, table=254), CT(zone_reg="reg15"), CT(commit=True, nat=NAT("dst", 1, U32),
                                                         actions=(SetField("ct_mark", U32), SetField("ct_label", 1)))
    Conjunction(U32, 64, 64), Conjunction(0, 1, 2), Controller(max_len=0xFFFF, meter_id=U32, userdata=b"\x01")
    Meter(U32), WriteMetadata(U64, U64), PushVlan(0x88A8)
    Move("eth_src", "eth_dst", 48), Move("reg6", "reg7", 16, 16, 16)
    Learn(table=254, priority=0xFFFF, cookie=U64, idle_timeout=0xFFFF, hard_timeout=0xFFFF, specs=(
        LearnSpec("match", dst="metadata", value=U64, n_bits=64),
        LearnSpec("load", dst="reg7", value=U32, n_bits=32),
        LearnSpec("output", src="in_port", n_bits=16)))


# -------------------------------------------------------------------------- the table

def test_widths_fit_the_wire_encoder():
    """fields.FIELDS is the one width table; the encoder's OXM lengths come from os-ken and
    must hold every value the check lets through."""
    wire = pytest.importorskip("controller.wire")
    for name, f in FIELDS.items():
        _num, size = wire.OXM[name]
        assert f.bits <= 8 * size, name


def test_checked_values_encode():
    """Values at the edge of every check go through the real encoder."""
    wire = pytest.importorskip("controller.wire")
    enc = wire.Encoder()
    f = Flow(254, 0xFFFF, make_match(reg7=U32, metadata=U64, vlan_vid=0x1FFF, tcp_dst=0xFFFF, eth_type=0x800,
                                     ip_proto=6, ct_mark=U32, ct_zone=0xFFFF),
             (SetField("reg6", U32), Output(U32), WriteMetadata(U64), GotoTable(254)), U64, 0xFFFF, 0xFFFF)
    cmd, key, _body = wire.parse_flow_mod(enc.flow_mod(f, 1))
    assert key == f.key
