"""Instances (ours): the user data and SSH keys the metadata service answers an instance with.

Nova keeps these for its instances; tenantflow has no Nova, so a project sets them on the
instance named by its ports' `device_id` (Nova's convention): `PUT /v2.0/tenantflow/instances/
{device_id}`. Who may see or change one: the project owning ports with that device_id (or, with
no ports left, the project that set it); other projects get 404 as for any resource they cannot
see; admin sees all. The metadata agent (controller/metadata_agent.py) reads everything about one
port through `lookup` (admin only), so it needs no other API call per request.
"""
from __future__ import annotations

import base64
import binascii
import copy
from typing import Any

from topology.model import errors
from topology.model.context import Context
from topology.store import INSTANCE, NETWORK, PORT, SUBNET, Record, Store, retry_on_conflict
from topology.store.writetx import WriteTx

MAX_USER_DATA = 65535            # Nova's limit on the base64 text
MAX_KEYS = 100
MAX_KEY_NAME = 255
MAX_KEY_TEXT = 16384
MAX_DEVICE_ID = 255


class InstanceNotFound(errors.NotFound):
    message = "Instance {id} could not be found."


def _public(rec: Record) -> Record:
    return {k: v for k, v in rec.items() if not k.startswith("_")}


def _ports(store: Store | WriteTx, device_id: str) -> list[Record]:
    return sorted((p for p in store.list(PORT) if p.get("device_id") == device_id),
                  key=lambda p: p["id"])


def _check_id(device_id: str) -> None:
    if not device_id or len(device_id) > MAX_DEVICE_ID:
        raise errors.InvalidInput(error_message=f"device_id must be 1..{MAX_DEVICE_ID} characters")


def check_body(body: Any) -> dict[str, Any]:
    """{"instance": {"user_data": "<base64>"|null, "public_keys": {name: key}}} → the changes."""
    if not isinstance(body, dict) or set(body) != {"instance"} or not isinstance(body["instance"], dict):
        raise errors.BadRequest('Resource body required: expected {"instance": {...}}.')
    inst = body["instance"]
    unknown = set(inst) - {"user_data", "public_keys"}
    if unknown:
        raise errors.InvalidInput(error_message=f"Unrecognized attribute(s) '{', '.join(sorted(unknown))}'")
    out: dict[str, Any] = {}
    if "user_data" in inst:
        ud = inst["user_data"]
        if ud is not None:
            if not isinstance(ud, str) or len(ud) > MAX_USER_DATA:
                raise errors.InvalidInput(
                    error_message=f"user_data must be base64 text of at most {MAX_USER_DATA} characters")
            try:
                base64.b64decode(ud.encode("ascii"), validate=True)
            except (binascii.Error, ValueError, UnicodeEncodeError):
                raise errors.InvalidInput(error_message="user_data is not valid base64") from None
        out["user_data"] = ud
    if "public_keys" in inst:
        keys = inst["public_keys"]
        if keys is None:
            keys = {}
        if not isinstance(keys, dict) or len(keys) > MAX_KEYS:
            raise errors.InvalidInput(error_message=f"public_keys must be an object of at most {MAX_KEYS} keys")
        for name, text in keys.items():
            if not name or len(name) > MAX_KEY_NAME or not isinstance(text, str) or not text.strip() \
                    or len(text) > MAX_KEY_TEXT or "\n" in text.strip():
                raise errors.InvalidInput(error_message=f"public key {name!r}: a name of 1..{MAX_KEY_NAME} "
                                                        f"characters and one key line of at most "
                                                        f"{MAX_KEY_TEXT} characters")
        out["public_keys"] = {str(k): v.strip() for k, v in keys.items()}
    return out


def _visible(rec: Record | None, ports: list[Record], ctx: Context) -> bool:
    if ctx.is_admin:
        return rec is not None or bool(ports)
    if ports:
        return any(p.get("project_id") == ctx.project_id for p in ports)
    return rec is not None and rec.get("project_id") == ctx.project_id


class Instances:
    """The business rules behind /v2.0/tenantflow/instances (one transaction per write)."""

    def __init__(self, service) -> None:
        self.service = service

    def show(self, device_id: str, ctx: Context) -> Record:
        _check_id(device_id)
        store = self.service.store
        rec = store.get(INSTANCE, device_id)
        if rec is None or not _visible(rec, _ports(store, device_id), ctx):
            raise InstanceNotFound(id=device_id)
        return _public(rec)

    @retry_on_conflict
    def put(self, device_id: str, body: Any, ctx: Context) -> tuple[Record, bool]:
        """Create or update; (record, created)."""
        _check_id(device_id)
        changes = check_body(body)
        with self.service._write() as tx:
            old = tx.get(INSTANCE, device_id)
            ports = _ports(tx, device_id)
            if not ctx.is_admin and not _visible(old, ports, ctx):
                raise InstanceNotFound(id=device_id)
            if old is None:
                owner = ports[0].get("project_id") if ports else ctx.project_id
                rec = {"id": device_id, "project_id": owner, "tenant_id": owner, "user_data": None,
                       "public_keys": {}, **changes, "created_at": tx.now, "updated_at": tx.now,
                       "revision_number": 0}
                return _public(tx.insert(INSTANCE, rec)), True
            new = copy.deepcopy(old)
            new.update(changes)
            return _public(old if new == old else tx.replace(INSTANCE, old, new)), False

    @retry_on_conflict
    def delete(self, device_id: str, ctx: Context) -> None:
        _check_id(device_id)
        with self.service._write() as tx:
            old = tx.get(INSTANCE, device_id)
            if old is None or not _visible(old, _ports(tx, device_id), ctx):
                raise InstanceNotFound(id=device_id)
            tx.remove(INSTANCE, old)

    def lookup(self, port_key: int, ctx: Context) -> dict[str, Any]:
        """Everything the metadata agent answers one port with (admin only): the port, its network,
        its subnets and its instance's data. 404 when no port has that key."""
        if not ctx.is_admin:
            raise errors.PolicyNotAuthorized(action="get_metadata_port")
        store = self.service.store
        port = next((p for p in store.list(PORT) if p.get("_key") == port_key), None)
        if port is None:
            raise errors.PortNotFound(id=f"with key {port_key}")
        net = store.get(NETWORK, port.get("network_id")) or {}
        subnet_ids = [f.get("subnet_id") for f in port.get("fixed_ips") or ()]
        subnets = [_public(s) for s in (store.get(SUBNET, sid) for sid in dict.fromkeys(subnet_ids)) if s]
        device_id = port.get("device_id") or ""
        inst = store.get(INSTANCE, device_id) if device_id else None
        return {"port": _public(port), "network": _public(net), "subnets": subnets,
                "instance": _public(inst) if inst else None}
