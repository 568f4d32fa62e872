"""Service semantics and validation: Neutron rules, hidden keys, ownership, controller hooks."""
from __future__ import annotations

import pytest

from topology.model import errors
from topology.store.backends import open_store
from topology.model.context import Context
from topology.model.service import Service
from topology.model.settings import Settings
from topology.model.validate import protocol_number, to_mac, to_uuid


@pytest.fixture()
def svc():
    return Service(open_store("memory://"), Settings(vlan_ranges={"physnet1": (100, 101)},
                                                   physnets=("physnet1", "physnet2")))


def net_with_subnet(svc, cidr="10.0.0.0/24", ctx=None, **net):
    n = svc.create("network", {"name": "n", **net}, ctx)
    s = svc.create("subnet", {"network_id": n["id"], "cidr": cidr}, ctx)
    return n, s


def raises(exc, fn, *args, **kw):
    rev = None
    store = kw.pop("store", None)
    if store is not None:
        rev = store.snapshot()
    with pytest.raises(exc) as info:
        fn(*args, **kw)
    if store is not None:
        assert store.snapshot() == rev, "a failed request changed the store"
    return info.value


# ---- converters ------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", ["zz:16:3e:00:00:01", "fa:16:3e:00:00", "ff:ff:ff:ff:ff:ff", "01:00:5e:00:00:01", 5])
def test_bad_macs(bad):
    with pytest.raises(errors.InvalidInput):
        to_mac("mac_address", bad)


def test_uuid_and_protocols():
    assert to_uuid("id", "0B1E3B2C-8D6A-4C8A-9A3E-4B4C1D2E3F40") == "0b1e3b2c-8d6a-4c8a-9a3e-4b4c1d2e3f40"
    with pytest.raises(errors.InvalidInput):
        to_uuid("id", "not-a-uuid")
    assert protocol_number("tcp") == 6 and protocol_number("17") == 17 and protocol_number(None) is None


# ---- networks ----------------------------------------------------------------------------
def test_tenant_network_defaults_vxlan_with_vni_and_mtu(svc):
    a = svc.create("network", {"name": "a"})
    b = svc.create("network", {"name": "b"})
    assert (a["provider:network_type"], a["provider:segmentation_id"], a["mtu"]) == ("vxlan", 1, 1450)
    assert b["provider:segmentation_id"] == 2
    assert "_key" not in a
    raw = svc.store.get("network", a["id"])
    assert raw["_key"] == 1 and svc.store.get("network", b["id"])["_key"] == 2


def test_keys_are_reused_lowest_first(svc):
    nets = [svc.create("network", {"name": str(i)}) for i in range(3)]
    svc.delete("network", nets[0]["id"])
    n = svc.create("network", {"name": "again"})
    assert svc.store.get("network", n["id"])["_key"] == 1
    assert n["provider:segmentation_id"] == 1  # VNI reused as well


def test_provider_networks(svc):
    v = svc.create("network", {"provider:network_type": "vlan", "provider:physical_network": "physnet1"})
    assert v["provider:segmentation_id"] == 100 and v["mtu"] == 1500
    svc.create("network", {"provider:network_type": "vlan", "provider:physical_network": "physnet1"})
    raises(errors.NoNetworkAvailable, svc.create, "network",
           {"provider:network_type": "vlan", "provider:physical_network": "physnet1"}, store=svc.store)
    raises(errors.VlanIdInUse, svc.create, "network", {"provider:network_type": "vlan",
           "provider:physical_network": "physnet1", "provider:segmentation_id": 100}, store=svc.store)
    raises(errors.InvalidSegmentationId, svc.create, "network", {"provider:network_type": "vlan",
           "provider:physical_network": "physnet1", "provider:segmentation_id": 4095}, store=svc.store)
    raises(errors.UnknownPhysicalNetwork, svc.create, "network", {"provider:network_type": "flat",
           "provider:physical_network": "nope"}, store=svc.store)
    svc.create("network", {"provider:network_type": "flat", "provider:physical_network": "physnet2"})
    raises(errors.FlatNetworkInUse, svc.create, "network", {"provider:network_type": "flat",
           "provider:physical_network": "physnet2"}, store=svc.store)
    x = svc.create("network", {"provider:network_type": "vxlan", "provider:segmentation_id": 5000})
    raises(errors.TunnelIdInUse, svc.create, "network", {"provider:network_type": "vxlan",
           "provider:segmentation_id": 5000}, store=svc.store)
    raises(errors.InvalidSegmentationId, svc.create, "network", {"provider:network_type": "vxlan",
           "provider:segmentation_id": 2 ** 24}, store=svc.store)
    raises(errors.InvalidNetworkType, svc.create, "network", {"provider:network_type": "bogus"})
    g = svc.create("network", {"provider:network_type": "gre"})
    assert g["mtu"] == 1458
    loc = svc.create("network", {"provider:network_type": "local"})
    assert loc["provider:segmentation_id"] is None
    assert x["provider:segmentation_id"] == 5000


