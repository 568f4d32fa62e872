"""What the metadata service answers a VM, built from the API's lookup of its port (pure).

Input: the `/v2.0/tenantflow/metadata/ports/{key}` document (port, network, subnets, instance) and
the VM's address. Output: (status, content type, body) per path, in the OpenStack layout Nova
serves (/openstack/<version>/meta_data.json, network_data.json, user_data, vendor_data.json)
and the EC2 one (/<version>/meta-data/..., /<version>/user-data). Any version name answers like
`latest` (cloud-init asks for dated versions it knows). Proxy mode's signature is here too.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import json
from dataclasses import dataclass
from typing import Any

from flows.services import hostname_for

Record = dict[str, Any]

OPENSTACK_VERSIONS = ("2012-08-10", "2013-04-04", "2013-10-17", "2015-10-15", "2016-06-30", "2016-10-06",
                      "2017-02-22", "2018-08-27", "latest")
EC2_VERSIONS = ("1.0", "2007-01-19", "2007-03-01", "2007-08-29", "2007-10-10", "2007-12-15", "2008-02-01",
                "2008-09-01", "2009-04-04", "latest")
OPENSTACK_FILES = ("meta_data.json", "network_data.json", "user_data", "vendor_data.json", "vendor_data2.json")

TEXT = "text/plain; charset=utf-8"
JSON = "application/json"
OCTETS = "application/octet-stream"


def instance_signature(instance_id: str, secret: str) -> str:
    """X-Instance-ID-Signature: HMAC-SHA256 of the instance id with the shared secret (hex), as
    Neutron's metadata agent signs and Nova's metadata API checks."""
    return hmac.new(secret.encode(), instance_id.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Who:
    """The asking VM, resolved: its port document and the address it asked from."""
    doc: Record          # {"port", "network", "subnets", "instance"}
    ip: str              # the VM's own address (the fixed IP the request came from)
    availability_zone: str = "nova"

    @property
    def port(self) -> Record:
        return self.doc.get("port") or {}

    @property
    def instance_id(self) -> str:
        return str(self.port.get("device_id") or "")

    @property
    def project_id(self) -> str:
        return str(self.port.get("project_id") or self.port.get("tenant_id") or "")

    @property
    def hostname(self) -> str:
        return hostname_for(self.port, self.ip)

    @property
    def public_keys(self) -> dict[str, str]:
        inst = self.doc.get("instance") or {}
        keys = inst.get("public_keys") or {}
        return {str(k): str(v) for k, v in sorted(keys.items())} if isinstance(keys, dict) else {}

    @property
    def user_data(self) -> bytes | None:
        inst = self.doc.get("instance") or {}
        ud = inst.get("user_data")
        if not ud:
            return None
        try:
            return base64.b64decode(str(ud).encode("ascii"), validate=True)
        except (binascii.Error, ValueError, UnicodeEncodeError):
            return None


def meta_data(who: Who) -> Record:
    keys = who.public_keys
    return {"uuid": who.instance_id, "name": who.port.get("name") or who.hostname, "hostname": who.hostname,
            "project_id": who.project_id, "availability_zone": who.availability_zone, "launch_index": 0,
            "public_keys": keys, "keys": [{"name": n, "type": "ssh", "data": k} for n, k in keys.items()],
            "devices": [], "meta": {}}


def network_data(who: Who) -> Record:
    """Nova's network_data.json: one link (the port), one network per fixed IP, DNS services."""
    port, net = who.port, who.doc.get("network") or {}
    link_id = "tap" + str(port.get("id", ""))[:11]
    link: Record = {"id": link_id, "vif_id": port.get("id"), "type": "ovs",
                    "ethernet_mac_address": (port.get("mac_address") or "").lower()}
    if isinstance(net.get("mtu"), int):
        link["mtu"] = net["mtu"]
    subnets = {s.get("id"): s for s in who.doc.get("subnets") or ()}
    networks, dns = [], []
    for i, fip in enumerate(port.get("fixed_ips") or ()):
        sn = subnets.get(fip.get("subnet_id"))
        if sn is None:
            continue
        try:
            cidr = ipaddress.ip_network(sn.get("cidr"), strict=False)
        except (TypeError, ValueError):
            continue
        v6 = cidr.version == 6
        entry: Record = {"id": f"network{i}", "link": link_id, "network_id": net.get("id") or port.get("network_id"),
                         "type": ("ipv6" if v6 else "ipv4") + ("_dhcp" if sn.get("enable_dhcp", True) and not v6
                                                                  else ""),
                         "ip_address": fip.get("ip_address"), "netmask": str(cidr.netmask), "routes": []}
        gw = sn.get("gateway_ip")
        if gw:
            entry["routes"].append({"network": "::" if v6 else "0.0.0.0", "netmask": "::" if v6 else "0.0.0.0",
                                    "gateway": gw})
        for hr in sn.get("host_routes") or ():
            try:
                dest = ipaddress.ip_network(hr.get("destination"), strict=False)
            except (TypeError, ValueError):
                continue
            entry["routes"].append({"network": str(dest.network_address), "netmask": str(dest.netmask),
                                    "gateway": hr.get("nexthop")})
        dns += [d for d in sn.get("dns_nameservers") or () if d not in dns]
        networks.append(entry)
    return {"links": [link], "networks": networks, "services": [{"type": "dns", "address": d} for d in dns]}


