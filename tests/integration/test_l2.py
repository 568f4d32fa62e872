"""L2 acceptance (issue 3) with real packets through real OVS: two tenants, one chassis.

Tenant A and tenant B each have a network with subnet 10.0.0.0/24 and VMs with the SAME IPs
(10.0.0.11, 10.0.0.12), all on one chassis. Proven here: pings inside a network pass, nothing
crosses between the networks (not even a frame sent straight to the other tenant's MAC), a
port's creation/deletion touches only the flows of that port (its cookie) plus its network's
flood flows (and security groups it is in), admin_state_up=false stops a port's traffic, and a
port turns ACTIVE when its tap appears.

The helpers at the top are shared by the other L2/overlay acceptance modules (test_restart,
test_eventlet, test_overlay, test_port_move, test_provider_vlan).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import pytest

from tests.testbed import Bed, Chassis, Host, NeutronApiError, serve_implemented, wait_until

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not serve_implemented(), reason="tenantflow serve not implemented yet")]

OWNER_SHIFT = 56                # flows.tables.OWNER_SHIFT: cookie = kind << 56 | key
LEARNED_KIND = 8                # flows.tables.Owner.LEARNED
_COOKIE = re.compile(r"cookie=(0x[0-9a-f]+)")


# ------------------------------------------------------------------ shared helpers
def eventually(fn: Callable[[], Any], timeout: float = 15.0, interval: float = 0.3) -> bool:
    """Bounded polling: the controller converges asynchronously after every API write."""
    return wait_until(fn, timeout, interval)


def stats(bed: Bed) -> dict[str, Any]:
    """The controller's counters (controller/inspect.py): per datapath flow_mods, resyncs, ..."""
    return bed.api.get("tenantflow/stats")


def chassis_stats(bed: Bed, ch: Chassis) -> dict[str, Any]:
    for dp in stats(bed)["datapaths"].values():
        if dp.get("chassis") == ch.name:
            return dp
    raise AssertionError(f"controller has no datapath for chassis {ch.name}: {stats(bed)}")


def flows_diff(bed: Bed, ch: Chassis) -> dict[str, Any]:
    """Desired vs installed on the switch, as the controller sees it (`tenantflow flows --diff`).

    Not in sync while the controller has not seen the chassis yet (404 ChassisNotFound, e.g. just
    after a restart, when OVS already reports the connection but the registry has no datapath),
    or knows it but has not taken its connection in yet (409: a restart compiling the chassis
    from the port cache takes the connect in after that compile)."""
    try:
        return bed.api.get("tenantflow/flows", chassis=ch.name, diff="true")["diff"]
    except NeutronApiError as err:
        if err.status != 404 and not (err.status == 409 and "not connected" in str(err)):
            raise
        return {"in_sync": False, "error": str(err)}


def settle(bed: Bed, chassis: Iterable[Chassis], timeout: float = 20.0) -> None:
    """Wait until the controller is idle and every chassis' switch holds exactly its desired
    flows, so that a following dump-flows comparison is not racing a bundle in flight."""
    chassis = list(chassis)
    last: list[Any] = [None]

    def done() -> bool:
        st = stats(bed)
        if not st.get("idle"):
            last[0] = None
            return False
        if not all(flows_diff(bed, ch)["in_sync"] for ch in chassis):
            last[0] = None
            return False
        # Stable over two polls: an API write just made may not have reached the feed yet.
        mark = (st.get("revision"), st.get("batches"))
        stable = last[0] == mark
        last[0] = mark
        return stable

    assert eventually(done, timeout, 0.4), (
        f"flows not in sync after {timeout}s: "
        f"{ {ch.name: flows_diff(bed, ch) for ch in chassis} }\n{bed.diagnostics()}")


def owner_cookie(bed: Bed, ch: Chassis, kind: str, obj_id: str) -> int | None:
    """Cookie of object `obj_id` (kind: port|network|sg) on chassis `ch`, read from the
    controller's desired flows; None when the object has no flows there."""
    body = bed.api.get("tenantflow/flows", chassis=ch.name, owner_type=kind, owner_id=obj_id)
    for item in body["flows"]:
        return int(item["owner"]["cookie"], 16)
    return None


def cookie_of(line: str) -> int:
    m = _COOKIE.search(line)
    return int(m.group(1), 16) if m else 0


def flows_by_cookie(ch: Chassis, *filters: str) -> dict[int, set[str]]:
    """br-int flows (no stats) grouped by cookie; LEARNED flows left out (the datapath makes
    them, they come and go with traffic)."""
    out: dict[int, set[str]] = {}
    for line in ch.dump_flows(None, *filters):
        ck = cookie_of(line)
        if ck >> OWNER_SHIFT == LEARNED_KIND:
            continue
        out.setdefault(ck, set()).add(line)
    return out


def all_lines(by_cookie: dict[int, set[str]]) -> set[str]:
    return set().union(*by_cookie.values()) if by_cookie else set()


