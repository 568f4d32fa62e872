"""The one resource table and what is generated from it: API routes, OpenAPI paths, CLI nouns and
verbs, owner kinds, record types, defaults, and the view Protocol compilers are typed against."""
from __future__ import annotations

import argparse
import inspect
import types
import typing

import falcon.testing
import pytest

from controller.inspect import OWNER_KINDS as INSPECT_OWNER_KINDS
from flows.tables import STORE_KIND, Owner
from topology.api.app import create_app
from topology.api.openapi import openapi_document
from topology.cli.main import build_parser
from topology.cli.resources import NOUNS
from topology.model import records
from topology.model.resources import port as port_res
from topology.model.schema import BY_COLLECTION, BY_KIND, OWNER_KINDS, RESOURCES
from topology.model.service import Service
from topology.model.validate import MISSING, REQUIRED, SPECS, defaults
from topology.store import KINDS, PORT
from topology.store.backends import open_store
from topology.store.writetx import KEYED_KINDS
from topology.view import TopologyView, View


@pytest.fixture()
def svc():
    return Service(open_store("memory://"))


def one_of_each(svc: Service) -> dict[str, list[dict]]:
    """Every kind with its optional parts filled: gateway, interface, floating IP, binding."""
    ext = svc.create("network", {"name": "pub", "router:external": True, "provider:network_type": "flat",
                                 "provider:physical_network": "physnet1"})
    svc.create("subnet", {"network_id": ext["id"], "cidr": "172.24.4.0/24"})
    net = svc.create("network", {"name": "n"})
    sub = svc.create("subnet", {"network_id": net["id"], "cidr": "10.0.0.0/24",
                                "host_routes": [{"destination": "10.9.0.0/16", "nexthop": "10.0.0.9"}]})
    port = svc.create("port", {"network_id": net["id"], "allowed_address_pairs": [{"ip_address": "10.0.0.99"}],
                               "extra_dhcp_opts": [{"opt_name": "mtu", "opt_value": "1400"}]})
    router = svc.create("router", {"name": "r", "external_gateway_info": {"network_id": ext["id"]}})
    svc.add_router_interface(router["id"], {"subnet_id": sub["id"]})
    svc.create("floatingip", {"floating_network_id": ext["id"], "port_id": port["id"]})
    svc.create("floatingip", {"floating_network_id": ext["id"]})
    svc.create("security_group", {"name": "web"})
    svc.create("security_group_rule", {"security_group_id": port["security_groups"][0], "direction": "ingress",
                                       "protocol": "tcp", "port_range_min": 22, "port_range_max": 22,
                                       "remote_ip_prefix": "192.0.2.0/24"})
    svc.create("chassis", {"name": "c1", "datapath_id": 42, "tunnel_ip": "192.0.2.1",
                           "bridge_mappings": {"physnet1": "eth1"}})
    svc.set_port_binding(port["id"], "c1", "ACTIVE")
    _, data = svc.store.snapshot()
    return {r.kind: list(data[r.kind].values()) for r in RESOURCES}


# ---- a runtime check of a value against a record type's annotation -------------------------
def type_errors(value: typing.Any, hint: typing.Any, where: str) -> list[str]:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.NotRequired:
        return type_errors(value, args[0], where)
    if origin in (typing.Union, types.UnionType):
        options = [type_errors(value, a, where) for a in args]
        return [] if any(not o for o in options) else [f"{where}: {value!r} is none of {hint}"]
    if hint is type(None):
        return [] if value is None else [f"{where}: {value!r} is not None"]
    if hint is typing.Any:
        return []
    if typing.is_typeddict(hint):
        return record_errors(value, hint, where)
    if origin is list:
        if not isinstance(value, list):
            return [f"{where}: {value!r} is not a list"]
        return [e for i, v in enumerate(value) for e in type_errors(v, args[0], f"{where}[{i}]")]
    if origin is dict:
        if not isinstance(value, dict):
            return [f"{where}: {value!r} is not a dict"]
        return [e for k, v in value.items() for e in type_errors(k, args[0], where) + type_errors(v, args[1], where)]
    if hint is int and isinstance(value, bool):
        return [f"{where}: {value!r} is a bool, not an int"]
    return [] if isinstance(value, hint) else [f"{where}: {value!r} is not {hint.__name__}"]


