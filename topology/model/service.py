"""The business layer used by the API and the controller: Neutron semantics over a Store.

Why one class: every write (API request, port binding from the controller, chassis registration)
goes through the same validation and runs as ONE store transaction, so a failed request raises
(→ rollback) and leaves the store exactly as it was, and every successful one is one step of the
change feed. Reads return Neutron-shaped dicts without the hidden `_`-prefixed fields.
"""
from __future__ import annotations

import builtins
import contextlib
import copy
import logging
import time
from typing import Any, Callable, Iterator

from topology.model import errors
from topology.model.context import Context, visible
from topology.model.resources import chassis as chassis_res
from topology.model.resources import common, floatingip, network, port, router, secgroup, subnet
from topology.model.settings import Settings
from topology.store import (CHASSIS, FLOATINGIP, KINDS, NETWORK, PORT, ROUTER, SECURITY_GROUP,
                            SECURITY_GROUP_RULE, SUBNET, Record, Store, retry_on_conflict)
from topology.model.validate import prepare
from topology.model import guard, quotas
from topology.model.policy import Policy, default_policy
from topology.model.resources import rbac
from topology.store.writetx import WriteTx

LOG = logging.getLogger(__name__)

Handler = Callable[..., Any]
HANDLERS: dict[str, tuple[Handler, Handler | None, Handler]] = {
    NETWORK: (network.create, network.update, network.delete),
    SUBNET: (subnet.create, subnet.update, subnet.delete),
    PORT: (port.create, port.update, port.delete),
    ROUTER: (router.create, router.update, router.delete),
    FLOATINGIP: (floatingip.create, floatingip.update, floatingip.delete),
    SECURITY_GROUP: (secgroup.create, secgroup.update, secgroup.delete),
    SECURITY_GROUP_RULE: (secgroup.create_rule, None, secgroup.delete_rule),
    CHASSIS: (chassis_res.create, chassis_res.update, chassis_res.delete),
}
PORT_STATUSES = ("ACTIVE", "DOWN", "BUILD", "ERROR")


def public(rec: Record) -> Record:
    """The API view of a record: hidden `_` fields removed."""
    return {k: v for k, v in rec.items() if not k.startswith("_")}


_SCALARS = (str, int, bool, float, type(None))


def copied(value: Any) -> Any:
    """copy.deepcopy for records (dicts, lists, scalars), several times faster: a bulk create
    presents 10,000 of them. Anything else inside is handed to copy.deepcopy."""
    kind = type(value)
    if kind is dict:
        return {k: copied(v) for k, v in value.items()}
    if kind is list:
        return [copied(v) for v in value]
    if kind in _SCALARS:
        return value
    return copy.deepcopy(value)


def _eq(value: Any, wanted: str) -> bool:
    if isinstance(value, bool):
        low = wanted.lower()
        return low in ("true", "1", "false", "0") and (low in ("true", "1")) == value
    if value is None:
        return wanted in ("", "None", "null")
    if isinstance(value, int):
        try:
            return int(wanted, 0) == value
        except ValueError:
            return False
    if isinstance(value, list):
        return wanted in value
    if isinstance(value, dict):
        return False
    return str(value) == wanted


def _fixed_ip_match(fixed_ips: list[dict], wanted: str) -> bool:
    key, _, val = wanted.partition("=")
    if key == "ip_address_substr":
        return any(val in f["ip_address"] for f in fixed_ips)
    if key in ("ip_address", "subnet_id"):
        return any(f[key] == val for f in fixed_ips)
    return False


def matches(rec: Record, filters: dict[str, list[str]]) -> bool:
    """Neutron list filters: every attribute must match one of its values (repeated = OR)."""
    for name, wanted in filters.items():
        if name == "fixed_ips" and "fixed_ips" in rec:
            if not all(_fixed_ip_match(rec["fixed_ips"], w) for w in wanted):
                return False
            continue
        if name not in rec:
            continue  # unknown filters are ignored, as Neutron without filter validation does
        if not any(_eq(rec[name], w) for w in wanted):
            return False
    return True


def select_fields(rec: Record, fields: list[str] | None) -> Record:
    if not fields:
        return rec
    return {k: rec[k] for k in fields if k in rec}


# A bulk request this large logs its progress (a 10,000-port POST takes a while).
BULK_PROGRESS_EVERY = 500


