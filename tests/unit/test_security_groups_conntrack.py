"""What conntrack sees: ports without port security stay out of it; established packets are not
committed again (issue 14 data plane). A counting Conntrack in the offline simulator records
every ct() lookup and every commit of the compiled pipeline."""
from __future__ import annotations

from flows import security_groups as sg
from flows.simulator import Conntrack
from flows.tables import T
from tests.unit.test_security_groups_topo import SecTopo, flows_of, reverse, sim_of, tcp

OPEN = {"port_security_enabled": False, "security_groups": []}


class Counting(Conntrack):
    """Conntrack that records the zone of every lookup and every commit."""

    def __init__(self) -> None:
        super().__init__()
        self.lookups: list[int] = []
        self.commits: list[int] = []

    def classify(self, zone, key):
        self.lookups.append(zone)
        return super().classify(zone, key)

    def commit(self, zone, key, nat=None):
        self.commits.append(zone)
        return super().commit(zone, key, nat)


def delivered(sim, pkt, in_port, out_port) -> bool:
    return out_port in sim.run(pkt, in_port).ports()


def topo():
    """p, q: port security off; a: client group (egress any); b: server group (ingress tcp 80)."""
    t = SecTopo()
    net = t.network("n1")
    client, server = t.group("client"), t.group("server")
    t.rule(client, "egress")
    web = t.rule(server, "ingress", protocol="tcp", port_range_min=80, port_range_max=80)
    a, b = t.vm(net, 1, [client]), t.vm(net, 2, [server])
    p, q = t.vm(net, 3, **OPEN), t.vm(net, 4, **OPEN)
    local = {a["id"]: 1, b["id"]: 2, p["id"]: 3, q["id"]: 4}
    return t, local, dict(a=a, b=b, p=p, q=q, server=server, web=web)


def test_ports_without_port_security_never_enter_conntrack():
    t, local, v = topo()
    ct = Counting()
    sim = sim_of(t, local, ct)
    syn = tcp(v["p"], v["q"], 40000, 80)
    for _ in range(3):  # both directions, new and established alike
        assert delivered(sim, syn, 3, 4) and delivered(sim, reverse(syn), 4, 3)
    assert ct.lookups == [] and ct.commits == []
    assert delivered(sim, tcp(v["a"], v["b"], 40000, 80), 1, 2)  # positive control: secured ports do
    assert ct.lookups


def test_port_without_port_security_to_a_secured_port_meets_its_ingress_rules():
    t, local, v = topo()
    ct = Counting()
    sim = sim_of(t, local, ct)
    bkey = v["b"]["_key"]
    syn = tcp(v["p"], v["b"], 40000, 80)
    assert delivered(sim, syn, 3, 2)
    assert set(ct.lookups) == {bkey} and ct.commits == [bkey]  # tracked on b's side only
    assert delivered(sim, reverse(syn), 2, 3)  # b's reply: +est+rpl in b's zone
    assert not delivered(sim, tcp(v["p"], v["b"], 40001, 81), 3, 2)  # b's ingress rules still apply
    assert not delivered(sim, tcp(v["b"], v["p"], 40002, 80), 2, 3)  # b has no egress rule
    assert set(ct.lookups) == {bkey}


def test_established_packets_are_not_committed_again():
    t, local, v = topo()
    ct = Counting()
    sim = sim_of(t, local, ct)
    a, b = v["a"], v["b"]
    syn = tcp(a, b, 40000, 80)
    assert delivered(sim, syn, 1, 2)
    assert sorted(ct.commits) == sorted([a["_key"], b["_key"]])  # new: once per zone
    first = len(ct.lookups)  # a commit is a conntrack pass of its own
    for _ in range(5):
        assert delivered(sim, reverse(syn), 2, 1) and delivered(sim, syn, 1, 2)
    assert len(ct.commits) == 2, ct.commits
    assert len(ct.lookups) - first == 5 * 4  # one pass per zone per packet, no commit pass


def test_removed_rule_still_cuts_and_readding_reopens_with_few_commits():
    t, local, v = topo()
    ct = Counting()
    a, b = v["a"], v["b"]
    syn = tcp(a, b, 40000, 80)
    sim = sim_of(t, local, ct)
    assert delivered(sim, syn, 1, 2) and delivered(sim, reverse(syn), 2, 1)
    t.delete("security_group_rule", v["web"]["id"])
    sim = sim_of(t, local, ct)
    assert not delivered(sim, syn, 1, 2)  # marked blocked (one commit, in b's zone)
    assert ct.lookup(b["_key"], syn).mark == sg.CT_MARK_BLOCKED
    assert ct.commits[2:] == [b["_key"]]
    assert not delivered(sim, syn, 1, 2) and not delivered(sim, reverse(syn), 2, 1)
    assert len(ct.commits) == 3  # a blocked connection's packets drop without a commit
    t.rule(v["server"], "ingress", protocol="tcp", port_range_min=80, port_range_max=80)
    sim = sim_of(t, local, ct)
    assert delivered(sim, syn, 1, 2) and delivered(sim, reverse(syn), 2, 1)  # re-opened
    assert ct.lookup(b["_key"], syn).mark == 0 and len(ct.commits) == 4
    assert delivered(sim, syn, 1, 2) and len(ct.commits) == 4


def test_only_state_changes_commit_in_the_compiled_flows():
    """Every ct(commit) in the SG tables matches +new, a blocked mark (re-open) or is the
    P_EST_BLOCK marking; none matches an allowed established connection."""
    t, local, _ = topo()
    commits = [f for fl in flows_of(t, local).values() for f in fl
               if f.table in (T.EGRESS_SG, T.INGRESS_SG) and any(getattr(x, "commit", False) for x in f.actions)]
    assert commits
    for f in commits:
        m = {n: (val, mask) for n, val, mask in f.match}
        state, _mask = m.get("ct_state", (0, 0))
        new = bool(state & sg.CS_NEW)
        reopen = m.get("ct_mark", (None, None))[0] == sg.CT_MARK_BLOCKED
        block = f.priority == sg.P_EST_BLOCK and m.get("ct_mark", (None, None))[0] == 0
        assert new or reopen or block, f.ofctl()


def test_no_port_security_port_owns_conntrack_bypass_flows():
    t, local, v = topo()
    from flows.port_security import port_cookie
    mine = flows_of(t, local)[port_cookie(v["p"])]
    ct_flows = [f for f in mine if f.table in (T.EGRESS_CT, T.INGRESS_CT)]
    assert {f.table for f in ct_flows} == {T.EGRESS_CT, T.INGRESS_CT}
    assert all(f.priority == sg.P_CT_BYPASS for f in ct_flows)
    secured = flows_of(t, local)[port_cookie(v["a"])]
    assert not [f for f in secured if f.table in (T.EGRESS_CT, T.INGRESS_CT)]
