"""The compile's shortcuts (flows/flow.py's flow(), the parse and plan caches of
flows/security_groups.py, cached address parsing, shared action objects) give the same flows
as the long way, and follow every change of what they were computed from."""
from __future__ import annotations

import gc
import logging

import pytest

from flows import port_security as ps
from flows import security_groups as sg
from flows import services
from flows.flow import Conjunction, Flow, FlowError, GotoTable, Output, flow, make_match
from flows.tables import Owner, cookie, cookie_owner, split_cookie


def test_flow_equals_the_long_way_and_its_match_is_a_plain_tuple():
    fields = {"reg6": 3, "eth_type": 0x800, "ipv4_src": (0x0A0000FF, 0xFFFFFF00), "ip_proto": (6, 0)}
    short = flow(10, 100, 5, [GotoTable(15)], match=fields, idle_timeout=7)
    long = Flow(10, 100, make_match(**fields), (GotoTable(15),), 5, idle_timeout=7)
    assert short == long and hash(short) == hash(long) and repr(short) == repr(long)
    assert type(short.match) is tuple  # the GC stops tracking it (items first, then the match)
    gc.collect()
    gc.collect()
    assert not gc.is_tracked(short.match)
    assert flow(10, 100, 5).match == () and flow(10, 100, 5, match={}).match == ()


@pytest.mark.parametrize("kw", [dict(table=255), dict(priority=1 << 16), dict(cookie=-1),
                                dict(match={"reg6": 1 << 32}), dict(match={"nonsense": 1}),
                                dict(actions=[GotoTable(15), GotoTable(20)]), dict(idle_timeout=1 << 16)])
def test_flow_still_checks_everything(kw):
    args = dict(table=10, priority=100, cookie=5, actions=[GotoTable(15)], match={"reg6": 1})
    args.update(kw)
    with pytest.raises(FlowError):
        flow(**args)


def test_flows_differing_only_in_actions_stay_distinct():
    a = flow(10, 100, 5, [Output(1)], match={"reg6": 1})
    b = flow(10, 100, 5, [Output(2)], match={"reg6": 1})
    assert a != b and len({a, b}) == 2 and {a, b} - {a} == {b}


def test_split_cookie_and_cookie_owner():
    assert split_cookie(cookie(Owner.PORT, 12)) == (Owner.PORT, 12)
    assert split_cookie((99 << 56) | 4) == (None, 4)
    assert cookie_owner(cookie(Owner.SECGROUP, 3)) == (Owner.SECGROUP, 3)
    with pytest.raises(ValueError):
        cookie_owner(99 << 56)


def test_ip_int_and_port_networks():
    assert services.ip_int("10.0.0.5") == 0x0A000005
    assert services.ip_int("fd00::1") is None and services.ip_int("garbage") is None
    assert services.ip_int(None) is None and services.ip_int("") is None
    assert services.ip_int(0x0A000005) == 0x0A000005  # not a string: parsed as before, uncached
    port = {"mac_address": "fa:16:3e:00:00:01", "fixed_ips": [{"ip_address": "10.0.0.5"}],
            "allowed_address_pairs": [{"ip_address": "10.0.5.0/24"}]}
    assert [(m, str(n)) for m, n in ps.allowed_pairs(port)] == [
        (0xFA163E000001, "10.0.0.5/32"), (0xFA163E000001, "10.0.5.0/24")]
    with pytest.raises(ValueError):
        ps.allowed_pairs({**port, "fixed_ips": [{"ip_address": "not-an-ip"}]})


def _rule(**kw) -> dict:
    return {"id": "r1", "direction": "ingress", "ethertype": "IPv4", "protocol": "tcp",
            "port_range_min": 80, "port_range_max": 80, **kw}


def test_parse_rule_follows_every_field_and_logs_a_bad_rule_each_time(caplog):
    assert sg.parse_rule(_rule()).ports == (80, 80)
    assert sg.parse_rule(_rule(port_range_max=90)).ports == (80, 90)
    assert sg.parse_rule(_rule(direction="egress")).direction == "egress"
    assert sg.parse_rule(_rule(remote_ip_prefix="10.0.0.0/8")).prefix is not None
    assert sg.parse_rule(_rule(ethertype="IPv6", protocol="icmp")).proto == 58
    bad = _rule(port_range_min=90, port_range_max=80)
    with caplog.at_level(logging.WARNING, logger="flows.security_groups"):
        assert sg.parse_rule(bad) is None and sg.parse_rule(bad) is None
    assert len([r for r in caplog.records if "ignored" in r.getMessage()]) == 2
    assert sg.parse_rule(_rule(port_range_min=[80])) is None  # unhashable: parsed uncached, rejected


