"""North-south: floating IPs (stateless 1:1 NAT, distributed) and router SNAT (conntrack, one chassis).

Why this split:
- A floating IP is translated on the chassis of its port (DVR): no conntrack needed for a 1:1
  mapping, so a plain set_field both ways; its own MAC (the `network:floatingip` port's) is used
  on the external network, and only that chassis answers ARP for it — the outside switch sees
  each MAC on one uplink only, no flapping. A port on a chassis without the external physnet
  has its FIP on the router's gateway chassis instead (fip_is_central; traffic via transit).
- SNAT shares one address among many, so it needs conntrack state, which lives in one
  datapath: the router's *gateway chassis* (flows.routing.gateway_chassis_name). That chassis
  also owns the gateway IP/MAC on the outside. Other chassis send a router's SNAT traffic
  (already routed there) to the gateway chassis over VXLAN with a per-router *transit key*
  (tun_id = TRANSIT_KEY_BASE | router key), where it is routed again and SNATed; replies are
  un-NATed there and routed straight to the VM's chassis (flows.routing's neighbor entries).

Conntrack zone of a router's SNAT = its gateway port's `_key`. Port keys are the security
groups' zones (1..65535), but a gateway port is never plugged anywhere, so reg6/reg7 never hold
its key and no security-group ct() ever uses that zone; its ct_mark is unused.

Tables (see docs/routing.md):
  CLASSIFY        uplink (+VLAN) ARP for a FIP / gateway IP: learn the asker as external next
                  hop (L3_EXT_NEIGHBOR), answer requests in the datapath (reply out IN_PORT,
                  tag kept), swallow replies. IPv4 to FIP/gateway (its MAC) → NAT_IN.
  NAT_IN          FIP: ipv4_dst=FIP → fixed IP, reg2=router → resubmit(L3_ROUTE) (an earlier
                  table: goto may only go forward). Gateway IP: ct(zone=Z, nat) → NAT_IN;
                  +est+rpl in zone Z → reg2 → resubmit(L3_ROUTE).
  NAT_OUT         FIP: reg2, ipv4_src=fixed → ipv4_src=FIP, eth_src=FIP MAC → resolve → out.
                  SNAT: reg2 → ct(commit, zone=Z, nat(src=gateway IP)) → NAT_OUT; ct_zone=Z →
                  resolve → out. "Resolve" = eth_dst=0, resubmit(L3_EXT_NEIGHBOR), goto EXT_OUTPUT.
  EXT_OUTPUT      (owner: the external network) eth_dst still 0 → controller (ARP for reg1);
                  else push VLAN if any, out of the uplink.
"""
from __future__ import annotations

import ipaddress
import logging
from typing import Any, Iterable

from flows import arp_responder, gateway, provider
from flows.flow import (CT, NAT, Controller, Flow, GotoTable, Learn, LearnSpec, Output, PopVlan,
                        PushVlan, Resubmit, SetField, WriteMetadata, flow, match_dict)
from flows.routing import (DEVICE_FLOATINGIP, ETH_IP, gateway_chassis_name, gateway_legs, gateway_port, router_present,
                           external_network, is_gateway_chassis, router_cookie)
from flows.tables import F, R, T, Owner, cookie
from flows.view_helpers import is_provider, is_up, port_mac
from topology.store import FLOATINGIP, NETWORK, PORT, ROUTER, Change
from topology.view import View

LOG = logging.getLogger(__name__)

Record = dict[str, Any]

USERDATA_EXT_ARP = b"l3arp"
ETH_ARP = 0x0806
CT_TRK, CT_EST, CT_RPL, CT_INV = 0x20, 0x02, 0x08, 0x10

PRIO_UPLINK = 120            # above the provider network's own uplink classify (100)
PRIO_NAT = 100
PRIO_NAT_POST = 200          # after our own ct() recirculation (ct_zone = Z)
PRIO_NAT_POST_DROP = 190
PRIO_FIP_OUT = 300
PRIO_EXT_UNRESOLVED = 200
PRIO_EXT_OUT = 100
NEIGHBOR_LEARN_PRIORITY = 100
NEIGHBOR_IDLE_TIMEOUT = 300
PRIO_TRANSIT_IN = 150        # NAT_IN: above FIP / gateway-IP entries (those come from the uplink)
PRIO_TRANSIT_OUT = 50        # NAT_OUT: below FIP (300) — only what no local NAT takes
TRANSIT_CLASSIFY_PRIORITY = 100
# Tunnel keys of router transit traffic: bit 23 set, router key below. Tenant VNIs must stay
# below 0x800000 (the default VNI range is 1-65535).
TRANSIT_KEY_BASE = 0x800000
TRANSIT_TUNNEL = "vxlan"


