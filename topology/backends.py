"""Open a Store from a URL, so `--store URL` picks the backend and code never names one."""
from __future__ import annotations

import os
from urllib.parse import urlparse

from topology.store import Store


def open_store(url: str) -> Store:
    """`sqlite:///abs/path.db`, `memory://` (tests), `etcd://host:port` (later issue)."""
    parsed = urlparse(url)
    if parsed.scheme == "sqlite":
        from topology.sqlite import SqliteStore
        path = parsed.path
        if not path or path == "/":
            raise ValueError(f"sqlite store URL needs a file path: {url!r}")
        directory = os.path.dirname(path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        return SqliteStore(path)
    if parsed.scheme == "memory":
        from topology.sqlite import SqliteStore
        return SqliteStore(":memory:")
    if parsed.scheme == "etcd":
        raise NotImplementedError("the etcd backend is not implemented yet")
    raise ValueError(f"unknown store URL {url!r} (expected sqlite:///path, memory:// or etcd://host:port)")
