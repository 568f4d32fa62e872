"""Offline OpenFlow 1.3 + Nicira simulator: walk a packet through computed tables, no switch.

Why: reachability and isolation are properties of the *flow set*; checking them on a model
(Faucet's fakeoftable idea, extended with registers, resubmit, conntrack, learn, conjunction,
tunnels) makes compiler bugs unit-test failures instead of black holes on a real bridge.

Packets are dicts of field names from flows.fields with int values (use `packet(...)` to build
one from text). Registers, metadata, tunnel fields, vlan_vid (0 = untagged) and ct_* default
to 0; any other field absent from the packet never matches (e.g. ipv4_src on an ARP frame).

API
---
    sim = Simulator(flows, conntrack=None, strict=True)
    res = sim.run(pkt, in_port=3)            # → Result
    res.outputs   list[Emitted(port, packet)]  packet = full state at that output (regs too)
    res.punts     list[Punt(table, cookie, userdata, packet)]  Controller actions
    res.learned   list[Flow]  installed by `learn` during this run (also kept in sim)
    res.trace     list[Step(table, flow|None, depth, packet)]  None = table miss
    res.ports()   sorted output ports;  res.outputs_to(port) → list[Emitted]
    sim.add(flow) / sim.remove(flow) / sim.flows()

Semantics: highest-priority match per table; `strict` raises AmbiguousMatch when two flows with
different actions match at the same top priority (OpenFlow leaves that undefined) and
DuplicateFlow when two flows share a key with different bodies. A flow's apply-actions run in
order, then write-metadata, then goto (which must go forward). Resubmit recurses and returns;
output to the packet's own in_port is suppressed (use OFPP_IN_PORT to hairpin). Conjunction:
conjunction-only flows count as matching when every clause 1..n of an id matches at the same
priority; then flows matching conj_id=id compete with the normal matches. Bounded: max_depth
nested resubmits, max_steps flow executions, max_recirc recirculations → SimulationLimit.

Conntrack (pluggable; default `Conntrack`)
------------------------------------------
CT(zone|zone_reg, commit, table, nat, actions) forks like OVS: the original continues the
current action list untracked; a copy goes through conntrack and, if `table` is set, is
re-injected at that table with ct_state / ct_zone / ct_mark / ct_label set (registers and
metadata kept). The model:
  * connection key = (eth_type, ip_proto, ipv4_src, ipv4_dst, l4 src, l4 dst) — for IPv6 the same
    with ipv6_src/ipv6_dst, ICMPv6 echo (128, 129) paired like ICMP echo; l4 ports come
    from tcp_*/udp_*; for ICMP they are (icmpv4_type, paired type) — echo request (8, 0), reply
    (0, 8) — so a reply is the reverse of its request and a request back is a new connection
    (icmpv4_type defaults to 8 when absent; ICMP errors are "related" only via add_related);
  * no IP header → +trk+inv;
  * no committed entry in the zone → +trk+new; committed, same direction → +trk+est;
    reverse direction → +trk+est+rpl; `Conntrack.related` (override, or seed via
    `add_related(zone, pkt)`) → +trk+rel;
  * commit creates the entry (or updates an existing one); exec(SetField("ct_mark"|"ct_label"))
    sets the entry's mark/label, visible as ct_mark/ct_label of the recirculated packet and of
    every later packet of that connection;
  * NAT(kind="src"/"dst", ip_min) on a committing new connection records the translation and
    rewrites ipv4_src/ipv4_dst; on later packets a CT with any nat= applies it (reverse for
    replies) and sets +snat/+dnat bits;
  * helpers for tests: `entries()`, `lookup(zone, pkt)`, `set_mark(zone, pkt, mark)`,
    `flush(zone=None)`.
A subclass may override `classify(zone, key) -> (state bits, entry|None)` to model more.
ct_state bits: CtState.NEW EST REL RPL INV TRK SNAT DNAT (OVS values).

Multi-chassis: `Fabric` connects several Simulators — tunnel outputs are delivered to the
chassis whose tunnel IP is tun_ipv4_dst (arriving with tunnel_id/tun_ipv4_src set), uplink
outputs to every other chassis's uplink of the same physnet (tag kept) and to external hosts.
"""
from __future__ import annotations

