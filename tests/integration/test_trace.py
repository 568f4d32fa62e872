"""`tenantflow trace` against real packets and the real switch's ofproto/trace.

For each verdict kind the trace gives (delivered on one chassis, tunnelled to another, routed,
dropped by a security group, dropped by isolation, punted to the controller), the same packet
is sent for real (ping / an ARP lookup) and the outcome must match, and `--check-switch`
(`ovs-appctl ofproto/trace` on the source chassis' bridge) must agree.
"""
from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.integration.test_security_helpers import eventually, fresh_network, group, ping, rule, start, vm_port
from tests.testbed import serve_implemented
from tests.testbed.controller import tenantflow_bin

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not serve_implemented(), reason="tenantflow serve not implemented yet")]


def trace(bed, ch, port: dict, dst_ip: str, *extra: str) -> tuple[int, dict]:
    """Run the CLI as an operator on the source chassis would (its OVS env for --check-switch)."""
    res = subprocess.run([tenantflow_bin(), "trace", "--from-port", port["id"], "--dst-ip", dst_ip,
                          "--check-switch", "-f", "json", "--url", bed.controller.api_url, *extra],
                         capture_output=True, text=True, timeout=90, env={**os.environ, **ch.env})
    assert res.stdout, res.stderr
    return res.returncode, json.loads(res.stdout)


@pytest.fixture(scope="module")
def env(module_bed):
    bed = module_bed
    c1, c2 = start(bed)
    api = bed.api
    net, sub = fresh_network(api, "tr-a")
    net_b, sub_b = api.network_with_subnet("tr-b", "10.77.0.0/24")
    rtr = api.create("routers", name="tr-r")
    for s in (sub, sub_b):
        api.put(f"routers/{rtr['id']}/add_router_interface", {"subnet_id": s["id"]})
    allow = group(api, "tr-open")
    rule(api, allow, "ingress")
    closed = group(api, "tr-closed")          # egress only: nothing may come in
    ports = {"a1": vm_port(api, net, [allow]), "a2": vm_port(api, net, [allow]),
             "a3": vm_port(api, net, [closed]), "b1": vm_port(api, net_b, [allow])}
    hosts = {"a1": c1, "a2": c2, "a3": c1, "b1": c1}
    vms = {n: bed.add_vm(hosts[n], p, gateway=True, name=n) for n, p in ports.items()}
    for p in ports.values():
        assert bed.wait_port_status(p), bed.diagnostics()
    # another tenant's VM on its own network with a port of the same CIDR
    other = bed.api.as_project("tr-other")
    onet, osub = other.network_with_subnet("tr-o", sub["cidr"])
    oip = sub["cidr"].rsplit(".", 1)[0] + ".200"            # same CIDR, an address a1's network lacks
    oport = other.port(onet, fixed_ips=[{"subnet_id": osub["id"], "ip_address": oip}])
    vms["o1"] = bed.add_vm(c1, oport, name="o1")
    ports["o1"] = oport
    assert bed.wait_port_status(oport)
    return bed, c1, c2, ports, vms


def test_delivered_on_one_chassis_and_tunnelled_to_another(env):
    bed, c1, c2, ports, vms = env
    assert eventually(lambda: ping(vms["a1"], vms["a2"])), bed.diagnostics()
    rc, t = trace(bed, c1, ports["a2"], vms["a1"].ip)            # from c2 back to c1: tunnelled
    assert t["kind"] == "delivered" and ports["a1"]["id"] in t["verdict"], t["verdict"]
    assert {s["chassis"] for s in t["stages"]} == {"c1", "c2"}
    rc, t = trace(bed, c1, ports["a1"], vms["a2"].ip)
    assert t["verdict"] == f"delivered to port {ports['a2']['id']} on c2"
    assert rc == 0 and t["switch"]["agrees"], t["switch"]


def test_routed(env):
    bed, c1, c2, ports, vms = env
    assert eventually(lambda: ping(vms["a1"], vms["b1"])), bed.diagnostics()
    rc, t = trace(bed, c1, ports["a1"], vms["b1"].ip)
    assert t["kind"] == "delivered" and ports["b1"]["id"] in t["verdict"]
    assert any(s["stage"] == "L3_ROUTE" for s in t["stages"])
    assert rc == 0 and t["switch"]["agrees"], t["switch"]


def test_dropped_by_a_security_group(env):
    bed, c1, c2, ports, vms = env
    assert eventually(lambda: ping(vms["a1"], vms["a2"])), bed.diagnostics()   # control: the path works
    assert not ping(vms["a1"], vms["a3"])
    rc, t = trace(bed, c1, ports["a1"], vms["a3"].ip)
    assert t["kind"] == "dropped" and t["verdict"].startswith("dropped by security groups of port "
                                                                  + ports["a3"]["id"]), t["verdict"]
    assert rc == 0 and t["switch"] == {**t["switch"], "verdict": "drop", "agrees": True}


def test_dropped_by_isolation(env):
    bed, c1, c2, ports, vms = env
    o1 = vms["o1"]
    # a1 addresses o1's MAC directly (a static neighbour: no ARP can cross tenants)
    vms["a1"].run(["ip", "neigh", "replace", o1.ip, "lladdr", ports["o1"]["mac_address"], "dev", "eth0"])
    try:
        assert not vms["a1"].ping(o1.ip, count=2, timeout=3)
    finally:
        vms["a1"].run(["ip", "neigh", "del", o1.ip, "dev", "eth0"], check=False)
    rc, t = trace(bed, c1, ports["a1"], o1.ip, "--dst-mac", ports["o1"]["mac_address"])
    assert t["kind"] == "dropped" and "isolation" in t["verdict"], t["verdict"]
    assert rc == 0 and t["switch"]["agrees"], t["switch"]


def test_arp_for_the_router_is_answered_by_the_switch(env):
    bed, c1, c2, ports, vms = env
    gw = ports["a1"]["fixed_ips"][0]["ip_address"].rsplit(".", 1)[0] + ".1"
    vms["a1"].run(["ip", "neigh", "flush", "dev", "eth0"], check=False)
    assert vms["a1"].ping_ok(vms["b1"].ip)                       # the real ARP got its answer
    rc, t = trace(bed, c1, ports["a1"], gw, "--proto", "arp")
    assert t["kind"] == "answered" and t["verdict"].startswith("answered by the switch"), t["verdict"]
    assert rc == 0 and t["switch"]["agrees"], t["switch"]


def test_unknown_port_is_a_clean_error(env):
    bed, c1, *_ = env
    res = subprocess.run([tenantflow_bin(), "trace", "--from-port", "nope", "--dst-ip", "10.0.0.1",
                          "--url", bed.controller.api_url], capture_output=True, text=True, timeout=30)
    assert res.returncode == 1 and "404" in res.stderr and "Traceback" not in res.stderr


def test_dhcp_discover_is_punted_to_the_controller(env):
    bed, c1, c2, ports, vms = env
    rc, t = trace(bed, c1, ports["a1"], "255.255.255.255", "--src-ip", "0.0.0.0", "--proto", "udp",
                  "--dst-port", "67")
    assert t["kind"] == "controller" and t["verdict"].startswith("to controller (dhcp"), t["verdict"]
    assert rc == 0 and t["switch"]["agrees"], t["switch"]
