"""Open a Store from a URL, so `--store URL` picks the backend and code never names one."""
from __future__ import annotations

import os
from urllib.parse import urlparse

from topology.store import Store


def open_store(url: str) -> Store:
    """`sqlite:///abs/path.db`, `memory://` (tests), `etcd://host:port[/prefix]` (shared, see etcd_store)."""
    parsed = urlparse(url)
    if parsed.scheme == "sqlite":
        from topology.store.sqlite import SqliteStore
        path = parsed.path
        if not path or path == "/":
            raise ValueError(f"sqlite store URL needs a file path: {url!r}")
        directory = os.path.dirname(path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        return SqliteStore(path)
    if parsed.scheme == "memory":
        from topology.store.sqlite import SqliteStore
        return SqliteStore(":memory:")
    if parsed.scheme == "etcd":
        from topology.store.etcd import EtcdStore
        if not parsed.hostname:
            raise ValueError(f"etcd store URL needs a host: {url!r} (etcd://host:port[/prefix])")
        prefix = parsed.path.rstrip("/") or "/tenantflow"
        return EtcdStore(parsed.hostname, parsed.port or 2379, prefix)
    raise ValueError(f"unknown store URL {url!r} (expected sqlite:///path, memory:// or etcd://host:port[/prefix])")


def beside_database(url: str, suffix: str) -> str | None:
    """A file next to an SQLite store's database (`sqlite:////var/lib/x.db`, ".ports" →
    /var/lib/x.db.ports): where the controller keeps its own restart files by default. Other
    stores (and the in-memory one) have no such place: None."""
    prefix = "sqlite:///"
    if not url.startswith(prefix):
        return None
    path = url[len(prefix):]
    return path + suffix if path and path != ":memory:" else None
