"""Reconciler against a real Open vSwitch: flows land exactly, diffs are minimal, restarts are silent.

A private OVS (own run dir), one netdev bridge, `tenantflow serve` as a subprocess on random
ports with a SQLite store, and a fake app (below) whose flows follow network records: network
key K named 'out-P' gets FLOWS_PER_NET flows in table 40 outputting to port P. The test process
writes networks into the same SQLite file; the controller sees them through the change feed.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from flows.flow import Flow, GotoTable, Output, SetField, make_match
from flows.tables import Owner, cookie, cookie_owner
from tests.testbed.ovs import OvsInstance

pytestmark = pytest.mark.integration

FLOWS_PER_NET = 5
ROOT = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------ the fake app (imported by serve)
class FakeApp:
    """Flows are a pure function of network names: 'out-P' → output P; 'bad' → a flow OVS rejects."""
    name = "fake"

    def owners_for_change(self, view, change):
        rec = change.new or change.old
        if change.kind == "network" and rec and rec.get("_key") is not None:
            return {cookie(Owner.NETWORK, rec["_key"])}
        return set()

    def owners_for_chassis(self, view, ctx):
        out = {cookie(Owner.PIPELINE, 0)}
        for net in view.records("network").values():
            out.add(cookie(Owner.NETWORK, net["_key"]))
        return out

    def compile(self, view, ctx, owner):
        kind, key = cookie_owner(owner)
        if kind == Owner.PIPELINE:
            return [Flow(0, 0, (), (), owner), Flow(0, 10, make_match(in_port=1),
                                                     (SetField("reg6", 1), GotoTable(40)), owner)]
        net = view.by_key("network", key)
        if net is None:
            return []
        name = net.get("name") or ""
        if name == "bad":  # tcp_dst without ip_proto/eth_type: OVS answers OFPBMC_BAD_PREREQ
            return [Flow(40, 50, make_match(metadata=key, tcp_dst=80), (Output(1),), owner)]
        m = re.fullmatch(r"out-(\d+)", name)
        if not m:
            return []
        port = int(m.group(1))
        return [Flow(40, 100, make_match(metadata=key, eth_dst=i + 1), (SetField("reg7", i), Output(port)), owner)
                for i in range(FLOWS_PER_NET)]


def fake_apps():
    return [FakeApp()]


# ------------------------------------------------------------------ fixtures
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class OVS(OvsInstance):
    """The test bed's private OVS, plus the raw command runner and flow dump these tests use."""

    def run(self, *cmd: str, check: bool = True) -> str:
        p = subprocess.run(cmd, env={**os.environ, **self.env}, capture_output=True, text=True, timeout=30)
        if check and p.returncode != 0:
            raise RuntimeError(f"{cmd}: {p.stderr}")
        return p.stdout

    def flows(self, bridge: str) -> list[str]:
        out = self.run("ovs-ofctl", "-O", "OpenFlow13", "dump-flows", bridge)
        return [line.strip() for line in out.splitlines() if "cookie=" in line]


class Serve:
    """`tenantflow serve` as a subprocess (python -m controller.serve), log captured to a file."""

    def __init__(self, tmp: Path, store_url: str, hub: str | None = None) -> None:
        self.tmp, self.store_url, self.hub = tmp, store_url, hub
        self.ofp_port = free_port()
        self.api_port = free_port()
        self.proc = None
        self.log_path = None
        self.runs = 0

    def start(self) -> None:
        self.runs += 1
        self.log_path = self.tmp / f"serve-{self.runs}.log"
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        if self.hub:
            env["OSKEN_HUB_TYPE"] = self.hub
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "controller.serve", "--store", self.store_url,
             "--api-listen", f"127.0.0.1:{self.api_port}", "--ofp-listen", f"127.0.0.1:{self.ofp_port}",
             "--apps", "tests.integration.test_reconciler:fake_apps"],
            cwd=ROOT, env=env, stdout=open(self.log_path, "w"), stderr=subprocess.STDOUT)
        self.wait_log("tenantflow ready", 30)

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path else ""

    def wait_log(self, pattern: str, timeout: float = 20, count: int = 1) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log()
            if len(re.findall(pattern, text)) >= count:
                return text
            if self.proc.poll() is not None:
                raise AssertionError(f"serve exited {self.proc.returncode}:\n{text}")
            time.sleep(0.1)
        raise AssertionError(f"{pattern!r} not logged within {timeout}s:\n{self.log()}")

    def stop(self) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return -9


