"""Flow inspection: API routes (mounted into the Neutron API) and `tenantflow flows`.

Why through the API: the desired state lives in the running controller, so the CLI asks it
rather than recomputing; `--diff` makes the controller read the switch's flows and meters afresh
and compare them with what it wants, which is how drift or a rejected flow or meter is spotted.
"""
from __future__ import annotations

import argparse
import json
import logging

from flows.tables import (METER_KEY_SPAN, OWNER_SHIFT, STORE_KIND, MeterPurpose, Owner, cookie, owner_label,
                          split_cookie)

LOG = logging.getLogger(__name__)

# CLI/API owner type → (cookie kind, store kind): every store kind that owns flows (flows.tables.STORE_KIND,
# from the one resource table) under its own name, plus the pipeline and the short alias `sg`.
OWNER_KINDS: dict[str, tuple[Owner, str | None]] = {
    "pipeline": (Owner.PIPELINE, None),
    **{skind: (okind, skind) for okind, skind in STORE_KIND.items()},
    "sg": (Owner.SECGROUP, STORE_KIND[Owner.SECGROUP]),
}


def describe_owner(view, ck: int) -> dict:
    kind, key = split_cookie(ck)
    out = {"type": owner_label(ck).partition(":")[0], "key": key, "cookie": f"{ck:#x}"}
    skind = STORE_KIND.get(kind) if kind is not None else None
    if skind is not None and view is not None:
        try:
            rec = view.by_key(skind, key)
        except (KeyError, AttributeError):
            rec = None
        if rec is not None:
            out["id"] = rec.get("id")
            out["name"] = rec.get("name")
    return out


def _installed_text(key: tuple, body: tuple) -> str:
    from flows.flow import Flow
    table, priority, match = key
    ck, idle, hard, instr = body
    text = Flow(table, priority, match, (), ck, idle, hard).ofctl()
    return text.rsplit(" actions=", 1)[0] + f" instructions={instr.hex() or 'drop'}"


def require_admin(req, action: str) -> None:
    """The controller's own views (flows, stats, trace) show every tenant's objects: admin only,
    like Neutron's admin-only APIs. No request context at all is refused too (fail closed)."""
    from topology.model.errors import PolicyNotAuthorized
    ctx = getattr(req.context, "ctx", None)
    if ctx is None or not getattr(ctx, "is_admin", False):
        raise PolicyNotAuthorized(action=action)


def desired_meters(flows) -> dict[int, tuple]:
    """{meter id: band} the flows declare (flows/qos.py: a meter is declared by the flows using it),
    resolved as controller.reconciler.MeterTable does: within an owner the smaller band, across
    owners the lowest owner's. From the flows, so a chassis compiled elsewhere (HA) works too."""
    from flows.qos import METER_TYPES
    by_owner: dict[int, dict[int, tuple]] = {}
    for f in flows:
        for a in f.actions:
            if type(a) in METER_TYPES:
                bands = by_owner.setdefault(f.cookie, {})
                have = bands.get(a.meter_id)
                bands[a.meter_id] = a.band if have is None else min(have, a.band)
    out: dict[int, tuple] = {}
    for owner in sorted(by_owner):
        for mid, band in by_owner[owner].items():
            out.setdefault(mid, band)
    return out


def meter_owner(mid: int) -> int:
    """The cookie of the owner a meter id belongs to (flows.tables.MeterPurpose: purpose * span + key)."""
    purpose, key = divmod(mid, METER_KEY_SPAN)
    return cookie(Owner.NETWORK if purpose == MeterPurpose.ARP_PUNT else Owner.PORT, key)


def meter_text(mid: int, band: tuple | None) -> str:
    """A meter as `ovs-ofctl -O OpenFlow13 dump-meters` spells it (None: not one drop band)."""
    if band is None:
        return f"meter={mid} (not a single drop band)"
    flags, rate, burst = band
    unit = "kbps" if flags & 1 else "pktps"
    return f"meter={mid} {unit}{' burst' if flags & 4 else ''} bands=type=drop rate={rate} burst_size={burst}"


def meters_diff(want: dict[int, tuple], installed: dict[int, tuple | None], owner: int | None = None) -> dict:
    """Desired vs installed meters like the flows' diff; with `owner`, only the meters of its ids."""
    missing = [meter_text(mid, band) for mid, band in sorted(want.items()) if mid not in installed]
    changed = [{"desired": meter_text(mid, band), "installed": meter_text(mid, installed[mid])}
               for mid, band in sorted(want.items()) if mid in installed and installed[mid] != band]
    extra = [meter_text(mid, band) for mid, band in sorted(installed.items())
             if mid not in want and (owner is None or meter_owner(mid) == owner)]
    return {"missing": missing, "changed": changed, "extra": extra}


class _Error(Exception):
    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message


