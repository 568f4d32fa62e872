"""`tenantflow serve` configuration: oslo.config options, CLI overrides, → topology Settings.

Why a ConfigOpts of our own, not os-ken's CONF: os-ken registers dozens of CLI options for
components we do not run (zapi, bgp, test-switch) on its CONF at import time, and they would all
show up in `tenantflow serve --help`. Ours are parsed here; os-ken's CONF is then primed with
defaults and the two listener options it reads (ofp_listen_host, ofp_tcp_listen_port) are set
from `--ofp-listen`. `list_opts()` feeds oslo-config-generator (contrib/tenantflow.conf.sample).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

from oslo_config import cfg

LOG = logging.getLogger(__name__)

DEFAULT_STORE = "sqlite:////var/lib/tenantflow/tenantflow.db"

CLI_OPTS = [
    cfg.StrOpt("store", default=DEFAULT_STORE,
               help="topology store URL: sqlite:///path, memory://, etcd://host:port"),
    cfg.StrOpt("api-listen", default="0.0.0.0:9696", help="HOST:PORT of the Neutron-compatible API"),
    cfg.StrOpt("ofp-listen", default="0.0.0.0:6653", help="HOST:PORT of the OpenFlow listener"),
    cfg.StrOpt("log-level", default="INFO", help="DEBUG, INFO, WARNING, ERROR"),
    cfg.ListOpt("apps", default=["apps.registry:default_apps"],
                help="factories MODULE:CALLABLE returning feature app lists (tests swap in fakes)"),
    cfg.StrOpt("auth", default="noauth", choices=["noauth", "builtin", "keystone"],
               help="noauth: no credentials (admin, or the project in X-Project-Id; labs and the demo); "
                    "builtin: Keystone v3 subset at /identity/v3 on the API port; keystone: tokens "
                    "validated by keystonemiddleware against the Keystone of [keystone_authtoken]"),
    cfg.BoolOpt("check-compile", default=False,
                help="check mode: after every batch, compile everything afresh with new app instances "
                     "and log (and count in stats) any difference from the incremental result; slow"),
    cfg.StrOpt("port-cache", default=None,
               help="file keeping each chassis' switch ports across restarts, so a restart compiles "
                    "before the switches reconnect (controller/portcache.py); default: beside an "
                    "SQLite store's database, none for other stores; '' turns it off"),
    cfg.StrOpt("compile-checkpoint", default=None,
               help="file keeping each chassis' compiled flows across a clean stop, so a restart onto an "
                    "unchanged topology does not compile again (controller/checkpoint.py; needs the port "
                    "cache); default: beside an SQLite store's database, none for other stores; '' turns it off"),
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
    cfg.StrOpt("policy-file", default=None,
               help="policy.yaml overriding Neutron's default API policy rules (oslo.policy; see docs/api.md)"),
]


# [identity]: the built-in Keystone subset (--auth builtin).
IDENTITY_OPTS = [
    cfg.StrOpt("admin-password", default=None, secret=True,
               help="password of user 'admin' created at first start (TENANTFLOW_ADMIN_PASSWORD wins)"),
    cfg.IntOpt("token-expiration", default=3600, min=60, help="token lifetime in seconds (Keystone's default)"),
    cfg.StrOpt("public-endpoint", default=None,
               help="base URL clients reach this API at (catalog, WWW-Authenticate); default: the request's Host"),
]
ADMIN_PASSWORD_ENV = "TENANTFLOW_ADMIN_PASSWORD"


# High availability (controller/ownership.py, docs/ha.md): several serve processes on one etcd.
HA_OPTS = [
    cfg.StrOpt("ha", default="auto", choices=["auto", "on", "off"],
               help="share the chassis with the other controllers on the same etcd (OpenFlow roles); "
                    "auto = on with an etcd:// store, off otherwise (one controller, master of all)"),
    cfg.StrOpt("controller-id", default=None,
               help="this controller's member id in etcd; default HOSTNAME:OFP-PORT (stable across "
                    "restarts, so a controller that comes back keeps its chassis)"),
    cfg.IntOpt("ha-lease-ttl", default=2, min=2, max=60,
               help="seconds without keep-alive after which etcd drops a controller and its chassis move"),
    cfg.FloatOpt("ha-interval", default=0.4, min=0.05, max=10.0,
                 help="seconds between ownership rounds (keep-alive, read, rebalance)"),
]


# Gateway chassis failover (controller/gateway.py, flows/gateway.py, docs/ha.md).
GATEWAY_OPTS = [
    cfg.FloatOpt("gateway-dead-after", default=2.0, min=0.0, max=60.0,
                 help="seconds a chassis' OpenFlow connection must stay down before it is recorded "
                      "dead and its routers' SNAT/gateway IPs move to the next gateway chassis"),
    cfg.FloatOpt("gateway-startup-grace", default=15.0, min=0.0, max=600.0,
                 help="seconds after start before a chassis that never connected is recorded dead"),
    cfg.IntOpt("gateway-garp-count", default=3, min=0, max=10,
               help="gratuitous ARPs sent for an external address (gateway IP, floating IP) "
                    "that moved to a chassis; 0 = none"),
    cfg.FloatOpt("gateway-garp-interval", default=1.0, min=0.05, max=30.0,
                 help="seconds between those gratuitous ARPs"),
    cfg.FloatOpt("ofp-echo-interval", default=1.0, min=0.1, max=60.0,
                 help="seconds between OpenFlow echo requests to each switch (a hung ovs-vswitchd "
                      "keeps its TCP connection: this is how it is noticed)"),
    cfg.IntOpt("ofp-echo-misses", default=4, min=0, max=100,
               help="unanswered echo requests after which a switch's connection is dropped (and, "
                    "after --gateway-dead-after, its chassis recorded dead); 0 = never"),
]


# Controller-answered packets (apps/punt.py, flows/qos.py punt meters, apps/ipv6_ra.py, apps/router_icmp.py;
# docs/services.md): → topology.model.settings.PuntLimits → each app's configure(). None = the app's default.
PUNT_APPS = {"dhcp": 10, "dhcp6": 10, "ra": 2, "ndp": 50}  # app name → its default answers/s (help)
PUNT_OPTS: list[cfg.Opt] = [
    cfg.BoolOpt("punt-meters", default=True,
                help="OpenFlow meters on the DHCP punts (per port), 4x the app's rate (at least 100 "
                     "packets/s): a flood is cut in the switch (ARP is answered there, nothing to meter)"),
]
for _app, _rate in PUNT_APPS.items():
    PUNT_OPTS += [
        cfg.FloatOpt(f"{_app}-rate", default=None, min=0.001,
                     help=f"{_app} packets answered per second per port (default {_rate})"),
        cfg.FloatOpt(f"{_app}-burst", default=None, min=1.0,
                     help=f"{_app} packets answered at once per port (default max({2 * _rate}, 2 x --{_app}-rate))"),
    ]
PUNT_OPTS += [
    cfg.FloatOpt("ra-min-interval", default=None, min=0.001,
                 help="seconds, least between unsolicited router advertisements (default 30, Neutron's "
                      "min_rtr_adv_interval; clamped to RFC 4861's 3..0.75 x max)"),
    cfg.FloatOpt("ra-max-interval", default=None, min=0.001,
                 help="seconds, most between unsolicited router advertisements (default 100, Neutron's "
                      "max_rtr_adv_interval; clamped to 4..1800)"),
    cfg.FloatOpt("router-icmp-rate", default=None, min=0.001,
                 help="ICMP errors per second per router (default 100, as Linux's icmp_msgs_per_sec)"),
    cfg.FloatOpt("router-icmp-burst", default=None, min=1.0, help="ICMP errors at once per router (default 50)"),
    cfg.FloatOpt("router-icmp-dst-rate", default=None, min=0.001,
                 help="ICMP errors per second per router and destination (default 1, Linux's icmp_ratelimit)"),
    cfg.FloatOpt("router-icmp-dst-burst", default=None, min=1.0,
                 help="ICMP errors at once per router and destination (default 6)"),
]
# Deprecated: the environment variables these options replace, still honoured as their defaults
# (a command-line or INI value wins) so older scripts and benchmarks keep working.
PUNT_ENV = {f"TENANTFLOW_{app.upper()}_{what.upper()}": f"{app}_{what}"
            for app in PUNT_APPS for what in ("rate", "burst")}
PUNT_ENV.update({f"TENANTFLOW_{name.upper()}": name for name in (
    "ra_min_interval", "ra_max_interval", "router_icmp_rate", "router_icmp_burst", "router_icmp_dst_rate",
    "router_icmp_dst_burst")})


def apply_legacy_env(conf: cfg.ConfigOpts, environ=None) -> None:
    """TENANTFLOW_<X> environment values as the defaults of their options; bad values are ignored."""
    environ = os.environ if environ is None else environ
    if environ.get("TENANTFLOW_PUNT_METERS"):
        conf.set_default("punt_meters", environ["TENANTFLOW_PUNT_METERS"] != "0")
    for env, dest in PUNT_ENV.items():
        text = environ.get(env)
        if not text:
            continue
        try:
            value = float(text)
        except ValueError:
            value = 0.0
        if value < (1.0 if dest.endswith("burst") else 0.001):
            LOG.warning("%s=%r is not a valid %s; ignored", env, text, dest.replace("_", "-"))
            continue
        conf.set_default(dest, value)


def punt_limits(conf: cfg.ConfigOpts):
    from topology.model.settings import PuntLimits
    rates = {app: conf[f"{app}_rate"] for app in PUNT_APPS if conf[f"{app}_rate"] is not None}
    bursts = {app: conf[f"{app}_burst"] for app in PUNT_APPS if conf[f"{app}_burst"] is not None}
    return PuntLimits(meters=conf.punt_meters, rates=rates, bursts=bursts, ra_min_interval=conf.ra_min_interval,
                      ra_max_interval=conf.ra_max_interval, router_icmp_rate=conf.router_icmp_rate,
                      router_icmp_burst=conf.router_icmp_burst, router_icmp_dst_rate=conf.router_icmp_dst_rate,
                      router_icmp_dst_burst=conf.router_icmp_dst_burst)


# [metadata]: `tenantflow node metadata-agent` (controller/metadata_agent.py, docs/services.md).
METADATA_OPTS = [
    cfg.StrOpt("nova-metadata-host", default=None,
               help="proxy mode: forward VMs' metadata requests to this Nova metadata API host (signed "
                    "X-Instance-ID); unset: the agent answers itself from tenantflow's instance data"),
    cfg.PortOpt("nova-metadata-port", default=8775, help="port of the Nova metadata API"),
    cfg.StrOpt("metadata-proxy-shared-secret", default="", secret=True,
               help="shared secret of X-Instance-ID-Signature (HMAC-SHA256 of the instance id), as Nova's "
                    "[neutron] metadata_proxy_shared_secret"),
    cfg.StrOpt("availability-zone", default="nova", help="availability_zone the agent answers with"),
    cfg.FloatOpt("rate", default=20.0, min=0.1, help="metadata requests per second per VM port"),
    cfg.FloatOpt("burst", default=100.0, min=1.0, help="requests a VM port may make at once (cloud-init's crawl)"),
]


@dataclass
class HaConfig:
    mode: str = "off"            # resolved: on | off
    member_id: str = ""
    lease_ttl: int = 2
    interval: float = 0.4


def ha_config(conf: cfg.ConfigOpts, store: str, ofp_port: int) -> HaConfig:
    import socket
    on = conf.ha == "on" or (conf.ha == "auto" and store.startswith("etcd://"))
    if on and not store.startswith("etcd://"):
        raise ValueError("--ha on needs an etcd:// store (the assignment lives in etcd)")
    member = conf.controller_id or f"{socket.gethostname()}:{ofp_port}"
    if "/" in member:
        raise ValueError(f"--controller-id must not contain '/': {member!r}")
    return HaConfig("on" if on else "off", member, conf.ha_lease_ttl, conf.ha_interval)


def gateway_config(conf: cfg.ConfigOpts):
    from controller.gateway import GatewayConfig
    return GatewayConfig(dead_after=conf.gateway_dead_after, startup_grace=conf.gateway_startup_grace,
                         garp_count=conf.gateway_garp_count, garp_interval=conf.gateway_garp_interval)


def register(conf: cfg.ConfigOpts) -> None:
    for opts, cli in ((CLI_OPTS, True), (OPTS, False), (HA_OPTS, True), (GATEWAY_OPTS, True), (PUNT_OPTS, True)):
        for opt in opts:
            try:
                (conf.register_cli_opt if cli else conf.register_opt)(opt)
            except cfg.DuplicateOptError:
                pass
    try:
        conf.register_opts(IDENTITY_OPTS, group="identity")
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
    auth: str = "noauth"
    admin_password: str | None = None
    token_expiration: int = 3600
    public_endpoint: str | None = None
    conf: object = None  # the ConfigOpts: keystonemiddleware reads [keystone_authtoken] from it
    ha: HaConfig = field(default_factory=HaConfig)
    gateway: object = None  # controller.gateway.GatewayConfig
    port_cache: str | None = None  # controller/portcache.py file (None: none)
    compile_checkpoint: str | None = None  # controller/checkpoint.py file (None: none)


def list_opts() -> list[tuple[str | None, list[cfg.Opt]]]:
    """Every option by INI section, for oslo-config-generator (entry point oslo.config.opts)."""
    return [("DEFAULT", CLI_OPTS + OPTS + HA_OPTS + GATEWAY_OPTS + PUNT_OPTS), ("identity", IDENTITY_OPTS),
            ("metadata", METADATA_OPTS)]


def _prime_osken(ofp_host: str, ofp_port: int) -> None:
    """os-ken's own CONF: defaults for everything, plus the OpenFlow listener from --ofp-listen."""
    from os_ken import cfg as osken_cfg
    from os_ken.base import app_manager  # noqa: F401 — imports (and registers) os-ken's ofp_* options
    osken = osken_cfg.CONF
    osken([], project="tenantflow", default_config_files=[])   # re-parsing is allowed; overrides follow
    osken.set_override("ofp_listen_host", ofp_host)
    osken.set_override("ofp_tcp_listen_port", ofp_port)


