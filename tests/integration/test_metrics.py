"""/metrics scraped as Prometheus does (prometheus_client's parser): counters move with traffic
(ARP answered, packet-ins) and with changes (flow-mods, bundles, API requests), gauges show the
switches, their flows and health, and the feed lag."""
from __future__ import annotations

import json
import subprocess

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.test_arp import arping
from tests.integration.test_l2 import eventually
from tests.testbed import serve_implemented
from tests.testbed.controller import tenantflow_bin

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not serve_implemented(), reason="tenantflow serve not implemented yet")]


def scrape(bed) -> dict[tuple[str, tuple], float]:
    r = requests.get(bed.controller.api_url + "/metrics", timeout=10)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/plain"), r.text[:200]
    out = {}
    for fam in text_string_to_metric_families(r.text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def total(samples, name: str, **labels: str) -> float:
    return sum(v for (n, lv), v in samples.items()
               if n == name and all(dict(lv).get(k) == val for k, val in labels.items()))


def test_metrics_move_with_changes_and_traffic(bed):
    bed.start_controller()
    c1 = bed.add_chassis("c1")
    assert c1.wait_connected(timeout=30), bed.diagnostics()
    net, _ = bed.api.network_with_subnet("metrics", "10.91.0.0/24")
    p1, p2 = bed.api.port(net), bed.api.port(net)
    vm1, vm2 = bed.add_vm(c1, p1), bed.add_vm(c1, p2)
    assert bed.wait_port_status(p1) and bed.wait_port_status(p2)
    before = scrape(bed)
    assert total(before, "tenantflow_switch_connected", chassis="c1") == 1
    assert total(before, "tenantflow_datapath_healthy", chassis="c1") == 1
    assert total(before, "tenantflow_desired_flows", chassis="c1") > 10
    assert total(before, "tenantflow_bundle_commit_seconds_count") >= 1
    assert total(before, "tenantflow_compile_seconds_count", datapath=next(
        dict(lv)["datapath"] for (n, lv) in before if n == "tenantflow_desired_flows")) >= 1
    assert total(before, "tenantflow_feed_lag_revisions") >= 0
    # the process's own: its RSS, the cyclic GC, and what serve froze out of it after the connect
    assert total(before, "process_resident_memory_bytes") > 10e6
    assert ("python_gc_collections_total", (("generation", "2"),)) in before
    assert total(before, "tenantflow_gc_frozen_objects") > 0

    # a change: one more port with a VM → flow-mods and bundles go up, desired flows too
    p3 = bed.api.port(net)
    bed.add_vm(c1, p3)
    assert bed.wait_port_status(p3)
    assert eventually(lambda: total(scrape(bed), "tenantflow_flow_mods_total", chassis="c1")
                      > total(before, "tenantflow_flow_mods_total", chassis="c1"))
    after = scrape(bed)
    assert total(after, "tenantflow_desired_flows", chassis="c1") > total(before, "tenantflow_desired_flows",
                                                                           chassis="c1")
    assert total(after, "tenantflow_api_requests_total", method="POST", resource="ports", status="201") >= 3

    # traffic: ARP answered in the switch (issue 14): no ARP packet-in outcome is counted
    answered = total(after, "tenantflow_packet_in_outcomes_total", app="arp", outcome="answered")
    out = ""
    for _ in range(5):
        out = arping(vm1, vm2.ip)
        if vm2.mac.lower() in out.lower():
            break
    assert vm2.mac.lower() in out.lower(), out
    assert total(scrape(bed), "tenantflow_packet_in_outcomes_total", app="arp", outcome="answered") == answered

    # DHCP: a lease the controller ACKed is counted until it is released or runs out
    from tests.integration.test_dhcp_clients import udhcpc
    leases = total(scrape(bed), "tenantflow_dhcp_active_leases")
    p4 = bed.api.port(net)
    vm4 = bed.add_vm(c1, p4, ip=False)
    assert bed.wait_port_status(p4)
    ok, lease = udhcpc(vm4)
    assert ok and lease["ip"] == p4["fixed_ips"][0]["ip_address"], lease
    assert eventually(lambda: total(scrape(bed), "tenantflow_dhcp_active_leases") == leases + 1)
    assert total(scrape(bed), "tenantflow_packet_in_outcomes_total", app="dhcp", outcome="ack") >= 1
    assert total(scrape(bed), "tenantflow_packet_ins_total", chassis="c1") > 0

    # a bad request is counted with its status, never as a 500
    assert requests.get(bed.controller.api_url + "/v2.0/ports/nope", timeout=5).status_code == 404
    assert total(scrape(bed), "tenantflow_api_requests_total", method="GET", resource="ports", status="404") >= 1


def test_status_shows_each_switch(bed):
    bed.start_controller()
    c1 = bed.add_chassis("c1")
    assert c1.wait_connected(timeout=30), bed.diagnostics()
    res = subprocess.run([tenantflow_bin(), "status", "--check", "-f", "json", "--url", bed.controller.api_url],
                         capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stdout + res.stderr
    body = json.loads(res.stdout)
    [sw] = [s for s in body["switches"] if s["chassis"] == "c1"]
    assert sw["connected"] and sw["healthy"] and sw["desired"] == sw["installed"] > 0
    assert body["feed_lag"] == 0 or body["feed_lag"] is not None
    text = subprocess.run([tenantflow_bin(), "status", "--url", bed.controller.api_url],
                          capture_output=True, text=True, timeout=30).stdout
    assert "CHASSIS" in text and "c1" in text
