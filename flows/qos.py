"""QoS compiler: a port's bandwidth limits (OpenFlow 1.3 meters) and DSCP marking, plus the
meters of the controller punts (flows/services.py).

How a meter is declared: by the flows that use it. `MeterUse` is a `Meter` instruction that
carries its band (kbps or pktps, rate, burst), so an owner's flow set *is* its meter set too:
the reconciler (controller/reconciler.py `MeterTable`) collects the bands from the flows it is
given and diffs them against the switch's meter table exactly as it diffs flows. A meter thus
never exists without a flow of its owner using it, and check mode (a fresh compile compared
with the incremental one) covers meter bands because they are part of Flow equality. The wire
encoding is the plain OFPIT_METER instruction, so the flow body OVS echoes back is unchanged.

Meter ids are a pure function of the owner's key (stable across restarts, nothing allocated):
  purpose * 65536 + key, keys being 1..65535 (topology.store.writetx.KeyPool), purposes
  0 DHCP punt (port key), 1 QoS egress (port), 2 QoS ingress (port), 3 reserved (network key: the
  ARP punt meters of controllers before ARP was answered in the switch, still attributed so they go);
the largest id, 262143, stays within OVS's userspace max_meter (262144, `ovs-ofctl meter-features`).

Directions as Neutron's: egress = from the VM (metered and DSCP-marked where it enters the
pipeline, table CLASSIFY); ingress = to the VM (metered right before its output, table OUTPUT).
The QoS flows shadow L2's own classify/output flows of the port (same match plus, for DSCP, the
ethertype; a higher priority), built from flows.l2's result so they exist exactly when L2's do.
A network's qos_policy_id applies to its compute ports (device_owner not `network:*`); a port's
own qos_policy_id wins.
"""
from __future__ import annotations

from dataclasses import dataclass

from flows import l2
from flows.flow import Controller, Flow, FlowError, Meter, Output, SetField, U32
from flows.tables import METER_KEY_SPAN, MeterPurpose, T
from flows.view_helpers import is_vm_port
from topology.store import Record
from topology.view import View

QOS_POLICY = "qos_policy"  # store kind (topology.store.QOS_POLICY)

KEY_SPAN = METER_KEY_SPAN
PURPOSE_DHCP_PUNT, PURPOSE_EGRESS, PURPOSE_INGRESS, PURPOSE_ARP_PUNT = (
    MeterPurpose.DHCP_PUNT, MeterPurpose.EGRESS, MeterPurpose.INGRESS, MeterPurpose.ARP_PUNT)

OFPMF_KBPS, OFPMF_PKTPS, OFPMF_BURST = 1, 2, 4
DEFAULT_BURST_RATE = 0.8  # Neutron's qos_consts.DEFAULT_BURST_RATE: burst = 80% of max_kbps when 0

# Punt meters (docs/services.md measured them): per port for DHCP, in packets/s with a burst,
# above the app's own token bucket so that still decides who is answered. (ARP no longer punts.)
PUNT_DHCP_RATE, PUNT_DHCP_BURST = 100, 200

P_DSCP = 110      # CLASSIFY: in_port + ethertype → mark (and meter), above l2.CLASSIFY_PRIORITY
P_EGRESS = 105    # CLASSIFY: in_port → meter
P_INGRESS = 110   # OUTPUT: reg7 → meter, output; above l2.OUTPUT_PRIORITY
ETH_IP, ETH_IPV6 = 0x0800, 0x86DD


@dataclass(frozen=True, slots=True)
class MeterUse(Meter):
    """The meter instruction of a flow, with the one drop band the meter must have."""
    flags: int = OFPMF_KBPS | OFPMF_BURST
    rate: int = 0
    burst: int = 0

    def __post_init__(self) -> None:
        Meter.__post_init__(self)
        if self.flags not in (OFPMF_KBPS | OFPMF_BURST, OFPMF_PKTPS | OFPMF_BURST):
            raise FlowError(f"meter {self.meter_id}: flags {self.flags:#x} must be kbps|burst or pktps|burst")
        for what, v in (("rate", self.rate), ("burst", self.burst)):
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= U32:
                raise FlowError(f"meter {self.meter_id}: {what}={v!r} must be an int in 1..{U32:#x}")

    @property
    def band(self) -> tuple[int, int, int]:
        """(flags, rate, burst): what the switch's meter config must equal."""
        return (self.flags, self.rate, self.burst)


@dataclass(frozen=True, slots=True)
class MeteredController(Controller):
    """A controller punt through its own meter (NXAC2PT_METER_ID: only the punt is limited, as
    docs/services.md measured), carrying the meter's band like MeterUse."""
    flags: int = OFPMF_PKTPS | OFPMF_BURST
    rate: int = 0
    burst: int = 0

    def __post_init__(self) -> None:
        Controller.__post_init__(self)
        if not self.meter_id:
            raise FlowError("a metered punt needs a meter id")
        MeterUse.__post_init__(self)  # type: ignore[arg-type]  # same band checks

    @property
    def band(self) -> tuple[int, int, int]:
        return (self.flags, self.rate, self.burst)


METER_TYPES = (MeterUse, MeteredController)  # what the reconciler collects meters from


@dataclass(frozen=True, slots=True)
class PuntMeters:
    """The punt meters' bands, from the controller's settings (topology.model.settings.PuntLimits,
    `tenantflow serve --punt-meters/--dhcp-rate`): a value, so flows/ stays pure."""
    enabled: bool = True
    dhcp_rate: int = PUNT_DHCP_RATE
    dhcp_burst: int = PUNT_DHCP_BURST

    def dhcp(self, port_key: int, userdata: bytes = b"") -> MeteredController | None:
        """The per-port DHCP punt meter, or None when punt meters are off (`userdata`: see
        dhcp_punt_meter)."""
        return dhcp_punt_meter(port_key, self, userdata) if self.enabled else None