import copy
import ipaddress
import logging
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from flows.fields import FIELDS, full_mask, ipv4, mac
from flows.flow import (CT, NAT, CheckPktLarger, Conjunction, Controller, CTClear, DecTtl, Flow, GotoTable,
                        Learn, Meter, Move, Output, PopVlan, PushVlan, Resubmit, SetField, WriteMetadata,
                        make_match)

LOG = logging.getLogger(__name__)

OFPP_IN_PORT = 0xFFFFFFF8
OFPP_CONTROLLER = 0xFFFFFFFD
OFPP_LOCAL = 0xFFFFFFFE
VLAN_PRESENT = 0x1000

# Fields that exist (as 0) on every packet; everything else must be present to match.
_ZERO_DEFAULT = {"metadata", "tunnel_id", "tun_ipv4_dst", "tun_ipv4_src", "vlan_vid", "vlan_pcp",
                 "ct_state", "ct_zone", "ct_mark", "ct_label", "conj_id"} | {f"reg{i}" for i in range(16)}
# State that is not part of the frame on the wire (dropped when a packet leaves the switch).
PIPELINE_STATE = {"metadata", "ct_state", "ct_zone", "ct_mark", "ct_label", "conj_id", "in_port",
                  "tunnel_id", "tun_ipv4_dst", "tun_ipv4_src"} | {f"reg{i}" for i in range(16)}


class CtState:
    NEW = 0x01
    EST = 0x02
    REL = 0x04
    RPL = 0x08
    INV = 0x10
    TRK = 0x20
    SNAT = 0x40
    DNAT = 0x80


class SimulationLimit(RuntimeError):
    """Too deep / too many steps: a loop in the flows (OVS would drop and log)."""


class AmbiguousMatch(RuntimeError):
    """Two different flows match at the same top priority (result undefined in OpenFlow)."""


class DuplicateFlow(ValueError):
    """Two flows share (table, priority, match) but differ."""


def packet(**fields: Any) -> dict[str, int]:
    """Build a packet dict; MAC/IPv4 fields may be given as text: packet(eth_src='fa:16:3e:..')."""
    out: dict[str, int] = {}
    for name, value in fields.items():
        if name not in FIELDS:
            raise ValueError(f"unknown field {name!r}")
        if isinstance(value, str):
            kind = FIELDS[name].kind
            value = (mac(value) if kind == "mac" else ipv4(value) if kind == "ipv4"
                     else int(ipaddress.IPv6Address(value)) if kind == "ipv6" else int(value, 0))
        out[name] = value
    return out


# ------------------------------------------------------------------------------ results

@dataclass
class Emitted:
    port: int
    packet: dict[str, int]

    def on_wire(self) -> dict[str, int]:
        """The frame as the next hop sees it: header fields only (no registers/metadata/ct)."""
        return {k: v for k, v in self.packet.items() if k not in PIPELINE_STATE}


@dataclass
class Punt:
    table: int
    cookie: int
    userdata: bytes
    packet: dict[str, int]


@dataclass
class Step:
    table: int
    flow: Flow | None
    depth: int
    packet: dict[str, int]  # state when the table was looked up


@dataclass
class Result:
    outputs: list[Emitted] = field(default_factory=list)
    punts: list[Punt] = field(default_factory=list)
    learned: list[Flow] = field(default_factory=list)
    trace: list[Step] = field(default_factory=list)

    def ports(self) -> list[int]:
        return sorted(e.port for e in self.outputs)

    def outputs_to(self, port: int) -> list[Emitted]:
        return [e for e in self.outputs if e.port == port]

    def dump_trace(self) -> str:
        return "\n".join(("  " * s.depth) + (f"table {s.table}: " + (s.flow.ofctl() if s.flow else "MISS"))
                         for s in self.trace)


# ------------------------------------------------------------------------------ conntrack

ConnKey = tuple


@dataclass
class CtEntry:
    zone: int
    orig: ConnKey
    reply: ConnKey
    mark: int = 0
    label: int = 0
    nat_kind: str = ""   # "" | "src" | "dst"
    nat_orig_ip: int = 0  # the address that was replaced
    nat_ip: int = 0       # the address it was replaced with


