"""Stateful security groups with conntrack (Neutron OVS-firewall / OVN ACL semantics).

Pipeline (both directions alike; egress = what a VM sends, keyed on reg6 = sending port,
ingress = what a VM receives, keyed on reg7 = receiving port):

  EGRESS_CT / INGRESS_CT  (chassis-wide) ip/ipv6 → ct(zone = port key taken straight from
                          reg6/reg7, table = *_SG). NDP, MLD, RS (out) and RA (in) skip conntrack
                          (ALWAYS_ALLOWED_ICMPV6). A port with port security off has its own
                          P_CT_BYPASS flow (reg=key → *_SG) above these: its packets never
                          enter conntrack, as in Neutron's openvswitch_firewall.
  EGRESS_SG / INGRESS_SG  priority high → low:
    P_BYPASS    (port)    port security off: reg=key → next table (no filtering)
    P_UNTRACKED (base)    -trk ARP / the always-allowed ICMPv6 → next
    P_INVALID   (base)    +inv → drop
    P_REPLY     (base)    +est+rpl or +rel with ct_mark=0 → next  (stateful replies, ICMP errors)
    P_REPLY_BLOCKED(base) +rpl / +rel otherwise (ct_mark=1: blocked) → drop
    P_GROUP + g (group g) the group's rules as conjunctive matches. New *and* established
                          original-direction packets are evaluated, every packet; a completed
                          conjunction (verdicts()): +new → ct(commit, exec(ct_mark=0)) → next;
                          +est ct_mark=0 → next, *no commit* (Neutron commits +new only);
                          +est ct_mark=1 (blocked, a rule allows it again) → commit mark 0 → next.
    P_EST_BLOCK (base)    +est ct_mark=0, original direction, no rule matched any more →
                          ct(commit, exec(ct_mark=1)), drop. This is what makes deleting a rule
                          (or a group from a port) cut running connections: their next packet
                          marks the connection blocked, and the replies then drop at
                          P_REPLY_BLOCKED; later original packets (mark 1) drop at P_DEFAULT
                          uncommitted. Re-adding the rule re-opens it (commit sets mark 0).
    P_DEFAULT   (base)    anything else → drop (default deny, incl. non-IP other than ARP/ND)

Conjunctions, so flows grow O(members + rules), never O(members × rules). For group g (key g)
and direction d, conj ids are (g << 16) | r, all at priority P_GROUP + g:
  r = 0   "plain" rules (no remote group):   clause 1 = port ∈ g   (reg6/reg7 = key, one flow
          per local member, owned by that PORT), clause 2 = the rules' matches (protocol, masked
          port ranges, icmp type/code, remote_ip_prefix) — owned by g.
  r = rg  rules of g with remote_group_id rg: clause 1 as above, clause 2 = those rules'
          protocol/port matches (owned by g), clause 3 = one flow per address of each member
          of rg (src for ingress, dst for egress), owned by that MEMBER PORT (member_flows) on
          every chassis where g is active — so a port joining rg adds O(1) flows and
          recompiles O(1) owners, not g's whole member list. One address = one flow key: an
          address held by several members of g's remote groups (a shared VIP, overlapping
          subnets in one project) is emitted once, by its lowest-keyed holder, carrying every
          holder's conjunctions; an address that is also a whole clause-2 match of g
          ("anything from 10.0.0.5/32") is g's flow, with the clause-3 conjunctions added.
A port in several groups gets one membership flow per group (the union: any group's
conjunction completing allows the packet). Identical matches inside a group are one flow with
several conjunction actions; overlapping port ranges are merged before masking.

Zones: one per port, zone = the port's _key (store pool, bounded and reused), read from
reg6/reg7 by the ct action itself — no per-port zone-loading flow. Replies of a connection
from A to B are tracked in A's zone on A's side and in B's zone on B's side, so the two ends
of a same-chassis connection never share an entry. ct_mark (whole) belongs to this module:
0 = allowed, 1 = blocked.
"""
from __future__ import annotations

import functools
import ipaddress
import logging
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Protocol