def _ip(text: str | None) -> int | None:
    try:
        return int(ipaddress.IPv4Address(text)) if text else None
    except ValueError:
        return None


def fip_cookie(fip: Record) -> int:
    return cookie(Owner.FLOATINGIP, fip["_key"])


def ext_network_cookie(net: Record) -> int:
    return cookie(Owner.NETWORK, net["_key"])


# --------------------------------------------------------------------------- building blocks

def neighbor_learn(net: Record) -> Learn:
    """From an ARP on the uplink: metadata=<ext net>, reg1=arp_spa → eth_dst=arp_sha."""
    return Learn(table=T.L3_EXT_NEIGHBOR, priority=NEIGHBOR_LEARN_PRIORITY, idle_timeout=NEIGHBOR_IDLE_TIMEOUT,
                 cookie=cookie(Owner.LEARNED, net["_key"]),
                 specs=(LearnSpec("match", dst="metadata", value=net["_key"], n_bits=64),
                        LearnSpec("match", dst=R.NEXTHOP, src="arp_spa", n_bits=32),
                        LearnSpec("load", dst="eth_dst", src="arp_sha", n_bits=48)))


def uplink_address_flows(ctx, net: Record, ck: int, ip: int, mac_: int) -> list[Flow]:
    """An address of ours on the external network, on the one chassis that hosts it."""
    uplink = provider.uplink_ofport(ctx, net)
    if uplink is None:
        return []
    vid = provider.vlan_vid(net)
    base = dict(in_port=uplink, vlan_vid=vid)
    learn = neighbor_learn(net)
    pop = [PopVlan()] if vid else []
    return [
        flow(T.CLASSIFY, PRIO_UPLINK, ck, [learn, *arp_responder.reply_actions(ip, mac_)],
             match=dict(base, eth_type=ETH_ARP, arp_op=1, arp_tpa=ip)),
        flow(T.CLASSIFY, PRIO_UPLINK, ck, [learn], match=dict(base, eth_type=ETH_ARP, arp_op=2, arp_tpa=ip)),
        flow(T.CLASSIFY, PRIO_UPLINK, ck,
             [*pop, SetField(R.FLAGS, F.FROM_UPLINK), WriteMetadata(net["_key"]), GotoTable(T.NAT_IN)],
             match=dict(base, eth_type=ETH_IP, eth_dst=mac_, ipv4_dst=ip)),
    ]


RESOLVE_AND_SEND = [SetField("eth_dst", 0), Resubmit(T.L3_EXT_NEIGHBOR), GotoTable(T.EXT_OUTPUT)]


def announced_addresses(flows: Iterable[Flow]) -> dict[tuple, tuple[int, int, int, int]]:
    """The external addresses these flows answer ARP for on an uplink, from the responder flows
    uplink_address_flows builds: flow key → (uplink ofport, vlan_vid, IPv4, MAC).

    Why from flows: the chassis whose flows newly answer for an address is where it now lives
    (gateway failover, a floating IP's port moving), so that is where the controller sends
    gratuitous ARPs (apps/nat.py) — no second copy of the placement rules."""
    out: dict[tuple, tuple[int, int, int, int]] = {}
    for f in flows:
        if f.table != T.CLASSIFY or f.priority != PRIO_UPLINK:
            continue
        m = match_dict(f.match)
        if m.get("eth_type") != ETH_ARP or m.get("arp_op") != 1 or "arp_tpa" not in m or "in_port" not in m:
            continue
        mac_ = next((a.value for a in f.actions if isinstance(a, SetField) and a.field == "arp_sha"), None)
        ip, port, vid = m["arp_tpa"], m["in_port"], m.get("vlan_vid", 0)
        if isinstance(mac_, int) and isinstance(ip, int) and isinstance(port, int):
            out[f.key] = (port, vid if isinstance(vid, int) else vid[0], ip, mac_)
    return out


# --------------------------------------------------------------------------- floating IPs

