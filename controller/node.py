"""`tenantflow node init`: make this node's integration bridge and register it as a chassis.

Idempotent by construction: every setting is read first and written only when it differs, so
a second run changes nothing (no OVSDB transaction, no bridge reconfiguration, no controller
reconnect). It talks to whatever OVS `ovs-vsctl` reaches by default (OVS_RUNDIR selects one).
The datapath id is derived from the chassis name, so re-creating a bridge keeps its identity.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import subprocess
import sys

LOG = logging.getLogger(__name__)

TUNNEL_TYPES = {"vxlan": "tf-vxlan", "gre": "tf-gre", "geneve": "tf-geneve"}


class NodeError(RuntimeError):
    pass


def datapath_id_for(name: str) -> str:
    """16 hex digits, stable per chassis name; 48 significant bits (reads like a MAC)."""
    digest = hashlib.sha256(name.encode()).digest()
    value = int.from_bytes(digest[:6], "big") | 1  # never zero
    return f"{value:016x}"


def default_datapath_type() -> str:
    return "system" if os.path.isdir("/sys/module/openvswitch") else "netdev"


def vsctl(*args: str) -> str:
    cmd = ["ovs-vsctl", "--timeout=10", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise NodeError(f"{' '.join(cmd)}: {proc.stderr.strip()}")
    return proc.stdout.strip()


def _get(table: str, record: str, column: str) -> str | None:
    try:
        return vsctl("--if-exists", "get", table, record, column)
    except NodeError:
        return None


def _unquote(value: str | None) -> str | None:
    if value is None:
        return None
    return value.strip('"')


def ensure_bridge(bridge: str, dp_type: str, dpid: str, controllers: list[str], changes: list[str]) -> None:
    if not _bridge_exists(bridge):
        vsctl("--may-exist", "add-br", bridge, "--", "set", "bridge", bridge, f"datapath_type={dp_type}",
              "fail_mode=secure", "protocols=OpenFlow13", f"other-config:datapath-id={dpid}")
        changes.append(f"created bridge {bridge}")
    wanted = {"datapath_type": dp_type, "fail_mode": "secure", "protocols": '["OpenFlow13"]'}
    sets = []
    for col, val in wanted.items():
        have = _get("bridge", bridge, col)
        if col == "protocols":
            if have != val and have != "[OpenFlow13]":
                sets.append("protocols=OpenFlow13")
        elif _unquote(have) != val:
            sets.append(f"{col}={val}")
    if _unquote(_get("bridge", bridge, "other-config:datapath-id")) != dpid:
        sets.append(f"other-config:datapath-id={dpid}")
    if sets:
        vsctl("set", "bridge", bridge, *sets)
        changes.append(f"bridge {bridge}: {' '.join(sets)}")
    have_ctl = sorted(vsctl("get-controller", bridge).split())
    if controllers and have_ctl != sorted(controllers):
        vsctl("set-controller", bridge, *controllers)
        changes.append(f"bridge {bridge}: controllers {' '.join(controllers)}")
    if controllers:
        ensure_controller_settings(bridge, changes)


# OVS retries a lost controller with exponential backoff up to max_backoff (8 s by default), so a
# restarted controller could wait 8 s for its switches; 1 s keeps restarts and failovers short
# and costs one TCP connect attempt per second while a controller is down.
RECONNECT_MAX_BACKOFF_MS = 1000
# Out-of-band, as Neutron's OVS agent sets on its bridges: the controllers are reached through the
# host's own routes, never through br-int, so OVS installs no hidden in-band flows in the
# datapath (OVS's default, in-band, adds them for whatever path it believes leads to a controller).
CONNECTION_MODE = "out-of-band"
CONTROLLER_SETTINGS = {"max_backoff": str(RECONNECT_MAX_BACKOFF_MS), "connection_mode": CONNECTION_MODE}


def ensure_controller_settings(bridge: str, changes: list[str]) -> None:
    """Every Controller record of the bridge gets CONTROLLER_SETTINGS (one write per record, only
    the columns that differ)."""
    uuids = (_get("bridge", bridge, "controller") or "").strip("[]").replace(",", " ").split()
    for uuid in uuids:
        sets = [f"{col}={val}" for col, val in CONTROLLER_SETTINGS.items()
                if _unquote(_get("controller", uuid, col)) != val]
        if sets:
            vsctl("set", "controller", uuid, *sets)
            changes.append(f"bridge {bridge}: controller {uuid[:8]} {' '.join(sets)}")


def _bridge_exists(bridge: str) -> bool:
    proc = subprocess.run(["ovs-vsctl", "--timeout=10", "br-exists", bridge], capture_output=True)
    return proc.returncode == 0


def _port_bridge(port: str) -> str | None:
    proc = subprocess.run(["ovs-vsctl", "--timeout=10", "port-to-br", port], capture_output=True, text=True)
    return proc.stdout.strip() if proc.returncode == 0 else None


def ensure_tunnel(bridge: str, kind: str, local_ip: str, changes: list[str]) -> None:
    name = TUNNEL_TYPES[kind]
    wanted = {"type": kind, "options:remote_ip": "flow", "options:key": "flow", "options:local_ip": local_ip}
    if _port_bridge(name) != bridge:
        vsctl("--may-exist", "add-port", bridge, name, "--", "set", "interface", name,
              *[f"{k}={v}" for k, v in wanted.items()])
        changes.append(f"added tunnel port {name}")
        return
    sets = [f"{k}={v}" for k, v in wanted.items() if _unquote(_get("interface", name, k)) != v]
    if sets:
        vsctl("set", "interface", name, *sets)
        changes.append(f"tunnel {name}: {' '.join(sets)}")


def ensure_uplink(bridge: str, port: str, changes: list[str]) -> None:
    current = _port_bridge(port)
    if current == bridge:
        return
    if current is not None:
        LOG.warning("uplink %s is on bridge %s, not %s; leaving it", port, current, bridge)
        return
    # No /sys/class/net check: that shows the caller's netns, not necessarily the one OVS runs in.
    vsctl("--may-exist", "add-port", bridge, port)
    changes.append(f"added uplink {port}")
    error = _unquote(_get("interface", port, "error"))
    if error and error != "[]":  # an empty OVSDB set prints as []
        LOG.warning("uplink %s added to %s but OVS reports: %s (create the interface; OVS retries)",
                    port, bridge, error)


def register(url: str, name: str, dpid: str, tunnel_ip: str | None, mappings: dict[str, str],
             token: str | None, changes: list[str]) -> dict:
    import requests
    base = url.rstrip("/")
    if base.endswith("/v2.0"):
        base = base[:-5]
    headers = {"X-Auth-Token": token} if token else {}
    body = {"name": name, "datapath_id": dpid, "tunnel_ip": tunnel_ip, "bridge_mappings": mappings}
    r = requests.get(f"{base}/v2.0/chassis", headers=headers, timeout=30)
    r.raise_for_status()
    every = r.json().get("chassis", [])
    found = [c for c in every if c.get("name") == name]
    if not found:
        # the controller may have auto-registered this bridge under its datapath id already: adopt it
        found = [c for c in every if c.get("datapath_id") is not None
                 and _norm("datapath_id", c["datapath_id"]) == _norm("datapath_id", dpid)]
    if not found:
        r = requests.post(f"{base}/v2.0/chassis", json={"chassis": body}, headers=headers, timeout=30)
        if r.status_code >= 400:
            raise NodeError(f"registering chassis {name}: {r.status_code} {r.text}")
        changes.append(f"registered chassis {name}")
        return r.json().get("chassis", {})
    cur = found[0]
    diff = {k: v for k, v in body.items() if _norm(k, cur.get(k)) != _norm(k, v)}
    if not diff:
        return cur
    r = requests.put(f"{base}/v2.0/chassis/{cur['id']}", json={"chassis": diff}, headers=headers, timeout=30)
    if r.status_code >= 400:
        raise NodeError(f"updating chassis {name}: {r.status_code} {r.text}")
    changes.append(f"updated chassis {name}: {sorted(diff)}")
    return r.json().get("chassis", {})


def _norm(key: str, v):
    """Compare API values loosely: datapath ids as ints (the API may print them as hex), empties as None."""
    if key == "datapath_id" and v is not None:
        return v if isinstance(v, int) else int(str(v), 16)
    return v or None


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["metadata-agent"]:   # long-running, own options: controller/metadata_agent.py
        from controller import metadata_agent
        return metadata_agent.main(argv[1:])
    p = argparse.ArgumentParser(prog="tenantflow node")
    sub = p.add_subparsers(dest="cmd", required=True)
    init = sub.add_parser("init", help="create/configure the integration bridge and register the chassis")
    sub.add_parser("metadata-agent", help="serve 169.254.169.254 to this chassis' VMs (long-running; "
                                          "`tenantflow node metadata-agent --help`)")
    init.add_argument("--name", required=True, help="chassis name")
    init.add_argument("--bridge", default="br-int")
    init.add_argument("--controller", action="append", default=[],
                      help="tcp:HOST:PORT (repeatable: point the bridge at every controller of the cloud; "
                           "one is master, the others slave, see docs/ha.md)")
    init.add_argument("--url", help="API URL, e.g. http://127.0.0.1:9696 (omit to skip registration)")
    init.add_argument("--api-token", default=os.environ.get("TENANTFLOW_API_TOKEN"))
    init.add_argument("--tunnel-ip")
    init.add_argument("--tunnel-type", action="append", choices=sorted(TUNNEL_TYPES),
                      help="tunnel ports to create with --tunnel-ip (default: all)")
    init.add_argument("--bridge-mapping", action="append", default=[], help="PHYSNET:PORT (repeatable)")
    init.add_argument("--datapath-type", choices=("auto", "netdev", "system"), default="auto")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    mappings: dict[str, str] = {}
    for m in args.bridge_mapping:
        physnet, sep, port = m.partition(":")
        if not sep or not physnet or not port:
            p.error(f"--bridge-mapping must be PHYSNET:PORT, got {m!r}")
        mappings[physnet] = port
    dp_type = default_datapath_type() if args.datapath_type == "auto" else args.datapath_type
    dpid = datapath_id_for(args.name)
    changes: list[str] = []
    try:
        # controller last: the chassis record (name, mappings, tunnel IP) should exist before the
        # bridge connects, or the controller auto-registers it under its datapath id first
        ensure_bridge(args.bridge, dp_type, dpid, [], changes)
        if args.tunnel_ip:
            for kind in args.tunnel_type or sorted(TUNNEL_TYPES):
                ensure_tunnel(args.bridge, kind, args.tunnel_ip, changes)
        for port in mappings.values():
            ensure_uplink(args.bridge, port, changes)
        if args.url:
            register(args.url, args.name, dpid, args.tunnel_ip, mappings, args.api_token, changes)
        ensure_bridge(args.bridge, dp_type, dpid, args.controller, changes)
    except (NodeError, OSError) as exc:
        print(f"tenantflow node init: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 — requests errors etc.: one clear line
        print(f"tenantflow node init: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"chassis": args.name, "bridge": args.bridge, "datapath_id": dpid,
                      "datapath_type": dp_type, "changes": changes}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