_ICMP_PAIR = {8: 0, 0: 8, 13: 14, 14: 13, 15: 16, 16: 15, 17: 18, 18: 17}
_ICMPV6_PAIR = {128: 129, 129: 128}  # echo request / reply


def conn_key(pkt: Mapping[str, int]) -> ConnKey | None:
    """(eth_type, proto, src, dst, sport, dport) or None when the packet has no IPv4/IPv6 header.

    IPv6 is keyed like IPv4 (ICMPv6 echo 128/129 pairs like ICMP echo; icmpv6_type defaults to 128)."""
    if pkt.get("eth_type") == 0x86DD and "ipv6_src" in pkt and "ipv6_dst" in pkt:
        proto = pkt.get("ip_proto", 0)
        if proto == 6:
            sport, dport = pkt.get("tcp_src", 0), pkt.get("tcp_dst", 0)
        elif proto == 17:
            sport, dport = pkt.get("udp_src", 0), pkt.get("udp_dst", 0)
        elif proto == 58:
            itype = pkt.get("icmpv6_type", 128)
            sport, dport = itype, _ICMPV6_PAIR.get(itype, 0)
        else:
            sport = dport = 0
        return (0x86DD, proto, pkt["ipv6_src"], pkt["ipv6_dst"], sport, dport)
    if pkt.get("eth_type") != 0x0800 or "ipv4_src" not in pkt or "ipv4_dst" not in pkt:
        return None
    proto = pkt.get("ip_proto", 0)
    if proto == 6:
        sport, dport = pkt.get("tcp_src", 0), pkt.get("tcp_dst", 0)
    elif proto == 17:
        sport, dport = pkt.get("udp_src", 0), pkt.get("udp_dst", 0)
    elif proto == 1:
        # (type, its pair): an echo reply (0, 8) is the reverse of its request (8, 0), while a
        # request in the other direction is a new connection, as in OVS.
        itype = pkt.get("icmpv4_type", 8)
        sport, dport = itype, _ICMP_PAIR.get(itype, 0)
    else:
        sport = dport = 0
    return (0x0800, proto, pkt["ipv4_src"], pkt["ipv4_dst"], sport, dport)


def reverse_key(key: ConnKey) -> ConnKey:
    et, proto, src, dst, sport, dport = key
    return (et, proto, dst, src, dport, sport)


class Conntrack:
    """Default conntrack model (see module docstring). One instance may be shared by simulators."""

    def __init__(self) -> None:
        self._by_key: dict[tuple[int, ConnKey], tuple[CtEntry, bool]] = {}  # → (entry, is_reply)
        self._related: set[tuple[int, ConnKey]] = set()

    # -- model
    def classify(self, zone: int, key: ConnKey) -> tuple[int, CtEntry | None, bool]:
        """(ct_state bits, entry or None, is_reply) for a packet with connection key `key`."""
        hit = self._by_key.get((zone, key))
        if hit is not None:
            entry, is_reply = hit
            return CtState.TRK | CtState.EST | (CtState.RPL if is_reply else 0), entry, is_reply
        if (zone, key) in self._related:
            return CtState.TRK | CtState.REL, None, False
        return CtState.TRK | CtState.NEW, None, False

    def commit(self, zone: int, key: ConnKey, nat: NAT | None = None) -> CtEntry:
        hit = self._by_key.get((zone, key))
        if hit is not None:
            return hit[0]
        entry = CtEntry(zone, key, reverse_key(key))
        if nat is not None and nat.kind:
            et, proto, src, dst, sport, dport = key
            if nat.kind == "src":
                entry.nat_kind, entry.nat_orig_ip, entry.nat_ip = "src", src, nat.ip_min
                entry.reply = reverse_key((et, proto, nat.ip_min, dst, sport, dport))
            else:
                entry.nat_kind, entry.nat_orig_ip, entry.nat_ip = "dst", dst, nat.ip_min
                entry.reply = reverse_key((et, proto, src, nat.ip_min, sport, dport))
        self._by_key[(zone, entry.orig)] = (entry, False)
        self._by_key[(zone, entry.reply)] = (entry, True)
        return entry

    def apply_nat(self, pkt: dict, entry: CtEntry, is_reply: bool) -> int:
        """Rewrite pkt per entry's NAT; returns the +snat/+dnat bits."""
        if not entry.nat_kind:
            return 0
        if entry.nat_kind == "src":
            pkt["ipv4_dst" if is_reply else "ipv4_src"] = entry.nat_orig_ip if is_reply else entry.nat_ip
            return CtState.DNAT if is_reply else CtState.SNAT
        pkt["ipv4_src" if is_reply else "ipv4_dst"] = entry.nat_orig_ip if is_reply else entry.nat_ip
        return CtState.SNAT if is_reply else CtState.DNAT

    # -- test helpers
    def add_related(self, zone: int, pkt: Mapping[str, int]) -> None:
        key = conn_key(pkt)
        if key is not None:
            self._related.add((zone, key))

    def lookup(self, zone: int, pkt: Mapping[str, int]) -> CtEntry | None:
        key = conn_key(pkt)
        hit = self._by_key.get((zone, key)) if key else None
        return hit[0] if hit else None

    def set_mark(self, zone: int, pkt: Mapping[str, int], mark: int) -> None:
        entry = self.lookup(zone, pkt)
        if entry is None:
            raise KeyError("no such connection")
        entry.mark = mark

    def entries(self) -> list[CtEntry]:
        seen, out = set(), []
        for entry, _ in self._by_key.values():
            if id(entry) not in seen:
                seen.add(id(entry))
                out.append(entry)
        return out

    def flush(self, zone: int | None = None) -> None:
        self._by_key = {k: v for k, v in self._by_key.items() if zone is not None and k[0] != zone}
        self._related = {k for k in self._related if zone is not None and k[0] != zone}


