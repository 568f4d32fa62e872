"""Which controller owns which chassis: members on etcd leases, an assignment kept in etcd.

Why this design (no leader, no election per chassis):
- Every `tenantflow serve` on an etcd store is a *member*: a key `<prefix>/ha/members/<id>`
  bound to its own lease (TTL `--ha-lease-ttl`, kept alive every `--ha-interval`), whose value
  lists the datapaths connected to it. A controller killed or cut from etcd stops renewing;
  etcd deletes its key when the lease expires.
- The assignment is one key per datapath, `<prefix>/ha/owners/<dpid>` = member id. Its
  mod_revision is the datapath's **generation id**: it grows every time the owner changes (etcd
  revisions only grow), so the new owner's ROLE_REQUEST(MASTER) outranks the old one's and OVS
  refuses a stale master (controller/roles.py).
- Every member runs the same pure `balance()` on the same etcd snapshot (one read txn) and
  writes the difference with compares on every key it read for the decision, so concurrent
  balancers cannot both win; the loser re-reads next round and finds nothing to do. A current
  owner keeps its chassis while it is alive, connected to it and not above ⌈C/N⌉, so a
  returning controller only takes its share — from the most loaded members — and nothing else
  moves.
- A member fences itself: when its last successful keep-alive was *sent* more than
  TTL − margin ago, etcd may already have expired its lease, so it steps down to slave on every
  bridge before anyone else can take over (a gap of ≤ margin with no master, never two).

Single-controller mode (SQLite/memory store, or `--ha off`) uses `SoloOwnership`: master of
everything, no role requests, exactly the behaviour without HA.
"""
from __future__ import annotations

import base64
import json
import logging
import threading
import time
import uuid
from collections import Counter
from typing import Any, Callable, Iterable, Mapping

from controller import wire
from controller.reconciler import XidSource
from controller.roles import RoleKeeper

LOG = logging.getLogger(__name__)

FENCE_MARGIN = 0.5  # s: step down this long before our lease can expire on the server


# ------------------------------------------------------------------ pure assignment
def balance(current: Mapping[int, str], members: Iterable[str],
            eligible: Mapping[int, set[str]]) -> dict[int, str]:
    """dpid → owner for every dpid with at least one eligible member.

    `current`: the assignment in etcd; `members`: live member ids; `eligible[d]`: live members
    connected to d. Deterministic (same inputs → same answer on every controller). Keeps each
    current owner that is still eligible, gives orphans to the least loaded eligible member, then
    moves single chassis from the most to the least loaded member until no two members differ by
    more than one — with every member eligible everywhere that is ⌊C/N⌋..⌈C/N⌉ each."""
    live = sorted(set(members))
    plan: dict[int, str] = {}
    load: Counter[str] = Counter({m: 0 for m in live})
    for d in sorted(eligible):
        owner = current.get(d)
        if eligible[d] and owner in eligible[d]:
            plan[d] = owner
            load[owner] += 1
    for d in sorted(eligible):
        if d not in plan and eligible[d]:
            owner = min(sorted(eligible[d]), key=lambda m: load[m])
            plan[d] = owner
            load[owner] += 1
    for _ in range(len(plan) + 1):  # each move lowers the spread; bounded anyway
        move = _best_move(plan, live, load, eligible)
        if move is None:
            break
        d, receiver = move
        load[plan[d]] -= 1
        load[receiver] += 1
        plan[d] = receiver
    return plan


def _best_move(plan: dict[int, str], live: list[str], load: Counter[str],
               eligible: Mapping[int, set[str]]) -> tuple[int, str] | None:
    for receiver in sorted(live, key=lambda m: (load[m], m)):
        for donor in sorted(live, key=lambda m: (-load[m], m)):
            if load[donor] - load[receiver] <= 1:
                break
            movable = [d for d, o in plan.items() if o == donor and receiver in eligible[d]]
            if movable:
                return max(movable), receiver
    return None


