"""Small, pure questions compilers ask about the topology view and a chassis.

Why one module: "is this port local here", "where does a remote port live", "is this network
present on this chassis" must be answered the same way by every compiler, or two apps would
disagree about where a network exists and leave half-installed pipelines.

Definitions used throughout flows/:
- local port: its id is in ctx.local_ports — plugged here (the switch says so; the store may lag
  behind), or bound here by binding:host_id and not plugged yet (ofport None: Nova binds a port
  before it plugs the tap, so everything but the flows that name the ofport is ready before);
- network present on a chassis: at least one of its ports is local there;
- remote port: not local, bound (binding:host_id) to another chassis record.
"""
from __future__ import annotations

from flows.engine import fact, size_hint
from flows.fields import mac
from flows.tables import Owner, cookie
from topology.store import NETWORK, PORT, Record
from topology.view import View

OVERLAY_TYPES = ("vxlan", "gre", "geneve")
PROVIDER_TYPES = ("flat", "vlan")


def is_up(record: Record | None) -> bool:
    """admin_state_up defaults to True, like Neutron."""
    return record is not None and record.get("admin_state_up", True) is not False


def network_type(net: Record) -> str:
    return net.get("provider:network_type") or "local"


def is_overlay(net: Record) -> bool:
    return network_type(net) in OVERLAY_TYPES


def is_provider(net: Record) -> bool:
    return network_type(net) in PROVIDER_TYPES


def segmentation_id(net: Record) -> int:
    return int(net.get("provider:segmentation_id") or 0)


def port_mac(port: Record) -> int | None:
    text = port.get("mac_address")
    try:
        return mac(text) if text else None
    except ValueError:
        return None


def port_cookie(port: Record) -> int:
    return cookie(Owner.PORT, port["_key"])


def network_cookie(net: Record) -> int:
    return cookie(Owner.NETWORK, net["_key"])


def is_vm_port(port: Record) -> bool:
    """An instance's port (Neutron's compute:* or none), not a router's or DHCP's network:* port:
    only these are plugged as taps, fetch metadata, or take their network's QoS policy."""
    return not str(port.get("device_owner") or "").startswith("network:")


def is_local(ctx, port: Record) -> bool:
    return port["id"] in ctx.local_ports


@fact
def network_present(view: View, ctx, network_id: str) -> bool:
    """True when a port of the network is plugged into this chassis; O(min(local, network ports)).
    A fact of the incremental engine: every port of the network reads it, its value rarely flips."""
    local = ctx.local_ports
    ids = view.port_ids_of_network(network_id)
    if len(ids) <= size_hint(local):  # which side to loop over; not an input
        return any(pid in local for pid in ids)
    for pid in local:
        port = view.port(pid)
        if port is not None and port.get("network_id") == network_id:
            return True
    return False


def local_ports_of_network(view: View, ctx, network_id: str) -> list[Record]:
    """The network's local ports (plugged or bound here), sorted by key (deterministic). Reads
    only which ports are here, not their ofports: a pre-bound tap appearing changes nothing here."""
    local = ctx.local_ports
    ids = view.port_ids_of_network(network_id)
    if len(ids) <= size_hint(local):  # which side to loop over; not an input
        found = [view.port(pid) for pid in ids if pid in local]
    else:
        found = [view.port(pid) for pid in local if (view.port(pid) or {}).get("network_id") == network_id]
    return sorted((p for p in found if p is not None), key=lambda p: p["_key"])


def remote_chassis(view: View, ctx, port: Record) -> Record | None:
    """The chassis record a non-local port is bound to, or None (unbound / bound here / unknown)."""
    if is_local(ctx, port):
        return None
    host = port.get("binding:host_id") or ""
    if not host or host == ctx.name:
        return None
    return view.chassis_by_name(host)


def remote_tunnel_ips(view: View, ctx, network_id: str) -> list[str]:
    """Tunnel IPs of the other chassis with ports of the network, sorted (head-end replication)."""
    ips = set()
    for host in view.hosts_of_network(network_id):
        if host == ctx.name:
            continue
        ch = view.chassis_by_name(host)
        if ch is not None and ch.get("tunnel_ip") and ch.get("tunnel_ip") != ctx.tunnel_ip:
            ips.add(ch["tunnel_ip"])
    return sorted(ips)


def local_network_cookies(view: View, ctx) -> list[int]:
    """Owner cookies of the networks with a port local to ctx's chassis (a local port's network
    may be gone from the view: skipped), sorted: the owners of per-network punts."""
    out: set[int] = set()
    for pid in ctx.local_ports:
        port = view.get(PORT, pid)
        net = view.get(NETWORK, port.get("network_id")) if port is not None else None
        if net is not None and net.get("_key") is not None:
            out.add(cookie(Owner.NETWORK, int(net["_key"])))
    return sorted(out)
