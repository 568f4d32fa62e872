"""Who may do what: oslo.policy with Neutron's default rules as policy-in-code.

Why oslo.policy and Neutron's rule names: operators already know them (`create_network:shared`,
`update_router:external_gateway_info:enable_snat`), they override them in a policy.yaml exactly
as for Neutron, and a denial reads as Neutron's does: "(rule:create_network and
rule:create_network:router:external) is disallowed by policy" (HTTP 403 PolicyNotAuthorized).

How a check is built (as neutron/policy.py does): the action's rule AND one rule per attribute
the request sets explicitly (present, and not its default) that has a rule of its own, AND, for
a dict or a list of dicts, one rule per sub-key (`create_port:fixed_ips:ip_address`). Targets
carry the record plus what rules ask of its parents: `network:project_id` and `shared` for
ports/subnets, `security_group:project_id` for rules. Visibility (what a project may list or
show; another project's object is 404) stays in topology.model.context; policy decides writes.

The defaults are today's Neutron "new defaults" (admin, member, reader; `role:service`), with two
tenantflow deviations, both loosened for its own use of the attribute and easy to tighten in a
policy.yaml: `binding:profile` (tenantflow reads `interface_name` from it) is admin or service,
and the `chassis` resource is tenantflow's own (read by anyone, written by admins).
"""
from __future__ import annotations

import logging
import os
import re
import threading
from typing import Any, Iterable, Mapping

from oslo_config import cfg
from oslo_policy import policy as oslo
from oslo_policy import _checks

from topology.model import errors
from topology.model.context import ADMIN, MEMBER, READER, Context

LOG = logging.getLogger(__name__)

# ---- Neutron's field check ----------------------------------------------------------------
@_checks.register("field")
class FieldCheck(_checks.Check):
    """`field:<resource>:<attribute>=<value>`: the target's attribute equals the value (True/False
    compare as booleans, `~regex` matches, `*` is the literal wildcard project)."""

    def __init__(self, kind: str, match: str) -> None:
        super().__init__(kind, match)
        _resource, _, field_value = match.partition(":")
        self.field, _, value = field_value.rpartition("=")
        self.regex = re.compile(value[1:]) if value.startswith("~") else None
        self.value: Any = {"True": True, "False": False}.get(value, value)

    def __call__(self, target: Any, creds: Any, enforcer: Any, current_rule: str | None = None) -> bool:
        found = target.get(self.field) if isinstance(target, Mapping) else None
        if found is None:
            return False
        if self.regex is not None:
            return isinstance(found, str) and bool(self.regex.match(found))
        return bool(found == self.value)


# ---- check strings (neutron_lib.policy.rules and neutron/conf/policies/base.py) --------------
ADMIN_R = "rule:admin_only"
SERVICE = "rule:service_api"
PROJECT_MEMBER = "role:member and project_id:%(project_id)s"
PROJECT_READER = "role:reader and project_id:%(project_id)s"
PROJECT_MANAGER = "role:manager and project_id:%(project_id)s"
NET_OWNER_MEMBER = "role:member and rule:network_owner"
NET_OWNER_READER = "role:reader and rule:network_owner"
SG_OWNER_MEMBER = "role:member and rule:sg_owner"
SG_OWNER_READER = "role:reader and rule:sg_owner"


def any_of(*checks: str) -> str:
    return " or ".join(f"({c})" for c in checks)


ADMIN_OR_SERVICE = any_of(ADMIN_R, SERVICE)
ADMIN_OR_MEMBER = any_of(ADMIN_R, PROJECT_MEMBER)
ADMIN_OR_READER = any_of(ADMIN_R, PROJECT_READER)
ADMIN_OR_MANAGER = any_of(ADMIN_R, PROJECT_MANAGER)
ADMIN_OR_NET_OWNER_MEMBER = any_of(ADMIN_R, NET_OWNER_MEMBER)
ADMIN_OR_NET_OWNER_READER = any_of(ADMIN_R, NET_OWNER_READER)
NOT_WILDCARD = "(not field:rbac_policy:target_tenant=* and not field:rbac_policy:target_project=*)"


