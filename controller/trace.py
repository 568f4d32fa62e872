"""`tenantflow trace`: a packet from a port through the running controller's desired flows.

Why through the API: the desired flows of every chassis live in the running controller
(flows/trace.py walks them with the simulator); the CLI asks it, prints the stages with their
owners, and with `--check-switch` asks the real bridge the same question (`ovs-appctl
ofproto/trace`) and says when the two disagree.
"""
from __future__ import annotations

import argparse
import json
import logging
import subprocess
from typing import Any

from controller.inspect import describe_owner, require_admin
from flows import trace

LOG = logging.getLogger(__name__)

PATH = "/v2.0/tenantflow/trace"


def _owner_namer(view):
    cache: dict[int, str] = {}

    def name(ck: int) -> str:
        if ck not in cache:
            o = describe_owner(view, ck)
            label = o.get("name") or o.get("id")
            if o["type"] == "pipeline":
                cache[ck] = "pipeline"
            elif label:
                cache[ck] = f"{o['type']} {label}" + (f" ({o['id']})" if o.get("name") and o.get("id") else "")
            else:
                cache[ck] = f"{o['type']}:{o['key']}"
        return cache[ck]
    return name


def trace_report(core, probe: trace.Probe) -> dict[str, Any]:
    """Trace `probe` on the controller's current desired flows; the JSON the API returns."""
    chassis = [trace.ChassisFlows(e.ctx, tuple(core.desired_flows(e)))
               for e in core.registry.all() if e.ctx is not None and e.reconciler is not None]
    userdata = {ud: getattr(app, "name", "?") for ud, app in core.packet_apps.items()}
    with core.view_lock:
        t = trace.run(core.view, probe, chassis, _owner_namer(core.view), userdata)
    out = t.as_dict()
    start = next(c.ctx for c in chassis if c.ctx.name == t.chassis)
    out["in_port"] = start.local_ports[probe.port_id]
    return out


class TraceResource:
    def __init__(self, core) -> None:
        self.core = core

    def on_get(self, req, resp) -> None:
        import falcon
        require_admin(req, "get_tenantflow_trace")
        try:
            dst_port = req.get_param_as_int("dst_port", min_value=0, max_value=65535)
            probe = trace.Probe(port_id=req.get_param("from_port") or "", dst_ip=req.get_param("dst_ip") or "",
                                src_ip=req.get_param("src_ip"), proto=req.get_param("proto") or "icmp",
                                dst_port=dst_port, dst_mac=req.get_param("dst_mac"))
            if not probe.port_id or not probe.dst_ip:
                raise trace.TraceError("from_port and dst_ip are required")
            resp.media = trace_report(self.core, probe)
        except falcon.HTTPBadRequest as exc:
            resp.status = falcon.HTTP_400
            resp.media = {"NeutronError": {"type": "BadRequest", "message": str(exc.description), "detail": ""}}
        except trace.TraceError as exc:
            resp.status = falcon.HTTP_404 if "not found" in str(exc) else falcon.HTTP_400
            kind = "NotFound" if resp.status == falcon.HTTP_404 else "BadRequest"
            resp.media = {"NeutronError": {"type": kind, "message": str(exc), "detail": ""}}


def routes(core) -> list[tuple[str, object]]:
    return [(PATH, TraceResource(core))]


# ------------------------------------------------------------------------------ the switch's view

_OFCTL_NAMES = {"eth_src": "dl_src", "eth_dst": "dl_dst", "eth_type": "dl_type", "ipv4_src": "nw_src",
                "ipv4_dst": "nw_dst", "ip_proto": "nw_proto", "icmpv4_type": "icmp_type",
                "icmpv4_code": "icmp_code", "tcp_src": "tcp_src", "tcp_dst": "tcp_dst", "udp_src": "udp_src",
                "udp_dst": "udp_dst", "arp_op": "arp_op", "arp_spa": "arp_spa", "arp_tpa": "arp_tpa",
                "arp_sha": "arp_sha", "arp_tha": "arp_tha"}


def ofproto_flow(report: dict[str, Any]) -> str:
    """The probe as an `ovs-appctl ofproto/trace` flow description."""
    pkt = report["packet"]
    parts = [f"in_port={report['in_port']}"]
    for k, name in _OFCTL_NAMES.items():           # prerequisites first: OVS parses left to right
        if k in pkt:
            parts.append(f"{name}={pkt[k]}")
        if k == "ip_proto" and "ip_proto" in pkt:
            parts.append("nw_ttl=64")
    return ",".join(parts)


def _unwrap_sample(tokens: list[str]) -> list[str]:
    """A metered controller action shows as 'sample(sample=100.0%,actions(meter(0),userspace(…)))':
    what counts is the actions inside, not the sample wrapper."""
    out: list[str] = []
    for tok in tokens:
        inner = tok.find("actions(")
        if tok.startswith("sample(") and inner >= 0 and tok.endswith("))"):
            out += _unwrap_sample(_top_level(tok[inner + len("actions("):-2]))
        else:
            out.append(tok)
    return out


