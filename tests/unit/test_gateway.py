"""Gateway chassis failover: selection order, failover choice, SNAT/gateway-IP flows only on the
active chassis (offline simulator), GARPs where an address moved, the controller's liveness and
binding duties (flows/gateway.py, controller/gateway.py, apps/nat.py)."""
from __future__ import annotations

from collections import Counter

from apps.nat import NatApp
from controller.gateway import GatewayConfig, Liveness, binding_updates
from flows import compiler, gateway, nat, routing
from flows.fields import ipv4, mac
from flows.tables import T, Owner, cookie
from tests.unit.l2topo import UPLINK
from tests.unit.test_nat import GW_IP, GW_MAC, OUTSIDE_IP, OUTSIDE_MAC, FIP_IP, arp, with_external
from tests.unit.test_routing import apps, ip_pkt


# ------------------------------------------------------------------------------ pure selection

def test_priority_order_rotates_by_router_key_and_spreads_routers():
    names = ["gw3", "gw1", "gw2", "gw1"]
    assert gateway.priority_order(names, 1) == ["gw1", "gw2", "gw3"]
    assert gateway.priority_order(names, 2) == ["gw2", "gw3", "gw1"]
    assert gateway.priority_order(names, 4) == ["gw1", "gw2", "gw3"]
    assert gateway.priority_order([], 3) == []
    firsts = Counter(gateway.priority_order(names, k)[0] for k in range(1, 10))
    assert set(firsts.values()) == {3}  # 9 routers, 3 gateways: 3 each


def test_active_is_sticky_then_next_alive_by_priority():
    order = ["gw1", "gw2", "gw3"]
    assert gateway.choose_active(order, {"gw1", "gw2", "gw3"}, None) == "gw1"
    assert gateway.choose_active(order, {"gw1", "gw2", "gw3"}, "gw3") == "gw3"   # bound + alive: stays
    assert gateway.choose_active(order, {"gw2", "gw3"}, "gw1") == "gw2"          # bound one died
    assert gateway.choose_active(order, {"gw3"}, "gw1") == "gw3"
    assert gateway.choose_active(order, set(), "gw1") is None
    assert gateway.choose_active(order, {"gw1", "gw2"}, "compute") == "gw1"      # not a candidate


def test_candidates_are_the_chassis_mapping_the_physnet_and_liveness_is_a_record_field():
    recs = [{"name": "gw1", "bridge_mappings": {"physnet1": "eth1"}},
            {"name": "gw2", "bridge_mappings": {"physnet1": "eth1"}, "_alive": False},
            {"name": "comp", "bridge_mappings": {}},
            {"name": "other", "bridge_mappings": {"physnet2": "eth2"}}]
    order, active = gateway.select(recs, "physnet1", 2, None)
    assert order == ["gw2", "gw1"] and active == "gw1"
    assert gateway.select(recs, "physnet3", 1, None) == ([], None)


# ------------------------------------------------------------------------------ flows follow the active chassis

def _kill(r, name: str) -> None:
    ch = next(c for c in r.topo.data["chassis"].values() if c["name"] == name)
    r.topo.update("chassis", ch["id"], _alive=False)


def _snat_flows(r, name: str) -> list:
    c = next(c for c in r.contexts() if c.name == name)
    flows = compiler.compile_owner(apps(), r.topo.view(), c, cookie(Owner.ROUTER, r.routers["R1"]["_key"]))
    return [f for f in flows if f.table in (T.NAT_OUT, T.NAT_IN) and "ct(" in f.ofctl()]


def test_snat_flows_only_on_the_active_chassis_and_move_on_failover():
    r = with_external()
    r1 = r.topo.data["router"][r.routers["R1"]["id"]]
    assert routing.gateway_chassis_name(r.topo.view(), r1) == "c1"
    assert _snat_flows(r, "c1") and not _snat_flows(r, "c2")
    _kill(r, "c1")
    assert routing.gateway_chassis_name(r.topo.view(), r1) == "c2"
    assert _snat_flows(r, "c2") and not _snat_flows(r, "c1")


