"""The canonical, hashable Flow value and the actions it may carry.

A Flow is identified on the switch by (table, priority, match) — its `key` — exactly as
OpenFlow identifies a flow for strict modify/delete. Everything else (actions, cookie,
timeouts) is its `body`. The reconciler diffs desired vs installed on these two parts.

Match values are ints; a masked field is stored as (value & mask, mask), an all-ones mask
is dropped, so two spellings of the same match compare equal.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping, Union

from flows.fields import FIELDS, format_value, full_mask

MatchItem = tuple[str, int, Union[int, None]]  # (field, value, mask or None)
Match = tuple[MatchItem, ...]


_FULL_MASK: dict[str, int] = {name: full_mask(name) for name in FIELDS}


def make_match(**fields: Union[int, tuple[int, int]]) -> Match:
    """Build a canonical match: make_match(reg6=3, ipv4_dst=(net, mask))."""
    return _canonical(fields)


def _canonical(fields: Mapping[str, Union[int, tuple[int, int]]]) -> Match:
    """The canonical Match of a {field: value or (value, mask)} mapping (see the module doc).
    Hot: every compiled flow goes through it, so it avoids per-field function calls."""
    items: list[MatchItem] = []
    full = _FULL_MASK
    for name, spec in fields.items():
        if isinstance(spec, tuple):
            value, mask = spec
            fm = full.get(name)
            if fm is None:
                raise ValueError(f"unknown match field {name!r}")
            if mask == fm:
                mask = None
            elif mask == 0:
                continue  # a zero mask matches anything: OVS stores no field, so neither do we
            else:
                value &= mask
            items.append((name, value, mask))
        else:
            if name not in full:
                raise ValueError(f"unknown match field {name!r}")
            items.append((name, spec, None))
    if len(items) > 1:
        items.sort()
    return tuple(items)


def match_dict(match: Match) -> dict[str, Union[int, tuple[int, int]]]:
    return {n: (v if m is None else (v, m)) for n, v, m in match}


# --------------------------------------------------------------------------- actions
# Each action is a frozen dataclass; `ofctl()` prints it the way ovs-ofctl does (close enough
# to paste into `ovs-ofctl add-flow`). GotoTable and WriteMetadata are OpenFlow instructions:
# they run after the apply-actions list, in that order (write-metadata, then goto).


@dataclass(frozen=True, slots=True)
class Output:
    port: int  # ofport number, or an OFPP_* reserved port (e.g. 0xfffffff8 IN_PORT)

    def ofctl(self) -> str:
        names = {0xFFFFFFF8: "IN_PORT", 0xFFFFFFFD: "CONTROLLER", 0xFFFFFFFB: "FLOOD",
                 0xFFFFFFFA: "NORMAL", 0xFFFFFFFE: "LOCAL"}
        return f"output:{names.get(self.port, self.port)}"


@dataclass(frozen=True, slots=True)
class SetField:
    field: str
    value: int

    def ofctl(self) -> str:
        spell = FIELDS[self.field].ofctl or self.field
        return f"set_field:{format_value(self.field, self.value)}->{spell}"


@dataclass(frozen=True, slots=True)
class Move:
    """NXAST_REG_MOVE: copy n_bits from src[src_ofs] to dst[dst_ofs]."""
    src: str
    dst: str
    n_bits: int
    src_ofs: int = 0
    dst_ofs: int = 0

    def ofctl(self) -> str:
        s = f"{self.src}[{self.src_ofs}..{self.src_ofs + self.n_bits - 1}]"
        d = f"{self.dst}[{self.dst_ofs}..{self.dst_ofs + self.n_bits - 1}]"
        return f"move:{s}->{d}"


@dataclass(frozen=True, slots=True)
class PushVlan:
    ethertype: int = 0x8100

    def ofctl(self) -> str:
        return f"push_vlan:{self.ethertype:#06x}"


@dataclass(frozen=True, slots=True)
class PopVlan:
    def ofctl(self) -> str:
        return "pop_vlan"


@dataclass(frozen=True, slots=True)
class DecTtl:
    def ofctl(self) -> str:
        return "dec_ttl"


@dataclass(frozen=True, slots=True)
class Resubmit:
    """NXAST_RESUBMIT_TABLE: run `table` now and come back (used for flooding loops)."""
    table: int
    in_port: int = 0xFFF8  # OFPP_IN_PORT (16-bit NX spelling) = keep in_port

    def ofctl(self) -> str:
        return f"resubmit(,{self.table})"


@dataclass(frozen=True, slots=True)
class Controller:
    """Packet-in to the controller; `userdata` tells dispatch which app wants it."""
    max_len: int = 0xFFFF
    userdata: bytes = b""
    meter_id: int = 0

    def ofctl(self) -> str:
        extra = f",userdata={self.userdata.hex('.')}" if self.userdata else ""
        meter = f",meter_id={self.meter_id}" if self.meter_id else ""
        return f"controller(max_len={self.max_len}{extra}{meter})"


@dataclass(frozen=True, slots=True)
class NAT:
    """Argument of CT: snat/dnat to an address (range) or plain `nat` (reverse an existing one)."""
    kind: str = ""  # "" | "src" | "dst"
    ip_min: int = 0
    ip_max: int = 0

    def ofctl(self) -> str:
        if not self.kind:
            return "nat"
        rng = format_value("ipv4_src", self.ip_min)
        if self.ip_max and self.ip_max != self.ip_min:
            rng += "-" + format_value("ipv4_src", self.ip_max)
        return f"nat({self.kind}={rng})"


@dataclass(frozen=True, slots=True)
class CT:
    """NXAST_CT: send through conntrack in `zone` (or zone from a register), then to `table`."""
    commit: bool = False
    zone: int = 0
    zone_reg: str = ""  # e.g. "reg6": take the zone from this register's low 16 bits
    table: int | None = None  # recirculate into this table; None = no recirculation
    nat: NAT | None = None
    actions: tuple = ()  # e.g. (SetField("ct_mark", 1),) — only with commit

    def ofctl(self) -> str:
        parts = []
        if self.commit:
            parts.append("commit")
        parts.append(f"zone=NXM_NX_{self.zone_reg.upper()}[0..15]" if self.zone_reg else f"zone={self.zone}")
        if self.table is not None:
            parts.append(f"table={self.table}")
        if self.nat is not None:
            parts.append(self.nat.ofctl())
        if self.actions:
            parts.append("exec(" + ",".join(a.ofctl() for a in self.actions) + ")")
        return "ct(" + ",".join(parts) + ")"


@dataclass(frozen=True, slots=True)
class CTClear:
    def ofctl(self) -> str:
        return "ct_clear"


@dataclass(frozen=True, slots=True)
class Conjunction:
    conj_id: int
    clause: int  # 1-based, as ovs-ofctl prints it
    n_clauses: int

    def ofctl(self) -> str:
        return f"conjunction({self.conj_id},{self.clause}/{self.n_clauses})"


@dataclass(frozen=True, slots=True)
class LearnSpec:
    """One learn spec: match dst field = src field/value, or load src into dst, or output to src."""
    kind: str  # "match" | "load" | "output"
    dst: str = ""
    src: str = ""  # field name, or "" when `value` is used
    value: int | None = None
    n_bits: int = 0
    src_ofs: int = 0
    dst_ofs: int = 0


@dataclass(frozen=True, slots=True)
class Learn:
    table: int
    priority: int
    specs: tuple[LearnSpec, ...]
    idle_timeout: int = 0
    hard_timeout: int = 0
    cookie: int = 0
    fin_idle_timeout: int = 0
    fin_hard_timeout: int = 0

    def ofctl(self) -> str:
        parts = [f"table={self.table}", f"priority={self.priority}"]
        if self.idle_timeout:
            parts.append(f"idle_timeout={self.idle_timeout}")
        if self.hard_timeout:
            parts.append(f"hard_timeout={self.hard_timeout}")
        if self.cookie:
            parts.append(f"cookie={self.cookie:#x}")
        for s in self.specs:
            src = s.src if s.src else hex(s.value or 0)
            if s.kind == "match":
                parts.append(f"{s.dst}={src}" if s.src or s.value is not None else s.dst)
            elif s.kind == "load":
                parts.append(f"load:{src}->{s.dst}")
            else:
                parts.append(f"output:{src}")
        return "learn(" + ",".join(parts) + ")"


@dataclass(frozen=True, slots=True)
class Meter:
    meter_id: int

    def ofctl(self) -> str:
        return f"meter:{self.meter_id}"


@dataclass(frozen=True, slots=True)
class WriteMetadata:
    value: int
    mask: int = (1 << 64) - 1

    def ofctl(self) -> str:
        if self.mask == (1 << 64) - 1:
            return f"write_metadata:{self.value:#x}"
        return f"write_metadata:{self.value:#x}/{self.mask:#x}"


@dataclass(frozen=True, slots=True)
class GotoTable:
    table: int

    def ofctl(self) -> str:
        return f"goto_table:{self.table}"


Action = Union[Output, SetField, Move, PushVlan, PopVlan, DecTtl, Resubmit, Controller, CT, CTClear,
               Conjunction, Learn, Meter, WriteMetadata, GotoTable]


# ----------------------------------------------------------------------------- Flow

@dataclass(frozen=True, slots=True)
class Flow:
    table: int
    priority: int
    match: Match
    actions: tuple = ()  # tuple[Action, ...]; empty = drop
    cookie: int = 0
    idle_timeout: int = 0
    hard_timeout: int = 0

    @property
    def key(self) -> tuple[int, int, Match]:
        """What OpenFlow uses to identify this flow for strict modify/delete."""
        return (self.table, self.priority, self.match)

    def ofctl(self) -> str:
        """ovs-ofctl add-flow syntax (cookie, table, priority, match, actions)."""
        head = [f"cookie={self.cookie:#x}", f"table={self.table}", f"priority={self.priority}"]
        if self.idle_timeout:
            head.append(f"idle_timeout={self.idle_timeout}")
        if self.hard_timeout:
            head.append(f"hard_timeout={self.hard_timeout}")
        for name, value, mask in self.match:
            spell = FIELDS[name].ofctl or name
            text = format_value(name, value)
            if mask is not None:
                text += "/" + format_value(name, mask)
            head.append(f"{spell}={text}")
        acts = ",".join(a.ofctl() for a in self.actions) or "drop"
        return ",".join(head) + " actions=" + acts


def flow(table: int, priority: int, cookie: int, actions: Iterable = (),
         match: Mapping[str, Union[int, tuple[int, int]]] | None = None, **kw) -> Flow:
    """Convenience constructor: flow(T.L2, 100, ck, [Output(3)], match=dict(reg6=1))."""
    return Flow(table, priority, _canonical(match) if match else (), tuple(actions), cookie, **kw)
