"""Neutron's default policy over HTTP (noauth headers X-Project-Id/X-Roles): each denial with
Neutron's message and nothing changed, the matching success beside it, and operator overrides."""
from __future__ import annotations

import pytest

from tests.api.tenants import ALICE, BOB, World, error
from topology.model.policy import Policy
from topology.model.service import Service
from topology.model.settings import Settings
from topology.store.backends import open_store


@pytest.fixture()
def w():
    return World()


def denied(w, resp, message):
    err = error(resp, 403, "PolicyNotAuthorized")
    assert err["message"] == message


def unchanged(w, before):
    assert w.svc.store.snapshot() == before


def test_external_and_shared_network_create_are_admin_only(w):
    before = w.svc.store.snapshot()
    denied(w, w.call("POST", "/v2.0/networks", {"network": {"name": "x", "router:external": True}}, project=ALICE),
           "(rule:create_network and rule:create_network:router:external) is disallowed by policy")
    denied(w, w.call("POST", "/v2.0/networks", {"network": {"shared": True}}, project=ALICE),
           "(rule:create_network and rule:create_network:shared) is disallowed by policy")
    denied(w, w.call("POST", "/v2.0/networks", {"network": {"provider:network_type": "vlan"}}, project=ALICE),
           "(rule:create_network and rule:create_network:provider:network_type) is disallowed by policy")
    unchanged(w, before)
    # the defaults (shared false, not external) are not "set": a member may send them
    net = w.create("networks", project=ALICE, name="mine", shared=False, **{"router:external": False})
    assert net["project_id"] == ALICE
    # an admin may do all of it
    w.create("networks", project=BOB, roles="admin", name="pub", shared=True, **{"router:external": True})


def test_port_on_external_network_refused_to_members(w):
    ext, _ = w.external()
    before = w.svc.store.snapshot()
    denied(w, w.call("POST", "/v2.0/ports", {"port": {"network_id": ext["id"], "name": "grab"}}, project=ALICE),
           "rule:create_port is disallowed by policy")
    unchanged(w, before)
    assert w.create("ports", network_id=ext["id"])["network_id"] == ext["id"]          # admin may


def test_ports_on_shared_networks_but_not_chosen_addresses(w):
    shared = w.create("networks", name="shared", shared=True)
    sub = w.create("subnets", network_id=shared["id"], cidr="10.9.0.0/24")
    port = w.create("ports", project=ALICE, network_id=shared["id"])
    assert port["project_id"] == ALICE
    before = w.svc.store.snapshot()
    denied(w, w.call("POST", "/v2.0/ports", {"port": {"network_id": shared["id"],
                                                      "fixed_ips": [{"ip_address": "10.9.0.77"}]}}, project=ALICE),
           "(rule:create_port and (rule:create_port:fixed_ips and (rule:create_port:fixed_ips:ip_address))) "
           "is disallowed by policy")
    denied(w, w.call("POST", "/v2.0/ports", {"port": {"network_id": shared["id"], "mac_address": "fa:16:3e:00:00:99"}},
                     project=ALICE), "(rule:create_port and rule:create_port:mac_address) is disallowed by policy")
    denied(w, w.call("POST", "/v2.0/ports", {"port": {"network_id": shared["id"], "binding:host_id": "c1"}},
                     project=ALICE), "(rule:create_port and rule:create_port:binding:host_id) is disallowed by policy")
    unchanged(w, before)
    # a subnet id alone is fine on a shared network (create_port:fixed_ips:subnet_id allows rule:shared)
    w.create("ports", project=ALICE, network_id=shared["id"], fixed_ips=[{"subnet_id": sub["id"]}])
    # on its own network the owner may choose addresses
    own = w.create("networks", project=ALICE)
    w.create("subnets", project=ALICE, network_id=own["id"], cidr="10.1.0.0/24")
    w.create("ports", project=ALICE, network_id=own["id"], fixed_ips=[{"ip_address": "10.1.0.77"}])


def test_disable_snat_and_router_flavours_are_admin_only(w):
    ext, _ = w.external()
    router = w.create("routers", project=ALICE, name="r")
    path = f"/v2.0/routers/{router['id']}"
    before = w.svc.store.snapshot()
    no_snat = {"router": {"external_gateway_info": {"network_id": ext["id"], "enable_snat": False}}}
    denied(w, w.call("PUT", path, no_snat, project=ALICE),
           "(rule:update_router and (rule:update_router:external_gateway_info and "
           "(rule:update_router:external_gateway_info:network_id and "
           "rule:update_router:external_gateway_info:enable_snat))) is disallowed by policy")
    denied(w, w.call("POST", "/v2.0/routers", {"router": {"distributed": False}}, project=ALICE),
           "(rule:create_router and rule:create_router:distributed) is disallowed by policy")
    denied(w, w.call("POST", "/v2.0/routers", {"router": {"distributed": True}}, project=ALICE),
           "(rule:create_router and rule:create_router:distributed) is disallowed by policy")
    denied(w, w.call("POST", "/v2.0/routers", {"router": {"ha": True}}, project=ALICE),
           "(rule:create_router and rule:create_router:ha) is disallowed by policy")
    unchanged(w, before)
    gw = w.call("PUT", path, {"router": {"external_gateway_info": {"network_id": ext["id"]}}}, project=ALICE,
                status=200).json["router"]["external_gateway_info"]
    assert gw["network_id"] == ext["id"] and gw["enable_snat"] is True
    w.call("PUT", path, {"router": {"external_gateway_info": {"network_id": ext["id"], "enable_snat": False}}},
           status=200)   # the admin may


