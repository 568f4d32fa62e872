"""The test bed itself works: OVS per chassis netns, underlay, VMs on br-int, outside switch.

These tests need no controller (except the last), so they show the bed is sound before any
controller test relies on it.
"""
from __future__ import annotations

import pytest

from tests.testbed import Bed, serve_implemented
from tests.testbed.ovs import pid_alive

pytestmark = pytest.mark.integration


def test_two_chassis_underlay_and_local_vms(bed: Bed) -> None:
    c1 = bed.add_chassis("c1", init=False)
    c2 = bed.add_chassis("c2", init=False)

    # Each chassis runs its own OVS, in its own netns, with a userspace br-int.
    for ch in (c1, c2):
        assert ch.ovs.running()
        assert ch.ovs_vsctl("get", "bridge", "br-int", "datapath_type") == "netdev"
        assert "br-phy" in ch.run(["ip", "-br", "addr"]).stdout
    assert c1.ovs.rundir != c2.ovs.rundir

    # Underlay: the tunnel endpoint IPs (on br-phy) reach each other, and only via the underlay.
    assert c1.tunnel_ip and c2.tunnel_ip and c1.tunnel_ip != c2.tunnel_ip
    assert c1.run(["ping", "-c", "2", "-i", "0.2", "-w", "5", c2.tunnel_ip], check=False
                  ).returncode == 0

    # Two VMs on c1; br-int is fail_mode=secure with no flows: nothing passes.
    vm1 = bed.add_vm(c1, bed.fake_port(), ip="192.168.50.1/24", name="a")
    vm2 = bed.add_vm(c1, bed.fake_port(), ip="192.168.50.2/24", name="b")
    assert vm1.tap in c1.ovs_vsctl("list-ports", "br-int")
    assert c1.ovs_vsctl("get", "interface", vm1.tap, "external_ids:iface-id") \
        == f'"{vm1.port["id"]}"'
    assert not vm1.ping("192.168.50.2", count=1, timeout=1)

    # With a NORMAL flow they ping and talk TCP (TX checksum offload is off on the veths).
    c1.ofctl("add-flow", "br-int", "priority=1,actions=NORMAL")
    assert vm1.ping_ok(vm2.ip)
    assert vm1.tcp_works(vm2, port=5001)
    assert vm2.udp_works(vm1, port=5002)

    # Remove it again: traffic stops (the check can fail).
    c1.ofctl("del-flows", "br-int")
    assert not vm1.ping(vm2.ip, count=1, timeout=1)


def test_vxlan_between_chassis_by_hand(bed: Bed) -> None:
    """OVS native tunnelling over the bed's underlay, with hand-written flows, seen on the wire."""
    c1 = bed.add_chassis("c1", init=False)
    c2 = bed.add_chassis("c2", init=False)
    vms = []
    for ch, other, ip in ((c1, c2, "192.168.60.1/24"), (c2, c1, "192.168.60.2/24")):
        ch.ovs_vsctl("add-port", "br-int", "vx0", "--", "set", "interface", "vx0", "type=vxlan",
                     "options:remote_ip=flow", "options:key=flow",
                     f"options:local_ip={ch.tunnel_ip}", "ofport_request=100")
        vm = bed.add_vm(ch, bed.fake_port(), ip=ip, name=f"v{ch.name}")
        vms.append(vm)
        vm_ofport = ch.ovs_vsctl("get", "interface", vm.tap, "ofport")
        ch.ofctl("add-flow", "br-int",
                 f"in_port={vm_ofport},actions=set_field:77->tun_id,"
                 f"set_field:{other.tunnel_ip}->tun_dst,output:100")
        ch.ofctl("add-flow", "br-int", f"in_port=100,tun_id=77,actions=output:{vm_ofport}")

    cap = bed.tcpdump(bed.underlay_ns, c1.underlay_port, "udp port 4789", count=2, timeout=8)
    assert vms[0].ping_ok(vms[1].ip)
    lines = cap.wait()
    assert lines, "no VXLAN packet seen on the underlay"
    assert any("vni 77" in ln for ln in lines), lines
    assert vms[0].tcp_works(vms[1], port=5003)


def test_physical_switch_vlan_access(bed: Bed) -> None:
    """An outside VLAN switch: a trunk to a chassis uplink and access ports for outside hosts."""
    sw = bed.add_physical_switch("phys")
    ch = bed.add_chassis("c1", tunnel=False, init=False, bridge_mappings={"physnet1": sw})
    assert ch.bridge_mappings == {"physnet1": "ph-physnet1"}
    assert "ph-physnet1" in ch.ovs_vsctl("list-ports", "br-int")
    h10 = sw.add_host("h10", vlan=10, ip="192.168.70.10/24")
    h10b = sw.add_host("h10b", vlan=10, ip="192.168.70.11/24")
    h20 = sw.add_host("h20", vlan=20, ip="192.168.70.20/24")
    assert h10.ping_ok(h10b.ip)
    assert not h10.ping(h20.ip, count=1, timeout=1)

    # A VM on the chassis bridged to the uplink with VLAN 10 pushed/popped reaches h10.
    vm = bed.add_vm(ch, bed.fake_port(), ip="192.168.70.1/24", name="vm")
    vm_of = ch.ovs_vsctl("get", "interface", vm.tap, "ofport")
    up_of = ch.ovs_vsctl("get", "interface", "ph-physnet1", "ofport")
    ch.ofctl("add-flow", "br-int", f"in_port={vm_of},actions=push_vlan:0x8100,"
             f"set_field:{0x1000 | 10}->vlan_vid,output:{up_of}")
    ch.ofctl("add-flow", "br-int", f"in_port={up_of},dl_vlan=10,actions=pop_vlan,output:{vm_of}")
    cap = bed.tcpdump(sw.ns, sw.trunks["c1"], "vlan 10", count=1, timeout=8)
    assert vm.ping_ok(h10.ip)
    assert cap.wait(), "no VLAN 10 frame on the trunk"
    assert not vm.ping(h20.ip, count=1, timeout=1)


