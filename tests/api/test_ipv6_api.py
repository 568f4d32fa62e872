"""IPv6 subnets and ports as Neutron makes them: address modes, EUI-64 IPAM, router interfaces."""
from __future__ import annotations

import netaddr
import pytest

from tests.api.tenants import World, error
from topology.model import ipam

V6 = "2001:db8:30::/64"
MAC = "fa:16:3e:11:22:33"
EUI = "2001:db8:30:0:f816:3eff:fe11:2233"


@pytest.fixture()
def w():
    world = World()
    world.net = world.create("networks", name="n")
    world.v4 = world.create("subnets", network_id=world.net["id"], cidr="10.0.0.0/24")
    return world


def _subnet(w, status=201, **attrs):
    attrs.setdefault("network_id", w.net["id"])
    attrs.setdefault("cidr", V6)
    attrs.setdefault("ip_version", 6)
    return w.create("subnets", status=status, **attrs)


def _bad(resp, type_="InvalidInput"):
    return error(resp, 400, type_)["message"]


def _post_subnet(w, **attrs):
    attrs.setdefault("network_id", w.net["id"])
    attrs.setdefault("ip_version", 6)
    attrs.setdefault("cidr", V6)
    return w.call("POST", "/v2.0/subnets", {"subnet": attrs})


def test_eui64_helpers():
    assert ipam.eui64_address(V6, MAC) == EUI
    assert ipam.link_local_address(MAC) == "fe80::f816:3eff:fe11:2233"
    assert netaddr.IPAddress(EUI) in netaddr.IPNetwork(V6)


@pytest.mark.parametrize("mode", ["slaac", "dhcpv6-stateless", "dhcpv6-stateful"])
def test_valid_mode_pairs_are_stored(w, mode):
    sub = _subnet(w, ipv6_ra_mode=mode, ipv6_address_mode=mode)
    assert (sub["ipv6_ra_mode"], sub["ipv6_address_mode"]) == (mode, mode)
    only_addr = _subnet(w, cidr="2001:db8:31::/64", ipv6_address_mode=mode)
    assert (only_addr["ipv6_ra_mode"], only_addr["ipv6_address_mode"]) == (None, mode)


def test_mismatched_modes_are_refused(w):
    msg = _bad(_post_subnet(w, ipv6_ra_mode="slaac", ipv6_address_mode="dhcpv6-stateful"))
    assert msg == ("Invalid input for operation: ipv6_ra_mode set to 'slaac' with ipv6_address_mode set to "
                   "'dhcpv6-stateful' is not valid. If both attributes are set, they must be the same value.")


def test_unknown_mode_and_ipv4_modes_are_refused(w):
    assert "is not in ['dhcpv6-stateful', 'dhcpv6-stateless', 'slaac']" in \
        _bad(_post_subnet(w, ipv6_ra_mode="dhcpv6-pd"))
    assert "ipv6_ra_mode is not valid when ip_version is 4" in \
        _bad(_post_subnet(w, cidr="10.1.0.0/24", ip_version=4, ipv6_ra_mode="slaac"))
    assert "ipv6_address_mode is not valid when ip_version is 4" in \
        _bad(_post_subnet(w, cidr="10.1.0.0/24", ip_version=4, ipv6_address_mode="slaac"))


def test_slaac_needs_a_64(w):
    msg = _bad(_post_subnet(w, cidr="2001:db8:30::/120", ipv6_ra_mode="slaac", ipv6_address_mode="slaac"))
    assert msg == ("Invalid input for operation: Invalid CIDR 2001:db8:30::/120 for IPv6 address mode. "
                   "OpenStack uses the EUI-64 address format, which requires the prefix to be /64.")
    _bad(_post_subnet(w, cidr="2001:db8:30::/80", ipv6_address_mode="dhcpv6-stateless"))
    # stateful addresses come from the pools: any prefix
    assert _subnet(w, cidr="2001:db8:30::/120", ipv6_address_mode="dhcpv6-stateful")["cidr"] == "2001:db8:30::/120"


def test_modes_need_dhcp_and_dhcp_cannot_be_turned_off(w):
    msg = _bad(_post_subnet(w, ipv6_address_mode="slaac", enable_dhcp=False))
    assert "ipv6_ra_mode or ipv6_address_mode cannot be set when enable_dhcp is set to False" in msg
    sub = _subnet(w, ipv6_ra_mode="slaac", ipv6_address_mode="slaac")
    resp = w.call("PUT", f"/v2.0/subnets/{sub['id']}", {"subnet": {"enable_dhcp": False}})
    assert "Cannot disable enable_dhcp with ipv6 attributes set" in _bad(resp)


