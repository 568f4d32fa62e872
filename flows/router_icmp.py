"""Routers that answer ICMP: echo replies in the datapath, ICMP errors via the controller.

Why this split (as OVN): an echo reply is a header rewrite (swap MACs and IPs, type 0, back out
of the port it came in on), so flows do it at line rate and no packet-in is spent on ping. An
ICMP error (time exceeded, net unreachable, fragmentation needed, port unreachable) must quote
the offending packet, so the controller builds it (apps/router_icmp.py, rate-limited per router
and destination like Linux' icmp_ratelimit) and hands it back to the datapath *as a packet the
router originates*: a packet-out to OFPP_TABLE with in_port CONTROLLER, which the ORIGINATE
flow below turns into "arrived at the router on one of its legs", so it is routed to the sender
like any routed packet (neighbour entries, tunnels, floating-IP NAT, ingress security groups,
where the error is conntrack-related to the sender's connection).

Per router R (Owner.ROUTER, on every chassis where R has its routing flows):

  CLASSIFY    120+10 gateway chassis: uplink (+VLAN), icmp echo request to the gateway IP/MAC →
                     echo reply out of IN_PORT (the gateway IP answers ping from outside)
              110    in_port=CONTROLLER, ip, eth_dst=originate_mac(R, net) → eth_dst=<R's MAC on
                     net>, metadata=net, goto L3_GATEWAY
  L3_ROUTE    3000   reg2=R, metadata=<net>, icmp echo request to any of R's IPs → echo reply
                     (eth_src = R's MAC on net), output IN_PORT
              2950   reg2=R, udp to one of R's IPs → controller (port unreachable, as Linux)
              2900   reg2=R, ip to one of R's IPs → drop (never routed on)
              2000   reg2=R, ip, nw_ttl=0 / nw_ttl=1 → controller (time exceeded)
              1      reg2=R, ip → controller (no route matched: net unreachable)
  L3_NEIGHBOR 200    reg2=R, metadata=<net>, reg0 & PKT_LARGER → controller (frag needed)
  NAT_OUT     400    the same for R's external network

PKT_LARGER is written by `check_pkt_larger(MTU + 14)` in every L3_ROUTE flow of a router whose
legs' MTUs differ (flows.routing.route_flows): the egress network's MTU, Ethernet header
included. OVS cannot match the DF bit or fragment, so the controller answers frag-needed for an
oversized packet with or without DF (OVN does the same).
"""
from __future__ import annotations

from typing import Any

from flows import provider
from flows.flow import Controller, Flow, GotoTable, Move, Output, SetField, WriteMetadata, flow
from flows.routing import ETH_IP, Leg, gateway_legs, interface_legs, is_gateway_chassis, mtu_checked, router_cookie
from flows.tables import F, R, T
from topology.view import View

Record = dict[str, Any]

USERDATA_ROUTER_ICMP = b"l3icmp"
OFPP_IN_PORT = 0xFFFFFFF8
OFPP_CONTROLLER = 0xFFFFFFFD
IPPROTO_ICMP, IPPROTO_UDP = 1, 17
ICMP_ECHO_REQUEST, ICMP_ECHO_REPLY = 8, 0

PRIO_ECHO = 3000
PRIO_LOCAL_UDP = 2950
PRIO_LOCAL = 2900
PRIO_TTL = 2000            # above every route (1000 + 2 * prefix + 1 <= 1065)
PRIO_UNREACHABLE = 1       # below every route, above the table miss (0, drop)
PRIO_TOO_BIG = 200         # L3_NEIGHBOR: above the neighbour entries (100)
PRIO_TOO_BIG_EXT = 400     # NAT_OUT: above floating IPs (300) and SNAT
PRIO_ORIGINATE = 110
PRIO_GW_ECHO = 130         # CLASSIFY: above the gateway IP's uplink classify (120)


# Actions that do not depend on the router: one object each, shared by its flows (immutable
# values; a router with 10 interfaces has 100 echo flows, so fewer objects for the GC to walk).
_PUNT = (Controller(userdata=USERDATA_ROUTER_ICMP),)
_ETH_DST_FROM_SRC = Move("eth_src", "eth_dst", 48)
_IP_DST_FROM_SRC = Move("ipv4_src", "ipv4_dst", 32)
_TYPE_ECHO_REPLY = SetField("icmpv4_type", ICMP_ECHO_REPLY)
_BACK_OUT = Output(OFPP_IN_PORT)


def _punt() -> tuple:
    return _PUNT


def echo_reply(ip: int, mac_: int) -> list:
    """Turn an echo request to `ip` into its reply from `ip`/`mac_`, back where it came from.
    (reg1 is free here: it only means something after L3_ROUTE.) OVS fixes both checksums."""
    return [_ETH_DST_FROM_SRC, SetField("eth_src", mac_), _IP_DST_FROM_SRC, SetField("ipv4_src", ip),
            _TYPE_ECHO_REPLY, _BACK_OUT]


def _own_ips(legs: list[Leg], ext_legs: list[Leg]) -> list[int]:
    return sorted({int(leg.ip) for leg in legs + ext_legs})