def record_errors(rec: typing.Any, td: type, where: str) -> list[str]:
    if not isinstance(rec, dict):
        return [f"{where}: {rec!r} is not a dict"]
    hints = typing.get_type_hints(td)
    out = [f"{where}: missing {k}" for k in sorted(td.__required_keys__ - set(rec))]  # type: ignore[attr-defined]
    out += [f"{where}: unexpected {k}" for k in sorted(set(rec) - set(hints))]
    out += [e for k, v in rec.items() if k in hints for e in type_errors(v, hints[k], f"{where}.{k}")]
    return out


def test_type_check_can_fail():
    good = {"subnet_id": "s", "ip_address": "10.0.0.1"}
    assert record_errors(good, records.FixedIP, "f") == []
    assert record_errors({"subnet_id": "s"}, records.FixedIP, "f") == ["f: missing ip_address"]
    assert record_errors({**good, "x": 1}, records.FixedIP, "f") == ["f: unexpected x"]
    assert record_errors({**good, "ip_address": 7}, records.FixedIP, "f")
    assert type_errors(True, int, "b") and type_errors("x", str | None, "s") == []
    assert type_errors([{"subnet_id": 1, "ip_address": ""}], list[records.FixedIP], "l")


# ---- record types ------------------------------------------------------------------------------
def test_record_types_cover_every_resource_kind():
    # (the store also holds identity kinds, served by the identity API rather than this table)
    assert set(records.RECORD_TYPES) == set(BY_KIND) == set(SPECS) <= set(KINDS)


def test_stored_records_match_their_types_and_specs(svc):
    stored = one_of_each(svc)
    for kind, recs in stored.items():
        assert recs, f"the scenario made no {kind}"
        td = records.RECORD_TYPES[kind]
        for rec in recs:
            assert record_errors(rec, td, f"{kind} {rec['id']}") == []
        # every visible field of the type is an attribute the API knows, and is stored
        visible = {k for k in typing.get_type_hints(td) if not k.startswith("_")}
        assert visible <= set(SPECS[kind]), f"{kind}: {sorted(visible - set(SPECS[kind]))} not in SPECS"
        assert visible == {k for r in recs for k in r if not k.startswith("_")}


def test_owner_kinds_carry_a_key_and_others_do_not(svc):
    for kind, recs in one_of_each(svc).items():
        assert all(("_key" in r) == (kind in OWNER_KINDS) for r in recs), kind


# ---- defaults ----------------------------------------------------------------------------------
def test_defaults_are_fresh_copies_of_the_specs():
    first = defaults(PORT)
    first["allowed_address_pairs"].append({"ip_address": "10.0.0.1"})
    first["binding:profile"]["x"] = "y"
    assert defaults(PORT)["allowed_address_pairs"] == [] and defaults(PORT)["binding:profile"] == {}
    assert SPECS[PORT]["allowed_address_pairs"].default == []
    assert "network_id" not in first  # REQUIRED is no default
    assert all(a.default is MISSING or a.default is REQUIRED or name in defaults(PORT)
               for name, a in SPECS[PORT].items())


def test_a_bare_record_of_every_kind_has_every_spec_default(svc):
    ext = svc.create("network", {"name": "pub", "router:external": True})
    svc.create("subnet", {"network_id": ext["id"], "cidr": "172.24.4.0/24"})
    net = svc.create("network", {})
    sg = svc.create("security_group", {})
    bare = {
        "network": net, "subnet": svc.create("subnet", {"network_id": net["id"], "cidr": "10.0.0.0/24"}),
        "port": svc.create("port", {"network_id": net["id"]}), "router": svc.create("router", {}),
        "floatingip": svc.create("floatingip", {"floating_network_id": ext["id"]}), "security_group": sg,
        "security_group_rule": svc.create("security_group_rule", {"security_group_id": sg["id"],
                                                                  "direction": "ingress"}),
        "chassis": svc.create("chassis", {"name": "c1"}),
    }
    assert set(bare) == set(BY_KIND)
    for kind, rec in bare.items():
        for name, value in defaults(kind).items():
            assert rec[name] == value, (kind, name)


