"""`tenantflow trace` on the offline simulator (flows/trace.py): every verdict kind, named owners.

Topology: test_routing's routed_topo (two tenants with the same CIDRs, routers R1/R2, c1 and c2).
"""
from __future__ import annotations

import pytest

from flows import compiler, trace
from flows.tables import owner_label
from tests.unit.test_routing import apps, routed_topo


def run(r, port: str, dst: str, **kw) -> trace.Trace:
    view = r.topo.view()
    chassis = [trace.ChassisFlows(c, tuple(compiler.all_flows(compiler.compile_chassis(apps(), view, c))))
               for c in r.contexts()]
    userdata = {a.userdata: a.name for a in apps() if hasattr(a, "userdata")}
    return trace.run(view, trace.Probe(r.ports[port]["id"], dst, **kw), chassis, owner_label, userdata)


def test_same_network_other_chassis_is_tunnelled_and_delivered():
    r = routed_topo()
    t = run(r, "vmB1", "10.2.0.12")
    assert t.kind == "delivered" and t.verdict == f"delivered to port {r.ports['vmB2']['id']} on c2"
    assert {s.chassis for s in t.stages} == {"c1", "c2"}          # the walk crossed the tunnel
    assert all(s.flow is None or s.owner for s in t.stages)      # every matching flow names its owner


def test_routed_between_networks_of_one_tenant():
    r = routed_topo()
    t = run(r, "vmA1", "10.2.0.11")
    assert t.kind == "delivered" and r.ports["vmB1"]["id"] in t.verdict
    assert any(s.stage == "L3_ROUTE" for s in t.stages)
    assert t.deliveries[0]["packet"]["eth_src"] == r.macs["R1B"]


def test_other_tenants_mac_is_dropped_by_isolation():
    r = routed_topo()
    # vmD1 (tenant p2, net D) has vmB1's address 10.2.0.11; vmB2 (net B) addressing vmD1's MAC
    t = run(r, "vmB2", "10.2.0.11", dst_mac=r.ports["vmD1"]["mac_address"])
    assert t.kind == "dropped" and t.verdict.startswith("dropped by isolation"), t.verdict
    assert r.nets["B"]["id"] in t.verdict
    ok = run(r, "vmB2", "10.2.0.11")                      # resolved as the VM would: vmB1, same network
    assert ok.kind == "delivered" and r.ports["vmB1"]["id"] in ok.verdict


def test_arp_for_a_known_address_is_answered_by_the_switch():
    r = routed_topo()
    t = run(r, "vmA1", "10.1.0.1", proto="arp")
    assert t.kind == "answered" and t.verdict.startswith("answered by the switch"), t.verdict


def test_no_route_and_unknown_port_are_errors_not_verdicts():
    r = routed_topo()
    with pytest.raises(trace.TraceError, match="not found"):
        trace.build_packet(r.topo.view(), trace.Probe("nope", "1.2.3.4"))
    with pytest.raises(trace.TraceError, match="no port has"):
        run(r, "vmA1", "10.1.0.99")


# ------------------------------------------------------------------ reading ofproto/trace output

def test_switch_verdict_reads_every_datapath_actions_section():
    from controller.trace import agrees, switch_verdict
    # conntrack commit after recirculation and nothing else: the packet goes nowhere
    committed_only = ("Datapath actions: ct(zone=5),recirc(0x1)\n...\n"
                      "Datapath actions: ct(commit,zone=5,mark=0/0xffffffff)\n")
    assert switch_verdict(committed_only) == "drop"
    assert switch_verdict("Datapath actions: drop\n") == "drop"
    assert switch_verdict("Datapath actions: ct(zone=5),recirc(0x2)\nDatapath actions: ct(commit,zone=7),3\n") \
        == "forwarded"
    tunnel = "Datapath actions: set(tunnel(tun_id=0x1,dst=10.251.0.11,ttl=64,flags(df|key))),4\n"
    assert switch_verdict(tunnel) == "forwarded"
    punt = "    controller(userdata=00.00.00.03,pause)\nDatapath actions: drop\n"
    assert switch_verdict(punt) == "controller"
    metered = ("Datapath actions: sample(sample=100.0%,actions(meter(0),userspace(pid=0,controller("
               "reason=1,dont_send=1,continuation=0,recirc_id=1,rule_cookie=0,controller_id=0,"
               "max_len=65535))))\n")
    assert switch_verdict(metered) == "controller"                # a punt through its meter
    assert switch_verdict("Datapath actions: sample(sample=50.0%,actions(3)),4\n") == "forwarded"
    assert agrees("dropped", "drop") and agrees("delivered", "forwarded") and not agrees("dropped", "forwarded")


def test_a_dhcp_discover_goes_to_the_controller():
    r = routed_topo()
    for net in r.nets.values():          # routed_topo's subnets have DHCP off: turn it on for A
        if net["name"] == "A":
            sub = next(s for s in r.topo.view().subnets_of_network(net["id"]))
            r.topo.update("subnet", sub["id"], enable_dhcp=True)
    t = run(r, "vmA1", "255.255.255.255", src_ip="0.0.0.0", proto="udp", dst_port=67)
    assert t.packet["udp_src"] == "68" and t.packet["eth_dst"] == "ff:ff:ff:ff:ff:ff"
    assert t.kind == "controller" and t.verdict.startswith("to controller (dhcp"), t.verdict