def fip_parts(view: View, fip: Record) -> tuple[Record, Record, Record, int, int, int] | None:
    """(router, ext net, fixed port, floating ip, fixed ip, FIP MAC) of an associated FIP, or None."""
    if not fip.get("port_id") or not fip.get("router_id"):
        return None
    router = view.get(ROUTER, fip["router_id"])
    net = view.network(fip.get("floating_network_id"))
    port = view.port(fip["port_id"])
    fip_ip, fixed = _ip(fip.get("floating_ip_address")), _ip(fip.get("fixed_ip_address"))
    if router is None or net is None or port is None or fip_ip is None or fixed is None or \
            router.get("_key") is None:
        return None
    if not (is_up(router) and is_up(net) and is_up(port)) or not is_provider(net):
        return None
    if (router.get("external_gateway_info") or {}).get("network_id") != net["id"]:
        return None
    mac_ = None
    for p in view.ports_of_device(fip["id"]):
        if p.get("device_owner") == DEVICE_FLOATINGIP:
            mac_ = port_mac(p)
    if mac_ is None:
        gw = gateway_port(view, router)
        mac_ = port_mac(gw) if gw else None
    if mac_ is None:
        return None
    return router, net, port, fip_ip, fixed, mac_


def fip_is_central(view: View, router: Record, net: Record, port: Record) -> bool:
    """A FIP needs the router's gateway chassis when its port is bound to a chassis that does
    not map the external physnet (a compute node without an uplink there): like OVN's
    centralised floating IPs, it is translated on the gateway chassis and fails over with it.
    An unbound port is served nowhere (there is nobody to deliver to)."""
    host = port.get("binding:host_id") or ""
    chassis = view.chassis_by_name(host) if host else None
    return chassis is not None and not gateway.maps_physnet(chassis, net.get("provider:physical_network") or "")


def fip_hosted_here(view: View, ctx, fip: Record) -> bool:
    """A FIP lives on the chassis of its port if that chassis reaches the external physnet (DVR),
    else on its router's gateway chassis (fip_is_central)."""
    parts = fip_parts(view, fip)
    if parts is None:
        return False
    router, net, port, *_ = parts
    if port["id"] in ctx.local_ports and provider.uplink_ofport(ctx, net) is not None:
        return True
    return fip_is_central(view, router, net, port) and is_gateway_chassis(view, ctx, router)


def central_fips(view: View, router: Record) -> list[Record]:
    """The router's floating IPs served on its gateway chassis (fip_is_central)."""
    out = []
    for f in view.records(FLOATINGIP).values():
        if f.get("router_id") != router["id"] or f.get("_key") is None:
            continue
        parts = fip_parts(view, f)
        if parts is not None and fip_is_central(view, parts[0], parts[1], parts[2]):
            out.append(f)
    return out


def fip_flows(view: View, ctx, fip: Record | None) -> list[Flow]:
    if fip is None or not fip_hosted_here(view, ctx, fip):
        return []
    parts = fip_parts(view, fip)
    assert parts is not None  # fip_hosted_here: it has all its parts
    router, net, _port, fip_ip, fixed, mac_ = parts
    ck, ext = fip_cookie(fip), net["_key"]
    return uplink_address_flows(ctx, net, ck, fip_ip, mac_) + [
        flow(T.NAT_IN, PRIO_NAT, ck,
             [SetField("ipv4_dst", fixed), SetField(R.ROUTER, router["_key"]), Resubmit(T.L3_ROUTE)],
             match=dict(metadata=ext, eth_type=ETH_IP, ipv4_dst=fip_ip)),
        flow(T.NAT_OUT, PRIO_FIP_OUT, ck,
             [SetField("ipv4_src", fip_ip), SetField("eth_src", mac_), *RESOLVE_AND_SEND],
             match={"metadata": ext, R.ROUTER: router["_key"], "eth_type": ETH_IP, "ipv4_src": fixed}),
    ]


# --------------------------------------------------------------------------- router SNAT + gateway IP

def snat_zone(view: View, router: Record) -> int | None:
    """The router's SNAT conntrack zone = its gateway port's key (never a plugged port's zone)."""
    gw = gateway_port(view, router)
    return int(gw["_key"]) if gw is not None and gw.get("_key") is not None else None


def transit_key(router: Record) -> int | None:
    key = int(router["_key"])
    return TRANSIT_KEY_BASE | key if 0 < key < TRANSIT_KEY_BASE else None


def _snat_enabled(router: Record) -> bool:
    gw = router.get("external_gateway_info") or {}
    return bool(gw.get("network_id")) and gw.get("enable_snat", True) is not False