def _top_level(actions: str) -> list[str]:
    """Split datapath actions at commas outside parentheses: 'ct(zone=5),recirc(0x1)' → 2 tokens."""
    out, depth, cur = [], 0, ""
    for ch in actions:
        if ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
            continue
        depth += (ch == "(") - (ch == ")")
        cur += ch
    return [t for t in out + [cur.strip()] if t]


_NOT_AN_OUTPUT = ("ct(", "ct_clear", "recirc(", "set(", "push_", "pop_", "drop", "meter(")


def switch_verdict(text: str) -> str:
    """drop | controller | forwarded, from ofproto/trace output.

    Every "Datapath actions:" section counts (recirculation after conntrack adds one); a packet is
    forwarded when some action outputs it (a port number, a tunnel push, a clone), sent to the
    controller when an OpenFlow controller action ran and nothing outputs it, dropped otherwise."""
    tokens = [tok for ln in text.splitlines() if ln.startswith("Datapath actions:")
              for tok in _unwrap_sample(_top_level(ln.split(":", 1)[1]))]
    outputs = [t for t in tokens if not t.startswith(_NOT_AN_OUTPUT)]
    if any(not t.startswith("userspace(") for t in outputs):
        return "forwarded"
    if outputs or "controller(" in text or "CONTROLLER" in text:
        return "controller"
    return "drop"


def agrees(kind: str, switch: str) -> bool:
    want = {"delivered": "forwarded", "answered": "forwarded", "external": "forwarded", "dropped": "drop",
            "controller": "controller"}
    return want.get(kind) == switch


# ------------------------------------------------------------------------------------ CLI

def main(argv: list[str] | None = None) -> int:
    from controller import apiclient
    p = argparse.ArgumentParser(prog="tenantflow trace",
                                description="push a packet from a port through the controller's desired flows")
    p.add_argument("--from-port", required=True, help="port id the packet comes from")
    p.add_argument("--dst-ip", required=True)
    p.add_argument("--src-ip", help="default: the port's first IPv4 address")
    p.add_argument("--proto", default="icmp", choices=("icmp", "tcp", "udp", "arp"))
    p.add_argument("--dst-port", type=int, help="tcp/udp destination port (default 80)")
    p.add_argument("--dst-mac", help="default: what the VM would resolve (the destination or its router)")
    p.add_argument("--chassis", help="only show the stages on this chassis")
    p.add_argument("--check-switch", action="store_true",
                   help="also run ovs-appctl ofproto/trace on this host's bridge and compare")
    p.add_argument("--bridge", default="br-int", help="bridge for --check-switch")
    apiclient.add_api_args(p)
    p.add_argument("-f", "--format", choices=("table", "json"), default="table")
    a = p.parse_args(argv)
    params = {"from_port": a.from_port, "dst_ip": a.dst_ip, "proto": a.proto}
    for k in ("src_ip", "dst_port", "dst_mac"):
        if getattr(a, k) is not None:
            params[k] = getattr(a, k)
    report = apiclient.get("tenantflow trace", a, PATH, params)
    if report is None:
        return 1
    rc = 0
    if a.check_switch:
        flow = ofproto_flow(report)
        res = subprocess.run(["ovs-appctl", "ofproto/trace", a.bridge, flow], capture_output=True, text=True,
                             timeout=30, check=False)
        if res.returncode != 0:
            report["switch"] = {"flow": flow, "error": res.stderr.strip()}
            rc = 1
        else:
            verdict = switch_verdict(res.stdout)
            report["switch"] = {"flow": flow, "verdict": verdict, "agrees": agrees(report["kind"], verdict)}
            rc = 0 if report["switch"]["agrees"] else 4
    if a.format == "json":
        print(json.dumps(report, indent=2))
        return rc
    print("packet: " + " ".join(f"{k}={v}" for k, v in report["packet"].items()))
    for s in report["stages"]:
        if a.chassis and s["chassis"] != a.chassis:
            continue
        what = s["flow"] or "MISS"
        owner = f"  [{s['owner']}]" if s["owner"] else ""
        print(f"{s['chassis']:>8} {'  ' * s['depth']}{s['table']:>3} {s['stage']:<15} {what}{owner}")
    sw = report.get("switch")
    if sw:
        if "error" in sw:
            print(f"switch: ofproto/trace failed: {sw['error']}")
        else:
            print(f"switch: {sw['verdict']} ({'agrees' if sw['agrees'] else 'DISAGREES'})  ofproto/trace {sw['flow']}")
    print(f"verdict: {report['verdict']}")
    return rc
