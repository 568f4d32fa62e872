"""The os-ken application: OpenFlow events → Core. Plumbing only; no decisions here.

Handlers run on the datapath's receive thread, so each one only decodes and hands over
(queues, events); all real work happens on the core's worker and the dispatcher's thread.
Flow-stats replies are kept as raw bytes (os-ken would build an object per flow — seconds for a
big table) and decoded by controller/wire.py.
"""
from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING, ClassVar

from os_ken.base import app_manager
from os_ken.controller import controller as osken_controller
from os_ken.controller import ofp_event
from os_ken.controller.handler import DEAD_DISPATCHER, MAIN_DISPATCHER, CONFIG_DISPATCHER, set_ev_cls
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from controller import wire
from controller.dispatch import RawPacketIn
from controller.wire import decode_packet_in, decode_packet_in2
from controller.ownership import SoloOwnership
from controller.registry import SwitchPort

if TYPE_CHECKING:
    from controller.core import Core
    from controller.dispatch import Dispatcher

LOG = logging.getLogger(__name__)
NXPIF_NXT_PACKET_IN2 = 2  # OVS packet-in format carrying controller() userdata; os-ken lacks the name


def _end_connections_when_the_switch_hangs_up() -> None:
    """Make a closed switch connection end promptly on os-ken's native hub.

    os-ken 4's Datapath.serve() ends with hub.kill() + joinall() of its send and echo threads.
    On the native hub kill() is a no-op, so joinall() waits forever for the send thread blocked
    on its empty queue: the connection never reaches DEAD_DISPATCHER and apps never learn the
    switch left (sends to it queue up and waits for its replies time out). After the receive
    loop ends we therefore mark the datapath dead at once (apps are told, the echo loop stops)
    and wake the send thread with an empty write on the closed socket, which ends it.
    Harmless under eventlet, where kill() works.
    """
    datapath_cls = osken_controller.Datapath
    if getattr(datapath_cls, "_tenantflow_hangup_fix", False):
        return
    receive_loop = datapath_cls._recv_loop

    @functools.wraps(receive_loop)
    def receive_then_release(self):
        try:
            receive_loop(self)
        finally:
            self.set_state(DEAD_DISPATCHER)
            self.send(b"")

    datapath_cls._recv_loop = receive_then_release
    datapath_cls._tenantflow_hangup_fix = True


_end_connections_when_the_switch_hangs_up()


def guarded(handler):
    """os-ken's native hub treats *any* exception in a handler as TaskExit and silently ends the
    app's event loop — so no handler may ever raise. Log with context instead."""
    @functools.wraps(handler)
    def wrapper(self, ev):
        try:
            handler(self, ev)
        except Exception:  # noqa: BLE001 — see docstring
            dp = getattr(getattr(ev, "msg", None), "datapath", None) or getattr(ev, "datapath", None)
            LOG.exception("%s failed for datapath %s", handler.__name__, getattr(dp, "id", None))
    return wrapper


