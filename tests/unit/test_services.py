"""Table SERVICE: ARP responders and DHCP punts (flows/services.py via ArpApp/DhcpApp as FlowApps)."""
from __future__ import annotations

from apps.arp import ArpApp
from apps.dhcp import DhcpApp
from flows import services
from flows.fields import ipv4, mac
from flows.flow import Controller, GotoTable, SetField, match_dict
from flows.tables import Owner, T, check_flow, cookie
from topology.store import Change
from tests.unit.test_services_fixture import (FIP_IP, GW_IP, NET_KEYS, PORT_KEYS, RGW_MAC, SUB1, VM1_IP,
                                              make_ctx, make_view)


def answered(flows) -> dict[int, int]:
    """arp_tpa → the MAC the responder answers with (flows whose actions turn it into a reply)."""
    out = {}
    for f in flows:
        sets = {a.field: a.value for a in f.actions if isinstance(a, SetField)}
        if sets.get("arp_op") == 2:
            assert not any(isinstance(a, Controller) for a in f.actions)
            out[match_dict(f.match)["arp_tpa"]] = sets["arp_sha"]
    return out


def all_flows(app, view, ctx):
    return [f for o in app.owners_for_chassis(view, ctx) for f in app.compile(view, ctx, o)]


def test_every_flow_respects_the_pipeline_and_carries_an_owner_cookie():
    view, ctx = make_view(), make_ctx()
    for app in (ArpApp(), DhcpApp()):
        flows = all_flows(app, view, ctx)
        assert flows
        for f in flows:
            check_flow(f)
            assert f.table == T.SERVICE
            assert f.cookie >> 56 in (Owner.NETWORK, Owner.PORT)


def test_dhcp_punt_only_for_local_ports_on_dhcp_subnets():
    view = make_view()
    app = DhcpApp()
    owners = set(app.owners_for_chassis(view, make_ctx()))
    assert owners == {cookie(Owner.PORT, PORT_KEYS["vm1"]), cookie(Owner.PORT, PORT_KEYS["vm2"])}
    (f,) = app.compile(view, make_ctx(), cookie(Owner.PORT, PORT_KEYS["vm1"]))
    assert match_dict(f.match) == {"reg6": PORT_KEYS["vm1"], "eth_type": 0x0800, "ip_proto": 17,
                                   "udp_src": 68, "udp_dst": 67}
    (act,) = f.actions
    assert isinstance(act, Controller) and act.userdata == b"dhcp"
    # port vm1 not local on this chassis → nothing
    assert app.compile(view, make_ctx(local=("vm2",)), cookie(Owner.PORT, PORT_KEYS["vm1"])) == []
    # DHCP-disabled subnet (vm3) → nothing
    assert app.compile(view, make_ctx(), cookie(Owner.PORT, PORT_KEYS["vm3"])) == []


def test_arp_flows_per_network():
    view, ctx = make_view(), make_ctx()
    flows = list(ArpApp().compile(view, ctx, cookie(Owner.NETWORK, NET_KEYS["net-1"])))
    assert set(answered(flows)) == {ipv4(x) for x in ("10.0.0.1", "10.0.0.2", VM1_IP, "10.0.0.11", "10.0.0.77")}
    passed = [match_dict(f.match)["arp_tpa"] for f in flows
              if f.actions and isinstance(f.actions[0], GotoTable)]
    assert ipv4("10.0.0.100") in passed  # shared AAP → normal L2
    assert (ipv4("10.0.5.0"), 0xFFFFFF00) in passed  # AAP CIDR → normal L2
    drops = [f for f in flows if not f.actions and "reg6" not in match_dict(f.match)]
    assert len(drops) == 1 and "arp_tpa" not in match_dict(drops[0].match)  # overlay: unknown → drop
    # a local owner's own-address probe (DAD/ACD) is dropped, never answered
    own = {(match_dict(f.match)["reg6"], match_dict(f.match)["arp_tpa"]) for f in flows
           if not f.actions and "reg6" in match_dict(f.match)}
    assert (PORT_KEYS["vm1"], ipv4(VM1_IP)) in own
    assert all(f.priority == services.PRIO_ARP_OWN for f in flows if "reg6" in match_dict(f.match))
    assert all(match_dict(f.match)["metadata"] == NET_KEYS["net-1"] for f in flows)
    assert len({f.key for f in flows}) == len(flows)


def test_provider_network_has_no_unknown_arp_drop_and_answers_floating_ips():
    view, ctx = make_view(), make_ctx()
    flows = list(ArpApp().compile(view, ctx, cookie(Owner.NETWORK, NET_KEYS["net-2"])))
    assert all(f.actions for f in flows if "reg6" not in match_dict(f.match))
    assert answered(flows)[ipv4(FIP_IP)] == mac(RGW_MAC)


