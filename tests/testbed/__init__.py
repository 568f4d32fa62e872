"""tenantflow's multi-chassis test bed: real OVS instances in network namespaces on one machine.

Integration tests get a fresh bed from the `bed` fixture (tests/integration/conftest.py) and
run inside a dedicated netns (`scripts/netns-run tf-test -- ...`; `make test` does it), so no
test traffic touches the host's interfaces. Every command has a timeout; teardown removes all
the bed made, even after a failure (leftovers of killed runs: `scripts/cleanup-testbeds`).

Typical test::

    import pytest
    pytestmark = pytest.mark.integration

    def test_same_network_pings(bed):
        bed.start_controller()                          # tenantflow serve, API + OpenFlow
        c1, c2 = bed.add_chassis("c1"), bed.add_chassis("c2")   # node init runs for each
        t1 = bed.api.as_project("tenant1")
        net, sub = t1.network_with_subnet("n1", "10.0.0.0/24")
        p1, p2 = t1.port(net), t1.port(net)
        vm1 = bed.add_vm(c1, p1)                        # IP/prefix/MTU from the API
        vm2 = bed.add_vm(c2, p2)
        assert c1.wait_connected() and c2.wait_connected()
        assert bed.wait_port_status(p1) and bed.wait_port_status(p2)   # bound -> ACTIVE
        assert vm1.ping_ok(vm2.ip)
        assert vm1.tcp_works(vm2, port=5001)

API summary
-----------
Bed (also a context manager: ``with Bed("label") as bed: ...``):
  start_controller(extra_args=(), env=None) -> Controller   (.api_url, .ofp_port, .log_path)
  stop_controller(sig=SIGTERM) -> rc;  restart_controller();  api -> NeutronClient
  add_chassis(name, tunnel=True, bridge_mappings=None, init=None) -> Chassis
  add_vm(chassis, port, ip=True, gateway=False, mtu=None, name=None) -> Host
  move_vm(vm, chassis); unplug_vm(vm); fake_port(ip=None) -> port-like dict (no API)
  wait_port_status(port, status="ACTIVE", timeout=15) -> bool
  add_physical_switch(name="phys") -> PhysicalSwitch  (.add_host(name, vlan, ip, gateway))
  tcpdump(ns_or_obj, iface, filter="", count=10, timeout=5) -> Capture (.wait() -> lines)
  underlay_ns; mgmt_gw; prefix; workdir; diagnostics(); close()
Chassis: name, ns, tunnel_ip, mgmt_ip, underlay_port, bridge_mappings, env, ovs (OvsInstance),
  ovs_vsctl(*a), ofctl(*a) (-O OpenFlow13), appctl(*a), run(cmd), dump_flows(bridge, *filters),
  controller_connected(), wait_connected(timeout), wait_flow(text, bridge, timeout) -> bool,
  node_init(extra_args)
wait_until(predicate, timeout=10, interval=0.1) -> bool   (bounded polling)
Host (VMs and outside hosts): name, ns, mac, ip, port, chassis, tap, run(cmd, check, timeout),
  popen(cmd), set_ip(cidr, gw), ping(ip, count, timeout) -> bool, ping_ok(ip, tries),
  nc_listen(port, udp) -> Listener, nc_send(ip, port, data, udp) -> bool,
  tcp_works(server, port) -> bool, udp_works(server, port) -> bool, dhclient(), udhcpc()
NeutronClient: get/post/put/delete(path, ...), create(coll, **f), show, update, list(coll, **filters),
  remove, network_with_subnet(name, cidr, **net_fields), port(net, **f), as_project(p, admin=False);
  errors raise NeutronApiError(.status, .type, .message, .detail)
"""
from .api import NeutronApiError, NeutronClient
from .bed import Bed, Chassis
from .capture import Capture
from .controller import Controller, serve_implemented
from .hosts import Host, Listener
from .ovs import OvsInstance, missing_binaries
from .physical import PhysicalSwitch
from .proc import CommandError, run, wait_until

__all__ = ["Bed", "Chassis", "Host", "Listener", "Capture", "Controller", "NeutronClient",
           "NeutronApiError", "OvsInstance", "PhysicalSwitch", "CommandError", "run",
           "missing_binaries", "serve_implemented", "wait_until"]