class Groups:
    """A GroupIndex that records the groups and rule lists it is asked for."""

    def __init__(self, groups: dict, rules: dict) -> None:
        self.groups, self.rule_lists, self.read = groups, rules, set()

    def group(self, gid):
        self.read.add(("group", gid))
        return self.groups.get(gid)

    def rules(self, gid):
        self.read.add(("rules", gid))
        return self.rule_lists.get(gid, [])

    def members(self, gid):
        return []

    def referencing(self, gid):
        return set()

    def claimers(self, address):
        return []


def test_group_plan_follows_its_remote_groups_and_reads_them():
    rules = {"g": [_rule(id="a", remote_group_id="rg"), _rule(id="b", remote_ip_prefix="10.0.0.5/32",
                                                              protocol=None, port_range_min=None,
                                                              port_range_max=None)]}
    idx = Groups({"g": {"_key": 1}, "rg": {"_key": 7}}, rules)
    plan = sg.group_plan(idx, "g")
    assert plan is not None and plan.remote["ingress"] == {0x800: {"rg": 7}}
    assert idx.read == {("group", "g"), ("rules", "g"), ("group", "rg")}
    assert list(plan.pure["ingress"]) == [(0x800, "10.0.0.5/32")]
    assert sg.group_plan(idx, "g") is plan  # unchanged inputs: the same plan
    idx.groups["rg"] = {"_key": 9}
    assert sg.group_plan(idx, "g").remote["ingress"] == {0x800: {"rg": 9}}
    del idx.groups["rg"]
    gone = sg.group_plan(idx, "g")
    assert gone.remote["ingress"] == {} and len(gone.buckets["ingress"]) == 1
    idx.groups["g"] = {"_key": 2}
    assert sg.group_plan(idx, "g").gkey == 2
    rules["g"].append(_rule(id="c", direction="egress", remote_group_id="g"))
    assert sg.group_plan(idx, "g").remote["egress"] == {0x800: {"g": 2}}
    del idx.groups["g"]
    assert sg.group_plan(idx, "g") is None


def test_shared_conjunction_actions():
    assert sg._membership_actions(3, (0, 5)) == (Conjunction(3 << 16, 1, 2), Conjunction((3 << 16) | 5, 1, 3))
    assert sg._clause3_actions(3, (2, 5)) == (Conjunction((3 << 16) | 2, 3, 3), Conjunction((3 << 16) | 5, 3, 3))


def _compiled_bytes() -> tuple[list[bytes], list]:
    """Every flow-mod of a full compile of a small two-chassis world (test_engine.World), sorted,
    and the flows themselves."""
    from controller.wire import Encoder
    from tests.unit.test_engine import World
    w = World(networks=3)
    for i in range(12):
        w.act(0, i, i)
    w.step({"c1": {p["id"]: 10 + i for i, p in enumerate(w.ports())}})
    enc = Encoder()
    flows = [f for sink in w.cloud.sinks.values() for fs in sink.flows.values() for f in fs]
    return sorted(enc.flow_mod(f, 0) for f in flows), flows


def test_interned_match_items_and_cookies_compile_byte_identical(monkeypatch):
    """Interning (flows.flow._ITEMS/_COOKIES, issue 14) shares objects only: the compile's bytes
    are those of a compile without it, or with tables cleared all along; items are shared and
    matches stay untracked by the GC."""
    from flows import flow as flowmod
    interned, flows = _compiled_bytes()
    assert len(interned) > 100
    items = [it for f in flows for it in f.match]
    assert len({id(it) for it in items}) == len(set(items))  # one object per distinct item
    gc.collect()
    gc.collect()
    assert not any(gc.is_tracked(f.match) for f in flows if type(f.match) is tuple)  # _Checked: always
    assert not any(gc.is_tracked(it) for it in items)
    monkeypatch.setattr(flowmod, "_item", lambda _k, item: item)
    monkeypatch.setattr(flowmod, "_cookie", lambda _k, c: c)
    plain, _ = _compiled_bytes()
    assert plain == interned
    monkeypatch.undo()
    monkeypatch.setattr(flowmod, "_INTERN_MAX", 3)  # cleared on (nearly) every flow
    assert _compiled_bytes()[0] == interned
