"""QoS with OVS meters on a real bridge (issue 13): iperf3 between two VM namespaces on one chassis.

One bed, one test (lean): a 20 Mbit/s egress limit on the sender, then the same as an ingress
limit on the receiver, each within 0.5–1.3× of the limit; removing the policy lifts it; DSCP 26
(tos 0x68) seen by the receiver's tcpdump; the meters appear and disappear in
`ovs-ofctl -O OpenFlow13 dump-meters`; a controller restart sends no meter-mod (the reconciler's
`meter_mods` counter) and leaves the meters as they were. iperf3 runs are short (-t 3, the first
second omitted so the meter's burst does not count) and each is bounded by a timeout.
"""
from __future__ import annotations

import json
import logging
import os
import re
import signal

import pytest

from flows import qos
from tests.integration.test_l2 import chassis_stats, eventually, settle
from tests.integration.test_restart import wait_resynced
from tests.integration.test_security_helpers import fresh_network, group, rule, start
from tests.testbed import serve_implemented
from tests.testbed.api import NeutronApiError

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not serve_implemented(), reason="tenantflow serve not implemented yet")]

log = logging.getLogger(__name__)
LIMIT_KBPS = 20000
IPERF_PORT = 5201


def meters(ch) -> dict[int, str]:
    """meter id → its dump-meters line (bands folded in)."""
    out: dict[int, str] = {}
    current = None
    for line in ch.ofctl("dump-meters", "br-int").splitlines():
        m = re.match(r"\s*meter=(\d+)\s+(.*)", line)
        if m:
            current = int(m.group(1))
            out[current] = m.group(2).strip()
        elif current is not None and line.strip():
            out[current] += " " + line.strip()
    return out


def iperf(client, server) -> float:
    """One bounded iperf3 run client → server; Mbit/s received (first second omitted)."""
    srv = server.popen(["timeout", "25", "iperf3", "-s", "-1", "-p", str(IPERF_PORT)])
    try:
        out: dict = {}
        for _ in range(10):  # the server needs a moment to listen; bounded retries
            proc = client.run(["timeout", "15", "iperf3", "-c", server.ip, "-p", str(IPERF_PORT), "-t", "3",
                               "-O", "1", "-J"], check=False, timeout=20)
            out = json.loads(proc.stdout) if proc.stdout.strip().startswith("{") else {"error": proc.stderr}
            if "sum_received" in out.get("end", {}):
                break
            client.run(["sleep", "0.3"])
        assert "sum_received" in out.get("end", {}), f"iperf3 failed: {out.get('error')}"
        return float(out["end"]["sum_received"]["bits_per_second"]) / 1e6
    finally:
        srv.kill()
        srv.wait(timeout=5)