def _listing(items: list[str] | tuple[str, ...]) -> tuple[int, str, bytes]:
    return 200, TEXT, "\n".join(items).encode()


def _json(doc: Any) -> tuple[int, str, bytes]:
    return 200, JSON, json.dumps(doc, sort_keys=True).encode()


NOT_FOUND = (404, TEXT, b"404 Not Found\n")


def answer(who: Who, path: str) -> tuple[int, str, bytes]:
    """(status, content type, body) for one GET path (query already stripped)."""
    parts = [p for p in path.split("/") if p]
    if not parts:
        return _listing([*EC2_VERSIONS, "openstack"])
    if parts[0] == "openstack":
        return _openstack(who, parts[1:])
    if parts[0] in EC2_VERSIONS or _looks_like_version(parts[0]):
        return _ec2(who, parts[1:])
    return NOT_FOUND


def _looks_like_version(text: str) -> bool:
    return len(text) == 10 and text[4] == "-" and text[7] == "-" and text.replace("-", "").isdigit()


def _openstack(who: Who, parts: list[str]) -> tuple[int, str, bytes]:
    if not parts:
        return _listing(OPENSTACK_VERSIONS)
    if parts[0] not in OPENSTACK_VERSIONS and not _looks_like_version(parts[0]):
        return NOT_FOUND
    rest = parts[1:]
    if not rest:
        return _listing(OPENSTACK_FILES)
    if len(rest) != 1:
        return NOT_FOUND
    name = rest[0]
    if name == "meta_data.json":
        return _json(meta_data(who))
    if name == "network_data.json":
        return _json(network_data(who))
    if name in ("vendor_data.json", "vendor_data2.json"):
        return _json({})
    if name == "user_data":
        ud = who.user_data
        return (200, OCTETS, ud) if ud is not None else NOT_FOUND
    return NOT_FOUND


def _ec2(who: Who, parts: list[str]) -> tuple[int, str, bytes]:
    if not parts:
        return _listing(["meta-data/", "user-data"] if who.user_data is not None else ["meta-data/"])
    if parts[0] == "user-data" and len(parts) == 1:
        ud = who.user_data
        return (200, OCTETS, ud) if ud is not None else NOT_FOUND
    if parts[0] != "meta-data":
        return NOT_FOUND
    keys = list(who.public_keys.items())
    tree: dict[str, Any] = {
        "ami-launch-index": "0", "hostname": who.hostname, "instance-id": who.instance_id,
        "local-hostname": who.hostname, "local-ipv4": who.ip, "mac": (who.port.get("mac_address") or "").lower(),
        "placement": {"availability-zone": who.availability_zone},
        "public-keys": {f"{i}": {"openssh-key": key} for i, (_, key) in enumerate(keys)},
    }
    node: Any = tree
    for name in parts[1:]:
        if node is tree["public-keys"] and "=" in name:
            name = name.split("=", 1)[0]      # EC2 lists key directories as "0=name"
        if not isinstance(node, dict) or name not in node:
            return NOT_FOUND
        node = node[name]
    if isinstance(node, dict):
        if node is tree["public-keys"]:
            return _listing([f"{i}={n}" for i, (n, _) in enumerate(keys)])
        return _listing([k + "/" if isinstance(v, dict) else k for k, v in node.items()])
    return 200, TEXT, str(node).encode()
