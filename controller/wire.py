"""OpenFlow 1.3 wire encoding of Flow values — the controller's fast path.

Why not os-ken's message classes: building and serialising an OFPFlowMod costs ~75 µs, which
caps a resync at ~13k flows/s. Flows in one datapath share few distinct match fields and
action lists, so we serialise each OXM TLV and each action once (actions with os-ken's own
parser classes, so the bytes are what os-ken would produce), cache the bytes, and glue flow-mods
together with `struct`. Flow-mods travel inside ONF bundles (OF1.3 bundle extension), and whole
bundles go to the socket as one buffer.

The same module decodes flow-stats replies into canonical (key, body) pairs, where key is
Flow.key and body is (cookie, idle_timeout, hard_timeout, instruction bytes); the encoder
emits instructions exactly as Open vSwitch echoes them back, so an unchanged flow compares
equal byte for byte and a restart sends nothing.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Mapping

from os_ken.ofproto import nicira_ext
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from flows.fields import FIELDS, format_value
from flows.flow import (CT, NAT, CheckPktLarger, Conjunction, Controller, CTClear, DecTtl, Flow, GotoTable,
                        Learn, Meter, Move, Output, PopVlan, PushVlan, Resubmit, SetField, WriteMetadata)

OFP_VERSION = 0x04
OFPT_ERROR = 1
OFPT_EXPERIMENTER = 4
OFPT_FLOW_MOD = 14
OFPT_MULTIPART_REQUEST = 18
OFPT_BARRIER_REQUEST = 20
OFPMP_FLOW = 1
OFPFC_ADD = 0
OFPFC_DELETE = 3
OFPFC_DELETE_STRICT = 4
OFPP_ANY = 0xFFFFFFFF
OFPG_ANY = 0xFFFFFFFF
OFPP_CONTROLLER = 0xFFFFFFFD
OFP_NO_BUFFER = 0xFFFFFFFF
OFPTT_ALL = 0xFF
NX_NAT_F_SRC = 1 << 0  # OVS nx_nat_flags; os-ken has no names for them
NX_NAT_F_DST = 1 << 1

ONF_EXPERIMENTER_ID = 0x4F4E4600
ONF_ET_BUNDLE_CONTROL = 2300
ONF_ET_BUNDLE_ADD_MESSAGE = 2301
BUNDLE_OPEN_REQUEST = 0
BUNDLE_OPEN_REPLY = 1
BUNDLE_CLOSE_REQUEST = 2
BUNDLE_COMMIT_REQUEST = 4
BUNDLE_COMMIT_REPLY = 5
BUNDLE_DISCARD_REQUEST = 6
BUNDLE_ATOMIC = 1
BUNDLE_ORDERED = 2

_HEADER = struct.Struct("!BBHI")
_FLOW_MOD = struct.Struct("!BBHIQQBBHHHIIIH2x")  # header + ofp_flow_mod up to the match
_MATCH_HDR = struct.Struct("!HH")
_INSTR_HDR = struct.Struct("!HH4x")  # apply-actions header (type, len, pad)
_BUNDLE_ADD = struct.Struct("!BBHIIII2xH")
_BUNDLE_FLOW_MOD = struct.Struct("!BBHIIII2xH" + _FLOW_MOD.format[1:])  # a bundle-add and its flow-mod header
_BUNDLE_CTRL = struct.Struct("!BBHIIIIHH")
_FLOW_MOD_REST = struct.Struct("!" + _FLOW_MOD.format[5:])  # ofp_flow_mod after its 8-byte header
_BUNDLE_FLOW_MOD_HDR = struct.Struct("!BBHIIII2xHBBHI")  # a bundle-add and the header of its flow-mod
_FLOW_STATS = struct.Struct("!HBxIIHHHH4xQQQ")  # ofp_flow_stats up to the match
_MP_REQ_FLOW = struct.Struct("!BBHIHH4xB3xII4xQQ")  # multipart header + ofp_flow_stats_request
_ALL_MATCH = struct.pack("!HH4x", 1, 4)  # empty OXM match, padded
_PAD = [b"\0" * n for n in range(8)]

# ---------------------------------------------------------------------------------- OXM


def _oxm_catalogue() -> dict[str, tuple[int, int]]:
    """field name → (oxm_type = class<<7 | field, value length) from os-ken's OXM definitions."""
    out: dict[str, tuple[int, int]] = {}
    for f in ofp.oxm_types:
        if isinstance(f.num, tuple):  # experimenter OXMs: 64-bit headers, not used here
            continue
        out[f.name] = (f.num, f.type.size)
    return out


OXM = _oxm_catalogue()
OXM_BY_TYPE: dict[int, str] = {num: name for name, (num, _) in OXM.items() if name in FIELDS}
for _name in FIELDS:
    if _name not in OXM:
        raise ImportError(f"field {_name!r} has no OXM in os-ken")


# The order of a match's TLVs. OF1.3 wants prerequisites (eth_type before ip_proto before
# tcp_dst …) earlier; OVS writes them in the order of its nx_put_raw (lib/nx-match.c), which
# respects that but is not os-ken's field-number order (metadata last, registers after L2-L4,
# conj_id first, addresses before ip_proto). We encode in OVS's order, so a flow reads back byte
# for byte what we sent and a restart's resync finds it by its bytes (match_flow_stats); fields
# not listed keep os-ken's catalogue order, after these.
OXM_RANK: dict[str, int] = {f.name: i for i, f in enumerate(ofp.oxm_types)}
_OVS_MATCH_ORDER = (
    "conj_id", "in_port", "eth_src", "eth_dst", "eth_type", "vlan_vid", "vlan_pcp",
    "ipv4_src", "ipv4_dst", "ipv6_src", "ipv6_dst", "ip_dscp", "nw_ttl", "ip_proto",
    "tcp_src", "tcp_dst", "udp_src", "udp_dst", "icmpv4_type", "icmpv4_code",
    "icmpv6_type", "icmpv6_code", "ipv6_nd_target", "ipv6_nd_sll", "ipv6_nd_tll",
    "arp_op", "arp_spa", "arp_tpa", "arp_sha", "arp_tha",
    "tunnel_id", "tun_ipv4_src", "tun_ipv4_dst", *(f"reg{i}" for i in range(16)),
    "ct_state", "ct_zone", "ct_mark", "ct_label", "metadata")
