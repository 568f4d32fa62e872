"""Security groups through the whole compiled pipeline in the offline simulator (with conntrack)."""
from __future__ import annotations

import pytest

from apps.security_groups import SecurityGroupsApp
from flows import compiler
from flows import security_groups as sg
from flows.port_security import SECURITY_BASE, port_cookie
from flows.simulator import Conntrack, CtState, Simulator, packet
from flows.tables import T
from tests.unit.enginedrive import EngineCloud
from tests.unit.l2topo import ctx
from tests.unit.test_security_groups_topo import (SecTopo, apps, flows_of, icmp, reverse, sim_of, tcp,
                                                  udp)


def delivered(sim, pkt, in_port, out_port) -> bool:
    return out_port in sim.run(pkt, in_port).ports()


@pytest.fixture
def client_server():
    """A (client group: egress anything) and B (server group: ingress tcp 80 only, no egress)."""
    t = SecTopo()
    net = t.network("n1")
    client, server = t.group("client"), t.group("server")
    t.rule(client, "egress")
    web = t.rule(server, "ingress", protocol="tcp", port_range_min=80, port_range_max=80)
    a = t.vm(net, 1, [client])
    b = t.vm(net, 2, [server])
    return t, a, b, client, server, web


def test_allowed_by_rule_and_stateful_reply(client_server):
    t, a, b, *_ = client_server
    sim = sim_of(t, {a["id"]: 1, b["id"]: 2})
    syn = tcp(a, b, 40000, 80)
    assert delivered(sim, syn, 1, 2)
    # B has no egress rule and A no ingress rule: the reply passes only because it is a reply
    assert delivered(sim, reverse(syn), 2, 1)
    assert delivered(sim, syn, 1, 2)  # established, original direction


def test_blocked_port_and_new_connection_from_the_other_side(client_server):
    t, a, b, *_ = client_server
    sim = sim_of(t, {a["id"]: 1, b["id"]: 2})
    assert not delivered(sim, tcp(a, b, 40000, 81), 1, 2)
    assert not delivered(sim, tcp(b, a, 40000, 80), 2, 1)  # B may not open connections
    assert not delivered(sim, udp(a, b, 40000, 80), 1, 2)
    assert not delivered(sim, icmp(a, b), 1, 2)


def test_udp_and_icmp_rules():
    t = SecTopo()
    net = t.network("n1")
    g = t.group("g")
    t.rule(g, "egress")
    t.rule(g, "ingress", protocol="udp", port_range_min=5000, port_range_max=5010)
    t.rule(g, "ingress", protocol="icmp", port_range_min=8, port_range_max=0)  # echo request only
    a, b = t.vm(net, 1, [g]), t.vm(net, 2, [g])
    sim = sim_of(t, {a["id"]: 1, b["id"]: 2})
    assert delivered(sim, udp(a, b, 1234, 5005), 1, 2)
    assert delivered(sim, reverse(udp(a, b, 1234, 5005)), 2, 1)
    assert not delivered(sim, udp(a, b, 1234, 5011), 1, 2)
    assert delivered(sim, icmp(a, b, 8, 0), 1, 2)
    assert delivered(sim, reverse(icmp(a, b, 8, 0)), 2, 1)  # echo reply: stateful
    assert not delivered(sim, icmp(a, b, 13, 0), 1, 2)  # timestamp request


def test_egress_rules_filter_what_a_vm_sends():
    t = SecTopo()
    net = t.network("n1")
    open_, limited = t.group("open"), t.group("limited")
    t.rule(open_, "ingress")
    t.rule(limited, "egress", protocol="tcp", port_range_min=443, port_range_max=443)
    a, b = t.vm(net, 1, [limited]), t.vm(net, 2, [open_])
    sim = sim_of(t, {a["id"]: 1, b["id"]: 2})
    assert delivered(sim, tcp(a, b, 40000, 443), 1, 2)
    assert not delivered(sim, tcp(a, b, 40000, 80), 1, 2)
    res = sim.run(tcp(a, b, 40001, 22), 1)
    assert not any(s.table == T.INGRESS_CT for s in res.trace), "egress must drop before L2"