def _rules(table: Iterable[tuple[str, str]]) -> list[oslo.RuleDefault]:
    return [oslo.RuleDefault(name, check) for name, check in table]


BASE = [
    ("context_is_admin", "role:admin"),
    ("service_api", "role:service"),
    ("owner", "project_id:%(project_id)s"),
    ("admin_or_owner", "rule:context_is_admin or rule:owner"),
    ("admin_only", "rule:context_is_admin"),
    ("regular_user", ""),
    ("network_owner", "project_id:%(network:project_id)s"),
    ("admin_or_network_owner", "rule:context_is_admin or project_id:%(network:project_id)s"),
    ("sg_owner", "project_id:%(security_group:project_id)s"),
    ("shared", "field:networks:shared=True"),
    ("external", "field:networks:router:external=True"),
    ("default", "rule:admin_or_owner"),
]
NETWORK = [
    ("create_network", ADMIN_OR_MEMBER),
    ("create_network:shared", ADMIN_R),
    ("create_network:router:external", ADMIN_R),
    ("create_network:is_default", ADMIN_R),
    ("create_network:port_security_enabled", ADMIN_OR_MEMBER),
    ("create_network:provider:network_type", ADMIN_R),
    ("create_network:provider:physical_network", ADMIN_R),
    ("create_network:provider:segmentation_id", ADMIN_R),
    ("get_network", any_of(ADMIN_OR_READER, SERVICE, "rule:shared", "rule:external")),
    ("update_network", ADMIN_OR_MEMBER),
    ("update_network:shared", ADMIN_R),
    ("update_network:router:external", ADMIN_R),
    ("update_network:is_default", ADMIN_R),
    ("update_network:port_security_enabled", ADMIN_OR_MEMBER),
    ("update_network:provider:network_type", ADMIN_R),
    ("update_network:provider:physical_network", ADMIN_R),
    ("update_network:provider:segmentation_id", ADMIN_R),
    ("delete_network", ADMIN_OR_MEMBER),
]
SUBNET = [
    ("create_subnet", ADMIN_OR_NET_OWNER_MEMBER),
    ("create_subnet:segment_id", ADMIN_R),
    ("create_subnet:service_types", ADMIN_R),
    ("get_subnet", any_of(PROJECT_READER, "rule:shared", "field:subnets:router:external=True",
                          ADMIN_OR_NET_OWNER_READER, SERVICE)),
    ("update_subnet", any_of(PROJECT_MEMBER, ADMIN_OR_NET_OWNER_MEMBER)),
    ("update_subnet:segment_id", ADMIN_R),
    ("update_subnet:service_types", ADMIN_R),
    ("delete_subnet", any_of(PROJECT_MEMBER, ADMIN_OR_NET_OWNER_MEMBER)),
]
PORT = [
    ("network_device", "field:port:device_owner=~^network:"),
    ("create_port", any_of(ADMIN_OR_SERVICE, NET_OWNER_MEMBER, "rule:shared")),
    ("create_port:device_id", any_of(ADMIN_OR_MEMBER, SERVICE)),
    ("create_port:device_owner", any_of("not rule:network_device", ADMIN_OR_SERVICE, NET_OWNER_MEMBER)),
    ("create_port:mac_address", any_of(ADMIN_OR_SERVICE, NET_OWNER_MEMBER)),
    ("create_port:fixed_ips", any_of(ADMIN_OR_SERVICE, NET_OWNER_MEMBER, "rule:shared")),
    ("create_port:fixed_ips:ip_address", any_of(ADMIN_OR_SERVICE, NET_OWNER_MEMBER)),
    ("create_port:fixed_ips:subnet_id", any_of(ADMIN_OR_SERVICE, NET_OWNER_MEMBER, "rule:shared")),
    ("create_port:port_security_enabled", any_of(ADMIN_OR_SERVICE, NET_OWNER_MEMBER)),
    ("create_port:binding:host_id", ADMIN_OR_SERVICE),
    ("create_port:binding:profile", ADMIN_OR_SERVICE),
    ("create_port:binding:vnic_type", any_of(ADMIN_OR_MEMBER, SERVICE)),
    ("create_port:allowed_address_pairs", any_of(ADMIN_OR_NET_OWNER_MEMBER, SERVICE)),
    ("create_port:allowed_address_pairs:mac_address", any_of(ADMIN_OR_NET_OWNER_MEMBER, SERVICE)),
    ("create_port:allowed_address_pairs:ip_address", any_of(ADMIN_OR_NET_OWNER_MEMBER, SERVICE)),
    ("get_port", any_of(ADMIN_OR_SERVICE, NET_OWNER_READER, PROJECT_READER)),
    ("update_port", any_of(ADMIN_OR_SERVICE, PROJECT_MEMBER)),
    ("update_port:device_id", any_of(ADMIN_OR_MEMBER, SERVICE)),
    ("update_port:device_owner", any_of("not rule:network_device", ADMIN_OR_SERVICE, NET_OWNER_MEMBER)),
    ("update_port:mac_address", any_of(ADMIN_OR_SERVICE, "role:manager and rule:network_owner")),
    ("update_port:fixed_ips", any_of(ADMIN_OR_SERVICE, NET_OWNER_MEMBER)),
    ("update_port:fixed_ips:ip_address", any_of(ADMIN_OR_SERVICE, NET_OWNER_MEMBER)),
    ("update_port:fixed_ips:subnet_id", any_of(ADMIN_OR_SERVICE, NET_OWNER_MEMBER, "rule:shared")),
    ("update_port:port_security_enabled", any_of(ADMIN_OR_SERVICE, NET_OWNER_MEMBER)),
    ("update_port:binding:host_id", ADMIN_OR_SERVICE),
    ("update_port:binding:profile", ADMIN_OR_SERVICE),
    ("update_port:binding:vnic_type", any_of(ADMIN_OR_SERVICE, PROJECT_MEMBER)),
    ("update_port:allowed_address_pairs", any_of(ADMIN_OR_NET_OWNER_MEMBER, SERVICE)),
    ("update_port:allowed_address_pairs:mac_address", any_of(ADMIN_OR_NET_OWNER_MEMBER, SERVICE)),
    ("update_port:allowed_address_pairs:ip_address", any_of(ADMIN_OR_NET_OWNER_MEMBER, SERVICE)),
    ("delete_port", any_of(ADMIN_OR_SERVICE, NET_OWNER_MEMBER, PROJECT_MEMBER)),
]
ROUTER = [
    ("create_router", ADMIN_OR_MEMBER),
    ("create_router:distributed", ADMIN_R),
    ("create_router:ha", ADMIN_R),
    ("create_router:external_gateway_info", ADMIN_OR_MEMBER),
    ("create_router:external_gateway_info:network_id", ADMIN_OR_MEMBER),
    ("create_router:external_gateway_info:enable_snat", ADMIN_R),
    ("create_router:external_gateway_info:external_fixed_ips", ADMIN_R),
    ("get_router", ADMIN_OR_READER),
    ("update_router", ADMIN_OR_MEMBER),
    ("update_router:distributed", ADMIN_R),
    ("update_router:ha", ADMIN_R),
    ("update_router:external_gateway_info", ADMIN_OR_MEMBER),
    ("update_router:external_gateway_info:network_id", ADMIN_OR_MEMBER),
    ("update_router:external_gateway_info:enable_snat", ADMIN_R),
    ("update_router:external_gateway_info:external_fixed_ips", ADMIN_R),
    ("delete_router", ADMIN_OR_MEMBER),
    ("add_router_interface", ADMIN_OR_MEMBER),
    ("remove_router_interface", ADMIN_OR_MEMBER),
    ("add_extraroutes", ADMIN_OR_MEMBER),
    ("remove_extraroutes", ADMIN_OR_MEMBER),
]
FLOATINGIP = [
    ("create_floatingip", ADMIN_OR_MEMBER),
    ("create_floatingip:floating_ip_address", ADMIN_OR_MANAGER),
    ("get_floatingip", ADMIN_OR_READER),
    ("update_floatingip", ADMIN_OR_MEMBER),
    ("delete_floatingip", ADMIN_OR_MEMBER),
]
SECURITY_GROUP = [
    ("create_security_group", ADMIN_OR_MEMBER),
    ("get_security_group", ADMIN_OR_READER),
    ("update_security_group", ADMIN_OR_MEMBER),
    ("delete_security_group", ADMIN_OR_MEMBER),
    ("create_security_group_rule", any_of(ADMIN_R, SG_OWNER_MEMBER)),
    ("get_security_group_rule", any_of(ADMIN_R, SG_OWNER_READER)),
    ("delete_security_group_rule", any_of(ADMIN_R, SG_OWNER_MEMBER)),
]
RBAC = [
    ("restrict_wildcard", any_of(NOT_WILDCARD, ADMIN_R)),
    ("create_rbac_policy", ADMIN_OR_MEMBER),
    ("create_rbac_policy:target_tenant", any_of(ADMIN_R, NOT_WILDCARD)),
    ("create_rbac_policy:target_project", any_of(ADMIN_R, "not field:rbac_policy:target_project=*")),
    ("get_rbac_policy", ADMIN_OR_READER),
    ("update_rbac_policy", ADMIN_OR_MEMBER),
    ("update_rbac_policy:target_tenant", any_of(ADMIN_R, NOT_WILDCARD)),
    ("update_rbac_policy:target_project", any_of(ADMIN_R, "not field:rbac_policy:target_project=*")),
    ("delete_rbac_policy", ADMIN_OR_MEMBER),
]
QUOTA = [
    # Neutron 2024.1+ says admin or project manager; Keystone's default roles here stop at member,
    # so a project's readers may see their own quota (Neutron's earlier default), as `quota show` needs.
    ("get_quota", any_of(ADMIN_R, PROJECT_MANAGER, PROJECT_READER)),
    ("update_quota", ADMIN_R),
    ("delete_quota", ADMIN_R),
]
CHASSIS = [
    ("create_chassis", ADMIN_R),
    ("get_chassis", ""),
    ("update_chassis", ADMIN_R),
    ("delete_chassis", ADMIN_R),
]
# Tags: Neutron's <action>_<resource>:tags rules (create_/update_/delete_/get_).
TAGGED = ("network", "subnet", "port", "router", "floatingip", "security_group")
TAGS = [(f"{verb}_{kind}:tags", ADMIN_OR_READER if verb == "get" else ADMIN_OR_MEMBER)
        for kind in TAGGED for verb in ("get", "create", "update", "delete")]