def static_neigh(vm: Host, ip: str, mac: str) -> None:
    """A permanent ARP entry: lets a test send a frame straight to a MAC, bypassing ARP."""
    vm.run(["ip", "neigh", "replace", ip, "lladdr", mac, "dev", "eth0", "nud", "permanent"])


def neigh_mac(vm: Host, ip: str) -> str | None:
    out = vm.run(["ip", "neigh", "show", ip, "dev", "eth0"], check=False).stdout.split()
    return out[out.index("lladdr") + 1].lower() if "lladdr" in out else None


def fixed_ip(subnet: dict[str, Any], ip: str) -> list[dict[str, str]]:
    return [{"subnet_id": subnet["id"], "ip_address": ip}]


def allow_icmp_in(api, port: dict[str, Any]) -> None:
    """Ingress ICMP from anywhere on the port's groups (for outside hosts that are not group
    members; harmless when security groups are not enforced)."""
    for sg in port.get("security_groups") or []:
        try:
            api.create("security-group-rules", security_group_id=sg, direction="ingress",
                       ethertype="IPv4", protocol="icmp", remote_ip_prefix="0.0.0.0/0")
        except NeutronApiError as exc:
            if exc.status != 409:      # already there (several ports share a group)
                raise


@dataclass
class TwoTenants:
    """Tenant A and B: same CIDR, same IPs, VMs a1/a2 and b1/b2."""
    bed: Bed
    ch: Chassis
    api_a: Any
    api_b: Any
    net_a: dict[str, Any]
    net_b: dict[str, Any]
    sub_a: dict[str, Any]
    sub_b: dict[str, Any]
    a1: Host
    a2: Host
    b1: Host
    b2: Host


def two_tenants_one_chassis(bed: Bed, env: dict[str, str] | None = None) -> TwoTenants:
    """Controller + one chassis + two tenants with identical subnets and IPs (four VMs)."""
    bed.start_controller(env=env)
    ch = bed.add_chassis("c1", tunnel=False)
    assert ch.wait_connected(timeout=20), bed.diagnostics()
    api_a, api_b = bed.api.as_project("tenant-a"), bed.api.as_project("tenant-b")
    net_a, sub_a = api_a.network_with_subnet("net-a", "10.0.0.0/24")
    net_b, sub_b = api_b.network_with_subnet("net-b", "10.0.0.0/24")
    vms = []
    for api, net, sub, tag in ((api_a, net_a, sub_a, "a"), (api_b, net_b, sub_b, "b")):
        for i in (1, 2):
            port = api.port(net, name=f"{tag}{i}", fixed_ips=fixed_ip(sub, f"10.0.0.1{i}"))
            vms.append(bed.add_vm(ch, port, name=f"{tag}{i}"))
    for vm in vms:
        assert bed.wait_port_status(vm.port), f"port of {vm.name} never ACTIVE"
    return TwoTenants(bed, ch, api_a, api_b, net_a, net_b, sub_a, sub_b, *vms)


def assert_two_tenant_l2(t: TwoTenants) -> None:
    """Same network pings pass; across tenants nothing passes (identical IPs, direct MACs)."""
    bed = t.bed
    assert t.a1.ip == t.b1.ip and t.a2.ip == t.b2.ip, "tenants must use identical IPs"
    assert eventually(lambda: t.a1.ping(t.a2.ip, count=1, timeout=2)), bed.diagnostics()
    assert eventually(lambda: t.b1.ping(t.b2.ip, count=1, timeout=2)), bed.diagnostics()
    assert t.a2.ping(t.a1.ip) and t.b2.ping(t.b1.ip)
    # ARP resolved inside the tenant: a1 knows a2's MAC for 10.0.0.12, never b2's.
    assert neigh_mac(t.a1, t.a2.ip) == t.a2.mac.lower()
    assert neigh_mac(t.b1, t.b2.ip) == t.b2.mac.lower()
    # Frames straight to the other tenant's MAC (static ARP) are dropped.
    static_neigh(t.a1, "10.0.0.99", t.b2.mac)
    static_neigh(t.b1, "10.0.0.98", t.a2.mac)
    try:
        cap = bed.tcpdump(t.b2, "eth0", "icmp", count=1, timeout=3)
        assert not t.a1.ping("10.0.0.99", count=3, timeout=2)
        assert not cap.wait(), "tenant A's ICMP reached tenant B's VM"
        assert not t.b1.ping("10.0.0.98", count=2, timeout=2)
    finally:
        t.a1.run(["ip", "neigh", "del", "10.0.0.99", "dev", "eth0"], check=False)
        t.b1.run(["ip", "neigh", "del", "10.0.0.98", "dev", "eth0"], check=False)
    # A broadcast of tenant A is not seen by tenant B.
    cap = bed.tcpdump(t.b1, "eth0", "icmp", count=1, timeout=3)
    t.a1.run(["ping", "-b", "-n", "-c", "3", "-i", "0.2", "-w", "2", "10.0.0.255"], check=False,
             timeout=10)
    assert not cap.wait(), "tenant A's broadcast reached tenant B"