def test_remote_ip_prefix():
    t = SecTopo()
    net = t.network("n1")
    client, server = t.group("c"), t.group("s")
    t.rule(client, "egress")
    t.rule(server, "ingress", protocol="tcp", remote_ip_prefix="10.0.0.1/32")
    a, b, c = t.vm(net, 1, [client]), t.vm(net, 2, [server]), t.vm(net, 3, [client])
    sim = sim_of(t, {a["id"]: 1, b["id"]: 2, c["id"]: 3})
    assert delivered(sim, tcp(a, b, 40000, 22), 1, 2)
    assert not delivered(sim, tcp(c, b, 40000, 22), 3, 2)


def test_remote_group_membership_change_both_ways():
    t = SecTopo()
    net = t.network("n1")
    client, trusted, server = t.group("c"), t.group("trusted"), t.group("s")
    t.rule(client, "egress")
    t.rule(server, "ingress", protocol="tcp", remote_group=trusted)
    a = t.vm(net, 1, [client])
    b = t.vm(net, 2, [server])
    local = {a["id"]: 1, b["id"]: 2}
    assert not delivered(sim_of(t, local), tcp(a, b, 40000, 22), 1, 2)
    t.update("port", a["id"], security_groups=[client["id"], trusted["id"]])  # joins
    assert delivered(sim_of(t, local), tcp(a, b, 40000, 22), 1, 2)
    t.update("port", a["id"], security_groups=[client["id"]])  # leaves
    assert not delivered(sim_of(t, local), tcp(a, b, 40000, 22), 1, 2)


def test_default_group_members_talk_outsiders_do_not():
    t = SecTopo()
    net = t.network("n1")
    d, other = t.default_group(), t.default_group()
    a, b, c = t.vm(net, 1, [d]), t.vm(net, 2, [d]), t.vm(net, 3, [other])
    sim = sim_of(t, {a["id"]: 1, b["id"]: 2, c["id"]: 3})
    assert delivered(sim, icmp(a, b), 1, 2) and delivered(sim, icmp(b, a), 2, 1)
    # (fresh simulators: the model's ICMP key ignores the type, so c→a would make a→c a "reply")
    assert not delivered(sim_of(t, {a["id"]: 1, b["id"]: 2, c["id"]: 3}), icmp(c, a), 3, 1)
    assert not delivered(sim_of(t, {a["id"]: 1, b["id"]: 2, c["id"]: 3}), icmp(a, c), 1, 3)


def test_port_in_several_groups_gets_the_union():
    t = SecTopo()
    net = t.network("n1")
    client, web, ssh = t.group("c"), t.group("web"), t.group("ssh")
    t.rule(client, "egress")
    t.rule(web, "ingress", protocol="tcp", port_range_min=80, port_range_max=80)
    t.rule(ssh, "ingress", protocol="tcp", port_range_min=22, port_range_max=22)
    a, b = t.vm(net, 1, [client]), t.vm(net, 2, [web, ssh])
    sim = sim_of(t, {a["id"]: 1, b["id"]: 2})
    assert delivered(sim, tcp(a, b, 40000, 80), 1, 2)
    assert delivered(sim, tcp(a, b, 40001, 22), 1, 2)
    assert not delivered(sim, tcp(a, b, 40002, 23), 1, 2)


def test_port_without_groups_is_default_deny():
    t = SecTopo()
    net = t.network("n1")
    g = t.group("g")
    t.rule(g, "egress")
    a, b = t.vm(net, 1, [g]), t.vm(net, 2, [])
    sim = sim_of(t, {a["id"]: 1, b["id"]: 2})
    assert not delivered(sim, tcp(a, b, 40000, 80), 1, 2)
    assert not delivered(sim, tcp(b, a, 40000, 80), 2, 1)


