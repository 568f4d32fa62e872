"""EtcdStore against a real etcd (started here on a random loopback port): same semantics as SqliteStore,
plus what only a shared store has — optimistic conflicts, other machines' writes, etcd restarts."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid

import pytest
import requests

from topology.store.backends import open_store
from topology.store.etcd import SUB, EtcdStore
from topology.model.service import Service
from topology.store import Compacted, Conflict
from tests.unit.store_contract import *  # noqa: F401,F403 — the backend-neutral contract tests

ETCD = shutil.which("etcd") or "/usr/bin/etcd"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class EtcdServer:
    """One etcd member bound to 127.0.0.1 only, data in a temp dir; stopped and removed by stop()."""

    def __init__(self) -> None:
        self.data_dir = tempfile.mkdtemp(prefix="tf-etcd-")
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self.log = open(os.path.join(self.data_dir, "etcd.log"), "wb")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 15.0) -> "EtcdServer":
        for _ in range(5):  # a port picked free may be taken by the time etcd binds it
            if not self.port:
                self.port = _free_port()
            peer = _free_port()
            self.proc = subprocess.Popen([
                ETCD, "--name", "tf-test", "--data-dir", os.path.join(self.data_dir, "data"),
                "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
                "--listen-peer-urls", f"http://127.0.0.1:{peer}",
                "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
                "--initial-cluster", f"tf-test=http://127.0.0.1:{peer}",
                # bulk API requests (1,000 ports) are one etcd txn; etcd's defaults allow 128 ops / 1.5 MiB
                "--max-txn-ops", "100000", "--max-request-bytes", str(64 << 20),
            ], stdout=self.log, stderr=subprocess.STDOUT)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    if requests.get(self.url + "/health", timeout=1).ok:
                        return self
                except requests.RequestException:
                    pass
                time.sleep(0.05)
            self.kill()
            self.port = 0
        raise RuntimeError(f"etcd did not start; see {self.log.name}")

    def kill(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def stop(self) -> None:
        self.kill()
        self.log.close()
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def store_url(self, prefix: str | None = None) -> str:
        return f"etcd://127.0.0.1:{self.port}/{prefix or 'tf-' + uuid.uuid4().hex[:12]}"


needs_etcd = pytest.mark.skipif(not os.access(ETCD, os.X_OK),
                                reason=f"etcd server binary not found at {ETCD} (apt-get install etcd-server)")


@pytest.fixture(scope="module")
def etcd():
    if not os.access(ETCD, os.X_OK):
        pytest.skip(f"etcd server binary not found at {ETCD} (apt-get install etcd-server)")
    server = EtcdServer().start()
    yield server
    server.stop()


@pytest.fixture()
def url(etcd):
    return etcd.store_url()  # a fresh key prefix per test: an empty store on the shared server


@pytest.fixture()
def store(url):
    s = open_store(url)
    yield s
    s.close()


pytestmark = needs_etcd


def test_url_parsing(etcd):
    s = open_store(f"etcd://127.0.0.1:{etcd.port}/a/b/")
    assert isinstance(s, EtcdStore) and s.prefix == "/a/b"
    s.close()
    s = open_store(f"etcd://127.0.0.1:{etcd.port}")
    assert s.prefix == "/tenantflow"
    s.close()
    with pytest.raises(ValueError):
        open_store("etcd:///nohost")


def test_unreachable_etcd_is_a_clear_error():
    port = _free_port()
    with pytest.raises(ConnectionError, match=f"cannot reach etcd at 127.0.0.1:{port}"):
        open_store(f"etcd://127.0.0.1:{port}")


def test_changes_after_a_revision_inside_one_commit(store):
    """A commit of N records is N feed steps; resuming in the middle of it returns the rest."""
    with store.transaction() as t:
        for i in range(3):
            t.put("port", {"id": f"p{i}"})
    changes = store.changes(0)
    assert len(changes) == 3 and len({c.revision // SUB for c in changes}) == 1
    assert [c.id for c in store.changes(changes[0].revision)] == [c.id for c in changes[1:]]
    assert store.changes(changes[2].revision) == []


def test_snapshot_is_consistent_with_its_revision(store):
    with store.transaction() as t:
        t.put("router", {"id": "r1"})
    rev, data = store.snapshot()
    assert rev == store.revision() and data["router"] == {"r1": {"id": "r1"}}
    assert set(data) >= {"network", "port", "chassis"}
    assert store.changes(rev) == []


def test_another_machines_writes_are_seen(url):
    """Two EtcdStore instances = two machines: reads and a waiting feed see the other's commits."""
    reader, writer = open_store(url), open_store(url)
    got = []
    thread = threading.Thread(target=lambda: got.extend(reader.changes(0, timeout=5)))
    thread.start()
    time.sleep(0.2)
    with writer.transaction() as t:
        t.put("chassis", {"id": "c1"})
    thread.join(5)
    assert [c.id for c in got] == ["c1"]
    assert reader.get("chassis", "c1") == {"id": "c1"}
    assert reader.revision() == writer.revision()
    reader.close()
    writer.close()


def test_prefixes_are_separate_stores(etcd):
    a, b = open_store(etcd.store_url()), open_store(etcd.store_url())
    with a.transaction() as t:
        t.put("network", {"id": "n"})
    assert b.get("network", "n") is None and b.revision() == 0 and b.changes(0) == []
    rev = a.revision()
    with b.transaction() as t:
        t.put("network", {"id": "other"})
    assert a.revision() == rev, "writes under another prefix moved this store's revision"
    assert [n["id"] for n in a.list("network")] == ["n"]
    a.close()
    b.close()


