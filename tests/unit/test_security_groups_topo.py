"""Helpers for the security unit tests: a topology with groups/rules, compiled with every app.

(Named test_*.py only so that it sits inside the files this feature owns; it holds no tests.)
"""
from __future__ import annotations

import uuid

from apps.port_security import PortSecurityApp
from apps.registry import default_apps
from apps.security_groups import SecurityGroupsApp
from flows import compiler
from flows.simulator import Conntrack, Simulator, packet
from tests.unit.l2topo import Topo, ctx

VM_PORTS = (1, 2, 3, 4, 5, 6)


def apps() -> list:
    """The registry's apps plus ours (once registered there, not twice)."""
    out = default_apps()
    names = {getattr(a, "name", "") for a in out}
    out += [a for a in (PortSecurityApp(), SecurityGroupsApp()) if a.name not in names]
    return out


class SecTopo(Topo):
    def group(self, name: str = "g", project: str = "p1") -> dict:
        return self._put("security_group", {"id": str(uuid.uuid4()), "name": name, "project_id": project,
                                            "_key": next(self._keys["security_group"])})

    def rule(self, group: dict, direction: str, ethertype: str = "IPv4", protocol=None, port_range_min=None,
             port_range_max=None, remote_ip_prefix=None, remote_group: dict | None = None) -> dict:
        return self._put("security_group_rule", {
            "id": str(uuid.uuid4()), "security_group_id": group["id"], "direction": direction,
            "ethertype": ethertype, "protocol": protocol, "port_range_min": port_range_min,
            "port_range_max": port_range_max, "remote_ip_prefix": remote_ip_prefix,
            "remote_group_id": remote_group["id"] if remote_group else None, "project_id": "p1"})

    def default_group(self) -> dict:
        """Neutron's default: egress anything, ingress from members of the group."""
        g = self.group("default")
        for et in ("IPv4", "IPv6"):
            self.rule(g, "egress", et)
            self.rule(g, "ingress", et, remote_group=g)
        return g

    def vm(self, net: dict, n: int, groups=(), host: str = "c1", **fields) -> dict:
        p = self.port(net, f"fa:16:3e:00:00:{n:02x}", f"10.0.0.{n}", host=host)
        fields.setdefault("security_groups", [g["id"] for g in groups])
        fields.setdefault("port_security_enabled", True)  # explicit: Topo's default may change
        return self.update("port", p["id"], **fields)


def flows_of(topo: Topo, local: dict[str, int], name: str = "c1") -> dict:
    return compiler.compile_chassis(apps(), topo.view(), ctx(name, local, tunnel_ip="192.0.2.1"))


def sim_of(topo: Topo, local: dict[str, int], conntrack: Conntrack | None = None,
           strict: bool = True) -> Simulator:
    return Simulator(compiler.all_flows(flows_of(topo, local)), conntrack=conntrack, strict=strict)


def tcp(src: dict, dst: dict, sport: int, dport: int, **more) -> dict:
    return packet(eth_src=src["mac_address"], eth_dst=dst["mac_address"], eth_type=0x0800, ip_proto=6,
                  ipv4_src=src["fixed_ips"][0]["ip_address"], ipv4_dst=dst["fixed_ips"][0]["ip_address"],
                  tcp_src=sport, tcp_dst=dport, **more)


def udp(src: dict, dst: dict, sport: int, dport: int) -> dict:
    return packet(eth_src=src["mac_address"], eth_dst=dst["mac_address"], eth_type=0x0800, ip_proto=17,
                  ipv4_src=src["fixed_ips"][0]["ip_address"], ipv4_dst=dst["fixed_ips"][0]["ip_address"],
                  udp_src=sport, udp_dst=dport)


def icmp(src: dict, dst: dict, type_: int = 8, code: int = 0) -> dict:
    return packet(eth_src=src["mac_address"], eth_dst=dst["mac_address"], eth_type=0x0800, ip_proto=1,
                  ipv4_src=src["fixed_ips"][0]["ip_address"], ipv4_dst=dst["fixed_ips"][0]["ip_address"],
                  icmpv4_type=type_, icmpv4_code=code)


def reverse(pkt: dict) -> dict:
    out = dict(pkt)
    for a, b in (("eth_src", "eth_dst"), ("ipv4_src", "ipv4_dst"), ("tcp_src", "tcp_dst"),
                 ("udp_src", "udp_dst")):
        if a in pkt:
            out[a], out[b] = pkt[b], pkt[a]
    if pkt.get("ip_proto") == 1 and pkt.get("icmpv4_type") == 8:
        out["icmpv4_type"] = 0
    return out