class Service:
    def __init__(self, store: Store, settings: Settings | None = None, policy: Policy | None = None) -> None:
        self.store = store
        self.settings = settings or Settings()
        if policy is None:
            policy = Policy(self.settings.policy_file) if self.settings.policy_file else default_policy()
        self.policy = policy
        self.quota_defaults = {**quotas.DEFAULTS, **(self.settings.default_quotas or {})}

    # ---- contexts -------------------------------------------------------------------------
    def admin_context(self) -> Context:
        return Context(self.settings.default_project_id, True)

    def context(self, project_id: str | None = None, roles: list[str] | None = None) -> Context:
        """No project → admin in the default project (noauth); otherwise admin iff 'admin' in roles."""
        if not project_id:
            return self.admin_context()
        return Context(project_id, "admin" in (roles or []))

    @contextlib.contextmanager
    def _write(self) -> Iterator[WriteTx]:
        with self.store.transaction() as txn:
            yield WriteTx(txn, self.settings)

    # ---- presentation -----------------------------------------------------------------------
    def _present(self, kind: str, rec: Record, subnets_by_net: dict[str, list[str]] | None,
                 rules_by_sg: dict[str, list[Record]] | None) -> Record:
        out = public(rec)
        if kind == NETWORK:
            out["subnets"] = list((subnets_by_net or {}).get(rec["id"], []))
        elif kind == SECURITY_GROUP:
            out["security_group_rules"] = [public(r) for r in (rules_by_sg or {}).get(rec["id"], [])]
        return out

    @staticmethod
    def _indexes(kind: str, subnets: list[Record], rules: list[Record]
                 ) -> tuple[dict[str, list[str]], dict[str, list[Record]]]:
        by_net: dict[str, list[str]] = {}
        by_sg: dict[str, list[Record]] = {}
        if kind == NETWORK:
            for s in sorted(subnets, key=lambda r: r.get("_seq", 0)):
                by_net.setdefault(s["network_id"], []).append(s["id"])
        if kind == SECURITY_GROUP:
            for r in sorted(rules, key=lambda r: r.get("_seq", 0)):
                by_sg.setdefault(r["security_group_id"], []).append(r)
        return by_net, by_sg

    def _present_tx(self, kind: str, recs: list[Record], tx: WriteTx) -> list[Record]:
        subnets = tx.list(SUBNET) if kind == NETWORK else []
        rules = tx.list(SECURITY_GROUP_RULE) if kind == SECURITY_GROUP else []
        by_net, by_sg = self._indexes(kind, subnets, rules)
        return [self._present(kind, copied(r), by_net, by_sg) for r in recs]

    # ---- generic CRUD -------------------------------------------------------------------------
    def create(self, kind: str, body: Any, ctx: Context | None = None) -> Record:
        return self.create_bulk(kind, [body], ctx)[0]

    @retry_on_conflict  # optimistic stores (etcd): re-run the request on a write race
    def create_bulk(self, kind: str, bodies: list[Any], ctx: Context | None = None) -> list[Record]:
        """All objects in ONE transaction: all are created or none."""
        ctx = ctx or self.admin_context()
        prepared = [prepare(kind, b, update=False) for b in bodies]
        big = len(prepared) >= BULK_PROGRESS_EVERY
        t0 = time.monotonic()
        decisions = self.policy.decisions() if len(prepared) > 1 else None
        with self._write() as tx:
            created = []
            for i, b in enumerate(prepared, 1):
                guard.before_create(tx, kind, b, ctx, self.policy, self.quota_defaults,
                                    self.settings.default_project_id, decisions=decisions)
                created.append(HANDLERS[kind][0](tx, b, ctx))
                if big and i % BULK_PROGRESS_EVERY == 0:
                    LOG.info("bulk create of %d %s: %d prepared (%.1fs)", len(prepared), kind, i,
                             time.monotonic() - t0)
            out = self._present_tx(kind, created, tx)
        if big:
            LOG.info("bulk create of %d %s committed in %.1fs", len(prepared), kind, time.monotonic() - t0)
        return out

    @retry_on_conflict  # optimistic stores (etcd): re-run the request on a write race
    def update(self, kind: str, rid: str, body: Any, ctx: Context | None = None) -> Record:
        ctx = ctx or self.admin_context()
        handler = HANDLERS[kind][1]
        if handler is None:
            raise errors.MethodNotAllowed(f"{kind} objects cannot be updated.")
        changes = prepare(kind, body, update=True)
        with self._write() as tx:
            old = common.get_visible(tx, kind, rid, ctx)
            guard.before_update(tx, kind, old, changes, ctx, self.policy)
            new = handler(tx, old, changes, ctx)
            return self._present_tx(kind, [new], tx)[0]

    @retry_on_conflict  # optimistic stores (etcd): re-run the request on a write race
    def delete(self, kind: str, rid: str, ctx: Context | None = None) -> None:
        ctx = ctx or self.admin_context()
        with self._write() as tx:
            old = common.get_visible(tx, kind, rid, ctx)
            guard.before_delete(tx, kind, old, ctx, self.policy)
            HANDLERS[kind][2](tx, old, ctx)
            if kind == NETWORK:
                rbac.purge_network(tx, rid)
            if kind == PORT and old["device_owner"] == common.DEVICE_DHCP:
                subnet.restore_dhcp_port(tx, old["network_id"])

    def get(self, kind: str, rid: str, ctx: Context | None = None, fields: list[str] | None = None) -> Record:
        ctx = ctx or self.admin_context()
        rec = self.store.get(kind, rid)
        if rec is None or not visible(kind, rec, ctx, self.store.get):
            raise common.NOT_FOUND[kind](id=rid)
        subnets = self.store.list(SUBNET) if kind == NETWORK else []
        rules = self.store.list(SECURITY_GROUP_RULE) if kind == SECURITY_GROUP else []
        by_net, by_sg = self._indexes(kind, subnets, rules)
        shown = self._present(kind, rec, by_net, by_sg)
        if kind == NETWORK:
            rbac.present_network(shown, rec, ctx.project_id, ctx.is_admin)
        return select_fields(shown, fields)

    def list(self, kind: str, ctx: Context | None = None, filters: dict[str, list[str]] | None = None,
             fields: list[str] | None = None) -> list[Record]:
        ctx = ctx or self.admin_context()
        if kind == SECURITY_GROUP:
            self._ensure_default_sg(ctx.project_id)
        records = sorted(self.store.list(kind), key=lambda r: (r.get("_seq", 0), r["id"]))
        networks: dict[str, Record] = {}
        if not ctx.is_admin and kind in (SUBNET, PORT):
            networks = {n["id"]: n for n in self.store.list(NETWORK)}

        def lookup(k: str, i: str) -> Record | None:
            return networks.get(i) if k == NETWORK else self.store.get(k, i)

        subnets = self.store.list(SUBNET) if kind == NETWORK else []
        rules = self.store.list(SECURITY_GROUP_RULE) if kind == SECURITY_GROUP else []
        by_net, by_sg = self._indexes(kind, subnets, rules)
        out = []
        for rec in records:
            if not visible(kind, rec, ctx, lookup):
                continue
            shown = self._present(kind, rec, by_net, by_sg)
            if kind == NETWORK:
                rbac.present_network(shown, rec, ctx.project_id, ctx.is_admin)
            if filters and not matches(shown, filters):
                continue
            out.append(select_fields(shown, fields))
        return out

    @retry_on_conflict  # optimistic stores (etcd): re-run the request on a write race
    def _ensure_default_sg(self, project_id: str) -> None:
        """Neutron creates a project's default group on first use, listing included."""
        if any(sg["name"] == "default" and sg["project_id"] == project_id
               for sg in self.store.list(SECURITY_GROUP)):
            return
        with self._write() as tx:
            secgroup.ensure_default(tx, project_id)

    # ---- routers -----------------------------------------------------------------------------
    @retry_on_conflict  # optimistic stores (etcd): re-run the request on a write race
    def add_router_interface(self, router_id: str, body: Any, ctx: Context | None = None) -> dict[str, Any]:
        ctx = ctx or self.admin_context()
        with self._write() as tx:
            rtr = common.get_visible(tx, ROUTER, router_id, ctx)
            guard.before_action(tx, "add_router_interface", ROUTER, rtr, ctx, self.policy)
            return router.add_interface(tx, rtr, body, ctx)

    @retry_on_conflict  # optimistic stores (etcd): re-run the request on a write race
    def remove_router_interface(self, router_id: str, body: Any, ctx: Context | None = None) -> dict[str, Any]:
        ctx = ctx or self.admin_context()
        with self._write() as tx:
            rtr = common.get_visible(tx, ROUTER, router_id, ctx)
            guard.before_action(tx, "remove_router_interface", ROUTER, rtr, ctx, self.policy)
            return router.remove_interface(tx, rtr, body, ctx)

    @retry_on_conflict  # optimistic stores (etcd): re-run the request on a write race
    def router_extraroutes(self, router_id: str, action: str, body: Any, ctx: Context | None = None
                           ) -> dict[str, Any]:
        """PUT /routers/{id}/add_extraroutes | remove_extraroutes (extraroute-atomic): read, merge
        and write the routes in one transaction, so concurrent callers never lose each other's."""
        ctx = ctx or self.admin_context()
        routes = router.extraroutes_of_body(body)
        with self._write() as tx:
            rtr = common.get_visible(tx, ROUTER, router_id, ctx)
            guard.before_action(tx, action, ROUTER, rtr, ctx, self.policy)
            new = router.update_extraroutes(tx, rtr, routes, action == "add_extraroutes", ctx)
            return {"router": self._present_tx(ROUTER, [new], tx)[0]}

    # ---- convenience wrappers (tests, demo scripts) --------------------------------------------
    def create_network(self, body: Any, ctx: Context | None = None) -> Record:
        return self.create(NETWORK, body, ctx)

    def create_subnet(self, body: Any, ctx: Context | None = None) -> Record:
        return self.create(SUBNET, body, ctx)

    def create_port(self, body: Any, ctx: Context | None = None) -> Record:
        return self.create(PORT, body, ctx)

    def create_router(self, body: Any, ctx: Context | None = None) -> Record:
        return self.create(ROUTER, body, ctx)

    # ---- internal API for the controller --------------------------------------------------------
    @retry_on_conflict  # optimistic stores (etcd): re-run the request on a write race
    def set_port_binding(self, port_id: str, host: str | None, status: str) -> Record:
        """Record where a port is plugged and whether it is up. No write (no feed noise) if unchanged.

        Returns the raw record (hidden fields included)."""
        _check_status(status)
        host = host or ""
        current = self.store.get(PORT, port_id)
        if current is None:
            raise errors.PortNotFound(id=port_id)
        if current["binding:host_id"] == host and current["status"] == status:
            return current
        with self._write() as tx:
            old = tx.get(PORT, port_id)
            if old is None:
                raise errors.PortNotFound(id=port_id)
            new = _bound(old, host, status)
            return old if new == old else copy.deepcopy(tx.replace(PORT, old, new))

    @retry_on_conflict
    def set_port_bindings(self, bindings: builtins.list[tuple[str, str | None, str]]) -> int:
        """Many (port id, host, status) bindings in ONE transaction; returns how many changed.

        Why: a transaction costs O(ports in the store) to open, so 1,000 taps appearing at once
        must not be 1,000 transactions. Ports deleted meanwhile are skipped."""
        for _, _, status in bindings:
            _check_status(status)
        changed = 0
        with self._write() as tx:
            for port_id, host, status in bindings:
                old = tx.get(PORT, port_id)
                if old is None:
                    continue
                new = _bound(old, host or "", status)
                if new != old:
                    tx.replace(PORT, old, new)
                    changed += 1
        return changed

    @retry_on_conflict  # optimistic stores (etcd): re-run the request on a write race
    def register_chassis(self, name: str, datapath_id: int | None, tunnel_ip: str | None = None,
                         bridge_mappings: dict[str, str] | None = None) -> Record:
        """Idempotent upsert by name (no write when nothing changes). Returns the raw record."""
        current = next((c for c in self.store.list(CHASSIS) if c["name"] == name), None)
        if current is not None and (datapath_id is None or current["datapath_id"] == datapath_id) \
                and (tunnel_ip is None or current["tunnel_ip"] == tunnel_ip) \
                and (bridge_mappings is None or current["bridge_mappings"] == bridge_mappings):
            return current
        with self._write() as tx:
            return copy.deepcopy(chassis_res.register(tx, name, datapath_id, tunnel_ip, bridge_mappings))

    def find_chassis_by_dpid(self, dpid: int) -> Record | None:
        """The raw chassis record whose datapath_id is `dpid`, or None."""
        return next((c for c in self.store.list(CHASSIS) if c["datapath_id"] == dpid), None)

    def find_chassis_by_name(self, name: str) -> Record | None:
        return next((c for c in self.store.list(CHASSIS) if c["name"] == name), None)

    @retry_on_conflict
    def set_chassis_alive(self, name: str, alive: bool) -> bool:
        """Controller-only: record whether a chassis is reachable (hidden `_alive`, read by the
        gateway selection, flows/gateway.py). Absent counts as alive. True if it changed."""
        current = self.find_chassis_by_name(name)
        if current is None or (current.get("_alive") is not False) == alive:
            return False
        with self._write() as tx:
            old = next((c for c in tx.list(CHASSIS) if c["name"] == name), None)
            if old is None or (old.get("_alive") is not False) == alive:
                return False
            tx.replace(CHASSIS, old, dict(copy.deepcopy(old), _alive=bool(alive)))
        return True


__all__ = ["Service", "Context", "public", "matches", "KINDS"]


def _check_status(status: str) -> None:
    if status not in PORT_STATUSES:
        raise errors.InvalidInput(error_message=f"status must be one of {PORT_STATUSES}")


def _bound(rec: Record, host: str, status: str) -> Record:
    """A copy of port `rec` bound to `host` with `status` (Neutron's binding:* attributes)."""
    new = copy.deepcopy(rec)
    new.update({"status": status, **port.binding(host)})
    return new
