"""Malformed input never raises: thousands of truncated, mutated and random ARP/DHCP frames."""
from __future__ import annotations

import random

from hypothesis import given, settings, strategies as st

from apps.arp import ArpApp
from apps.dhcp import DhcpApp
from apps.packets import parse_dhcp, parse_dhcp_options
from tests.unit.test_services_fixture import (DHCP_IP, VM1_IP, arp_request, dhcp_frame, make_ctx,
                                              make_view, packet_in)

VIEW = make_view()
CTX = make_ctx()
SEEDS = [arp_request("10.0.0.11"),
         dhcp_frame("discover"),
         dhcp_frame("request", extra=[("requested_addr", VM1_IP), ("server_id", DHCP_IP)]),
         dhcp_frame("inform", ciaddr=VM1_IP)]


def run_both(data: bytes, regs_port: str = "vm1") -> None:
    """Both apps must return a list of PacketOuts, never raise, whatever the bytes."""
    for app in (ArpApp(rate=1e9, burst=1e9), DhcpApp(rate=1e9, burst=1e9)):
        out = app.packet_in(VIEW, CTX, packet_in(data, port=regs_port))
        assert isinstance(out, list)
        assert app.stats["error"] == 0, "handled by the catch-all, not by validation"


def mutations(rng: random.Random, seed: bytes, n: int):
    for _ in range(n):
        data = bytearray(seed)
        kind = rng.randrange(4)
        if kind == 0:  # truncate
            yield bytes(data[:rng.randrange(len(data))])
        elif kind == 1:  # flip bytes
            for _ in range(rng.randrange(1, 8)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            yield bytes(data)
        elif kind == 2:  # oversize / trailing garbage
            yield bytes(data) + bytes(rng.randrange(256) for _ in range(rng.randrange(1, 2000)))
        else:  # garbage of a plausible length
            yield bytes(rng.randrange(256) for _ in range(rng.randrange(0, 600)))


def test_thousands_of_mutated_frames_never_raise():
    rng = random.Random(5)
    count = 0
    for seed in SEEDS:
        for data in mutations(rng, seed, 1500):
            run_both(data)
            count += 1
    assert count == 6000


def test_each_header_byte_of_dhcp_mutated():
    seed = SEEDS[1]
    for i in range(len(seed)):
        for value in (0x00, 0xFF, 0x80):
            data = bytearray(seed)
            data[i] = value
            run_both(bytes(data))


def test_huge_frame_dropped_unread():
    app = DhcpApp()
    assert app.packet_in(VIEW, CTX, packet_in(SEEDS[1] + b"\x00" * 70000)) == []
    assert app.stats["malformed"] == 1


def test_option_walk_is_bounded_and_strict():
    magic = b"\x63\x82\x53\x63"
    assert parse_dhcp_options(magic + b"\x00" * 50 + b"\x35\x01\x01\xff") == {53: b"\x01"}  # PADs first
    assert parse_dhcp_options(magic + b"\x35\x05\x01") is None  # truncated option
    assert parse_dhcp_options(magic + b"\x35") is None  # tag without length
    assert parse_dhcp_options(b"\x00\x00\x00\x00\x35\x01\x01") is None  # bad cookie
    assert parse_dhcp_options(magic + b"\x0c\x02ab\x0c\x02cd\xff")[12] == b"abcd"  # RFC 3396


@settings(max_examples=1500, deadline=None)
@given(st.binary(max_size=700))
def test_random_bytes_never_raise(data):
    parse_dhcp(data)
    run_both(data)


@settings(max_examples=500, deadline=None)
@given(st.integers(0, len(SEEDS) - 1), st.integers(0, 400), st.binary(min_size=1, max_size=40))
def test_splices_never_raise(which, at, blob):
    seed = SEEDS[which]
    at = min(at, len(seed))
    run_both(seed[:at] + blob + seed[at + len(blob):])
