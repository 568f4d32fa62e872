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
import weakref
from typing import Any, Iterable

from apps.owners import split_owner
from flows import security_groups as sg
from flows.flow import Flow
from flows.port_security import SECURITY_BASE, is_secured, port_cookie
from flows.tables import Owner
from topology.store import PORT, SECURITY_GROUP, SECURITY_GROUP_RULE

log = logging.getLogger(__name__)

REMOTE_INDEX = "secgroup.rule.remote_group"
ADDRESS_INDEX = "secgroup.port.address"


def _ensure_indexes(view) -> None:
    try:
        view.find_ids(REMOTE_INDEX, None)
    except KeyError:
        view.add_index(SECURITY_GROUP_RULE, REMOTE_INDEX, lambda r: [r.get("remote_group_id")])
    try:
        view.find_ids(ADDRESS_INDEX, None)
    except KeyError:
        view.add_index(PORT, ADDRESS_INDEX,
                       lambda p: [sg.address_key(a) for a in sg.member_addresses(p)]
                       if p.get("security_groups") else [])


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


def _remote_member_cookies(view, gid: str, members=None) -> set[int]:
    """Members of the groups `gid`'s rules name as remote: they own gid's clause-3 flows."""
    out: set[int] = set()
    for rule in view.rules_of_group(gid):
        rg = rule.get("remote_group_id")
        if rg:
            out |= members.cookies(view, rg) if members is not None else _member_cookies(view, rg)
    return out


class _MemberCookies:
    """group id → cookies of its member ports, kept current from the port changes the app sees.

    Why: when a change may turn a group on or off somewhere, every member of its remote groups is
    named; in a burst (1,000 ports joining the default group before the chassis has compiled
    any) rebuilding that list per change from records would be O(members²)."""

    def __init__(self) -> None:
        self.by_group: dict[str, set[int]] = {}

    def cookies(self, view, gid: str) -> set[int]:
        got = self.by_group.get(gid)
        if got is None:
            got = self.by_group[gid] = _member_cookies(view, gid)
        return got

    def update(self, old, new) -> None:
        for rec, add in ((old, False), (new, True)):
            if rec is None or rec.get("_key") is None:
                continue
            ck = port_cookie(rec)
            for gid in rec.get("security_groups") or ():
                got = self.by_group.get(gid)
                if got is not None:
                    (got.add if add else got.discard)(ck)


def _claimer_cookies(view, port) -> set[int]:
    """Other ports holding one of `port`'s member addresses (who owns a shared address may change)."""
    _ensure_indexes(view)
    out: set[int] = set()
    for address in {sg.address_key(a) for a in sg.member_addresses(port)} - {None}:
        out |= {port_cookie(p) for p in view.find(ADDRESS_INDEX, address)
                if p["id"] != port["id"] and p.get("_key") is not None}
    return out


def group_active(view, ctx, gid: str) -> bool:
    """A group has flows on a chassis where one of its secured members is plugged in;
    O(1) when it is (first local member found), O(min(members, local ports)) when not."""
    local = ctx.local_ports
    ids = view.find_ids("port.group", gid)
    if len(ids) <= len(local):
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


class _Installed:
    """What this app last compiled per chassis: groups active there, and each group's local secured
    members (port keys). Why: member ports own clause-3 flows only where their referencing group is
    active, so when a group turns active/inactive on a chassis every such member must recompile
    there — but owners_for_change does not know the chassis. This record of the compiled state
    tells when that cannot have happened (the group stays active on every chassis whatever this
    one port did), which is the common case: a port joining a group already present everywhere."""

    def __init__(self) -> None:
        self._clear()

    def _clear(self) -> None:
        self.view_ref: Any = None
        self.members = _MemberCookies()
        self.active: dict[str, set[str]] = {}
        self.local: dict[str, dict[str, set[int]]] = {}
        self.port_groups: dict[str, dict[int, tuple[str, ...]]] = {}

    def bind(self, view) -> None:
        if self.view_ref is None or self.view_ref() is not view:
            self._clear()
            self.view_ref = weakref.ref(view)

    def reset_chassis(self, name: str) -> None:
        self.active[name] = set()
        self.local[name] = {}
        self.port_groups[name] = {}

    def chassis(self, name: str) -> None:
        if name not in self.active:
            self.reset_chassis(name)

    def set_active(self, name: str, gid: str, active: bool) -> None:
        self.chassis(name)
        (self.active[name].add if active else self.active[name].discard)(gid)

    def set_port(self, name: str, key: int, gids: tuple[str, ...]) -> None:
        self.chassis(name)
        local, recorded = self.local[name], self.port_groups[name]
        for gid in recorded.pop(key, ()):
            members = local.get(gid)
            if members is not None:
                members.discard(key)
        if gids:
            recorded[key] = gids
            for gid in gids:
                local.setdefault(gid, set()).add(key)

    def may_flip(self, gid: str, key: int | None) -> bool:
        """Could a change of port `key` make `gid` turn active or inactive on some chassis?"""
        for name, active in self.active.items():
            if gid not in active:
                return True
            members = self.local[name].get(gid, set())
            if not members - {key}:
                return True
        return False


class SecurityGroupsApp:
    name = "security_groups"

    def __init__(self) -> None:
        self._installed = _Installed()

    def owners_for_change(self, view, change) -> Iterable[int]:
        self._installed.bind(view)
        owners: set[int] = set()
        recs = [r for r in (change.old, change.new) if r is not None]
        if change.kind == PORT:
            if change.old is not change.new:
                self._installed.members.update(change.old, change.new)
            gids: set[str] = set()
            for r in recs:
                if r.get("_key") is not None:
                    owners.add(port_cookie(r))
                gids.update(r.get("security_groups") or ())
                owners |= _claimer_cookies(view, r)
            key = next((r["_key"] for r in recs if r.get("_key") is not None), None)
            referencing: set[str] = set()
            for gid in gids:
                referencing |= _referencing_groups(view, gid)
                if self._installed.may_flip(gid, key):  # gid's clause 3 must follow it
                    owners |= _remote_member_cookies(view, gid, self._installed.members)
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
        self._installed.bind(view)
        self._installed.reset_chassis(ctx.name)  # a full compile of this chassis follows
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
        installed = self._installed
        installed.bind(view)
        kind, key = split_owner(owner)
        if kind is Owner.PORT:
            port = view.by_key(PORT, key)
            if port is None:
                installed.set_port(ctx.name, key, ())
                return ()
            local = port["id"] in ctx.local_ports
            installed.set_port(ctx.name, key, tuple(port.get("security_groups") or ())
                               if local and is_secured(port) else ())
            idx = ViewGroups(view)
            out = sg.port_flows(idx, port) if local else []
            return out + sg.member_flows(idx, port, lambda gid: group_active(view, ctx, gid))
        if kind is Owner.SECGROUP:
            group = view.by_key(SECURITY_GROUP, key)
            if group is None:
                return ()
            active = group_active(view, ctx, group["id"])
            installed.set_active(ctx.name, group["id"], active)
            return sg.group_flows(ViewGroups(view), group["id"]) if active else ()
        return ()
