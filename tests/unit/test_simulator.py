"""The offline simulator's own semantics (OpenFlow 1.3 + the Nicira extensions we use)."""
from __future__ import annotations

import pytest

from flows.fields import ipv4
from flows.flow import (CT, NAT, Conjunction, Controller, GotoTable, Learn, LearnSpec, Move, Output, PopVlan,
                        PushVlan, Resubmit, SetField, WriteMetadata, flow)
from flows.simulator import (OFPP_IN_PORT, AmbiguousMatch, Conntrack, CtState, DuplicateFlow, SimulationLimit,
                             Simulator, packet)

TCP = dict(eth_type=0x0800, ip_proto=6, ipv4_src="10.0.0.1", ipv4_dst="10.0.0.2", tcp_src=1234, tcp_dst=80)
REPLY = dict(eth_type=0x0800, ip_proto=6, ipv4_src="10.0.0.2", ipv4_dst="10.0.0.1", tcp_src=80, tcp_dst=1234)
TRK_NEW = CtState.TRK | CtState.NEW
TRK_EST = CtState.TRK | CtState.EST


def test_priority_and_miss():
    sim = Simulator([flow(0, 10, 1, [Output(5)], match=dict(eth_type=0x0800)),
                     flow(0, 20, 2, [Output(6)], match=dict(eth_type=0x0800, ip_proto=6))])
    assert sim.run(packet(**TCP), 1).ports() == [6]
    assert sim.run(packet(eth_type=0x0800, ip_proto=17), 1).ports() == [5]
    assert sim.run(packet(eth_type=0x0806), 1).ports() == []
    assert sim.run(packet(eth_type=0x0806), 1).trace[-1].flow is None


def test_absent_field_never_matches_but_registers_default_to_zero():
    sim = Simulator([flow(0, 10, 1, [Output(5)], match=dict(ipv4_src=ipv4("10.0.0.1"))),
                     flow(0, 5, 1, [Output(6)], match=dict(reg3=0, metadata=0))])
    assert sim.run(packet(eth_type=0x0806), 1).ports() == [6]


def test_instructions_order_apply_then_write_metadata_then_goto():
    sim = Simulator([
        flow(0, 1, 1, [SetField("reg1", 7), WriteMetadata(0x5, 0xF), GotoTable(10)]),
        flow(10, 1, 1, [Output(3)], match=dict(metadata=0xF5, reg1=7)),
    ])
    res = sim.run({"metadata": 0xF0}, 1)
    assert res.ports() == [3]
    assert res.outputs[0].packet["metadata"] == 0xF5


def test_goto_must_go_forward():
    sim = Simulator([flow(0, 1, 1, [GotoTable(0)])])
    with pytest.raises(SimulationLimit):
        sim.run({}, 1)
    sim = Simulator([flow(0, 1, 1, [GotoTable(10)]), flow(10, 1, 1, [GotoTable(5)])])
    with pytest.raises(SimulationLimit):
        sim.run({}, 1)


def test_resubmit_returns_and_keeps_register_changes():
    sim = Simulator([
        flow(0, 1, 1, [Resubmit(5), Output(2), SetField("reg2", 1), Resubmit(5)]),
        flow(5, 1, 1, [SetField("reg1", 9), Output(3)], match=dict(reg2=0)),
        flow(5, 2, 1, [Output(4)], match=dict(reg2=1, reg1=9)),
    ])
    res = sim.run({}, 1)
    assert [e.port for e in res.outputs] == [3, 2, 4]


def test_resubmit_loop_is_bounded():
    sim = Simulator([flow(5, 1, 1, [Resubmit(5)]), flow(0, 1, 1, [GotoTable(5)])])
    with pytest.raises(SimulationLimit):
        sim.run({}, 1)


def test_output_to_in_port_suppressed_unless_in_port():
    sim = Simulator([flow(0, 1, 1, [Output(1), Output(2), Output(OFPP_IN_PORT)])])
    assert sim.run({}, 1).ports() == [1, 2]  # the explicit IN_PORT one only


def test_controller_punt_recorded():
    sim = Simulator([flow(0, 1, 0xAB, [Controller(userdata=b"dhcp")])])
    res = sim.run(packet(eth_type=0x0800), 4)
    assert res.ports() == []
    assert res.punts[0].userdata == b"dhcp" and res.punts[0].cookie == 0xAB and res.punts[0].packet["in_port"] == 4