def test_slaac_port_gets_its_eui64_address(w):
    sub = _subnet(w, ipv6_ra_mode="slaac", ipv6_address_mode="slaac")
    port = w.create("ports", network_id=w.net["id"], mac_address=MAC)
    v6 = [f for f in port["fixed_ips"] if f["subnet_id"] == sub["id"]]
    assert v6 == [{"subnet_id": sub["id"], "ip_address": EUI}]
    assert {f["subnet_id"] for f in port["fixed_ips"]} == {w.v4["id"], sub["id"]}


def test_stateless_port_gets_eui64_and_stateful_a_pool_address(w):
    sl = _subnet(w, ipv6_ra_mode="dhcpv6-stateless", ipv6_address_mode="dhcpv6-stateless")
    sf = _subnet(w, cidr="2001:db8:31::/64", ipv6_ra_mode="dhcpv6-stateful", ipv6_address_mode="dhcpv6-stateful")
    port = w.create("ports", network_id=w.net["id"], mac_address=MAC)
    by_subnet = {f["subnet_id"]: f["ip_address"] for f in port["fixed_ips"]}
    assert by_subnet[sl["id"]] == EUI
    assert by_subnet[sf["id"]] == "2001:db8:31::2"  # lowest free after the gateway ::1


def test_v4_only_request_still_gets_every_slaac_address(w):
    a = _subnet(w, ipv6_ra_mode="slaac", ipv6_address_mode="slaac")
    b = _subnet(w, cidr="2001:db8:32::/64", ipv6_address_mode="slaac")
    port = w.create("ports", network_id=w.net["id"], mac_address=MAC, fixed_ips=[{"subnet_id": w.v4["id"]}])
    got = {f["subnet_id"]: f["ip_address"] for f in port["fixed_ips"]}
    assert got == {w.v4["id"]: "10.0.0.3", a["id"]: EUI, b["id"]: "2001:db8:32:0:f816:3eff:fe11:2233"}
    # naming the SLAAC subnet without an address is the same thing
    other = w.create("ports", network_id=w.net["id"], fixed_ips=[{"subnet_id": a["id"]}])
    assert {f["subnet_id"] for f in other["fixed_ips"]} == {a["id"], b["id"]}


def test_fixed_ip_on_slaac_subnet_is_refused(w):
    sub = _subnet(w, ipv6_ra_mode="slaac", ipv6_address_mode="slaac")
    resp = w.call("POST", "/v2.0/ports", {"port": {"network_id": w.net["id"], "fixed_ips": [
        {"subnet_id": sub["id"], "ip_address": "2001:db8:30::99"}]}})
    err = error(resp, 400, "AllocationOnAutoAddressSubnet")
    assert err["message"] == (f"IPv6 address 2001:db8:30::99 cannot be directly assigned to a port on subnet "
                              f"{sub['id']} as the subnet is configured for automatic addresses")
    port = w.create("ports", network_id=w.net["id"], mac_address=MAC)
    resp = w.call("PUT", f"/v2.0/ports/{port['id']}", {"port": {"fixed_ips": [
        {"subnet_id": sub["id"], "ip_address": "2001:db8:30::99"}]}})
    error(resp, 400, "AllocationOnAutoAddressSubnet")


def test_update_keeps_auto_addresses_and_mac_change_recomputes(w):
    sub = _subnet(w, ipv6_ra_mode="slaac", ipv6_address_mode="slaac")
    port = w.create("ports", network_id=w.net["id"], mac_address=MAC)
    upd = w.call("PUT", f"/v2.0/ports/{port['id']}", {"port": {"fixed_ips": [{"ip_address": "10.0.0.50"}]}},
                 status=200).json["port"]
    assert {f["ip_address"] for f in upd["fixed_ips"]} == {"10.0.0.50", EUI}
    upd = w.call("PUT", f"/v2.0/ports/{port['id']}", {"port": {"mac_address": "fa:16:3e:aa:bb:cc"}},
                 status=200).json["port"]
    assert {f["ip_address"] for f in upd["fixed_ips"]} == {"10.0.0.50", "2001:db8:30:0:f816:3eff:feaa:bbcc"}
    assert sub["id"] in {f["subnet_id"] for f in upd["fixed_ips"]}


def test_new_slaac_subnet_reaches_existing_ports_and_leaves_with_its_deletion(w):
    port = w.create("ports", network_id=w.net["id"], mac_address=MAC)
    sub = _subnet(w, ipv6_ra_mode="slaac", ipv6_address_mode="slaac")
    got = w.call("GET", f"/v2.0/ports/{port['id']}", status=200).json["port"]
    assert {"subnet_id": sub["id"], "ip_address": EUI} in got["fixed_ips"]
    w.call("DELETE", f"/v2.0/subnets/{sub['id']}", status=204)
    got = w.call("GET", f"/v2.0/ports/{port['id']}", status=200).json["port"]
    assert [f["subnet_id"] for f in got["fixed_ips"]] == [w.v4["id"]]


