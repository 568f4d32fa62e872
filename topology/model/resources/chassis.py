"""Chassis (ours): a switch the controller programs — name, datapath id, tunnel IP, bridge mappings."""
from __future__ import annotations

import copy
from typing import Any

from topology.model import errors
from topology.model.context import Context
from topology.store import CHASSIS, Record
from topology.model.validate import given_or_default
from topology.store.writetx import WriteTx, new_id


def _require_admin(ctx: Context, action: str) -> None:
    if not ctx.is_admin:
        raise errors.PolicyNotAuthorized(action=f"{action}_chassis")


def _check_unique(tx: WriteTx, rec: Record) -> None:
    for other in tx.list(CHASSIS):
        if other["id"] == rec["id"]:
            continue
        if other["name"] == rec["name"]:
            raise errors.ChassisExists(what=f"name {rec['name']}")
        if rec["datapath_id"] is not None and other["datapath_id"] == rec["datapath_id"]:
            raise errors.ChassisExists(what=f"datapath_id {rec['datapath_id']:#018x}")


def _check_mappings(tx: WriteTx, mappings: dict[str, str]) -> None:
    unknown = set(mappings) - tx.settings.known_physnets()
    if unknown:
        raise errors.UnknownPhysicalNetwork(physical_network=", ".join(sorted(unknown)))


def create(tx: WriteTx, body: dict[str, Any], ctx: Context) -> Record:
    _require_admin(ctx, "create")
    if not body["name"]:
        raise errors.InvalidInput(error_message="'name' must not be empty")
    rec = {"id": body.get("id") or new_id(), "name": body["name"],
           **given_or_default(CHASSIS, body),  # datapath_id, tunnel_ip, bridge_mappings, description: SPECS
           "created_at": tx.now, "updated_at": tx.now, "revision_number": 0}
    if tx.get(CHASSIS, rec["id"]) is not None:
        raise errors.Conflict(f"A chassis with id {rec['id']} already exists.")
    _check_unique(tx, rec)
    _check_mappings(tx, rec["bridge_mappings"])
    return tx.insert(CHASSIS, rec)


def update(tx: WriteTx, old: Record, body: dict[str, Any], ctx: Context) -> Record:
    _require_admin(ctx, "update")
    new = copy.deepcopy(old)
    for name in ("name", "datapath_id", "tunnel_ip", "bridge_mappings", "description"):
        if name in body:
            new[name] = body[name]
    _check_unique(tx, new)
    _check_mappings(tx, new["bridge_mappings"])
    return old if new == old else tx.replace(CHASSIS, old, new)


def delete(tx: WriteTx, old: Record, ctx: Context) -> None:
    _require_admin(ctx, "delete")
    tx.remove(CHASSIS, old)


def register(tx: WriteTx, name: str, datapath_id: int | None, tunnel_ip: str | None,
             bridge_mappings: dict[str, str] | None) -> Record:
    """Upsert by name. Fields given as None are left alone; a datapath id held by another chassis
    moves to this one (a bridge first auto-registered, then joined by `node init` under its name)."""
    if datapath_id is not None:
        for other in tx.list(CHASSIS):
            if other["name"] != name and other["datapath_id"] == datapath_id:
                tx.replace(CHASSIS, other, dict(copy.deepcopy(other), datapath_id=None))
    old = next((c for c in tx.list(CHASSIS) if c["name"] == name), None)
    if old is None:
        body: dict[str, Any] = {"name": name, "datapath_id": datapath_id, "tunnel_ip": tunnel_ip,
                                "bridge_mappings": bridge_mappings or {}}
        rec = {"id": new_id(), "description": "", "created_at": tx.now, "updated_at": tx.now,
               "revision_number": 0, **body}
        return tx.insert(CHASSIS, rec)
    new = copy.deepcopy(old)
    if datapath_id is not None:
        new["datapath_id"] = datapath_id
    if tunnel_ip is not None:
        new["tunnel_ip"] = tunnel_ip
    if bridge_mappings is not None:
        new["bridge_mappings"] = dict(bridge_mappings)
    return old if new == old else tx.replace(CHASSIS, old, new)