def _prime_osken_echo(interval: float, misses: int) -> None:
    """os-ken's echo keep-alive (off by default there): a switch that stops answering is
    disconnected after `misses` unanswered requests, which gateway failover needs."""
    from os_ken import cfg as osken_cfg
    osken_cfg.CONF.set_override("echo_request_interval", interval)
    osken_cfg.CONF.set_override("maximum_unreplied_echo_requests", misses)


def load(argv: list[str], conf: cfg.ConfigOpts | None = None) -> ServeConfig:
    """Parse argv (+ --config-file INI) into a ServeConfig; also primes os-ken's options."""
    conf = conf if conf is not None else cfg.ConfigOpts()
    register(conf)
    apply_legacy_env(conf)
    conf(argv, prog="tenantflow serve", project="tenantflow", default_config_files=[],
         validate_default_values=True, description="the tenantflow controller: OpenFlow 1.3 to every "
         "bridge pointed at it, and the Neutron-compatible API")
    api_host, api_port = split_hostport(conf.api_listen, "--api-listen")
    ofp_host, ofp_port = split_hostport(conf.ofp_listen, "--ofp-listen")
    _prime_osken(ofp_host, ofp_port)
    _prime_osken_echo(conf.ofp_echo_interval, conf.ofp_echo_misses)
    ha = ha_config(conf, conf.store, ofp_port)
    return ServeConfig(conf.store, api_host, api_port, ofp_host, ofp_port, conf.log_level.upper(),
                       list(conf.apps), to_settings(conf), conf.check_compile, auth=conf.auth,
                       admin_password=os.environ.get(ADMIN_PASSWORD_ENV) or conf.identity.admin_password,
                       token_expiration=conf.identity.token_expiration,
                       public_endpoint=conf.identity.public_endpoint, conf=conf, ha=ha,
                       gateway=gateway_config(conf), port_cache=port_cache_path(conf),
                       compile_checkpoint=compile_checkpoint_path(conf))