@pytest.mark.skipif(not serve_implemented(), reason="tenantflow serve not implemented yet "
                    "(controller.serve or topology.cli.main missing)")
def test_chassis_connects_to_controller(bed: Bed) -> None:
    bed.start_controller()
    ch = bed.add_chassis("c1")              # runs tenantflow node init
    assert ch.wait_connected(timeout=20), bed.diagnostics()
    assert ch.ovs_vsctl("get", "bridge", "br-int", "fail_mode") == "secure"
    # node init: a restarted controller is retried within 1 s, not OVS's default 8 s backoff
    assert ch.ovs_vsctl("--bare", "--columns=max_backoff", "list", "controller").split() == ["1000"]
    # out-of-band as Neutron's agent sets it: no hidden in-band flows on br-int
    assert ch.ovs_vsctl("--bare", "--columns=connection_mode", "list", "controller").split() == ["out-of-band"]
    names = [c["name"] for c in bed.api.list("chassis")]
    assert "c1" in names


def test_bed_teardown_removes_everything() -> None:
    from tests.testbed import netns
    with Bed("teardown-check") as b:
        ch = b.add_chassis("c1", init=False)
        b.add_vm(ch, b.fake_port(), ip="192.168.80.1/24")
        made = list(b.namespaces)
        pidfile = ch.ovs.rundir / "ovs-vswitchd.pid"
        pid = int(pidfile.read_text())
        assert all(netns.exists(ns) for ns in made)
    assert not any(netns.exists(ns) for ns in made)
    assert not any(ln.startswith(b.prefix) for ln in netns.links(None))
    assert not b.workdir.exists()
    assert not pid_alive(pid), f"ovs-vswitchd pid {pid} survived teardown"


def test_cleanup_removes_leftovers_of_a_killed_run(tmp_path) -> None:
    """A bed whose owner died by SIGKILL (no teardown) is removed by scripts/cleanup-testbeds."""
    import json
    import signal
    import subprocess
    import sys
    import time

    from tests.testbed import netns
    from tests.testbed.bed import REPO_ROOT, WORKROOT

    script = ("from tests.testbed import Bed\n"
              "b = Bed('killed-run')\n"
              "c = b.add_chassis('c1', init=False)\n"
              "b.add_vm(c, b.fake_port(), ip='192.168.90.1/24')\n"
              "print(b.prefix, flush=True)\n"
              "import time; time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO_ROOT, text=True,
                            stdout=subprocess.PIPE)
    try:
        prefix = proc.stdout.readline().strip()
        assert prefix.startswith("tf"), prefix
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    workdir = WORKROOT / prefix
    owner = json.loads((workdir / "owner.json").read_text())
    vswitchd = int((workdir / "c1" / "ovs-vswitchd.pid").read_text())
    assert all(netns.exists(ns) for ns in owner["namespaces"])
    assert pid_alive(vswitchd)

    res = subprocess.run([str(REPO_ROOT / "scripts/cleanup-testbeds")], capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert not any(netns.exists(ns) for ns in owner["namespaces"])
    assert not any(ln.startswith(prefix) for ln in netns.links(None))
    assert not workdir.exists()
    deadline = time.monotonic() + 5
    while pid_alive(vswitchd) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not pid_alive(vswitchd)


def test_ovs_add_ports_in_one_raw_transaction(bed: Bed) -> None:
    """OvsInstance.add_ports (bench_scale --tap-type patch): every port has its ofport once it
    returns, patch ports without a peer included; a bad transaction raises and adds nothing."""
    ch = bed.add_chassis("c1", init=False)
    names = [f"tapbench{i:04d}" for i in range(200)]
    ch.ovs.add_ports("br-int", names, "patch")
    ofports = ch.ovs_vsctl("--bare", "--columns=name,ofport", "find", "Interface", "type=patch").split()
    got = dict(zip(ofports[0::2], ofports[1::2]))
    assert set(names) <= set(got)
    assert all(int(got[n]) > 0 for n in names)
    with pytest.raises(RuntimeError, match="ovsdb transact failed"):
        ch.ovs.add_ports("br-int", ["tapbench0000"], "patch")  # duplicate name: a constraint error
    assert ch.ovs_vsctl("list-ports", "br-int").split().count("tapbench0000") == 1
