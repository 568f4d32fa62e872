"""Service-wide settings (ranges, MTU overheads, defaults) as one plain dataclass.

Why a dataclass: `tenantflow serve` fills it from oslo.config, tests build it directly, and the
business layer never reads global configuration.
"""
from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_PROJECT_ID = "b1f2d8a6e6a54a48a6c2c4f1f0d0a001"


@dataclass
class PuntLimits:
    """Limits of the controller-answered packets (`tenantflow serve --dhcp-rate …`, docs/services.md).

    Why here: apps get them through `configure(settings)` and hand them to the pure flow
    compilers (the punt meters' bands); nothing under apps/ or flows/ reads the environment.
    None = the app's own default (apps/*.py `default_rate`; burst max(2×default, 2×rate)).
    """
    meters: bool = True                                         # OpenFlow meters on the DHCP punts
    rates: dict[str, float] = field(default_factory=dict)      # app name (dhcp dhcp6 ra ndp) → /s per port
    bursts: dict[str, float] = field(default_factory=dict)     # app name → bucket size
    ra_min_interval: float | None = None                        # unsolicited RAs (Neutron's 30 s)
    ra_max_interval: float | None = None                        # (Neutron's 100 s)
    router_icmp_rate: float | None = None                       # ICMP errors per router /s (100)
    router_icmp_burst: float | None = None                      # (50)
    router_icmp_dst_rate: float | None = None                   # per router and destination /s (1)
    router_icmp_dst_burst: float | None = None                  # (6)


@dataclass
class Settings:
    vni_range: tuple[int, int] = (1, 65535)
    gre_range: tuple[int, int] = (1, 65535)
    geneve_range: tuple[int, int] = (1, 65535)
    vlan_ranges: dict[str, tuple[int, int]] = field(default_factory=lambda: {"physnet1": (100, 199)})
    # Physical networks known for flat/vlan (vlan_ranges' keys are always known too).
    physnets: tuple[str, ...] = ("physnet1",)
    tenant_network_type: str = "vxlan"
    default_mtu: int = 1500
    overlay_overhead: dict[str, int] = field(default_factory=lambda: {"vxlan": 50, "gre": 42, "geneve": 50})
    default_project_id: str = DEFAULT_PROJECT_ID
    dns_domain: str = "openstacklocal"
    dhcp_lease_time: int = 86400
    api_token: str | None = None
    auto_register_chassis: bool = True
    base_mac: str = "fa:16:3e:00:00:00"
    # Operator overrides of the policy-in-code defaults (topology.model.policy), Neutron's policy.yaml.
    policy_file: str | None = None
    # Per-project quota defaults by Neutron resource name; None = Neutron's (topology.model.quotas).
    default_quotas: dict[str, int] | None = None
    # Punt rate limits, punt meters, RA intervals, router ICMP error limits (PuntLimits).
    punt: PuntLimits = field(default_factory=PuntLimits)

    def known_physnets(self) -> set[str]:
        return set(self.physnets) | set(self.vlan_ranges)

    def mtu_for(self, network_type: str) -> int:
        return self.default_mtu - self.overlay_overhead.get(network_type, 0)
