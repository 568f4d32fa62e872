"""The one in-switch ARP responder action list (OVN ls_in_arp_rsp, Neutron's arp_responder).

Why in the switch: an answer the datapath writes itself costs no packet-in, no controller
round trip and no punt meter, so it scales with the datapath, not with the controller. Used by
flows/services.py (port/VIP/floating addresses), flows/nat.py (uplink FIP/gateway addresses)
and flows/metadata.py (169.254.169.254).
"""
from __future__ import annotations

import functools

from flows.flow import Move, Output, SetField

OFPP_IN_PORT = 0xFFFFFFF8
ARP_REPLY = 2

# The parts of every reply that do not depend on the address: one object each, shared by every
# responder flow (fewer long-lived objects for the GC to walk; actions are immutable values).
_ETH_DST_FROM_SRC = Move("eth_src", "eth_dst", 48)
_OP_REPLY = SetField("arp_op", ARP_REPLY)
_THA_FROM_SHA = Move("arp_sha", "arp_tha", 48)
_TPA_FROM_SPA = Move("arp_spa", "arp_tpa", 32)
_BACK_OUT = Output(OFPP_IN_PORT)


@functools.lru_cache(maxsize=1 << 16)
def reply_actions(ip: int, mac: int) -> tuple:
    """Turn an ARP request for `ip` into the reply `ip is-at mac`, back out of the asking port.

    eth_dst := eth_src, eth_src := mac, op := reply, tha := sha, sha := mac, tpa := spa,
    spa := ip. Cached (immutable actions): a network's flows are recompiled on every port
    change, and its addresses' answers rarely change."""
    return (_ETH_DST_FROM_SRC, SetField("eth_src", mac), _OP_REPLY, _THA_FROM_SHA, _TPA_FROM_SPA,
            SetField("arp_sha", mac), SetField("arp_spa", ip), _BACK_OUT)


def mac_int(text: str) -> int:
    """'fa:16:3e:00:00:01' → int; ValueError for anything that is not a 48-bit MAC."""
    digits = text.replace(":", "").replace("-", "")
    if len(digits) != 12:
        raise ValueError(f"not a MAC: {text!r}")
    return int(digits, 16)