def test_after_failover_traffic_from_the_dead_chassis_side_is_snated_on_the_survivor():
    """vmB2 (on c2) and c1 dead as gateway: c2 SNATs locally with the same gateway IP and MAC."""
    r = with_external()
    r.topo.update("floatingip", r.extra["fip"]["id"], port_id=None, fixed_ip_address=None, router_id=None)
    _kill(r, "c1")
    fab = r.fabric()
    fab._chassis["c2"].sim.run(arp(1, OUTSIDE_MAC, OUTSIDE_IP, GW_IP), in_port=UPLINK)
    out = fab.send("c2", 1, ip_pkt(r.ports["vmB2"], r.macs["R1B"], OUTSIDE_IP))
    ext = [d for d in out if d.chassis == "physnet:physnet1"]
    assert len(ext) == 1, out
    assert ext[0].packet["ipv4_src"] == ipv4(GW_IP) and ext[0].packet["eth_src"] == mac(GW_MAC)
    # c1 (were it still running) would hand its SNAT traffic to c2 over the transit key
    c1 = next(c for c in r.contexts() if c.name == "c1")
    flows = compiler.compile_owner(apps(), r.topo.view(), c1, cookie(Owner.ROUTER, r.routers["R1"]["_key"]))
    transit = [f for f in flows if f.table == T.NAT_OUT and "tun_dst" in f.ofctl()]
    assert transit and all("10.0.0.2" in f.ofctl() for f in transit)


def test_no_alive_candidate_means_no_gateway_anywhere():
    r = with_external()
    _kill(r, "c1")
    _kill(r, "c2")
    r1 = r.topo.data["router"][r.routers["R1"]["id"]]
    assert routing.gateway_chassis_name(r.topo.view(), r1) is None
    assert not _snat_flows(r, "c1") and not _snat_flows(r, "c2")


# ------------------------------------------------------------------------------ GARPs

def _owner_flows(r, name: str, owner: int) -> frozenset:
    c = next(c for c in r.contexts() if c.name == name)
    return frozenset(compiler.compile_owner(apps(), r.topo.view(), c, owner))


def test_the_new_gateway_announces_the_gateway_ip_once_it_answers_for_it():
    r = with_external("vlan", 300)
    owner = cookie(Owner.ROUTER, r.routers["R1"]["_key"])
    before = _owner_flows(r, "c2", owner)
    assert not nat.announced_addresses(before)
    _kill(r, "c1")
    after = _owner_flows(r, "c2", owner)
    c2 = next(c for c in r.contexts() if c.name == "c2")
    app = NatApp()
    [(key, out)] = app.announcements(c2, before, after)
    assert out.ofport == UPLINK and key in {f.key for f in after}
    d = out.data
    assert d[:6] == b"\xff" * 6 and d[6:12] == mac(GW_MAC).to_bytes(6, "big")
    assert d[12:16] == b"\x81\x00\x01\x2c"                       # VLAN 300
    assert d[24:26] == b"\x00\x01"                              # ARP request
    assert int.from_bytes(d[32:36], "big") == ipv4(GW_IP) == int.from_bytes(d[42:46], "big")  # spa == tpa
    assert app.announcements(c2, after, after) == []            # nothing moved: nothing announced


def test_a_floating_ip_whose_port_moves_is_announced_by_its_new_chassis():
    r = with_external()
    fip = r.extra["fip"]
    owner = cookie(Owner.FLOATINGIP, fip["_key"])
    on_c1_before = _owner_flows(r, "c1", owner)
    # vmB2 (the FIP's port) moves from c2 to c1
    r.extra["local_c1"][r.ports["vmB2"]["id"]] = 9
    r.extra["local_c2"].pop(r.ports["vmB2"]["id"])
    c1 = next(c for c in r.contexts() if c.name == "c1")
    [(_key, out)] = NatApp().announcements(c1, on_c1_before, _owner_flows(r, "c1", owner))
    assert int.from_bytes(out.data[28:32], "big") == ipv4(FIP_IP)