def test_unknown_and_readonly_attributes(svc):
    raises(errors.BadRequest, svc.create, "network", {"bogus": 1})
    n = svc.create("network", {})
    raises(errors.BadRequest, svc.update, "network", n["id"], {"status": "DOWN"})
    raises(errors.BadRequest, svc.update, "network", n["id"], {"provider:segmentation_id": 9})
    raises(errors.InvalidInput, svc.create, "network", {"admin_state_up": "maybe"})
    raises(errors.InvalidInput, svc.create, "network", {"mtu": 9000})


def test_network_delete_in_use_and_cascade(svc):
    n, s = net_with_subnet(svc)
    p = svc.create("port", {"network_id": n["id"]})
    raises(errors.NetworkInUse, svc.delete, "network", n["id"], store=svc.store)
    svc.delete("port", p["id"])
    svc.delete("network", n["id"])  # the DHCP port and the subnet go with it
    assert svc.list("port") == [] and svc.list("subnet") == []


# ---- subnets --------------------------------------------------------------------------------
def test_subnet_validation(svc):
    n = svc.create("network", {})
    raises(errors.InvalidInput, svc.create, "subnet", {"network_id": n["id"], "cidr": "10.0.0.0/33"})
    raises(errors.InvalidInput, svc.create, "subnet", {"network_id": n["id"], "cidr": "10.0.0.5/24"})
    raises(errors.InvalidInput, svc.create, "subnet", {"network_id": n["id"], "cidr": "banana"})
    raises(errors.InvalidInput, svc.create, "subnet", {"network_id": n["id"], "cidr": "10.0.0.0/24",
                                                       "gateway_ip": "10.0.1.1"})
    raises(errors.GatewayConflictWithAllocationPools, svc.create, "subnet", {
        "network_id": n["id"], "cidr": "10.0.0.0/24", "gateway_ip": "10.0.0.5",
        "allocation_pools": [{"start": "10.0.0.2", "end": "10.0.0.9"}]})
    raises(errors.NetworkNotFound, svc.create, "subnet", {"network_id": "0b1e3b2c-8d6a-4c8a-9a3e-4b4c1d2e3f40",
                                                          "cidr": "10.0.0.0/24"})
    svc.create("subnet", {"network_id": n["id"], "cidr": "10.0.0.0/24"})
    raises(errors.SubnetOverlap, svc.create, "subnet", {"network_id": n["id"], "cidr": "10.0.0.0/16"},
           store=svc.store)
    other = svc.create("network", {})
    svc.create("subnet", {"network_id": other["id"], "cidr": "10.0.0.0/24"})  # overlap across networks is fine


def test_dhcp_port_follows_subnets(svc):
    n = svc.create("network", {})
    s1 = svc.create("subnet", {"network_id": n["id"], "cidr": "10.0.0.0/24"})
    dhcp = svc.list("port", filters={"device_owner": ["network:dhcp"]})
    assert len(dhcp) == 1 and dhcp[0]["fixed_ips"] == [{"subnet_id": s1["id"], "ip_address": "10.0.0.2"}]
    s2 = svc.create("subnet", {"network_id": n["id"], "cidr": "10.1.0.0/24"})
    dhcp = svc.list("port", filters={"device_owner": ["network:dhcp"]})
    assert len(dhcp) == 1 and len(dhcp[0]["fixed_ips"]) == 2
    svc.update("subnet", s2["id"], {"enable_dhcp": False})
    assert len(svc.list("port", filters={"device_owner": ["network:dhcp"]})[0]["fixed_ips"]) == 1
    svc.create("subnet", {"network_id": n["id"], "cidr": "10.2.0.0/24", "enable_dhcp": False})
    svc.delete("subnet", s1["id"])
    assert svc.list("port", filters={"device_owner": ["network:dhcp"]}) == []


def test_subnet_in_use(svc):
    n, s = net_with_subnet(svc)
    svc.create("port", {"network_id": n["id"]})
    raises(errors.SubnetInUse, svc.delete, "subnet", s["id"], store=svc.store)


