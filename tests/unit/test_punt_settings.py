"""Punt limits reach the apps and the pure punt-meter compiler through Settings, never the
environment: `tenantflow serve --dhcp-rate …` (and the deprecated TENANTFLOW_* variables, read
only by controller/config.py) → Settings.punt → each app's configure() → flows."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from apps.arp import ArpApp
from apps.dhcp import DhcpApp
from apps.ipv6_ra import Ipv6RaApp
from apps.routing import RoutingApp
from controller import config
from flows import qos
from flows.flow import Controller
from topology.model.settings import PuntLimits, Settings

ROOT = Path(__file__).parents[2]


def _settings(**kw) -> Settings:
    return Settings(punt=PuntLimits(**kw))


def test_no_environment_reads_in_flows_or_apps():
    for path in sorted((ROOT / "flows").glob("*.py")) + sorted((ROOT / "apps").glob("*.py")):
        tree = ast.parse(path.read_text())
        names = {n.attr if isinstance(n, ast.Attribute) else n.id for n in ast.walk(tree)
                 if isinstance(n, (ast.Attribute, ast.Name))}
        assert not names & {"environ", "getenv"}, path


def test_defaults_unchanged():
    m = qos.punt_meters()
    assert (m.dhcp_rate, m.dhcp_burst) == (100, 200)
    assert qos.punt_meters(True, 10) == m == qos.DEFAULT_PUNT_METERS  # the app's own default lifts nothing
    arp = ArpApp()
    arp.configure(Settings())
    assert (arp.limit.rate, arp.limit.burst, arp.meters) == (50.0, 100.0, qos.DEFAULT_PUNT_METERS)
    ra = Ipv6RaApp()
    ra.configure(Settings())
    assert (ra.min_interval, ra.max_interval) == (30.0, 100.0)
    r = RoutingApp()
    r.configure(Settings())
    assert (r.icmp.per_router.rate, r.icmp.per_router.burst, r.icmp.per_dst.rate, r.icmp.per_dst.burst) == \
        (100.0, 50.0, 1.0, 6.0)


def test_rates_lift_buckets_and_meters():
    dhcp = DhcpApp()
    dhcp.configure(_settings(rates={"dhcp": 1000.0, "dhcp6": 10.0}, bursts={"dhcp": 3000.0}))
    assert (dhcp.limit.rate, dhcp.limit.burst) == (1000.0, 3000.0)
    assert (dhcp.meters.dhcp_rate, dhcp.meters.dhcp_burst) == (4000, 8000)  # another app's rate: not DHCP's
    assert dhcp.dns_domain == "openstacklocal"  # DhcpApp's own configure still runs
    band = dhcp.meters.dhcp(5)
    assert band is not None and (band.rate, band.burst) == (4000, 8000)


def test_explicit_arguments_win_over_settings():
    dhcp = DhcpApp(rate=7.0, burst=9.0)
    dhcp.configure(_settings(rates={"dhcp": 1000.0}, bursts={"dhcp": 2000.0}))
    assert (dhcp.limit.rate, dhcp.limit.burst) == (7.0, 9.0)
    assert dhcp.meters.dhcp_rate == 4000  # the meter still follows the configured rate
    ra = Ipv6RaApp(min_interval=5.0, max_interval=10.0)
    ra.configure(_settings(ra_min_interval=50.0, ra_max_interval=200.0))
    assert (ra.min_interval, ra.max_interval) == (5.0, 10.0)


def test_ra_intervals_and_router_icmp_from_settings():
    ra = Ipv6RaApp()
    ra.configure(_settings(ra_min_interval=4.0, ra_max_interval=8.0))
    assert (ra.min_interval, ra.max_interval) == (4.0, 8.0)
    r = RoutingApp()
    r.configure(_settings(router_icmp_rate=5.0, router_icmp_burst=2.0, router_icmp_dst_rate=0.5,
                          router_icmp_dst_burst=3.0))
    assert (r.icmp.per_router.rate, r.icmp.per_router.burst, r.icmp.per_dst.rate, r.icmp.per_dst.burst) == \
        (5.0, 2.0, 0.5, 3.0)


def test_punt_meters_off_gives_plain_punts():
    m = qos.punt_meters(enabled=False)
    assert m.dhcp(5) is None
    assert qos.punt(b"dhcp", 0, m.dhcp(5)) == Controller(userdata=b"dhcp")
    app = DhcpApp()
    app.configure(_settings(meters=False))
    assert app.meters.enabled is False


def test_serve_flags_fill_settings():
    cfg = config.load(["--store", "memory://", "--dhcp-rate", "1000", "--dhcp-burst", "40", "--nopunt-meters",
                       "--ra-max-interval", "60", "--router-icmp-dst-burst", "9"])
    p = cfg.settings.punt
    assert (p.rates, p.bursts, p.meters, p.ra_max_interval, p.router_icmp_dst_burst) == \
        ({"dhcp": 1000.0}, {"dhcp": 40.0}, False, 60.0, 9.0)
    assert config.load(["--store", "memory://"]).settings.punt == PuntLimits()


@pytest.mark.parametrize("flag", ["--arp-rate", "--arp-burst"])
def test_arp_limits_are_gone(flag):
    """ARP is answered by switch flows (flows/arp_responder.py): no ARP rate, burst or meter to set."""
    with pytest.raises(SystemExit):
        config.load(["--store", "memory://", flag, "10"])
    assert not any("arp" in o.dest for o in config.PUNT_OPTS)
    assert not hasattr(qos, "arp_punt_meter") and not hasattr(qos.DEFAULT_PUNT_METERS, "arp")


def test_deprecated_environment_is_the_default_and_flags_win(monkeypatch):
    monkeypatch.setenv("TENANTFLOW_ARP_RATE", "100000")          # no such option any more: ignored
    monkeypatch.setenv("TENANTFLOW_DHCP_BURST", "300")
    monkeypatch.setenv("TENANTFLOW_DHCP_RATE", "nonsense")       # ignored (logged)
    monkeypatch.setenv("TENANTFLOW_RA_MIN_INTERVAL", "-3")       # ignored (logged)
    monkeypatch.setenv("TENANTFLOW_ROUTER_ICMP_BURST", "12")
    monkeypatch.setenv("TENANTFLOW_PUNT_METERS", "0")
    p = config.load(["--store", "memory://"]).settings.punt
    assert (p.rates, p.bursts, p.ra_min_interval, p.router_icmp_burst, p.meters) == \
        ({}, {"dhcp": 300.0}, None, 12.0, False)
    p = config.load(["--store", "memory://", "--dhcp-burst", "3", "--punt-meters"]).settings.punt
    assert (p.bursts, p.meters) == ({"dhcp": 3.0}, True)


def test_one_ipv6_pseudo_header():
    """apps/packets.py builds the RFC 8200 pseudo-header once: icmpv6_checksum is ipv6_upper_checksum."""
    import ipaddress

    from apps import packets as P
    src, dst = "fe80::1", "ff02::1"
    msg = bytes([135, 0, 0, 0]) + b"\x00" * 4 + ipaddress.IPv6Address("fe80::2").packed
    packed = ipaddress.IPv6Address(src).packed, ipaddress.IPv6Address(dst).packed
    want = P.ip_checksum(packed[0] + packed[1] + len(msg).to_bytes(4, "big") + b"\x00\x00\x00\x3a" + msg)
    assert P.icmpv6_checksum(*packed, msg) == P.ipv6_upper_checksum(src, dst, 58, msg) == want
    tree = ast.parse((ROOT / "apps/packets.py").read_text())
    callers = {f.name for f in ast.walk(tree) if isinstance(f, ast.FunctionDef)
               and any(isinstance(n, ast.Call) and getattr(n.func, "id", "") == "ip_checksum" for n in ast.walk(f))
               and "pseudo" in (ast.get_docstring(f) or "")}
    assert callers == {"ipv6_upper_checksum"}, callers