# ------------------------------------------------------------------------------ matching

def _get(pkt: Mapping[str, int], name: str) -> int | None:
    if name in pkt:
        return pkt[name]
    return 0 if name in _ZERO_DEFAULT else None


def matches(flow: Flow, pkt: Mapping[str, int]) -> bool:
    for name, value, mask in flow.match:
        have = _get(pkt, name)
        if have is None:
            return False
        if mask is None:
            if have != value:
                return False
        elif have & mask != value:
            return False
    return True


@dataclass(frozen=True)
class _LoadBits:
    """Internal action of learned flows: write `value` into dst[ofs .. ofs+n_bits-1]."""
    dst: str
    value: int
    ofs: int
    n_bits: int

    def ofctl(self) -> str:
        return f"load:{self.value:#x}->{self.dst}[{self.ofs}..{self.ofs + self.n_bits - 1}]"


def _bits(value: int, ofs: int, n: int) -> int:
    return (value >> ofs) & ((1 << n) - 1)


def _set_bits(old: int, ofs: int, n: int, value: int) -> int:
    mask = ((1 << n) - 1) << ofs
    return (old & ~mask) | ((value << ofs) & mask)


# ------------------------------------------------------------------------------ simulator

class _Run:
    """Mutable state of one Simulator.run (steps shared across forks)."""

    def __init__(self) -> None:
        self.result = Result()
        self.steps = 0
        self.recirc = 0