# The parent's own rules, widened where Neutron widens them (shared/external networks' tags).
TAGS = [(n, any_of(c, "rule:shared", "rule:external") if n == "get_network:tags" else c) for n, c in TAGS]

# QoS (neutron/conf/policies/qos.py, the 2023+ defaults): policies are read by the project's readers
# and, when shared, by everyone; rules by the policy project's readers (the target is the policy);
# every write is the cloud admin's (not a project admin's: QoS is an operator's offer). Rule types
# belong to no project: any reader.
QOS = [("shared_qos_policy", "field:policies:shared=True"),
       ("get_policy", any_of(ADMIN_OR_READER, "rule:shared_qos_policy")), ("create_policy", ADMIN_R),
       ("update_policy", ADMIN_R), ("delete_policy", ADMIN_R), ("get_rule_type", "role:reader")] + [
    (f"{verb}_policy_{rule}_rule", ADMIN_OR_READER if verb == "get" else ADMIN_R)
    for rule in ("bandwidth_limit", "dscp_marking") for verb in ("get", "create", "update", "delete")]

DEFAULT_RULES: list[oslo.RuleDefault] = _rules(BASE + NETWORK + SUBNET + PORT + ROUTER + FLOATINGIP
                                              + SECURITY_GROUP + RBAC + QUOTA + CHASSIS + TAGS + QOS)