def port_cache_path(conf: cfg.ConfigOpts) -> str | None:
    """--port-cache as given ('' = off), else beside an SQLite store's database."""
    from controller.portcache import derived_path
    if conf.port_cache is not None:
        return conf.port_cache or None
    return derived_path(conf.store)


def compile_checkpoint_path(conf: cfg.ConfigOpts) -> str | None:
    """--compile-checkpoint as given ('' = off), else beside an SQLite store's database."""
    from controller.checkpoint import derived_path
    if conf.compile_checkpoint is not None:
        return conf.compile_checkpoint or None
    return derived_path(conf.store)


def to_settings(conf: cfg.ConfigOpts):
    from topology.model.settings import Settings
    vlan_ranges, vlan_physnets = parse_vlan_ranges(conf.network_vlan_ranges)
    physnets = tuple(dict.fromkeys(list(conf.flat_networks) + vlan_physnets))
    return Settings(vni_range=parse_range(conf.vni_ranges, "vni_ranges"),
                    gre_range=parse_range(conf.gre_ranges, "gre_ranges"),
                    vlan_ranges=vlan_ranges, physnets=physnets, dns_domain=conf.dns_domain,
                    dhcp_lease_time=conf.dhcp_lease_time, api_token=conf.api_token,
                    auto_register_chassis=conf.auto_register_chassis, policy_file=conf.policy_file,
                    punt=punt_limits(conf))