class RawFlowStats:
    """Stands in for OFPFlowStats when os-ken parses an OFPMP_FLOW reply: one object holding the
    whole undecoded body (os-ken loops `parser(buf, offset)` and advances by `.length`)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.length = len(data)

    @classmethod
    def parser(cls, buf, offset):
        return cls(bytes(buf[offset:]))


# Keep OFPMP_FLOW reply bodies raw for wire.parse_flow_stats (see module docstring).
parser.OFPFlowStatsReply.cls_stats_body_cls = RawFlowStats


def switch_port(desc) -> SwitchPort:
    up = not (desc.state & ofp.OFPPS_LINK_DOWN) and not (desc.config & ofp.OFPPC_PORT_DOWN)
    name = desc.name.decode("utf-8", "replace") if isinstance(desc.name, bytes) else str(desc.name)
    return SwitchPort(name.rstrip("\0"), desc.port_no, up)


class TenantflowApp(app_manager.OSKenApp):
    OFP_VERSIONS = [ofp.OFP_VERSION]
    # Set by controller.serve before the app is instantiated.
    core: ClassVar[Core] = None  # type: ignore[assignment]
    dispatcher: ClassVar[Dispatcher] = None  # type: ignore[assignment]
    # HA (controller/ownership.py): roles per datapath; single-controller mode is master of all.
    ownership: ClassVar = SoloOwnership()
    packet_ins_as_slave: ClassVar[int] = 0  # packet-ins dropped because we are not master there

    @set_ev_cls(ofp_event.EventOFPSwitchFeatures, CONFIG_DISPATCHER)
    @guarded
    def _features(self, ev):
        dp = ev.msg.datapath
        # Whole packets to the controller (no switch buffering), and NXT_PACKET_IN2 so that
        # controller(userdata=…) reaches us.
        dp.send_msg(parser.OFPSetConfig(dp, ofp.OFPC_FRAG_NORMAL, 0xFFFF))
        dp.send_msg(parser.NXTSetPacketInFormatMsg(dp, NXPIF_NXT_PACKET_IN2))
        self.core.attach_datapath(dp, ev.msg.datapath_id)

    @set_ev_cls(ofp_event.EventOFPStateChange, [MAIN_DISPATCHER, DEAD_DISPATCHER])
    @guarded
    def _state(self, ev):
        dp = ev.datapath
        if dp.id is None:
            return
        if ev.state == MAIN_DISPATCHER:
            ports = [switch_port(p) for p in (dp.ports or {}).values()]
            LOG.info("datapath %016x connected from %s with %d ports", dp.id, dp.address, len(ports))
            self.core.datapath_connected(dp, dp.id, ports)
            self.ownership.datapath_connected(dp.id, dp.send)  # after: the core's connect comes first
        elif ev.state == DEAD_DISPATCHER:
            self.ownership.datapath_disconnected(dp.id, dp.send)
            self.core.datapath_disconnected(dp, dp.id)

    @set_ev_cls(ofp_event.EventOFPPortStatus, MAIN_DISPATCHER)
    @guarded
    def _port_status(self, ev):
        msg = ev.msg
        reason = {ofp.OFPPR_ADD: "add", ofp.OFPPR_DELETE: "delete"}.get(msg.reason, "modify")
        self.core.port_status(msg.datapath.id, reason, switch_port(msg.desc))

    @set_ev_cls(ofp_event.EventOFPErrorMsg, [CONFIG_DISPATCHER, MAIN_DISPATCHER])
    @guarded
    def _error(self, ev):
        msg = ev.msg
        if msg.datapath.id is None:
            LOG.error("error from a datapath in handshake: type %s code %s", msg.type, msg.code)
            return
        err = wire.parse_error(bytes(msg.buf))
        if self.ownership.on_role_error(msg.datapath.id, err):
            return
        self.core.on_error(msg.datapath.id, err)

    @set_ev_cls(ofp_event.EventOFPRoleReply, MAIN_DISPATCHER)
    @guarded
    def _role_reply(self, ev):
        msg = ev.msg
        xid, role, generation = wire.parse_role(bytes(msg.buf))
        if not self.ownership.on_role_reply(msg.datapath.id, xid, role, generation):
            LOG.debug("role reply xid %#x from %s: not asked for", xid, msg.datapath.id)

    @set_ev_cls(ofp_event.EventOFPBarrierReply, MAIN_DISPATCHER)
    @guarded
    def _barrier(self, ev):
        self.core.on_barrier(ev.msg.datapath.id, ev.msg.xid)

    @set_ev_cls(ofp_event.EventOFPFlowStatsReply, MAIN_DISPATCHER)
    @guarded
    def _flow_stats(self, ev):
        msg = ev.msg
        more = bool(msg.flags & ofp.OFPMPF_REPLY_MORE)
        body = b"".join(part.data for part in msg.body if isinstance(part, RawFlowStats))
        self.core.on_flow_stats(msg.datapath.id, msg.xid, body, more)

    @set_ev_cls(ofp_event.EventOFPMeterConfigStatsReply, MAIN_DISPATCHER)
    @guarded
    def _meter_config(self, ev):
        """OFPMP_METER_CONFIG reply: its raw body goes to the reconciler (wire.parse_meter_config)."""
        msg = ev.msg
        more = bool(msg.flags & ofp.OFPMPF_REPLY_MORE)
        self.core.on_flow_stats(msg.datapath.id, msg.xid, bytes(msg.buf)[16:], more)

    @set_ev_cls(ofp_event.EventOFPPacketIn, MAIN_DISPATCHER)
    @guarded
    def _packet_in(self, ev):
        self._submit(ev.msg, decode_packet_in)

    @set_ev_cls(ofp_event.EventNXTPacketIn2, MAIN_DISPATCHER)
    @guarded
    def _packet_in2(self, ev):
        self._submit(ev.msg, decode_packet_in2)

    def _submit(self, msg, decode) -> None:
        if not self.ownership.is_master(msg.datapath.id):
            # HA: only the master answers. A slave gets none from OVS; this covers the moment
            # between a role change and the switch hearing of it.
            type(self).packet_ins_as_slave += 1
            return
        try:
            table, cookie, match, data, userdata = decode(msg)
        except (ValueError, TypeError, AttributeError, IndexError, KeyError) as exc:
            LOG.warning("undecodable packet-in from %s: %s", msg.datapath.id, exc)
            return
        self.dispatcher.submit(RawPacketIn(msg.datapath.id, msg.datapath, table, cookie, match, data, userdata))