OXM_RANK.update({name: i - len(_OVS_MATCH_ORDER) for i, name in enumerate(_OVS_MATCH_ORDER)})


def nx_field(name: str) -> str:
    """Field name Nicira actions (move, learn) should carry: OVS encodes NXM_OF_*/NXM_NX_*
    headers there whenever the field has one, so we do too (byte-identical read-back)."""
    alt = f"{name}_nxm"
    return alt if alt in OXM else name


# Per-field precompiled OXM encoders: (rank, 4-byte TLV header, value length), plain and masked.
# Match values are mostly unique per flow (a port's MAC, an address), so caching TLVs per
# (field, value, mask) mostly missed and grew with every value ever seen; a header lookup by
# field name (a str: its hash is cached) plus int.to_bytes is as fast as a cache hit.
_OXM_PLAIN: dict[str, tuple[int, bytes, int]] = {
    name: (OXM_RANK[name], struct.pack("!I", (num << 9) | size), size) for name, (num, size) in OXM.items()}
_OXM_MASKED: dict[str, tuple[int, bytes, int]] = {
    name: (OXM_RANK[name], struct.pack("!I", (num << 9) | 0x100 | (size * 2)), size)
    for name, (num, size) in OXM.items()}


def oxm_tlv(name: str, value: int, mask: int | None) -> bytes:
    num, size = OXM[name]
    if mask is None:
        return struct.pack("!I", (num << 9) | size) + value.to_bytes(size, "big")
    return (struct.pack("!I", (num << 9) | 0x100 | (size * 2)) + value.to_bytes(size, "big")
            + mask.to_bytes(size, "big"))


def parse_oxms(buf: bytes, offset: int, end: int) -> tuple:
    """OXM TLVs → canonical Match (sorted (name, value, mask|None), all-ones masks dropped)."""
    items = []
    while offset + 4 <= end:
        (hdr,) = struct.unpack_from("!I", buf, offset)
        num = hdr >> 9
        hasmask = hdr & 0x100
        length = hdr & 0xFF
        body = buf[offset + 4:offset + 4 + length]
        offset += 4 + length
        name = OXM_BY_TYPE.get(num)
        if name is None:
            name = f"oxm_{num:#x}"
        mask: int | None
        if hasmask:
            half = length // 2
            value = int.from_bytes(body[:half], "big")
            mask = int.from_bytes(body[half:], "big")
            if mask == (1 << (8 * half)) - 1:
                mask = None
            else:
                value &= mask
        else:
            value, mask = int.from_bytes(body, "big"), None
        items.append((name, value, mask))
    items.sort()
    return tuple(items)


# ------------------------------------------------------------------------------ actions


def user_value(name: str, value: int):
    """Int → the form os-ken's parser classes take for this field (MAC/IP strings)."""
    kind = FIELDS[name].kind if name in FIELDS else "int"
    return format_value(name, value) if kind in ("mac", "ipv4", "ipv6") else value


def _serialize(action) -> bytes:
    """One action's bytes, padded to the length its header declares.

    os-ken's NXActionLearn declares a length rounded up to 8 but writes no padding; in a buffer
    of its own the pad would be lost and OVS rejects the instruction (OFPBRC_BAD_LEN).
    """
    buf = bytearray()
    action.serialize(buf, 0)
    declared = struct.unpack_from("!H", buf, 2)[0]
    buf += bytes(max(0, declared - len(buf)))
    return bytes(buf)


NXAC2PT_METER_ID = 5  # OVS property os-ken 4.2 lacks


def _serialize_action(action) -> bytes:
    """Bytes of one apply-action; controller meter_id is appended as the (last) property, as OVS does.

    The common kinds are packed with `struct` (`_PACK`, byte-identical to os-ken: test_wire_actions
    compares every kind); the rest go through os-ken's classes."""
    pack = _PACK.get(type(action))
    if pack is None and isinstance(action, Controller):
        pack = _pack_controller  # a subclass (flows/qos.py MeteredController): the same wire form
    if pack is not None:
        return pack(action)
    b = _serialize(to_oskenaction(action))
    if isinstance(action, Controller) and action.meter_id:
        b = b + struct.pack("!HHI", NXAC2PT_METER_ID, 8, action.meter_id)
        b = b[:2] + struct.pack("!H", len(b)) + b[4:]
    return b