def transit_out_flows(view: View, ctx, router: Record) -> list[Flow]:
    """Not the gateway chassis: hand SNAT traffic (routed here, no local FIP) to the gateway chassis.
    Only where the router is present (routing.owners_on_chassis names it there): elsewhere no
    traffic is routed into it, and a full recompile would not list the owner."""
    if not router_present(view, ctx, router):
        return []
    net = external_network(view, router)
    gw_name = gateway_chassis_name(view, router)
    gw = view.chassis_by_name(gw_name) if gw_name else None
    ofport, tkey = ctx.tunnel_ports.get(TRANSIT_TUNNEL), transit_key(router)
    if (net is None or gw is None or not gw.get("tunnel_ip") or gw_name == ctx.name or ofport is None
            or tkey is None or not gateway_legs(view, router)):
        return []
    if not _snat_enabled(router) and not central_fips(view, router):
        return []
    return [flow(T.NAT_OUT, PRIO_TRANSIT_OUT, router_cookie(router),
                 [SetField("tunnel_id", tkey), SetField("tun_ipv4_dst", _ip(gw["tunnel_ip"]) or 0), Output(ofport)],
                 match={"metadata": net["_key"], R.ROUTER: router["_key"], "eth_type": ETH_IP})]


def transit_in_flows(ctx, router: Record, net: Record) -> list[Flow]:
    """Gateway chassis: transit traffic from other chassis is routed again here (then SNATed)."""
    ofport, tkey = ctx.tunnel_ports.get(TRANSIT_TUNNEL), transit_key(router)
    if ofport is None or tkey is None:
        return []
    ck, rkey = router_cookie(router), router["_key"]
    return [
        flow(T.CLASSIFY, TRANSIT_CLASSIFY_PRIORITY, ck,
             [SetField(R.FLAGS, F.FROM_TUNNEL), SetField(R.ROUTER, rkey), WriteMetadata(net["_key"]),
              GotoTable(T.NAT_IN)],
             match=dict(in_port=ofport, tunnel_id=tkey)),
        flow(T.NAT_IN, PRIO_TRANSIT_IN, ck, [Resubmit(T.L3_ROUTE)],
             match={"metadata": net["_key"], R.ROUTER: rkey, R.FLAGS: (F.FROM_TUNNEL, F.FROM_TUNNEL),
                    "eth_type": ETH_IP}),
    ]


def router_nat_flows(view: View, ctx, router: Record | None) -> list[Flow]:
    """Gateway IP (ARP, un-SNAT) and SNAT of a router on its gateway chassis; transit elsewhere."""
    if router is None or not is_up(router):
        return []
    if not is_gateway_chassis(view, ctx, router):
        return transit_out_flows(view, ctx, router)
    net = external_network(view, router)
    legs = gateway_legs(view, router)
    zone = snat_zone(view, router)
    if net is None or not legs or zone is None:
        return []
    leg = legs[0]
    ck, ext, rkey, gw_ip = router_cookie(router), net["_key"], router["_key"], int(leg.ip)
    flows = uplink_address_flows(ctx, net, ck, gw_ip, leg.mac)
    if not _snat_enabled(router):  # central FIPs still need their transit (flows.nat.fip_is_central)
        return flows + (transit_in_flows(ctx, router, net) if central_fips(view, router) else [])
    post = {"metadata": ext, "ct_zone": zone, "eth_type": ETH_IP}
    return flows + transit_in_flows(ctx, router, net) + [
        # replies to the gateway IP: un-SNAT, then route to the inside
        flow(T.NAT_IN, PRIO_NAT, ck, [CT(zone=zone, nat=NAT(), table=T.NAT_IN)],
             match=dict(metadata=ext, eth_type=ETH_IP, ipv4_dst=gw_ip)),
        flow(T.NAT_IN, PRIO_NAT_POST, ck, [SetField(R.ROUTER, rkey), Resubmit(T.L3_ROUTE)],
             match=dict(post, ct_state=(CT_TRK | CT_EST | CT_RPL, CT_TRK | CT_EST | CT_RPL | CT_INV))),
        flow(T.NAT_IN, PRIO_NAT_POST_DROP, ck, [], match=post),
        # SNAT towards the outside
        flow(T.NAT_OUT, PRIO_NAT, ck,
             [CT(commit=True, zone=zone, nat=NAT("src", gw_ip, gw_ip), table=T.NAT_OUT)],
             match={"metadata": ext, R.ROUTER: rkey, "eth_type": ETH_IP}),
        flow(T.NAT_OUT, PRIO_NAT_POST, ck, list(RESOLVE_AND_SEND),
             match={**post, R.ROUTER: rkey}),
    ]


# --------------------------------------------------------------------------- external network

def fips_on_network(view: View, net_id: str) -> list[Record]:
    return [f for f in view.records(FLOATINGIP).values()
            if f.get("floating_network_id") == net_id and f.get("_key") is not None]