# ---- ports ----------------------------------------------------------------------------------
def test_port_fixed_ips_and_mac_rules(svc):
    n, s = net_with_subnet(svc)
    p = svc.create("port", {"network_id": n["id"], "fixed_ips": [{"ip_address": "10.0.0.9"}],
                            "mac_address": "fa:16:3e:00:00:09"})
    assert p["fixed_ips"] == [{"subnet_id": s["id"], "ip_address": "10.0.0.9"}]
    assert p["status"] == "DOWN" and p["binding:vif_type"] == "unbound"
    raises(errors.IpAddressAlreadyAllocated, svc.create, "port",
           {"network_id": n["id"], "fixed_ips": [{"ip_address": "10.0.0.9"}]}, store=svc.store)
    raises(errors.MacAddressInUse, svc.create, "port",
           {"network_id": n["id"], "mac_address": "fa:16:3e:00:00:09"}, store=svc.store)
    raises(errors.InvalidIpForNetwork, svc.create, "port",
           {"network_id": n["id"], "fixed_ips": [{"ip_address": "192.168.0.9"}]})
    raises(errors.InvalidIpForSubnet, svc.create, "port",
           {"network_id": n["id"], "fixed_ips": [{"subnet_id": s["id"], "ip_address": "10.0.0.255"}]})
    raises(errors.InvalidInput, svc.create, "port", {"network_id": n["id"], "fixed_ips": [{"ip_address": "10.0.0"}]})
    # update keeps its address, swaps to a new one, frees the old
    q = svc.update("port", p["id"], {"fixed_ips": [{"ip_address": "10.0.0.10"}]})
    assert q["fixed_ips"][0]["ip_address"] == "10.0.0.10" and q["revision_number"] == 1
    svc.create("port", {"network_id": n["id"], "fixed_ips": [{"ip_address": "10.0.0.9"}]})


def test_port_security_groups_and_pairs(svc):
    n, _ = net_with_subnet(svc)
    p = svc.create("port", {"network_id": n["id"]})
    default = svc.list("security_group", filters={"name": ["default"]})
    assert len(default) == 1 and p["security_groups"] == [default[0]["id"]]
    rules = default[0]["security_group_rules"]
    assert sorted((r["direction"], r["ethertype"], r["remote_group_id"] is not None) for r in rules) == [
        ("egress", "IPv4", False), ("egress", "IPv6", False), ("ingress", "IPv4", True), ("ingress", "IPv6", True)]
    raises(errors.PortSecurityAndIPRequiredForSecurityGroups, svc.create, "port",
           {"network_id": n["id"], "port_security_enabled": False, "security_groups": [default[0]["id"]]})
    off = svc.create("port", {"network_id": n["id"], "port_security_enabled": False})
    assert off["security_groups"] == []
    pair = svc.create("port", {"network_id": n["id"], "allowed_address_pairs": [{"ip_address": "10.9.0.0/24"}]})
    assert pair["allowed_address_pairs"] == [{"ip_address": "10.9.0.0/24", "mac_address": pair["mac_address"]}]
    raises(errors.Conflict, svc.create, "port", {"network_id": n["id"], "port_security_enabled": False,
                                                 "allowed_address_pairs": [{"ip_address": "10.9.0.1"}]})
    raises(errors.SecurityGroupNotFound, svc.create, "port",
           {"network_id": n["id"], "security_groups": ["0b1e3b2c-8d6a-4c8a-9a3e-4b4c1d2e3f40"]})
    raises(errors.SecurityGroupInUse, svc.delete, "security_group", default[0]["id"], store=svc.store)


def test_set_port_binding_is_noop_when_unchanged(svc):
    n, _ = net_with_subnet(svc)
    p = svc.create("port", {"network_id": n["id"]})
    rec = svc.set_port_binding(p["id"], "chassis-1", "ACTIVE")
    assert rec["status"] == "ACTIVE" and rec["binding:host_id"] == "chassis-1" and "_key" in rec
    rev = svc.store.revision()
    svc.set_port_binding(p["id"], "chassis-1", "ACTIVE")
    assert svc.store.revision() == rev
    svc.set_port_binding(p["id"], None, "DOWN")
    assert svc.get("port", p["id"])["binding:host_id"] == ""
    raises(errors.PortNotFound, svc.set_port_binding, "0b1e3b2c-8d6a-4c8a-9a3e-4b4c1d2e3f40", None, "DOWN")