# ------------------------------------------------------------------ struct-packed actions
# A restart encodes every distinct action of a chassis once (≈ 84,000 at 10k ports); os-ken's
# classes cost ≈ 10 µs each (object, dict lookups, bytearray), a struct pack well under 1 µs.
NX_VENDOR_ID = 0x00002320
NXAST_REG_MOVE = 6
NXAST_RESUBMIT_TABLE = 14
NXAST_CONJUNCTION = 34
NXAST_CT = 35
NXAST_NAT = 36
NXAST_CT_CLEAR = 43
_NX_HDR = struct.Struct("!HHIH")  # experimenter action: type 0xffff, len, vendor, subtype
_OUTPUT = struct.Struct("!HHIH6x")
_SET_FIELD_HDR = struct.Struct("!HH")
_REG_MOVE = struct.Struct("!HHIHHHHII")
_RESUBMIT = struct.Struct("!HHIHHB3x")
_CONJUNCTION = struct.Struct("!HHIHBBI")
_CT = struct.Struct("!HHIHHIHB3xH")
_NAT = struct.Struct("!HHIH2xHH")
_PUSH_VLAN = struct.Struct("!HHH2x")
_POP_VLAN = struct.pack("!HH4x", ofp.OFPAT_POP_VLAN, 8)
_DEC_TTL = struct.pack("!HH4x", ofp.OFPAT_DEC_NW_TTL, 8)
_CT_CLEAR = _NX_HDR.pack(0xFFFF, 16, NX_VENDOR_ID, NXAST_CT_CLEAR) + bytes(6)
_NX_HEADER: dict[str, int] = {}  # field → 32-bit NXM/OXM header as Nicira actions carry it


def _nx_header(name: str) -> int:
    hdr = _NX_HEADER.get(name)
    if hdr is None:
        num, size = OXM[nx_field(name)]
        hdr = _NX_HEADER[name] = (num << 9) | size
    return hdr


def _pack_output(a: Output) -> bytes:
    return _OUTPUT.pack(ofp.OFPAT_OUTPUT, 16, a.port, 0xFFFF if a.port == OFPP_CONTROLLER else 0)


def _pack_set_field(a: SetField) -> bytes:
    rank, hdr, size = _OXM_PLAIN[a.field]
    length = 4 + 4 + size
    return b"".join((_SET_FIELD_HDR.pack(ofp.OFPAT_SET_FIELD, length + (-length) % 8), hdr,
                     a.value.to_bytes(size, "big"), _PAD[(-length) % 8]))


def _pack_move(a: Move) -> bytes:
    return _REG_MOVE.pack(0xFFFF, 24, NX_VENDOR_ID, NXAST_REG_MOVE, a.n_bits, a.src_ofs, a.dst_ofs,
                          _nx_header(a.src), _nx_header(a.dst))


def _pack_resubmit(a: Resubmit) -> bytes:
    return _RESUBMIT.pack(0xFFFF, 16, NX_VENDOR_ID, NXAST_RESUBMIT_TABLE, a.in_port, a.table)


def _pack_conjunction(a: Conjunction) -> bytes:
    return _CONJUNCTION.pack(0xFFFF, 16, NX_VENDOR_ID, NXAST_CONJUNCTION, a.clause - 1, a.n_clauses, a.conj_id)


def _pack_nat(a: NAT) -> bytes:
    if not a.kind:
        return _NAT.pack(0xFFFF, 16, NX_VENDOR_ID, NXAST_NAT, 0, 0)
    flags = NX_NAT_F_SRC if a.kind == "src" else NX_NAT_F_DST
    present = nicira_ext.NX_NAT_RANGE_IPV4_MIN | nicira_ext.NX_NAT_RANGE_IPV4_MAX
    return _NAT.pack(0xFFFF, 24, NX_VENDOR_ID, NXAST_NAT, flags, present) + struct.pack(
        "!II", a.ip_min, a.ip_max or a.ip_min)


def _pack_ct(a: CT) -> bytes:
    nested = [_pack_nat(a.nat)] if a.nat is not None else []
    for inner in a.actions:
        pack = _PACK.get(type(inner))
        nested.append(pack(inner) if pack is not None else _serialize_action(inner))
    body = b"".join(nested)
    if a.zone_reg:
        zone_src, zone = _nx_header(a.zone_reg), nicira_ext.ofs_nbits(0, 15)
    else:
        zone_src, zone = 0, a.zone
    return _CT.pack(0xFFFF, 24 + len(body), NX_VENDOR_ID, NXAST_CT, 1 if a.commit else 0, zone_src, zone,
                    0xFF if a.table is None else a.table, 0) + body


NXAST_CONTROLLER2 = 37
NXAC2PT_MAX_LEN = 0
NXAC2PT_USERDATA = 3


def _controller_prop(kind: int, data: bytes) -> bytes:
    length = 4 + len(data)
    return struct.pack("!HH", kind, length) + data + bytes((-length) % 8)


def _pack_controller(a: Controller) -> bytes:
    """NXAST_CONTROLLER2 with its properties in type order, each padded to 8 (what OVS and
    os-ken write); meter_id last, as OVS echoes it."""
    props = []
    if a.max_len != 0xFFFF:
        props.append(struct.pack("!HHH2x", NXAC2PT_MAX_LEN, 8, a.max_len))  # os-ken declares 8 (OVS: 6)
    if a.userdata:
        props.append(_controller_prop(NXAC2PT_USERDATA, a.userdata))
    if a.meter_id:
        props.append(_controller_prop(NXAC2PT_METER_ID, struct.pack("!I", a.meter_id)))
    body = b"".join(props)
    return _NX_HDR.pack(0xFFFF, 16 + len(body), NX_VENDOR_ID, NXAST_CONTROLLER2) + bytes(6) + body


def _pack_push_vlan(a: PushVlan) -> bytes:
    return _PUSH_VLAN.pack(ofp.OFPAT_PUSH_VLAN, 8, a.ethertype)


_PACK: dict[type, Callable[[Any], bytes]] = {
    Output: _pack_output, SetField: _pack_set_field, Move: _pack_move, Resubmit: _pack_resubmit,
    Conjunction: _pack_conjunction, NAT: _pack_nat, CT: _pack_ct, PushVlan: _pack_push_vlan,
    Controller: _pack_controller,
    PopVlan: lambda a: _POP_VLAN, DecTtl: lambda a: _DEC_TTL, CTClear: lambda a: _CT_CLEAR,
}