def standby_share(current: Mapping[int, str], members: Iterable[str],
                  eligible: Mapping[int, set[str]], me: str) -> set[int]:
    """The chassis `me` would inherit if their current owner died: one balance() per other live
    member, on the same snapshot, with that member removed. Why: `me` keeps exactly these warm
    (compiled, never flushed), so a takeover is a pure diff — ≈ one more share of compile work
    per member, not K× (each chassis has one heir per possible death of its owner)."""
    live = set(members)
    out: set[int] = set()
    for dead in sorted(live - {me}):
        theirs = {d for d, o in current.items() if o == dead}
        if not theirs:
            continue
        rest = {d: o for d, o in current.items() if o != dead}
        elig = {d: s - {dead} for d, s in eligible.items()}
        plan = balance(rest, live - {dead}, elig)
        out |= {d for d in theirs if plan.get(d) == me}
    return out


# ------------------------------------------------------------------ single controller
class SoloOwnership:
    """One controller, no etcd: master of every datapath, as before HA existed."""

    mode = "single"

    def is_master(self, dpid: int) -> bool:
        return True

    def compiles(self, dpid: int) -> bool:
        return True

    def is_standby(self, dpid: int) -> bool:
        return False

    def owned_elsewhere(self, dpid: int) -> bool:
        return False

    def datapath_connected(self, dpid: int, send: Callable[[bytes], bool]) -> None:
        pass

    def datapath_disconnected(self, dpid: int, send: Callable[[bytes], bool] | None = None) -> None:
        pass

    def on_role_reply(self, dpid: int, xid: int, role: int, generation: int) -> bool:
        return False

    def on_role_error(self, dpid: int, err: wire.ErrorMsg) -> bool:
        return False

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def stats(self) -> dict:
        return {"mode": self.mode}


# ------------------------------------------------------------------ etcd
def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str | None) -> bytes:
    return base64.b64decode(text) if text else b""


def _prefix_range(prefix: bytes) -> dict:
    return {"request_range": {"key": _b64(prefix), "range_end": _b64(prefix[:-1] + bytes([prefix[-1] + 1]))}}