from flows.fields import parse_net
from flows.flow import CT, Conjunction, Flow, GotoTable, SetField, flow, make_match
from flows.port_security import (ETH_ARP, ETH_IP, ETH_IPV6, PROTO_ICMPV6, SECURITY_BASE,
                                 is_secured, port_cookie)
from flows.portrange import ranges_to_masks
from flows.tables import R, T, Owner, cookie

log = logging.getLogger(__name__)

Record = dict[str, Any]

EGRESS = "egress"
INGRESS = "ingress"
DIRECTIONS = (EGRESS, INGRESS)

# ct_state bits (OVS CS_*)
CS_NEW, CS_EST, CS_REL, CS_RPL, CS_INV, CS_TRK = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
CT_MARK_BLOCKED = 1

P_CT_BYPASS = 120       # *_CT: port security off (above the NDP 110 and ip 100 flows)
P_BYPASS = 65000
P_UNTRACKED = 64000
P_INVALID = 63000
P_REPLY = 62000
P_REPLY_BLOCKED = 61000
P_GROUP = 2000          # + group key
MAX_GROUP_KEY = 58999   # so that P_GROUP + key stays below P_REPLY_BLOCKED
P_EST_BLOCK = 1000
P_DEFAULT = 1
MAX_KEY_16 = 0xFFFF     # zones and conj-id halves are 16 bits

ND_TYPES = (135, 136)   # neighbour solicitation / advertisement
# ICMPv6 that passes every port's security groups untracked, as Neutron's openvswitch_firewall
# does (ICMPV6_ALLOWED_EGRESS_TYPES + the NA it restricts to the port's targets; ingress
# ICMPV6_ALLOWED_INGRESS_TYPES + RA): MLD query 130, NS 135, NA 136 both ways, RS 133 out, RA 134
# in. MLD reports/done (131, 132, 143) also pass outbound (multicast listeners must be able to
# report; Neutron leaves them to the egress rules). Source/target spoofing of these is stopped
# earlier by port security (flows.port_security: RA guard, NA guard, allowed sources).
ALWAYS_ALLOWED_ICMPV6 = {
    "egress": (130, 131, 132, 133, 135, 136, 143),
    "ingress": (130, 134, 135, 136),
}
PROTO_TCP, PROTO_UDP, PROTO_ICMP = 6, 17, 1

PROTOCOL_NUMBERS = {
    "ah": 51, "dccp": 33, "egp": 8, "esp": 50, "gre": 47, "icmp": 1, "icmpv6": 58, "igmp": 2,
    "ipip": 4, "ipv6-encap": 41, "ipv6-frag": 44, "ipv6-icmp": 58, "ipv6-nonxt": 59,
    "ipv6-opts": 60, "ipv6-route": 43, "ospf": 89, "pgm": 113, "rsvp": 46, "sctp": 132,
    "tcp": 6, "udp": 17, "udplite": 136, "vrrp": 112,
}
PORT_FIELDS = {PROTO_TCP: "tcp_dst", PROTO_UDP: "udp_dst"}


@dataclass(frozen=True, slots=True)
class Dir:
    """The per-direction facts: which table, which register holds the port, where to go next."""
    name: str
    ct_table: T
    sg_table: T
    port_reg: str
    next_table: T
    remote_side: str  # "src" (ingress: who sends to us) | "dst" (egress: whom we send to)


DIRS = {
    EGRESS: Dir(EGRESS, T.EGRESS_CT, T.EGRESS_SG, R.IN_PORT, T.L3_GATEWAY, "dst"),
    INGRESS: Dir(INGRESS, T.INGRESS_CT, T.INGRESS_SG, R.OUT_PORT, T.OUTPUT, "src"),
}


class GroupIndex(Protocol):
    """What the compiler reads from the topology (apps adapt the TopologyView to this)."""

    def group(self, gid: str) -> Record | None: ...

    def rules(self, gid: str) -> list[Record]: ...

    def members(self, gid: str) -> list[Record]: ...

    def referencing(self, gid: str) -> set[str]:
        """Groups with a rule whose remote group is `gid`."""

    def claimers(self, address: str) -> list[Record]:
        """Ports with a member address whose address_key() is `address`."""