def routers_gatewayed_on(view: View, net_id: str) -> list[Record]:
    return [r for r in view.records(ROUTER).values()
            if (r.get("external_gateway_info") or {}).get("network_id") == net_id and r.get("_key") is not None]


def ext_network_needed(view: View, ctx, net: Record) -> bool:
    """Does ctx's chassis send north-south traffic onto this external network?"""
    if not net.get("router:external") or not is_provider(net) or provider.uplink_ofport(ctx, net) is None:
        return False
    if any(is_gateway_chassis(view, ctx, r) for r in routers_gatewayed_on(view, net["id"])):
        return True
    return any(fip_hosted_here(view, ctx, f) for f in fips_on_network(view, net["id"]))


def ext_network_flows(view: View, ctx, net: Record | None) -> list[Flow]:
    """EXT_OUTPUT: unresolved next hop → controller ARPs for reg1; else out of the uplink."""
    if net is None or not is_up(net) or not ext_network_needed(view, ctx, net):
        return []
    uplink = provider.uplink_ofport(ctx, net)
    if uplink is None:  # never: ext_network_needed checked it
        return []
    vid = provider.vlan_vid(net)
    out = ([PushVlan(), SetField("vlan_vid", vid)] if vid else []) + [Output(uplink)]
    ck, key = ext_network_cookie(net), net["_key"]
    return [
        flow(T.EXT_OUTPUT, PRIO_EXT_UNRESOLVED, ck, [Controller(userdata=USERDATA_EXT_ARP)],
             match=dict(metadata=key, eth_dst=0)),
        flow(T.EXT_OUTPUT, PRIO_EXT_OUT, ck, out, match=dict(metadata=key)),
    ]


# --------------------------------------------------------------------------- dependencies

def _ext_cookie(view: View, net_id: str | None) -> set[int]:
    net = view.network(net_id)
    return {ext_network_cookie(net)} if net is not None and net.get("_key") is not None else set()


def owners_for_change(view: View, change: Change) -> set[int]:
    """FIP, router (SNAT/gateway) and external-network owners touched by `change`."""
    recs = change.records()
    out: set[int] = set()
    if change.kind == FLOATINGIP:
        for r in recs:
            if r.get("_key") is not None:
                out.add(fip_cookie(r))
            out |= _ext_cookie(view, r.get("floating_network_id"))
    elif change.kind == ROUTER:
        for r in recs:
            out |= _ext_cookie(view, (r.get("external_gateway_info") or {}).get("network_id"))
            out |= {fip_cookie(f) for f in view.records(FLOATINGIP).values()
                    if f.get("router_id") == r.get("id") and f.get("_key") is not None}
    elif change.kind == PORT:
        for r in recs:
            for f in view.floatingips_of_port(r.get("id")):
                if f.get("_key") is not None:
                    out.add(fip_cookie(f))
                out |= _ext_cookie(view, f.get("floating_network_id"))
            if r.get("device_owner") == DEVICE_FLOATINGIP:
                fip = view.get(FLOATINGIP, r.get("device_id"))  # None once the FIP is deleted
                if fip is not None and fip.get("_key") is not None:
                    out.add(fip_cookie(fip))
            if r.get("device_owner") == "network:router_gateway":
                out |= _ext_cookie(view, r.get("network_id"))
    elif change.kind == NETWORK:
        for r in recs:
            if r.get("router:external"):
                out |= _ext_cookie(view, r.get("id"))
                out |= {fip_cookie(f) for f in fips_on_network(view, r["id"])}
    elif change.kind == "chassis":
        for net in view.records(NETWORK).values():
            if net.get("router:external") and net.get("_key") is not None:
                out.add(ext_network_cookie(net))
        out |= {fip_cookie(f) for f in view.records(FLOATINGIP).values() if f.get("_key") is not None}
    return out


def owners_on_chassis(view: View, ctx) -> set[int]:
    out: set[int] = set()
    for pid in ctx.local_ports:
        for f in view.floatingips_of_port(pid):
            if f.get("_key") is not None and fip_hosted_here(view, ctx, f):
                out.add(fip_cookie(f))
                out |= _ext_cookie(view, f.get("floating_network_id"))
    for r in view.records(ROUTER).values():
        if r.get("_key") is not None and r.get("external_gateway_info") and is_gateway_chassis(view, ctx, r):
            out.add(router_cookie(r))
            out |= _ext_cookie(view, r["external_gateway_info"].get("network_id"))
            out |= {fip_cookie(f) for f in central_fips(view, r)}
    return out


def gateway_chassis(view: View, router: Record) -> str | None:
    """Re-exported for apps and docs."""
    return gateway_chassis_name(view, router)
