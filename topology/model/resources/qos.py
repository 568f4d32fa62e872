"""Neutron's QoS extension: /v2.0/qos/policies with bandwidth_limit_rules and dscp_marking_rules,
/v2.0/qos/rule-types, and `qos_policy_id` on ports and networks.

How it is stored: one `qos_policy` record per policy, its rules inside it (`rules`, each with
id and `type`), so a rule change is one record change on the feed and the controller's QoS
compile (flows/qos.py) reads one record per port. Attributes, defaults and errors follow
neutron-lib's qos api-def: max_kbps required, max_burst_kbps 0, direction egress|ingress (one
bandwidth rule per direction), dscp_mark from Neutron's VALID_DSCP_MARKS (one per policy), a
policy still named by a port or network cannot be deleted (409 QosPolicyInUse), one default
policy per project. Who may do what is oslo.policy (topology/model/policy.py: Neutron's
defaults for `*_policy`, `*_policy_<rule>_rule`, `get_rule_type`).
"""
from __future__ import annotations

import copy
from typing import Any

from topology.model import errors
from topology.model.context import Context, project_for
from topology.model.validate import REQUIRED, RO, Attr, check_body, to_bool, to_int, to_long_str, to_str, to_uuid
from topology.store import NETWORK, PORT, Record, retry_on_conflict
from topology.store.writetx import WriteTx, base_fields, new_id

QOS_POLICY = "qos_policy"
BANDWIDTH_LIMIT, DSCP_MARKING = "bandwidth_limit", "dscp_marking"
RULE_TYPES = (BANDWIDTH_LIMIT, DSCP_MARKING)
# URL segment → rule type (…/qos/policies/{id}/bandwidth_limit_rules)
RULE_COLLECTIONS = {"bandwidth_limit_rules": BANDWIDTH_LIMIT, "dscp_marking_rules": DSCP_MARKING}
VALID_DSCP_MARKS = (0, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30, 32, 34, 36, 38, 40, 46, 48, 56)
DB_INTEGER_MAX_VALUE = 2 ** 31 - 1
DIRECTIONS = ("egress", "ingress")


class QosPolicyNotFound(errors.NotFound):
    message = "QoS policy {policy_id} could not be found."


class QosRuleNotFound(errors.NotFound):
    message = "QoS rule {rule_id} for policy {policy_id} could not be found."


class QosRuleTypeNotFound(errors.NotFound):
    message = "QoS rule type {rule_type} could not be found."


class QosPolicyInUse(errors.InUse):
    message = "QoS Policy {policy_id} is used by {object_type} {object_id}."


class QoSRulesConflict(errors.Conflict):
    message = "Rule {new_rule_type} conflicts with rule {rule_id} which already exists in QoS Policy {policy_id}."


class QoSPolicyDefaultAlreadyExists(errors.Conflict):
    message = "A default QoS policy exists for project {project_id}."


def _kbps(attr: str, value: Any) -> int:
    n = to_int(attr, value)
    if not 0 <= n <= DB_INTEGER_MAX_VALUE:
        raise errors.InvalidInput(error_message=f"'{n}' is too large - must be no larger than "
                                  f"'{DB_INTEGER_MAX_VALUE}'" if n > 0 else f"'{n}' is too small - must be at "
                                  "least '0'")
    return n


def _direction(attr: str, value: Any) -> str:
    if value not in DIRECTIONS:
        raise errors.InvalidInput(error_message=f"'{value}' is not in {list(DIRECTIONS)}")
    return value


def _dscp(attr: str, value: Any) -> int:
    n = to_int(attr, value)
    if n not in VALID_DSCP_MARKS:
        raise errors.InvalidInput(error_message=f"'{n}' is not in {list(VALID_DSCP_MARKS)}")
    return n