def ct_state(plus: int = 0, minus: int = 0) -> tuple[int, int]:
    """Masked ct_state match: ct_state(CS_TRK | CS_EST, CS_RPL) is "+trk+est-rpl"."""
    return plus, plus | minus


def group_cookie(group: Record) -> int:
    return cookie(Owner.SECGROUP, int(group["_key"]))


def group_priority(group_key: int) -> int:
    if not 0 < group_key <= MAX_GROUP_KEY:
        raise ValueError(f"security group key {group_key} outside 1..{MAX_GROUP_KEY}")
    return P_GROUP + group_key


def conj_id(group_key: int, remote_key: int = 0) -> int:
    if group_key > MAX_KEY_16 or remote_key > MAX_KEY_16:
        raise ValueError(f"keys {group_key}/{remote_key} exceed 16 bits")
    return (group_key << 16) | remote_key


def _commit(d: Dir, mark: int) -> CT:
    return CT(commit=True, zone_reg=d.port_reg, actions=(SetField("ct_mark", mark),))


def verdicts(d: Dir) -> list[tuple[dict, tuple]]:
    """What a completed conjunction does, by connection state (extra match → actions).

    Only a change of the entry is committed, as in Neutron's openvswitch_firewall: a new
    connection (commit, mark 0) or a blocked one a rule allows again (re-open: commit mark 0).
    An established, allowed connection that still matches goes on without a commit — the
    lookup in *_CT already refreshed its state and timeout. The three matches are disjoint
    (+new-est / +est-new with mark 0 / with mark 1), so no two verdicts tie at one priority.
    """
    nxt = GotoTable(d.next_table)
    est = ct_state(CS_TRK | CS_EST, CS_NEW)
    return [
        ({"ct_state": ct_state(CS_TRK | CS_NEW, CS_EST)}, (_commit(d, 0), nxt)),
        ({"ct_state": est, "ct_mark": 0}, (nxt,)),
        ({"ct_state": est, "ct_mark": CT_MARK_BLOCKED}, (_commit(d, 0), nxt)),
    ]


def ct_bypass_flows(port: Record) -> list[Flow]:
    """Port security off: the port's traffic skips conntrack both ways (owner: the port).

    In *_CT above the chassis-wide ct() flows, keyed on the port's register, straight to its
    P_BYPASS in *_SG: no ct(), no recirculation, as Neutron's openvswitch_firewall leaves such
    ports out of conntrack. A secured peer still tracks the connection in its own zone (its
    ingress rules decide, its replies are +est+rpl there), and NAT has its own zones.
    """
    key, ck = int(port["_key"]), port_cookie(port)
    return [flow(d.ct_table, P_CT_BYPASS, ck, [GotoTable(d.sg_table)], match={d.port_reg: key})
            for d in DIRS.values()]


# --------------------------------------------------------------------------- base flows