def test_vlan_push_pop_and_move():
    sim = Simulator([
        flow(0, 1, 1, [PushVlan(), SetField("vlan_vid", 0x1064), Output(2), PopVlan(),
                       Move("reg1", "reg2", 8, 0, 8), Output(3)]),
    ])
    res = sim.run({"reg1": 0xAB}, 1)
    assert res.outputs[0].packet["vlan_vid"] == 0x1064
    assert res.outputs[1].packet["vlan_vid"] == 0
    assert res.outputs[1].packet["reg2"] == 0xAB00


def test_ambiguous_equal_priority_detected():
    sim = Simulator([flow(0, 5, 1, [Output(2)], match=dict(reg1=0)), flow(0, 5, 1, [Output(3)], match=dict(reg2=0))])
    with pytest.raises(AmbiguousMatch):
        sim.run({}, 1)
    assert Simulator(sim.flows(), strict=False).run({}, 1).ports() in ([2], [3])


def test_duplicate_key_different_body_rejected():
    with pytest.raises(DuplicateFlow):
        Simulator([flow(0, 5, 1, [Output(2)]), flow(0, 5, 1, [Output(3)])])


def test_conjunction():
    sim = Simulator([
        flow(0, 10, 1, [Conjunction(7, 1, 2)], match=dict(ipv4_src=ipv4("10.0.0.1"))),
        flow(0, 10, 1, [Conjunction(7, 1, 2)], match=dict(ipv4_src=ipv4("10.0.0.9"))),
        flow(0, 10, 1, [Conjunction(7, 2, 2)], match=dict(eth_type=0x0800, ip_proto=6, tcp_dst=80)),
        flow(0, 10, 1, [Output(9)], match=dict(conj_id=7, eth_type=0x0800)),
        flow(0, 1, 1, [Output(1)]),
    ])
    assert sim.run(packet(**TCP), 5).ports() == [9]
    assert sim.run(packet(**dict(TCP, tcp_dst=22)), 5).ports() == [1]  # clause 2 missing
    assert sim.run(packet(**dict(TCP, ipv4_src="10.0.0.2")), 5).ports() == [1]  # clause 1 missing


def firewall() -> list:
    """Tiny stateful firewall: allow new TCP to port 80 (commit, mark 0); est passes unless marked."""
    return [
        flow(0, 1, 1, [CT(zone_reg="reg13", table=10)], match=dict(eth_type=0x0800)),
        flow(10, 50, 1, [CT(commit=True, zone_reg="reg13", actions=(SetField("ct_mark", 0),)), Output(2)],
             match=dict(ct_state=(TRK_NEW, TRK_NEW | CtState.EST), tcp_dst=80, eth_type=0x0800, ip_proto=6)),
        flow(10, 40, 1, [Output(2)], match=dict(ct_state=(TRK_EST, TRK_EST), ct_mark=0)),
        flow(10, 1, 1, []),
    ]


def test_conntrack_new_then_established_both_directions():
    ct = Conntrack()
    sim = Simulator(firewall(), conntrack=ct)
    assert sim.run(packet(**REPLY, reg13=3), 1).ports() == []  # unsolicited: new, not port 80
    res = sim.run(packet(**TCP, reg13=3), 1)
    assert res.ports() == [2]
    states = [s.packet["ct_state"] for s in res.trace if s.table == 10]
    assert states == [TRK_NEW]
    assert sim.run(packet(**TCP, reg13=3), 1).ports() == [2]  # now +est
    res = sim.run(packet(**REPLY, reg13=3), 1)
    assert res.ports() == [2]
    assert [s.packet["ct_state"] for s in res.trace if s.table == 10] == [TRK_EST | CtState.RPL]
    # another zone knows nothing of it
    assert sim.run(packet(**REPLY, reg13=4), 1).ports() == []


def test_conntrack_mark_blocks_established():
    ct = Conntrack()
    sim = Simulator(firewall(), conntrack=ct)
    sim.run(packet(**TCP, reg13=3), 1)
    ct.set_mark(3, packet(**TCP), 1)
    assert sim.run(packet(**REPLY, reg13=3), 1).ports() == []
    # committing with exec(set_field ct_mark) updates an existing entry too
    sim2 = Simulator([flow(0, 1, 1, [CT(commit=True, zone=3, actions=(SetField("ct_mark", 0),), table=10)]),
                      flow(10, 1, 1, [Output(2)], match=dict(ct_mark=0))], conntrack=ct)
    assert sim2.run(packet(**TCP), 1).ports() == [2]
    assert ct.lookup(3, packet(**REPLY)).mark == 0


def test_ct_forks_original_continues_untracked():
    sim = Simulator([flow(0, 1, 1, [CT(zone=1, table=10), Output(3)]),
                     flow(10, 1, 1, [Output(4)], match=dict(ct_state=(CtState.TRK, CtState.TRK)))])
    res = sim.run(packet(**TCP), 1)
    assert sorted(res.ports()) == [3, 4]
    assert res.outputs_to(3)[0].packet.get("ct_state", 0) == 0


