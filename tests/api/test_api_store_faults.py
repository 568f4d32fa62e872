"""The API when the store cannot write: a real SQLite file on a full filesystem (a tiny tmpfs).

Neutron answers 503 when its database is away; so do we, with Neutron's error body, and the
write changes nothing. The file stays a valid database, and once space returns writes work again.
"""
from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import tempfile
from pathlib import Path

import falcon.testing
import pytest

from topology.api.app import create_app
from topology.store.backends import open_store
from topology.model.service import Service


def _mount(path: Path, size: str, remount: bool = False) -> None:
    opts = f"remount,size={size}" if remount else f"size={size}"
    subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], check=True, timeout=10,
                   capture_output=True)


@pytest.fixture()
def full_disk():
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root to mount a tmpfs")
    where = Path(tempfile.mkdtemp(prefix="tf-full-"))
    try:
        _mount(where, "512k")
    except (subprocess.CalledProcessError, OSError) as exc:
        pytest.skip(f"cannot mount a tmpfs here: {exc}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], timeout=10, check=False)
        shutil.rmtree(where, ignore_errors=True)


def test_disk_full_gives_503_changes_nothing_and_recovers(full_disk):
    store = open_store(f"sqlite:///{full_disk}/tf.db")
    client = falcon.testing.TestClient(create_app(Service(store)))
    created, refused = [], None
    for i in range(5000):  # bounded: 512 KiB fills long before this
        resp = client.simulate_post("/v2.0/networks", json={"network": {"name": f"n{i}", "description": "x" * 200}})
        if resp.status_code != 201:
            refused = resp
            break
        created.append(resp.json["network"]["id"])
    assert refused is not None, "the filesystem never filled"
    assert refused.status_code == 503, refused.text
    assert refused.json["NeutronError"]["type"] == "ServiceUnavailable"
    assert refused.headers.get("Retry-After")
    # nothing half-written: the API lists exactly what it acknowledged
    listed = {n["id"] for n in client.simulate_get("/v2.0/networks").json["networks"]}
    assert listed == set(created)
    # the file is a sound database (checked by a separate connection)
    with sqlite3.connect(f"file:{full_disk}/tf.db?mode=ro", uri=True) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    # space returns: the same process writes again
    _mount(full_disk, "16m", remount=True)
    resp = client.simulate_post("/v2.0/networks", json={"network": {"name": "after"}})
    assert resp.status_code == 201, resp.text
    listed = {n["id"] for n in client.simulate_get("/v2.0/networks").json["networks"]}
    assert listed == set(created) | {resp.json["network"]["id"]}
    store.close()


def test_store_unreachable_gives_503(monkeypatch):
    svc = Service(open_store("memory://"))
    client = falcon.testing.TestClient(create_app(svc))

    def down(*a, **kw):
        raise ConnectionError("cannot reach etcd at 127.0.0.1:2379")

    monkeypatch.setattr(svc, "create", down)
    resp = client.simulate_post("/v2.0/networks", json={"network": {"name": "n"}})
    assert resp.status_code == 503, resp.text
    assert resp.json["NeutronError"]["type"] == "ServiceUnavailable"