def _learn_spec(spec):
    src = (nx_field(spec.src), spec.src_ofs) if spec.src else (spec.value or 0)
    if spec.kind == "match":
        return parser.NXFlowSpecMatch(src=src, dst=(nx_field(spec.dst), spec.dst_ofs), n_bits=spec.n_bits)
    if spec.kind == "load":
        return parser.NXFlowSpecLoad(src=src, dst=(nx_field(spec.dst), spec.dst_ofs), n_bits=spec.n_bits)
    if spec.kind == "output":
        return parser.NXFlowSpecOutput(src=src, n_bits=spec.n_bits)
    raise ValueError(f"unknown learn spec kind {spec.kind!r}")


NXAST_CHECK_PKT_LARGER = 49


class _CheckPktLargerAction:
    """nx_action_check_pkt_larger (os-ken 4.2 has no class for it): 24 bytes, the result field's
    NXM/OXM header right after `offset`, zero padding — exactly what OVS echoes back."""

    def __init__(self, action: CheckPktLarger) -> None:
        self.action = action

    def serialize(self, buf: bytearray, offset: int) -> None:
        num, size = OXM[nx_field(self.action.dst)]
        body = struct.pack("!HHIHHHI", 0xFFFF, 24, NX_VENDOR_ID, NXAST_CHECK_PKT_LARGER, self.action.pkt_len,
                           self.action.dst_ofs, (num << 9) | size)
        buf[offset:offset] = body + bytes(24 - len(body))


def to_oskenaction(action):
    """Our action value → the os-ken parser object that serialises it (apply-actions only)."""
    if isinstance(action, Output):
        max_len = 0xFFFF if action.port == OFPP_CONTROLLER else 0
        return parser.OFPActionOutput(action.port, max_len)
    if isinstance(action, SetField):
        return parser.OFPActionSetField(**{action.field: user_value(action.field, action.value)})
    if isinstance(action, Move):
        return parser.NXActionRegMove(src_field=nx_field(action.src), dst_field=nx_field(action.dst),
                                      n_bits=action.n_bits, src_ofs=action.src_ofs, dst_ofs=action.dst_ofs)
    if isinstance(action, PushVlan):
        return parser.OFPActionPushVlan(action.ethertype)
    if isinstance(action, PopVlan):
        return parser.OFPActionPopVlan()
    if isinstance(action, DecTtl):
        return parser.OFPActionDecNwTtl()
    if isinstance(action, Resubmit):
        return parser.NXActionResubmitTable(in_port=action.in_port, table_id=action.table)
    if isinstance(action, Controller):
        kw: dict[str, object] = {}
        if action.max_len != 0xFFFF:
            kw["max_len"] = action.max_len
        if action.userdata:
            kw["userdata"] = list(action.userdata)
        return parser.NXActionController2(**kw)  # meter_id: see _serialize_action
    if isinstance(action, CT):
        nested = []
        if action.nat is not None:
            nested.append(_nat(action.nat))
        nested.extend(to_oskenaction(a) for a in action.actions)
        if action.zone_reg:
            zone_src, zone = action.zone_reg, nicira_ext.ofs_nbits(0, 15)
        else:
            zone_src, zone = "", action.zone
        return parser.NXActionCT(flags=1 if action.commit else 0, zone_src=zone_src, zone_ofs_nbits=zone,
                                 recirc_table=0xFF if action.table is None else action.table,
                                 alg=0, actions=nested)
    if isinstance(action, NAT):
        return _nat(action)
    if isinstance(action, CTClear):
        return parser.NXActionCTClear()
    if isinstance(action, Conjunction):
        return parser.NXActionConjunction(clause=action.clause - 1, n_clauses=action.n_clauses,
                                          id_=action.conj_id)
    if isinstance(action, CheckPktLarger):
        return _CheckPktLargerAction(action)
    if isinstance(action, Learn):
        return parser.NXActionLearn(table_id=action.table, specs=[_learn_spec(s) for s in action.specs],
                                    idle_timeout=action.idle_timeout, hard_timeout=action.hard_timeout,
                                    priority=action.priority, cookie=action.cookie, flags=0,
                                    fin_idle_timeout=action.fin_idle_timeout,
                                    fin_hard_timeout=action.fin_hard_timeout)
    raise TypeError(f"not an apply-action: {action!r}")


def _nat(nat: NAT):
    flags = {"": 0, "src": NX_NAT_F_SRC, "dst": NX_NAT_F_DST}[nat.kind]
    kw = {}
    if nat.kind:
        kw["range_ipv4_min"] = user_value("ipv4_src", nat.ip_min)
        kw["range_ipv4_max"] = user_value("ipv4_src", nat.ip_max or nat.ip_min)
    return parser.NXActionNAT(flags=flags, **kw)


# ------------------------------------------------------------------------------ encoder

_INSTRUCTION_KINDS = (Meter, WriteMetadata, GotoTable)


_METER_TYPES: tuple[type, ...] = ()


def _meter_actions(actions: tuple) -> tuple:
    """The actions that declare a meter the reconciler must keep (flows.qos METER_TYPES)."""
    global _METER_TYPES
    if not _METER_TYPES:
        from flows.qos import METER_TYPES  # late: flows.qos pulls in the view, the bare encoder needs none of it
        _METER_TYPES = METER_TYPES
    types = _METER_TYPES
    for a in actions:
        if type(a) in types:
            return tuple(a for a in actions if type(a) in types)
    return ()