POLICY_SPEC: dict[str, Attr] = {
    "id": Attr(post=True, put=False, convert=to_uuid),
    "project_id": Attr(post=True, put=False, convert=to_str),
    "tenant_id": Attr(post=True, put=False, convert=to_str),
    "name": Attr(convert=to_str, default=""),
    "description": Attr(convert=to_long_str, default=""),
    "shared": Attr(convert=to_bool, default=False),
    "is_default": Attr(convert=to_bool, default=False),
    "rules": RO, "created_at": RO, "updated_at": RO, "revision_number": RO, "tags": RO,
}
RULE_SPECS: dict[str, dict[str, Attr]] = {
    BANDWIDTH_LIMIT: {
        "id": RO,
        "max_kbps": Attr(convert=_kbps, default=REQUIRED),
        "max_burst_kbps": Attr(convert=_kbps, default=0),
        "direction": Attr(convert=_direction, default="egress"),
    },
    DSCP_MARKING: {
        "id": RO,
        "dscp_mark": Attr(convert=_dscp, default=REQUIRED),
    },
}


# ---- presentation ----------------------------------------------------------------------------
def public_rule(rule: Record, policy: Record) -> Record:
    """A rule as Neutron shows it inside its policy (with type and qos_policy_id)."""
    return dict(rule, qos_policy_id=policy["id"])


def public_policy(rec: Record) -> Record:
    out = {k: copy.deepcopy(v) for k, v in rec.items() if not k.startswith("_")}
    out["rules"] = [public_rule(r, rec) for r in rec.get("rules", [])]
    return out


def _rule_view(rule: Record) -> Record:
    """A rule at its own URL: its attributes and id (no type, no policy id), as Neutron."""
    return {k: v for k, v in rule.items() if k != "type"}


def visible_policy(rec: Record, ctx: Context) -> bool:
    return ctx.is_admin or rec.get("project_id") == ctx.project_id or bool(rec.get("shared"))


def policy_ref_visible(get, policy_id: str | None, ctx: Context) -> None:
    """A port's or network's qos_policy_id must name a policy the caller may use (404 else)."""
    if policy_id is None:
        return
    rec = get(QOS_POLICY, policy_id)
    if rec is None or not visible_policy(rec, ctx):
        raise QosPolicyNotFound(policy_id=policy_id)


def default_policy_id(tx: WriteTx, project: str) -> str | None:
    """The project's default policy (is_default), given to its new networks (qos-default)."""
    for rec in tx.list(QOS_POLICY):
        if rec.get("is_default") and rec.get("project_id") == project:
            return rec["id"]
    return None


def to_policy_id(attr: str, value: Any) -> str | None:
    """Converter of qos_policy_id on ports and networks (null clears it)."""
    return None if value is None else to_uuid(attr, value)


def _show_action(action: str) -> str:
    """update_policy → get_policy, delete_policy_dscp_marking_rule → get_policy_dscp_marking_rule."""
    return "get_" + action.partition("_")[2]