# Attributes whose presence alone counts as "set explicitly": Neutron has no default for them
# (ATTR_NOT_SPECIFIED), while our specs fill one in (router distributed=True, ha=False).
NO_DEFAULT = {("router", "distributed"), ("router", "ha")}


def credentials(ctx: Context) -> dict[str, Any]:
    """What the rules check of the caller. A context built without roles (internal callers,
    older code) gets Keystone's defaults for its kind: admin → admin, member, reader; else
    member, reader."""
    roles = list(getattr(ctx, "roles", ()) or ())
    if not roles:
        roles = [ADMIN, MEMBER, READER] if ctx.is_admin else [MEMBER, READER]
    to_values = getattr(ctx, "to_policy_values", None)
    creds = dict(to_values()) if callable(to_values) else {"project_id": ctx.project_id}
    creds.update(roles=roles, project_id=ctx.project_id, tenant_id=ctx.project_id, is_admin=ctx.is_admin)
    return creds


class Policy:
    """One oslo.policy Enforcer with the defaults above; `policy_file` (policy.yaml, as Neutron's
    [oslo_policy] policy_file) overrides any rule. A missing file named explicitly is an error."""

    def __init__(self, policy_file: str | None = None) -> None:
        if policy_file and not os.path.isfile(policy_file):
            raise FileNotFoundError(f"policy file {policy_file} does not exist")
        conf = cfg.ConfigOpts()
        conf([], project="tenantflow", default_config_files=[], default_config_dirs=[])
        self.policy_file = policy_file
        # use_conf=True is what merges the registered defaults into the rules; with no file given the
        # path names nothing, so only the defaults apply (no search of /etc/... for a stray file).
        path = os.path.abspath(policy_file) if policy_file else os.path.join(os.sep, "nonexistent-tenantflow",
                                                                            "policy.yaml")
        self.enforcer = oslo.Enforcer(conf, policy_file=path, use_conf=True)
        conf.set_override("policy_dirs", [], group="oslo_policy")
        self.enforcer.register_defaults(DEFAULT_RULES)
        self._lock = threading.Lock()   # load_rules re-reads a changed file; one thread at a time
        with self._lock:
            self.enforcer.load_rules()
        if policy_file:
            LOG.info("policy: defaults overridden by %s", policy_file)

    def has_rule(self, name: str) -> bool:
        return name in self.enforcer.rules

    def match_rule(self, action: str, target: Mapping[str, Any], attrs: Iterable[str]) -> _checks.BaseCheck:
        """Neutron's composite rule: the action AND each set attribute's rule (with sub-keys)."""
        return _compose(action, self._rule_parts(action, target, attrs))

    def _rule_parts(self, action: str, target: Mapping[str, Any], attrs: Iterable[str]) -> RuleParts:
        """What the composite rule is made of: (attribute rule, its sub-key rules) per set attribute
        that has a rule. The rule is a function of (action, these parts) alone (`_compose`)."""
        parts = []
        for attr in attrs:
            name = f"{action}:{attr}"
            if not self.has_rule(name):
                continue
            subs = tuple(f"{name}:{key}" for key in _sub_keys(target.get(attr)) if self.has_rule(f"{name}:{key}"))
            parts.append((name, subs))
        return tuple(parts)

    def decisions(self) -> "Decisions":
        """A memo of this policy's decisions for one request (a bulk create checks the same
        composite rule for the same caller thousands of times): see Decisions."""
        return Decisions(self)

    def check(self, ctx: Context, action: str, target: Mapping[str, Any], attrs: Iterable[str] = ()) -> bool:
        rule = self.match_rule(action, target, attrs)
        with self._lock:
            return bool(self.enforcer.enforce(rule, dict(target), credentials(ctx)))

    def enforce(self, ctx: Context, action: str, target: Mapping[str, Any], attrs: Iterable[str] = (),
                decisions: "Decisions | None" = None) -> None:
        """403 PolicyNotAuthorized with Neutron's message when the rule says no. With `decisions`
        (Policy.decisions, one request's memo) an identical check is answered from the memo."""
        parts = self._rule_parts(action, target, attrs)
        rule = _compose(action, parts)
        if decisions is not None and decisions.policy is self:
            allowed = decisions.allowed(ctx, (action, parts), rule, target)
        else:
            with self._lock:
                allowed = self.enforcer.enforce(rule, dict(target), credentials(ctx))
        if not allowed:
            LOG.info("policy: %s denied to project %s (roles %s)", action, ctx.project_id,
                     ",".join(credentials(ctx)["roles"]))
            raise errors.PolicyNotAuthorized(message=f"{rule} is disallowed by policy")

    def _file_mtime(self) -> float | None:
        """The policy file's mtime (what oslo.policy's file cache reloads on), None without one."""
        if not self.policy_file:
            return None
        try:
            return os.path.getmtime(self.policy_file)
        except OSError:
            return None


