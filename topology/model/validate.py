"""Attribute converters and per-resource attribute specs (what POST/PUT may carry, defaults).

Why a declarative table: every resource gets the same generic checks (unknown attribute, read-only
attribute, wrong type) with Neutron's 400 wording, and the service only writes the semantic rules.
"""
from __future__ import annotations

import copy
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import netaddr

from topology.model import errors
from topology.store import (CHASSIS, FLOATINGIP, NETWORK, PORT, ROUTER, SECURITY_GROUP,
                            SECURITY_GROUP_RULE, SUBNET)

MISSING = object()
REQUIRED = object()

# IP protocol names Neutron accepts for security-group rules, with their numbers.
PROTOCOLS: dict[str, int | None] = {
    "any": None, "ah": 51, "dccp": 33, "egp": 8, "esp": 50, "gre": 47, "hopopt": 0, "icmp": 1, "igmp": 2,
    "ipip": 4, "ipv6-encap": 41, "ipv6-frag": 44, "ipv6-icmp": 58, "icmpv6": 58, "ipv6-nonxt": 59,
    "ipv6-opts": 60, "ipv6-route": 43, "ospf": 89, "pgm": 113, "rsvp": 46, "sctp": 132, "tcp": 6,
    "udp": 17, "udplite": 136, "vrrp": 112,
}
PORT_PROTOCOLS = {6, 17, 132, 33, 136}   # protocols whose rules may carry port ranges
ICMP_PROTOCOLS = {1, 58}


def protocol_number(protocol: str | int | None) -> int | None:
    """IP protocol number of a stored rule protocol (None = any). The controller uses this."""
    if protocol is None:
        return None
    if isinstance(protocol, int):
        return protocol
    text = str(protocol).lower()
    if text.isdigit():
        return int(text)
    return PROTOCOLS[text]


def _bad(attr: str, msg: str) -> errors.InvalidInput:
    return errors.InvalidInput(error_message=f"'{attr}': {msg}" if attr else msg)


# ---- converters: (attr name, value) -> normalised value, raising InvalidInput -------------
Converter = Callable[[str, Any], Any]


def to_str(attr: str, value: Any, max_len: int = 255) -> str:
    if not isinstance(value, str):
        raise _bad(attr, f"'{value}' is not a valid string")
    if len(value) > max_len:
        raise _bad(attr, f"'{value}' exceeds maximum length of {max_len}")
    return value


def to_long_str(attr: str, value: Any) -> str:
    return to_str(attr, value, 1024)