def test_floating_ip_address_is_not_the_members_choice(w):
    ext, _ = w.external()
    before = w.svc.store.snapshot()
    denied(w, w.call("POST", "/v2.0/floatingips", {"floatingip": {"floating_network_id": ext["id"],
                                                                  "floating_ip_address": "172.24.4.99"}},
                     project=ALICE),
           "(rule:create_floatingip and rule:create_floatingip:floating_ip_address) is disallowed by policy")
    unchanged(w, before)
    fip = w.create("floatingips", project=ALICE, floating_network_id=ext["id"])
    assert fip["project_id"] == ALICE
    assert w.create("floatingips", floating_network_id=ext["id"], floating_ip_address="172.24.4.99")


def test_reader_reads_but_does_not_write(w):
    net = w.create("networks", project=ALICE, name="a")
    before = w.svc.store.snapshot()
    denied(w, w.call("POST", "/v2.0/networks", {"network": {}}, project=ALICE, roles="reader"),
           "rule:create_network is disallowed by policy")
    denied(w, w.call("PUT", f"/v2.0/networks/{net['id']}", {"network": {"name": "b"}}, project=ALICE,
                     roles="reader"), "rule:update_network is disallowed by policy")
    denied(w, w.call("DELETE", f"/v2.0/networks/{net['id']}", project=ALICE, roles="reader"),
           "rule:delete_network is disallowed by policy")
    unchanged(w, before)
    seen = w.call("GET", "/v2.0/networks", project=ALICE, roles="reader", status=200).json["networks"]
    assert [n["id"] for n in seen] == [net["id"]]


def test_another_projects_objects_are_404_and_shared_ones_403(w):
    private = w.create("networks", project=ALICE, name="private")
    shared = w.create("networks", name="shared", shared=True)
    sg = w.create("security-groups", project=ALICE, name="web")
    before = w.svc.store.snapshot()
    for method, body in (("GET", None), ("PUT", {"network": {"name": "x"}}), ("DELETE", None)):
        error(w.call(method, f"/v2.0/networks/{private['id']}", body, project=BOB), 404, "NetworkNotFound")
    denied(w, w.call("PUT", f"/v2.0/networks/{shared['id']}", {"network": {"name": "x"}}, project=BOB),
           "rule:update_network is disallowed by policy")
    denied(w, w.call("DELETE", f"/v2.0/networks/{shared['id']}", project=BOB),
           "rule:delete_network is disallowed by policy")
    denied(w, w.call("POST", "/v2.0/networks", {"network": {"project_id": ALICE}}, project=BOB),
           "rule:create_network is disallowed by policy")
    error(w.call("POST", "/v2.0/security-group-rules",
                 {"security_group_rule": {"security_group_id": sg["id"], "direction": "ingress"}}, project=BOB),
          404, "SecurityGroupNotFound")
    unchanged(w, before)


def test_policy_file_overrides_defaults(tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_text('"create_network:shared": "role:member"\n"create_router": "!"\n')
    w = World(Service(open_store("memory://"), Settings(policy_file=str(path))))
    assert w.create("networks", project=ALICE, shared=True)["shared"] is True
    denied(w, w.call("POST", "/v2.0/routers", {"router": {}}), "rule:create_router is disallowed by policy")
    # untouched rules keep their defaults
    denied(w, w.call("POST", "/v2.0/networks", {"network": {"router:external": True}}, project=ALICE),
           "(rule:create_network and rule:create_network:router:external) is disallowed by policy")
    with pytest.raises(FileNotFoundError):
        Policy(str(tmp_path / "missing.yaml"))


def test_contexts_without_roles_get_keystone_defaults():
    """Internal callers building Context(project, is_admin) keep working."""
    from topology.model.context import Context
    svc = Service(open_store("memory://"))
    net = svc.create("network", {"name": "t"}, Context(ALICE, False))
    assert net["project_id"] == ALICE
    assert svc.create("network", {"shared": True}, Context(BOB, True))["shared"] is True
