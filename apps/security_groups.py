"""Security groups app: conntrack-based groups of local ports (flows.security_groups).

Owners and what they hold on a chassis:
  SECURITY_BASE     conntrack + verdict flows of both directions (same on every chassis)
  port (local)      membership in each of its groups (conjunction clause 1), or the bypass
                    when port security is off
  port (any)        its addresses in the remote-group clause (clause 3) of every group whose
                    rules name one of its groups — on chassis where that group is active
  group (active)    its rules (clause 2) and verdicts — only where at least one secured member
                    is local
"""
from __future__ import annotations

import logging
from typing import Iterable

from apps.owners import split_owner
from flows import security_groups as sg
from flows.engine import fact, size_hint
from flows.flow import Flow
from flows.port_security import SECURITY_BASE, is_secured, port_cookie
from flows.tables import Owner
from topology.store import PORT, SECURITY_GROUP, SECURITY_GROUP_RULE

log = logging.getLogger(__name__)

REMOTE_INDEX = "secgroup.rule.remote_group"
ADDRESS_INDEX = "secgroup.port.address"


def _ensure_indexes(view) -> None:
    """Register this app's indexes on first use (add_index reads nothing; it refuses a second time)."""
    for kind, name, keyfunc in ((SECURITY_GROUP_RULE, REMOTE_INDEX, lambda r: [r.get("remote_group_id")]),
                                (PORT, ADDRESS_INDEX, lambda p: [sg.address_key(a) for a in sg.member_addresses(p)]
                                 if p.get("security_groups") else [])):
        if not view.has_index(name):
            view.add_index(kind, name, keyfunc)


class ViewGroups:
    """flows.security_groups.GroupIndex over a TopologyView."""

    def __init__(self, view) -> None:
        self.view = view
        _ensure_indexes(view)

    def group(self, gid: str):
        return self.view.get(SECURITY_GROUP, gid)

    def rules(self, gid: str):
        return self.view.rules_of_group(gid)

    def members(self, gid: str):
        return self.view.ports_of_group(gid)

    def referencing(self, gid: str) -> set[str]:
        return _referencing_groups(self.view, gid)

    def claimers(self, address: str):
        return self.view.find(ADDRESS_INDEX, address)


def _referencing_groups(view, gid: str) -> set[str]:
    """Groups with a rule whose remote_group_id is `gid` (their clause 3 holds gid's member addresses)."""
    _ensure_indexes(view)
    return {r["security_group_id"] for r in view.find(REMOTE_INDEX, gid)}


def _group_cookies(view, gids: Iterable[str]) -> set[int]:
    out = set()
    for gid in gids:
        rec = view.get(SECURITY_GROUP, gid)
        if rec is not None and rec.get("_key") is not None:
            out.add(sg.group_cookie(rec))
    return out


def _member_cookies(view, gid: str) -> set[int]:
    return {port_cookie(p) for p in view.ports_of_group(gid) if p.get("_key") is not None}


def _remote_member_cookies(view, gid: str) -> set[int]:
    """Members of the groups `gid`'s rules name as remote: they own gid's clause-3 flows."""
    out: set[int] = set()
    for rule in view.rules_of_group(gid):
        rg = rule.get("remote_group_id")
        if rg:
            out |= _member_cookies(view, rg)
    return out


def _claimer_cookies(view, port) -> set[int]:
    """Other ports holding one of `port`'s member addresses (who owns a shared address may change)."""
    _ensure_indexes(view)
    out: set[int] = set()
    for address in {sg.address_key(a) for a in sg.member_addresses(port)} - {None}:
        out |= {port_cookie(p) for p in view.find(ADDRESS_INDEX, address)
                if p["id"] != port["id"] and p.get("_key") is not None}
    return out


@fact
def group_active(view, ctx, gid: str) -> bool:
    """A group has flows on a chassis where one of its secured members is plugged in;
    O(1) when it is (first local member found), O(min(members, local ports)) when not.
    A fact of the incremental engine: the group and the members of the groups it names as
    remote read it; it flips only when the group appears on / vanishes from the chassis."""
    local = ctx.local_ports
    ids = view.find_ids("port.group", gid)
    if len(ids) <= size_hint(local):  # which side to loop over; not an input
        for pid in ids:
            if pid in local:
                p = view.port(pid)
                if p is not None and is_secured(p):
                    return True
        return False
    for pid in local:
        p = view.port(pid)
        if p is not None and gid in (p.get("security_groups") or ()) and is_secured(p):
            return True
    return False


class SecurityGroupsApp:
    name = "security_groups"

    def owners_for_change(self, view, change) -> Iterable[int]:
        """Owners a change may create, delete or bring onto a chassis. Members of a group's
        remote groups follow it appearing on / vanishing from a chassis through the engine's
        group_active fact, so a port change names only itself, its address sharers and groups."""
        owners: set[int] = set()
        recs = change.records()
        if change.kind == PORT:
            gids: set[str] = set()
            for r in recs:
                if r.get("_key") is not None:
                    owners.add(port_cookie(r))
                gids.update(r.get("security_groups") or ())
                owners |= _claimer_cookies(view, r)
            referencing: set[str] = set()
            for gid in gids:
                referencing |= _referencing_groups(view, gid)
            owners |= _group_cookies(view, gids | referencing)
        elif change.kind == SECURITY_GROUP:
            for r in recs:
                if r.get("_key") is not None:
                    owners.add(sg.group_cookie(r))
            owners |= _member_cookies(view, change.id)
            owners |= _remote_member_cookies(view, change.id)
            for gid in _referencing_groups(view, change.id):
                owners |= _group_cookies(view, [gid])
        elif change.kind == SECURITY_GROUP_RULE:
            for r in recs:
                gid = r.get("security_group_id")
                owners |= _group_cookies(view, [gid])
                owners |= _member_cookies(view, gid)  # their conj actions follow the rule set
                if r.get("remote_group_id"):
                    owners |= _member_cookies(view, r["remote_group_id"])  # their clause-3 flows
        return owners

    def owners_for_chassis(self, view, ctx) -> Iterable[int]:
        owners = {SECURITY_BASE}
        active: set[str] = set()
        for pid in ctx.local_ports:
            port = view.port(pid)
            if port is None or port.get("_key") is None:
                continue
            owners.add(port_cookie(port))
            if is_secured(port):
                active.update(port.get("security_groups") or ())
        owners |= _group_cookies(view, active)
        for gid in active:
            owners |= _remote_member_cookies(view, gid)
        return owners

    def compile(self, view, ctx, owner: int) -> Iterable[Flow]:
        if owner == SECURITY_BASE:
            return sg.base_flows()
        kind, key = split_owner(owner)
        if kind is Owner.PORT:
            port = view.by_key(PORT, key)
            if port is None:
                return ()
            local = port["id"] in ctx.local_ports
            idx = ViewGroups(view)
            out = sg.port_flows(idx, port) if local else []
            return out + sg.member_flows(idx, port, lambda gid: group_active(view, ctx, gid))
        if kind is Owner.SECGROUP:
            group = view.by_key(SECURITY_GROUP, key)
            if group is None:
                return ()
            if not group_active(view, ctx, group["id"]):
                return ()
            return sg.group_flows(ViewGroups(view), group["id"])
        return ()
