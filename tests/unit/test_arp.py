"""ARP answered in the switch: who answers what, from ArpApp's compiled SERVICE flows (real
TopologyView), walked by the offline simulator; the controller's ARP packet-in path is gone."""
from __future__ import annotations

from apps.arp import ArpApp
from flows.flow import GotoTable, flow
from flows.simulator import Simulator, packet
from flows.tables import T
from tests.unit.test_services_fixture import (DHCP_IP, DHCP_MAC, EXT_IP, EXT_MAC, FIP_IP, GW_IP, NET1, NET2,
                                              NET_KEYS, OFPORTS, PORT_KEYS, RGW_IP, RGW_MAC, RI_MAC, VM1_IP,
                                              VM1_MAC, VM2_IP, VM2_MAC, arp_request, make_ctx, make_view,
                                              packet_in)

ENTER = flow(T.CLASSIFY, 0, 0, [GotoTable(T.SERVICE)])  # the packet arrives with reg6/metadata set
MISS = flow(T.SERVICE, 0, 0, [GotoTable(T.EGRESS_CT)])  # SERVICE's miss, as the base pipeline emits it


def service_sim(view, ctx=None) -> Simulator:
    ctx = ctx or make_ctx()
    app = ArpApp()
    return Simulator([ENTER, MISS] + [f for o in app.owners_for_chassis(view, ctx) for f in app.compile(view, ctx, o)])


def ask(sim, tpa, port="vm1", net=NET1, spa=VM1_IP, mac=VM1_MAC, op=1):
    pkt = packet(eth_src=mac, eth_dst="ff:ff:ff:ff:ff:ff", eth_type=0x0806, arp_op=op, arp_sha=mac,
                 arp_spa=spa, arp_tha="00:00:00:00:00:00", arp_tpa=tpa,
                 reg6=PORT_KEYS[port], metadata=NET_KEYS[net])
    return sim.run(pkt, in_port=OFPORTS[port])


def answer_of(sim, tpa, **kw) -> dict | None:
    """The reply frame (header fields), None when not answered; checks it is a well-formed reply."""
    res = ask(sim, tpa, **kw)
    assert res.punts == [], res.dump_trace()
    if not res.outputs:
        return None
    (out,) = res.outputs
    port = kw.get("port", "vm1")
    assert out.port == OFPORTS[port], res.dump_trace()  # back out of the asking port (IN_PORT)
    f = out.on_wire()
    assert f["arp_op"] == 2 and f["arp_spa"] == packet(arp_spa=tpa)["arp_spa"]
    assert f["eth_src"] == f["arp_sha"]
    asker = packet(eth_src=kw.get("mac", VM1_MAC), arp_spa=kw.get("spa", VM1_IP))
    assert f["eth_dst"] == f["arp_tha"] == asker["eth_src"] and f["arp_tpa"] == asker["arp_spa"]
    return f


def mac_of(text: str) -> int:
    return packet(eth_src=text)["eth_src"]


def passed(sim, tpa, **kw) -> bool:
    """Left to normal L2: the request went on to EGRESS_CT (not answered, not dropped here)."""
    res = ask(sim, tpa, **kw)
    return [s.table for s in res.trace][-1] == T.EGRESS_CT and not res.outputs


def test_answers_port_ip_to_the_asking_port():
    f = answer_of(service_sim(make_view()), VM2_IP)
    assert f["arp_sha"] == mac_of(VM2_MAC)


def test_answers_gateway_and_dhcp_port():
    sim = service_sim(make_view())
    assert answer_of(sim, GW_IP)["arp_sha"] == mac_of(RI_MAC)
    assert answer_of(sim, DHCP_IP)["arp_sha"] == mac_of(DHCP_MAC)


def test_answers_allowed_address_pair():
    f = answer_of(service_sim(make_view()), "10.0.0.77", port="vm2", spa=VM2_IP, mac=VM2_MAC)
    assert f["arp_sha"] == mac_of(VM1_MAC)


def test_shared_aap_address_is_not_answered_but_passed_to_l2():
    sim = service_sim(make_view())
    assert answer_of(sim, "10.0.0.100") is None and passed(sim, "10.0.0.100")


def test_floating_ip_answered_with_router_gateway_mac():
    sim = service_sim(make_view())
    ext = dict(port="ext", net=NET2, spa=EXT_IP, mac=EXT_MAC)
    assert answer_of(sim, FIP_IP, **ext)["arp_sha"] == mac_of(RGW_MAC)
    assert answer_of(sim, RGW_IP, **ext)["arp_sha"] == mac_of(RGW_MAC)
    # an unassociated floating IP is nobody's: a provider network passes it (outside hosts answer)
    assert answer_of(sim, "172.24.4.51", **ext) is None and passed(sim, "172.24.4.51", **ext)


def test_unknown_address_and_other_network_not_answered():
    sim = service_sim(make_view())
    assert answer_of(sim, "10.0.0.200") is None and not passed(sim, "10.0.0.200")  # overlay: dropped
    # same IP asked on another network: the network (metadata) scopes the answer
    assert answer_of(sim, VM2_IP, net=NET2) is None


def test_own_address_probe_and_gratuitous_are_silent():
    sim = service_sim(make_view())
    assert answer_of(sim, VM1_IP, spa="0.0.0.0") is None  # DAD/ACD probe for itself
    assert answer_of(sim, VM1_IP, spa=VM1_IP) is None  # gratuitous
    assert not passed(sim, VM1_IP, spa="0.0.0.0")  # not flooded either (as the controller did)


def test_dad_probe_for_someone_elses_address_is_answered():
    assert answer_of(service_sim(make_view()), VM2_IP, spa="0.0.0.0") is not None


def test_reply_frames_are_ignored():
    sim = service_sim(make_view())
    res = ask(sim, VM2_IP, op=2)
    assert res.outputs == [] and res.punts == []


def test_sees_topology_changes():
    from topology.store import Change
    view = make_view()
    assert answer_of(service_sim(view), "10.0.0.50") is None
    rec = dict(view.get("port", "vm2"))
    new = dict(rec, fixed_ips=[{"subnet_id": "sub-1", "ip_address": "10.0.0.50"}])
    view.apply(Change(view.revision + 1, "port", "vm2", rec, new))
    sim = service_sim(view)
    assert answer_of(sim, "10.0.0.50")["arp_sha"] == mac_of(VM2_MAC)
    assert answer_of(sim, VM2_IP) is None


def test_a_stale_arp_punt_is_counted_and_dropped():
    """Only a flow an older controller left behind can still punt "arp": no reply, no error."""
    app = ArpApp()
    assert app.packet_in(make_view(), make_ctx(), packet_in(arp_request(VM2_IP))) == []
    assert app.stats["stale_punt"] == 1 and app.stats["error"] == 0