def route_table_flows(router: Record, legs: list[Leg], ext_legs: list[Leg]) -> list[Flow]:
    """L3_ROUTE: echo replies, the router's own addresses, TTL expiry, no route."""
    ck, rkey = router_cookie(router), router["_key"]
    out: dict[tuple, Flow] = {}

    def add(f: Flow) -> None:
        out.setdefault(f.key, f)

    ips = _own_ips(legs, ext_legs)
    for leg in legs:  # ingress leg (a VM's packet arrives on its network's router MAC)
        for ip in ips:
            add(flow(T.L3_ROUTE, PRIO_ECHO, ck, echo_reply(ip, leg.mac),
                     match={R.ROUTER: rkey, "metadata": leg.network["_key"], "eth_type": ETH_IP,
                            "ip_proto": IPPROTO_ICMP, "icmpv4_type": ICMP_ECHO_REQUEST, "ipv4_dst": ip}))
    for ip in ips:
        add(flow(T.L3_ROUTE, PRIO_LOCAL_UDP, ck, _punt(),
                 match={R.ROUTER: rkey, "eth_type": ETH_IP, "ip_proto": IPPROTO_UDP, "ipv4_dst": ip}))
        add(flow(T.L3_ROUTE, PRIO_LOCAL, ck, [], match={R.ROUTER: rkey, "eth_type": ETH_IP, "ipv4_dst": ip}))
    for ttl in (0, 1):
        add(flow(T.L3_ROUTE, PRIO_TTL, ck, _punt(), match={R.ROUTER: rkey, "eth_type": ETH_IP, "nw_ttl": ttl}))
    add(flow(T.L3_ROUTE, PRIO_UNREACHABLE, ck, _punt(), match={R.ROUTER: rkey, "eth_type": ETH_IP}))
    return list(out.values())


def too_big_flows(router: Record, legs: list[Leg], ext_legs: list[Leg]) -> list[Flow]:
    """After a route that ran check_pkt_larger: an oversized packet goes to the controller."""
    if not mtu_checked(legs + ext_legs):
        return []
    ck, rkey = router_cookie(router), router["_key"]
    bit = (F.PKT_LARGER, F.PKT_LARGER)
    out: dict[tuple, Flow] = {}
    for leg in legs:
        f = flow(T.L3_NEIGHBOR, PRIO_TOO_BIG, ck, _punt(),
                 match={R.ROUTER: rkey, "metadata": leg.network["_key"], R.FLAGS: bit, "eth_type": ETH_IP})
        out.setdefault(f.key, f)
    for leg in ext_legs:
        f = flow(T.NAT_OUT, PRIO_TOO_BIG_EXT, ck, _punt(),
                 match={R.ROUTER: rkey, "metadata": leg.network["_key"], R.FLAGS: bit, "eth_type": ETH_IP})
        out.setdefault(f.key, f)
    return list(out.values())


def originate_mac(router_key: int, network_key: int) -> int:
    """The destination MAC of a packet the controller injects for router R on network N: locally
    administered 0a:00:RR:RR:NN:NN (keys are 16 bits), unique per (router, network) by
    construction. Not R's own MAC on N: Neutron keeps MACs unique per network only, so two
    routers' legs on different networks may share one (at 10,000 ports random MACs do collide),
    and a CLASSIFY flow keyed by that MAC alone would send one router's ICMP errors into the other."""
    return 0x0A00_0000_0000 | (router_key & 0xFFFF) << 16 | (network_key & 0xFFFF)


def originate_flows(router: Record, legs: list[Leg]) -> list[Flow]:
    """CLASSIFY: a packet-out from the controller addressed to originate_mac(R, net) enters R on
    net, with R's MAC there as its destination again."""
    ck, rkey = router_cookie(router), router["_key"]
    out: dict[tuple, Flow] = {}
    for leg in legs:
        nkey = leg.network["_key"]
        f = flow(T.CLASSIFY, PRIO_ORIGINATE, ck,
                 [SetField("eth_dst", leg.mac), WriteMetadata(nkey), GotoTable(T.L3_GATEWAY)],
                 match={"in_port": OFPP_CONTROLLER, "eth_type": ETH_IP, "eth_dst": originate_mac(rkey, nkey)})
        out.setdefault(f.key, f)
    return list(out.values())


def gateway_echo_flows(view: View, ctx, router: Record, ext_legs: list[Leg]) -> list[Flow]:
    """Gateway chassis: the gateway IP answers ping from the external network (uplink side)."""
    if not ext_legs or not is_gateway_chassis(view, ctx, router):
        return []
    leg = ext_legs[0]
    uplink = provider.uplink_ofport(ctx, leg.network)
    if uplink is None:
        return []
    vid = provider.vlan_vid(leg.network)
    return [flow(T.CLASSIFY, PRIO_GW_ECHO, router_cookie(router), echo_reply(int(leg.ip), leg.mac),
                 match={"in_port": uplink, "vlan_vid": vid, "eth_type": ETH_IP, "eth_dst": leg.mac,
                        "ip_proto": IPPROTO_ICMP, "icmpv4_type": ICMP_ECHO_REQUEST, "ipv4_dst": int(leg.ip)})]


def router_icmp_flows(view: View, ctx, router: Record) -> list[Flow]:
    """Everything Owner.ROUTER needs for ICMP on ctx's chassis; call only where the router is
    present (flows.routing.router_flows decides that, and includes these)."""
    legs = interface_legs(view, router)
    ext_legs = gateway_legs(view, router)
    if not legs and not ext_legs:
        return []
    return (route_table_flows(router, legs, ext_legs) + too_big_flows(router, legs, ext_legs)
            + originate_flows(router, legs) + gateway_echo_flows(view, ctx, router, ext_legs))
