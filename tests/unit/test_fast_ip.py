"""flows.fields' fast address parsers give what ipaddress gives — the same objects, the same
ValueError — for good, odd and malformed text, so the compile's results cannot change."""
from __future__ import annotations

import ipaddress
import random

import pytest

from flows.fields import ipv4_int_fast, parse_ip, parse_net

ODD = ["", " ", "1.2.3", "1.2.3.4.5", "01.2.3.4", "1.2.3.04", "1.2.3.256", "256.1.1.1", " 1.2.3.4", "1.2.3.4 ",
       "1.2.3.4/", "1.2.3.4/33", "1.2.3.4/ 24", "1.2.3.4/+24", "1.2.3.4/-1", "1.2.3.4/024", "1.2.3.4/\u0662\u0664",
       "1.2.3.4/255.255.255.0", "1.2.3.4/0.0.0.255", "1.2.3.4/24/1", "1.2.3.4\x00", "\u0661.2.3.4", "0x1.2.3.4",
       "1.2.3.4%eth0", "::1", "fd00::5", "fd00::5/64", "::ffff:1.2.3.4", "fe80::1%eth0", "1.2.3.4/32", "0.0.0.0/0",
       "10.0.0.5/24", "255.255.255.255", "0.0.0.0", "garbage", "1..2.3", "1.2.3.4/99999999999999999999"]


def _outcome(fn, text):
    try:
        return ("ok", fn(text), type(fn(text)))
    except ValueError as exc:
        return ("ValueError", type(exc))


def _random_texts(n: int) -> list[str]:
    rnd = random.Random(7)
    out = []
    for _ in range(n):
        octets = [str(rnd.randint(0, 255)) for _ in range(4)]
        text = ".".join(octets)
        if rnd.random() < 0.5:
            text += f"/{rnd.randint(0, 33)}"
        out.append(text)
    return out


def _check(text: str) -> None:
    assert _outcome(parse_ip, text) == _outcome(ipaddress.ip_address, text)
    assert _outcome(parse_net, text) == _outcome(lambda t: ipaddress.ip_network(t, strict=False), text)
    try:
        expected = int(ipaddress.IPv4Address(text))
    except ValueError:
        expected = None
    assert ipv4_int_fast(text) == expected


@pytest.mark.parametrize("text", ODD)
def test_odd_text_same_as_ipaddress(text):
    _check(text)


def test_random_addresses_same_as_ipaddress():
    for text in _random_texts(2000):
        _check(text)


def test_parsed_networks_are_whole_values():
    net = parse_net("10.0.0.5/24")
    assert str(net) == "10.0.0.0/24" and net.prefixlen == 24 and int(net.netmask) == 0xFFFFFF00
    assert net == ipaddress.ip_network("10.0.0.0/24") and hash(net) == hash(ipaddress.ip_network("10.0.0.0/24"))
    assert ipaddress.ip_address("10.0.0.9") in net and str(parse_net("10.0.0.5")) == "10.0.0.5/32"
    assert ipv4_int_fast(None) is None and ipv4_int_fast(b"1.2.3.4") is None  # type: ignore[arg-type]