def test_set_port_bindings_is_one_transaction_and_skips_unchanged_and_deleted(svc):
    n, _ = net_with_subnet(svc)
    a, b, c = (svc.create("port", {"network_id": n["id"]}) for _ in range(3))
    svc.set_port_binding(c["id"], "chassis-1", "ACTIVE")
    rev = svc.store.revision()
    gone = "0b1e3b2c-8d6a-4c8a-9a3e-4b4c1d2e3f40"
    changed = svc.set_port_bindings([(a["id"], "chassis-1", "ACTIVE"), (b["id"], "chassis-2", "ACTIVE"),
                                     (c["id"], "chassis-1", "ACTIVE"), (gone, "chassis-1", "ACTIVE")])
    assert changed == 2
    assert [ch.id for ch in svc.store.changes(rev)] == [a["id"], b["id"]]
    assert svc.get("port", b["id"])["binding:host_id"] == "chassis-2"
    raises(errors.InvalidInput, svc.set_port_bindings, [(a["id"], "chassis-1", "UP")])


# ---- routers and floating IPs ----------------------------------------------------------------
def _ext(svc):
    ext = svc.create("network", {"router:external": True, "provider:network_type": "flat",
                                 "provider:physical_network": "physnet1"})
    es = svc.create("subnet", {"network_id": ext["id"], "cidr": "172.24.4.0/24", "enable_dhcp": False})
    return ext, es


def test_router_interfaces_gateway_and_floating_ip(svc):
    n, s = net_with_subnet(svc)
    ext, es = _ext(svc)
    r = svc.create("router", {"name": "r"})
    info = svc.add_router_interface(r["id"], {"subnet_id": s["id"]})
    iface = svc.get("port", info["port_id"])
    assert iface["device_owner"] == "network:router_interface" and iface["fixed_ips"][0]["ip_address"] == "10.0.0.1"
    raises(errors.Conflict, svc.add_router_interface, r["id"], {"subnet_id": s["id"]}, store=svc.store)
    raises(errors.BadRequest, svc.add_router_interface, r["id"], {"subnet_id": s["id"], "port_id": iface["id"]})
    raises(errors.BadRequest, svc.add_router_interface, r["id"], {})
    vm = svc.create("port", {"network_id": n["id"]})
    raises(errors.ExternalGatewayForFloatingIPNotFound, svc.create, "floatingip",
           {"floating_network_id": ext["id"], "port_id": vm["id"]}, store=svc.store)
    r = svc.update("router", r["id"], {"external_gateway_info": {"network_id": ext["id"]}})
    assert r["external_gateway_info"]["external_fixed_ips"][0]["subnet_id"] == es["id"]
    fip = svc.create("floatingip", {"floating_network_id": ext["id"], "port_id": vm["id"]})
    assert fip["router_id"] == r["id"] and fip["fixed_ip_address"] == vm["fixed_ips"][0]["ip_address"]
    assert "_key" in svc.store.get("floatingip", fip["id"])
    raises(errors.Conflict, svc.remove_router_interface, r["id"], {"subnet_id": s["id"]}, store=svc.store)
    raises(errors.Conflict, svc.update, "router", r["id"], {"external_gateway_info": None}, store=svc.store)
    raises(errors.RouterInUse, svc.delete, "router", r["id"], store=svc.store)
    raises(errors.Conflict, svc.delete, "port", iface["id"], store=svc.store)
    raises(errors.BadRequest, svc.create, "floatingip", {"floating_network_id": n["id"]})
    svc.delete("port", vm["id"])
    assert svc.get("floatingip", fip["id"])["port_id"] is None
    svc.delete("floatingip", fip["id"])
    svc.remove_router_interface(r["id"], {"subnet_id": s["id"]})
    raises(errors.RouterInterfaceNotFoundForSubnet, svc.remove_router_interface, r["id"], {"subnet_id": s["id"]})
    svc.delete("router", r["id"])
    assert svc.list("port", filters={"network_id": [ext["id"]]}) == []


def test_router_routes_need_connected_nexthop(svc):
    n, s = net_with_subnet(svc)
    r = svc.create("router", {})
    raises(errors.BadRequest, svc.update, "router", r["id"],
           {"routes": [{"destination": "10.9.0.0/16", "nexthop": "10.0.0.7"}]})
    svc.add_router_interface(r["id"], {"subnet_id": s["id"]})
    r = svc.update("router", r["id"], {"routes": [{"destination": "10.9.0.0/16", "nexthop": "10.0.0.7"}]})
    assert r["routes"] == [{"destination": "10.9.0.0/16", "nexthop": "10.0.0.7"}]