class Simulator:
    def __init__(self, flows: Iterable[Flow] = (), conntrack: Conntrack | None = None, strict: bool = True,
                 max_depth: int = 64, max_steps: int = 10_000, max_recirc: int = 32):
        self.conntrack = conntrack if conntrack is not None else Conntrack()
        self.strict = strict
        self.max_depth, self.max_steps, self.max_recirc = max_depth, max_steps, max_recirc
        self._tables: dict[int, dict[tuple, Flow]] = {}
        for f in flows:
            self.add(f)

    # -- table management
    def add(self, f: Flow, replace: bool = False) -> None:
        table = self._tables.setdefault(f.table, {})
        old = table.get(f.key)
        if old is not None and old != f and self.strict and not replace:
            raise DuplicateFlow(f"same key, different flows:\n  {old.ofctl()}\n  {f.ofctl()}")
        table[f.key] = f

    def remove(self, f: Flow) -> None:
        self._tables.get(f.table, {}).pop(f.key, None)

    def flows(self) -> list[Flow]:
        return [f for t in sorted(self._tables) for f in self._tables[t].values()]

    # -- lookup
    def lookup(self, table: int, pkt: Mapping[str, int]) -> Flow | None:
        candidates = self._tables.get(table)
        if not candidates:
            return None
        normal: list[Flow] = []
        clauses: dict[tuple[int, int], set[int]] = {}
        needed: dict[tuple[int, int], int] = {}
        for f in candidates.values():
            if any(n == "conj_id" for n, _, _ in f.match):
                continue
            if not matches(f, pkt):
                continue
            conj = [a for a in f.actions if isinstance(a, Conjunction)]
            if conj and len(conj) == len(f.actions):
                for c in conj:
                    clauses.setdefault((c.conj_id, f.priority), set()).add(c.clause)
                    needed[(c.conj_id, f.priority)] = c.n_clauses
                continue
            normal.append(f)
        for (conj_id, _prio), got in clauses.items():
            if len(got) >= needed[(conj_id, _prio)]:
                probe = dict(pkt, conj_id=conj_id)
                normal += [f for f in candidates.values()
                           if any(n == "conj_id" for n, _, _ in f.match) and matches(f, probe)]
        if not normal:
            return None
        top = max(f.priority for f in normal)
        best = [f for f in normal if f.priority == top]
        # Ties whose actions agree are harmless (e.g. two conjunctions of one group with the same
        # verdict); only a tie with different actions leaves the result undefined.
        if self.strict and len({(f.actions, f.idle_timeout, f.hard_timeout) for f in best}) > 1:
            raise AmbiguousMatch(f"table {table}, priority {top}:\n" + "\n".join("  " + f.ofctl() for f in best))
        return min(best, key=lambda f: f.match)

    # -- execution
    def run(self, pkt: Mapping[str, int], in_port: int) -> Result:
        state = dict(pkt)
        state["in_port"] = in_port
        run = _Run()
        self._pipeline(run, state, 0, 0)
        return run.result

    def _pipeline(self, run: _Run, state: dict, table: int, depth: int) -> None:
        """Process `state` from `table` through gotos (a resubmit calls this recursively)."""
        while True:
            if depth > self.max_depth:
                raise SimulationLimit(f"resubmit depth > {self.max_depth}\n{run.result.dump_trace()}")
            run.steps += 1
            if run.steps > self.max_steps:
                raise SimulationLimit(f"more than {self.max_steps} steps\n{run.result.dump_trace()}")
            f = self.lookup(table, state)
            run.result.trace.append(Step(table, f, depth, dict(state)))
            if f is None:
                return
            goto = self._execute(run, state, f, depth)
            if goto is None:
                return
            if goto <= table:
                raise SimulationLimit(f"goto_table {goto} from table {table} must go forward: {f.ofctl()}")
            table = goto

    def _execute(self, run: _Run, state: dict, f: Flow, depth: int) -> int | None:
        goto: int | None = None
        write_md: WriteMetadata | None = None
        for a in f.actions:
            if isinstance(a, GotoTable):
                goto = a.table
            elif isinstance(a, WriteMetadata):
                write_md = a
            else:
                self._apply(run, state, a, f, depth)
        if write_md is not None:
            state["metadata"] = (state.get("metadata", 0) & ~write_md.mask) | (write_md.value & write_md.mask)
        return goto

    def _apply(self, run: _Run, state: dict, a: Any, f: Flow, depth: int) -> None:
        if isinstance(a, Output):
            self._output(run, state, a.port, f)
        elif isinstance(a, SetField):
            state[a.field] = a.value & full_mask(a.field)
        elif isinstance(a, _LoadBits):
            state[a.dst] = _set_bits(_get(state, a.dst) or 0, a.ofs, a.n_bits, a.value)
        elif isinstance(a, Move):
            value = _bits(_get(state, a.src) or 0, a.src_ofs, a.n_bits)
            state[a.dst] = _set_bits(_get(state, a.dst) or 0, a.dst_ofs, a.n_bits, value)
        elif isinstance(a, PushVlan):
            state["vlan_vid"] = VLAN_PRESENT | (state.get("vlan_vid", 0) & 0xFFF)
        elif isinstance(a, PopVlan):
            state["vlan_vid"] = 0
        elif isinstance(a, DecTtl):
            if "ip_ttl" in state:
                state["ip_ttl"] -= 1
            if state.get("nw_ttl"):
                state["nw_ttl"] -= 1
        elif isinstance(a, CheckPktLarger):
            # the frame length is the packet's "pkt_len" (not an OpenFlow field; absent = small)
            larger = 1 if state.get("pkt_len", 0) > a.pkt_len else 0
            state[a.dst] = _set_bits(_get(state, a.dst) or 0, a.dst_ofs, 1, larger)
        elif isinstance(a, Resubmit):
            saved_port = state["in_port"]
            if a.in_port not in (0xFFF8, OFPP_IN_PORT):
                state["in_port"] = a.in_port
            self._pipeline(run, state, a.table, depth + 1)
            state["in_port"] = saved_port
        elif isinstance(a, Controller):
            run.result.punts.append(Punt(f.table, f.cookie, a.userdata, dict(state)))
        elif isinstance(a, CT):
            self._ct(run, state, a, depth)
        elif isinstance(a, CTClear):
            for name in ("ct_state", "ct_zone", "ct_mark", "ct_label"):
                state[name] = 0
        elif isinstance(a, Learn):
            self._learn(run, state, a)
        elif isinstance(a, (Conjunction, Meter)):
            pass
        else:
            raise TypeError(f"simulator does not model {a!r}")

    def _output(self, run: _Run, state: dict, port: int, f: Flow) -> None:
        if port == OFPP_CONTROLLER:
            run.result.punts.append(Punt(f.table, f.cookie, b"", dict(state)))
            return
        if port == OFPP_IN_PORT:
            port = state["in_port"]
        elif port == state["in_port"]:
            return  # OpenFlow: never out of the port it came in on, unless IN_PORT
        run.result.outputs.append(Emitted(port, dict(state)))

    def _ct(self, run: _Run, state: dict, a: CT, depth: int) -> None:
        zone = (_get(state, a.zone_reg) or 0) & 0xFFFF if a.zone_reg else a.zone
        copy_ = dict(state)
        key = conn_key(copy_)
        if key is None:
            bits, entry, is_reply = CtState.TRK | CtState.INV, None, False
        else:
            bits, entry, is_reply = self.conntrack.classify(zone, key)
            if a.commit and not bits & CtState.INV:
                nat = a.nat if (entry is None and a.nat is not None and a.nat.kind) else None
                entry = self.conntrack.commit(zone, key, nat)
                for sub in a.actions:
                    if isinstance(sub, SetField) and sub.field == "ct_mark":
                        entry.mark = sub.value
                    elif isinstance(sub, SetField) and sub.field == "ct_label":
                        entry.label = sub.value
            if entry is not None and a.nat is not None:
                bits |= self.conntrack.apply_nat(copy_, entry, is_reply)
        copy_.update(ct_state=bits, ct_zone=zone, ct_mark=entry.mark if entry else 0,
                     ct_label=entry.label if entry else 0)
        if a.table is None:
            return
        run.recirc += 1
        if run.recirc > self.max_recirc:
            raise SimulationLimit(f"more than {self.max_recirc} recirculations")
        self._pipeline(run, copy_, a.table, depth + 1)

    def _learn(self, run: _Run, state: dict, a: Learn) -> None:
        match: dict[str, Any] = {}
        actions: list = []
        for s in a.specs:
            n = s.n_bits or FIELDS[s.dst or s.src].bits
            value = _bits(_get(state, s.src) or 0, s.src_ofs, n) if s.src else (s.value or 0)
            if s.kind == "match":
                dst_bits = FIELDS[s.dst].bits
                if s.dst_ofs == 0 and n == dst_bits:
                    match[s.dst] = value
                else:
                    mask = ((1 << n) - 1) << s.dst_ofs
                    prev = match.get(s.dst, (0, 0))
                    prev_v, prev_m = prev if isinstance(prev, tuple) else (prev, full_mask(s.dst))
                    match[s.dst] = ((prev_v & ~mask) | (value << s.dst_ofs), prev_m | mask)
            elif s.kind == "load":
                if s.dst_ofs == 0 and n == FIELDS[s.dst].bits:
                    actions.append(SetField(s.dst, value))
                else:
                    actions.append(_LoadBits(s.dst, value, s.dst_ofs, n))
            elif s.kind == "output":
                actions.append(Output(value))
        learned = Flow(a.table, a.priority, make_match(**match), tuple(actions), a.cookie,
                       a.idle_timeout, a.hard_timeout)
        self.add(learned, replace=True)
        run.result.learned.append(learned)