def test_deleting_the_rule_cuts_an_established_connection(client_server):
    t, a, b, client, server, web = client_server
    local = {a["id"]: 1, b["id"]: 2}
    ct = Conntrack()
    syn = tcp(a, b,40000, 80)
    sim = sim_of(t, local, ct)
    assert delivered(sim, syn, 1, 2) and delivered(sim, reverse(syn), 2, 1)
    t.delete("security_group_rule", web["id"])
    sim = sim_of(t, local, ct)  # same connection table, new flows
    assert not delivered(sim, syn, 1, 2)  # next data packet: marked blocked and dropped
    assert ct.lookup(b["_key"], syn).mark == sg.CT_MARK_BLOCKED
    assert not delivered(sim, reverse(syn), 2, 1)  # and the server's replies stop too
    # Re-adding the rule re-opens the same connection (commit writes mark 0 again).
    t.rule(server, "ingress", protocol="tcp", port_range_min=80, port_range_max=80)
    sim = sim_of(t, local, ct)
    assert delivered(sim, syn, 1, 2) and delivered(sim, reverse(syn), 2, 1)


def test_removing_the_group_from_the_port_cuts_too(client_server):
    t, a, b, client, server, web = client_server
    local = {a["id"]: 1, b["id"]: 2}
    ct = Conntrack()
    syn = tcp(a, b, 40000, 80)
    assert delivered(sim_of(t, local, ct), syn, 1, 2)
    t.update("port", b["id"], security_groups=[])
    sim = sim_of(t, local, ct)
    assert not delivered(sim, syn, 1, 2) and not delivered(sim, reverse(syn), 2, 1)


class _Related(Conntrack):
    """Every unknown packet is related to something, or invalid — to drive those branches."""

    def __init__(self, bits: int) -> None:
        super().__init__()
        self.bits = bits

    def classify(self, zone, key):
        hit = self._by_key.get((zone, key))
        if hit is not None:
            return super().classify(zone, key)
        return CtState.TRK | self.bits, None, False


def test_related_passes_and_invalid_drops(client_server):
    t, a, b, *_ = client_server
    local = {a["id"]: 1, b["id"]: 2}
    err = icmp(b, a, 3, 3)  # port unreachable from B: B has no egress rule at all
    assert delivered(sim_of(t, local, _Related(CtState.REL)), err, 2, 1)
    assert not delivered(sim_of(t, local, _Related(CtState.INV)), tcp(a, b, 40000, 80), 1, 2)


def test_non_ip_other_than_arp_is_dropped_for_secured_ports(client_server):
    t, a, b, *_ = client_server
    sim = sim_of(t, {a["id"]: 1, b["id"]: 2})
    frame = packet(eth_src=a["mac_address"], eth_dst=b["mac_address"], eth_type=0x88CC)
    assert not delivered(sim, frame, 1, 2)


# ------------------------------------------------------------------------ flow shapes / counts

def group_flows(t, group, local):
    return flows_of(t, local).get(sg.group_cookie(group), frozenset())


def group_clause_flows(t, group, local):
    """Flows of the group's conjunctions other than membership (clause 1): its rules and verdicts
    (owned by the group) and remote-group member addresses (owned by the member ports)."""
    prio = sg.group_priority(group["_key"])
    return {f for f in compiler.all_flows(flows_of(t, local)) if f.priority == prio
            and f.table in (T.EGRESS_SG, T.INGRESS_SG) and not any(n.startswith("reg") for n, _, _ in f.match)}


def test_overlapping_rules_do_not_double_up():
    t = SecTopo()
    net = t.network("n1")
    g1, g2 = t.group("one"), t.group("two")
    t.rule(g1, "ingress", protocol="tcp", port_range_min=80, port_range_max=90)
    t.rule(g1, "ingress", protocol="tcp", port_range_min=85, port_range_max=100)
    t.rule(g2, "ingress", protocol="tcp", port_range_min=80, port_range_max=100)
    a = t.vm(net, 1, [g1, g2])
    local = {a["id"]: 1}
    f1, f2 = group_flows(t, g1, local), group_flows(t, g2, local)
    assert len(f1) == len(f2)
    # identical rules of two groups never share a flow key (compile_chassis checks conflicts)
    assert not {f.key for f in f1} & {f.key for f in f2}


