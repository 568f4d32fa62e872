"""`tenantflow status`: is the control plane doing its job? One screen for an operator.

Why from the stats endpoint: the running controller is the only one who knows which switches are
connected, in which role, what it wants on them and what it believes they hold; the store's
revision beside the applied one gives the feed lag. `--check` makes it a health probe (exit 3
when a datapath is unhealthy or disconnected) for scripts and monitoring.
"""
from __future__ import annotations

import argparse
import json
from typing import Any

PATH = "/v2.0/tenantflow/stats"


def rows(stats: dict[str, Any]) -> list[dict[str, Any]]:
    owners = (stats.get("ha") or {}).get("owners") or {}
    out = []
    for dpid, d in sorted(stats.get("datapaths", {}).items(), key=lambda kv: str(kv[1].get("chassis") or kv[0])):
        problems = d.get("problems") or []
        master = bool(d.get("master", True))
        out.append({"chassis": d.get("chassis") or "-", "datapath": dpid,
                    "connected": bool(d.get("connected")), "role": "master" if master else "slave",
                    "owner": (owners.get(dpid) or {}).get("owner") or "this",
                    "desired": d.get("desired_flows", 0), "installed": d.get("installed_flows", 0),
                    "healthy": bool(d.get("healthy", True)) or not master,   # a slave sends nothing
                    "last_error": problems[0] if problems and master else (d.get("last_error") or "")})
    return out


def controllers(stats: dict[str, Any]) -> list[dict[str, Any]]:
    """With several controllers (etcd): each member and the chassis it owns, from this one's view."""
    ha = stats.get("ha") or {}
    if ha.get("mode") != "etcd":
        return []
    names = {dpid: d.get("chassis") or dpid for dpid, d in stats.get("datapaths", {}).items()}
    out = []
    for member in ha.get("members") or []:
        owned = sorted(names.get(dpid, dpid) for dpid, o in (ha.get("owners") or {}).items()
                       if o.get("owner") == member)
        out.append({"id": member, "this": member == ha.get("member_id"), "chassis": owned})
    return out


def summary(stats: dict[str, Any]) -> dict[str, Any]:
    applied = stats.get("revision", 0)
    head = stats.get("store_revision")
    return {"applied_revision": applied, "store_revision": head,
            "feed_lag": None if head is None else max(0, head - applied),
            "batches": stats.get("batches", 0), "check_failures": stats.get("check_failures", 0),
            "controllers": controllers(stats), "idle": stats.get("idle")}


def render(stats: dict[str, Any]) -> str:
    s = summary(stats)
    lag = "unknown (store unavailable)" if s["feed_lag"] is None else str(s["feed_lag"])
    lines = [f"store revision {s['store_revision']}, applied {s['applied_revision']}, feed lag {lag}; "
             f"{s['batches']} batches, {s['check_failures']} check-mode differences"]
    for c in s["controllers"]:
        lines.append(f"controller {c['id']}{' (this one)' if c['this'] else ''}: owns "
                     f"{', '.join(c['chassis']) or 'no chassis'}")
    table = rows(stats)
    head = ["CHASSIS", "DATAPATH", "CONNECTED", "ROLE", "OWNER", "DESIRED", "INSTALLED", "HEALTHY", "LAST ERROR"]
    body = [[r["chassis"], r["datapath"], "yes" if r["connected"] else "NO", r["role"], r["owner"], str(r["desired"]),
             str(r["installed"]), "yes" if r["healthy"] else "NO", r["last_error"] or "-"] for r in table]
    widths = [max(len(x) for x in col) for col in zip(head, *body)]
    for line in [head, *body]:
        lines.append("  ".join(x.ljust(w) for x, w in zip(line, widths)).rstrip())
    if not table:
        lines.append("(no switch has connected)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from controller import apiclient
    p = argparse.ArgumentParser(prog="tenantflow status",
                                description="controllers, switches with connection and role, flows desired vs "
                                            "installed, last error, change-feed lag")
    apiclient.add_api_args(p)
    p.add_argument("-f", "--format", choices=("table", "json"), default="table")
    p.add_argument("--check", action="store_true", help="exit 3 when a switch is unhealthy or disconnected")
    a = p.parse_args(argv)
    stats = apiclient.get("tenantflow status", a, PATH, timeout=30)
    if stats is None:
        return 1
    if a.format == "json":
        print(json.dumps({**summary(stats), "switches": rows(stats)}, indent=2))
    else:
        print(render(stats))
    bad = [x for x in rows(stats) if not (x["healthy"] and x["connected"])]
    return 3 if a.check and bad else 0