# Bound of each of the encoder's caches (actions, action lists). Many action lists carry a port's
# own values (its reg7, its ofport), so a cache that only grows would keep every deleted port's
# entries for the life of the process; at 10,000 ports one chassis has ≈ 69,000 live lists (27,442 at 4,000).
# Reaching the bound clears the cache (it is only a cache: a miss re-encodes, ≈ 2 µs).
ENCODER_CACHE_MAX = 1 << 17  # ≈ 25 MB of lists and bytes


class Encoder:
    """Caching Flow → bytes encoder. One per process is enough; each cache holds at most
    ENCODER_CACHE_MAX entries (match TLVs are not cached: see _OXM_PLAIN)."""

    def __init__(self) -> None:
        self._action: dict[object, bytes] = {}
        self._instr: dict[tuple, tuple[bytes, tuple]] = {}  # action list → (instructions, its meter actions)

    # -- pieces
    def match(self, match: tuple) -> bytes:
        """The padded OXM match: TLVs in prerequisite order (OXM_RANK), each exactly `oxm_tlv`."""
        plain, masked = _OXM_PLAIN, _OXM_MASKED
        ents = []
        for name, value, mask in match:
            if mask is None:
                rank, hdr, size = plain[name]
                ents.append((rank, hdr + value.to_bytes(size, "big")))
            else:
                rank, hdr, size = masked[name]
                ents.append((rank, hdr + value.to_bytes(size, "big") + mask.to_bytes(size, "big")))
        if len(ents) > 1:
            ents.sort()  # (rank, bytes) tuples: prerequisites first, compared in C
        oxms = b"".join([b for _r, b in ents])
        length = 4 + len(oxms)
        return _MATCH_HDR.pack(1, length) + oxms + _PAD[(-length) % 8]

    def action(self, action) -> bytes:
        b = self._action.get(action)
        if b is None:
            if len(self._action) >= ENCODER_CACHE_MAX:
                self._action.clear()
            b = self._action[action] = _serialize_action(action)
        return b

    def _instr_entry(self, actions: tuple) -> tuple[bytes, tuple]:
        """Cache miss: (instruction bytes, meter actions) of an action list, kept in the bounded cache."""
        ent = (self._instructions(actions), _meter_actions(actions))
        if len(self._instr) >= ENCODER_CACHE_MAX:
            self._instr.clear()
        self._instr[actions] = ent
        return ent

    def instructions(self, actions: tuple) -> bytes:
        """Instruction bytes in OVS's canonical order: meter, apply-actions, write-metadata, goto."""
        ent = self._instr.get(actions)
        if ent is None:
            ent = self._instr_entry(actions)
        return ent[0]

    def _instructions(self, actions: tuple) -> bytes:
        meter = b""
        tail_meta = b""
        tail_goto = b""
        applied = []
        for a in actions:
            if isinstance(a, Meter):
                meter = struct.pack("!HHI", ofp.OFPIT_METER, 8, a.meter_id)
            elif isinstance(a, WriteMetadata):
                tail_meta = struct.pack("!HH4xQQ", ofp.OFPIT_WRITE_METADATA, 24, a.value, a.mask)
            elif isinstance(a, GotoTable):
                tail_goto = struct.pack("!HHB3x", ofp.OFPIT_GOTO_TABLE, 8, a.table)
            else:
                applied.append(self.action(a))
        apply = b""
        if applied:
            body = b"".join(applied)
            apply = _INSTR_HDR.pack(ofp.OFPIT_APPLY_ACTIONS, 8 + len(body)) + body
        return meter + apply + tail_meta + tail_goto

    def body(self, f: Flow) -> tuple:
        """What a flow-stats entry must equal for `f` to count as installed."""
        return (f.cookie, f.idle_timeout, f.hard_timeout, self.instructions(f.actions))

    # -- messages
    def flow_mod(self, f: Flow, xid: int, command: int = OFPFC_ADD) -> bytes:
        match = self.match(f.match)
        instr = self.instructions(f.actions) if command == OFPFC_ADD else b""
        length = _FLOW_MOD.size + len(match) + len(instr)
        return _FLOW_MOD.pack(OFP_VERSION, OFPT_FLOW_MOD, length, xid, f.cookie, 0, f.table, command,
                              f.idle_timeout, f.hard_timeout, f.priority, OFP_NO_BUFFER,
                              OFPP_ANY, OFPG_ANY, 0) + match + instr

    def flow_mod_body(self, f: Flow, body: tuple, xid: int) -> bytes:
        """OFPFC_ADD for `f` whose body (from `body()`) is already known — the reconciler's hot path."""
        match = self.match(f.match)
        instr = body[3]
        return _FLOW_MOD.pack(OFP_VERSION, OFPT_FLOW_MOD, _FLOW_MOD.size + len(match) + len(instr), xid,
                              f.cookie, 0, f.table, OFPFC_ADD, f.idle_timeout, f.hard_timeout, f.priority,
                              OFP_NO_BUFFER, OFPP_ANY, OFPG_ANY, 0) + match + instr

    def bundle_add_flow(self, bundle_id: int, f: Flow, body: tuple, xid: int,
                        flags: int = BUNDLE_ATOMIC | BUNDLE_ORDERED) -> bytes:
        """bundle_add(bundle_id, flow_mod_body(f, body, xid), xid) with one pack and one join:
        the reconciler's innermost line, run once per flow of a bundle."""
        match = self.match(f.match)
        instr = body[3]
        inner = _FLOW_MOD.size + len(match) + len(instr)
        return b"".join((_BUNDLE_FLOW_MOD.pack(
            OFP_VERSION, OFPT_EXPERIMENTER, 24 + inner, xid, ONF_EXPERIMENTER_ID, ONF_ET_BUNDLE_ADD_MESSAGE,
            bundle_id, flags, OFP_VERSION, OFPT_FLOW_MOD, inner, xid, f.cookie, 0, f.table, OFPFC_ADD,
            f.idle_timeout, f.hard_timeout, f.priority, OFP_NO_BUFFER, OFPP_ANY, OFPG_ANY, 0), match, instr))

    def encoded(self, f: Flow, body: tuple) -> bytes:
        """`f`'s OFPFC_ADD flow-mod after its 8-byte header (cookie … match, instructions): the
        part that does not depend on the xid. A Flow is an immutable value, so the reconciler
        encodes it once when it is first desired and every send is then `bundle_add_encoded`."""
        return b"".join((_FLOW_MOD_REST.pack(f.cookie, 0, f.table, OFPFC_ADD, f.idle_timeout, f.hard_timeout,
                                             f.priority, OFP_NO_BUFFER, OFPP_ANY, OFPG_ANY, 0),
                         self.match(f.match), body[3]))

    def encoded_with_meters(self, f: Flow) -> tuple[bytes, tuple]:
        """`encoded(f, body(f))` and the actions of `f` that declare a meter (flows.qos METER_TYPES,
        for the reconciler's MeterTable), with one cache lookup by the action list: the
        reconciler's hot path, once per flow its owners declare (hashing an action list is a
        Python-level hash per action, and scanning it for meters was another loop per flow)."""
        acts = f.actions
        ent = self._instr.get(acts)
        if ent is None:
            ent = self._instr_entry(acts)
        return b"".join((_FLOW_MOD_REST.pack(f.cookie, 0, f.table, OFPFC_ADD, f.idle_timeout, f.hard_timeout,
                                             f.priority, OFP_NO_BUFFER, OFPP_ANY, OFPG_ANY, 0),
                         self.match(f.match), ent[0])), ent[1]

    def delete_strict(self, key: tuple, xid: int) -> bytes:
        table, priority, match = key
        mb = self.match(match)
        length = _FLOW_MOD.size + len(mb)
        return _FLOW_MOD.pack(OFP_VERSION, OFPT_FLOW_MOD, length, xid, 0, 0, table, OFPFC_DELETE_STRICT,
                              0, 0, priority, OFP_NO_BUFFER, OFPP_ANY, OFPG_ANY, 0) + mb


