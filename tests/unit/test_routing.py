"""Distributed east-west routing on the offline simulator (flows/routing.py, apps/routing.py).

Topology (built by `routed_topo`, reused by test_nat.py):
  tenant p1: net A 10.1.0.0/24, net B 10.2.0.0/24, router R1 (A, B), gateway on external net E
  tenant p2: net C 10.1.0.0/24, net D 10.2.0.0/24 (same CIDRs!), router R2 (C, D)
  E: flat physnet1, router:external, 172.24.4.0/24 (gateway 172.24.4.1)
  c1: vmA1 (A, ofport 1), vmB1 (B, 2), vmC1 (C, 3), vmD1 (D, 4);  c2: vmB2 (B, ofport 1)
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import pytest

from apps.nat import NatApp
from apps.registry import default_apps
from apps.routing import RoutingApp
from flows import compiler, routing
from flows.fields import ipv4, mac
from flows.simulator import Fabric, Simulator, packet
from flows.tables import F, R, T, Owner, cookie, split_cookie
from tests.unit.l2topo import Topo, ctx
from topology.store import Change

ROUTER_IFACE = "network:router_interface"


def apps() -> list:
    """The registry's apps plus ours (whether or not the registry lists them yet)."""
    out = [a for a in default_apps() if a.name not in ("routing", "nat")]
    return out + [RoutingApp(), NatApp()]


def subnet(topo: Topo, net: dict, cidr: str, gateway: str | None) -> dict:
    return topo._put("subnet", {"id": "s-" + net["id"], "network_id": net["id"], "cidr": cidr, "ip_version": 4,
                                "gateway_ip": gateway, "enable_dhcp": False, "allocation_pools": [],
                                "host_routes": [], "dns_nameservers": [], "_key": next(topo._keys["subnet"])})


def service_port(topo: Topo, net: dict, mac_: str, ip: str, owner: str, device: str) -> dict:
    port = topo.port(net, mac_, ip)
    return topo.update("port", port["id"], device_owner=owner, device_id=device)


def router(topo: Topo, name: str, project: str = "p1", routes=None) -> dict:
    return topo._put("router", {"id": str(uuid.uuid4()), "name": name, "project_id": project,
                                "admin_state_up": True, "external_gateway_info": None, "routes": routes or [],
                                "_key": next(topo._keys["router"])})


def attach(topo: Topo, rtr: dict, net: dict, mac_: str, ip: str) -> dict:
    return service_port(topo, net, mac_, ip, ROUTER_IFACE, rtr["id"])


@dataclass
class Routed:
    topo: Topo
    nets: dict = field(default_factory=dict)
    ports: dict = field(default_factory=dict)
    routers: dict = field(default_factory=dict)
    macs: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)

    def contexts(self):
        return [ctx("c1", self.extra["local_c1"], "10.0.0.1"), ctx("c2", self.extra["local_c2"], "10.0.0.2")]

    def fabric(self, view=None) -> Fabric:
        view = view or self.topo.view()
        fab = Fabric()
        for c in self.contexts():
            fab.add_chassis(c.name, Simulator(compiler.all_flows(compiler.compile_chassis(apps(), view, c))),
                            c.tunnel_ip, c.tunnel_ports, c.uplinks)
        return fab

    def sim(self, name: str) -> Simulator:
        c = next(c for c in self.contexts() if c.name == name)
        return Simulator(compiler.all_flows(compiler.compile_chassis(apps(), self.topo.view(), c)))