def base_flows() -> list[Flow]:
    """Chassis-wide conntrack and verdict flows of both directions (owner SECURITY_BASE)."""
    ck = SECURITY_BASE
    out: list[Flow] = []
    for d in DIRS.values():
        for eth in (ETH_IP, ETH_IPV6):
            out.append(flow(d.ct_table, 100, ck, [CT(zone_reg=d.port_reg, table=d.sg_table)],
                            match=dict(eth_type=eth)))
        for t in ALWAYS_ALLOWED_ICMPV6[d.name]:  # NDP/MLD: never filtered, never tracked
            out.append(flow(d.ct_table, 110, ck, [GotoTable(d.sg_table)],
                            match=dict(eth_type=ETH_IPV6, ip_proto=PROTO_ICMPV6, icmpv6_type=t)))
            out.append(flow(d.sg_table, P_UNTRACKED, ck, [GotoTable(d.next_table)],
                            match=dict(ct_state=ct_state(0, CS_TRK), eth_type=ETH_IPV6,
                                       ip_proto=PROTO_ICMPV6, icmpv6_type=t)))
        nxt = [GotoTable(d.next_table)]
        out += [
            flow(d.sg_table, P_UNTRACKED, ck, nxt, match=dict(ct_state=ct_state(0, CS_TRK), eth_type=ETH_ARP)),
            flow(d.sg_table, P_INVALID, ck, [], match=dict(ct_state=ct_state(CS_TRK | CS_INV))),
            flow(d.sg_table, P_REPLY, ck, nxt,
                 match=dict(ct_state=ct_state(CS_TRK | CS_EST | CS_RPL, CS_INV), ct_mark=0)),
            flow(d.sg_table, P_REPLY, ck, nxt,
                 match=dict(ct_state=ct_state(CS_TRK | CS_REL, CS_INV), ct_mark=0)),
            flow(d.sg_table, P_REPLY_BLOCKED, ck, [], match=dict(ct_state=ct_state(CS_TRK | CS_RPL))),
            flow(d.sg_table, P_REPLY_BLOCKED, ck, [], match=dict(ct_state=ct_state(CS_TRK | CS_REL))),
            flow(d.sg_table, P_DEFAULT, ck, []),
        ]
        for eth in (ETH_IP, ETH_IPV6):
            # mark 0 only: an already blocked connection's packets drop at P_DEFAULT, uncommitted
            out.append(flow(d.sg_table, P_EST_BLOCK, ck, [_commit(d, CT_MARK_BLOCKED)],
                            match=dict(ct_state=ct_state(CS_TRK | CS_EST, CS_RPL | CS_INV), ct_mark=0,
                                       eth_type=eth)))
    return out


# --------------------------------------------------------------------------- rules

@dataclass(frozen=True, slots=True)
class Rule:
    """A security-group rule reduced to what decides its flows."""
    direction: str
    eth: int                     # ETH_IP | ETH_IPV6
    proto: int | None            # None = any protocol
    ports: tuple[int, int] | None  # tcp/udp destination range; None = all
    icmp: tuple[int | None, int | None]  # (type, code); None = any
    prefix: ipaddress.IPv4Network | ipaddress.IPv6Network | None
    remote_group: str | None


def parse_protocol(value: Any, eth: int) -> int | None:
    """Neutron protocol (name, number as int or string, None/'any') → IP protocol number."""
    if value is None or value == "" or str(value).lower() == "any":
        return None
    text = str(value).lower()
    number = int(text) if text.isdigit() else PROTOCOL_NUMBERS.get(text)
    if number is None or not 0 <= number <= 255:
        raise ValueError(f"unknown protocol {value!r}")
    if eth == ETH_IPV6 and number == PROTO_ICMP:
        number = PROTO_ICMPV6  # Neutron: 'icmp' in an IPv6 rule means ICMPv6
    return number


# Parsed rules by the rule fields parse_rule reads: every member port's compile parses its
# groups' rules again (10,000 ports in one default group: 40,000 parses of the same 4 rules).
# Only rules that parse are kept, so a bad rule is logged each time, as before. Bounded.
_PARSED: dict[tuple, Rule] = {}
_PARSED_MAX = 1 << 14


def parse_rule(rec: Record) -> Rule | None:
    """Record → Rule; None (logged) for a rule this datapath cannot express exactly (fail closed).
    A pure function of the fields it reads, so cached by them (_PARSED)."""
    g = rec.get
    key = (g("id"), g("direction"), g("ethertype"), g("protocol"), g("port_range_min"),
           g("port_range_max"), g("remote_ip_prefix"), g("remote_group_id"), "direction" in rec)
    try:
        rule = _PARSED.get(key)
    except TypeError:  # an unhashable field value: parse it uncached (and likely reject it)
        return _parse_rule(rec)
    if rule is None:
        rule = _parse_rule(rec)
        if rule is not None:
            if len(_PARSED) >= _PARSED_MAX:
                _PARSED.clear()
            _PARSED[key] = rule
    return rule