def test_any_protocol_rule_subsumes_the_others():
    t = SecTopo()
    net = t.network("n1")
    g = t.group("g")
    t.rule(g, "ingress", protocol="tcp", port_range_min=1000, port_range_max=1999)
    t.rule(g, "ingress", protocol="icmp")
    t.rule(g, "ingress")
    a = t.vm(net, 1, [g])
    rule_flows = [f for f in group_flows(t, g, {a["id"]: 1}) if not any(n == "conj_id" for n, _, _ in f.match)]
    assert len(rule_flows) == 1


def test_flows_grow_with_members_plus_rules_not_their_product():
    def count(n_members: int, n_rules: int) -> int:
        t = SecTopo()
        net = t.network("n1")
        g, peers = t.group("g"), t.group("peers")
        for i in range(n_rules):
            t.rule(g, "ingress", protocol="tcp", port_range_min=1000 + 2 * i, port_range_max=1000 + 2 * i,
                       remote_group=peers)
        a = t.vm(net, 1, [g])
        for i in range(n_members):
            t.vm(net, 10 + i, [peers], host="elsewhere")
        return len(group_clause_flows(t, g, {a["id"]: 1}))

    base = count(1, 1)
    assert count(11, 1) - base == 10      # one flow per extra member
    assert count(1, 11) - base == 10      # one flow per extra (single-port) rule
    assert count(11, 11) - base == 20     # additive, not multiplicative


def test_per_port_flow_budget_with_default_group():
    t = SecTopo()
    net = t.network("n1")
    d = t.default_group()
    ports = [t.vm(net, i, [d]) for i in range(1, 6)]
    flows = flows_of(t, {p["id"]: i + 1 for i, p in enumerate(ports)})
    per_port = {len(flows[port_cookie(p)]) for p in ports}
    assert max(per_port) <= 20, per_port
    # the group adds one flow per member (its IP in the remote-group clause, owned by the member
    # port, remote members included) + a constant (rules and verdicts, owned by the group)
    five = len(group_clause_flows(t, d, {p["id"]: i + 1 for i, p in enumerate(ports)}))
    rules = len(flows[sg.group_cookie(d)])
    far = t.vm(net, 9, [d], host="elsewhere")
    flows = flows_of(t, {p["id"]: i + 1 for i, p in enumerate(ports)})
    assert len(group_clause_flows(t, d, {p["id"]: i + 1 for i, p in enumerate(ports)})) == five + 1
    assert len(flows[sg.group_cookie(d)]) == rules
    assert len(flows[port_cookie(far)]) == 1  # the remote member's address, nothing else here


def test_group_flows_only_where_a_member_is_local():
    t = SecTopo()
    net = t.network("n1")
    d = t.default_group()
    a = t.vm(net, 1, [d])
    b = t.vm(net, 2, [], host="c2")
    assert sg.group_cookie(d) not in flows_of(t, {b["id"]: 2}, "c2")
    assert sg.group_cookie(d) in flows_of(t, {a["id"]: 1})
    assert SECURITY_BASE in flows_of(t, {b["id"]: 2}, "c2")


