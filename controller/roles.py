"""OpenFlow roles of this controller on each connected datapath: ask, confirm, step down.

Why a state machine of its own: "am I master of this bridge?" must be answered from what the
*switch* confirmed, not from what we wish. A datapath counts as ours only after OVS answered our
OFPT_ROLE_REQUEST(MASTER, generation) with a ROLE_REPLY; stepping down is immediate (we stop
sending before the switch even hears of it). The generation id comes from etcd (the owner key's
mod_revision, see controller/ownership.py), so a controller that lost its ownership and still
asks for MASTER with its old generation is refused by OVS (OFPRRFC_STALE) — the switch itself
fences a stale master.

Threads: `apply` runs on the ownership thread, replies arrive on os-ken's receive thread;
one lock guards the table. `on_master` (the core's request_resync) is called outside the lock.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable, Mapping

from controller import wire
from controller.reconciler import XidSource

LOG = logging.getLogger(__name__)

MASTER, SLAVE = wire.OFPCR_ROLE_MASTER, wire.OFPCR_ROLE_SLAVE
ROLE_NAMES = {wire.OFPCR_ROLE_EQUAL: "equal", MASTER: "master", SLAVE: "slave"}
REPLY_TIMEOUT = 2.0  # s: an unanswered role request is sent again after this


@dataclass
class _Role:
    send: Callable[[bytes], bool]
    want: int = wire.OFPCR_ROLE_EQUAL   # what we last asked for (EQUAL = nothing asked yet)
    generation: int = -1                # with which generation id
    xid: int = 0
    confirmed: bool = False
    asked_at: float = 0.0
    refused: int = 0                    # role requests the switch refused (stale generation)


class RoleKeeper:
    def __init__(self, xids: XidSource | None = None, on_master: Callable[[int], None] | None = None) -> None:
        self.xids = xids or XidSource()
        self.on_master = on_master or (lambda dpid: None)
        self._lock = threading.Lock()
        self._roles: dict[int, _Role] = {}

    # ------------------------------------------------------------------ connections
    def connected(self, dpid: int, send: Callable[[bytes], bool]) -> None:
        """A new connection starts as EQUAL on the switch: nothing is ours until confirmed."""
        with self._lock:
            self._roles[dpid] = _Role(send)

    def disconnected(self, dpid: int, send: Callable[[bytes], bool] | None = None) -> None:
        with self._lock:
            r = self._roles.get(dpid)
            if r is not None and (send is None or r.send == send):
                del self._roles[dpid]

    def dpids(self) -> set[int]:
        with self._lock:
            return set(self._roles)

    # ------------------------------------------------------------------ queries
    def is_master(self, dpid: int) -> bool:
        r = self._roles.get(dpid)
        return r is not None and r.want == MASTER and r.confirmed

    def role_of(self, dpid: int) -> str:
        r = self._roles.get(dpid)
        if r is None:
            return "disconnected"
        name = ROLE_NAMES.get(r.want, str(r.want))
        return name if r.confirmed or r.want == wire.OFPCR_ROLE_EQUAL else f"{name} (asked)"

    def generation_of(self, dpid: int) -> int | None:
        r = self._roles.get(dpid)
        return None if r is None or r.generation < 0 else r.generation

    # ------------------------------------------------------------------ decisions
    def apply(self, wanted: Mapping[int, tuple[bool, int]]) -> None:
        """wanted: dpid → (we own it, generation id). Connected datapaths not in `wanted` (no
        owner known yet) are asked to be SLAVE with generation 0 — never left EQUAL, which
        would let the switch send us packet-ins and accept our flow-mods."""
        sends: list[tuple[int, Callable[[bytes], bool], bytes]] = []
        now = time.monotonic()
        with self._lock:
            for dpid, r in self._roles.items():
                master, gen = wanted.get(dpid, (False, max(r.generation, 0)))
                role = MASTER if master else SLAVE
                if (role, gen) == (r.want, r.generation) and (r.confirmed or now - r.asked_at < REPLY_TIMEOUT):
                    continue
                if role != r.want and r.want == MASTER:
                    LOG.info("datapath %016x: stepping down to slave (generation %d)", dpid, gen)
                r.want, r.generation, r.confirmed = role, gen, False
                r.xid, r.asked_at = self.xids.take(), now
                sends.append((dpid, r.send, wire.role_request(r.xid, role, gen)))
        for dpid, send, msg in sends:
            try:
                send(msg)
            except Exception:  # noqa: BLE001 — a closing connection: the next apply re-asks
                LOG.warning("datapath %016x: sending a role request failed", dpid, exc_info=True)

    # ------------------------------------------------------------------ replies (receive thread)
    def on_reply(self, dpid: int, xid: int, role: int, generation: int) -> bool:
        became_master = False
        with self._lock:
            r = self._roles.get(dpid)
            if r is None or r.xid != xid:
                return False
            if role != r.want:
                LOG.warning("datapath %016x answered role %s to our %s request", dpid,
                            ROLE_NAMES.get(role, role), ROLE_NAMES.get(r.want, r.want))
                r.asked_at = 0.0  # ask again at the next apply
                return True
            r.confirmed = True
            became_master = role == MASTER
        LOG.info("datapath %016x: role %s confirmed (generation %d)", dpid, ROLE_NAMES.get(role, role), generation)
        if became_master:
            self.on_master(dpid)  # read the switch's flows, send only the difference
        return True

    def on_error(self, dpid: int, err: wire.ErrorMsg) -> bool:
        """A refused role request (e.g. stale generation: someone newer is master). True if ours."""
        with self._lock:
            r = self._roles.get(dpid)
            if r is None or err.xid != r.xid or err.type != wire.OFPET_ROLE_REQUEST_FAILED:
                return False
            r.refused += 1
            r.confirmed = False
            r.asked_at = 0.0
            want = ROLE_NAMES.get(r.want, r.want)
            gen = r.generation
            r.generation = -1  # re-ask at the next apply, with whatever generation etcd says then
        LOG.warning("datapath %016x refused role %s with generation %d: %s", dpid, want, gen, err.describe())
        return True

    def stats(self) -> dict[str, dict]:
        with self._lock:
            return {f"{dpid:016x}": {"role": self.role_of(dpid), "generation": r.generation,
                                     "refused": r.refused}
                    for dpid, r in self._roles.items()}