def routed_topo(**mac_overrides: str) -> Routed:
    t = Topo()
    r = Routed(t)
    t.chassis("c1", "10.0.0.1")
    t.chassis("c2", "10.0.0.2")
    for name, cidr, project in (("A", "10.1.0.0/24", "p1"), ("B", "10.2.0.0/24", "p1"),
                                ("C", "10.1.0.0/24", "p2"), ("D", "10.2.0.0/24", "p2")):
        r.nets[name] = t.network(name, project=project)
        subnet(t, r.nets[name], cidr, cidr.replace("0/24", "1"))
    r.routers["R1"] = router(t, "R1")
    r.routers["R2"] = router(t, "R2", project="p2")
    r.macs = {"R1A": "fa:16:3e:aa:00:01", "R1B": "fa:16:3e:aa:00:02",
              "R2C": "fa:16:3e:bb:00:01", "R2D": "fa:16:3e:bb:00:02", **mac_overrides}
    attach(t, r.routers["R1"], r.nets["A"], r.macs["R1A"], "10.1.0.1")
    attach(t, r.routers["R1"], r.nets["B"], r.macs["R1B"], "10.2.0.1")
    attach(t, r.routers["R2"], r.nets["C"], r.macs["R2C"], "10.1.0.1")
    attach(t, r.routers["R2"], r.nets["D"], r.macs["R2D"], "10.2.0.1")
    spec = {"vmA1": ("A", "fa:16:3e:00:0a:01", "10.1.0.11", "c1"),
            "vmB1": ("B", "fa:16:3e:00:0b:01", "10.2.0.11", "c1"),
            "vmC1": ("C", "fa:16:3e:00:0c:01", "10.1.0.11", "c1"),
            "vmD1": ("D", "fa:16:3e:00:0d:01", "10.2.0.11", "c1"),
            "vmB2": ("B", "fa:16:3e:00:0b:02", "10.2.0.12", "c2")}
    for name, (net, m, ip, host) in spec.items():
        r.ports[name] = t.port(r.nets[net], m, ip, host=host, name=name)
    r.extra["local_c1"] = {r.ports[n]["id"]: i for i, n in enumerate(("vmA1", "vmB1", "vmC1", "vmD1"), 1)}
    r.extra["local_c2"] = {r.ports["vmB2"]["id"]: 1}
    return r


def ip_pkt(src_port: dict, dst_mac: str, dst_ip: str, ttl: int = 64, **more) -> dict:
    more.setdefault("icmpv4_type", 8)
    pkt = packet(eth_src=src_port["mac_address"], eth_dst=dst_mac, eth_type=0x0800, ip_proto=1,
                 ipv4_src=src_port["fixed_ips"][0]["ip_address"], ipv4_dst=dst_ip, **more)
    pkt["ip_ttl"] = ttl
    return pkt


def delivered(deliveries, chassis: str, port: int) -> list[dict]:
    return [d.packet for d in deliveries if d.chassis == chassis and d.port == port]


# ---------------------------------------------------------------------------------- tests

def test_east_west_same_chassis_rewrites_macs_and_decrements_ttl():
    r = routed_topo()
    out = r.fabric().send("c1", 1, ip_pkt(r.ports["vmA1"], r.macs["R1A"], "10.2.0.11"))
    got = delivered(out, "c1", 2)
    assert len(got) == 1 and len(out) == 1, out
    p = got[0]
    assert p["eth_src"] == mac(r.macs["R1B"]) and p["eth_dst"] == mac("fa:16:3e:00:0b:01")
    assert p["ip_ttl"] == 63 and p["ipv4_src"] == ipv4("10.1.0.11") and p["ipv4_dst"] == ipv4("10.2.0.11")


def test_east_west_across_chassis_tunnels_on_destination_vni():
    r = routed_topo()
    out = r.fabric().send("c1", 1, ip_pkt(r.ports["vmA1"], r.macs["R1A"], "10.2.0.12"))
    got = delivered(out, "c2", 1)
    assert len(got) == 1 and len(out) == 1, out
    assert got[0]["eth_dst"] == mac("fa:16:3e:00:0b:02") and got[0]["ip_ttl"] == 63
    # and back: c2 has the router too (vmB2 is local there), routes to A on c1
    back = r.fabric().send("c2", 1, ip_pkt(r.ports["vmB2"], r.macs["R1B"], "10.1.0.11"))
    assert [(d.chassis, d.port) for d in back] == [("c1", 1)]
    assert back[0].packet["eth_src"] == mac(r.macs["R1A"])


def test_tunnelled_routed_packet_carries_destination_network_vni():
    r = routed_topo()
    sim = r.sim("c1")
    res = sim.run(ip_pkt(r.ports["vmA1"], r.macs["R1A"], "10.2.0.12"), in_port=1)
    [e] = res.outputs
    assert e.port == 100 and e.packet["tunnel_id"] == r.nets["B"]["provider:segmentation_id"]
    assert e.packet["tun_ipv4_dst"] == ipv4("10.0.0.2")
    assert e.packet[R.FLAGS] & F.ROUTED and e.packet[R.ROUTER] == r.routers["R1"]["_key"]
    assert e.packet[R.IN_PORT] == r.ports["vmA1"]["_key"]  # egress SG semantics kept


def test_routed_without_local_port_of_destination_network():
    """c2 has no port of net A: the neighbor entry tunnels straight to c1 (the port owns it)."""
    r = routed_topo()
    view = r.topo.view()
    c2 = r.contexts()[1]
    flows = compiler.compile_owner(apps(), view, c2, cookie(Owner.PORT, r.ports["vmA1"]["_key"]))
    nb = [f for f in flows if f.table == T.L3_NEIGHBOR and dict((n, v) for n, v, _ in f.match)[R.NEXTHOP]
          == ipv4("10.1.0.11")]
    assert len(nb) == 1 and any(getattr(a, "port", None) == 100 for a in nb[0].actions)