class EtcdOwnership:
    """Membership + assignment on etcd, and the roles that follow from it (see module doc)."""

    mode = "etcd"

    def __init__(self, host: str, port: int, prefix: str, member_id: str, *, address: str = "",
                 ttl: int = 2, interval: float = 0.4, on_master: Callable[[int], None] | None = None,
                 xids: XidSource | None = None, on_owned: Callable[[int], None] | None = None) -> None:
        import etcd3gw
        self.member_id = member_id
        self.address = address
        self.ttl = max(2, int(ttl))  # etcd grants at least its minimum TTL anyway
        self.interval = interval
        base = ("/" + prefix.strip("/") if prefix.strip("/") else "") + "/ha/"
        self._members_prefix = (base + "members/").encode()
        self._owners_prefix = (base + "owners/").encode()
        self._client = etcd3gw.client(host=host, port=port, timeout=max(0.5, self.ttl / 3))
        self.roles = RoleKeeper(xids, on_master)
        # a datapath newly assigned to us: the core starts compiling it at once, while the
        # role request is on its way (default: the same wake-up as becoming master)
        self.on_owned = on_owned or on_master or (lambda dpid: None)
        self._lease: Any = None
        self._published: tuple | None = None   # (lease id, dpids) last written to our member key
        self._alive_sent = 0.0                 # monotonic send time of the last successful keep-alive
        self.fenced = True                     # no lease yet: nothing is ours
        self.owners: dict[int, tuple[str, int]] = {}   # dpid → (owner, generation) as last read
        self.standby: set[int] = set()                 # others' chassis we would inherit (kept warm)
        self.instance = uuid.uuid4().hex               # this process, in our member key's value
        self.duplicate: str | None = None              # another live process claims our member id
        self._foreign_since: float | None = None       # joining: our id's key held by another process
        self.members: dict[str, dict] = {}
        self.moves = 0                                  # assignments this member wrote
        self.errors = 0
        self._last_error: str | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ core/ofapp facing
    def is_master(self, dpid: int) -> bool:
        """Also checks the lease's age itself: after a freeze (SIGSTOP, a long GC pause, a
        suspended VM) the core may ask before the ownership loop has run and fenced us."""
        return not self.fenced and self._lease_fresh() and self.roles.is_master(dpid)

    def compiles(self, dpid: int) -> bool:
        """Keep desired flows for `dpid` (controller/core.py): etcd assigns it to us — from the
        round that read the assignment, before the switch confirms MASTER, so the compile overlaps
        the role round trip — or we are its confirmed master. Not cleared by fencing: through an
        etcd outage the owner stays warm and resumes with a pure diff. The other members' chassis
        are not compiled here — except our *standby* share (`standby_share`): the chassis we
        would inherit if their owner died, kept warm so that takeover is a pure diff."""
        return (self.owners.get(dpid, ("", 0))[0] == self.member_id or self.roles.is_master(dpid)
                or dpid in self.standby)

    def is_standby(self, dpid: int) -> bool:
        """Compiled only as a standby (another member owns it): the core compiles it after its
        own chassis' flushes and never sends to it."""
        return dpid in self.standby and self.owners.get(dpid, ("", 0))[0] != self.member_id \
            and not self.roles.is_master(dpid)

    def owned_elsewhere(self, dpid: int) -> bool:
        """Another live member owns `dpid` (as last read): it speaks for that chassis' liveness
        (controller/gateway.py), we do not mark it dead just because our connection dropped."""
        owner = self.owners.get(dpid, ("", 0))[0]
        return bool(owner) and owner != self.member_id and owner in self.members

    def _lease_fresh(self) -> bool:
        return time.monotonic() - self._alive_sent <= self.ttl - FENCE_MARGIN

    def datapath_connected(self, dpid: int, send: Callable[[bytes], bool]) -> None:
        self.roles.connected(dpid, send)
        self._wake.set()

    def datapath_disconnected(self, dpid: int, send: Callable[[bytes], bool] | None = None) -> None:
        self.roles.disconnected(dpid, send)
        self._wake.set()

    def on_role_reply(self, dpid: int, xid: int, role: int, generation: int) -> bool:
        return self.roles.on_reply(dpid, xid, role, generation)

    def on_role_error(self, dpid: int, err: wire.ErrorMsg) -> bool:
        return self.roles.on_error(dpid, err)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="tf-ownership", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Orderly exit: give our chassis back at once (revoking the lease deletes our member
        key, so the survivors reassign without waiting for the TTL)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.fenced = True
        self.roles.apply({})
        if self._lease is not None:
            try:
                self._lease.revoke()
            except Exception:  # noqa: BLE001 — etcd away: the lease expires on its own
                LOG.warning("could not revoke our etcd lease; it expires within %ds", self.ttl)

    def stats(self) -> dict:
        me = self.member_id
        return {"mode": self.mode, "member_id": me, "fenced": self.fenced, "lease_ttl": self.ttl,
                "members": sorted(self.members), "duplicate_id": self.duplicate,
                "standby": [f"{d:016x}" for d in sorted(self.standby)],
                "moves_written": self.moves, "errors": self.errors,
                "last_error": self._last_error,
                "owners": {f"{d:016x}": {"owner": o, "generation": g, "mine": o == me}
                           for d, (o, g) in sorted(self.owners.items())},
                "roles": self.roles.stats()}

    # ------------------------------------------------------------------ loop
    def _loop(self) -> None:
        while not self._stop.is_set() and self.duplicate is None:
            try:
                self.tick()
                if self._last_error is not None:
                    LOG.info("etcd reachable again: ownership resumed")
                self._last_error = None
            except Exception as exc:  # noqa: BLE001 — etcd away or odd answer: fence, retry
                self.errors += 1
                text = f"{type(exc).__name__}: {exc}"
                if text != self._last_error:
                    LOG.warning("ownership round failed (%s); retrying every %.1fs", text, self.interval)
                self._last_error = text
            self._check_fence()
            self._wake.wait(self.interval)
            self._wake.clear()

    def _check_fence(self) -> None:
        expired = not self._lease_fresh()
        if expired and not self.fenced:
            LOG.warning("no etcd keep-alive for %.1fs: stepping down to slave on every datapath",
                        time.monotonic() - self._alive_sent)
        if expired:
            self.fenced = True
            self.roles.apply({d: (False, g) for d, (_o, g) in self.owners.items()})

    def tick(self) -> None:
        """One round: keep our lease, publish our datapaths, read, rebalance, apply roles."""
        self._keep_alive()
        dpids = sorted(self.roles.dpids())
        if self._published is None and self._held_by_other():
            return  # a predecessor's key waits for its lease to expire, or a duplicate: not ours yet
        if self._published != (self._lease.id, tuple(dpids)):
            value = json.dumps({"id": self.member_id, "address": self.address, "instance": self.instance,
                                "dpids": [f"{d:016x}" for d in dpids]}).encode()
            self._txn([], [{"request_put": {"key": _b64(self._members_prefix + self.member_id.encode()),
                                            "value": _b64(value), "lease": self._lease.id}}])
            self._published = (self._lease.id, tuple(dpids))
        members, owners = self._read()
        if self._claimed_elsewhere(members):
            return
        plan = balance({d: o for d, (o, _m) in owners.items()}, members,
                       self._eligible(members))
        changed = {d: o for d, o in plan.items() if owners.get(d, ("", 0))[0] != o}
        if changed:
            owners = self._write(changed, members, owners)
        if set(members) != set(self.members):
            LOG.info("live controllers: %s", ", ".join(sorted(members)))
        self.members = {m: v for m, (_mod, v) in members.items()}
        before = {d for d, (o, _g) in self.owners.items() if o == self.member_id}
        self.owners = owners
        for d in sorted(d for d, (o, _g) in owners.items() if o == self.member_id and d not in before):
            self.on_owned(d)  # compile it now: the takeover's resync is then a pure diff
        if self.fenced:
            LOG.info("member %s is live in etcd: taking its chassis", self.member_id)
        self.fenced = False
        current = {d: o for d, (o, _g) in owners.items()}
        standby = standby_share(current, members, self._eligible(members), self.member_id)
        if standby != self.standby:
            LOG.info("standby (kept warm, never sent): %s",
                     ", ".join(f"{d:016x}" for d in sorted(standby)) or "none")
        added = standby - self.standby
        self.standby = standby
        for d in sorted(added):
            self.on_owned(d)  # compile it when the core gets to it (after its own flushes)
        self.roles.apply({d: (o == self.member_id, g) for d, (o, g) in owners.items()})

    def _held_by_other(self) -> bool:
        """Before (re)writing our member key: does another process' instance hold it? A killed
        predecessor's key vanishes within the TTL (its lease is not renewed); one still there
        after TTL + two rounds is renewed by a live process with our id — refuse to join."""
        members, _owners = self._read()
        value = members.get(self.member_id, (0, {}))[1]
        other = value.get("instance") if isinstance(value, dict) else None
        if not other or other == self.instance:
            self._foreign_since = None
            return False
        now = time.monotonic()
        if self._foreign_since is None:
            self._foreign_since = now
            LOG.warning("member key %s is held by instance %s: waiting up to %.1fs for its lease to "
                        "expire (a killed predecessor) before joining", self.member_id, other,
                        self.ttl + 2 * self.interval)
        elif now - self._foreign_since > self.ttl + 2 * self.interval:
            self._claim_conflict(other)
        return True

    def _claimed_elsewhere(self, members: Mapping[str, tuple[int, dict]]) -> bool:
        """Two live processes with the same --controller-id would overwrite each other's member
        key and both act as one member (two masters of the same chassis). Our key holding
        another process' instance token means exactly that: step down on every datapath, stop
        the ownership loop, and say so loudly (stats `ha.duplicate_id`)."""
        value = members.get(self.member_id, (0, {}))[1]
        other = value.get("instance") if isinstance(value, dict) else None
        if not other or other == self.instance:
            return False
        self._claim_conflict(other)
        return True

    def _claim_conflict(self, other: str) -> None:
        self.duplicate = (f"member id {self.member_id!r} is claimed by another live process "
                          f"(instance {other}, ours {self.instance})")
        LOG.error("DUPLICATE --controller-id: %s; stepping down on every datapath and leaving the "
                  "cloud: give each controller its own id", self.duplicate)
        self.fenced = True
        self.standby = set()
        self.roles.apply({d: (False, g) for d, (_o, g) in self.owners.items()})

    def _keep_alive(self) -> None:
        sent = time.monotonic()
        if self._lease is not None and self._lease.refresh() > 0:
            self._alive_sent = sent
            return
        if self._lease is not None:
            LOG.warning("our etcd lease %x expired; joining again with a new one", self._lease.id)
        self._lease = self._client.lease(self.ttl)
        self._alive_sent = sent
        self._published = None

    def _txn(self, compare: list[dict], success: list[dict]) -> Any:
        return self._client.transaction({"compare": compare, "success": success, "failure": []})

    def _read(self) -> tuple[dict[str, tuple[int, dict]], dict[int, tuple[str, int]]]:
        resp = self._txn([], [_prefix_range(self._members_prefix), _prefix_range(self._owners_prefix)])
        mem_r, own_r = (r.get("response_range", {}).get("kvs", []) for r in resp.get("responses", []))
        members: dict[str, tuple[int, dict]] = {}
        for kv in mem_r:
            mid = _unb64(kv["key"])[len(self._members_prefix):].decode()
            try:
                members[mid] = (int(kv["mod_revision"]), json.loads(_unb64(kv.get("value"))))
            except ValueError:
                LOG.warning("member key %s holds no JSON; ignored", mid)
        owners: dict[int, tuple[str, int]] = {}
        for kv in own_r:
            try:
                dpid = int(_unb64(kv["key"])[len(self._owners_prefix):].decode(), 16)
            except ValueError:
                continue
            owners[dpid] = (_unb64(kv.get("value")).decode(), int(kv["mod_revision"]))
        return members, owners

    @staticmethod
    def _eligible(members: Mapping[str, tuple[int, dict]]) -> dict[int, set[str]]:
        out: dict[int, set[str]] = {}
        for mid, (_mod, value) in members.items():
            for text in value.get("dpids", []):
                try:
                    out.setdefault(int(text, 16), set()).add(mid)
                except (TypeError, ValueError):
                    continue
        return out

    def _write(self, changed: dict[int, str], members: Mapping[str, tuple[int, dict]],
               owners: dict[int, tuple[str, int]]) -> dict[int, tuple[str, int]]:
        """Write the changed owner keys iff nothing the decision read has changed since."""
        compare = [{"key": _b64(self._members_prefix + m.encode()), "result": "EQUAL", "target": "MOD",
                    "mod_revision": mod} for m, (mod, _v) in members.items()]
        success = []
        for d, owner in sorted(changed.items()):
            key = _b64(self._owners_prefix + f"{d:016x}".encode())
            compare.append({"key": key, "result": "EQUAL", "target": "MOD",
                            "mod_revision": owners.get(d, ("", 0))[1]})
            success.append({"request_put": {"key": key, "value": _b64(owner.encode())}})
        resp = self._txn(compare, success)
        if not resp.get("succeeded"):
            LOG.debug("assignment changed under us; re-reading next round")
            return owners
        rev = int(resp["header"]["revision"])
        self.moves += len(changed)
        LOG.info("assigned %s (generation %d)",
                 ", ".join(f"{d:016x}→{o}" for d, o in sorted(changed.items())), rev)
        out = dict(owners)
        out.update({d: (o, rev) for d, o in changed.items()})
        return out
