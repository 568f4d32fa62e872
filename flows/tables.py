"""The pipeline, declared once: table numbers, registers, cookie layout.

Faucet's idea: the pipeline is data. Each table says what it is for and which tables it may
jump to; `check_flow` enforces that at compile time, so a compiler bug is an exception in a
unit test rather than a black hole on the switch. docs/pipeline.md documents the same map.

Packet path (ingress from a VM, routed on the sending chassis like OVN/Dragonflow):

  CLASSIFY → PORT_SEC → SERVICE → EGRESS_CT → EGRESS_SG → L3_* → L2_LOOKUP
           → INGRESS_CT → INGRESS_SG → OUTPUT (local port, tunnel or uplink)

Packets arriving on a tunnel or an uplink enter at L2_LOOKUP with the network already known.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from topology.model.schema import RESOURCES


class T(IntEnum):
    """Table numbers. Gaps leave room for stages without renumbering."""
    CLASSIFY = 0        # in_port (+tun_id / vlan) → reg IN_PORT, metadata = network key
    PORT_SEC = 10       # anti-spoofing: src MAC/IP/ARP of the sending port
    SERVICE = 15        # punts: DHCP client requests, ARP requests for known addresses, RS, DHCPv6
    EGRESS_CT = 20      # from-VM traffic through conntrack (zone of the sending port)
    EGRESS_SG = 21      # security-group egress rules of the sending port
    L3_GATEWAY = 30     # eth_dst is a router port MAC → route; else L2
    L3_ROUTE = 31       # longest-prefix match of ipv4_dst → next hop, out router port
    L3_NEIGHBOR = 32    # next hop → MAC; rewrite eth, dec_ttl, enter the next network
    L3_EXT_NEIGHBOR = 33  # (routing) next hops on external networks, learned from ARP on the uplink
    NAT_IN = 35         # floating-IP DNAT / SNAT reverse on the external side
    NAT_OUT = 36        # floating-IP SNAT / router SNAT towards the external network
    EXT_OUTPUT = 37     # (routing) out of the external network's uplink; unresolved next hop → ARP
    L2_LOOKUP = 40      # metadata + eth_dst → reg OUT_PORT; unknown/bcast → flood
    L2_FLOOD = 41       # per-network replication list (local ports, tunnels, uplink)
    L2_LEARN = 42       # MACs learned in the datapath (provider networks)
    INGRESS_CT = 50     # to-VM traffic through conntrack (zone of the receiving port)
    INGRESS_SG = 51     # security-group ingress rules of the receiving port
    OUTPUT = 60         # reg OUT_PORT → local ofport / tunnel to its chassis / uplink
    DROP = 99           # explicit, countable drops (debug aid)


@dataclass(frozen=True, slots=True)
class TableSpec:
    table: T
    purpose: str
    next_tables: frozenset  # tables a flow here may goto/resubmit/ct(table=) into
    miss: str  # "drop" | "next:<table>" — documented default; compilers emit it explicitly


def _spec(t: T, purpose: str, nxt: tuple, miss: str = "drop") -> TableSpec:
    return TableSpec(t, purpose, frozenset(nxt), miss)


PIPELINE: dict[T, TableSpec] = {s.table: s for s in [
    _spec(T.CLASSIFY, "identify port/network of an incoming packet",
          (T.PORT_SEC, T.L2_LOOKUP, T.NAT_IN, T.L3_GATEWAY)),
    _spec(T.PORT_SEC, "port security: allowed source MAC/IP/ARP", (T.SERVICE, T.DROP)),
    _spec(T.SERVICE, "controller punts for ARP/DHCP", (T.EGRESS_CT,), "next:EGRESS_CT"),
    _spec(T.EGRESS_CT, "conntrack for traffic a port sends", (T.EGRESS_SG,)),
    _spec(T.EGRESS_SG, "security-group egress rules", (T.L3_GATEWAY, T.EGRESS_SG)),
    _spec(T.L3_GATEWAY, "routed or switched?", (T.L3_ROUTE, T.L2_LOOKUP), "next:L2_LOOKUP"),
    _spec(T.L3_ROUTE, "router LPM", (T.L3_NEIGHBOR, T.NAT_OUT)),
    _spec(T.L3_NEIGHBOR, "next-hop MAC and network", (T.L2_LOOKUP, T.NAT_OUT)),
    _spec(T.NAT_IN, "DNAT / un-SNAT from the external network", (T.L3_ROUTE, T.L2_LOOKUP, T.NAT_IN)),
    _spec(T.NAT_OUT, "SNAT towards the external network",
          (T.L2_LOOKUP, T.NAT_OUT, T.L3_EXT_NEIGHBOR, T.EXT_OUTPUT)),  # last two added by routing
    # Added by routing (flows/nat.py). L3_EXT_NEIGHBOR holds only `learn`ed entries (cookie kind
    # LEARNED) loading eth_dst; it is entered by resubmit and a miss leaves eth_dst unchanged.
    _spec(T.L3_EXT_NEIGHBOR, "learned external next hops (resubmit only)", ()),
    _spec(T.EXT_OUTPUT, "external network: uplink output, or ARP punt", ()),
    _spec(T.L2_LOOKUP, "destination MAC → port", (T.INGRESS_CT, T.L2_FLOOD, T.L2_LEARN, T.OUTPUT)),
    _spec(T.L2_FLOOD, "broadcast replication", (T.INGRESS_CT, T.OUTPUT, T.L2_FLOOD)),
    # Entered by resubmit from L2_LOOKUP (provider networks): a learned hit loads
    # R.OUT_PORT = UPLINK_PORT_KEY; a miss does nothing and the resubmitting flow then floods.
    _spec(T.L2_LEARN, "learned outside MACs", (T.OUTPUT, T.L2_FLOOD), "drop"),
    _spec(T.INGRESS_CT, "conntrack for traffic a port receives", (T.INGRESS_SG,)),
    _spec(T.INGRESS_SG, "security-group ingress rules", (T.OUTPUT, T.INGRESS_SG)),
    _spec(T.OUTPUT, "deliver: local ofport, tunnel, uplink", ()),
    _spec(T.DROP, "explicit drops", ()),
]}


class R:
    """Registers (NXM_NX_REGn). One meaning each, for the packet's whole life in the pipeline."""
    FLAGS = "reg0"      # bit flags, see F
    NEXTHOP = "reg1"    # L3: next-hop IPv4 address
    ROUTER = "reg2"     # L3: key of the router routing this packet
    IN_PORT = "reg6"    # logical ingress port key (0 = tunnel/uplink)
    OUT_PORT = "reg7"   # logical egress port key
    NETWORK = "metadata"  # logical network key (write_metadata)