# ------------------------------------------------------------------------------ controller duties

def test_liveness_waits_dead_after_and_defers_to_another_owner():
    cfg = GatewayConfig(dead_after=2.0, startup_grace=10.0)
    live = Liveness(cfg, started=100.0)
    recs = [{"name": "gw1", "datapath_id": 1}, {"name": "gw2", "datapath_id": 2}]
    live.connected("gw1")
    live.connected("gw2")
    assert live.due(recs, 101.0, lambda d: False) == ([], None)
    live.disconnected("gw1", 105.0)
    assert live.due(recs, 106.0, lambda d: False) == ([], 107.0)
    assert live.due(recs, 107.0, lambda d: False) == ([("gw1", False)], None)
    assert live.due(recs, 107.0, lambda d: d == 1) == ([], None)   # HA: another controller owns it
    recs[0]["_alive"] = False
    assert live.due(recs, 108.0, lambda d: False) == ([], None)
    live.connected("gw1")
    assert live.due(recs, 109.0, lambda d: False) == ([("gw1", True)], None)


def test_a_chassis_that_never_connects_is_dead_after_the_startup_grace():
    live = Liveness(GatewayConfig(startup_grace=10.0), started=0.0)
    recs = [{"name": "ghost", "datapath_id": 7}]
    assert live.due(recs, 5.0, lambda d: False) == ([], 10.0)
    assert live.due(recs, 10.0, lambda d: False) == ([("ghost", False)], None)


def test_gateway_port_binding_names_the_active_chassis():
    r = with_external()
    view = r.topo.view()
    gw = routing.gateway_port(view, r.topo.data["router"][r.routers["R1"]["id"]])
    assert binding_updates(view, lambda a: True) == [(gw["id"], "c1", "ACTIVE")]
    r.topo.update("port", gw["id"], **{"binding:host_id": "c1", "status": "ACTIVE"})
    assert binding_updates(r.topo.view(), lambda a: True) == []
    _kill(r, "c1")
    assert binding_updates(r.topo.view(), lambda a: True) == [(gw["id"], "c2", "ACTIVE")]
    assert binding_updates(r.topo.view(), lambda a: a != "c2") == []  # HA: c2's owner writes it
    _kill(r, "c2")
    assert binding_updates(r.topo.view(), lambda a: True) == [(gw["id"], "", "DOWN")]


# ------------------------------------------------------------------------------ the core end to end (fake switches)