def _parse_rule(rec: Record) -> Rule | None:
    try:
        eth = ETH_IPV6 if (rec.get("ethertype") or "IPv4") == "IPv6" else ETH_IP
        proto = parse_protocol(rec.get("protocol"), eth)
        lo: Any = rec.get("port_range_min")
        hi: Any = rec.get("port_range_max")
        ports: tuple[int, int] | None = None
        icmp: tuple[int | None, int | None] = (None, None)
        if proto in (PROTO_ICMP, PROTO_ICMPV6):
            icmp = (None if lo is None else int(lo), None if hi is None else int(hi))
            if icmp[0] is None:
                icmp = (None, None)  # a code without a type means nothing (Neutron rejects it)
        elif lo is not None or hi is not None:
            if proto not in PORT_FIELDS:
                log.warning("rule %s: port range on protocol %s not expressible; rule ignored",
                            rec.get("id"), proto)
                return None
            lo = int(lo if lo is not None else hi)
            hi = int(hi if hi is not None else lo)
            if lo > hi:
                raise ValueError(f"port range {lo}-{hi} is empty")
            ports = None if (lo, hi) == (0, 0xFFFF) else (lo, hi)
        prefix = None
        if rec.get("remote_ip_prefix"):
            prefix = ipaddress.ip_network(rec["remote_ip_prefix"], strict=False)
            if (prefix.version == 6) != (eth == ETH_IPV6):
                log.warning("rule %s: prefix %s does not match ethertype; rule ignored", rec.get("id"), prefix)
                return None
            if prefix.prefixlen == 0:
                prefix = None
        return Rule(rec["direction"], eth, proto, ports, icmp, prefix, rec.get("remote_group_id") or None)
    except (KeyError, ValueError, TypeError) as exc:
        log.warning("rule %s ignored: %s", rec.get("id"), exc)
        return None


def _proto_matches(rules: list[Rule]) -> list[dict]:
    """Protocol/port/icmp matches covering exactly the union of `rules` (same eth/remote), deduped."""
    out: list[dict] = []
    by_proto: dict[int, list[Rule]] = defaultdict(list)
    for r in rules:
        if r.proto is None:  # any protocol
            return [{}]
        by_proto[r.proto].append(r)
    for proto, rs in sorted(by_proto.items()):
        if proto in PORT_FIELDS:
            if any(r.ports is None for r in rs):
                out.append({"ip_proto": proto})
                continue
            for value, mask in ranges_to_masks(r.ports for r in rs if r.ports is not None):
                m: dict = {"ip_proto": proto}
                if mask:
                    m[PORT_FIELDS[proto]] = (value, mask)
                out.append(m)
        elif proto in (PROTO_ICMP, PROTO_ICMPV6):
            icmps = {r.icmp for r in rs}
            if (None, None) in icmps:
                out.append({"ip_proto": proto})
                continue
            whole_types = {t for t, c in icmps if c is None}
            tf, cf = ("icmpv4_type", "icmpv4_code") if proto == PROTO_ICMP else ("icmpv6_type", "icmpv6_code")
            for t, c in sorted(icmps, key=lambda tc: (tc[0], -1 if tc[1] is None else tc[1])):
                if c is not None and t in whole_types:
                    continue
                m = {"ip_proto": proto, tf: t}
                if c is not None:
                    m[cf] = c
                out.append(m)
        else:
            out.append({"ip_proto": proto})
    return out


def _ip_field(eth: int, side: str) -> str:
    return ("ipv4_" if eth == ETH_IP else "ipv6_") + side


def _net_match(eth: int, side: str, net) -> dict:
    if net is None or net.prefixlen == 0:
        return {}
    return {_ip_field(eth, side): (int(net.network_address), int(net.netmask))}


def member_addresses(port: Record) -> list[str]:
    """Addresses a remote-group member is known by: fixed IPs and allowed address pairs."""
    out = [f.get("ip_address") for f in port.get("fixed_ips") or []]
    out += [aap.get("ip_address") for aap in port.get("allowed_address_pairs") or []]
    return [a for a in out if a]