def test_incremental_recompile_equals_full_compile():
    """The engine recompiles every owner whose flows change (else the switch goes stale)."""
    t = SecTopo()
    net = t.network("n1")
    d, web = t.default_group(), t.group("web")
    a = t.vm(net, 1, [d])
    b = t.vm(net, 2, [d])
    local = {a["id"]: 1, b["id"]: 2}
    c = ctx("c1", local, tunnel_ip="192.0.2.1")
    start = len(t.changes)
    cloud = EngineCloud(apps(), t.view(), {"c1": c})

    steps = [
        lambda: t.rule(web, "ingress", protocol="tcp", port_range_min=80, port_range_max=80, remote_group=d),
        lambda: t.update("port", b["id"], security_groups=[d["id"], web["id"]]),
        lambda: t.vm(net, 3, [d], host="c2"),
        lambda: t.update("port", a["id"], fixed_ips=[{"subnet_id": "s", "ip_address": "10.0.0.41"}]),
        lambda: t.update("port", b["id"], port_security_enabled=False, security_groups=[]),
        lambda: t.delete("security_group_rule", next(r for r in t.data["security_group_rule"].values()
                                                      if r["security_group_id"] == web["id"])["id"]),
        lambda: t.update("port", a["id"], security_groups=[]),
    ]
    for step in steps:
        step()
        cloud.step(t.changes[start:])
        start = len(t.changes)
        assert cloud.state["c1"] == compiler.compile_chassis(apps(), t.view(), c)


def test_owners_for_change_of_a_rule_names_group_and_members():
    t = SecTopo()
    net = t.network("n1")
    g = t.group("g")
    a = t.vm(net, 1, [g])
    r = t.rule(g, "ingress", protocol="tcp")
    view = t.view()
    owners = set(SecurityGroupsApp().owners_for_change(view, t.changes[-1]))
    assert owners == {sg.group_cookie(g), port_cookie(a)}
    assert r["id"] in t.data["security_group_rule"]


def test_every_flow_fits_the_pipeline_and_conjunctions_are_consistent():
    t = SecTopo()
    net = t.network("n1")
    d, w = t.default_group(), t.group("w")
    t.rule(w, "ingress", protocol="tcp", port_range_min=1, port_range_max=1023, remote_group=d)
    t.rule(w, "egress", "IPv6", protocol="udp", port_range_min=53, port_range_max=53,
           remote_ip_prefix="2001:db8::/32")
    ports = [t.vm(net, i, [d, w]) for i in range(1, 4)]
    flows = compiler.all_flows(flows_of(t, {p["id"]: i for i, p in enumerate(ports, 1)}))
    clauses: dict[tuple, set] = {}
    verdicts = set()
    for f in flows:
        for a in f.actions:
            if type(a).__name__ == "Conjunction":
                clauses.setdefault((a.conj_id, a.n_clauses, f.priority), set()).add(a.clause)
        for n, v, _ in f.match:
            if n == "conj_id":
                verdicts.add((v, f.priority))
    for (cid, n, prio), got in clauses.items():
        assert got == set(range(1, n + 1)), (cid, got)  # every clause present
        assert (cid, prio) in verdicts  # and a verdict flow at the same priority
    Simulator(flows)  # no duplicate keys


def test_plain_and_remote_group_rules_of_one_group_overlap_harmlessly():
    """A packet may complete two conjunctions of one group (here: 'tcp 22 from anywhere' and 'any
    from the group'). OVS picks either; both verdicts are identical, so the result is the same.
    The strict simulator flags the tie, hence strict=False here."""
    t = SecTopo()
    net = t.network("n1")
    g = t.group("g")
    t.rule(g, "egress")
    t.rule(g, "ingress", protocol="tcp", port_range_min=22, port_range_max=22)
    t.rule(g, "ingress", remote_group=g)
    a, b = t.vm(net, 1, [g]), t.vm(net, 2, [g])
    outsider = t.vm(net, 3, [t.default_group()])
    sim = sim_of(t, {a["id"]: 1, b["id"]: 2, outsider["id"]: 3}, strict=False)
    verdicts = [{s.flow.actions for s in sim.run(tcp(a, b, 4000 + i, 22), 1).trace
                 if s.flow is not None and s.table == T.INGRESS_SG} for i in range(2)]
    assert verdicts[0] == verdicts[1]
    assert delivered(sim, tcp(a, b, 4100, 22), 1, 2)
    assert delivered(sim, udp(a, b, 4100, 53), 1, 2)        # member: anything
    assert delivered(sim, tcp(outsider, a, 4100, 22), 3, 1)  # anyone: tcp 22
    assert not delivered(sim, udp(outsider, a, 4100, 53), 3, 1)