def test_core_moves_the_gateway_when_its_chassis_disconnects(monkeypatch):
    """Store → core → fake switches: gw1 disconnects → after dead_after it is recorded dead, the
    gateway port is rebound to gw2, gw2 gets the SNAT flows and sends the gateway IP's GARPs;
    gw1 reconnecting is recorded alive and the router stays on gw2 (no preemption)."""
    import time

    from controller import core as core_mod
    from controller.core import Core
    from controller.gateway import GatewayConfig
    from controller.registry import SwitchPort
    from controller import wire
    from apps.registry import default_apps
    from tests.unit.fakeswitch import FakeSwitch
    from tests.unit.test_core_faults import Rig
    from topology.model.service import Service
    from topology.model.settings import Settings
    from topology.store.backends import open_store

    OFPT_PACKET_OUT = 13
    monkeypatch.setattr(core_mod, "RETRY_FIRST", 0.05)
    store = open_store("memory://")
    svc = Service(store, Settings())
    core = Core(store, svc, default_apps(), Settings(), feed_timeout=0.05, check_with=default_apps,
                gateway=GatewayConfig(dead_after=0.2, startup_grace=60, garp_count=2, garp_interval=0.05))
    rig = Rig.__new__(Rig)          # reuse its settle() over our own store and core
    rig.store, rig.core = store, core
    dpids = {"gw1": 0xA1, "gw2": 0xB2}
    for i, (name, dpid) in enumerate(dpids.items()):
        svc.register_chassis(name, dpid, f"10.9.0.{i + 1}", {"physnet1": "ph-physnet1"})
    ext = svc.create_network({"name": "public", "router:external": True, "provider:network_type": "flat",
                              "provider:physical_network": "physnet1"})
    svc.create_subnet({"network_id": ext["id"], "cidr": "172.31.0.0/24", "ip_version": 4, "enable_dhcp": False})
    net = svc.create_network({"name": "in"})
    sub = svc.create_subnet({"network_id": net["id"], "cidr": "10.0.0.0/24", "ip_version": 4})
    rtr = svc.create_router({"name": "r1", "external_gateway_info": {"network_id": ext["id"]}})
    svc.add_router_interface(rtr["id"], {"subnet_id": sub["id"]})
    gw_port = next(p for p in svc.list("port") if p["device_owner"] == "network:router_gateway")
    gw_ip = gw_port["fixed_ips"][0]["ip_address"]
    core.start()
    switches = {}
    ports = [SwitchPort("ph-physnet1", 5, True), SwitchPort("tf-vxlan", 6, True)]
    try:
        for name, dpid in dpids.items():
            sw = switches[name] = FakeSwitch.for_core(core, dpid)
            core.attach_datapath(sw, dpid)
            core.datapath_connected(sw, dpid, ports)
        rig.settle()

        def host() -> str:
            return svc.store.get("port", gw_port["id"])["binding:host_id"]

        def garps(sw) -> int:
            ip = bytes(int(b) for b in gw_ip.split("."))
            return sum(1 for buf in sw.sent for mtype, _x, msg in wire.iter_messages(buf)
                       if mtype == OFPT_PACKET_OUT and msg[-60:][28:32] == ip == msg[-60:][38:42])  # spa, tpa

        def snat(name: str) -> bool:
            flows = core.registry.get(dpids[name]).reconciler.desired_flows()
            return any("nat(src=" in f.ofctl() for f in flows)

        assert host() == "gw1" and snat("gw1") and not snat("gw2")
        assert garps(switches["gw1"]) >= 1 and garps(switches["gw2"]) == 0
        sw1 = switches["gw1"]
        sw1.connected = False
        core.datapath_disconnected(sw1, dpids["gw1"])
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and host() != "gw2":
            time.sleep(0.05)
        rig.settle()
        assert host() == "gw2" and snat("gw2")
        assert store.list("chassis") and next(c for c in store.list("chassis") if c["name"] == "gw1")["_alive"] is False
        time.sleep(0.2)  # the repeated GARP
        assert garps(switches["gw2"]) == 2
        assert core.stats()["gateway"]["dead"] == ["gw1"]
        # gw1 back: alive again, r1 stays on gw2
        sw1.connected = True
        core.attach_datapath(sw1, dpids["gw1"])
        core.datapath_connected(sw1, dpids["gw1"], ports)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and core.stats()["gateway"]["dead"]:
            time.sleep(0.05)
        rig.settle()
        assert core.stats()["gateway"]["dead"] == [] and host() == "gw2"
        assert core.check_failures == 0
    finally:
        core.stop()
        time.sleep(0.1)
        store.close()


# ------------------------------------------------------------------------------ floating IPs that need a gateway

def _central(r):
    """vmB2 (the FIP's port) on c3, a compute chassis without physnet1: its FIP is served on R1's
    gateway chassis."""
    from tests.unit.l2topo import ctx
    r.topo.chassis("c3", "10.0.0.3", physnets=())
    r.topo.update("port", r.ports["vmB2"]["id"], **{"binding:host_id": "c3"})
    r.topo.update("floatingip", r.extra["fip"]["id"])  # (a port move names its FIPs; here: by hand)
    contexts = [ctx("c1", r.extra["local_c1"], "10.0.0.1"), ctx("c2", {}, "10.0.0.2"),
                ctx("c3", {r.ports["vmB2"]["id"]: 1}, "10.0.0.3", uplinks={})]
    return contexts