def test_binding_fields_are_one_derivation(svc):
    net = svc.create("network", {"name": "n"})
    p = svc.create("port", {"network_id": net["id"]})
    assert {k: p[k] for k in port_res.binding("")} == port_res.binding("")
    bound = svc.set_port_binding(p["id"], "c1", "ACTIVE")
    assert {k: bound[k] for k in port_res.binding("c1")} == port_res.binding("c1")
    by_api = svc.update("port", p["id"], {"binding:host_id": "c2"})
    assert {k: by_api[k] for k in port_res.binding("c2")} == port_res.binding("c2")
    assert port_res.binding("c1")["binding:vif_type"] == "ovs" and port_res.binding("")["binding:vif_details"] == {}


# ---- owner kinds -------------------------------------------------------------------------------
def test_owner_kinds_come_from_the_table():
    assert STORE_KIND == {Owner[r.owner]: r.kind for r in RESOURCES if r.owner}
    assert set(KEYED_KINDS) == set(OWNER_KINDS) == set(STORE_KIND.values())
    # every cookie kind but the chassis-wide and datapath-learned ones is owned by exactly one record kind
    assert set(Owner) - set(STORE_KIND) == {Owner.PIPELINE, Owner.LEARNED}
    assert len(set(STORE_KIND.values())) == len(STORE_KIND)
    for kind in OWNER_KINDS:
        assert INSPECT_OWNER_KINDS[kind][1] == kind
    assert INSPECT_OWNER_KINDS["sg"] == INSPECT_OWNER_KINDS["security_group"]


# ---- every collection in the API routes, the OpenAPI paths and the CLI -------------------------
def test_every_collection_is_routed_documented_and_in_the_cli():
    client = falcon.testing.TestClient(create_app(Service(open_store("memory://"))))
    listed = [r["collection"] for r in client.simulate_get("/v2.0").json["resources"]]
    assert listed == [r.collection for r in RESOURCES]
    paths = openapi_document()["paths"]
    parser = build_parser()
    for res in RESOURCES:
        got = client.simulate_get(f"/v2.0/{res.collection}")
        assert got.status_code == 200 and res.plural in got.json, res.collection
        missing = client.simulate_get(f"/v2.0/{res.collection}/0b1e3b2c-8d6a-4c8a-9a3e-4b4c1d2e3f40")
        assert missing.status_code == 404 and missing.json["NeutronError"]["type"].endswith("NotFound")
        assert f"/v2.0/{res.collection}" in paths and f"/v2.0/{res.collection}/{{id}}" in paths
        assert ("put" in paths[f"/v2.0/{res.collection}/{{id}}"]) == res.updatable, res.collection
        assert paths[f"/v2.0/{res.collection}/{{id}}"]["get"]["responses"]["200"]
        assert parser.parse_args([res.command, "list"]).func
        if res.kind in NOUNS and NOUNS[res.kind].create_body is not None:
            assert parser.parse_args([res.command, "create", *CREATE_ARGS.get(res.command, ["x"])]).func
        assert parser.parse_args([res.command, "show", "x"]).func
        assert parser.parse_args([res.command, "delete", "x", "y"]).refs == ["x", "y"]
        if res.updatable:
            assert parser.parse_args([res.command, "set", "x"]).func
        else:
            with pytest.raises(SystemExit):
                parser.parse_args([res.command, "set", "x"])
    assert client.simulate_get("/v2.0/nothings").status_code == 404


# What `tenantflow <noun> create` needs beyond one positional (name, group or network).
CREATE_ARGS = {"subnet": ["s", "--network", "n", "--subnet-range", "10.0.0.0/24"], "port": ["p", "--network", "n"]}