def flows_report(core, chassis: str, owner_type: str | None = None, owner_id: str | None = None,
                 diff: bool = False) -> dict:
    entry = core.registry.by_chassis(chassis)
    if entry is None:
        raise _Error(404, "ChassisNotFound", f"no connected chassis named {chassis!r}")
    rec = entry.reconciler
    owner = None
    if owner_type:
        if owner_type not in OWNER_KINDS:
            raise _Error(400, "BadRequest", f"owner_type must be one of {sorted(OWNER_KINDS)}")
        kind, skind = OWNER_KINDS[owner_type]
        if skind is None:
            owner = cookie(kind, int(owner_id or 0))
        else:
            with core.view_lock:
                obj = core.view.get(skind, owner_id) if owner_id else None
            if obj is None or "_key" not in obj:
                raise _Error(404, "NotFound", f"{owner_type} {owner_id} not found")
            owner = cookie(kind, int(obj["_key"]))
    flows = core.desired_flows(entry, owner)
    with core.view_lock:
        owners = {f.cookie: describe_owner(core.view, f.cookie) for f in flows}
    out = {"chassis": chassis, "datapath_id": f"{entry.dpid:016x}", "connected": entry.connected,
           "flows": [{"flow": f.ofctl(), "owner": owners[f.cookie]} for f in flows]}
    if diff:
        if not entry.connected:
            raise _Error(409, "Conflict", f"chassis {chassis} is not connected")
        installed = rec.read_installed()
        want = {f.key: f for f in (flows if owner is not None else core.desired_flows(entry))}
        missing, changed, extra = [], [], []
        for key, f in want.items():
            have = installed.get(key)
            if have is None:
                missing.append(f.ofctl())
            elif have != rec.encoder.body(f):
                changed.append({"desired": f.ofctl(), "installed": _installed_text(key, have)})
        for key, body in installed.items():
            if key in want:
                continue
            if owner is not None and body[0] != owner:
                continue
            if (body[0] >> OWNER_SHIFT) == Owner.LEARNED:
                continue
            extra.append(_installed_text(key, body))
        meters = meters_diff(desired_meters(want.values()), rec.read_installed_meters(), owner)
        out["diff"] = {"missing": missing, "changed": changed, "extra": sorted(extra), "meters": meters,
                       "in_sync": not (missing or changed or extra or any(meters.values()))}
    return out


class FlowsResource:
    def __init__(self, core) -> None:
        self.core = core

    def on_get(self, req, resp) -> None:
        import falcon
        require_admin(req, "get_tenantflow_flows")
        chassis = req.get_param("chassis")
        try:
            if not chassis:
                raise _Error(400, "BadRequest", "chassis is required")
            body = flows_report(self.core, chassis, req.get_param("owner_type"), req.get_param("owner_id"),
                                req.get_param_as_bool("diff") or False)
        except _Error as exc:
            resp.status = falcon.code_to_http_status(exc.status)
            resp.media = {"NeutronError": {"type": exc.kind, "message": exc.message, "detail": ""}}
            return
        except Exception as exc:  # noqa: BLE001 — e.g. switch did not answer the flow-stats read
            LOG.exception("flows report for %s failed", chassis)
            resp.status = falcon.HTTP_503
            resp.media = {"NeutronError": {"type": "ServiceUnavailable", "message": str(exc), "detail": ""}}
            return
        resp.media = body


class StatsResource:
    def __init__(self, core, dispatcher=None) -> None:
        self.core = core
        self.dispatcher = dispatcher

    def on_get(self, req, resp) -> None:
        require_admin(req, "get_tenantflow_stats")
        out = self.core.stats()
        d = self.dispatcher
        if d is not None:
            out["dispatch"] = {"handled": d.handled, "errors": d.errors, "dropped": d.dropped,
                               "unknown": d.unknown}
        try:
            out["store_revision"] = self.core.store.revision()   # beside "revision" (applied): the feed lag
        except Exception as exc:  # noqa: BLE001 — the store being away is shown, not raised
            LOG.warning("stats: store revision unavailable: %s", exc)
            out["store_revision"] = None
        resp.media = out


def routes(core, dispatcher=None) -> list[tuple[str, object]]:
    return [("/v2.0/tenantflow/flows", FlowsResource(core)),
            ("/v2.0/tenantflow/stats", StatsResource(core, dispatcher))]


# ------------------------------------------------------------------------------------ CLI

def main(argv: list[str] | None = None) -> int:
    from controller import apiclient
    p = argparse.ArgumentParser(prog="tenantflow flows", description="desired flows of a chassis, with owners")
    p.add_argument("--chassis", required=True)
    p.add_argument("--owner", nargs=2, metavar=("TYPE", "ID"),
                   help="port|network|router|sg|floatingip|chassis and the object's id")
    p.add_argument("--diff", action="store_true", help="compare with the flows and meters installed on the switch")
    apiclient.add_api_args(p)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    params = {"chassis": args.chassis}
    if args.owner:
        params["owner_type"], params["owner_id"] = args.owner
    if args.diff:
        params["diff"] = "true"
    body = apiclient.get("tenantflow flows", args, "/v2.0/tenantflow/flows", params, timeout=90)
    if body is None:
        return 1
    if args.json:
        print(json.dumps(body, indent=2))
        return 0
    if not args.diff:
        for item in body["flows"]:
            o = item["owner"]
            label = " ".join(str(x) for x in (o["type"], o.get("id") or o.get("key"), o.get("name") or "") if x)
            print(f"{item['flow']}  # {label}")
        return 0
    d = body["diff"]
    m = d.get("meters") or {"missing": [], "changed": [], "extra": []}  # an older controller: flows only
    # counts first (a big drift is thousands of lines), then the lines; "in sync" stays the last line
    if not d["in_sync"]:
        print(f"{len(d['missing'])} missing, {len(d['changed'])} changed, {len(d['extra'])} extra; meters: "
              f"{len(m['missing'])} missing, {len(m['changed'])} changed, {len(m['extra'])} extra")
    for diff in (d, m):
        for f in diff["missing"]:
            print(f"+ {f}")
        for c in diff["changed"]:
            print(f"~ {c['desired']}\n    installed: {c['installed']}")
        for f in diff["extra"]:
            print(f"- {f}")
    if d["in_sync"]:
        print("in sync")
    return 0 if d["in_sync"] else 3