def to_bool(attr: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no"):
        return value.lower() in ("true", "1", "yes")
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise _bad(attr, f"'{value}' cannot be converted to boolean")


def to_int(attr: str, value: Any) -> int:
    if isinstance(value, bool):
        raise _bad(attr, f"'{value}' is not an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value, 0)
        except ValueError:
            pass
    raise _bad(attr, f"'{value}' is not an integer")


def to_int_or_none(attr: str, value: Any) -> int | None:
    return None if value is None else to_int(attr, value)


def to_uuid(attr: str, value: Any) -> str:
    if isinstance(value, str):
        try:
            parsed = uuid.UUID(value)
        except ValueError:
            parsed = None
        if parsed is not None and len(value.replace("-", "")) == 32:
            return str(parsed)
    raise _bad(attr, f"'{value}' is not a valid UUID")


def to_uuid_or_none(attr: str, value: Any) -> str | None:
    return None if value is None else to_uuid(attr, value)


def to_uuid_list(attr: str, value: Any) -> list[str]:
    if not isinstance(value, list):
        raise _bad(attr, f"'{value}' is not a list")
    out = [to_uuid(attr, v) for v in value]
    if len(set(out)) != len(out):
        raise _bad(attr, f"duplicate items in the list: '{', '.join(out)}'")
    return out


def to_mac(attr: str, value: Any) -> str:
    if isinstance(value, str) and len(value.split(":")) == 6:
        try:
            mac = netaddr.EUI(value, dialect=netaddr.mac_unix_expanded)
        except (netaddr.AddrFormatError, TypeError, ValueError):
            mac = None
        if mac is not None:
            first = int(mac) >> 40
            if int(mac) not in (0, 0xFFFFFFFFFFFF) and not first & 1:
                return str(mac).lower()
    raise _bad(attr, f"'{value}' is not a valid MAC address")


def to_ip(attr: str, value: Any) -> str:
    if isinstance(value, str):
        try:
            return str(netaddr.IPAddress(value, flags=netaddr.INET_PTON))
        except (netaddr.AddrFormatError, ValueError, TypeError):
            pass
    raise _bad(attr, f"'{value}' is not a valid IP address")


def to_ip_or_none(attr: str, value: Any) -> str | None:
    return None if value is None else to_ip(attr, value)


def parse_cidr(attr: str, value: Any, strict: bool = True) -> netaddr.IPNetwork:
    if isinstance(value, str) and "/" in value:
        addr, _, plen = value.partition("/")
        try:
            ip = netaddr.IPAddress(addr, flags=netaddr.INET_PTON)
            net = netaddr.IPNetwork(f"{ip}/{int(plen)}")
        except (netaddr.AddrFormatError, ValueError, TypeError):
            net = None
        if net is not None:
            if strict and net.ip != net.network:
                raise _bad(attr, f"'{value}' isn't a recognized IP subnet cidr, '{net.cidr}' is recommended")
            return net
    raise _bad(attr, f"'{value}' is not a valid IP subnet")


def to_cidr(attr: str, value: Any) -> str:
    return str(parse_cidr(attr, value).cidr)


def to_cidr_or_none(attr: str, value: Any) -> str | None:
    return None if value is None else str(parse_cidr(attr, value, strict=False).cidr)


def to_ip_or_cidr(attr: str, value: Any) -> str:
    if isinstance(value, str) and "/" in value:
        return str(parse_cidr(attr, value, strict=False).cidr)
    return to_ip(attr, value)


def to_dict(attr: str, value: Any) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _bad(attr, f"'{value}' is not a dictionary")
    return value


def to_str_dict(attr: str, value: Any) -> dict[str, str]:
    value = to_dict(attr, value)
    for k, v in value.items():
        if not isinstance(k, str) or not isinstance(v, str) or not k or not v:
            raise _bad(attr, f"'{value}' must map non-empty strings to non-empty strings")
    return dict(value)


def to_str_list(attr: str, value: Any) -> list[str]:
    if not isinstance(value, list):
        raise _bad(attr, f"'{value}' is not a list")
    return [to_str(attr, v) for v in value]


def to_ip_list(attr: str, value: Any) -> list[str]:
    if not isinstance(value, list):
        raise _bad(attr, f"'{value}' is not a list")
    out = [to_ip(attr, v) for v in value]
    if len(set(out)) != len(out):
        raise _bad(attr, f"duplicate nameserver in '{value}'")
    return out


def _dict_list(attr: str, value: Any, keys: dict[str, tuple[Converter, bool]]) -> list[dict]:
    """A list of dicts with known keys: {key: (converter, required)}."""
    if not isinstance(value, list):
        raise _bad(attr, f"'{value}' is not a list")
    out = []
    for item in value:
        if not isinstance(item, dict):
            raise _bad(attr, f"'{item}' is not a dictionary")
        unknown = set(item) - set(keys)
        if unknown:
            raise _bad(attr, f"unrecognized key(s) {sorted(unknown)} in '{item}'")
        entry = {}
        for key, (conv, required) in keys.items():
            if key in item and item[key] is not None:
                entry[key] = conv(attr, item[key])
            elif required:
                raise _bad(attr, f"'{key}' is required in '{item}'")
        out.append(entry)
    return out


def to_routes(attr: str, value: Any) -> list[dict]:
    routes = _dict_list(attr, value if value is not None else [],
                        {"destination": (to_cidr, True), "nexthop": (to_ip, True)})
    seen = set()
    for r in routes:
        key = (r["destination"], r["nexthop"])
        if key in seen:
            raise _bad(attr, f"duplicate route {r}")
        seen.add(key)
    return routes


def to_pools(attr: str, value: Any) -> list[dict]:
    return _dict_list(attr, value, {"start": (to_ip, True), "end": (to_ip, True)})


def to_fixed_ips(attr: str, value: Any) -> list[dict]:
    return _dict_list(attr, value, {"subnet_id": (to_uuid, False), "ip_address": (to_ip, False)})


def to_address_pairs(attr: str, value: Any) -> list[dict]:
    pairs = _dict_list(attr, value if value is not None else [],
                       {"ip_address": (to_ip_or_cidr, True), "mac_address": (to_mac, False)})
    seen = set()
    for p in pairs:
        key = (p["ip_address"], p.get("mac_address"))
        if key in seen:
            raise _bad(attr, f"duplicate address pair {p}")
        seen.add(key)
    return pairs


def to_gateway_info(attr: str, value: Any) -> dict | None:
    if value is None or value == {}:
        return None
    if not isinstance(value, dict):
        raise _bad(attr, f"'{value}' is not a dictionary")
    unknown = set(value) - {"network_id", "enable_snat", "external_fixed_ips", "qos_policy_id"}
    if unknown:
        raise _bad(attr, f"unrecognized key(s) {sorted(unknown)}")
    if "network_id" not in value:
        raise _bad(attr, "'network_id' is required")
    info: dict[str, Any] = {"network_id": to_uuid(attr, value["network_id"])}
    if value.get("enable_snat") is not None:
        info["enable_snat"] = to_bool(attr, value["enable_snat"])
    if value.get("external_fixed_ips") is not None:
        info["external_fixed_ips"] = to_fixed_ips(attr, value["external_fixed_ips"])
    return info


def to_direction(attr: str, value: Any) -> str:
    if value not in ("ingress", "egress"):
        raise _bad(attr, f"'{value}' is not in ['ingress', 'egress']")
    return value


def to_ethertype(attr: str, value: Any) -> str:
    if isinstance(value, str) and value.lower() in ("ipv4", "ipv6"):
        return "IPv4" if value.lower() == "ipv4" else "IPv6"
    raise _bad(attr, f"'{value}' is not in ['IPv4', 'IPv6']")


def to_protocol(attr: str, value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if isinstance(value, str):
        text = value.lower()
        if text in PROTOCOLS:
            return None if text == "any" else text
        if text.isdigit() and 0 <= int(text) <= 255:
            return str(int(text))
    raise errors.InvalidSecurityGroupRule(
        reason=f"protocol '{value}' is not supported; only protocol values {sorted(PROTOCOLS)} "
               f"and integer representations [0 to 255] are supported")


IPV6_MODES = ("dhcpv6-stateful", "dhcpv6-stateless", "slaac")  # topology.model.ipam names them too


def to_ipv6_mode(attr: str, value: Any) -> str | None:
    """ipv6_ra_mode / ipv6_address_mode: one of Neutron's three modes, or None."""
    if value is None:
        return None
    if value not in IPV6_MODES:
        raise _bad(attr, f"'{value}' is not in {list(IPV6_MODES)}")
    return value


def to_datapath_id(attr: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, str) and value.lower().startswith("0x"):
        dpid = to_int(attr, value)
    elif isinstance(value, str) and len(value) == 16:
        try:
            dpid = int(value, 16)
        except ValueError:
            raise _bad(attr, f"'{value}' is not a datapath id") from None
    else:
        dpid = to_int(attr, value)
    if not 0 <= dpid < 2 ** 64:
        raise _bad(attr, f"'{value}' is out of the 64-bit range")
    return dpid


# ---- attribute specs --------------------------------------------------------------------
@dataclass(frozen=True)
class Attr:
    post: bool = True
    put: bool = True
    convert: Converter | None = None
    default: Any = MISSING    # MISSING: the service fills it; REQUIRED: must be given on POST
    admin: bool = False       # only admins may set it (to a non-default value)


RO = Attr(post=False, put=False)
_COMMON = {
    "id": Attr(post=True, put=False, convert=to_uuid),
    "tenant_id": Attr(post=True, put=False, convert=to_str),
    "project_id": Attr(post=True, put=False, convert=to_str),
    "description": Attr(convert=to_long_str, default=""),
    "created_at": RO, "updated_at": RO, "revision_number": RO, "tags": RO,
}

SPECS: dict[str, dict[str, Attr]] = {
    NETWORK: {
        **_COMMON,
        "name": Attr(convert=to_str, default=""),
        "admin_state_up": Attr(convert=to_bool, default=True),
        "shared": Attr(convert=to_bool, default=False, admin=True),
        "status": RO, "subnets": RO,
        "mtu": Attr(convert=to_int),
        "router:external": Attr(convert=to_bool, default=False, admin=True),
        "provider:network_type": Attr(put=False, convert=to_str, admin=True),
        "provider:physical_network": Attr(put=False, convert=lambda a, v: None if v is None else to_str(a, v),
                                          admin=True),
        "provider:segmentation_id": Attr(put=False, convert=to_int_or_none, admin=True),
        "port_security_enabled": Attr(convert=to_bool, default=True),
        "availability_zone_hints": Attr(put=False, convert=to_str_list, default=[]),
        "availability_zones": RO, "ipv4_address_scope": RO, "ipv6_address_scope": RO, "is_default": RO,
        "qos_policy_id": Attr(convert=to_uuid_or_none, default=None),  # resources/qos.py
    },
    SUBNET: {
        **_COMMON,
        "name": Attr(convert=to_str, default=""),
        "network_id": Attr(put=False, convert=to_uuid, default=REQUIRED),
        "ip_version": Attr(put=False, convert=to_int),
        "cidr": Attr(put=False, convert=to_cidr, default=REQUIRED),
        "gateway_ip": Attr(convert=to_ip_or_none),
        "allocation_pools": Attr(convert=to_pools),
        "dns_nameservers": Attr(convert=to_ip_list, default=[]),
        "host_routes": Attr(convert=to_routes, default=[]),
        "enable_dhcp": Attr(convert=to_bool, default=True),
        "ipv6_ra_mode": Attr(put=False, convert=to_ipv6_mode, default=None),
        "ipv6_address_mode": Attr(put=False, convert=to_ipv6_mode, default=None),
        "subnetpool_id": Attr(put=False, convert=lambda a, v: v if v is None else to_uuid(a, v), default=None),
        "segment_id": Attr(convert=lambda a, v: v if v is None else to_uuid(a, v), default=None),
        "service_types": Attr(convert=to_str_list, default=[]),
        "use_default_subnetpool": Attr(put=False, convert=to_bool),
        "prefixlen": Attr(put=False, convert=to_int),
        "dns_publish_fixed_ip": Attr(convert=to_bool),
    },
    PORT: {
        **_COMMON,
        "name": Attr(convert=to_str, default=""),
        "network_id": Attr(put=False, convert=to_uuid, default=REQUIRED),
        "admin_state_up": Attr(convert=to_bool, default=True),
        "mac_address": Attr(convert=to_mac),
        "fixed_ips": Attr(convert=to_fixed_ips),
        "device_id": Attr(convert=to_str, default=""),
        "device_owner": Attr(convert=to_str, default=""),
        "status": RO,
        "security_groups": Attr(convert=to_uuid_list),
        "port_security_enabled": Attr(convert=to_bool),
        "allowed_address_pairs": Attr(convert=to_address_pairs, default=[]),
        "binding:host_id": Attr(convert=lambda a, v: "" if v is None else to_str(a, v), default="", admin=True),
        "binding:profile": Attr(convert=to_dict, default={}),
        "binding:vnic_type": Attr(convert=to_str, default="normal"),
        "binding:vif_type": RO, "binding:vif_details": RO,
        "qos_policy_id": Attr(convert=to_uuid_or_none, default=None),  # resources/qos.py
        "extra_dhcp_opts": Attr(convert=lambda a, v: [] if v is None else _dict_list(
            a, v, {"opt_name": (to_str, True), "opt_value": (to_str, False), "ip_version": (to_int, False)}),
            default=[]),
    },
    ROUTER: {
        **_COMMON,
        "name": Attr(convert=to_str, default=""),
        "admin_state_up": Attr(convert=to_bool, default=True),
        "status": RO,
        "external_gateway_info": Attr(convert=to_gateway_info, default=None),
        "routes": Attr(convert=to_routes, default=[]),
        "distributed": Attr(convert=to_bool, default=True, admin=True),
        "ha": Attr(convert=to_bool, default=False, admin=True),
        "availability_zone_hints": Attr(put=False, convert=to_str_list, default=[]),
        "availability_zones": RO, "flavor_id": RO,
    },
    FLOATINGIP: {
        **_COMMON,
        "floating_ip_address": Attr(put=False, convert=to_ip),
        "floating_network_id": Attr(put=False, convert=to_uuid, default=REQUIRED),
        "subnet_id": Attr(put=False, convert=to_uuid_or_none),
        "port_id": Attr(convert=to_uuid_or_none, default=None),
        "fixed_ip_address": Attr(convert=to_ip_or_none, default=None),
        "router_id": RO, "status": RO, "port_details": RO,
        "dns_name": RO, "dns_domain": RO, "qos_policy_id": RO, "port_forwardings": RO,
    },
    SECURITY_GROUP: {
        **_COMMON,
        "name": Attr(convert=to_str, default=""),
        "stateful": Attr(put=False, convert=to_bool, default=True),
        "security_group_rules": RO, "shared": RO,
    },
    SECURITY_GROUP_RULE: {
        **_COMMON,
        "security_group_id": Attr(put=False, convert=to_uuid, default=REQUIRED),
        "direction": Attr(put=False, convert=to_direction, default=REQUIRED),
        "ethertype": Attr(put=False, convert=to_ethertype, default="IPv4"),
        "protocol": Attr(put=False, convert=to_protocol, default=None),
        "port_range_min": Attr(put=False, convert=to_int_or_none, default=None),
        "port_range_max": Attr(put=False, convert=to_int_or_none, default=None),
        "remote_ip_prefix": Attr(put=False, convert=to_cidr_or_none, default=None),
        "remote_group_id": Attr(put=False, convert=to_uuid_or_none, default=None),
        "remote_address_group_id": Attr(put=False, convert=lambda a, v: v if v is None else to_uuid(a, v),
                                        default=None),
        "normalized_cidr": RO, "belongs_to_default_sg": RO,
    },
    CHASSIS: {
        "id": Attr(post=True, put=False, convert=to_uuid),
        "name": Attr(convert=to_str, default=REQUIRED),
        "datapath_id": Attr(convert=to_datapath_id, default=None),
        "tunnel_ip": Attr(convert=to_ip_or_none, default=None),
        "bridge_mappings": Attr(convert=to_str_dict, default={}),
        "description": Attr(convert=to_long_str, default=""),
        "created_at": RO, "updated_at": RO, "revision_number": RO,
    },
}


def defaults(kind: str) -> dict[str, Any]:
    """The attributes of `kind` that have a default value, each a fresh copy (a record may mutate
    its lists); MISSING (the service decides) and REQUIRED attributes are left out."""
    return {name: copy.deepcopy(attr.default) for name, attr in SPECS[kind].items()
            if attr.default is not MISSING and attr.default is not REQUIRED}


def given_or_default(kind: str, body: dict[str, Any], skip: Iterable[str] = ()) -> dict[str, Any]:
    """Each attribute of `kind` that has a default: the request's value, else the default — how a
    create fills them. `skip` names those the service sets itself (already set, or computed)."""
    skipped = set(skip)
    return {name: body[name] if name in body else _fresh(attr.default) for name, attr in SPECS[kind].items()
            if attr.default is not MISSING and attr.default is not REQUIRED and name not in skipped}


def _fresh(default: Any) -> Any:
    """A default as `defaults` gives it: a copy, unless it cannot be mutated anyway."""
    kind = type(default)
    if kind in (str, int, bool, float, type(None)):
        return default
    if kind in (list, dict) and not default:
        return kind()
    return copy.deepcopy(default)


def check_body(spec: dict[str, Any], kind: str, body: Any, *, update: bool) -> dict[str, Any]:
    """Generic checks and conversion of a POST/PUT body against `spec` (unknown, read-only,
    create-only, required attributes) with Neutron's 400 wording."""
    if not isinstance(body, dict):
        raise errors.BadRequest(f"Body of a {kind} must be a JSON object.")
    unknown = sorted(set(body) - set(spec))
    if unknown:
        raise errors.HTTPBadRequest(f"Unrecognized attribute(s) '{', '.join(unknown)}'")
    out: dict[str, Any] = {}
    for name, value in body.items():
        attr = spec[name]
        if update and not attr.put:
            raise errors.BadRequest(f"Cannot update read-only attribute {name}")
        if not update and not attr.post:
            raise errors.BadRequest(f"Attribute '{name}' not allowed in POST")
        out[name] = attr.convert(name, value) if attr.convert else value
    if not update:
        for name, attr in spec.items():
            if attr.default is REQUIRED and name not in out:
                raise errors.BadRequest(f"Failed to parse request. Required attribute '{name}' not specified")
    return out


def prepare(kind: str, body: Any, *, update: bool) -> dict[str, Any]:
    """Generic checks and conversion of a POST/PUT body; defaults are filled in by the service."""
    out = check_body(SPECS[kind], kind, body, update=update)
    if "tenant_id" in out and "project_id" in out and out["tenant_id"] != out["project_id"]:
        raise errors.BadRequest("'project_id' and 'tenant_id' do not match")
    return out
