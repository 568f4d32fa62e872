"""Security groups with real traffic: VMs in namespaces on real OVS, controller-made flows.

Every "blocked" assertion follows a "works" assertion through the same flows (a positive
control), so a blocked result is never just "flows not there yet".
"""
from __future__ import annotations

import re
import time

import pytest

from tests.integration.test_security_helpers import (conntrack, eventually, fresh_network, group, ping,
                                                     rule, start, tcp, udp, vm_port)
from tests.testbed import serve_implemented

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not serve_implemented(), reason="tenantflow serve not implemented yet")]


@pytest.fixture(scope="module")
def env(module_bed):
    c1, c2 = start(module_bed)
    return module_bed, c1, c2


def test_tcp_udp_icmp_allowed_and_blocked_per_rule(env):
    bed, c1, c2 = env
    api = bed.api
    net, _ = fresh_network(api, "sg-rules")
    client, server = group(api, "client"), group(api, "server", egress_any=False)
    rule(api, server, "ingress", "tcp", (5001, 5001))
    rule(api, server, "ingress", "udp", (5002, 5002))
    icmp_rule = rule(api, server, "ingress", "icmp", (8, None))
    a = bed.add_vm(c1, vm_port(api, net, [client]))
    b = bed.add_vm(c2, vm_port(api, net, [server]))
    assert eventually(lambda: tcp(a, b, 5001)), bed.diagnostics()
    assert not tcp(a, b, 5003)
    assert udp(a, b, 5002)
    assert not udp(a, b, 5004)
    assert eventually(lambda: ping(a, b))
    api.remove("security-group-rules", icmp_rule["id"])
    assert eventually(lambda: not ping(a, b)), "ping still passes after its rule was deleted"
    assert tcp(a, b, 5001)  # the other rules are untouched


def test_egress_rules_limit_what_a_vm_sends(env):
    bed, c1, c2 = env
    api = bed.api
    net, _ = fresh_network(api, "sg-egress")
    limited, open_ = group(api, "limited", egress_any=False), group(api, "open")
    rule(api, limited, "egress", "tcp", (5001, 5001))
    rule(api, open_, "ingress")
    a = bed.add_vm(c1, vm_port(api, net, [limited]))
    b = bed.add_vm(c1, vm_port(api, net, [open_]))  # same chassis: egress and ingress both local
    assert eventually(lambda: tcp(a, b, 5001)), bed.diagnostics()
    assert not tcp(a, b, 5003)
    assert not ping(a, b)  # ICMP is not in a's egress rules
    assert not ping(b, a)  # and a admits nothing new (no ingress rule)


def test_stateful_reply_passes_new_connection_from_other_side_blocked(env):
    bed, c1, c2 = env
    api = bed.api
    net, _ = fresh_network(api, "sg-state")
    client = group(api, "client")                      # egress any, no ingress at all
    server = group(api, "server", egress_any=False)    # ingress tcp 5001, no egress at all
    rule(api, server, "ingress", "tcp", (5001, 5001))
    a = bed.add_vm(c1, vm_port(api, net, [client]))
    b = bed.add_vm(c2, vm_port(api, net, [server]))
    # tcp_works needs the SYN-ACK and ACKs back: replies pass with no rule for them
    assert eventually(lambda: tcp(a, b, 5001)), bed.diagnostics()
    assert not tcp(b, a, 5001), "server opened a connection to the client"
    assert not ping(b, a)


def test_remote_ip_prefix(env):
    bed, c1, c2 = env
    api = bed.api
    net, _ = fresh_network(api, "sg-prefix")
    client, server = group(api, "client"), group(api, "server")
    pa = vm_port(api, net, [client])
    rule(api, server, "ingress", "tcp", (5001, 5001),
         remote_ip_prefix=pa["fixed_ips"][0]["ip_address"] + "/32")
    a = bed.add_vm(c1, pa)
    other = bed.add_vm(c1, vm_port(api, net, [client]))
    b = bed.add_vm(c2, vm_port(api, net, [server]))
    assert eventually(lambda: tcp(a, b, 5001)), bed.diagnostics()
    assert not tcp(other, b, 5001)


def test_remote_group_membership_change_both_ways(env):
    bed, c1, c2 = env
    api = bed.api
    net, _ = fresh_network(api, "sg-remote")
    client, friends, server = group(api, "client"), group(api, "friends"), group(api, "server")
    rule(api, server, "ingress", "tcp", (5001, 5001), remote_group_id=friends["id"])
    rule(api, server, "ingress", "tcp", (5005, 5005))  # control: open to anyone
    pa = vm_port(api, net, [client])
    a = bed.add_vm(c1, pa)
    b = bed.add_vm(c2, vm_port(api, net, [server]))
    assert eventually(lambda: tcp(a, b, 5005)), bed.diagnostics()
    assert not tcp(a, b, 5001), "allowed before joining the remote group"
    api.update("ports", pa["id"], security_groups=[client["id"], friends["id"]])
    assert eventually(lambda: tcp(a, b, 5001)), "joining the remote group did not open the port"
    api.update("ports", pa["id"], security_groups=[client["id"]])
    assert eventually(lambda: not tcp(a, b, 5001)), "leaving the remote group did not close the port"
    assert tcp(a, b, 5005)