# ---- security groups ----------------------------------------------------------------------------
def test_security_group_rules(svc):
    sg = svc.create("security_group", {"name": "web"})
    assert len(sg["security_group_rules"]) == 2
    base = {"security_group_id": sg["id"], "direction": "ingress"}
    rule = svc.create("security_group_rule", {**base, "protocol": "tcp", "port_range_min": 80, "port_range_max": 80})
    raises(errors.SecurityGroupRuleExists, svc.create, "security_group_rule",
           {**base, "protocol": "6", "port_range_min": 80, "port_range_max": 80}, store=svc.store)
    raises(errors.InvalidPortRange, svc.create, "security_group_rule",
           {**base, "protocol": "tcp", "port_range_min": 90, "port_range_max": 80})
    raises(errors.InvalidPortRange, svc.create, "security_group_rule",
           {**base, "protocol": "tcp", "port_range_min": 0, "port_range_max": 70000})
    raises(errors.InvalidPortRange, svc.create, "security_group_rule", {**base, "port_range_min": 1,
                                                                        "port_range_max": 2})
    raises(errors.InvalidSecurityGroupRule, svc.create, "security_group_rule", {**base, "protocol": "bogus"})
    raises(errors.BadRequest, svc.create, "security_group_rule",
           {**base, "remote_ip_prefix": "10.0.0.0/8", "remote_group_id": sg["id"]})
    raises(errors.SecurityGroupRuleParameterConflict, svc.create, "security_group_rule",
           {**base, "ethertype": "IPv6", "remote_ip_prefix": "10.0.0.0/8"})
    icmp = svc.create("security_group_rule", {**base, "protocol": "icmp", "port_range_min": 8, "port_range_max": 0})
    num = svc.create("security_group_rule", {**base, "protocol": 132})
    assert num["protocol"] == "132" and icmp["port_range_min"] == 8
    raises(errors.MethodNotAllowed, svc.update, "security_group_rule", rule["id"], {"description": "x"})
    svc.delete("security_group_rule", rule["id"])
    raises(errors.SecurityGroupRuleNotFound, svc.get, "security_group_rule", rule["id"])
    raises(errors.Conflict, svc.create, "security_group", {"name": "default"})


# ---- projects / policy -----------------------------------------------------------------------------
def test_tenant_isolation_and_admin_only_attributes(svc):
    alice, bob = Context("alice", False), Context("bob", False)
    an, _ = net_with_subnet(svc, ctx=alice)
    shared = svc.create("network", {"name": "pub", "shared": True})
    ext, _ = _ext(svc)
    assert {n["id"] for n in svc.list("network", bob)} == {shared["id"], ext["id"]}
    raises(errors.NetworkNotFound, svc.get, "network", an["id"], bob)
    raises(errors.NetworkNotFound, svc.create, "port", {"network_id": an["id"]}, bob)
    raises(errors.PolicyNotAuthorized, svc.create, "network", {"router:external": True}, bob)
    raises(errors.PolicyNotAuthorized, svc.create, "network", {"provider:network_type": "vlan"}, bob)
    raises(errors.PolicyNotAuthorized, svc.create, "network", {"project_id": "alice"}, bob)
    raises(errors.PolicyNotAuthorized, svc.delete, "network", shared["id"], bob)
    p = svc.create("port", {"network_id": shared["id"]}, bob)   # ports on shared networks are allowed
    assert p["project_id"] == "bob"
    assert [x["id"] for x in svc.list("port", bob)] == [p["id"]]
    assert all(sg["project_id"] == "bob" for sg in svc.list("security_group", bob))
    assert svc.context("carol", ["member", "admin"]).is_admin
    assert svc.context(None).project_id == svc.settings.default_project_id


# ---- chassis -----------------------------------------------------------------------------------
def test_chassis_register_is_idempotent_and_unique(svc):
    c = svc.register_chassis("node1", 0x10, "192.168.0.1", {"physnet1": "eth1"})
    rev = svc.store.revision()
    assert svc.register_chassis("node1", 0x10, "192.168.0.1", {"physnet1": "eth1"})["id"] == c["id"]
    assert svc.store.revision() == rev
    assert svc.find_chassis_by_dpid(0x10)["name"] == "node1"
    assert "_key" in svc.find_chassis_by_dpid(0x10)
    raises(errors.ChassisExists, svc.create, "chassis", {"name": "node1"})
    raises(errors.ChassisExists, svc.create, "chassis", {"name": "node2", "datapath_id": "0x10"})
    raises(errors.PolicyNotAuthorized, svc.create, "chassis", {"name": "x"}, Context("bob", False))
    auto = svc.register_chassis("dp-20", 0x20)
    svc.register_chassis("node3", 0x20, "192.168.0.3")   # takes the datapath id over
    assert svc.find_chassis_by_dpid(0x20)["name"] == "node3"
    assert svc.get("chassis", auto["id"])["datapath_id"] is None