def test_neighbor_entries_belong_to_the_port_not_the_router():
    """One more port must not recompile its routers: the router's own flows read none of its
    networks' ports, and the port's entries carry the port's cookie (issue 10)."""
    r = routed_topo()
    view = r.topo.view()
    c2 = r.contexts()[1]
    rflows = compiler.compile_owner(apps(), view, c2, cookie(Owner.ROUTER, r.routers["R1"]["_key"]))
    assert rflows and not [f for f in rflows if f.table == T.L3_NEIGHBOR and f.priority == routing.PRIO_NEIGHBOR]
    port = r.ports["vmA1"]
    mine = routing.port_neighbor_flows(view, c2, port)
    assert mine and all(f.cookie == cookie(Owner.PORT, port["_key"]) for f in mine)
    # the router-wide listing (tools) still yields the same entries, with the router's cookie
    legs = routing.interface_legs(view, r.routers["R1"])
    every = {f.key for f in routing.neighbor_flows(view, c2, r.routers["R1"], legs)}
    assert {f.key for f in mine} <= every
    # a plain port's change names no router; an interface's does
    change = Change(view.revision, "port", port["id"], port, port)
    assert cookie(Owner.ROUTER, r.routers["R1"]["_key"]) not in routing.owners_for_change(view, change)
    assert cookie(Owner.PORT, port["_key"]) in routing.owners_for_change(view, change)


def test_port_location_names_the_network_ports_only_when_the_router_arrives():
    """A tap on a chassis where its network already is names the port and its routers; the first
    tap of a router's networks there also names every port of those networks (their entries)."""
    r = routed_topo()
    view = r.topo.view()
    c1, c2 = r.contexts()[0], r.contexts()[1]
    port = r.ports["vmA1"]
    others = {cookie(Owner.PORT, p["_key"]) for n in ("A", "B") for p in view.ports_of_network(r.nets[n]["id"])}
    here = routing.owners_for_port_location(view, c1, port)
    assert cookie(Owner.PORT, port["_key"]) in here and cookie(Owner.ROUTER, r.routers["R1"]["_key"]) in here
    first = ctx("c3", {port["id"]: 7}, "10.0.0.3")  # R1 arrives with this tap
    assert others <= routing.owners_for_port_location(view, first, port)
    # on c2, R1 is already here (vmB2 on B): the tap names its own owners, not B's ports
    joined = ctx("c2", dict(c2.local_ports, **{port["id"]: 7}), "10.0.0.2")
    got = routing.owners_for_port_location(view, joined, port)
    assert cookie(Owner.PORT, port["_key"]) in got and cookie(Owner.PORT, r.ports["vmB2"]["_key"]) not in got


def test_tenants_with_overlapping_cidrs_stay_apart():
    r = routed_topo()
    fab = r.fabric()
    # tenant 2's VM routes to its own 10.2.0.11 (vmD1, ofport 4), never to tenant 1's vmB1
    out = fab.send("c1", 3, ip_pkt(r.ports["vmC1"], r.macs["R2C"], "10.2.0.11"))
    assert [(d.chassis, d.port) for d in out] == [("c1", 4)]
    # tenant 1's VM cannot use tenant 2's router MAC (R2 has no gateway entry on net A)
    assert fab.send("c1", 1, ip_pkt(r.ports["vmA1"], r.macs["R2C"], "10.2.0.11")) == []
    # and tenant 2's network D is not reachable via R1
    out = fab.send("c1", 1, ip_pkt(r.ports["vmA1"], r.macs["R1A"], "10.2.0.11"))
    assert [(d.chassis, d.port) for d in out] == [("c1", 2)]


def test_unknown_destination_in_attached_subnet_drops():
    r = routed_topo()
    assert r.fabric().send("c1", 1, ip_pkt(r.ports["vmA1"], r.macs["R1A"], "10.2.0.99")) == []


def test_extra_route_via_a_vm_nexthop():
    r = routed_topo()
    r.topo.update("router", r.routers["R1"]["id"],
                  routes=[{"destination": "192.168.50.0/24", "nexthop": "10.2.0.12"},
                          {"destination": "192.168.0.0/16", "nexthop": "10.2.0.11"}])
    fab = r.fabric()
    out = fab.send("c1", 1, ip_pkt(r.ports["vmA1"], r.macs["R1A"], "192.168.50.7"))
    assert [(d.chassis, d.port) for d in out] == [("c2", 1)]  # the /24 wins over the /16
    assert out[0].packet["eth_dst"] == mac("fa:16:3e:00:0b:02")
    assert out[0].packet["ipv4_dst"] == ipv4("192.168.50.7")
    out = fab.send("c1", 1, ip_pkt(r.ports["vmA1"], r.macs["R1A"], "192.168.9.9"))
    assert [(d.chassis, d.port) for d in out] == [("c1", 2)]


