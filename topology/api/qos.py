"""HTTP routes of Neutron's QoS extension (rules in topology/model/resources/qos.py):
/v2.0/qos/policies[/{id}], /v2.0/qos/policies/{id}/{bandwidth_limit,dscp_marking}_rules[/{rule_id}],
/v2.0/qos/rule-types[/{type}]. Literal `qos` segments win over app.py's {collection} templates.
"""
from __future__ import annotations

from typing import Any

import falcon

from topology.api import paging
from topology.api.app import context_of, query, read_json, send
from topology.model import errors
from topology.model.resources import qos
from topology.model.service import Service, matches

POLICY_FIELDS = {"id", "name", "description", "shared", "is_default", "project_id", "tenant_id",
                 "created_at", "updated_at", "revision_number"}


def _listing(req: falcon.Request, items: list[dict], plural: str, sortable: set[str]) -> dict[str, Any]:
    params = query(req)
    controls = paging.parse(params)
    filters = {k: v for k, v in params.items() if k not in paging.CONTROL}
    items = [r for r in items if matches(r, filters)]
    shown = paging.apply(items, controls, sortable)
    body: dict[str, Any] = {plural: paging.select(shown, controls.fields)}
    page_links = paging.links(f"{req.prefix}{req.path}", params, shown, controls)
    if page_links:
        body[f"{plural}_links"] = page_links
    return body


def _body(req: falcon.Request, key: str) -> Any:
    body = read_json(req)
    if not isinstance(body, dict) or set(body) != {key}:
        raise errors.BadRequest(f'Resource body required: expected {{"{key}": {{...}}}}.')
    return body[key]


def _rule_type(collection: str) -> str:
    rtype = qos.RULE_COLLECTIONS.get(collection)
    if rtype is None:
        raise errors.HTTPNotFound(message=f"The resource could not be found: qos/policies/.../{collection}")
    return rtype


class PoliciesResource:
    def __init__(self, q: qos.Qos) -> None:
        self.q = q

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        send(resp, _listing(req, self.q.list_policies(context_of(req)), "policies", POLICY_FIELDS))

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        send(resp, {"policy": self.q.create_policy(_body(req, "policy"), context_of(req))}, 201)

    def on_get_one(self, req: falcon.Request, resp: falcon.Response, pid: str) -> None:
        fields = query(req).get("fields")
        send(resp, {"policy": paging.select([self.q.get_policy(pid, context_of(req))], fields)[0]})

    def on_put_one(self, req: falcon.Request, resp: falcon.Response, pid: str) -> None:
        send(resp, {"policy": self.q.update_policy(pid, _body(req, "policy"), context_of(req))})

    def on_delete_one(self, req: falcon.Request, resp: falcon.Response, pid: str) -> None:
        self.q.delete_policy(pid, context_of(req))
        resp.status = 204


class RulesResource:
    """…/qos/policies/{pid}/{collection} and …/{collection}/{rid}; body key = singular rule."""

    def __init__(self, q: qos.Qos) -> None:
        self.q = q

    def on_get(self, req: falcon.Request, resp: falcon.Response, pid: str, collection: str) -> None:
        rtype = _rule_type(collection)
        items = self.q.list_rules(pid, rtype, context_of(req))
        send(resp, _listing(req, items, collection, set(qos.RULE_SPECS[rtype])))

    def on_post(self, req: falcon.Request, resp: falcon.Response, pid: str, collection: str) -> None:
        rtype = _rule_type(collection)
        rule = self.q.create_rule(pid, rtype, _body(req, f"{rtype}_rule"), context_of(req))
        send(resp, {f"{rtype}_rule": rule}, 201)

    def on_get_one(self, req: falcon.Request, resp: falcon.Response, pid: str, collection: str, rid: str) -> None:
        rtype = _rule_type(collection)
        fields = query(req).get("fields")
        rule = self.q.get_rule(pid, rtype, rid, context_of(req))
        send(resp, {f"{rtype}_rule": paging.select([rule], fields)[0]})

    def on_put_one(self, req: falcon.Request, resp: falcon.Response, pid: str, collection: str, rid: str) -> None:
        rtype = _rule_type(collection)
        rule = self.q.update_rule(pid, rtype, rid, _body(req, f"{rtype}_rule"), context_of(req))
        send(resp, {f"{rtype}_rule": rule})

    def on_delete_one(self, req: falcon.Request, resp: falcon.Response, pid: str, collection: str,
                      rid: str) -> None:
        self.q.delete_rule(pid, _rule_type(collection), rid, context_of(req))
        resp.status = 204


class RuleTypesResource:
    def __init__(self, q: qos.Qos) -> None:
        self.q = q

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        send(resp, {"rule_types": self.q.rule_types(context_of(req))})

    def on_get_one(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        send(resp, {"rule_type": self.q.rule_type(name, context_of(req))})


def add_routes(app: falcon.App, service: Service) -> None:
    q = qos.Qos(service)
    policies, rules, types = PoliciesResource(q), RulesResource(q), RuleTypesResource(q)
    app.add_route("/v2.0/qos/policies", policies)
    app.add_route("/v2.0/qos/policies/{pid}", policies, suffix="one")
    app.add_route("/v2.0/qos/policies/{pid}/{collection}", rules)
    app.add_route("/v2.0/qos/policies/{pid}/{collection}/{rid}", rules, suffix="one")
    app.add_route("/v2.0/qos/rule-types", types)
    app.add_route("/v2.0/qos/rule-types/{name}", types, suffix="one")