def test_cli_list_columns_are_the_tables(monkeypatch, capsys):
    calls = []

    def fake_call(self, method, path, body=None, params=None):
        calls.append((method, path, params))
        return {BY_COLLECTION[path].plural: [{c: f"v-{c}" for c in BY_COLLECTION[path].columns}]}
    monkeypatch.setattr("topology.cli.client.Client.call", fake_call)
    from topology.cli.main import main
    for res in RESOURCES:
        assert main([res.command, "list", "-f", "value"]) == 0
        assert capsys.readouterr().out.split() == [f"v-{c}" for c in res.columns]
    assert [c[1] for c in calls] == [r.collection for r in RESOURCES]


def test_cli_takes_every_noun_from_the_table_and_no_other():
    assert set(NOUNS) <= set(BY_KIND)
    parser = build_parser()
    for res in RESOURCES:
        with pytest.raises(SystemExit) as info:
            parser.parse_args([res.command, "--help"])
        assert info.value.code == 0
    with pytest.raises(SystemExit) as info:
        parser.parse_args(["nothing", "list"])
    assert info.value.code == 2
    assert isinstance(parser, argparse.ArgumentParser)


# ---- the view Protocol -------------------------------------------------------------------------
def _protocol_members() -> dict[str, typing.Any]:
    return {n: v for n, v in vars(View).items()
            if not n.startswith("_") and (inspect.isfunction(v) or isinstance(v, property))}


@pytest.mark.parametrize("impl", ["topology.view.TopologyView", "flows.engine.RecordingView"])
def test_both_views_serve_the_protocol(impl):
    module, _, name = impl.rpartition(".")
    cls = getattr(__import__(module, fromlist=[name]), name)
    members = _protocol_members()
    assert len(members) > 20
    for member, proto in members.items():
        assert hasattr(cls, member) or member in getattr(cls, "__annotations__", {}) or \
            member in inspect.signature(cls.__init__).parameters or member == "revision", f"{impl} lacks {member}"
        if inspect.isfunction(proto):
            want = list(inspect.signature(proto).parameters)
            got = list(inspect.signature(getattr(cls, member)).parameters)
            assert got == want, f"{impl}.{member}{got} != View.{member}{want}"


def test_topology_view_answers_none_with_nothing():
    view = TopologyView()
    assert view.ports_of_network(None) == [] and view.hosts_of_network(None) == frozenset()
    assert view.networks_on_host(None) == frozenset() and view.floatingips_of_port(None) == []
    assert view.get(PORT, None) is None


def test_every_openapi_operation_is_routed():
    """The document promises nothing the app does not route (each answers, if only with a 4xx of its own).
    The identity paths are served in front of this app (--auth builtin) and tested by their owner."""
    client = falcon.testing.TestClient(create_app(Service(open_store("memory://"))))
    rid = "0b1e3b2c-8d6a-4c8a-9a3e-4b4c1d2e3f40"
    paths = {p: item for p, item in openapi_document()["paths"].items() if not p.startswith("/identity")}
    assert len(paths) >= 2 * len(RESOURCES)
    for path, item in paths.items():
        url = path.replace("{id}", rid).replace("{alias}", "router")
        for method in set(item) - {"parameters"}:
            got = client.simulate_request(method.upper(), url, json={} if method in ("post", "put") else None)
            kind = (got.json or {}).get("NeutronError", {}).get("type") if got.status_code >= 400 else None
            assert kind not in ("HTTPNotFound", "HTTPMethodNotAllowed"), (method, path, got.status_code, kind)


def test_openapi_types_come_from_the_record_types():
    schemas = openapi_document()["components"]["schemas"]
    net = schemas["network"]["properties"]
    assert net["mtu"]["type"] == "integer" and net["router:external"]["type"] == "boolean"
    assert net["provider:segmentation_id"] == {"type": "integer", "nullable": True,
                                               "description": "set on create only (admin only)"}
    assert schemas["port"]["properties"]["fixed_ips"]["type"] == "array"
    assert schemas["router"]["properties"]["external_gateway_info"] == {"type": "object", "nullable": True}
    assert schemas["chassis"]["properties"]["bridge_mappings"]["type"] == "object"
    assert "type" not in net["subnets"] and net["subnets"]["readOnly"]  # computed on output, not stored