def test_non_ip_to_router_mac_is_switched_not_routed():
    r = routed_topo()
    sim = r.sim("c1")
    pkt = packet(eth_src="fa:16:3e:00:0a:01", eth_dst=r.macs["R1A"], eth_type=0x86DD)
    res = sim.run(pkt, in_port=1)
    assert all(s.table not in (T.L3_ROUTE, T.L3_NEIGHBOR) for s in res.trace)


def test_router_absent_on_chassis_without_its_networks():
    r = routed_topo()
    view = r.topo.view()
    c2 = r.contexts()[1]
    assert cookie(Owner.ROUTER, r.routers["R2"]["_key"]) not in compiler.compile_chassis(apps(), view, c2)
    assert cookie(Owner.ROUTER, r.routers["R1"]["_key"]) in compiler.compile_chassis(apps(), view, c2)


def test_owners_for_change_covers_interfaces_ports_subnets_and_routes():
    r = routed_topo()
    ck1 = cookie(Owner.ROUTER, r.routers["R1"]["_key"])
    ck2 = cookie(Owner.ROUTER, r.routers["R2"]["_key"])
    t = r.topo

    def owners_of(action, kind=Owner.ROUTER) -> set[int]:
        n = len(t.changes)
        action()
        view = t.view()
        got = set().union(*(routing.owners_for_change(view, ch) for ch in t.changes[n:]))
        return {o for o in got if split_cookie(o)[0] == kind}

    new = {}
    o = owners_of(lambda: new.setdefault("p", t.port(r.nets["B"], "fa:16:3e:00:0b:09", "10.2.0.19", host="c2")))
    assert not o                                           # a plain port names no router:
    o = owners_of(lambda: t.update("port", new["p"]["id"], name="x"), Owner.PORT)
    assert o == {cookie(Owner.PORT, new["p"]["_key"])}     # its neighbor entries are its own
    o = owners_of(lambda: t.update("router", r.routers["R1"]["id"],
                                   routes=[{"destination": "1.2.3.0/24", "nexthop": "10.1.0.11"}]))
    assert o == {ck1}                                      # routes
    o = owners_of(lambda: attach(t, r.routers["R2"], t.network("X", project="p2"), "fa:16:3e:bb:00:09",
                                 "10.9.0.1"))
    assert ck2 in o and ck1 not in o                       # interface port (device_id)
    o = owners_of(lambda: t.update("subnet", "s-" + r.nets["A"]["id"], gateway_ip="10.1.0.1"))
    assert ck1 in o and ck2 not in o                       # subnet of A


def test_incremental_equals_full_recompile_after_interface_removal():
    r = routed_topo()
    t = r.topo
    iface = next(p for p in t.data["port"].values()
                 if p["device_owner"] == ROUTER_IFACE and p["network_id"] == r.nets["B"]["id"])
    view = t.view()
    c1 = r.contexts()[0]
    before = compiler.compile_chassis(apps(), view, c1)
    t.delete("port", iface["id"])
    view.apply(t.changes[-1])
    touched = compiler.changed_owners(apps(), view, [t.changes[-1]])
    after = dict(before)
    after.update(compiler.compile_owners(apps(), view, c1, touched))
    after = {o: f for o, f in after.items() if f}
    assert after == compiler.compile_chassis(apps(), view, c1)
    # and B is no longer reachable from A
    sim = Simulator(compiler.all_flows(after))
    assert sim.run(ip_pkt(r.ports["vmA1"], r.macs["R1A"], "10.2.0.11"), in_port=1).outputs == []


def test_pipeline_checks_and_no_key_conflicts():
    r = routed_topo()
    view = r.topo.view()
    for c in r.contexts():
        compiler.check_conflicts(compiler.compile_chassis(apps(), view, c, check=True), c.name)


@pytest.mark.parametrize("prefix,connected", [(24, True), (24, False), (16, False), (0, False)])
def test_route_priorities_are_longest_prefix_first(prefix, connected):
    longer = routing._route_prio(prefix + 1 if prefix < 32 else 32, False)
    assert longer > routing._route_prio(prefix, connected) or prefix == 32