RuleParts = tuple[tuple[str, tuple[str, ...]], ...]


def _compose(action: str, parts: RuleParts) -> _checks.BaseCheck:
    rule: _checks.BaseCheck = _checks.RuleCheck("rule", action)
    for name, subs in parts:
        attr_rule: _checks.BaseCheck = _checks.RuleCheck("rule", name)
        if subs:
            attr_rule = _checks.AndCheck([attr_rule, _checks.AndCheck(
                [_checks.RuleCheck("rule", s) for s in subs])])
        rule = _checks.AndCheck([rule, attr_rule])
    return rule


# ---- one request's memo of decisions -------------------------------------------------------
# Why it is exact: a check tree made only of the checks below (oslo.policy's own and our field
# check, by exact type) decides from three things alone: the rules it names (as loaded), the
# caller's credentials, and the values of the target keys it reads — `%(key)s` in a role/generic
# check's match, the field of a field check. So two checks of the same composite rule by the same
# caller, on targets agreeing on those keys, get the same answer, and the second may be taken from
# the first. Anything else — an http check, an extension, a subclass, another `%` format, a cycle,
# a value that is not a plain str/bool/int/None, a caller that is not a Context — makes the check
# not memoised: oslo.policy evaluates it every time, as without a memo. Every miss is evaluated by
# oslo.policy's Enforcer; the memo is dropped when the enforcer's rules are replaced (a reload of a
# changed policy file makes a new Rules object: overwrite=True) or the policy file's mtime moved
# (so a file changed mid-request is re-read on the next check, as oslo.policy's load_rules would).
_FORMAT_KEY = re.compile(r"%\(([^()]*)\)s")
_ABSENT = object()
_PLAIN = (str, bool, int, type(None))
_LEAVES = (_checks.TrueCheck, _checks.FalseCheck)