def test_non_ip_is_invalid():
    sim = Simulator([flow(0, 1, 1, [CT(zone=1, table=10)]),
                     flow(10, 1, 1, [Output(4)], match=dict(ct_state=(CtState.TRK | CtState.INV,) * 2))])
    assert sim.run(packet(eth_type=0x0806), 1).ports() == [4]


def test_related_hook():
    ct = Conntrack()
    icmp_err = packet(eth_type=0x0800, ip_proto=1, ipv4_src="10.0.0.254", ipv4_dst="10.0.0.1")
    ct.add_related(1, icmp_err)
    sim = Simulator([flow(0, 1, 1, [CT(zone=1, table=10)]),
                     flow(10, 1, 1, [Output(4)], match=dict(ct_state=(CtState.REL, CtState.REL)))], conntrack=ct)
    assert sim.run(icmp_err, 1).ports() == [4]


def test_snat_and_reverse():
    ct = Conntrack()
    sim = Simulator([
        flow(0, 10, 1, [CT(commit=True, zone=9, nat=NAT("src", ipv4("203.0.113.5")), table=10)],
             match=dict(eth_type=0x0800, in_port=1)),
        flow(0, 10, 1, [CT(zone=9, nat=NAT(), table=10)], match=dict(eth_type=0x0800, in_port=2)),
        flow(10, 1, 1, [Output(OFPP_IN_PORT)]),
        flow(10, 2, 1, [Output(2)], match=dict(in_port=1)),
        flow(10, 2, 1, [Output(1)], match=dict(in_port=2)),
    ], conntrack=ct)
    out = sim.run(packet(**TCP), 1).outputs[0].packet
    assert out["ipv4_src"] == ipv4("203.0.113.5") and out["ct_state"] & CtState.SNAT
    reply = packet(**dict(REPLY, ipv4_dst="203.0.113.5"))
    back = sim.run(reply, 2).outputs[0].packet
    assert back["ipv4_dst"] == ipv4("10.0.0.1") and back["ct_state"] & CtState.RPL


def test_learn_installs_flow():
    learn = Learn(table=20, priority=5, idle_timeout=60, cookie=0x08 << 56, specs=(
        LearnSpec("match", dst="metadata", value=3, n_bits=64),
        LearnSpec("match", dst="eth_dst", src="eth_src", n_bits=48),
        LearnSpec("load", dst="reg7", value=0xFFFFFFFE, n_bits=32),
        LearnSpec("load", dst="reg5", src="in_port", n_bits=8, dst_ofs=8),
        LearnSpec("output", src="in_port", n_bits=32),
    ))
    sim = Simulator([flow(0, 1, 1, [learn])])
    res = sim.run(packet(eth_src="52:54:00:00:00:01"), 7)
    assert len(res.learned) == 1
    sim.add(flow(0, 1, 1, [Resubmit(20)]), replace=True)
    out = sim.run(packet(eth_dst="52:54:00:00:00:01", metadata=3), 9)
    assert out.ports() == [7]
    assert out.outputs[0].packet["reg7"] == 0xFFFFFFFE and out.outputs[0].packet["reg5"] == 7 << 8
    assert sim.run(packet(eth_dst="52:54:00:00:00:01", metadata=4), 9).ports() == []


def test_icmp_echo_reply_is_reverse_but_request_back_is_new():
    ct = Conntrack()
    sim = Simulator([flow(0, 1, 1, [CT(commit=True, zone=1, table=10)]),
                     flow(10, 1, 1, [Output(4)])], conntrack=ct)
    req = packet(eth_type=0x0800, ip_proto=1, ipv4_src="10.0.0.1", ipv4_dst="10.0.0.2", icmpv4_type=8)
    sim.run(req, 1)
    lookup = Simulator([flow(0, 1, 1, [CT(zone=1, table=10)]), flow(10, 1, 1, [Output(4)])], conntrack=ct)
    reply = packet(eth_type=0x0800, ip_proto=1, ipv4_src="10.0.0.2", ipv4_dst="10.0.0.1", icmpv4_type=0)
    back = packet(eth_type=0x0800, ip_proto=1, ipv4_src="10.0.0.2", ipv4_dst="10.0.0.1", icmpv4_type=8)
    assert lookup.run(reply, 1).outputs[0].packet["ct_state"] == TRK_EST | CtState.RPL
    assert lookup.run(back, 1).outputs[0].packet["ct_state"] == TRK_NEW
