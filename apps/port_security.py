"""Port security app: anti-spoofing flows of local ports (flows.port_security)."""
from __future__ import annotations

import logging
from typing import Iterable

from apps.owners import split_owner
from flows import port_security as ps
from flows.flow import Flow, flow
from flows.tables import R, T, Owner

log = logging.getLogger(__name__)


class PortSecurityApp:
    """Owners: each local port (its PORT_SEC flows) and the chassis-wide SECURITY_BASE drops."""
    name = "port_security"

    def owners_for_change(self, view, change) -> Iterable[int]:
        if change.kind != "port":
            return ()
        return {ps.port_cookie(r) for r in (change.old, change.new) if r is not None and r.get("_key") is not None}

    def owners_for_chassis(self, view, ctx) -> Iterable[int]:
        owners = {ps.SECURITY_BASE}
        for pid in ctx.local_ports:
            port = view.port(pid)
            if port is not None and port.get("_key") is not None:
                owners.add(ps.port_cookie(port))
        return owners

    def compile(self, view, ctx, owner: int) -> Iterable[Flow]:
        if owner == ps.SECURITY_BASE:
            return ps.base_flows()
        kind, key = split_owner(owner)
        if kind is not Owner.PORT:
            return ()
        port = view.by_key("port", key)
        if port is None or port["id"] not in ctx.local_ports:
            return ()
        try:
            return ps.port_flows(port)
        except (KeyError, ValueError, TypeError) as exc:
            # A malformed record must not take other ports down: keep only its per-port drop.
            log.error("port %s: cannot compile port security (%s); dropping its traffic", port.get("id"), exc)
            return [flow(T.PORT_SEC, ps.P_PORT_DROP, owner, [], match={R.IN_PORT: key})]
