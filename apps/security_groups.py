"""Security groups app: conntrack-based groups of local ports (flows.security_groups).

Owners and what they hold on a chassis:
  SECURITY_BASE     conntrack + verdict flows of both directions (same on every chassis)
  port (local)      membership in each of its groups (conjunction clause 1), or the bypass
                    when port security is off
  group (active)    its rules (clause 2), remote-group member IPs (clause 3), verdicts —
                    only where at least one secured member is local
"""
from __future__ import annotations

import logging
from typing import Iterable

from apps.owners import split_owner
from flows import security_groups as sg
from flows.flow import Flow
from flows.port_security import SECURITY_BASE, is_secured, port_cookie
from flows.tables import Owner
from topology.store import PORT, SECURITY_GROUP, SECURITY_GROUP_RULE

log = logging.getLogger(__name__)

REMOTE_INDEX = "secgroup.rule.remote_group"


class ViewGroups:
    """flows.security_groups.GroupIndex over a TopologyView."""

    def __init__(self, view) -> None:
        self.view = view

    def group(self, gid: str):
        return self.view.get(SECURITY_GROUP, gid)

    def rules(self, gid: str):
        return self.view.rules_of_group(gid)

    def members(self, gid: str):
        return self.view.ports_of_group(gid)


def _referencing_groups(view, gid: str) -> set[str]:
    """Groups with a rule whose remote_group_id is `gid` (their flows hold gid's member IPs)."""
    try:
        rules = view.find(REMOTE_INDEX, gid)
    except KeyError:
        view.add_index(SECURITY_GROUP_RULE, REMOTE_INDEX, lambda r: [r.get("remote_group_id")])
        rules = view.find(REMOTE_INDEX, gid)
    return {r["security_group_id"] for r in rules}


def _group_cookies(view, gids: Iterable[str]) -> set[int]:
    out = set()
    for gid in gids:
        rec = view.get(SECURITY_GROUP, gid)
        if rec is not None and rec.get("_key") is not None:
            out.add(sg.group_cookie(rec))
    return out


def _member_cookies(view, gid: str) -> set[int]:
    return {port_cookie(p) for p in view.ports_of_group(gid) if p.get("_key") is not None}


def group_active(view, ctx, gid: str) -> bool:
    """A group has flows on a chassis where one of its secured members is plugged in."""
    local = ctx.local_ports
    members = view.ports_of_group(gid)
    if len(members) <= len(local):
        return any(p["id"] in local and is_secured(p) for p in members)
    for pid in local:
        p = view.port(pid)
        if p is not None and gid in (p.get("security_groups") or ()) and is_secured(p):
            return True
    return False


class SecurityGroupsApp:
    name = "security_groups"

    def owners_for_change(self, view, change) -> Iterable[int]:
        owners: set[int] = set()
        recs = [r for r in (change.old, change.new) if r is not None]
        if change.kind == PORT:
            gids: set[str] = set()
            for r in recs:
                if r.get("_key") is not None:
                    owners.add(port_cookie(r))
                gids.update(r.get("security_groups") or ())
            for gid in list(gids):
                gids |= _referencing_groups(view, gid)  # they hold this port's IPs
            owners |= _group_cookies(view, gids)
        elif change.kind == SECURITY_GROUP:
            for r in recs:
                if r.get("_key") is not None:
                    owners.add(sg.group_cookie(r))
            owners |= _member_cookies(view, change.id)
            owners |= _group_cookies(view, _referencing_groups(view, change.id))
        elif change.kind == SECURITY_GROUP_RULE:
            for r in recs:
                gid = r.get("security_group_id")
                owners |= _group_cookies(view, [gid])
                owners |= _member_cookies(view, gid)  # their conj actions follow the rule set
        return owners

    def owners_for_chassis(self, view, ctx) -> Iterable[int]:
        owners = {SECURITY_BASE}
        for pid in ctx.local_ports:
            port = view.port(pid)
            if port is None or port.get("_key") is None:
                continue
            owners.add(port_cookie(port))
            if is_secured(port):
                owners |= _group_cookies(view, port.get("security_groups") or ())
        return owners

    def compile(self, view, ctx, owner: int) -> Iterable[Flow]:
        if owner == SECURITY_BASE:
            return sg.base_flows()
        kind, key = split_owner(owner)
        if kind is Owner.PORT:
            port = view.by_key(PORT, key)
            if port is None or port["id"] not in ctx.local_ports:
                return ()
            return sg.port_flows(ViewGroups(view), port)
        if kind is Owner.SECGROUP:
            group = view.by_key(SECURITY_GROUP, key)
            if group is None or not group_active(view, ctx, group["id"]):
                return ()
            return sg.group_flows(ViewGroups(view), group["id"])
        return ()