def _fabric(r, contexts):
    from flows.simulator import Fabric, Simulator
    view = r.topo.view()
    fab = Fabric()
    for c in contexts:
        fab.add_chassis(c.name, Simulator(compiler.all_flows(compiler.compile_chassis(apps(), view, c))),
                        c.tunnel_ip, c.tunnel_ports, c.uplinks)
    return fab


def test_floating_ip_of_a_port_on_a_chassis_without_the_physnet_is_served_on_the_gateway():
    from tests.unit.test_nat import FIP_MAC, outside_ip
    r = with_external()
    contexts = _central(r)
    view = r.topo.view()
    fip = r.extra["fip"]
    owner = cookie(Owner.FLOATINGIP, fip["_key"])
    hosting = {c.name: bool(compiler.compile_owner(apps(), view, c, owner)) for c in contexts}
    assert hosting == {"c1": True, "c2": False, "c3": False}
    assert all(owner in compiler.owners_for_chassis(apps(), view, c) for c in contexts if c.name == "c1")
    fab = _fabric(r, contexts)
    fab._chassis["c1"].sim.run(arp(1, OUTSIDE_MAC, OUTSIDE_IP, FIP_IP), in_port=UPLINK)
    # outside → FIP: translated on c1, tunnelled to c3
    inbound = fab.send("c1", UPLINK, outside_ip(FIP_MAC, FIP_IP))
    assert [(d.chassis, d.port) for d in inbound] == [("c3", 1)], inbound
    assert inbound[0].packet["ipv4_dst"] == ipv4("10.2.0.12")
    # VM → outside: routed on c3, transit to c1, out as the FIP
    out = fab.send("c3", 1, ip_pkt(r.ports["vmB2"], r.macs["R1B"], OUTSIDE_IP))
    ext = [d for d in out if d.chassis == "physnet:physnet1"]
    assert len(ext) == 1 and ext[0].packet["ipv4_src"] == ipv4(FIP_IP), out
    assert ext[0].packet["eth_src"] == mac(FIP_MAC)


def test_a_central_floating_ip_fails_over_with_its_gateway_and_is_announced():
    r = with_external()
    contexts = _central(r)
    owner = cookie(Owner.FLOATINGIP, r.extra["fip"]["_key"])
    c2 = next(c for c in contexts if c.name == "c2")
    before = frozenset(compiler.compile_owner(apps(), r.topo.view(), c2, owner))
    assert not before
    _kill(r, "c1")
    after = frozenset(compiler.compile_owner(apps(), r.topo.view(), c2, owner))
    [(_key, out)] = NatApp().announcements(c2, before, after)
    assert int.from_bytes(out.data[28:32], "big") == ipv4(FIP_IP)


def test_central_floating_ip_keeps_its_transit_without_snat():
    r = with_external(snat=False)
    contexts = _central(r)
    fab = _fabric(r, contexts)
    fab._chassis["c1"].sim.run(arp(1, OUTSIDE_MAC, OUTSIDE_IP, FIP_IP), in_port=UPLINK)
    out = fab.send("c3", 1, ip_pkt(r.ports["vmB2"], r.macs["R1B"], OUTSIDE_IP))
    ext = [d for d in out if d.chassis == "physnet:physnet1"]
    assert len(ext) == 1 and ext[0].packet["ipv4_src"] == ipv4(FIP_IP), out


def test_ha_only_the_owner_speaks_for_a_chassis():
    from controller.ownership import EtcdOwnership, SoloOwnership
    own = EtcdOwnership.__new__(EtcdOwnership)   # no etcd: only the last-read state matters here
    own.member_id, own.members = "a", {"a": {}, "b": {}}
    own.owners = {1: ("a", 5), 2: ("b", 6), 3: ("gone", 7)}
    assert [own.owned_elsewhere(d) for d in (1, 2, 3, 4)] == [False, True, False, False]
    assert SoloOwnership().owned_elsewhere(1) is False