@functools.lru_cache(maxsize=1 << 16)
def address_key(address: str) -> str | None:
    """Canonical text of a member address ('10.0.0.5' and '10.0.0.5/32' are one key), None if malformed."""
    try:
        return str(parse_net(address))
    except ValueError:
        return None


@functools.lru_cache(maxsize=1 << 16)
def _member_match(eth: int, side: str, address: str):
    """Clause-3 match of one member address (cached: a big group re-lists the same addresses
    on every membership change), or None if the address is malformed or of the other family."""
    try:
        net = parse_net(address)
    except ValueError:
        log.warning("remote group member address %r is malformed; ignored", address)
        return None
    if (net.version == 6) != (eth == ETH_IPV6):
        return None
    return make_match(eth_type=eth, **_net_match(eth, side, net))


def group_rules(idx: GroupIndex, gid: str) -> list[Rule]:
    return [r for r in (parse_rule(rec) for rec in idx.rules(gid)) if r is not None]


def remote_keys(idx: GroupIndex, rules: Iterable[Rule], direction: str) -> set[int]:
    """Conj-id low halves used by `rules` in `direction`: 0 for plain rules, remote group keys."""
    keys: set[int] = set()
    for r in rules:
        if r.direction != direction:
            continue
        if r.remote_group is None:
            keys.add(0)
        else:
            rg = idx.group(r.remote_group)
            if rg is not None:
                keys.add(int(rg["_key"]))
    return keys


class _FlowSet:
    """Collects (table, priority, match) → actions, merging conjunction actions of equal matches."""

    def __init__(self, ck: int) -> None:
        self.ck = ck
        self.acts: dict[tuple, set] = defaultdict(set)
        self.plain: dict[tuple, tuple] = {}

    def conj(self, table: int, prio: int, match, c: Conjunction) -> None:
        """`match`: a dict, or an already canonical Match tuple."""
        key = match if isinstance(match, tuple) else make_match(**match)
        self.acts[(table, prio, key)].add(c)

    def add(self, table: int, prio: int, match: dict, actions: tuple) -> None:
        self.plain[(table, prio, make_match(**match))] = actions

    def flows(self) -> list[Flow]:
        out = [Flow(t, p, m, tuple(a) if len(a) == 1 else
                    tuple(sorted(a, key=lambda c: (c.conj_id, c.clause))), self.ck)
               for (t, p, m), a in self.acts.items()]
        out += [Flow(t, p, m, a, self.ck) for (t, p, m), a in self.plain.items()]
        return out


def group_flows(idx: GroupIndex, gid: str) -> list[Flow]:
    """Rules of group `gid` as conjunction clause 2 plus the conj_id verdict flows (owner: the group).

    Emitted on a chassis where the group has a local secured member; membership (clause 1) and
    remote-group member addresses (clause 3) come from the member ports (port_flows,
    member_flows) — except an address that is also a whole clause-2 match of this group (a rule
    "anything from 10.0.0.5/32" beside a remote-group member 10.0.0.5): one key, so the group
    owns it and adds the clause-3 conjunctions itself.
    """
    group = idx.group(gid)
    if group is None:
        return []
    gkey = int(group["_key"])
    prio = group_priority(gkey)
    fs = _FlowSet(group_cookie(group))
    plan = group_plan(idx, gid)
    assert plan is not None  # None only for a missing group
    for d in DIRS.values():
        verdict_eths: dict[int, set[int]] = defaultdict(set)  # conj id → eth types
        for (eth, prefix, rgid), rs in plan.buckets[d.name]:
            rkey, n = (0, 2) if rgid is None else (plan.remote[d.name][eth][rgid], 3)
            cid = conj_id(gkey, rkey)
            verdict_eths[cid].add(eth)
            for pm in _proto_matches(rs):
                match = {"eth_type": eth, **pm, **_net_match(eth, d.remote_side, prefix)}
                fs.conj(d.sg_table, prio, match, Conjunction(cid, 2, n))
        for (eth, address), pure_match in plan.pure[d.name].items():
            rgs = plan.remote[d.name].get(eth, {})
            for other in idx.claimers(address):
                for rgid in rgs.keys() & set(other.get("security_groups") or ()):
                    fs.conj(d.sg_table, prio, pure_match, Conjunction(conj_id(gkey, rgs[rgid]), 3, 3))
        for cid, eths in verdict_eths.items():
            for eth in eths:
                for extra, actions in verdicts(d):
                    fs.add(d.sg_table, prio, {"conj_id": cid, "eth_type": eth, **extra}, actions)
    return fs.flows()


