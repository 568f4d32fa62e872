"""The real `openstack` client's QoS commands against our API, unchanged (noauth): policy create /
list / show / set / delete, bandwidth-limit and DSCP rules, rule types, and `port set --qos-policy`."""
from __future__ import annotations

import pytest

from tests.api.osc import run as osc_run
from topology.api.app import create_app, serve_in_thread
from topology.model.service import Service
from topology.store.backends import open_store


@pytest.fixture(scope="module")
def osc(tmp_path_factory):
    store = open_store(f"sqlite://{tmp_path_factory.mktemp('oscqos')}/tf.db")
    handle = serve_in_thread(create_app(Service(store)), "127.0.0.1", 0)

    def run(*args: str, check: bool = True) -> object:
        return osc_run(["--os-auth-type", "none", "--os-endpoint", handle.url], args, check=check)
    yield run
    handle.close()
    store.close()


def test_qos_commands(osc):
    pol = osc("network", "qos", "policy", "create", "--description", "20 Mbit/s", "gold", "-f", "json")
    assert pol["name"] == "gold" and pol["shared"] is False and pol["rules"] == []
    rule = osc("network", "qos", "rule", "create", "--type", "bandwidth-limit", "--max-kbps", "20000",
               "--max-burst-kbits", "16000", "--egress", "gold", "-f", "json")
    assert rule["max_kbps"] == 20000 and rule["max_burst_kbps"] == 16000 and rule["direction"] == "egress"
    dscp = osc("network", "qos", "rule", "create", "--type", "dscp-marking", "--dscp-mark", "26", "gold",
               "-f", "json")
    assert dscp["dscp_mark"] == 26
    shown = osc("network", "qos", "policy", "show", "gold", "-f", "json")
    assert shown["id"] == pol["id"] and len(shown["rules"]) == 2
    assert [p["Name"] for p in osc("network", "qos", "policy", "list", "-f", "json")] == ["gold"]
    rules = osc("network", "qos", "rule", "list", "gold", "-f", "json")
    assert {r["Type"] for r in rules} == {"bandwidth_limit", "dscp_marking"}
    osc("network", "qos", "rule", "set", "--max-kbps", "30000", "gold", rule["id"])
    assert osc("network", "qos", "rule", "show", "gold", rule["id"], "-f", "json")["max_kbps"] == 30000
    types = {t["Type"] for t in osc("network", "qos", "rule", "type", "list", "-f", "json")}
    assert types == {"bandwidth_limit", "dscp_marking"}
    osc("network", "qos", "policy", "set", "--description", "30 Mbit/s", "gold")

    osc("network", "create", "qos-net")
    port = osc("port", "create", "--network", "qos-net", "qos-port", "-f", "json")
    osc("port", "set", "--qos-policy", "gold", "qos-port")
    assert osc("port", "show", "qos-port", "-f", "json")["qos_policy_id"] == pol["id"]
    busy = osc("network", "qos", "policy", "delete", "gold", check=False)
    assert busy.returncode != 0 and "is used by port" in busy.stderr, busy.stderr
    osc("port", "unset", "--qos-policy", "qos-port")
    assert osc("port", "show", port["id"], "-f", "json")["qos_policy_id"] is None
    osc("network", "set", "--qos-policy", "gold", "qos-net")
    assert osc("network", "show", "qos-net", "-f", "json")["qos_policy_id"] == pol["id"]
    osc("network", "set", "--no-qos-policy", "qos-net")
    osc("network", "qos", "rule", "delete", "gold", dscp["id"])
    osc("network", "qos", "policy", "delete", "gold")
    assert osc("network", "qos", "policy", "list", "-f", "json") == []
