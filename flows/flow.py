"""The canonical, hashable Flow value and the actions it may carry.

A Flow is identified on the switch by (table, priority, match) — its `key` — exactly as
OpenFlow identifies a flow for strict modify/delete. Everything else (actions, cookie,
timeouts) is its `body`. The reconciler diffs desired vs installed on these two parts.

Match values are ints; a masked field is stored as (value & mask, mask), an all-ones mask
is dropped, so two spellings of the same match compare equal.

Values are range-checked ONCE, when built: make_match (field known, value and mask within the
field's width from flows.fields.FIELDS), each action's constructor (fields and numeric
arguments), and Flow itself (table, priority, cookie, timeouts; a match tuple that did not come
from make_match; the action list). A bad value raises FlowError naming the field and value in
the compiler that made it, instead of an OverflowError in the wire encoder that takes the whole
bundle down. Equality and hashing do no checks.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Union

from flows.fields import FIELDS, format_value, full_mask

MatchItem = tuple[str, int, Union[int, None]]  # (field, value, mask or None)
Match = tuple[MatchItem, ...]


class FlowError(ValueError):
    """A Flow, match or action value that OpenFlow/OVS cannot carry (unknown field, value or mask
    outside the field's width, table/priority/timeout out of range, ...)."""


_FULL_MASK: dict[str, int] = {name: full_mask(name) for name in FIELDS}
# The same, typed loosely for the fast paths: `v | None` (unknown field) raising TypeError is intended.
_FM: Any = _FULL_MASK
U8, U16, U32, U64 = 0xFF, 0xFFFF, 0xFFFF_FFFF, (1 << 64) - 1
MAX_TABLE = 254  # OFPTT_MAX; 255 (OFPTT_ALL) is not a table a flow can live in or jump to
_REGS = frozenset(f"reg{i}" for i in range(16))
_CT_FIELDS = frozenset(("ct_mark", "ct_label"))  # settable only inside ct(commit, exec(...))
_VLAN_TPIDS = (0x8100, 0x88A8)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _show(value) -> str:
    return f"{value} ({value:#x})" if _is_int(value) and value > 9 else repr(value)


def _int_in(what: str, value, lo: int, hi: int) -> None:
    """Raise FlowError unless lo <= value <= hi (value an int, not a bool). The slow path: callers
    do the common case inline and only call this when their quick test failed."""
    if not _is_int(value) or not lo <= value <= hi:
        raise FlowError(f"{what}={_show(value)} out of range: must be an int in {lo}..{hi:#x}")


def _table_ok(what: str, t) -> None:
    try:  # see _canonical_items: (t | 255) == 255 iff 0 <= t <= 255; TypeError for non-ints
        ok = (t | 255) == 255 and t != 255
    except TypeError:
        ok = False
    if not ok:
        _int_in(what, t, 0, MAX_TABLE)


def _field_mask(what: str, name: str) -> int:
    fm = _FULL_MASK.get(name)
    if fm is None:
        raise FlowError(f"{what}: unknown field {name!r}")
    return fm


def _field_value(what: str, name: str, value) -> None:
    fm = _field_mask(what, name)
    if not _is_int(value) or not 0 <= value <= fm:
        kind = FIELDS[name].kind
        hint = " (give IPv4/MAC addresses as ints: flows.fields.ipv4()/mac())" \
            if isinstance(value, str) and kind in ("ipv4", "mac", "ipv6") else ""
        raise FlowError(f"{what}: {name}={_show(value)} does not fit {name}'s {FIELDS[name].bits} bits"
                        f" (0..{fm:#x}){hint}")


def _field_bits(what: str, name: str, ofs, n_bits) -> None:
    """dst/src[ofs .. ofs+n_bits-1] must lie inside the field."""
    _field_mask(what, name)
    bits = FIELDS[name].bits
    if not (_is_int(ofs) and _is_int(n_bits) and ofs >= 0 and n_bits >= 1 and ofs + n_bits <= bits):
        raise FlowError(f"{what}: {name}[{ofs}..+{n_bits} bits] outside {name}'s {bits} bits")


def _bad_match_item(name: str, value, mask) -> None:
    """Slow path of the match checks: raise FlowError describing what is wrong with one item."""
    _field_value("match", name, value)
    if mask is not None:
        fm = _FULL_MASK[name]
        if not _is_int(mask) or not 0 <= mask <= fm:
            raise FlowError(f"match: {name} mask {_show(mask)} does not fit {name}'s {FIELDS[name].bits} bits"
                            f" (0..{fm:#x})")


def _diagnose(fields: Mapping, exc: Exception) -> None:
    """A fast-path check failed with TypeError/ValueError: find the culprit, raise FlowError."""
    for name, spec in fields.items():
        if name not in _FULL_MASK:
            raise FlowError(f"unknown match field {name!r} (value {spec!r})") from None
        if isinstance(spec, tuple):
            if len(spec) != 2:
                raise FlowError(f"match: {name}={spec!r}: want a value or a (value, mask) pair") from None
            _bad_match_item(name, spec[0], spec[1])
        else:
            _bad_match_item(name, spec, None)
    raise FlowError(f"bad match {dict(fields)!r}: {exc}") from exc


def make_match(**fields: Union[int, tuple[int, int]]) -> Match:
    """Build a canonical match: make_match(reg6=3, ipv4_dst=(net, mask)).
    Raises FlowError for an unknown field or a value/mask outside the field's width."""
    return _Checked(_canonical_items(fields))


# Interned match items and cookies (issue 14). A chassis' flows carry ≈ 5 times as many match items
# as distinct ones (("reg6", 3, None), ("eth_type", 0x800, None), ...) and ≈ 6 cookie int objects
# per owner: one shared object per value cut reconciler._desired from 69.5 to 48 MB at 10,000
# ports (bench/bench_memory.py). The items stay plain tuples of atoms (untracked by the GC, as the matches made of
# them). The tables only share objects, so clearing them when full (a bound on what deleted flows
# leave in them) changes no value; the flows keep their objects.
_ITEMS: dict[MatchItem, MatchItem] = {}
_COOKIES: dict[int, int] = {}
_INTERN_MAX = 1 << 17
_item = _ITEMS.setdefault
_cookie = _COOKIES.setdefault


def match_item(name: str, value: int, mask: int | None = None) -> MatchItem:
    """The interned (name, value, mask) item, for compilers that build canonical match tuples by
    hand (Flow checks them as usual): the same object as flow()/make_match use for it."""
    item = (name, value, mask)
    return _item(item, item)


def _canonical_items(fields: Mapping[str, Union[int, tuple[int, int]]]) -> list[MatchItem]:
    """The sorted, checked items of the canonical Match of a {field: value or (value, mask)}
    mapping (see the module doc).
    Hot: every compiled flow goes through it, so it avoids per-field function calls. The check
    is one `|` per field: with fm the field's all-ones mask, (v | fm) == fm iff 0 <= v <= fm,
    and `|` raises TypeError for a non-int (str, float, None = unknown field's fm); any failure
    goes to the slow path, which names the culprit."""
    items: list[MatchItem] = []
    full = _FM
    intern = _item
    mask: Any
    try:
        for name, spec in fields.items():
            fm = full.get(name)
            if isinstance(spec, tuple):
                value, mask = spec
                if (value | mask | fm) != fm:
                    _bad_match_item(name, value, mask)
                if mask == fm:
                    mask = None
                elif mask == 0:
                    continue  # a zero mask matches anything: OVS stores no field, so neither do we
                else:
                    value &= mask
                item = (name, value, mask)
            else:
                if (spec | fm) != fm:
                    _bad_match_item(name, spec, None)
                item = (name, spec, None)
            items.append(intern(item, item))
    except FlowError:
        raise
    except (TypeError, ValueError) as exc:
        _diagnose(fields, exc)
    if len(_ITEMS) > _INTERN_MAX:
        _ITEMS.clear()
    if len(items) > 1:
        items.sort()
    return items


class _Checked(tuple):
    """A Match built (and so checked) by make_match. Equal to, and hashing like, the plain tuple;
    it only lets Flow skip re-checking it. Slicing/concatenating gives plain tuples again."""
    __slots__ = ()


def _check_match(match) -> None:
    """Check a Match that did not come from make_match (hand-built canonical tuples, decoded
    switch state): known fields in strictly increasing name order (= sorted, no duplicates),
    values/masks within width, masked values canonical (no bits outside the mask, which OVS
    rejects as OFPBMC_BAD_WILDCARDS) and no zero mask. Same `|` trick as _canonical_items."""
    if type(match) is not tuple:
        raise FlowError(f"match must be a tuple of (field, value, mask) (use make_match): {match!r}")
    full = _FM
    prev = ""
    item = None
    try:
        for item in match:
            name, value, mask = item
            fm = full.get(name)
            if mask is None:
                if (value | fm) != fm:
                    _bad_match_item(name, value, None)
            elif (value | mask | fm) != fm or not mask or value & ~mask:
                _bad_match_item(name, value, mask)
                raise FlowError(f"match: {name}={_show(value)}/{_show(mask)} is not canonical"
                                " (value bits outside the mask, or zero mask; use make_match)")
            if name <= prev:
                raise FlowError(f"match fields not sorted/unique at {name!r} (use make_match): {match!r}")
            prev = name
    except FlowError:
        raise
    except (TypeError, ValueError) as exc:
        if not isinstance(item, tuple) or len(item) != 3:
            raise FlowError(f"match item {item!r} is not (field, value, mask)") from None
        if item[0] not in full:
            raise FlowError(f"unknown match field {item[0]!r} in {item!r}") from None
        _bad_match_item(*item)
        raise FlowError(f"bad match item {item!r}: {exc}") from exc


def match_dict(match: Match) -> dict[str, Union[int, tuple[int, int]]]:
    return {n: (v if m is None else (v, m)) for n, v, m in match}


# --------------------------------------------------------------------------- actions
# Each action is a frozen dataclass; `ofctl()` prints it the way ovs-ofctl does (close enough
# to paste into `ovs-ofctl add-flow`). GotoTable and WriteMetadata are OpenFlow instructions:
# they run after the apply-actions list, in that order (write-metadata, then goto).


@dataclass(frozen=True, slots=True)
class Output:
    port: int  # ofport number, or an OFPP_* reserved port (e.g. 0xfffffff8 IN_PORT)

    def __post_init__(self) -> None:
        try:
            ok = (self.port | 0xFFFF_FFFF) == 0xFFFF_FFFF
        except TypeError:
            ok = False
        if not ok:
            _int_in("output port", self.port, 0, U32)

    def ofctl(self) -> str:
        names = {0xFFFFFFF8: "IN_PORT", 0xFFFFFFFD: "CONTROLLER", 0xFFFFFFFB: "FLOOD",
                 0xFFFFFFFA: "NORMAL", 0xFFFFFFFE: "LOCAL"}
        return f"output:{names.get(self.port, self.port)}"


@dataclass(frozen=True, slots=True)
class SetField:
    field: str
    value: int

    def __post_init__(self) -> None:
        fm = _FM.get(self.field)
        try:  # see _canonical_items: (v | fm) == fm iff 0 <= v <= fm; TypeError if not ints
            ok = (self.value | fm) == fm
        except TypeError:
            ok = False
        if not ok:
            _field_value("set_field", self.field, self.value)

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

    def __post_init__(self) -> None:
        _field_bits("move src", self.src, self.src_ofs, self.n_bits)
        _field_bits("move dst", self.dst, self.dst_ofs, self.n_bits)

    def ofctl(self) -> str:
        s = f"{self.src}[{self.src_ofs}..{self.src_ofs + self.n_bits - 1}]"
        d = f"{self.dst}[{self.dst_ofs}..{self.dst_ofs + self.n_bits - 1}]"
        return f"move:{s}->{d}"


@dataclass(frozen=True, slots=True)
class PushVlan:
    ethertype: int = 0x8100

    def __post_init__(self) -> None:
        if self.ethertype not in _VLAN_TPIDS:
            raise FlowError(f"push_vlan ethertype={_show(self.ethertype)}: OVS accepts only 0x8100 or 0x88a8")

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

    def __post_init__(self) -> None:
        # NXAST_RESUBMIT_TABLE: table 255 means "this table" (valid, unlike for goto_table)
        t, p = self.table, self.in_port
        try:  # see _canonical_items for the `|` trick
            ok = (t | 0xFF) == 0xFF and (p | 0xFFFF) == 0xFFFF
        except TypeError:
            ok = False
        if not ok:
            _int_in("resubmit table", t, 0, U8)
            _int_in("resubmit in_port", p, 0, U16)

    def ofctl(self) -> str:
        return f"resubmit(,{self.table})"


@dataclass(frozen=True, slots=True)
class Controller:
    """Packet-in to the controller; `userdata` tells dispatch which app wants it."""
    max_len: int = 0xFFFF
    userdata: bytes = b""
    meter_id: int = 0

    def __post_init__(self) -> None:
        _int_in("controller max_len", self.max_len, 0, U16)
        _int_in("controller meter_id", self.meter_id, 0, U32)
        if not isinstance(self.userdata, bytes):
            raise FlowError(f"controller userdata={self.userdata!r}: must be bytes")

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

    def __post_init__(self) -> None:
        if self.kind not in ("", "src", "dst"):
            raise FlowError(f"nat kind={self.kind!r}: must be '', 'src' or 'dst'")
        _int_in("nat ip_min", self.ip_min, 0, U32)
        _int_in("nat ip_max", self.ip_max, 0, U32)
        if not self.kind and (self.ip_min or self.ip_max):
            raise FlowError(f"plain nat (reverse) takes no address range: {self!r}")
        if self.ip_max and self.ip_max < self.ip_min:
            raise FlowError(f"nat range {format_value('ipv4_src', self.ip_min)}-"
                            f"{format_value('ipv4_src', self.ip_max)} is empty (ip_max < ip_min)")

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

    def __post_init__(self) -> None:
        z, t = self.zone, self.table
        try:
            ok = (z | 0xFFFF) == 0xFFFF
        except TypeError:
            ok = False
        if not ok:
            _int_in("ct zone", z, 0, U16)
        if self.zone_reg:
            if self.zone_reg not in _REGS:
                raise FlowError(f"ct zone_reg={self.zone_reg!r}: must be a register reg0..reg15")
            if z:
                raise FlowError(f"ct: zone={z} and zone_reg={self.zone_reg!r} are exclusive")
        if t is not None:
            _table_ok("ct table", t)
        if self.nat is not None and type(self.nat) is not NAT:
            raise FlowError(f"ct nat={self.nat!r}: must be a NAT")
        acts = self.actions
        if acts:
            if type(acts) is not tuple:
                raise FlowError(f"ct actions={acts!r}: must be a tuple")
            if not self.commit:
                raise FlowError(f"ct exec actions need commit=True: {acts!r}")
            for a in acts:  # OVS: ct(exec(...)) may only set ct_mark / ct_label
                if type(a) is not SetField or a.field not in _CT_FIELDS:
                    raise FlowError(f"ct exec may only set ct_mark/ct_label, not {a!r}")

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

    def __post_init__(self) -> None:
        c, n, i = self.clause, self.n_clauses, self.conj_id
        try:
            ok = 2 <= n <= 64 and 1 <= c <= n and 0 <= i <= U32 and (c | n | i) >= 0
        except TypeError:
            ok = False
        if not ok:
            _int_in("conjunction conj_id", i, 0, U32)
            _int_in("conjunction n_clauses", n, 2, 64)  # OVS: NXBAC_BAD_CONJUNCTION otherwise
            _int_in("conjunction clause", c, 1, n)

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

    def __post_init__(self) -> None:
        what = f"learn {self.kind} spec"
        if self.kind not in ("match", "load", "output"):
            raise FlowError(f"learn spec kind={self.kind!r}: must be match, load or output")
        n = self.n_bits
        _int_in(f"{what} n_bits", n, 1, 128)  # 0 would end the spec list on the wire
        if self.kind == "output":
            if self.dst:
                raise FlowError(f"{what}: output takes no dst ({self.dst!r})")
        else:
            _field_bits(f"{what} dst", self.dst, self.dst_ofs, n)
        if self.src:
            if self.value is not None:
                raise FlowError(f"{what}: src={self.src!r} and value={self.value!r} are exclusive")
            _field_bits(f"{what} src", self.src, self.src_ofs, n)
        elif self.value is not None:
            _int_in(f"{what} value", self.value, 0, (1 << n) - 1)


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

    def __post_init__(self) -> None:
        _int_in("learn table", self.table, 0, MAX_TABLE)
        _int_in("learn priority", self.priority, 0, U16)
        _int_in("learn cookie", self.cookie, 0, U64)
        for what in ("idle_timeout", "hard_timeout", "fin_idle_timeout", "fin_hard_timeout"):
            _int_in(f"learn {what}", getattr(self, what), 0, U16)
        if type(self.specs) is not tuple or not all(type(s) is LearnSpec for s in self.specs):
            raise FlowError(f"learn specs={self.specs!r}: must be a tuple of LearnSpec")

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
class CheckPktLarger:
    """NXAST_CHECK_PKT_LARGER: dst[dst_ofs] = 1 if the frame (L2 header included) is longer than
    `pkt_len` bytes, else 0. Routers use it for the egress network's MTU (ICMP frag needed), as
    OVN does; the datapath cannot match a packet's length any other way."""
    pkt_len: int
    dst: str
    dst_ofs: int = 0

    def __post_init__(self) -> None:
        _int_in("check_pkt_larger pkt_len", self.pkt_len, 0, U16)
        _field_bits("check_pkt_larger dst", self.dst, self.dst_ofs, 1)

    def ofctl(self) -> str:
        return f"check_pkt_larger({self.pkt_len})->{self.dst}[{self.dst_ofs}]"


@dataclass(frozen=True, slots=True)
class Meter:
    meter_id: int

    def __post_init__(self) -> None:
        _int_in("meter meter_id", self.meter_id, 1, U32)  # meter 0 does not exist

    def ofctl(self) -> str:
        return f"meter:{self.meter_id}"


@dataclass(frozen=True, slots=True)
class WriteMetadata:
    value: int
    mask: int = (1 << 64) - 1

    def __post_init__(self) -> None:
        _int_in("write_metadata value", self.value, 0, U64)
        _int_in("write_metadata mask", self.mask, 0, U64)

    def ofctl(self) -> str:
        if self.mask == (1 << 64) - 1:
            return f"write_metadata:{self.value:#x}"
        return f"write_metadata:{self.value:#x}/{self.mask:#x}"


@dataclass(frozen=True, slots=True)
class GotoTable:
    table: int

    def __post_init__(self) -> None:
        _table_ok("goto_table", self.table)

    def ofctl(self) -> str:
        return f"goto_table:{self.table}"


Action = Union[Output, SetField, Move, PushVlan, PopVlan, DecTtl, Resubmit, Controller, CT, CTClear,
               Conjunction, Learn, Meter, WriteMetadata, GotoTable, CheckPktLarger]

# Flow's action-list check: at most one of each instruction (the encoder would silently keep the
# last); set_field of ct_mark/ct_label only inside CT. Other action types pass (the simulator's
# learned flows carry an internal load action).
_K_SETFIELD = 8
_ACTION_KIND: dict[type, int] = {Meter: 1, WriteMetadata: 2, GotoTable: 4, SetField: _K_SETFIELD}


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

    def __post_init__(self) -> None:
        m = self.match
        if type(m) is not _Checked:
            _check_match(m)
        self._check_fields()

    def _check_fields(self) -> None:
        """Every check but the match's (see flow(), whose match is checked as it is built)."""
        t, p, c, i, h = self.table, self.priority, self.cookie, self.idle_timeout, self.hard_timeout
        try:  # `|` with an all-ones constant: in range iff unchanged; TypeError for non-ints
            ok = (t | 255) == 255 and t != 255 and (p | i | h | 0xFFFF) == 0xFFFF \
                and (c | 0xFFFF_FFFF_FFFF_FFFF) == 0xFFFF_FFFF_FFFF_FFFF
        except TypeError:
            ok = False
        if not ok:
            _int_in("flow table", t, 0, MAX_TABLE)
            _int_in("flow priority", p, 0, U16)
            _int_in("flow cookie", c, 0, U64)
            _int_in("flow idle_timeout", i, 0, U16)
            _int_in("flow hard_timeout", h, 0, U16)
        acts = self.actions
        if type(acts) is not tuple:
            raise FlowError(f"flow actions must be a tuple, not {type(acts).__name__}: {acts!r}")
        seen = 0
        kinds = _ACTION_KIND
        for a in acts:
            k = kinds.get(type(a))
            if k:
                if k == _K_SETFIELD:
                    if a.field in _CT_FIELDS:
                        raise FlowError(f"{a!r}: ct_mark/ct_label can only be set inside ct(commit, exec(...))")
                elif seen & k:
                    raise FlowError(f"more than one {type(a).__name__} instruction in {acts!r}")
                else:
                    seen |= k

    def __hash__(self) -> int:
        """Of (table, priority, match, cookie) only: flows that are equal have equal ones, and two
        flows of one owner with one key (the rest differing) are rare. Hashing the actions too
        meant a Python-level hash per action of every flow (≈ 4 % of a full compile)."""
        return hash((self.table, self.priority, self.match, self.cookie))

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


_new_object = object.__new__
_set_slot = object.__setattr__  # what a frozen dataclass's generated __init__ calls


def flow(table: int, priority: int, cookie: int, actions: Iterable = (),
         match: Mapping[str, Union[int, tuple[int, int]]] | None = None,
         idle_timeout: int = 0, hard_timeout: int = 0) -> Flow:
    """Convenience constructor: flow(T.L2, 100, ck, [Output(3)], match=dict(reg6=1)).

    The same Flow as Flow(table, priority, make_match(**match), ...), but its match is a plain
    tuple: Python's GC stops tracking a tuple of atoms (not a tuple subclass such as _Checked),
    and at 170,000 flows per chassis the tracked matches made every full collection walk
    170,000 more objects. The match is checked as it is built here, so Flow's own check of it
    is skipped; the other checks run as in Flow.__post_init__."""
    f = _new_object(Flow)
    _set_slot(f, "table", table)
    _set_slot(f, "priority", priority)
    _set_slot(f, "match", tuple(_canonical_items(match)) if match else ())
    _set_slot(f, "actions", tuple(actions))
    _set_slot(f, "cookie", cookie)
    _set_slot(f, "idle_timeout", idle_timeout)
    _set_slot(f, "hard_timeout", hard_timeout)
    f._check_fields()
    _set_slot(f, "cookie", _cookie(cookie, cookie))  # checked first: a bad cookie raises FlowError
    if len(_COOKIES) > _INTERN_MAX:
        _COOKIES.clear()
    return f