def test_no_arp_flow_punts_or_uses_a_meter():
    view, ctx = make_view(), make_ctx()
    for f in all_flows(ArpApp(), view, ctx):
        assert not any(isinstance(a, Controller) for a in f.actions), f.ofctl()


def test_arp_flows_only_where_the_network_has_local_ports():
    view = make_view()
    app = ArpApp()
    ctx = make_ctx(local=("ext",))
    assert set(app.owners_for_chassis(view, ctx)) == {cookie(Owner.NETWORK, NET_KEYS["net-2"])}
    assert list(app.compile(view, ctx, cookie(Owner.NETWORK, NET_KEYS["net-1"]))) == []


def test_owners_for_change():
    view = make_view()
    arp, dhcp = ArpApp(), DhcpApp()
    port = view.get("port", "vm1")
    ch = Change(2, "port", "vm1", port, dict(port, name="x"))
    assert set(arp.owners_for_change(view, ch)) == {cookie(Owner.NETWORK, NET_KEYS["net-1"])}
    assert set(dhcp.owners_for_change(view, ch)) == {cookie(Owner.PORT, PORT_KEYS["vm1"])}
    sub = view.get("subnet", SUB1)
    ch = Change(3, "subnet", SUB1, sub, dict(sub, enable_dhcp=False))
    assert cookie(Owner.PORT, PORT_KEYS["vm2"]) in set(dhcp.owners_for_change(view, ch))
    fip = view.get("floatingip", "fip-1")
    ch = Change(4, "floatingip", "fip-1", fip, None)
    assert set(arp.owners_for_change(view, ch)) == {cookie(Owner.NETWORK, NET_KEYS["net-2"])}


def test_compile_follows_changes():
    view, ctx = make_view(), make_ctx()
    dhcp = DhcpApp()
    owner = cookie(Owner.PORT, PORT_KEYS["vm1"])
    assert len(list(dhcp.compile(view, ctx, owner))) == 1
    sub = view.get("subnet", SUB1)
    view.apply(Change(view.revision + 1, "subnet", SUB1, sub, dict(sub, enable_dhcp=False)))
    assert list(dhcp.compile(view, ctx, owner)) == []
    arp = ArpApp()
    net_owner = cookie(Owner.NETWORK, NET_KEYS["net-1"])
    before = {f.key for f in arp.compile(view, ctx, net_owner)}
    ri = view.get("port", "ri1")
    view.apply(Change(view.revision + 1, "port", "ri1", ri, None))
    after = {f.key for f in arp.compile(view, ctx, net_owner)}
    assert len(before - after) == 1
    assert ipv4(GW_IP) not in {match_dict(k[2]).get("arp_tpa") for k in after}


def test_flow_budget_per_port():
    """≤ 3 service flows per local port on a network of plain ports: its ARP responder, the drop
    of its own-address probes (OVN has the same per-owner flow) and its DHCP punt."""
    def mutate(snap):
        base = snap["port"]["vm2"]
        for i in range(40):
            pid = f"p{i}"
            snap["port"][pid] = dict(base, id=pid, _key=100 + i, mac_address=f"fa:16:3e:01:00:{i:02x}",
                                     allowed_address_pairs=[],
                                     fixed_ips=[{"subnet_id": SUB1, "ip_address": f"10.0.0.{120 + i}"}])
    view = make_view(mutate)
    ports = [p for p in view.records("port") if p.startswith("p")]
    from apps.base import ChassisContext
    ctx = ChassisContext("c1", 1, local_ports={p: 100 + i for i, p in enumerate(ports)})
    n = sum(len(all_flows(app, view, ctx)) for app in (ArpApp(), DhcpApp()))
    assert n <= 3 * len(ports) + 10  # + the fixture network's own addresses (router, DHCP, ...)


def test_an_owner_without_a_usable_mac_gets_no_responder():
    ni = services.NetworkIndex({"_key": 7, "provider:network_type": "vxlan"},
                               known={0x0A000005: services.Answer("", "p", 5),
                                      0x0A000006: services.Answer("nope", "q", 6),
                                      0x0A000003: services.Answer("fa:16:3e:00:00:03", "r", 3)})
    flows = services.arp_flows(ni, local_ports={})
    assert set(answered(flows)) == {0x0A000003}  # the others fall to the overlay drop
    assert [f for f in flows if not f.actions and "arp_tpa" not in match_dict(f.match)]