def _format_keys(match: Any) -> list[str] | None:
    """The target keys `match % target` reads, or None unless it only holds `%(key)s` (and `%%`)."""
    if not isinstance(match, str):
        return None
    if "%" not in match:
        return []
    if "%" in _FORMAT_KEY.sub("", match).replace("%%", ""):
        return None
    return _FORMAT_KEY.findall(match)


def _target_reads(check: Any, rules: Any, out: set[str], names: set[str]) -> bool:
    """Add to `out` every target key `check` may read when evaluated against `rules`; False when
    what it decides from cannot be told (then it is never memoised)."""
    kind = type(check)
    if kind in _LEAVES:
        return True
    if kind in (_checks.AndCheck, _checks.OrCheck):
        return all(_target_reads(c, rules, out, names) for c in check.rules)
    if kind is _checks.NotCheck:
        return _target_reads(check.rule, rules, out, names)
    if kind is _checks.RuleCheck:
        if check.match in names:
            return False    # a cycle: leave it to oslo.policy
        try:
            sub = rules[check.match]    # as RuleCheck looks it up (the default rule for a missing one)
        except KeyError:
            return True     # RuleCheck answers False whatever the target
        names.add(check.match)
        try:
            return _target_reads(sub, rules, out, names)
        finally:
            names.discard(check.match)
    if kind in (_checks.RoleCheck, _checks.GenericCheck):
        keys = _format_keys(check.match)
        if keys is None:
            return False
        out.update(keys)
        return True
    if kind is FieldCheck:
        out.add(check.field)
        return True
    return False


