"""`tenantflow` CLI against a live API (waitress in a thread, memory store)."""
from __future__ import annotations

import json

import pytest

from topology.cli import main as cli
from topology.api.app import create_app, serve_in_thread
from topology.store.backends import open_store
from topology.model.service import Service


@pytest.fixture(scope="module")
def url():
    handle = serve_in_thread(create_app(Service(open_store("memory://"))), "127.0.0.1", 0)
    yield handle.url
    handle.close()


def run(url, capsys, *argv):
    rc = cli.main(["--url", url, *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_cli_roundtrip(url, capsys):
    rc, out, _ = run(url, capsys, "network", "create", "blue", "-f", "json")
    assert rc == 0 and json.loads(out)["name"] == "blue"
    assert run(url, capsys, "subnet", "create", "blue-sub", "--network", "blue", "--subnet-range", "10.0.0.0/24",
               "-f", "value", "-c", "gateway_ip")[1].strip() == "10.0.0.1"
    rc, out, _ = run(url, capsys, "port", "create", "vm1", "--network", "blue", "--fixed-ip",
                     "subnet=blue-sub,ip-address=10.0.0.10", "--host", "node1", "--interface-name", "veth-vm1",
                     "-f", "json")
    port = json.loads(out)
    assert port["binding:profile"] == {"interface_name": "veth-vm1"} and port["binding:host_id"] == "node1"
    rc, out, err = run(url, capsys, "port", "create", "vm2", "--network", "blue", "--fixed-ip", "ip-address=10.0.0.10")
    assert rc == 1 and "409 IpAddressAlreadyAllocated" in err
    rc, out, _ = run(url, capsys, "port", "list", "--network", "blue")
    assert "vm1" in out and out.startswith("+")
    assert run(url, capsys, "router", "create", "r1")[0] == 0
    rc, out, _ = run(url, capsys, "router", "add-interface", "r1", "blue-sub", "-f", "json")
    assert json.loads(out)["subnet_id"]
    rc, out, _ = run(url, capsys, "security-group-rule", "create", "default", "--protocol", "tcp",
                     "--dst-port", "22", "-f", "json")
    assert rc == 0 and json.loads(out)["port_range_max"] == 22
    rc, out, _ = run(url, capsys, "chassis", "create", "node1", "--datapath-id", "0x2a", "--tunnel-ip", "192.0.2.1",
                     "-f", "value", "-c", "datapath_id")
    assert out.strip() == "42"
    rc, out, err = run(url, capsys, "network", "delete", "blue")
    assert rc == 1 and "NetworkInUse" in err
    assert run(url, capsys, "router", "remove-interface", "r1", "blue-sub")[0] == 0
    assert run(url, capsys, "port", "delete", "vm1")[0] == 0
    assert run(url, capsys, "network", "delete", "blue")[0] == 0
    assert json.loads(run(url, capsys, "network", "list", "-f", "json")[1]) == []


def test_cli_unreachable_api(capsys):
    rc, _, err = run("http://127.0.0.1:9", capsys, "network", "list")
    assert rc == 1 and "cannot reach the API" in err


def test_delegated_subcommand_missing_module(monkeypatch, capsys):
    monkeypatch.setitem(cli.DELEGATED, "serve", ("controller.does_not_exist", "a missing module"))
    assert cli.main(["serve", "--help"]) == 2
    assert "not available" in capsys.readouterr().err


def test_cli_refusals_change_nothing(url, capsys):
    """Wrong usage is refused before anything is sent; an ambiguous name is refused by the client."""
    assert run(url, capsys, "network", "create", "twin")[0] == 0
    assert run(url, capsys, "network", "create", "twin")[0] == 0
    before = run(url, capsys, "network", "list", "-f", "json")[1]
    rc, _, err = run(url, capsys, "network", "show", "twin")
    assert rc == 1 and "more than one network named 'twin'" in err
    assert run(url, capsys, "router", "create", "r-refuse")[0] == 0
    rc, _, err = run(url, capsys, "router", "add-interface", "r-refuse")
    assert rc == 1 and "give a subnet or --port PORT" in err
    with pytest.raises(SystemExit) as info:
        cli.main(["--url", url, "security-group-rule", "set", "x", "--description", "d"])
    assert info.value.code == 2  # rules cannot be updated: the table says so, no verb
    capsys.readouterr()
    rc, _, err = run(url, capsys, "chassis", "create", "nodeX", "--bridge-mapping", "physnet1")
    assert rc == 1 and "PHYSNET:PORT" in err
    assert run(url, capsys, "network", "list", "-f", "json")[1] == before
    assert run(url, capsys, "router", "delete", "r-refuse")[0] == 0
    for net in json.loads(before):
        if net["name"] == "twin":
            assert run(url, capsys, "network", "delete", net["id"])[0] == 0
