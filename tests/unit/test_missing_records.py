"""Compilers meet records that are not (or no longer) in the view.

Why: the view is fed one change at a time, so a port can name a network that was deleted before
it, a router leg can outlive its network, a FIP port can outlive its FIP. These functions are
typed against topology.view.View, whose lookups answer None for a missing record; each must treat
that as "absent" — no flows, no owner — and never crash the compile of the chassis.
"""
from __future__ import annotations

import ipaddress

from flows import l2, nat, routing, services
from flows.flow import match_dict
from flows.routing import Leg
from flows.tables import Owner, cookie
from tests.unit.l2topo import Topo, ctx
from topology.store import Change


def _topo_with_port(ntype: str = "vxlan", physnet: str | None = None):
    t = Topo()
    t.chassis("c1", "192.0.2.11")
    net = t.network("n", ntype, seg=100 if ntype == "vlan" else None, physnet=physnet)
    port = t.port(net, "fa:16:3e:00:00:01", "10.0.0.5", host="c1")
    return t, net, port


def test_l2_port_flows_of_a_port_whose_network_is_gone():
    for ntype, physnet in (("vxlan", None), ("vlan", "physnet1")):
        t, net, port = _topo_with_port(ntype, physnet)
        t.delete("network", net["id"])
        view = t.view()
        assert l2.port_flows(view, ctx("c1", {port["id"]: 5}), port) == []   # local
        assert l2.port_flows(view, ctx("c2", {}), port) == []                # remote (provider entry)


def test_arp_and_dhcp_owners_of_a_chassis_whose_local_port_lost_its_network():
    t, net, port = _topo_with_port()
    other = t.network("m")
    kept = t.port(other, "fa:16:3e:00:00:02", "10.0.1.5", host="c1")
    t.delete("network", net["id"])
    view = t.view()
    c = ctx("c1", {port["id"]: 5, kept["id"]: 6, "no-such-port": 7})
    assert services.owners_on_chassis(view, c, "arp") == [cookie(Owner.NETWORK, other["_key"])]
    assert services.owners_on_chassis(view, c, "dhcp") == []  # no subnets here: nothing, no crash


def _leg(port: dict, net: dict) -> Leg:
    return Leg(port=port, network=net, subnet={"id": "s-" + net["id"], "cidr": "10.0.0.0/24"},
               cidr=ipaddress.IPv4Network("10.0.0.0/24"), ip=ipaddress.IPv4Address("10.0.0.1"), mac=0xFA163E0000FF)


def test_neighbor_flows_skip_a_leg_whose_network_is_gone():
    t, net, port = _topo_with_port()
    live = t.network("live")
    neighbour = t.port(live, "fa:16:3e:00:00:03", "10.0.0.7", host="c1")
    router = {"id": "r1", "_key": 1, "name": "r"}
    legs = [_leg({"id": "rp1"}, net), _leg({"id": "rp2"}, live)]
    t.delete("network", net["id"])  # its port outlives it in the view (feed order), not local here
    view = t.view()
    flows = routing.neighbor_flows(view, ctx("c1", {neighbour["id"]: 5}, tunnel_ip="192.0.2.11"), router, legs)
    assert [match_dict(f.match).get("metadata") for f in flows] == [live["_key"]]


def test_gateway_chassis_of_a_router_whose_external_network_is_gone():
    t = Topo()
    ext = t.network("ext", "flat", physnet="physnet1")
    router = {"id": "r1", "_key": 1, "external_gateway_info": {"network_id": ext["id"]}}
    t.delete("network", ext["id"])
    assert routing.gateway_chassis_name(t.view(), router) is None
    assert routing.gateway_chassis_name(t.view(), {"id": "r2", "_key": 2}) is None  # no gateway at all


def test_nat_owners_of_a_fip_port_change_whose_fip_is_gone():
    t, net, port = _topo_with_port()
    fip_port = dict(port, id="fp1", device_owner="network:floatingip", device_id="fip-deleted-before")
    view = t.view()
    for old, new in ((fip_port, None), (None, fip_port), (fip_port, dict(fip_port, status="ACTIVE"))):
        assert nat.owners_for_change(view, Change(99, "port", "fp1", old, new)) == set()
    gw = dict(port, id="gp1", device_owner="network:router_gateway", network_id="gone-network")
    assert nat.owners_for_change(view, Change(100, "port", "gp1", gw, None)) == set()
