"""QoS app: a local port's bandwidth-limit meters and DSCP marking (flows/qos.py)."""
from __future__ import annotations

import logging
from typing import Iterable

from apps.owners import split_owner
from flows import qos
from flows.flow import Flow
from flows.tables import Owner, cookie
from topology.store import PORT

log = logging.getLogger(__name__)


class QosApp:
    """Owners: each local port. Which policy applies (the port's, else its network's) and its
    rules are read through the view, so the engine recompiles a port when any of them changes."""
    name = "qos"

    def owners_for_change(self, view, change) -> Iterable[int]:
        if change.kind != PORT:
            return ()
        return {cookie(Owner.PORT, int(r["_key"])) for r in (change.old, change.new)
                if r is not None and r.get("_key") is not None}

    def owners_for_chassis(self, view, ctx) -> Iterable[int]:
        owners = set()
        for pid in ctx.local_ports:
            port = view.port(pid)
            if port is not None and port.get("_key") is not None:
                owners.add(cookie(Owner.PORT, int(port["_key"])))
        return owners

    def compile(self, view, ctx, owner: int) -> Iterable[Flow]:
        kind, key = split_owner(owner)
        if kind is not Owner.PORT:
            return ()
        port = view.by_key(PORT, key)
        if port is None or port["id"] not in ctx.local_ports:
            return ()
        try:
            return qos.port_flows(view, ctx, port)
        except (KeyError, ValueError, TypeError) as exc:
            # A malformed rule must not take other ports down: this port runs without QoS.
            log.error("port %s: cannot compile QoS (%s); no limits applied", port.get("id"), exc)
            return ()
