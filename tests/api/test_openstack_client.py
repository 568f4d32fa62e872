"""The real `openstack` client (python-openstackclient) against our API, unchanged, noauth.

Starts the API with waitress on a random loopback port in a thread and drives create/list/show/
delete of every resource through the CLI the way users do.
"""
from __future__ import annotations


import pytest

from tests.api.osc import run as osc_run

from topology.api.app import create_app, serve_in_thread
from topology.store.backends import open_store
from topology.model.service import Service

@pytest.fixture(scope="module")
def api(tmp_path_factory):
    store = open_store(f"sqlite://{tmp_path_factory.mktemp('osc')}/tf.db")
    handle = serve_in_thread(create_app(Service(store)), "127.0.0.1", 0)
    yield handle
    handle.close()
    store.close()


@pytest.fixture(scope="module")
def osc(api):
    def run(*args: str, check: bool = True) -> object:
        return osc_run(["--os-auth-type", "none", "--os-endpoint", api.url], args, check=check)
    return run


def test_openstack_client_end_to_end(osc):
    net = osc("network", "create", "osc-net", "-f", "json")
    assert net["name"] == "osc-net" and net["provider:network_type"] == "vxlan" and net["mtu"] == 1450
    assert osc("network", "show", "osc-net", "-f", "json")["id"] == net["id"]

    sub = osc("subnet", "create", "--network", "osc-net", "--subnet-range", "10.20.0.0/24", "osc-sub", "-f", "json")
    assert sub["gateway_ip"] == "10.20.0.1" and sub["cidr"] == "10.20.0.0/24"

    port = osc("port", "create", "--network", "osc-net", "--fixed-ip", "subnet=osc-sub,ip-address=10.20.0.50",
               "osc-port", "-f", "json")
    assert port["fixed_ips"][0]["ip_address"] == "10.20.0.50"
    assert port["status"] == "DOWN"

    ext = osc("network", "create", "--external", "--provider-network-type", "flat",
              "--provider-physical-network", "physnet1", "osc-ext", "-f", "json")
    assert ext["router:external"] is True
    osc("subnet", "create", "--network", "osc-ext", "--subnet-range", "172.24.4.0/24", "--no-dhcp", "osc-ext-sub")

    router = osc("router", "create", "osc-router", "-f", "json")
    osc("router", "add", "subnet", "osc-router", "osc-sub")
    osc("router", "set", "--external-gateway", "osc-ext", "osc-router")
    shown = osc("router", "show", "osc-router", "-f", "json")
    assert shown["external_gateway_info"]["network_id"] == ext["id"]
    assert [i["ip_address"] for i in shown["interfaces_info"]] == ["10.20.0.1"]

    sg = osc("security", "group", "create", "osc-sg", "-f", "json")
    rule = osc("security", "group", "rule", "create", "--protocol", "tcp", "--dst-port", "22", "osc-sg", "-f", "json")
    assert rule["port_range_min"] == 22 and rule["security_group_id"] == sg["id"]
    rules = osc("security", "group", "rule", "list", "osc-sg", "-f", "json")
    assert len(rules) == 3   # two default egress rules + ours

    fip = osc("floating", "ip", "create", "osc-ext", "-f", "json")
    assert fip["floating_ip_address"].startswith("172.24.4.")
    osc("floating", "ip", "set", "--port", "osc-port", fip["id"])
    assert osc("floating", "ip", "show", fip["id"], "-f", "json")["router_id"] == router["id"]

    # lists
    assert {"osc-net", "osc-ext"} <= {n["Name"] for n in osc("network", "list", "-f", "json")}
    assert {"osc-sub", "osc-ext-sub"} <= {s["Name"] for s in osc("subnet", "list", "-f", "json")}
    assert "osc-port" in {p["Name"] for p in osc("port", "list", "-f", "json")}
    assert [r["Name"] for r in osc("router", "list", "-f", "json")] == ["osc-router"]
    assert {"default", "osc-sg"} <= {g["Name"] for g in osc("security", "group", "list", "-f", "json")}
    assert [f["ID"] for f in osc("floating", "ip", "list", "-f", "json")] == [fip["id"]]

    # a Neutron error comes back as such
    dup = osc("port", "create", "--network", "osc-net", "--fixed-ip", "ip-address=10.20.0.50", "dup", check=False)
    assert dup.returncode != 0 and "already allocated" in dup.stderr

    # deletes, in dependency order
    osc("floating", "ip", "delete", fip["id"])
    osc("router", "unset", "--external-gateway", "osc-router")
    osc("router", "remove", "subnet", "osc-router", "osc-sub")
    osc("router", "delete", "osc-router")
    osc("security", "group", "rule", "delete", rule["id"])
    osc("security", "group", "delete", "osc-sg")
    osc("port", "delete", "osc-port")
    osc("subnet", "delete", "osc-sub")
    osc("network", "delete", "osc-net", "osc-ext")
    assert osc("network", "list", "-f", "json") == []
    assert osc("router", "list", "-f", "json") == []
    assert osc("port", "list", "-f", "json") == []