def test_conflict_on_a_listed_kind(url):
    """t1 lists ports (as IPAM does), another machine adds a port, t1's commit must fail cleanly."""
    m1, m2 = open_store(url), open_store(url)
    with m1.transaction() as t:
        t.put("port", {"id": "p0", "ip": "10.0.0.2"})
    with pytest.raises(Conflict):
        with m1.transaction() as t1:
            used = {p["ip"] for p in t1.list("port")}
            with m2.transaction() as t2:
                t2.put("port", {"id": "p-other", "ip": "10.0.0.3"})
            assert "10.0.0.3" not in used
            t1.put("port", {"id": "p1", "ip": "10.0.0.3"})  # would duplicate
    assert m1.get("port", "p1") is None
    assert sorted(p["ip"] for p in m1.list("port")) == ["10.0.0.2", "10.0.0.3"]
    # a re-run on fresh data sees the other port
    with m1.transaction() as t1:
        assert len(t1.list("port")) == 2
        t1.put("port", {"id": "p1", "ip": "10.0.0.4"})
    m1.close()
    m2.close()


def test_conflict_on_a_deleted_record(url):
    m1, m2 = open_store(url), open_store(url)
    with m1.transaction() as t:
        t.put("network", {"id": "n1"})
    with pytest.raises(Conflict):
        with m1.transaction() as t1:
            assert t1.get("network", "n1") is not None
            with m2.transaction() as t2:
                t2.delete("network", "n1")
            t1.put("port", {"id": "p1", "network_id": "n1"})  # would dangle
    assert m1.get("port", "p1") is None
    m1.close()
    m2.close()


def test_unrelated_writes_do_not_conflict(url):
    m1, m2 = open_store(url), open_store(url)
    with m1.transaction() as t1:
        t1.get("network", "n1")
        with m2.transaction() as t2:
            t2.put("chassis", {"id": "c1"})
        t1.put("network", {"id": "n1"})
    assert {c.id for c in m2.changes(0)} == {"n1", "c1"}
    m1.close()
    m2.close()


def test_log_trim_raises_compacted_and_stale_mirrors_reload(url):
    stale = EtcdStore(*_host_port(url), prefix=_prefix(url))
    s = EtcdStore(*_host_port(url), prefix=_prefix(url), keep_changes=10)
    for i in range(30):
        with s.transaction() as t:
            t.put("network", {"id": "n", "v": i})
            t.put("port", {"id": f"p{i}"})
    s.trim()
    with pytest.raises(Compacted):
        s.changes(0)
    last = s.changes(s.revision() - SUB)  # everything after the second-to-last commit
    assert [c.new["v"] if c.kind == "network" else c.id for c in last] == [29, "p29"]
    assert stale.get("network", "n") == {"id": "n", "v": 29}  # mirror older than the floor: full reload
    assert len(stale.list("port")) == 30 and stale.revision() == s.revision()
    stale.close()
    s.close()


def test_etcd_compaction_does_not_cut_the_feed(store, etcd):
    for i in range(5):
        with store.transaction() as t:
            t.put("network", {"id": f"n{i}"})
    head = int(requests.post(etcd.url + "/v3/kv/range", json={"key": "AA=="}, timeout=5)
               .json()["header"]["revision"])
    requests.post(etcd.url + "/v3/kv/compaction", json={"revision": head, "physical": True},
                  timeout=5).raise_for_status()
    assert [c.id for c in store.changes(0)] == [f"n{i}" for i in range(5)]
    with store.transaction() as t:
        t.put("network", {"id": "after"})
    assert store.get("network", "after") == {"id": "after"}


def test_two_services_allocate_without_duplicates(url):
    """Two API servers (Service on their own EtcdStore) race for addresses in one small subnet."""
    first, second = Service(open_store(url)), Service(open_store(url))
    net = first.create_network({"name": "race"})
    sub = first.create_subnet({"network_id": net["id"], "cidr": "10.9.0.0/26"})
    ips: list[str] = []
    errors: list[BaseException] = []

    def worker(svc: Service, n: int) -> None:
        try:
            for _ in range(n):
                port = svc.create_port({"network_id": net["id"]})
                ips.append(port["fixed_ips"][0]["ip_address"])
        except BaseException as exc:  # noqa: BLE001 — reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(svc, 12)) for svc in (first, second, first, second)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(120)
    assert not errors, errors
    assert len(ips) == 48 and len(set(ips)) == 48, "duplicate IP allocated"
    ports = [p for p in second.list("port") if p["device_owner"] != "network:dhcp"]
    assert sorted(p["fixed_ips"][0]["ip_address"] for p in ports) == sorted(ips)
    keys = [p["_key"] for p in second.store.list("port")]
    assert len(keys) == len(set(keys)), "duplicate port key"
    assert sub["id"]
    first.store.close()
    second.store.close()


def test_survives_etcd_restart(etcd, url):
    s = open_store(url)
    with s.transaction() as t:
        t.put("network", {"id": "n1"})
    rev = s.revision()
    etcd.kill(signal.SIGKILL)
    etcd.start()
    assert s.get("network", "n1") == {"id": "n1"} and s.revision() == rev
    with s.transaction() as t:
        t.put("network", {"id": "n2"})
    assert s.revision() > rev and [c.id for c in s.changes(rev)] == ["n2"]
    s.close()


def _host_port(url: str) -> tuple[str, int]:
    host, _, port = url.split("//", 1)[1].split("/", 1)[0].partition(":")
    return host, int(port)


def _prefix(url: str) -> str:
    return "/" + url.split("//", 1)[1].split("/", 1)[1]
