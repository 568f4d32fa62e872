"""Several controllers on one etcd share the chassis with OpenFlow roles (issue 10, Controllers).

Real processes only: an etcd started by the test, three `tenantflow serve --store etcd://…`
(each its own API and OpenFlow port, member ids ctl0..ctl2), three chassis whose br-int points
at all three (`tenantflow node init --controller … --controller …`). What is asserted comes from
the switches (`ovs-vsctl list controller`: role per target; `ovs-ofctl dump-flows`: durations
prove no flow was re-added), from each controller's stats (flow-mods it sent per datapath,
the ownership it read from etcd) and from ICMP between VM namespaces.

  start                 -> exactly one connected master per bridge, one chassis per controller
  kill -9 a master      -> its chassis go to a survivor (time printed), which sends 0 flow-mods;
                           a ping stream across that chassis loses nothing; a new port is wired
  the killed one back   -> it takes one chassis again with 0 flow-mods, nobody else sends any,
                           flows never re-added, one master per bridge all along
  SIGSTOP a master      -> a survivor takes its chassis; resumed, it sends nothing stale and
                           takes a chassis back with 0 flow-mods
  etcd kill -9 + start  -> the controllers reconnect, one master per bridge again, 0 flow-mods,
                           a port created afterwards gets its flows
"""
from __future__ import annotations

import os
import signal
import time
from typing import Any

import pytest
import requests

from tests.integration.test_faults import assert_no_diff, pings
from tests.integration.test_l2 import eventually, settle
from tests.integration.test_restart import flow_stats, loss_of, start_ping
from tests.testbed import Bed, Chassis, Controller, serve_implemented
from tests.unit.test_store_etcd import EtcdServer, needs_etcd

pytestmark = [pytest.mark.integration, needs_etcd,
              pytest.mark.skipif(not serve_implemented(), reason="tenantflow serve not implemented yet")]

N_CTL = 3
TAKEOVER_BOUND = 20.0  # s: the wait is bounded; the measured time is printed (issue: <= 5 s)


# ------------------------------------------------------------------ helpers
def roles(ch: Chassis) -> dict[int, tuple[str, bool]]:
    """OpenFlow port of each controller target of br-int → (role, is_connected), as OVS says."""
    out = ch.ovs_vsctl("--format=csv", "--data=bare", "--no-headings",
                       "--columns=target,role,is_connected", "list", "controller")
    found = {}
    for line in out.splitlines():
        target, role, connected = (x.strip().strip('"') for x in line.split(","))
        found[int(target.rsplit(":", 1)[1])] = (role, connected == "true")
    return found


def masters(ch: Chassis) -> list[int]:
    return [port for port, (role, up) in roles(ch).items() if role == "master" and up]


def one_master_each(chassis: list[Chassis], live: list[Controller]) -> bool:
    """Every bridge: exactly one connected master, and every other live controller is slave."""
    ports = {c.ofp_port for c in live}
    for ch in chassis:
        r = roles(ch)
        if len(masters(ch)) != 1:
            return False
        if any(r.get(p, ("", False)) != ("slave", True) for p in ports - set(masters(ch))):
            return False
    return True


def ctl_stats(ctl: Controller) -> dict[str, Any]:
    return requests.get(ctl.api_url + "/v2.0/tenantflow/stats", timeout=10).json()


def dp_of(ctl: Controller, ch: Chassis) -> dict[str, Any]:
    for dp in ctl_stats(ctl)["datapaths"].values():
        if dp.get("chassis") == ch.name:
            return dp
    return {}


def master_of(ch: Chassis, ctls: list[Controller]) -> Controller:
    m = masters(ch)
    assert len(m) == 1, f"{ch.name}: masters {m}: {roles(ch)}"
    return next(c for c in ctls if c.ofp_port == m[0])


def spread_of(chassis: list[Chassis], ctls: list[Controller]) -> list[int]:
    """How many bridges each of `ctls` is the connected master of, sorted."""
    held = [port for ch in chassis for port in masters(ch)]
    return sorted(held.count(c.ofp_port) for c in ctls)


def flow_mods(ctls: list[Controller], chassis: list[Chassis]) -> dict[tuple[int, str], int]:
    return {(c.ofp_port, ch.name): dp_of(c, ch).get("flow_mods", 0) for c in ctls if c.running()
            for ch in chassis}


