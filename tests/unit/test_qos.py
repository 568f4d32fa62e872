"""The QoS compiler (flows/qos.py): which policy applies, the meter and DSCP flows in the full
pipeline (simulator), and incremental recompiles that equal a fresh compile (engine)."""
from __future__ import annotations

import uuid

from apps.registry import default_apps
from flows import compiler, qos
from flows.tables import Owner, T, cookie
from tests.unit.enginedrive import EngineCloud
from tests.unit.l2topo import Topo, ctx, eth, simulator

MAC1, MAC2 = "fa:16:3e:00:00:01", "fa:16:3e:00:00:02"


def policy(t: Topo, *rules: dict) -> dict:
    rules_ = [dict(r, id=str(uuid.uuid4())) for r in rules]
    return t._put("qos_policy", {"id": str(uuid.uuid4()), "name": "p", "project_id": "p1", "shared": False,
                                 "is_default": False, "rules": rules_})


BW_OUT = {"type": "bandwidth_limit", "max_kbps": 20000, "max_burst_kbps": 0, "direction": "egress"}
BW_IN = {"type": "bandwidth_limit", "max_kbps": 5000, "max_burst_kbps": 500, "direction": "ingress"}
DSCP = {"type": "dscp_marking", "dscp_mark": 26}


def setup():
    t = Topo()
    net = t.network("n")
    p1 = t.port(net, MAC1, "10.0.0.1")
    p2 = t.port(net, MAC2, "10.0.0.2")
    return t, net, p1, p2


def qos_flows(t, c, port):
    flows = compiler.compile_chassis(default_apps(), t.view(), c)[cookie(Owner.PORT, port["_key"])]
    return sorted((f for f in flows if any(type(a) in qos.METER_TYPES or getattr(a, "field", "") == "ip_dscp"
                                            for a in f.actions) and f.table in (T.CLASSIFY, T.OUTPUT)),
                  key=lambda f: f.key)


def test_port_policy_wins_over_network_and_network_ports_excluded():
    t, net, p1, p2 = setup()
    pn, pp = policy(t, DSCP), policy(t, BW_OUT)
    t.update("network", net["id"], qos_policy_id=pn["id"])
    t.update("port", p1["id"], qos_policy_id=pp["id"])
    v = t.view()
    assert (qos.effective_policy(v, v.port(p1["id"])) or {}).get("id") == pp["id"]
    assert (qos.effective_policy(v, v.port(p2["id"])) or {}).get("id") == pn["id"]
    t.update("port", p2["id"], device_owner="network:dhcp")
    v = t.view()
    assert qos.effective_policy(v, v.port(p2["id"])) is None


def test_meters_and_marking_in_the_pipeline():
    t, net, p1, p2 = setup()
    pol = policy(t, BW_OUT, BW_IN, DSCP)
    t.update("port", p1["id"], qos_policy_id=pol["id"])
    c = ctx("c1", {p1["id"]: 1, p2["id"]: 2})
    texts = [f.ofctl() for f in qos_flows(t, c, p1)]
    eg, ing = qos.meter_id(qos.PURPOSE_EGRESS, p1["_key"]), qos.meter_id(qos.PURPOSE_INGRESS, p1["_key"])
    ck = f"cookie={cookie(Owner.PORT, p1['_key']):#x}"
    assert texts == [
        f"{ck},table=0,priority=105,in_port=1 actions=meter:{eg},set_field:1->reg6,write_metadata:0x1,goto_table:10",
        f"{ck},table=0,priority=110,dl_type=0x800,in_port=1 actions=meter:{eg},set_field:0x1a->ip_dscp,"
        "set_field:1->reg6,write_metadata:0x1,goto_table:10",
        f"{ck},table=0,priority=110,dl_type=0x86dd,in_port=1 actions=meter:{eg},set_field:0x1a->ip_dscp,"
        "set_field:1->reg6,write_metadata:0x1,goto_table:10",
        f"{ck},table=60,priority=110,reg7=1 actions=meter:{ing},output:1"]
    sim = simulator(t.view(), c)
    res = sim.run(eth(MAC1, MAC2, ipv4_src=0x0A000001, ipv4_dst=0x0A000002, ip_dscp=0), 1)
    assert res.ports() == [2] and res.outputs[0].packet.get("ip_dscp") == 26, res.dump_trace()
    back = sim.run(eth(MAC2, MAC1, ipv4_src=0x0A000002, ipv4_dst=0x0A000001, ip_dscp=0), 2)
    assert back.ports() == [1] and back.outputs[0].packet.get("ip_dscp") == 0  # ingress: not marked
    # a port without policy, or whose policy has no rules, has no QoS flows
    assert qos_flows(t, c, p2) == []
    t.update("qos_policy", pol["id"], rules=[])
    assert qos_flows(t, c, p1) == []


def test_incremental_equals_fresh_compile():
    t, net, p1, p2 = setup()
    c = ctx("c1", {p1["id"]: 1, p2["id"]: 2})
    cloud = EngineCloud(default_apps(), t.view(), {"c1": c})

    def step(mutate) -> None:
        t.changes.clear()
        mutate()
        cloud.step(list(t.changes))
        assert cloud.differences(default_apps, t.view()) == {}

    t.changes.clear()
    pol = policy(t, BW_OUT)
    t.update("network", net["id"], qos_policy_id=pol["id"])
    cloud.step(list(t.changes))
    assert cloud.differences(default_apps, t.view()) == {}
    step(lambda: t.update("qos_policy", pol["id"], rules=[dict(BW_OUT, id="r", max_kbps=1000), dict(DSCP, id="d")]))
    step(lambda: t.update("port", p2["id"], qos_policy_id=policy(t, BW_IN)["id"]))
    step(lambda: t.update("network", net["id"], qos_policy_id=None))
    flows = cloud.state["c1"][cookie(Owner.PORT, p2["_key"])]
    assert any(type(a) is qos.MeterUse and a.rate == 5000 for f in flows for a in f.actions)
    assert not any(type(a) is qos.MeterUse for f in cloud.state["c1"][cookie(Owner.PORT, p1["_key"])]
                   for a in f.actions)