def bundle_add(bundle_id: int, inner: bytes, xid: int, flags: int = BUNDLE_ATOMIC | BUNDLE_ORDERED) -> bytes:
    """Wrap one message (whose xid must equal `xid`) in an ONF_ET_BUNDLE_ADD_MESSAGE."""
    return _BUNDLE_ADD.pack(OFP_VERSION, OFPT_EXPERIMENTER, 24 + len(inner), xid, ONF_EXPERIMENTER_ID,
                            ONF_ET_BUNDLE_ADD_MESSAGE, bundle_id, flags) + inner


def bundle_add_encoded(bundle_id: int, encoded: bytes | bytearray, xid: int,
                       flags: int = BUNDLE_ATOMIC | BUNDLE_ORDERED) -> bytes:
    """bundle_add(bundle_id, flow-mod, xid) of a flow whose `Encoder.encoded` bytes are cached:
    one pack of the two headers (the xids and the bundle id are all that vary) and one concat —
    the reconciler's innermost line, byte for byte what `Encoder.bundle_add_flow` builds."""
    n = len(encoded)
    return _BUNDLE_FLOW_MOD_HDR.pack(OFP_VERSION, OFPT_EXPERIMENTER, 32 + n, xid, ONF_EXPERIMENTER_ID,
                                     ONF_ET_BUNDLE_ADD_MESSAGE, bundle_id, flags, OFP_VERSION, OFPT_FLOW_MOD,
                                     8 + n, xid) + encoded


def flow_mod_encoded(encoded: bytes, xid: int) -> bytes:
    """The plain (unbundled) flow-mod of cached `Encoder.encoded` bytes."""
    return _HEADER.pack(OFP_VERSION, OFPT_FLOW_MOD, 8 + len(encoded), xid) + encoded


def bundle_ctrl(bundle_id: int, kind: int, xid: int, flags: int = BUNDLE_ATOMIC | BUNDLE_ORDERED) -> bytes:
    return _BUNDLE_CTRL.pack(OFP_VERSION, OFPT_EXPERIMENTER, 24, xid, ONF_EXPERIMENTER_ID,
                             ONF_ET_BUNDLE_CONTROL, bundle_id, kind, flags)


def barrier(xid: int) -> bytes:
    return _HEADER.pack(OFP_VERSION, OFPT_BARRIER_REQUEST, 8, xid)


def flow_stats_request(xid: int, table: int = OFPTT_ALL) -> bytes:
    """All flows (any cookie, any table) — the reconciler filters by cookie itself."""
    return _MP_REQ_FLOW.pack(OFP_VERSION, OFPT_MULTIPART_REQUEST, _MP_REQ_FLOW.size + len(_ALL_MATCH), xid,
                             OFPMP_FLOW, 0, table, OFPP_ANY, OFPG_ANY, 0, 0) + _ALL_MATCH


# ------------------------------------------------------------------------------ decoder

@dataclass(frozen=True, slots=True)
class InstalledFlow:
    key: tuple  # (table, priority, match) — equals Flow.key
    body: tuple  # (cookie, idle_timeout, hard_timeout, instruction bytes)
    duration_sec: int
    packet_count: int


def parse_flow_stats(body: bytes) -> Iterator[InstalledFlow]:
    """Decode the body of an OFPMP_FLOW reply (sequence of ofp_flow_stats)."""
    decoded: list[InstalledFlow] = []
    match_flow_stats(body, {}, [], decoded)
    return iter(decoded)