@pytest.fixture
def rig():
    if shutil.which("ovs-vswitchd") is None:
        pytest.skip("Open vSwitch not installed")
    tmp = Path(tempfile.mkdtemp(prefix="h3rec-"))
    ovs = OVS(tmp / "ovs")
    ovs.start()
    store_url = f"sqlite:///{tmp}/tf.db"
    from topology.store.backends import open_store
    from topology.model.service import Service
    from topology.model.settings import Settings
    store = open_store(store_url)
    service = Service(store, Settings())
    servers: list[Serve] = []

    def make(hub=None) -> Serve:
        s = Serve(tmp, store_url, hub)
        servers.append(s)
        return s

    yield ovs, service, store, make, tmp
    for s in servers:
        s.stop()
        print(f"---- serve log {s.log_path}\n{s.log()[-6000:]}")  # shown by pytest when a test fails
    store.close()
    ovs.stop()
    shutil.rmtree(tmp, ignore_errors=True)


def add_bridge(ovs: OVS, serve: Serve, name: str = "h3rbr") -> None:
    ovs.run("ovs-vsctl", "add-br", name, "--", "set", "bridge", name, "datapath_type=netdev", "fail_mode=secure",
            "protocols=OpenFlow13", "other-config:datapath-id=00000000000000a1")
    set_controller(ovs, serve, name)


def set_controller(ovs: OVS, serve: Serve, name: str = "h3rbr") -> None:
    ovs.run("ovs-vsctl", "set-controller", name, f"tcp:127.0.0.1:{serve.ofp_port}")
    ovs.run("ovs-vsctl", "set", "controller", name, "max_backoff=1000")  # reconnect fast after restarts


def wait_flows(ovs: OVS, bridge: str, n: int, timeout: float = 20) -> list[str]:
    deadline = time.monotonic() + timeout
    flows: list[str] = []
    while time.monotonic() < deadline:
        try:
            flows = ovs.flows(bridge)
        except RuntimeError:  # the bridge's management socket appears a moment after add-br
            time.sleep(0.1)
            continue
        if len(flows) == n:
            return flows
        time.sleep(0.1)
    raise AssertionError(f"expected {n} flows, have {len(flows)}:\n" + "\n".join(flows))


def durations(flows: list[str]) -> dict[str, float]:
    out = {}
    for line in flows:
        d = float(re.search(r"duration=([\d.]+)s", line).group(1))
        key = re.sub(r"duration=[\d.]+s, |n_packets=\d+, n_bytes=\d+, ", "", line)
        out[key] = d
    return out


# ------------------------------------------------------------------ tests
def test_flows_land_exactly_and_changes_are_minimal(rig):
    ovs, service, store, make, _tmp = rig
    nets = [service.create_network({"name": f"out-{p}"}) for p in (1, 2, 3)]
    serve = make()
    serve.start()
    add_bridge(ovs, serve)
    flows = wait_flows(ovs, "h3rbr", 2 + 3 * FLOWS_PER_NET)
    key2 = store.get("network", nets[1]["id"])["_key"]
    assert sum(f"cookie={cookie(Owner.NETWORK, key2):#x}," in f for f in flows) == FLOWS_PER_NET
    assert all("output:2" in f for f in flows if f"cookie={cookie(Owner.NETWORK, key2):#x}," in f)
    serve.wait_log(r"flushed \d+ flow-mods|resync", 10)

    # change one owner: only its flows are rewritten (others keep their durations)
    time.sleep(1.2)
    before = durations(ovs.flows("h3rbr"))
    service.update("network", nets[1]["id"], {"name": "out-7"})
    serve.wait_log(rf"flushed {FLOWS_PER_NET} flow-mods", 15)
    after_flows = ovs.flows("h3rbr")
    after = durations(after_flows)
    changed = [f for f in after_flows if "output:7" in f]
    assert len(changed) == FLOWS_PER_NET
    untouched = [k for k in after if k in before]
    assert len(untouched) == 2 + 2 * FLOWS_PER_NET
    assert all(after[k] >= before[k] for k in untouched)

    # delete an owner: DELETE_STRICT of exactly its flows
    service.delete("network", nets[0]["id"])
    wait_flows(ovs, "h3rbr", 2 + 2 * FLOWS_PER_NET)