# ------------------------------------------------------------------ fixture
@pytest.fixture(scope="module")
def topo(module_bed: Bed) -> TwoTenants:
    try:
        return two_tenants_one_chassis(module_bed)
    except BaseException:
        print(module_bed.diagnostics())
        raise


# ------------------------------------------------------------------ tests
def test_ports_active_when_taps_appear(topo: TwoTenants) -> None:
    for vm in (topo.a1, topo.a2, topo.b1, topo.b2):
        port = topo.bed.api.show("ports", vm.port["id"])
        assert port["status"] == "ACTIVE"
        assert port["binding:host_id"] == topo.ch.name


def test_same_network_passes_other_tenant_blocked(topo: TwoTenants) -> None:
    assert_two_tenant_l2(topo)
    assert topo.a1.tcp_works(topo.a2, port=5001)
    assert topo.b2.tcp_works(topo.b1, port=5001)


def test_port_create_and_delete_touch_only_its_flows(topo: TwoTenants) -> None:
    bed, ch, api = topo.bed, topo.ch, topo.api_a
    settle(bed, [ch])
    before = flows_by_cookie(ch)
    mods_before = chassis_stats(bed, ch)["flow_mods"]

    port = api.port(topo.net_a, name="a3", fixed_ips=fixed_ip(topo.sub_a, "10.0.0.13"))
    assert port["status"] == "DOWN"
    vm = bed.add_vm(ch, port, name="a3")
    assert bed.wait_port_status(port), "port not ACTIVE after its tap appeared"
    settle(bed, [ch])
    after = flows_by_cookie(ch)
    mods_add = chassis_stats(bed, ch)["flow_mods"] - mods_before

    port_ck = owner_cookie(bed, ch, "port", port["id"])
    net_ck = owner_cookie(bed, ch, "network", topo.net_a["id"])
    assert port_ck is not None and net_ck is not None
    allowed = {port_ck, net_ck} | {c for c in (owner_cookie(bed, ch, "sg", sg)
                                                for sg in port.get("security_groups") or []) if c}
    added = all_lines(after) - all_lines(before)
    removed = all_lines(before) - all_lines(after)
    assert after.get(port_ck), "the new port has no flows on the switch"
    assert port_ck not in before
    stray = {ln for ln in added | removed if cookie_of(ln) not in allowed}
    assert not stray, f"creating a port changed flows of other owners: {sorted(stray)}"
    assert 0 < mods_add <= len(added) + len(removed), \
        f"{mods_add} flow-mods for {len(added)} added + {len(removed)} removed flows"
    # Other ports' flows untouched: every cookie but the allowed ones is identical.
    for ck in set(before) | set(after):
        if ck not in allowed:
            assert before.get(ck) == after.get(ck), f"cookie {ck:#x} changed"
    assert eventually(lambda: vm.ping(topo.a1.ip, count=1, timeout=2))

    # Delete: its flows go, nothing else of other owners changes.
    mods_before = chassis_stats(bed, ch)["flow_mods"]
    bed.unplug_vm(vm)
    api.remove("ports", port["id"])
    settle(bed, [ch])
    final = flows_by_cookie(ch)
    assert port_ck not in final, f"flows of the deleted port remain: {final.get(port_ck)}"
    stray = {ln for ln in all_lines(final) ^ all_lines(after) if cookie_of(ln) not in allowed}
    assert not stray, f"deleting a port changed flows of other owners: {sorted(stray)}"
    assert chassis_stats(bed, ch)["flow_mods"] - mods_before > 0
    assert all_lines(final) == all_lines(before), (
        "after create+delete the flows differ from before: "
        f"+{sorted(all_lines(final) - all_lines(before))} -{sorted(all_lines(before) - all_lines(final))}")
    assert topo.a1.ping(topo.a2.ip)


def test_admin_state_down_port_carries_no_traffic(topo: TwoTenants) -> None:
    bed, api = topo.bed, topo.api_a
    assert eventually(lambda: topo.a1.ping(topo.a2.ip, count=1, timeout=2))
    api.update("ports", topo.a2.port["id"], admin_state_up=False)
    try:
        assert eventually(lambda: not topo.a1.ping(topo.a2.ip, count=1, timeout=1), 10), \
            "port with admin_state_up=false still answers"
        assert not topo.a2.ping(topo.a1.ip, count=2, timeout=2)
        assert topo.b1.ping(topo.b2.ip), "the other tenant is affected"
    finally:
        api.update("ports", topo.a2.port["id"], admin_state_up=True)
    assert eventually(lambda: topo.a1.ping(topo.a2.ip, count=1, timeout=2), 15), \
        f"admin_state_up=true did not restore traffic\n{bed.diagnostics()}"