# ------------------------------------------------------------------------------ fabric

@dataclass
class Delivery:
    chassis: str
    port: int
    packet: dict[str, int]


@dataclass
class Hop:
    """One chassis' part of a fabric walk: where the packet entered and what that chassis did."""
    chassis: str
    in_port: int
    result: Result


@dataclass
class _Chassis:
    sim: Simulator
    tunnel_ip: int | None
    tunnel_ports: dict[int, str]  # ofport → type
    uplinks: dict[int, str]       # ofport → physnet


class Fabric:
    """Several simulated chassis joined by tunnels (by tunnel IP) and physnets (shared segments).

    `send(chassis, in_port, pkt)` returns every delivery to a non-tunnel, non-uplink port on any
    chassis, plus `external` frames that left through an uplink (as Delivery(chassis="physnet:<name>")).
    """

    def __init__(self, max_hops: int = 8):
        self.max_hops = max_hops
        self._chassis: dict[str, _Chassis] = {}
        self.hops: list[Hop] = []  # of the last send(), in walk order (what `tenantflow trace` prints)

    def add_chassis(self, name: str, sim: Simulator, tunnel_ip: str | None = None,
                    tunnel_ports: Mapping[str, int] | None = None, uplinks: Mapping[str, int] | None = None) -> None:
        self._chassis[name] = _Chassis(sim, ipv4(tunnel_ip) if tunnel_ip else None,
                                       {o: t for t, o in (tunnel_ports or {}).items()},
                                       {o: p for p, o in (uplinks or {}).items()})

    def send(self, chassis: str, in_port: int, pkt: Mapping[str, int]) -> list[Delivery]:
        out: list[Delivery] = []
        self.hops = []
        self._hop(chassis, in_port, dict(pkt), out, 0)
        return out

    def is_tunnel(self, chassis: str, ofport: int) -> bool:
        return ofport in self._chassis[chassis].tunnel_ports

    def uplink_physnet(self, chassis: str, ofport: int) -> str | None:
        return self._chassis[chassis].uplinks.get(ofport)

    def _hop(self, name: str, in_port: int, pkt: dict, out: list[Delivery], hops: int) -> None:
        if hops > self.max_hops:
            raise SimulationLimit(f"more than {self.max_hops} hops between chassis")
        ch = self._chassis[name]
        result = ch.sim.run(pkt, in_port)
        self.hops.append(Hop(name, in_port, result))
        for e in result.outputs:
            if e.port in ch.tunnel_ports:
                kind = ch.tunnel_ports[e.port]
                dst = e.packet.get("tun_ipv4_dst", 0)
                for other_name, other in self._chassis.items():
                    if other.tunnel_ip == dst and other_name != name:
                        ofport = next((o for o, t in other.tunnel_ports.items() if t == kind), None)
                        if ofport is None:
                            continue
                        frame = e.on_wire()
                        frame.update(tunnel_id=e.packet.get("tunnel_id", 0), tun_ipv4_src=ch.tunnel_ip or 0,
                                     tun_ipv4_dst=dst)
                        self._hop(other_name, ofport, frame, out, hops + 1)
            elif e.port in ch.uplinks:
                physnet = ch.uplinks[e.port]
                frame = e.on_wire()
                out.append(Delivery(f"physnet:{physnet}", e.port, frame))
                for other_name, other in self._chassis.items():
                    if other_name == name:
                        continue
                    for ofport, net in other.uplinks.items():
                        if net == physnet:
                            self._hop(other_name, ofport, copy.deepcopy(frame), out, hops + 1)
            else:
                out.append(Delivery(name, e.port, e.on_wire()))
