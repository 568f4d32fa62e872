"""/v2.0/tenantflow/instances/{device_id}: user data and keys, scoped to the project owning the
instance's ports; the metadata agent's admin-only lookup by port key."""
from __future__ import annotations

import base64

import pytest

from tests.api.tenants import ALICE, BOB, World, error

PATH = "/v2.0/tenantflow/instances"
UD = base64.b64encode(b"#cloud-config\nhostname: vm1\n").decode()


@pytest.fixture
def w():
    world = World()
    net = world.create("networks", project=ALICE)
    world.create("subnets", project=ALICE, network_id=net["id"], cidr="10.0.0.0/24")
    world.port = world.create("ports", project=ALICE, network_id=net["id"],  # type: ignore[attr-defined]
                              device_id="vm-1", name="vm1", device_owner="compute:nova")
    yield world
    world.svc.store.close()


def test_put_get_delete_by_the_owner(w):
    body = {"instance": {"user_data": UD, "public_keys": {"mykey": "ssh-ed25519 AAAA alice@x\n"}}}
    rec = w.call("PUT", f"{PATH}/vm-1", body, project=ALICE, status=201).json["instance"]
    assert rec["id"] == "vm-1" and rec["project_id"] == ALICE and rec["user_data"] == UD
    assert rec["public_keys"] == {"mykey": "ssh-ed25519 AAAA alice@x"}
    again = w.call("PUT", f"{PATH}/vm-1", {"instance": {"user_data": None}}, project=ALICE, status=200)
    assert again.json["instance"]["user_data"] is None and again.json["instance"]["public_keys"]
    assert w.call("GET", f"{PATH}/vm-1", project=ALICE, status=200).json["instance"]["id"] == "vm-1"
    assert w.call("GET", f"{PATH}/vm-1", status=200).json["instance"]["id"] == "vm-1"   # admin
    w.call("DELETE", f"{PATH}/vm-1", project=ALICE, status=204)
    error(w.call("GET", f"{PATH}/vm-1", project=ALICE), 404, "InstanceNotFound")


def test_other_projects_get_404(w):
    body = {"instance": {"user_data": UD}}
    error(w.call("PUT", f"{PATH}/vm-1", body, project=BOB), 404, "InstanceNotFound")
    w.call("PUT", f"{PATH}/vm-1", body, project=ALICE, status=201)
    error(w.call("GET", f"{PATH}/vm-1", project=BOB), 404, "InstanceNotFound")
    error(w.call("DELETE", f"{PATH}/vm-1", project=BOB), 404, "InstanceNotFound")
    error(w.call("PUT", f"{PATH}/no-such-vm", body, project=ALICE), 404, "InstanceNotFound")


@pytest.mark.parametrize("body", [
    {"instance": {"user_data": "not base64!"}},
    {"instance": {"user_data": 5}},
    {"instance": {"public_keys": ["k"]}},
    {"instance": {"public_keys": {"k": ""}}},
    {"instance": {"color": "red"}},
    {"server": {}},
    [],
])
def test_bad_bodies_are_400(w, body):
    resp = w.call("PUT", f"{PATH}/vm-1", body, project=ALICE)
    assert resp.status_code == 400, resp.text
    assert "NeutronError" in resp.json


def test_metadata_lookup_is_admin_only(w):
    w.call("PUT", f"{PATH}/vm-1", {"instance": {"user_data": UD}}, project=ALICE, status=201)
    key = next(p["_key"] for p in w.svc.store.list("port") if p["id"] == w.port["id"])
    error(w.call("GET", f"/v2.0/tenantflow/metadata/ports/{key}", project=ALICE), 403, "PolicyNotAuthorized")
    md = w.call("GET", f"/v2.0/tenantflow/metadata/ports/{key}", status=200).json["metadata"]
    assert md["port"]["id"] == w.port["id"] and md["instance"]["user_data"] == UD
    assert md["subnets"][0]["cidr"] == "10.0.0.0/24" and md["network"]["id"] == w.port["network_id"]
    assert "_key" not in md["port"]
    error(w.call("GET", "/v2.0/tenantflow/metadata/ports/9999"), 404, "PortNotFound")
    error(w.call("GET", "/v2.0/tenantflow/metadata/ports/x"), 400, "InvalidInput")


def test_cli_instance_set_show_delete(tmp_path, capsys):
    import json

    from topology.api.app import create_app, serve_in_thread
    from topology.cli import main as cli
    from topology.model.service import Service
    from topology.store.backends import open_store

    svc = Service(open_store("memory://"))
    handle = serve_in_thread(create_app(svc), "127.0.0.1", 0)
    try:
        def run(*argv):
            rc = cli.main(["--url", handle.url, "--project", ALICE, *argv])
            return rc, capsys.readouterr()
        assert run("network", "create", "n", "-f", "json")[0] == 0
        assert run("subnet", "create", "s", "--network", "n", "--subnet-range", "10.0.0.0/24")[0] == 0
        assert run("port", "create", "vm1", "--network", "n", "--device", "vm-1")[0] == 0
        ud = tmp_path / "ud"
        ud.write_bytes(b"#cloud-config\n")
        rc, out = run("instance", "set", "vm-1", "--user-data", str(ud), "--key", "k=ssh-ed25519 AAAA")
        assert rc == 0, out.err
        rec = json.loads(out.out)
        assert rec["project_id"] == ALICE and base64.b64decode(rec["user_data"]) == b"#cloud-config\n"
        rc, out = cli.main(["--url", handle.url, "--project", BOB, "instance", "show", "vm-1"]), capsys.readouterr()
        assert rc == 1 and "InstanceNotFound" in out.err
        assert run("instance", "show", "vm-1")[0] == 0
        assert run("instance", "delete", "vm-1")[0] == 0
        assert run("instance", "show", "vm-1")[0] == 1
    finally:
        handle.close()
        svc.store.close()