def assert_not_re_added(ch: Chassis, before: dict, since: float) -> None:
    after = flow_stats(ch)
    assert set(after) == set(before), (f"{ch.name}: flows changed: +{sorted(set(after) - set(before))[:5]} "
                                       f"-{sorted(set(before) - set(after))[:5]}")
    for flow, (dur, _pkts) in before.items():
        assert after[flow][0] >= dur + since - 0.5, f"{ch.name}: flow re-added ({dur}s -> {after[flow][0]}s): {flow}"


# ------------------------------------------------------------------ the test
def test_ha_roles_takeover_return_and_etcd_restart(bed: Bed) -> None:
    etcd = EtcdServer().start()
    url = etcd.store_url()
    ctls = []
    for i in range(N_CTL):
        workdir = bed.workdir / f"ctl{i}"
        workdir.mkdir()
        ctl = Controller(workdir)
        ctl.store_url = url
        ctls.append(ctl)
    args = ["--controller-id"]
    try:
        bed.controller = ctls[0]
        bed.extra_controllers = ctls[1:]
        bed.start_controller(args + ["ctl0"], timeout=60)
        for i, ctl in enumerate(ctls[1:], 1):
            ctl.start(args + [f"ctl{i}"], timeout=60)
        chassis = [bed.add_chassis(f"c{i}") for i in range(3)]
        for ch in chassis:
            assert ch.wait_connected(timeout=30), bed.diagnostics()
        # one master each holds at every instant of a rebalance (a new master demotes the old one),
        # so wait for the balanced spread itself: the chassis connect one by one and the first
        # controller may hold two for a round before the balance moves one away
        assert eventually(lambda: one_master_each(chassis, ctls) and spread_of(chassis, ctls) == [1, 1, 1],
                          20, 0.3), \
            f"masters not spread over the controllers: {({ch.name: roles(ch) for ch in chassis})}"
        def owners_spread() -> bool:   # ctl1's last etcd read may be a round behind the switches
            owners = ctl_stats(ctls[1])["ha"]["owners"]
            return len(owners) == 3 and len({o["owner"] for o in owners.values()}) == 3
        assert eventually(owners_spread, 5, 0.2), ctl_stats(ctls[1])["ha"]["owners"]

        api = bed.api.as_project("tenant-ha")
        net, _ = api.network_with_subnet("net-ha", "10.0.0.0/24")
        vms = [bed.add_vm(ch, api.port(net, name=f"v{i}"), name=f"v{i}") for i, ch in enumerate(chassis)]
        for vm in vms:
            assert bed.wait_port_status(vm.port), bed.diagnostics()
        settle(bed, chassis)
        assert eventually(lambda: pings(vms[0], vms[1]) and pings(vms[1], vms[2]), 15, 0.3), bed.diagnostics()
        # the stats endpoint says who owns which chassis, as OVS does; only masters got packet-ins
        ids = {c.ofp_port: f"ctl{i}" for i, c in enumerate(ctls)}
        for ch in chassis:
            dpid = next(k for k, dp in ctl_stats(ctls[0])["datapaths"].items() if dp.get("chassis") == ch.name)
            for c in ctls:
                assert ctl_stats(c)["ha"]["owners"][dpid]["owner"] == ids[master_of(ch, ctls).ofp_port]
                if c is not master_of(ch, ctls):
                    assert dp_of(c, ch)["packet_ins"] == 0, f"slave {ids[c.ofp_port]} handled packet-ins of {ch.name}"

        # a change: the master of each bridge sends flow-mods, the slaves none (they only compile)
        mods = flow_mods(ctls, chassis)
        probe = bed.add_vm(chassis[2], api.port(net, name="probe"), name="probe")
        assert bed.wait_port_status(probe.port), bed.diagnostics()
        settle(bed, chassis)
        after = flow_mods(ctls, chassis)
        for ch in chassis:
            m = master_of(ch, ctls)
            assert after[(m.ofp_port, ch.name)] > mods[(m.ofp_port, ch.name)], f"master of {ch.name} sent nothing"
            for c in ctls:
                if c is not m:
                    assert after[(c.ofp_port, ch.name)] == mods[(c.ofp_port, ch.name)], \
                        f"slave {c.ofp_port} sent flow-mods to {ch.name}"
            assert dp_of(m, ch)["packet_ins"] >= 0
        # standby share (docs/ha.md): each controller keeps warm the chassis it would inherit —
        # compiled, never sent to (the flow-mod check above) — one heir per chassis per death
        # (every controller must first hold a connection to every chassis: OVS connects with backoff)
        def standby_now() -> dict[str, set[str]]:
            return {ids[c.ofp_port]: set(ctl_stats(c)["ha"]["standby"]) for c in ctls}
        assert eventually(lambda: sum(len(s) for s in standby_now().values()) == len(chassis), 20, 0.3), \
            standby_now()
        standby = standby_now()
        for c in ctls:
            st = ctl_stats(c)
            for dpid in standby[ids[c.ofp_port]]:
                assert st["ha"]["owners"][dpid]["owner"] != ids[c.ofp_port], standby
                assert st["datapaths"][dpid]["compiled"], f"standby {dpid} not compiled on {ids[c.ofp_port]}"

        # -------- kill -9 the master of a chassis under a ping stream across it
        victim = ctls[1]            # not ctls[0]: its API is bed.api
        target = next(ch for ch in chassis if master_of(ch, ctls) is victim)
        vt = vms[chassis.index(target)]
        other = next(vm for vm in vms if vm is not vt)
        survivors = [c for c in ctls if c is not victim]
        before = {ch.name: flow_stats(ch) for ch in chassis}
        mods_before = flow_mods(survivors, chassis)
        # the stream is an established flow: its path is used once first. OVS's userspace tunnels
        # drop the first packet to a remote endpoint not yet in their neighbour cache (tnl/neigh)
        # while they ARP for it — seen as icmp_seq=1 lost when vt->other is a tunnel no earlier
        # ping had used, with nothing to do with the takeover a second later
        assert eventually(lambda: pings(vt, other) and pings(other, vt), 10, 0.3), bed.diagnostics()
        stream = start_ping(vt, other)
        time.sleep(1.0)
        t_kill = time.monotonic()
        print(f"kill -9 of {victim.ofp_port} at {time.strftime('%H:%M:%S')}.{int(time.time() * 1000) % 1000:03d}")
        victim.stop(signal.SIGKILL)
        # the survivors' own view (OVS refreshes the Controller table's role column only every
        # few seconds, so ovs-vsctl is checked afterwards, not timed)
        assert eventually(lambda: any(dp_of(c, target).get("master") for c in survivors), TAKEOVER_BOUND, 0.05), \
            [dp_of(c, target) for c in survivors]
        took = time.monotonic() - t_kill
        print(f"takeover of {target.name}: {took:.2f}s after kill -9 (a survivor confirmed master)")
        assert eventually(lambda: len(masters(target)) == 1 and master_of(target, ctls) is not victim,
                          TAKEOVER_BOUND, 0.2), {ch.name: roles(ch) for ch in chassis}
        heir = master_of(target, ctls)
        assert dp_of(heir, target)["master"]
        assert eventually(lambda: dp_of(heir, target).get("resyncs", 0) >= 1, 10, 0.1), dp_of(heir, target)
        settle(bed, chassis)
        assert flow_mods(survivors, chassis) == mods_before, "flow-mods sent on takeover of an unchanged chassis"
        loss, summary = loss_of(stream)
        print(f"ping {vt.name}->{other.name} across the takeover: {summary}")
        assert loss == 0.0, f"ping across the takeover lost packets: {summary}"
        assert_not_re_added(target, before[target.name], time.monotonic() - t_kill)
        assert spread_of(chassis, survivors) == [1, 2], {ch.name: roles(ch) for ch in chassis}

        late = bed.add_vm(target, api.port(net, name="late"), name="late")
        assert bed.wait_port_status(late.port), bed.diagnostics()
        assert eventually(lambda: pings(late, vms[1]) and pings(late, vms[2]), 15, 0.3), bed.diagnostics()

        # -------- the killed controller comes back on its old address: its share, no churn
        settle(bed, chassis)
        before = {ch.name: flow_stats(ch) for ch in chassis}
        mods_before = flow_mods(survivors, chassis)
        t_back = time.monotonic()
        victim.start(victim.extra_args, timeout=60)
        samples: list[bool] = []

        def rebalanced() -> bool:
            samples.append(all(len(masters(ch)) <= 1 for ch in chassis))
            return one_master_each(chassis, ctls) and any(master_of(ch, ctls) is victim for ch in chassis)
        assert eventually(rebalanced, 30, 0.2), {ch.name: roles(ch) for ch in chassis}
        assert all(samples), "two masters on one bridge at some point"
        settle(bed, chassis)
        mine = [ch for ch in chassis if master_of(ch, ctls) is victim]
        assert len(mine) == 1, mine
        assert dp_of(victim, mine[0]).get("flow_mods") == 0, dp_of(victim, mine[0])
        assert flow_mods(survivors, chassis) == mods_before, "survivors sent flow-mods when it came back"
        for ch in chassis:
            assert_not_re_added(ch, before[ch.name], time.monotonic() - t_back)
        assert pings(vms[0], vms[2]) and pings(late, vms[1])

        # -------- a controller frozen (SIGSTOP: like one cut off from etcd, its OpenFlow link up):
        # its chassis move; when it resumes it must not act on its stale ownership
        frozen = ctls[2]
        t2 = next(ch for ch in chassis if master_of(ch, ctls) is frozen)
        others = [c for c in ctls if c is not frozen]
        settle(bed, chassis)
        before = {ch.name: flow_stats(ch) for ch in chassis}
        mods_before = flow_mods(ctls, chassis)
        errors_before = dp_of(frozen, t2).get("errors", 0)
        t_stop = time.monotonic()
        os.kill(frozen.proc.pid, signal.SIGSTOP)
        try:
            assert eventually(lambda: any(dp_of(c, t2).get("master") for c in others), TAKEOVER_BOUND, 0.05), \
                [dp_of(c, t2) for c in others]
            print(f"takeover of {t2.name} from a frozen controller: {time.monotonic() - t_stop:.2f}s")
        finally:
            os.kill(frozen.proc.pid, signal.SIGCONT)
        assert eventually(lambda: one_master_each(chassis, ctls) and any(master_of(ch, ctls) is frozen
                                                                         for ch in chassis), 30, 0.2), \
            {ch.name: roles(ch) for ch in chassis}
        settle(bed, chassis)
        assert flow_mods(ctls, chassis) == mods_before, "flow-mods around the freeze"
        assert dp_of(frozen, t2).get("errors", 0) == errors_before, "the resumed controller sent stale messages"
        for ch in chassis:
            assert_not_re_added(ch, before[ch.name], time.monotonic() - t_stop)

        # -------- etcd killed and started again under running controllers
        before = {ch.name: flow_stats(ch) for ch in chassis}
        mods_before = flow_mods(ctls, chassis)
        t_etcd = time.monotonic()
        etcd.kill(signal.SIGKILL)
        time.sleep(3.0)             # longer than the lease TTL: every controller fences itself
        assert pings(vms[0], vms[1]), "datapath traffic stopped with etcd"
        etcd.start()
        assert eventually(lambda: one_master_each(chassis, ctls), 30, 0.3), \
            {ch.name: roles(ch) for ch in chassis}
        settle(bed, chassis, timeout=30)
        assert flow_mods(ctls, chassis) == mods_before, "flow-mods after the etcd restart"
        for ch in chassis:
            assert_not_re_added(ch, before[ch.name], time.monotonic() - t_etcd)

        def create() -> dict | None:
            try:
                return api.port(net, name="after-etcd")
            except Exception:  # noqa: BLE001 — the API may fail until its etcd client reconnects
                return None
        made: list = []
        assert eventually(lambda: made.append(create()) or made[-1], 30, 0.5), bed.controller.log_tail()
        v4 = bed.add_vm(chassis[2], made[-1], name="v4")
        assert bed.wait_port_status(v4.port, timeout=20), bed.diagnostics()
        assert eventually(lambda: pings(v4, vms[0]) and pings(v4, late), 15, 0.3), bed.diagnostics()
        settle(bed, chassis)
        for ch in chassis:
            assert_no_diff(bed, ch)
    finally:
        for ctl in ctls[1:]:
            ctl.stop()
        bed.extra_controllers = []
        etcd.stop()