@dataclass(frozen=True, slots=True)
class GroupPlan:
    """What a group's rules decide, per direction: rule buckets (eth, prefix, remote group) → rules;
    remote groups by ethertype (id → key); pure-address clause-2 matches ((eth, address) → match)."""
    gkey: int
    buckets: dict[str, list[tuple[tuple, list[Rule]]]]
    remote: dict[str, dict[int, dict[str, int]]]
    pure: dict[str, dict[tuple[int, str], tuple]]


# Plans by (group key, its rules, its remote groups' keys): every member port of a group that
# names a remote group asks for the plan of that group (member_flows), so at 10,000 ports in one
# default group the same plan was built 10,000 times per full compile. Bounded.
_PLANS: dict[tuple, GroupPlan] = {}
_PLANS_MAX = 1 << 12


def group_plan(idx: GroupIndex, gid: str) -> GroupPlan | None:
    """The group's plan (GroupPlan), None for a missing group. Reads the group, its rules and the
    groups they name as remote (as building the plan does), then takes the plan from _PLANS when
    those are unchanged: a plan is a pure function of them."""
    group = idx.group(gid)
    if group is None:
        return None
    rules = tuple(group_rules(idx, gid))
    remotes = sorted({r.remote_group for r in rules if r.remote_group is not None and r.direction in DIRS})
    remote_keys_ = []
    for rgid in remotes:
        rg = idx.group(rgid)
        remote_keys_.append((rgid, None if rg is None else int(rg["_key"])))
    key = (int(group["_key"]), rules, tuple(remote_keys_))
    plan = _PLANS.get(key)
    if plan is None:
        plan = _build_plan(key[0], rules, dict(remote_keys_))
        if len(_PLANS) >= _PLANS_MAX:
            _PLANS.clear()
        _PLANS[key] = plan
    return plan


def _build_plan(gkey: int, rules: tuple[Rule, ...], remote_key: dict[str, int | None]) -> GroupPlan:
    buckets_of, remote_of, pure_of = {}, {}, {}
    for d in DIRS.values():
        buckets: dict[tuple, list[Rule]] = defaultdict(list)
        for r in rules:
            if r.direction == d.name:
                buckets[(r.eth, r.prefix, r.remote_group)].append(r)
        kept: list[tuple[tuple, list[Rule]]] = []
        remote: dict[int, dict[str, int]] = {}
        pure: dict[tuple[int, str], tuple] = {}
        for (eth, prefix, rgid), rs in sorted(buckets.items(), key=lambda kv: repr(kv[0])):
            if rgid is not None:
                rkey = remote_key.get(rgid)
                if rkey is None:
                    continue
                remote.setdefault(eth, {})[rgid] = rkey
            elif prefix is not None and _proto_matches(rs) == [{}]:
                pure[(eth, str(prefix))] = make_match(eth_type=eth, **_net_match(eth, d.remote_side, prefix))
            kept.append(((eth, prefix, rgid), rs))
        buckets_of[d.name], remote_of[d.name], pure_of[d.name] = kept, remote, pure
    return GroupPlan(gkey, buckets_of, remote_of, pure_of)