def test_bandwidth_limits_dscp_and_restart(module_bed):
    bed = module_bed
    (c1,) = start(bed, ("c1",))
    api = bed.api
    net, _ = fresh_network(api, "qos")
    g = group(api, "qos-open")
    rule(api, g, "ingress")
    pa = api.port(net, security_groups=[g["id"]])
    pb = api.port(net, security_groups=[g["id"]])
    a, b = bed.add_vm(c1, pa), bed.add_vm(c1, pb)
    assert eventually(lambda: a.ping(b.ip, count=1, timeout=2)), bed.diagnostics()
    egress_meter = qos.meter_id(qos.PURPOSE_EGRESS, port_key(c1, a))
    ingress_meter = qos.meter_id(qos.PURPOSE_INGRESS, port_key(c1, b))

    # egress (from the VM): 20 Mbit/s on a's port
    pol = api.post("qos/policies", {"policy": {"name": "limit"}})["policy"]
    api.post(f"qos/policies/{pol['id']}/bandwidth_limit_rules",
             {"bandwidth_limit_rule": {"max_kbps": LIMIT_KBPS, "direction": "egress"}})
    api.update("ports", pa["id"], qos_policy_id=pol["id"])
    assert eventually(lambda: egress_meter in meters(c1)), meters(c1)
    assert f"rate={LIMIT_KBPS}" in meters(c1)[egress_meter] and "kbps" in meters(c1)[egress_meter]
    got = iperf(a, b)
    log.info("egress limit %d kbps: %.1f Mbit/s", LIMIT_KBPS, got)
    assert 0.5 * LIMIT_KBPS / 1000 <= got <= 1.3 * LIMIT_KBPS / 1000, f"egress {got:.1f} Mbit/s"

    # ingress (to the VM): the same limit on b's port instead
    inbound = api.post("qos/policies", {"policy": {"name": "limit-in"}})["policy"]
    api.post(f"qos/policies/{inbound['id']}/bandwidth_limit_rules",
             {"bandwidth_limit_rule": {"max_kbps": LIMIT_KBPS, "direction": "ingress"}})
    api.update("ports", pa["id"], qos_policy_id=None)
    api.update("ports", pb["id"], qos_policy_id=inbound["id"])
    assert eventually(lambda: ingress_meter in meters(c1) and egress_meter not in meters(c1)), meters(c1)
    got = iperf(a, b)
    log.info("ingress limit %d kbps: %.1f Mbit/s", LIMIT_KBPS, got)
    dump = os.environ.get("TF_QOS_DUMP")  # docs/qos.md: real dump-meters / dump-flows output
    if dump:
        with open(dump + ".ingress", "w") as fh:
            fh.write(c1.ofctl("dump-meters", "br-int") + "\n" + c1.ofctl("dump-flows", "br-int", "table=60"))
    assert 0.5 * LIMIT_KBPS / 1000 <= got <= 1.3 * LIMIT_KBPS / 1000, f"ingress {got:.1f} Mbit/s"

    # removing the policy lifts the limit and the meter
    api.update("ports", pb["id"], qos_policy_id=None)
    assert eventually(lambda: ingress_meter not in meters(c1)), meters(c1)
    got = iperf(a, b)
    log.info("no limit: %.1f Mbit/s", got)
    assert got > 1.3 * LIMIT_KBPS / 1000, f"unlimited {got:.1f} Mbit/s"

    # DSCP 26 on what a sends (Neutron marks egress from the VM): the receiver sees tos 0x68
    mark = api.post("qos/policies", {"policy": {"name": "af31"}})["policy"]
    api.post(f"qos/policies/{mark['id']}/dscp_marking_rules", {"dscp_marking_rule": {"dscp_mark": 26}})
    api.post(f"qos/policies/{mark['id']}/bandwidth_limit_rules",
             {"bandwidth_limit_rule": {"max_kbps": LIMIT_KBPS}})
    api.update("ports", pa["id"], qos_policy_id=mark["id"])
    assert eventually(lambda: egress_meter in meters(c1)), meters(c1)
    settle(bed, [c1])
    cap = bed.tcpdump(b, b.ifname, f"icmp and src {a.ip}", count=2, timeout=8)
    a.ping(b.ip, count=2, timeout=4)
    lines = cap.wait()
    assert lines and all("tos 0x68" in line for line in lines), lines

    dump = os.environ.get("TF_QOS_DUMP")  # docs/qos.md: real dump-meters / dump-flows output
    if dump:
        with open(dump, "w") as fh:
            fh.write(c1.ofctl("dump-meters", "br-int") + "\n" + c1.ofctl("meter-stats", "br-int") + "\n"
                     + c1.ofctl("dump-flows", "br-int") + "\n" + "\n".join(lines))

    # a restart sends no meter-mod: the switch's meters are read back and equal what is wanted
    before = meters(c1)
    assert chassis_stats(bed, c1)["meter_mods"] >= 1
    bed.stop_controller(signal.SIGTERM)
    bed.start_controller(bed.controller.extra_args, bed.controller.env)
    wait_resynced(bed, [c1])
    settle(bed, [c1])
    st = chassis_stats(bed, c1)
    assert st["meter_mods"] == 0 and st["flow_mods"] == 0, st
    assert meters(c1).keys() == before.keys()

    # deleting the port's policy is refused while in use; detaching then deleting clears the meter
    with pytest.raises(NeutronApiError) as refused:
        api.delete(f"qos/policies/{mark['id']}")
    assert refused.value.status == 409 and refused.value.type == "QosPolicyInUse"
    api.update("ports", pa["id"], qos_policy_id=None)
    api.delete(f"qos/policies/{mark['id']}")
    assert eventually(lambda: egress_meter not in meters(c1)), meters(c1)


def port_key(ch, vm) -> int:
    """The port's flow-owner key: the low bits of its classify flow's cookie (table 0, its ofport)."""
    ofport = ch.ovs_vsctl("get", "Interface", vm.tap, "ofport").strip()
    for line in ch.ofctl("dump-flows", "br-int", f"table=0,in_port={ofport}").splitlines():
        m = re.search(r"cookie=0x3([0-9a-f]{14})\b", line)
        if m:
            return int(m.group(1), 16)
    raise AssertionError(f"no classify flow for {vm.tap} (ofport {ofport})")
