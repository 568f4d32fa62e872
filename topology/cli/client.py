"""The CLI's HTTP client of the API: JSON in and out, Neutron errors turned into CliError."""
from __future__ import annotations

import json
import uuid
from typing import Any

import requests

from topology.model.schema import BY_COLLECTION


class CliError(Exception):
    """A user-facing failure: printed without a traceback, exit status 1."""


def is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return len(text) == 36


class Client:
    def __init__(self, url: str, project: str | None, token: str | None, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.headers = {"Content-Type": "application/json"}
        if project:
            self.headers["X-Project-Id"] = project
        if token:
            self.headers["X-Auth-Token"] = token
        self.timeout = timeout

    def call(self, method: str, path: str, body: Any = None, params: Any = None) -> Any:
        try:
            resp = requests.request(method, f"{self.url}/v2.0/{path}", headers=self.headers, params=params,
                                    data=None if body is None else json.dumps(body), timeout=self.timeout)
        except requests.RequestException as exc:
            raise CliError(f"cannot reach the API at {self.url}: {exc}") from None
        if resp.status_code >= 400:
            try:
                err = resp.json()["NeutronError"]
                message = f"{err['type']}: {err['message']}"
            except (ValueError, KeyError, TypeError):
                message = resp.text.strip()
            raise CliError(f"{resp.status_code} {message}")
        return resp.json() if resp.content else None

    def resolve(self, collection: str, ref: str) -> str:
        """Name or id → id (exactly one match by name required)."""
        if is_uuid(ref):
            return ref
        res = BY_COLLECTION[collection]
        found = self.call("GET", collection, params={"name": ref, "fields": "id"})[res.plural]
        if not found:
            raise CliError(f"no {res.singular} named {ref!r}")
        if len(found) > 1:
            raise CliError(f"more than one {res.singular} named {ref!r}; use the id")
        return found[0]["id"]
