"""IPAM: default gateway/pools, pool checks, allocator order, no duplicates under concurrency."""
from __future__ import annotations

import threading

import pytest

from topology.model import errors, ipam
from topology.store.backends import open_store
from topology.model.service import Service
from topology.store.sqlite import SqliteStore


def test_default_gateway_and_pools():
    assert ipam.default_gateway("10.0.0.0/24") == "10.0.0.1"
    assert ipam.default_pools("10.0.0.0/24", "10.0.0.1") == [{"start": "10.0.0.2", "end": "10.0.0.254"}]
    assert ipam.default_pools("10.0.0.0/24", "10.0.0.100") == [
        {"start": "10.0.0.1", "end": "10.0.0.99"}, {"start": "10.0.0.101", "end": "10.0.0.254"}]
    assert ipam.default_pools("10.0.0.0/24", None) == [{"start": "10.0.0.1", "end": "10.0.0.254"}]
    assert ipam.default_pools("10.0.0.0/30", "10.0.0.1") == [{"start": "10.0.0.2", "end": "10.0.0.2"}]


@pytest.mark.parametrize("pools,gateway,exc", [
    ([{"start": "10.0.0.10", "end": "10.0.0.5"}], "10.0.0.1", errors.InvalidAllocationPool),
    ([{"start": "10.0.0.0", "end": "10.0.0.5"}], "10.0.0.1", errors.InvalidAllocationPool),
    ([{"start": "10.0.0.250", "end": "10.0.0.255"}], "10.0.0.1", errors.InvalidAllocationPool),
    ([{"start": "10.0.1.1", "end": "10.0.1.5"}], "10.0.0.1", errors.InvalidAllocationPool),
    ([{"start": "10.0.0.2", "end": "10.0.0.9"}, {"start": "10.0.0.9", "end": "10.0.0.20"}], None,
     errors.InvalidAllocationPool),
    ([{"start": "10.0.0.1", "end": "10.0.0.9"}], "10.0.0.5", errors.GatewayConflictWithAllocationPools),
])
def test_bad_pools(pools, gateway, exc):
    with pytest.raises(exc) as info:
        ipam.check_pools("10.0.0.0/24", pools, gateway)
    assert info.value.status == 400


def test_allocator_lowest_free_and_reuse():
    subnet = {"id": "s", "cidr": "10.0.0.0/29", "allocation_pools": [{"start": "10.0.0.2", "end": "10.0.0.6"}]}
    alloc = ipam.SubnetAllocator(subnet, ["10.0.0.3"])
    assert [alloc.allocate() for _ in range(4)] == ["10.0.0.2", "10.0.0.4", "10.0.0.5", "10.0.0.6"]
    assert alloc.allocate() is None
    alloc.release("10.0.0.4")
    assert alloc.allocate() == "10.0.0.4"
    with pytest.raises(errors.IpAddressAlreadyAllocated):
        alloc.reserve("10.0.0.5")


def _net_subnet(svc, cidr="10.0.0.0/24"):
    net = svc.create("network", {"name": "n"})
    sub = svc.create("subnet", {"network_id": net["id"], "cidr": cidr, "enable_dhcp": False})
    return net, sub


def test_no_duplicates_under_concurrent_requests_shared_service(tmp_path):
    svc = Service(open_store(f"sqlite://{tmp_path}/ipam.db"))
    net, _ = _net_subnet(svc)
    results, failures = [], []

    def worker():
        for _ in range(15):
            try:
                results.append(svc.create("port", {"network_id": net["id"]})["fixed_ips"][0]["ip_address"])
            except Exception as exc:  # noqa: BLE001 - collected and asserted below
                failures.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not failures
    assert len(results) == 120
    assert len(set(results)) == 120


def test_no_duplicates_across_separate_connections(tmp_path):
    """Two store objects (two SQLite connections, like two processes) on one file."""
    path = str(tmp_path / "ipam2.db")
    first = Service(SqliteStore(path))
    net, _ = _net_subnet(first)
    services = [first, Service(SqliteStore(path))]
    results = []
    lock = threading.Lock()

    def worker(svc):
        for _ in range(20):
            ip = svc.create("port", {"network_id": net["id"]})["fixed_ips"][0]["ip_address"]
            with lock:
                results.append(ip)

    threads = [threading.Thread(target=worker, args=(services[i % 2],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(results) == 80 and len(set(results)) == 80


def test_bulk_allocation_is_unique_and_exhaustion_fails_atomically():
    svc = Service(open_store("memory://"))
    net, sub = _net_subnet(svc, "10.0.0.0/27")   # 29 usable after the gateway
    ports = svc.create_bulk("port", [{"network_id": net["id"]} for _ in range(29)])
    assert len({p["fixed_ips"][0]["ip_address"] for p in ports}) == 29
    rev = svc.store.revision()
    with pytest.raises(errors.IpAddressGenerationFailure):
        svc.create_bulk("port", [{"network_id": net["id"]}, {"network_id": net["id"]}])
    assert svc.store.revision() == rev


def test_thousand_ports_bulk_is_fast():
    import time
    svc = Service(open_store("memory://"))
    net, _ = _net_subnet(svc, "10.0.0.0/20")
    start = time.monotonic()
    ports = svc.create_bulk("port", [{"network_id": net["id"]} for _ in range(1000)])
    elapsed = time.monotonic() - start
    assert len({p["fixed_ips"][0]["ip_address"] for p in ports}) == 1000
    assert len({p["mac_address"] for p in ports}) == 1000
    print(f"1000 ports in {elapsed:.3f}s")