def match_flow_stats(body: bytes, known: Mapping[bytes, object], hits: list, decoded: list[InstalledFlow]) -> None:
    """Decode an OFPMP_FLOW reply body against flows whose `Encoder.encoded` bytes are `known`:
    appends known[bytes] to `hits` for an entry that is byte for byte one of them, the decoded
    entry to `decoded` for any other. Why: a restarted controller reads back ≈ 170,000 flows it
    also encoded; one pack and one dict lookup per entry replace decoding its match (an entry's
    flags, counters and durations are not part of a flow's identity, as in `parse_flow_stats`)."""
    offset, end = 0, len(body)
    mv = memoryview(body)
    rest, get, hit = _FLOW_MOD_REST.pack, known.get, hits.append
    while offset + _FLOW_STATS.size <= end:
        (length, table, dsec, _dnsec, priority, idle, hard, _flags, cookie, packets,
         _bytes) = _FLOW_STATS.unpack_from(body, offset)
        if length < _FLOW_STATS.size:
            raise ValueError(f"bad ofp_flow_stats length {length} at {offset}")
        moff = offset + _FLOW_STATS.size
        value = get(rest(cookie, 0, table, OFPFC_ADD, idle, hard, priority, OFP_NO_BUFFER, OFPP_ANY, OFPG_ANY, 0)
                    + mv[moff:offset + length]) if known else None
        if value is not None:
            hit(value)
        else:
            _mtype, mlen = _MATCH_HDR.unpack_from(body, moff)
            match = parse_oxms(body, moff + 4, moff + mlen)
            ioff = moff + mlen + ((-mlen) % 8)
            instr = bytes(mv[ioff:offset + length])
            decoded.append(InstalledFlow((table, priority, match), (cookie, idle, hard, instr), dsec, packets))
        offset += length


@dataclass(frozen=True, slots=True)
class ErrorMsg:
    xid: int
    type: int
    code: int
    data: bytes

    def describe(self) -> str:
        try:
            tname = ofp.ofp_error_type_to_str(self.type)
            cname = ofp.ofp_error_code_to_str(self.type, self.code)
        except (KeyError, AttributeError):
            tname, cname = str(self.type), str(self.code)
        return f"{tname}/{cname}"


def parse_error(buf: bytes) -> ErrorMsg:
    _v, _t, length, xid = _HEADER.unpack_from(buf, 0)
    etype, code = struct.unpack_from("!HH", buf, 8)
    return ErrorMsg(xid, etype, code, bytes(buf[12:length]))


def iter_messages(buf: bytes) -> Iterator[tuple[int, int, bytes]]:
    """Split a byte stream of OpenFlow messages → (type, xid, message bytes). For tests/fakes."""
    offset = 0
    while offset + 8 <= len(buf):
        _v, mtype, length, xid = _HEADER.unpack_from(buf, offset)
        yield mtype, xid, buf[offset:offset + length]
        offset += length


def unwrap_bundle_add(msg: bytes) -> bytes:
    """The inner message of an ONF bundle-add (tests and error mapping)."""
    return msg[24:]


def flow_mods_in(buf: bytes) -> Iterable[tuple[int, bytes]]:
    """(command, flow-mod bytes) of every flow-mod in a stream, bundled or not (tests, inspection)."""
    for mtype, _xid, msg in iter_messages(buf):
        if mtype == OFPT_EXPERIMENTER:
            (exp_type,) = struct.unpack_from("!I", msg, 12)
            if exp_type != ONF_ET_BUNDLE_ADD_MESSAGE:
                continue
            msg = unwrap_bundle_add(msg)
            mtype = msg[1]
        if mtype == OFPT_FLOW_MOD:
            yield msg[25], msg


def parse_flow_mod(msg: bytes) -> tuple[int, tuple, tuple]:
    """A flow-mod's (command, key, body) — the inverse of Encoder.flow_mod (tests, bundle inspection)."""
    (_v, _t, length, _xid, cookie, _cmask, table, command, idle, hard, priority, _buf, _op, _og,
     _flags) = _FLOW_MOD.unpack_from(msg, 0)
    moff = _FLOW_MOD.size
    _mtype, mlen = _MATCH_HDR.unpack_from(msg, moff)
    match = parse_oxms(msg, moff + 4, moff + mlen)
    ioff = moff + mlen + ((-mlen) % 8)
    return command, (table, priority, match), (cookie, idle, hard, bytes(msg[ioff:length]))


# ------------------------------------------------------------------ packet-in / packet-out

def packet_out(xid: int, ofport: int, data: bytes, in_port: int = OFPP_CONTROLLER) -> bytes:
    """OFPT_PACKET_OUT (OF1.3) with one output action, no buffer."""
    action = struct.pack("!HHIH6x", 0, 16, ofport, 0)
    head = struct.pack("!BBHIIIH6x", 4, 13, 24 + len(action) + len(data), xid, OFP_NO_BUFFER, in_port,
                       len(action))
    return head + action + data


def decode_packet_in2(msg) -> tuple[int, int, tuple, bytes, bytes]:
    """os-ken NXTPacketIn2 → (table, cookie, match items, data, userdata)."""
    meta = msg.metadata or b""
    match = parse_oxms(bytes(meta), 0, len(meta)) if meta else ()
    return (msg.table_id or 0, msg.cookie or 0, match, bytes(msg.data or b""), bytes(msg.userdata or b""))


def decode_packet_in(msg) -> tuple[int, int, tuple, bytes, bytes]:
    """os-ken OFPPacketIn (no userdata: plain output:CONTROLLER punts) → same tuple."""
    items = []
    for name, value in msg.match.items():
        if isinstance(value, tuple):
            value, mask = value
        else:
            mask = None
        if isinstance(value, int):
            items.append((name, value, mask))
    return (msg.table_id, msg.cookie, tuple(sorted(items)), bytes(msg.data or b""), b"")