# R.OUT_PORT value meaning "out of the network's uplink" (provider networks). Port keys come
# from small bounded pools, so this never collides with a real port key.
UPLINK_PORT_KEY = 0xFFFF_FFFE


class F:
    """Bits of R.FLAGS."""
    FROM_TUNNEL = 1 << 0
    FROM_UPLINK = 1 << 1
    ROUTED = 1 << 2
    NO_SECURITY = 1 << 3  # port_security disabled on the port being evaluated
    PKT_LARGER = 1 << 8   # (router ICMP) check_pkt_larger: frame exceeds the egress network's MTU


class Owner(IntEnum):
    """Cookie high byte: what kind of object owns a flow."""
    PIPELINE = 1   # chassis-wide base flows (table misses, defaults)
    NETWORK = 2
    PORT = 3
    ROUTER = 4
    SECGROUP = 5
    FLOATINGIP = 6
    CHASSIS = 7    # tunnels to other chassis
    LEARNED = 8    # flows created by the datapath `learn` action (never reconciled)


class MeterPurpose(IntEnum):
    """Meter ids (OpenFlow 1.3 meter table) = purpose * METER_KEY_SPAN + the owner's key (keys are
    1..65535): stable across restarts, nothing allocated (flows/qos.py, docs/pipeline.md Meters)."""
    DHCP_PUNT = 0   # port key: its DHCP punt (flows/services.py)
    EGRESS = 1      # port key: QoS limit of what the VM sends (CLASSIFY)
    INGRESS = 2     # port key: QoS limit of what the VM receives (OUTPUT)
    ARP_PUNT = 3    # reserved: was a network's ARP punt meter (ARP is answered in the switch now)


METER_KEY_SPAN = 1 << 16
MAX_METER_ID = 4 * METER_KEY_SPAN - 1  # within OVS userspace max_meter (262144)


OWNER_SHIFT = 56
KEY_MASK = (1 << OWNER_SHIFT) - 1


def cookie(kind: Owner, key: int) -> int:
    """Owner cookie: `ovs-ofctl dump-flows br-int cookie=<this>/-1` shows one object's flows."""
    return (int(kind) << OWNER_SHIFT) | (key & KEY_MASK)


# Owner by its value: every app splits the owner cookie of every compile (≈ 12 × owners per
# full compile), and a dict lookup is ~10× cheaper than calling the enum (Owner(v)).
_OWNER_OF: dict[int, Owner] = {int(o): o for o in Owner}


def cookie_owner(value: int) -> tuple[Owner, int]:
    kind = _OWNER_OF.get(value >> OWNER_SHIFT)
    if kind is None:
        raise ValueError(f"{value >> OWNER_SHIFT} is not a valid Owner")
    return kind, value & KEY_MASK


def split_cookie(value: int) -> tuple[Owner | None, int]:
    """(Owner kind, or None for a kind this build does not know, key) — never raises."""
    return _OWNER_OF.get(value >> OWNER_SHIFT), value & KEY_MASK


def owner_label(value: int) -> str:
    """'port:12' — how logs, errors and stats name an owner cookie."""
    kind, key = split_cookie(value)
    return f"{kind.name.lower() if kind is not None else f'kind{value >> OWNER_SHIFT}'}:{key}"


# The store kind whose record (looked up by its `_key`) owns a cookie of this Owner kind: from the
# one resource table (topology.model.schema, each kind's `owner`).
STORE_KIND: dict[Owner, str] = {Owner[r.owner]: r.kind for r in RESOURCES if r.owner is not None}


class PipelineError(ValueError):
    pass


def check_flow(f) -> None:
    """Raise PipelineError if `f` jumps to a table its own table does not declare."""
    from flows.flow import CT, GotoTable, Resubmit  # local: avoid import cycle
    spec = PIPELINE.get(T(f.table)) if f.table in T._value2member_map_ else None
    if spec is None:
        raise PipelineError(f"flow in undeclared table {f.table}: {f.ofctl()}")
    for a in f.actions:
        target = None
        if isinstance(a, (GotoTable, Resubmit)):
            target = a.table
        elif isinstance(a, CT) and a.table is not None:
            target = a.table
        if target is not None and target not in spec.next_tables:
            raise PipelineError(f"table {spec.table.name} may not jump to {target}: {f.ofctl()}")
