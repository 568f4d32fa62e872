"""Flow values stay canonical on the fast paths (the reconciler diffs on them)."""
from __future__ import annotations

from collections import namedtuple

import pytest

from flows import services
from flows.arp_responder import reply_actions
from flows.flow import GotoTable, flow, make_match
from flows.tables import Owner, R, T, cookie


def test_make_match_is_order_and_spelling_independent():
    a = make_match(reg6=3, ipv4_dst=(0x0A000001, 0xFFFFFFFF), eth_type=0x800)
    b = make_match(eth_type=0x800, ipv4_dst=0x0A000001, reg6=3)
    assert a == b and hash(a) == hash(b)
    assert make_match(ipv4_src=(0x0A0000FF, 0xFFFFFF00)) == (("ipv4_src", 0x0A000000, 0xFFFFFF00),)
    Pair = namedtuple("Pair", "value mask")
    assert make_match(ipv4_src=Pair(0x0A0000FF, 0xFFFFFF00)) == make_match(ipv4_src=(0x0A000000, 0xFFFFFF00))
    with pytest.raises(ValueError):
        make_match(nonsense=1)
    with pytest.raises(ValueError):
        make_match(nonsense=(1, 1))
    assert flow(T.OUTPUT, 1, 0).match == () == flow(T.OUTPUT, 1, 0, match={}).match


def test_arp_flows_equal_the_generic_constructor():
    ni = services.NetworkIndex({"_key": 7, "provider:network_type": "vxlan"},
                               known={0x0A000005: services.Answer("fa:16:3e:00:00:05", "p", 5),
                                      0x0A000003: services.Answer("fa:16:3e:00:00:03", "q", 3)},
                               shared={0x0A000009}, cidrs={(0x0A000100, 0xFFFFFF00)})
    ck = cookie(Owner.NETWORK, 7)
    base = {R.NETWORK: 7, "eth_type": 0x0806, "arp_op": 1}
    want = [flow(T.SERVICE, services.PRIO_ARP_KNOWN, ck, reply_actions(0x0A000003, 0xFA163E000003),
                 match={**base, "arp_tpa": 0x0A000003}),
            flow(T.SERVICE, services.PRIO_ARP_KNOWN, ck, reply_actions(0x0A000005, 0xFA163E000005),
                 match={**base, "arp_tpa": 0x0A000005}),
            flow(T.SERVICE, services.PRIO_ARP_OWN, ck, [], match={**base, "arp_tpa": 0x0A000005, R.IN_PORT: 5})]
    want += [flow(T.SERVICE, services.PRIO_ARP_SHARED, ck, [GotoTable(T.EGRESS_CT)],
                  match={**base, "arp_tpa": 0x0A000009})]
    want += [flow(T.SERVICE, services.PRIO_ARP_CIDR, ck, [GotoTable(T.EGRESS_CT)],
                  match={**base, "arp_tpa": (0x0A000100, 0xFFFFFF00)})]
    want += [flow(T.SERVICE, services.PRIO_ARP_DROP, ck, [], match=base)]
    assert services.arp_flows(ni, local_ports={"p": 1}) == want  # only p is local: q's probe flow is elsewhere


def test_zero_mask_is_no_match_at_all():
    """OVS stores nw_dst=0.0.0.0/0 as no field; a Flow that kept it would never equal what the
    switch reports and `tenantflow flows --diff` would show it missing and extra forever."""
    from flows.flow import make_match
    assert make_match(eth_type=0x800, ipv4_dst=(0, 0)) == make_match(eth_type=0x800)