def test_restart_sends_zero_flow_mods_and_keeps_flows(rig):
    ovs, service, _store, make, _tmp = rig
    for p in (1, 2):
        service.create_network({"name": f"out-{p}"})
    serve = make()
    serve.start()
    add_bridge(ovs, serve)
    wait_flows(ovs, "h3rbr", 2 + 2 * FLOWS_PER_NET)
    assert serve.stop() == 0
    assert "tenantflow stopped" in serve.log()
    time.sleep(1.5)
    before = durations(ovs.flows("h3rbr"))
    assert len(before) == 2 + 2 * FLOWS_PER_NET  # secure fail mode: flows survive the controller
    serve.start()
    text = serve.wait_log(r"resync \S+: switch has 12 of our flows .* we want 12", 20)
    time.sleep(1.0)
    text = serve.log()
    assert "flushed" not in text, text
    after = durations(ovs.flows("h3rbr"))
    assert after.keys() == before.keys()
    assert all(after[k] >= before[k] + 0.5 for k in after), (before, after)


def test_stray_flow_of_ours_is_deleted_learned_and_foreign_kept(rig):
    ovs, service, _store, make, _tmp = rig
    service.create_network({"name": "out-1"})
    serve = make()
    # flows present before the controller ever connects
    ovs.run("ovs-vsctl", "add-br", "h3rbr", "--", "set", "bridge", "h3rbr", "datapath_type=netdev",
            "fail_mode=secure", "protocols=OpenFlow13", "other-config:datapath-id=00000000000000a1")
    # OVS flushes a bridge's flows when it goes from no controller to some: set it first
    set_controller(ovs, serve)
    stray = f"cookie={cookie(Owner.NETWORK, 77):#x},table=40,priority=9,metadata=0x4d actions=output:3"
    learned = f"cookie={cookie(Owner.LEARNED, 0):#x},table=42,priority=100,metadata=0x1 actions=output:2"
    foreign = "cookie=0x0,table=0,priority=1,in_port=9 actions=drop"
    for f in (stray, learned, foreign):
        ovs.run("ovs-ofctl", "-O", "OpenFlow13", "add-flow", "h3rbr", f)
    assert len(ovs.flows("h3rbr")) == 3
    serve.start()
    flows = wait_flows(ovs, "h3rbr", 2 + FLOWS_PER_NET + 2)
    text = " ".join(flows)
    assert "metadata=0x4d" not in text
    assert f"cookie={cookie(Owner.LEARNED, 0):#x}" in text and "in_port=9" in text


def test_openflow_error_is_logged_with_its_owner(rig):
    ovs, service, store, make, _tmp = rig
    service.create_network({"name": "out-1"})
    bad = service.create_network({"name": "bad"})
    serve = make()
    serve.start()
    add_bridge(ovs, serve)
    wait_flows(ovs, "h3rbr", 2 + FLOWS_PER_NET)  # the good ones land despite the bad one
    key = store.get("network", bad["id"])["_key"]
    text = serve.wait_log(r"rejected add of flow owned by network:\d+", 15)
    assert f"owned by network:{key}:" in text and "BAD_PREREQ" in text


def test_eventlet_hub_variant(rig):
    ovs, service, _store, make, _tmp = rig
    for p in (1, 2):
        service.create_network({"name": f"out-{p}"})
    serve = make(hub="eventlet")
    serve.start()
    add_bridge(ovs, serve)
    wait_flows(ovs, "h3rbr", 2 + 2 * FLOWS_PER_NET)
    assert serve.stop() == 0
