"""The store contract every backend (SQLite, etcd) fulfils, and the Change record of its feed.

Why this shape: controllers consume *only* the change feed ("all changes after revision R"),
so a backend is a linearisable log of whole-record puts/deletes. With etcd the revision is the
etcd revision and the feed is a watch from it; with SQLite both come from one table.
"""
from __future__ import annotations

import builtins
import abc
import contextlib
import functools
import random
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, TypeVar

# Record kinds (Neutron resource names, singular, underscores).
NETWORK = "network"
SUBNET = "subnet"
PORT = "port"
ROUTER = "router"
FLOATINGIP = "floatingip"
SECURITY_GROUP = "security_group"
SECURITY_GROUP_RULE = "security_group_rule"
CHASSIS = "chassis"
# Identity record kinds (the built-in Keystone subset, topology.model.identity): stored and fed like
# the others so several API servers share users and tokens; no app compiles flows from them.
PROJECT = "project"
USER = "user"
ROLE = "role"
ROLE_ASSIGNMENT = "role_assignment"
TOKEN = "token"
IDENTITY_KINDS = (PROJECT, USER, ROLE, ROLE_ASSIGNMENT, TOKEN)
# Neutron's RBAC policies (network sharing per project) and per-project quota limits.
RBAC_POLICY = "rbac_policy"
QUOTA = "quota"
# Per-instance (device_id) user data and SSH keys the metadata agent answers with (topology.model.instances).
INSTANCE = "instance"
# Neutron's QoS policies (their rules inside: topology/model/resources/qos.py).
QOS_POLICY = "qos_policy"
KINDS = (NETWORK, SUBNET, PORT, ROUTER, FLOATINGIP, SECURITY_GROUP, SECURITY_GROUP_RULE, CHASSIS, RBAC_POLICY,
         QUOTA) + IDENTITY_KINDS + (QOS_POLICY,) + (INSTANCE,)

Record = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Change:
    """One committed write. `new is None` means deleted; `old is None` means created."""
    revision: int
    kind: str
    id: str
    old: Record | None
    new: Record | None

    def records(self) -> tuple[Record, ...]:
        """The change's records, old then new, without None, and once when old is new (the
        re-sync change flows.compiler.owners_for_port_location builds for a tap plugged: the
        apps' owners of one record, not of the same record twice)."""
        old, new = self.old, self.new
        if old is new:
            return () if old is None else (old,)
        if old is None:
            return (new,)  # type: ignore[return-value]  # not both None: handled above
        return (old,) if new is None else (old, new)


class Compacted(Exception):
    """The feed no longer holds changes after the asked revision: re-read a snapshot."""


class Conflict(Exception):
    """Another writer changed what this transaction read before it committed (optimistic backends
    such as etcd): nothing was written; run the whole transaction again from the start."""


CONFLICT_ATTEMPTS = 100
_F = TypeVar("_F", bound=Callable[..., Any])


def retry_on_conflict(fn: _F) -> _F:
    """Re-run `fn` (which opens and commits its own transaction) when it raises Conflict.

    Why a re-run and not a commit retry: the transaction's decisions (free IP, key, VNI) depend on
    what it read, so only running it again on fresh data is correct. Backoff is jittered so two
    machines racing for the same records do not collide in lockstep."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        for attempt in range(CONFLICT_ATTEMPTS):
            try:
                return fn(*args, **kwargs)
            except Conflict:
                if attempt == CONFLICT_ATTEMPTS - 1:
                    raise
                time.sleep(random.uniform(0, min(0.1, 0.002 * 2 ** min(attempt, 6))))
        raise AssertionError("unreachable")
    return wrapper  # type: ignore[return-value]


class Txn(abc.ABC):
    """A serialisable read-write transaction. Reads see the transaction's own writes."""

    @abc.abstractmethod
    def get(self, kind: str, rid: str) -> Record | None: ...

    @abc.abstractmethod
    def list(self, kind: str) -> list[Record]: ...

    @abc.abstractmethod
    def put(self, kind: str, record: Record) -> None:
        """Create or replace a whole record (record['id'] is its key)."""

    @abc.abstractmethod
    def delete(self, kind: str, rid: str) -> None: ...


class Store(abc.ABC):
    @abc.abstractmethod
    def revision(self) -> int:
        """Revision of the last committed write (0 for an empty store)."""

    @abc.abstractmethod
    def snapshot(self) -> tuple[int, dict[str, dict[str, Record]]]:
        """A consistent copy of everything: (revision, {kind: {id: record}})."""

    @abc.abstractmethod
    def get(self, kind: str, rid: str) -> Record | None: ...

    @abc.abstractmethod
    def list(self, kind: str) -> list[Record]: ...

    @abc.abstractmethod
    @contextlib.contextmanager
    def transaction(self) -> Iterator[Txn]:
        """All writes inside commit atomically as one revision step per record, or not at all.

        Optimistic backends raise Conflict on leaving the block if a concurrent writer got there
        first; callers that may race wrap the whole transaction in retry_on_conflict."""

    @abc.abstractmethod
    def changes(self, after: int, timeout: float | None = None) -> builtins.list[Change]:
        """Changes with revision > after, oldest first; waits up to `timeout` s if there are none.

        Raises Compacted if changes after `after` were discarded.
        """

    def close(self) -> None:  # noqa: B027 — optional: stores holding nothing need not override it
        """Release files/connections."""