def member_flows(idx: GroupIndex, port: Record, active: Callable[[str], bool]) -> list[Flow]:
    """Clause 3 of every group that names one of the port's groups as remote group: one flow per
    address of the port, owned by the PORT (so a member joining costs O(1), not a recompile of
    the group), on chassis where that group is `active`. An address claimed by several members
    (a shared VIP, overlapping tenant subnets in one project) is one flow key: its lowest-keyed
    claimer owns it and carries every claimer's conjunctions."""
    my_groups = set(port.get("security_groups") or ())
    addrs = [k for k in dict.fromkeys(address_key(a) for a in member_addresses(port)) if k]
    if not my_groups or not addrs or port.get("_key") is None:
        return []
    pid, pkey, ck = port["id"], int(port["_key"]), port_cookie(port)
    gids: set[str] = set()
    for rg in my_groups:
        gids |= idx.referencing(rg)
    out: list[Flow] = []
    for gid in sorted(gids):
        if not active(gid):
            continue
        plan = group_plan(idx, gid)
        if plan is None:
            continue
        prio = group_priority(plan.gkey)
        for d in DIRS.values():
            for eth, rgs in plan.remote[d.name].items():
                if not my_groups & rgs.keys():
                    continue
                for address in addrs:
                    match = _member_match(eth, d.remote_side, address)
                    if match is None or (eth, address) in plan.pure[d.name]:
                        continue
                    conj_rgs = _claim(idx, address, pid, pkey, my_groups, rgs)
                    if conj_rgs is None:
                        continue  # a lower-keyed claimer owns this flow
                    acts = _clause3_actions(plan.gkey, tuple(sorted(rgs[r] for r in conj_rgs)))
                    out.append(Flow(d.sg_table, prio, match, acts, ck))
    return out


def _claim(idx: GroupIndex, address: str, pid: str, pkey: int, my_groups: set[str],
           rgs: dict[str, int]) -> set[str] | None:
    """Remote groups (of `rgs`) whose members hold `address`, or None if a lower-keyed member
    than port `pid` holds it (then that member emits the flow)."""
    conj = my_groups & rgs.keys()
    for other in idx.claimers(address):
        if other["id"] == pid:
            continue
        theirs = rgs.keys() & set(other.get("security_groups") or ())
        if not theirs:
            continue
        if int(other.get("_key") or 0) < pkey:
            return None
        conj |= theirs
    return conj


def port_flows(idx: GroupIndex, port: Record) -> list[Flow]:
    """A local port's SG flows (owner: the port): bypass when unsecured, else group membership."""
    key, ck = int(port["_key"]), port_cookie(port)
    if key > MAX_KEY_16:
        log.error("port %s key %d exceeds the conntrack zone range; its traffic is dropped", port.get("id"), key)
        return []
    if not is_secured(port):
        return ct_bypass_flows(port) + [
            flow(d.sg_table, P_BYPASS, ck, [GotoTable(d.next_table)], match={d.port_reg: key})
            for d in DIRS.values()]
    out: list[Flow] = []
    for gid in dict.fromkeys(port.get("security_groups") or []):
        group = idx.group(gid)
        if group is None:
            continue
        gkey = int(group["_key"])
        rules = group_rules(idx, gid)
        for d in DIRS.values():
            rkeys = remote_keys(idx, rules, d.name)
            if not rkeys:
                continue
            acts = _membership_actions(gkey, tuple(sorted(rkeys)))
            out.append(flow(d.sg_table, group_priority(gkey), ck, acts, match={d.port_reg: key}))
    return out


@functools.lru_cache(maxsize=1 << 12)
def _membership_actions(gkey: int, rkeys: tuple[int, ...]) -> tuple[Conjunction, ...]:
    """Clause 1 of each of the group's conjunctions (rkeys sorted): the same for every member
    port, so one shared (immutable) tuple instead of one per port."""
    return tuple(Conjunction(conj_id(gkey, r), 1, 2 if r == 0 else 3) for r in rkeys)


@functools.lru_cache(maxsize=1 << 12)
def _clause3_actions(gkey: int, rkeys: tuple[int, ...]) -> tuple[Conjunction, ...]:
    """Clause 3 of the group's remote-group conjunctions (rkeys sorted, so by conj id): shared
    by every member address, like _membership_actions."""
    return tuple(Conjunction(conj_id(gkey, r), 3, 3) for r in rkeys)


def referenced_groups(idx: GroupIndex, gid: str) -> set[str]:
    """Remote groups the rules of `gid` refer to."""
    return {r.remote_group for r in group_rules(idx, gid) if r.remote_group}
