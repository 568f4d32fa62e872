"""`tenantflow serve` configuration: oslo.config options, CLI overrides, → topology Settings.

Why os-ken's CONF (os_ken.cfg.CONF, its own ConfigOpts, not oslo's global): os-ken reads its
OpenFlow listener options (ofp_listen_host, ofp_tcp_listen_port) from it, so our options live in
the same object and `--ofp-listen` is turned into os-ken's two options with set_override.
"""
from __future__ import annotations

from dataclasses import dataclass

from oslo_config import cfg

DEFAULT_STORE = "sqlite:////var/lib/tenantflow/tenantflow.db"

CLI_OPTS = [
    cfg.StrOpt("store", default=DEFAULT_STORE,
               help="topology store URL: sqlite:///path, memory://, etcd://host:port"),
    cfg.StrOpt("api-listen", default="0.0.0.0:9696", help="HOST:PORT of the Neutron-compatible API"),
    cfg.StrOpt("ofp-listen", default="0.0.0.0:6653", help="HOST:PORT of the OpenFlow listener"),
    cfg.StrOpt("log-level", default="INFO", help="DEBUG, INFO, WARNING, ERROR"),
    cfg.ListOpt("apps", default=["apps.registry:default_apps"],
                help="factories MODULE:CALLABLE returning feature app lists (tests swap in fakes)"),
    cfg.BoolOpt("check-compile", default=False,
                help="check mode: after every batch, compile everything afresh with new app instances "
                     "and log (and count in stats) any difference from the incremental result; slow"),
]

OPTS = [
    cfg.StrOpt("api-token", default=None, secret=True,
               help="if set, API requests must carry X-Auth-Token with this value"),
    cfg.BoolOpt("auto-register-chassis", default=True,
                help="register an unknown datapath as a chassis named after its datapath id"),
    cfg.StrOpt("dns-domain", default="openstacklocal", help="DHCP option 15"),
    cfg.IntOpt("dhcp-lease-time", default=86400, min=60, help="DHCP option 51 (seconds)"),
    cfg.StrOpt("vni-ranges", default="1:65535", help="VXLAN VNI range LO:HI"),
    cfg.StrOpt("gre-ranges", default="1:65535", help="GRE key range LO:HI"),
    cfg.ListOpt("network-vlan-ranges", default=["physnet1:100:199"],
                help="Neutron syntax: PHYSNET[:VLAN_MIN:VLAN_MAX], comma separated"),
    cfg.ListOpt("flat-networks", default=["physnet1"], help="physnets usable by flat networks"),
]


def register(conf: cfg.ConfigOpts) -> None:
    for opts, cli in ((CLI_OPTS, True), (OPTS, False)):
        for opt in opts:
            try:
                (conf.register_cli_opt if cli else conf.register_opt)(opt)
            except cfg.DuplicateOptError:
                pass


def split_hostport(text: str, what: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"{what} must be HOST:PORT, got {text!r}")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


def parse_range(text: str, what: str) -> tuple[int, int]:
    lo, sep, hi = text.partition(":")
    if not sep:
        raise ValueError(f"{what} must be LO:HI, got {text!r}")
    a, b = int(lo), int(hi)
    if a > b:
        raise ValueError(f"{what}: {a} > {b}")
    return a, b


def parse_vlan_ranges(items: list[str]) -> tuple[dict[str, tuple[int, int]], list[str]]:
    """Neutron's network_vlan_ranges: 'physnet1:100:199' (range) or 'physnet2' (no tenant range)."""
    ranges: dict[str, tuple[int, int]] = {}
    physnets: list[str] = []
    for item in items:
        item = item.strip()
        if not item:
            continue
        parts = item.split(":")
        physnets.append(parts[0])
        if len(parts) == 3:
            lo, hi = int(parts[1]), int(parts[2])
            if not (1 <= lo <= hi <= 4094):
                raise ValueError(f"bad VLAN range {item!r}")
            ranges[parts[0]] = (lo, hi)
        elif len(parts) != 1:
            raise ValueError(f"network_vlan_ranges entry must be PHYSNET[:MIN:MAX], got {item!r}")
    return ranges, physnets


@dataclass
class ServeConfig:
    store: str
    api_host: str
    api_port: int
    ofp_host: str
    ofp_port: int
    log_level: str
    apps: list
    settings: object  # topology.model.settings.Settings
    check_compile: bool = False


def load(argv: list[str], conf: cfg.ConfigOpts | None = None) -> ServeConfig:
    """Parse argv (+ --config-file INI) into a ServeConfig; also primes os-ken's options."""
    from os_ken import cfg as osken_cfg
    from os_ken.base import app_manager  # noqa: F401 — imports (and registers) os-ken's ofp_* options
    conf = conf if conf is not None else osken_cfg.CONF
    register(conf)
    conf(argv, project="tenantflow", default_config_files=[], validate_default_values=True)
    api_host, api_port = split_hostport(conf.api_listen, "--api-listen")
    ofp_host, ofp_port = split_hostport(conf.ofp_listen, "--ofp-listen")
    conf.set_override("ofp_listen_host", ofp_host)
    conf.set_override("ofp_tcp_listen_port", ofp_port)
    return ServeConfig(conf.store, api_host, api_port, ofp_host, ofp_port, conf.log_level.upper(),
                       list(conf.apps), to_settings(conf), conf.check_compile)


def to_settings(conf: cfg.ConfigOpts):
    from topology.model.settings import Settings
    vlan_ranges, vlan_physnets = parse_vlan_ranges(conf.network_vlan_ranges)
    physnets = tuple(dict.fromkeys(list(conf.flat_networks) + vlan_physnets))
    return Settings(vni_range=parse_range(conf.vni_ranges, "vni_ranges"),
                    gre_range=parse_range(conf.gre_ranges, "gre_ranges"),
                    vlan_ranges=vlan_ranges, physnets=physnets, dns_domain=conf.dns_domain,
                    dhcp_lease_time=conf.dhcp_lease_time, api_token=conf.api_token,
                    auto_register_chassis=conf.auto_register_chassis)