def test_default_group_members_talk_others_do_not(env):
    bed, c1, c2 = env
    api = bed.api.as_project("sg-default-tenant")
    net, _ = fresh_network(api, "sg-default")
    a = bed.add_vm(c1, api.port(net))          # no security_groups given: the project's default
    b = bed.add_vm(c2, api.port(net))
    outsider = bed.add_vm(c2, api.port(net, security_groups=[group(api, "outsider")["id"]]))
    assert eventually(lambda: ping(a, b) and ping(b, a)), bed.diagnostics()
    assert not ping(outsider, a)  # egress of outsider allowed, but a's default admits members only


def test_deleting_the_rule_cuts_a_running_tcp_connection(env):
    bed, c1, c2 = env
    api = bed.api
    net, _ = fresh_network(api, "sg-cut")
    client, server = group(api, "client"), group(api, "server")
    web = rule(api, server, "ingress", "tcp", (5010, 5010))
    rule(api, server, "ingress", "tcp", (5011, 5011))  # control port, stays open
    a = bed.add_vm(c1, vm_port(api, net, [client]))
    b = bed.add_vm(c2, vm_port(api, net, [server]))
    assert eventually(lambda: tcp(a, b, 5011)), bed.diagnostics()

    lst = b.nc_listen(5010, timeout=60)
    # one line every 0.1 s for at most 40 s, over ONE connection
    a.popen(["sh", "-c", f"for i in $(seq 1 400); do echo line$i; sleep 0.1; done | "
                         f"nc -n -w 45 {b.ip} 5010"])
    assert eventually(lambda: lst.received().count("line") >= 10, timeout=10), "stream never flowed"
    api.remove("security-group-rules", web["id"])

    def stalled() -> bool:
        before = lst.received().count("line")
        time.sleep(2.0)
        return lst.received().count("line") == before
    assert eventually(stalled, timeout=15), \
        f"stream still flowing after the rule was deleted\n{conntrack(c2)}"
    n = lst.received().count("line")
    time.sleep(3.0)
    assert lst.received().count("line") == n, "connection resumed"
    assert "mark=1" in conntrack(c2), conntrack(c2)
    assert tcp(a, b, 5011)  # other connections are unaffected


def _entries(table: str, src: str, dst: str) -> list[str]:
    """Conntrack entries (dpctl/dump-conntrack lines) of connections from `src` to `dst`."""
    return [ln for ln in table.splitlines() if f"orig=(src={src},dst={dst}," in ln]


def _trace(chassis, src, dst) -> str:
    """ofproto/trace of a TCP packet src → dst from src's tap (datapath actions, recirculations followed)."""
    return chassis.appctl("ofproto/trace", chassis.bridge,
                          f"in_port={src.tap},tcp,dl_src={src.mac},dl_dst={dst.mac},nw_src={src.ip},"
                          f"nw_dst={dst.ip},nw_ttl=64,tp_src=40000,tp_dst=5020", check=False)


def test_conntrack_only_for_secured_ports_and_no_commit_when_established(env):
    """Ports without port security leave no conntrack entry (they bypass ct() both ways); one
    sending to a secured port is tracked in that port's zone only, and its ingress rules
    apply. Packets of an established connection run on megaflows without ct(commit)."""
    bed, c1, c2 = env
    api = bed.api
    net, _ = fresh_network(api, "sg-ct")
    web = group(api, "web")
    rule(api, web, "ingress", "tcp", (5020, 5030))
    open_port = {"port_security_enabled": False, "security_groups": []}
    p, q = (bed.add_vm(c1, api.port(net, **open_port)) for _ in range(2))
    a, b = (bed.add_vm(c1, vm_port(api, net, [web])) for _ in range(2))
    assert eventually(lambda: tcp(p, q, 5020) and tcp(a, b, 5020)), bed.diagnostics()
    assert tcp(q, p, 5021) and tcp(p, a, 5022)
    assert not tcp(p, a, 5040), "a's ingress rules do not apply to a port without port security"
    table = conntrack(c1)
    assert not _entries(table, p.ip, q.ip) and not _entries(table, q.ip, p.ip), table
    assert _entries(table, a.ip, b.ip), table  # positive control: secured ports are tracked
    zones = {ln.split("zone=")[1].split(",")[0] for ln in _entries(table, p.ip, a.ip) if "zone=" in ln}
    assert len(zones) == 1, table  # a's zone only, not p's
    # an uncommitted ct() leaves no entry, so ask the switch what a packet does: p ↔ q no ct()
    for src, dst in ((p, q), (q, p)):
        assert "ct(" not in _trace(c1, src, dst), _trace(c1, src, dst)
    assert "ct(" in _trace(c1, a, b), _trace(c1, a, b)  # positive control

    lst = b.nc_listen(5025, timeout=40)
    a.popen(["sh", "-c", f"for i in $(seq 1 200); do echo line$i; sleep 0.1; done | nc -n -w 25 {b.ip} 5025"])
    assert eventually(lambda: lst.received().count("line") >= 20, timeout=15), "stream never flowed"
    dp = [ln for ln in c1.appctl("dpctl/dump-flows", check=False).splitlines() if "ct_state(" in ln]
    established = [ln for ln in dp if re.search(r"ct_state\([^)]*\+est", ln)]
    assert established, "\n".join(dp)  # positive control: the stream's megaflows are there
    recommits = [ln for ln in established if "ct(commit" in ln]
    assert not recommits, "established packets are committed again:\n" + "\n".join(recommits)