def test_router_interfaces_on_ipv6_subnets(w):
    a = _subnet(w, ipv6_ra_mode="slaac", ipv6_address_mode="slaac")
    b = _subnet(w, cidr="2001:db8:31::/64", ipv6_ra_mode="dhcpv6-stateful", ipv6_address_mode="dhcpv6-stateful")
    rtr = w.create("routers", name="r")
    info = w.call("PUT", f"/v2.0/routers/{rtr['id']}/add_router_interface", {"subnet_id": a["id"]},
                  status=200).json
    port = w.call("GET", f"/v2.0/ports/{info['port_id']}", status=200).json["port"]
    assert port["fixed_ips"] == [{"subnet_id": a["id"], "ip_address": "2001:db8:30::1"}]  # no EUI-64 for it
    # a second IPv6 subnet of the same network goes onto the same router port (Neutron)
    info2 = w.call("PUT", f"/v2.0/routers/{rtr['id']}/add_router_interface", {"subnet_id": b["id"]},
                   status=200).json
    assert info2["port_id"] == info["port_id"] and info2["subnet_id"] == b["id"]
    port = w.call("GET", f"/v2.0/ports/{info['port_id']}", status=200).json["port"]
    assert {f["ip_address"] for f in port["fixed_ips"]} == {"2001:db8:30::1", "2001:db8:31::1"}
    # the IPv4 subnet gets its own port
    info4 = w.call("PUT", f"/v2.0/routers/{rtr['id']}/add_router_interface", {"subnet_id": w.v4["id"]},
                   status=200).json
    assert info4["port_id"] != info["port_id"]
    # the router's SLAAC interface keeps the subnet in use; removing one v6 subnet keeps the port
    error(w.call("DELETE", f"/v2.0/subnets/{a['id']}"), 409, "SubnetInUse")
    w.call("PUT", f"/v2.0/routers/{rtr['id']}/remove_router_interface", {"subnet_id": a["id"]}, status=200)
    port = w.call("GET", f"/v2.0/ports/{info['port_id']}", status=200).json["port"]
    assert port["fixed_ips"] == [{"subnet_id": b["id"], "ip_address": "2001:db8:31::1"}]
    w.call("PUT", f"/v2.0/routers/{rtr['id']}/remove_router_interface", {"subnet_id": b["id"]}, status=200)
    w.call("GET", f"/v2.0/ports/{info['port_id']}", status=404)
    w.call("DELETE", f"/v2.0/subnets/{a['id']}", status=204)


def test_modes_are_create_only(w):
    sub = _subnet(w, ipv6_ra_mode="slaac", ipv6_address_mode="slaac")
    resp = w.call("PUT", f"/v2.0/subnets/{sub['id']}", {"subnet": {"ipv6_ra_mode": "dhcpv6-stateful"}})
    assert resp.status_code == 400


def test_service_ports_get_eui64_addresses_too(w):
    """The DHCP port made after a SLAAC subnet, and a router's gateway port, hold their EUI-64
    address like any port (Neutron: only router interfaces are exempt)."""
    net = w.create("networks", name="n2")
    sub6 = _subnet(w, network_id=net["id"], cidr="2001:db8:40::/64", ipv6_ra_mode="slaac",
                   ipv6_address_mode="slaac")
    w.create("subnets", network_id=net["id"], cidr="10.9.0.0/24")
    [dhcp] = w.call("GET", f"/v2.0/ports?network_id={net['id']}&device_owner=network:dhcp", status=200).json["ports"]
    want = ipam.eui64_address("2001:db8:40::/64", dhcp["mac_address"])
    assert {"subnet_id": sub6["id"], "ip_address": want} in dhcp["fixed_ips"]
    ext = w.create("networks", name="ext", **{"router:external": True})
    w.create("subnets", network_id=ext["id"], cidr="172.24.9.0/24", enable_dhcp=False)
    ext6 = _subnet(w, network_id=ext["id"], cidr="2001:db8:41::/64", ipv6_address_mode="slaac")
    rtr = w.create("routers", name="gw", external_gateway_info={"network_id": ext["id"]})
    [gw] = w.call("GET", f"/v2.0/ports?device_id={rtr['id']}&device_owner=network:router_gateway",
                  status=200).json["ports"]
    assert gw["fixed_ips"][0]["ip_address"] == "172.24.9.2"
    assert {"subnet_id": ext6["id"], "ip_address": ipam.eui64_address("2001:db8:41::/64", gw["mac_address"])} \
        in gw["fixed_ips"]