class Decisions:
    """One request's memo of Policy.enforce answers, keyed by (composite rule, caller, the values of
    the target keys the rule reads). Exact, not approximate: see the comment above."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self._rules: Any = None
        self._mtime: float | None = None
        self._reads: dict[Any, tuple[str, ...] | None] = {}
        self._allowed: dict[Any, bool] = {}

    def _current(self) -> None:
        enforcer = self.policy.enforcer
        mtime = self.policy._file_mtime()
        if enforcer.rules is not self._rules or mtime != self._mtime:
            self._rules, self._mtime = enforcer.rules, mtime
            self._reads.clear()
            self._allowed.clear()

    def _reads_of(self, rule_key: Any, rule: _checks.BaseCheck) -> tuple[str, ...] | None:
        try:
            return self._reads[rule_key]
        except KeyError:
            pass
        reads: set[str] = set()
        ok = self.policy.enforcer.overwrite and _target_reads(rule, self._rules, reads, set())
        found = self._reads[rule_key] = tuple(sorted(reads)) if ok else None
        return found

    def allowed(self, ctx: Context, rule_key: Any, rule: _checks.BaseCheck, target: Mapping[str, Any]) -> bool:
        enforcer = self.policy.enforcer
        with self.policy._lock:
            self._current()
            key: Any = None
            # the caller: a Context (frozen; its credentials are a function of its fields alone)
            reads = self._reads_of(rule_key, rule) if type(ctx) is Context else None
            if reads is not None:
                values = []
                for name in reads:
                    value = target.get(name, _ABSENT)
                    if value is not _ABSENT and type(value) not in _PLAIN:
                        break
                    values.append((type(value), value))
                else:
                    key = (rule_key, ctx, tuple(values))
                    try:
                        hash(key)
                    except TypeError:
                        key = None
            if key is not None:
                found = self._allowed.get(key)
                if found is not None:
                    return found
            rules = enforcer.rules
            allowed = bool(enforcer.enforce(rule, dict(target), credentials(ctx)))
            if key is not None and enforcer.rules is rules is self._rules:
                self._allowed[key] = allowed
            return allowed


def _sub_keys(value: Any) -> list[str]:
    """Keys of a dict value, or of the dicts in a list value, each once in first-seen order."""
    items = [value] if isinstance(value, dict) else [v for v in value if isinstance(v, dict)] \
        if isinstance(value, list) else []
    out: dict[str, None] = {}
    for item in items:
        for key in item:
            out.setdefault(key, None)
    return list(out)


def explicit_attrs(kind: str, body: Mapping[str, Any], defaults: Mapping[str, Any]) -> list[str]:
    """The attributes a create sets explicitly (Neutron: present and not the attribute's default)."""
    out = []
    for name, value in body.items():
        if (kind, name) not in NO_DEFAULT and name in defaults and value == defaults[name]:
            continue
        out.append(name)
    return out


_POLICY: Policy | None = None
_POLICY_LOCK = threading.Lock()


def default_policy() -> Policy:
    """The process' policy with the built-in defaults (a Service without its own uses this)."""
    global _POLICY
    with _POLICY_LOCK:
        if _POLICY is None:
            _POLICY = Policy()
        return _POLICY