def _lifted(default: int, app_rate: float | None) -> int:
    """Punt meters sit above the apps' token buckets; lifting those (benchmarks and fuzz tests
    raise --dhcp-rate) lifts the meter with them (4× the app's rate, never below ours)."""
    return int(min(U32 // 2, max(default, 4 * (app_rate or 0.0))))


def punt_meters(enabled: bool = True, dhcp_rate: float | None = None) -> PuntMeters:
    """PuntMeters for the DHCP app's configured answer rate (None: the app's default)."""
    dhcp = _lifted(PUNT_DHCP_RATE, dhcp_rate)
    return PuntMeters(enabled, dhcp, 2 * dhcp)


DEFAULT_PUNT_METERS = PuntMeters()


def punt(userdata: bytes, meter_id: int, meter: MeteredController | None) -> Controller:
    """The punt action of flows/services.py: an explicit `meter_id` (a meter managed elsewhere)
    wins; else the per-port punt meter (None: punt meters are off)."""
    if meter_id or meter is None:
        return Controller(userdata=userdata, meter_id=meter_id)
    if meter.userdata == userdata:  # made for this punt already (dhcp_punt_meter's userdata)
        return meter
    return MeteredController(userdata=userdata, meter_id=meter.meter_id, flags=meter.flags, rate=meter.rate,
                             burst=meter.burst)


def meter_id(purpose: int, key: int) -> int:
    if not 1 <= key < KEY_SPAN:
        raise FlowError(f"meter key {key} out of 1..{KEY_SPAN - 1}")
    return int(purpose) * KEY_SPAN + key


def dhcp_punt_meter(port_key: int, bands: PuntMeters = DEFAULT_PUNT_METERS,
                    userdata: bytes = b"") -> MeteredController:
    """The port's DHCP punt meter; with `userdata`, already the punt action itself (punt() then
    returns it as is: one MeteredController per port instead of two)."""
    return MeteredController(userdata=userdata, meter_id=meter_id(PURPOSE_DHCP_PUNT, port_key),
                             rate=bands.dhcp_rate, burst=bands.dhcp_burst)


def kbps_meter(purpose: int, port_key: int, max_kbps: int, max_burst_kbps: int) -> MeterUse:
    burst = max_burst_kbps or max(1, int(max_kbps * DEFAULT_BURST_RATE))
    return MeterUse(meter_id(purpose, port_key), OFPMF_KBPS | OFPMF_BURST, max_kbps, burst)


# ------------------------------------------------------------------ which policy applies

def effective_policy(view: View, port: Record) -> Record | None:
    """The port's own policy, else its network's (compute ports only, as Neutron)."""
    pid = port.get("qos_policy_id")
    if not pid and is_vm_port(port):
        net = view.network(port.get("network_id"))
        pid = net.get("qos_policy_id") if net is not None else None
    return view.get(QOS_POLICY, pid) if pid else None


def rules_of(policy: Record | None) -> tuple[dict[str, dict], int | None]:
    """({direction: bandwidth rule}, dscp mark or None) of a policy record."""
    limits: dict[str, dict] = {}
    dscp = None
    for rule in (policy or {}).get("rules") or ():
        if rule.get("type") == "bandwidth_limit" and int(rule.get("max_kbps") or 0) > 0:  # 0: no limit
            limits[rule.get("direction", "egress")] = rule
        elif rule.get("type") == "dscp_marking":
            dscp = rule.get("dscp_mark")
    return limits, dscp


# ------------------------------------------------------------------ flows

def port_flows(view: View, ctx, port: Record) -> list[Flow]:
    """The QoS flows of a local port (empty without a policy with rules, or when L2 has none)."""
    limits, dscp = rules_of(effective_policy(view, port))
    if not limits and dscp is None:
        return []
    base = l2.port_flows(view, ctx, port)
    classify = next((f for f in base if f.table == T.CLASSIFY), None)
    output = next((f for f in base if f.table == T.OUTPUT and any(isinstance(a, Output) for a in f.actions)),
                  None)
    key = int(port["_key"])
    out: list[Flow] = []
    egress = limits.get("egress")
    if classify is not None:
        meter: tuple = ()
        if egress is not None:
            meter = (kbps_meter(PURPOSE_EGRESS, key, int(egress["max_kbps"]), int(egress.get("max_burst_kbps") or 0)),)
            out.append(Flow(T.CLASSIFY, P_EGRESS, classify.match, meter + classify.actions, classify.cookie))
        if dscp is not None:
            mark = (SetField("ip_dscp", int(dscp)),)
            for eth in (ETH_IP, ETH_IPV6):
                match = tuple(sorted(classify.match + (("eth_type", eth, None),)))
                out.append(Flow(T.CLASSIFY, P_DSCP, _checked(match), meter + mark + classify.actions,
                                classify.cookie))
    ingress = limits.get("ingress")
    if ingress is not None and output is not None:
        meter = (kbps_meter(PURPOSE_INGRESS, key, int(ingress["max_kbps"]), int(ingress.get("max_burst_kbps") or 0)),)
        out.append(Flow(T.OUTPUT, P_INGRESS, output.match, meter + output.actions, output.cookie))
    return out


def _checked(match: tuple):
    """A canonical match from sorted items (through make_match, which range-checks once)."""
    from flows.flow import make_match
    return make_match(**{name: (value if mask is None else (value, mask)) for name, value, mask in match})