# ------------------------------------------------------------------ roles (OpenFlow 1.3 §7.3.9)

OFPT_ROLE_REQUEST = 24
OFPT_ROLE_REPLY = 25
OFPCR_ROLE_NOCHANGE, OFPCR_ROLE_EQUAL, OFPCR_ROLE_MASTER, OFPCR_ROLE_SLAVE = 0, 1, 2, 3
OFPET_ROLE_REQUEST_FAILED = 11
OFPRRFC_STALE = 0
_ROLE = struct.Struct("!BBHII4xQ")  # header + role + pad + generation_id


def role_request(xid: int, role: int, generation: int) -> bytes:
    """OFPT_ROLE_REQUEST: the switch refuses MASTER/SLAVE with a generation older than the
    newest it has seen (OFPRRFC_STALE), which is what fences a stale master."""
    return _ROLE.pack(OFP_VERSION, OFPT_ROLE_REQUEST, _ROLE.size, xid, role,
                      generation & 0xFFFFFFFFFFFFFFFF)


def parse_role(buf: bytes) -> tuple[int, int, int]:
    """ROLE_REQUEST or ROLE_REPLY bytes → (xid, role, generation_id)."""
    _v, _t, _len, xid, role, generation = _ROLE.unpack_from(buf, 0)
    return xid, role, generation


# ------------------------------------------------------------------ meters (OpenFlow 1.3 §7.3.4.4)

OFPT_METER_MOD = 29
OFPMC_ADD, OFPMC_MODIFY, OFPMC_DELETE = 0, 1, 2
OFPMP_METER_CONFIG = 10
OFPM_ALL = 0xFFFFFFFF
OFPMBT_DROP = 1
OFPMF_STATS = 8
_METER_MOD = struct.Struct("!BBHIHHI")        # header + command, flags, meter_id
_METER_BAND_DROP = struct.Struct("!HHII4x")   # type, len, rate, burst_size
_MP_REQ_METER = struct.Struct("!BBHIHH4xI4x")  # multipart header + ofp_meter_multipart_request
_METER_CONFIG = struct.Struct("!HHI")         # ofp_meter_config: length, flags, meter_id

MeterBand = tuple[int, int, int]  # (flags, rate, burst): one drop band (flows.qos.MeterUse.band)


def meter_mod(xid: int, command: int, meter_id: int, band: MeterBand | None = None) -> bytes:
    """OFPT_METER_MOD with one drop band (none for a delete)."""
    flags, bands = 0, b""
    if band is not None:
        flags, rate, burst = band
        bands = _METER_BAND_DROP.pack(OFPMBT_DROP, _METER_BAND_DROP.size, rate, burst)
    return _METER_MOD.pack(OFP_VERSION, OFPT_METER_MOD, _METER_MOD.size + len(bands), xid, command, flags,
                           meter_id) + bands


def meter_config_request(xid: int, meter_id: int = OFPM_ALL) -> bytes:
    return _MP_REQ_METER.pack(OFP_VERSION, OFPT_MULTIPART_REQUEST, _MP_REQ_METER.size, xid,
                              OFPMP_METER_CONFIG, 0, meter_id)


def parse_meter_config(body: bytes) -> dict[int, MeterBand | None]:
    """OFPMP_METER_CONFIG reply body → {meter_id: (flags, rate, burst) of its one drop band, or
    None when the meter is anything else (several bands, another band type): then it differs
    from every band we declare and is rewritten."""
    out: dict[int, MeterBand | None] = {}
    offset, end = 0, len(body)
    while offset + _METER_CONFIG.size <= end:
        length, flags, mid = _METER_CONFIG.unpack_from(body, offset)
        if length < _METER_CONFIG.size:
            raise ValueError(f"bad ofp_meter_config length {length} at {offset}")
        bands: list[tuple[int, int] | None] = []
        boff = offset + 8
        while boff + 4 <= offset + length:
            btype, blen = struct.unpack_from("!HH", body, boff)
            if blen < 4:
                break
            if btype == OFPMBT_DROP and blen >= 12:
                rate, burst = struct.unpack_from("!II", body, boff + 4)
                bands.append((rate, burst))
            else:
                bands.append(None)
            boff += blen
        flags &= ~OFPMF_STATS
        one = bands[0] if len(bands) == 1 else None
        out[mid] = (flags, one[0], one[1]) if one is not None else None
        offset += length
    return out


def meter_mods_in(buf: bytes) -> list[tuple[int, int, MeterBand | None]]:
    """(command, meter id, band or None) of every meter-mod in a stream (tests, inspection)."""
    out = []
    for mtype, _xid, msg in iter_messages(buf):
        if mtype != OFPT_METER_MOD:
            continue
        _v, _t, length, _x, command, flags, mid = _METER_MOD.unpack_from(msg, 0)
        band = None
        if length >= _METER_MOD.size + _METER_BAND_DROP.size:
            _bt, _bl, rate, burst = _METER_BAND_DROP.unpack_from(msg, _METER_MOD.size)
            band = (flags, rate, burst)
        out.append((command, mid, band))
    return out


def meter_config_body(meters: dict[int, MeterBand]) -> bytes:
    """Encode an OFPMP_METER_CONFIG reply body (the fake switch's answer; inverse of parse)."""
    out = b""
    for mid, (flags, rate, burst) in sorted(meters.items()):
        band = _METER_BAND_DROP.pack(OFPMBT_DROP, _METER_BAND_DROP.size, rate, burst)
        out += _METER_CONFIG.pack(8 + len(band), flags, mid) + band
    return out