# ---- the calls -------------------------------------------------------------------------------
class Qos:
    """The QoS calls over a Service: one store transaction each, policy-checked like the rest."""

    def __init__(self, service) -> None:
        self.service = service

    def _ctx(self, ctx: Context | None) -> Context:
        return ctx or self.service.admin_context()

    @staticmethod
    def _target(rec: Record) -> Record:
        target = dict(rec)
        target.setdefault("tenant_id", rec.get("project_id"))
        return target

    def _may(self, ctx: Context, action: str, rec: Record) -> bool:
        return self.service.policy.check(ctx, action, self._target(rec))

    def _enforce(self, tx: WriteTx, action: str, rec: Record, ctx: Context, attrs: list[str] | None = None,
                 hidden: Exception | None = None) -> None:
        """403 when refused, unless the caller may not even read `rec` (`hidden` given): then that
        404, as Neutron's API controller answers so as not to give away that it exists."""
        try:
            self.service.policy.enforce(ctx, action, self._target(rec), attrs or [])
        except errors.PolicyNotAuthorized:
            if hidden is not None and not self._may(ctx, _show_action(action), rec):
                raise hidden from None
            raise

    @staticmethod
    def _visible(get, pid: str, ctx: Context) -> Record:
        rec = get(QOS_POLICY, pid)
        if rec is None or not visible_policy(rec, ctx):
            raise QosPolicyNotFound(policy_id=pid)
        return rec

    # policies
    def list_policies(self, ctx: Context | None = None) -> list[Record]:
        ctx = self._ctx(ctx)
        recs = sorted(self.service.store.list(QOS_POLICY), key=lambda r: (r.get("_seq", 0), r["id"]))
        return [public_policy(r) for r in recs if visible_policy(r, ctx) and self._may(ctx, "get_policy", r)]

    def _readable(self, get, pid: str, ctx: Context) -> Record:
        """The policy if the caller may see it (its project's or shared, and get_policy allows): 404 else."""
        rec = self._visible(get, pid, ctx)
        if not self._may(ctx, "get_policy", rec):
            raise QosPolicyNotFound(policy_id=pid)
        return rec

    def get_policy(self, pid: str, ctx: Context | None = None) -> Record:
        ctx = self._ctx(ctx)
        return public_policy(self._readable(self.service.store.get, pid, ctx))

    @retry_on_conflict
    def create_policy(self, body: Any, ctx: Context | None = None) -> Record:
        ctx = self._ctx(ctx)
        given = check_body(POLICY_SPEC, QOS_POLICY, body, update=False)
        project = project_for(given, ctx)
        with self.service._write() as tx:
            rec = base_fields(given, project, tx)
            if tx.get(QOS_POLICY, rec["id"]) is not None:
                raise errors.Conflict(f"A qos_policy with id {rec['id']} already exists.")
            for name in ("name", "description", "shared", "is_default"):
                rec[name] = given.get(name, POLICY_SPEC[name].default)
            rec["rules"] = []
            self._enforce(tx, "create_policy", rec, ctx,
                          [n for n in given if given[n] != POLICY_SPEC[n].default])
            if rec["is_default"]:
                self._check_default(tx, rec)
            tx.insert(QOS_POLICY, rec)
            return public_policy(rec)

    @staticmethod
    def _check_default(tx: WriteTx, rec: Record) -> None:
        for other in tx.list(QOS_POLICY):
            if other["id"] != rec["id"] and other.get("is_default") and other["project_id"] == rec["project_id"]:
                raise QoSPolicyDefaultAlreadyExists(project_id=rec["project_id"])

    @retry_on_conflict
    def update_policy(self, pid: str, body: Any, ctx: Context | None = None) -> Record:
        ctx = self._ctx(ctx)
        changes = check_body(POLICY_SPEC, QOS_POLICY, body, update=True)
        with self.service._write() as tx:
            old = self._visible(tx.get, pid, ctx)
            self._enforce(tx, "update_policy", old, ctx, list(changes), hidden=QosPolicyNotFound(policy_id=pid))
            new = copy.deepcopy(old)
            new.update(changes)
            if new.get("is_default") and not old.get("is_default"):
                self._check_default(tx, new)
            if new != old:
                tx.replace(QOS_POLICY, old, new)
            return public_policy(new if new != old else old)

    @retry_on_conflict
    def delete_policy(self, pid: str, ctx: Context | None = None) -> None:
        ctx = self._ctx(ctx)
        with self.service._write() as tx:
            old = self._visible(tx.get, pid, ctx)
            self._enforce(tx, "delete_policy", old, ctx, hidden=QosPolicyNotFound(policy_id=pid))
            for kind in (PORT, NETWORK):
                for rec in tx.list(kind):
                    if rec.get("qos_policy_id") == pid:
                        raise QosPolicyInUse(policy_id=pid, object_type=kind, object_id=rec["id"])
            tx.remove(QOS_POLICY, old)

    # rules
    def _rule(self, policy: Record, rtype: str, rid: str) -> Record:
        for rule in policy.get("rules", []):
            if rule["id"] == rid and rule["type"] == rtype:
                return rule
        raise QosRuleNotFound(rule_id=rid, policy_id=policy["id"])

    def list_rules(self, pid: str, rtype: str, ctx: Context | None = None) -> list[Record]:
        ctx = self._ctx(ctx)
        rec = self._readable(self.service.store.get, pid, ctx)
        if not self._may(ctx, f"get_policy_{rtype}_rule", rec):
            return []  # Neutron lists only what get_policy_<type>_rule lets the caller see
        return [_rule_view(r) for r in rec.get("rules", []) if r["type"] == rtype]

    def get_rule(self, pid: str, rtype: str, rid: str, ctx: Context | None = None) -> Record:
        ctx = self._ctx(ctx)
        rec = self._readable(self.service.store.get, pid, ctx)
        if not self._may(ctx, f"get_policy_{rtype}_rule", rec):
            raise QosRuleNotFound(rule_id=rid, policy_id=pid)  # a refused show is a 404 in Neutron
        return _rule_view(self._rule(rec, rtype, rid))

    @staticmethod
    def _conflicts(policy: Record, rule: Record) -> None:
        for other in policy.get("rules", []):
            if other["id"] == rule["id"] or other["type"] != rule["type"]:
                continue
            if rule["type"] == DSCP_MARKING or other.get("direction") == rule.get("direction"):
                raise QoSRulesConflict(new_rule_type=rule["type"], rule_id=other["id"], policy_id=policy["id"])

    @retry_on_conflict
    def create_rule(self, pid: str, rtype: str, body: Any, ctx: Context | None = None) -> Record:
        ctx = self._ctx(ctx)
        spec = RULE_SPECS[rtype]
        given = check_body(spec, f"{rtype}_rule", body, update=False)
        with self.service._write() as tx:
            old = self._readable(tx.get, pid, ctx)
            self._enforce(tx, f"create_policy_{rtype}_rule", old, ctx, list(given))
            rule: Record = {"id": new_id(), "type": rtype}
            for name, attr in spec.items():
                if name != "id":
                    rule[name] = given.get(name, attr.default)
            self._conflicts(old, rule)
            new = copy.deepcopy(old)
            new["rules"] = new.get("rules", []) + [rule]
            tx.replace(QOS_POLICY, old, new)
            return _rule_view(rule)

    @retry_on_conflict
    def update_rule(self, pid: str, rtype: str, rid: str, body: Any, ctx: Context | None = None) -> Record:
        ctx = self._ctx(ctx)
        changes = check_body(RULE_SPECS[rtype], f"{rtype}_rule", body, update=True)
        with self.service._write() as tx:
            old = self._readable(tx.get, pid, ctx)
            self._enforce(tx, f"update_policy_{rtype}_rule", old, ctx, list(changes),
                          hidden=QosRuleNotFound(rule_id=rid, policy_id=pid))
            rule = dict(self._rule(old, rtype, rid), **changes)
            self._conflicts(old, rule)
            new = copy.deepcopy(old)
            new["rules"] = [rule if r["id"] == rid else r for r in new["rules"]]
            if new != old:
                tx.replace(QOS_POLICY, old, new)
            return _rule_view(rule)

    @retry_on_conflict
    def delete_rule(self, pid: str, rtype: str, rid: str, ctx: Context | None = None) -> None:
        ctx = self._ctx(ctx)
        with self.service._write() as tx:
            old = self._readable(tx.get, pid, ctx)
            self._enforce(tx, f"delete_policy_{rtype}_rule", old, ctx,
                          hidden=QosRuleNotFound(rule_id=rid, policy_id=pid))
            self._rule(old, rtype, rid)
            new = copy.deepcopy(old)
            new["rules"] = [r for r in new["rules"] if r["id"] != rid]
            tx.replace(QOS_POLICY, old, new)

    # rule types
    def rule_types(self, ctx: Context | None = None) -> list[Record]:
        ctx = self._ctx(ctx)
        self.service.policy.enforce(ctx, "get_rule_type", {})
        return [{"type": t} for t in RULE_TYPES]

    def rule_type(self, name: str, ctx: Context | None = None) -> Record:
        ctx = self._ctx(ctx)
        self.service.policy.enforce(ctx, "get_rule_type", {})
        if name not in RULE_TYPES:
            raise QosRuleTypeNotFound(rule_type=name)
        params = {BANDWIDTH_LIMIT: [
            {"parameter_name": "max_kbps", "parameter_type": "range",
             "parameter_values": {"start": 0, "end": DB_INTEGER_MAX_VALUE}},
            {"parameter_name": "max_burst_kbps", "parameter_type": "range",
             "parameter_values": {"start": 0, "end": DB_INTEGER_MAX_VALUE}},
            {"parameter_name": "direction", "parameter_type": "choices", "parameter_values": list(DIRECTIONS)}],
            DSCP_MARKING: [{"parameter_name": "dscp_mark", "parameter_type": "choices",
                            "parameter_values": list(VALID_DSCP_MARKS)}]}[name]
        return {"type": name, "drivers": [{"name": "tenantflow", "supported_parameters": params}]}

