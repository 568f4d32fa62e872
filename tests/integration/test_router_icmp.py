"""Routers that answer ICMP, with real packets (flows/router_icmp.py, apps/router_icmp.py).

One chassis c1 mapping physnet1 (so it is the router's gateway chassis and hosts the floating
IP), router r1 on net1 10.81.0.0/24 and net2 10.82.0.0/24 (VXLAN, MTU 1450) with its gateway on
the flat external network 172.31.0.0/24 (MTU 1500) whose subnet has no gateway IP: r1 has no
default route, so an address nobody routes is unreachable. vm1 on net1, vm2 on net2 with a
floating IP, an outside host on the external network.
Proven: vm1 pings both router interfaces and the gateway IP, the outside host pings the gateway
IP; `ping -t 1` and traceroute from vm1 show the router; a ping to an unrouted address reports
"Destination Net Unreachable"; a 1500-byte DF ping from outside to vm2's floating IP gets
frag-needed (mtu 1450) and path-MTU discovery then works.
"""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from tests.integration import nat_bed
from tests.integration.test_l2 import allow_icmp_in, chassis_stats, eventually, fixed_ip, flows_diff
from tests.testbed import Bed, Chassis, Host, serve_implemented

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not serve_implemented(), reason="tenantflow serve not implemented yet")]

OUTSIDE_IP = "172.31.0.200"


@dataclass
class Env:
    bed: Bed
    c1: Chassis
    vm1: Host
    vm2: Host
    outside: Host
    gw_ip: str
    fip: str
    router_id: str


def _build(bed: Bed) -> Env:
    bed.start_controller()
    sw = bed.add_physical_switch("phys")
    (c1,) = nat_bed.gateway_chassis(bed, sw, "c1")
    api = bed.api
    out = nat_bed.outside(bed, sw, "172.31.0.0/24", gateway_ip=None, mtu=1500)
    ext, outside = out.net, out.host
    net1, sub1 = api.network_with_subnet("icmp1", "10.81.0.0/24")
    net2, sub2 = api.network_with_subnet("icmp2", "10.82.0.0/24")
    rtr = nat_bed.router(out, "r-icmp", [sub1, sub2])
    gw_ip = rtr.gw_ip
    assert outside.ip == OUTSIDE_IP
    p1 = api.port(net1, name="vm1", fixed_ips=fixed_ip(sub1, "10.81.0.11"))
    p2 = api.port(net2, name="vm2", fixed_ips=fixed_ip(sub2, "10.82.0.12"))
    allow_icmp_in(api, p2)
    vm1 = bed.add_vm(c1, p1, gateway=True, name="vm1")
    vm2 = bed.add_vm(c1, p2, gateway=True, name="vm2")
    for p in (p1, p2):
        assert bed.wait_port_status(p)
    fip = api.create("floatingips", floating_network_id=ext["id"], port_id=p2["id"])
    return Env(bed, c1, vm1, vm2, outside, gw_ip, fip["floating_ip_address"], rtr.id)


@pytest.fixture(scope="module")
def env(module_bed: Bed) -> Env:
    try:
        return _build(module_bed)
    except BaseException:
        print(module_bed.diagnostics())
        raise


def _out(host: Host, cmd: list[str], timeout: float = 15.0) -> str:
    res = host.run(cmd, check=False, timeout=timeout)
    return res.stdout + res.stderr


def test_router_answers_ping_on_both_interfaces_and_gateway_ip(env: Env):
    for ip in ("10.81.0.1", "10.82.0.1", env.gw_ip):
        assert eventually(lambda ip=ip: env.vm1.ping_ok(ip), timeout=30), (ip, env.bed.diagnostics())
    assert eventually(lambda: env.outside.ping_ok(env.gw_ip), timeout=20), env.bed.diagnostics()


def test_ttl_1_and_traceroute_show_the_router(env: Env):
    assert eventually(lambda: env.vm1.ping_ok(env.vm2.ip), timeout=30), env.bed.diagnostics()
    text = _out(env.vm1, ["ping", "-n", "-c", "1", "-t", "1", "-W", "2", env.vm2.ip])
    assert "From 10.81.0.1" in text and "Time to live exceeded" in text, text
    text = _out(env.vm1, ["traceroute", "-n", "-w", "2", "-q", "1", "-m", "4", env.vm2.ip], timeout=20)
    hops = [line.split() for line in text.splitlines()[1:] if line.strip()]
    assert hops[0][:2] == ["1", "10.81.0.1"] and hops[1][:2] == ["2", env.vm2.ip], text


def test_unrouted_address_is_unreachable(env: Env):
    text = _out(env.vm1, ["ping", "-n", "-c", "1", "-W", "2", "198.51.100.7"])
    assert "From 10.81.0.1" in text and "Destination Net Unreachable" in text, text


def test_frag_needed_from_outside_then_path_mtu_discovery_works(env: Env):
    assert eventually(lambda: env.outside.ping_ok(env.fip), timeout=30), env.bed.diagnostics()
    text = _out(env.outside, ["ping", "-n", "-M", "do", "-s", "1472", "-c", "2", "-i", "0.5", "-W", "2", env.fip])
    assert "mtu = 1450" in text or "mtu=1450" in text, text
    # the outside host learnt the path MTU: the largest DF ping that fits 1450 gets through
    assert env.outside.run(["ping", "-n", "-M", "do", "-s", "1422", "-c", "2", "-i", "0.3", "-W", "3", env.fip],
                           check=False, timeout=15).returncode == 0
    text = _out(env.outside, ["ping", "-n", "-M", "do", "-s", "1472", "-c", "1", "-W", "2", env.fip])
    assert "mtu=1450" in text or "mtu = 1450" in text, text  # now refused locally: the cached PMTU


def test_extraroute_atomic_calls_reach_the_route_table(env: Env):
    route = {"destination": "203.0.113.0/24", "nexthop": env.vm2.ip}
    env.bed.api.put(f"routers/{env.router_id}/add_extraroutes", {"router": {"routes": [route]}})
    assert env.c1.wait_flow("nw_dst=203.0.113.0/24", timeout=15), env.c1.dump_flows()
    hop = [f for f in env.c1.dump_flows() if "nw_dst=203.0.113.0/24" in f]
    assert len(hop) == 1 and "table=31" in hop[0] and "set_field:0xa52000c->reg1" in hop[0], hop  # 10.82.0.12 (vm2)
    env.bed.api.put(f"routers/{env.router_id}/remove_extraroutes", {"router": {"routes": [route]}})
    assert eventually(lambda: not any("203.0.113.0/24" in f for f in env.c1.dump_flows()), timeout=15)


def test_switch_holds_exactly_the_router_icmp_flows_and_a_restart_sends_nothing(env: Env):
    """check_pkt_larger, in_port=CONTROLLER and nw_ttl read back byte for byte as encoded."""
    assert eventually(lambda: flows_diff(env.bed, env.c1)["in_sync"], timeout=20), flows_diff(env.bed, env.c1)
    assert any("check_pkt_larger(1464)" in f for f in env.c1.dump_flows())
    env.bed.restart_controller()
    assert env.c1.wait_connected(timeout=30)
    assert eventually(lambda: flows_diff(env.bed, env.c1)["in_sync"], timeout=30)
    assert chassis_stats(env.bed, env.c1)["flow_mods"] == 0
