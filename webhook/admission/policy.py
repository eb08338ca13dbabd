"""Pure. The role policy: which roles, accounts, partitions, audiences and token lifetimes the
ServiceAccounts of a namespace may get, and where their STS calls may be redirected
(`stsEndpoints`) and which CA bundles their SDKs may be told to trust (`caBundles`). Upstream
has none: any tenant can point a ServiceAccount at any role (upstream #104), and the IAM trust
policy is the only guard.

A policy is a list of rules. Every rule whose `namespaces` match the Pod's namespace applies,
so adding a rule can only add constraints. A rule in `audit` mode admits the Pod and reports the
violation (warning, audit annotation, metric); in `enforce` mode it denies the Pod with a message
that says which rule and what to change. Pods that get no credentials are never judged.
`defaultAction` decides credentials in a namespace no rule covers: `allow` (the default, so a
policy can be rolled out namespace by namespace), `audit` or `deny`.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import yaml

from webhook.admission.mutation import Decision
from webhook.aws import parse_arn
from webhook.errors import PolicyError

__all__ = ["Judgement", "Policy", "PolicyError", "Violation", "evaluate", "parse_policy"]

Mode = Literal["audit", "enforce"]
_RULE_KEYS = {
    "name",
    "namespaces",
    "mode",
    "roleArns",
    "accounts",
    "partitions",
    "audiences",
    "tokenExpiration",
    "roleSessionNames",
    "stsEndpoints",
    "caBundles",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Rule:
    name: str
    namespaces: tuple[str, ...]
    mode: Mode
    role_arns: tuple[str, ...] | None = None
    accounts: tuple[str, ...] | None = None
    partitions: tuple[str, ...] | None = None
    audiences: tuple[str, ...] | None = None
    min_expiration: int | None = None
    max_expiration: int | None = None
    session_names: tuple[str, ...] | None = None
    """Globs the web-identity session name must match; `fieldRef:metadata.name` names the
    downward-API form."""
    sts_endpoints: tuple[str, ...] | None = None
    """Ours: globs an injected AWS_ENDPOINT_URL_STS must match; () forbids any."""
    ca_bundles: tuple[str, ...] | None = None
    """Ours: globs (`configmap/key`) an injected CA bundle must match; () forbids any."""

    def covers(self, namespace: str) -> bool:
        return any(fnmatch.fnmatchcase(namespace, pattern) for pattern in self.namespaces)


@dataclass(frozen=True, slots=True)
class Policy:
    rules: tuple[Rule, ...] = ()
    default_action: Literal["allow", "audit", "deny"] = "allow"


@dataclass(frozen=True, slots=True)
class Violation:
    rule: str
    mode: Mode
    message: str


@dataclass(frozen=True, slots=True)
class Judgement:
    """The violations one Pod's credentials commit against the rules that cover it."""

    violations: tuple[Violation, ...] = ()

    @property
    def denial(self) -> str | None:
        enforced = [v.message for v in self.violations if v.mode == "enforce"]
        return "; ".join(enforced) if enforced else None

    @property
    def audited(self) -> tuple[Violation, ...]:
        return tuple(v for v in self.violations if v.mode == "audit")


def _strings(rule: Mapping[str, Any], key: str, where: str) -> tuple[str, ...] | None:
    value = rule.get(key)
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise PolicyError(f"{where}.{key} must be a non-empty list of non-empty strings")
    return tuple(value)


def _globs(rule: Mapping[str, Any], key: str, where: str) -> tuple[str, ...] | None:
    """Like `_strings`, but an empty list is allowed: it forbids what the key allows."""
    if rule.get(key) == []:
        return ()
    return _strings(rule, key, where)


def _bound(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise PolicyError(f"{where} must be a whole number of seconds")
    return value


def _rule(raw: Any, index: int, names: set[str]) -> Rule:
    where = f"rules[{index}]"
    if not isinstance(raw, dict):
        raise PolicyError(f"{where} must be a mapping")
    unknown = set(raw) - _RULE_KEYS
    if unknown:
        raise PolicyError(f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))}")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise PolicyError(f"{where}.name must be a non-empty string")
    if name in names:
        raise PolicyError(f"{where}: rule name {name!r} is used twice")
    names.add(name)
    where = f"rule {name!r}"
    namespaces = _strings(raw, "namespaces", where)
    if namespaces is None:
        raise PolicyError(f"{where}.namespaces is required (names or globs such as team-a-*)")
    mode = raw.get("mode", "audit")
    if mode not in ("audit", "enforce"):
        raise PolicyError(f"{where}.mode must be audit or enforce, not {mode!r}")
    expiration = raw.get("tokenExpiration") or {}
    if not isinstance(expiration, dict) or set(expiration) - {"min", "max"}:
        raise PolicyError(f"{where}.tokenExpiration must be a mapping with min and/or max")
    low = _bound(expiration.get("min"), f"{where}.tokenExpiration.min")
    high = _bound(expiration.get("max"), f"{where}.tokenExpiration.max")
    if low is not None and high is not None and low > high:
        raise PolicyError(f"{where}.tokenExpiration: min {low} is above max {high}")
    return Rule(
        name=name,
        namespaces=namespaces,
        mode=mode,
        role_arns=_strings(raw, "roleArns", where),
        accounts=_strings(raw, "accounts", where),
        partitions=_strings(raw, "partitions", where),
        audiences=_strings(raw, "audiences", where),
        min_expiration=low,
        max_expiration=high,
        session_names=_strings(raw, "roleSessionNames", where),
        sts_endpoints=_globs(raw, "stsEndpoints", where),
        ca_bundles=_globs(raw, "caBundles", where),
    )


def parse_policy(text: str) -> Policy:
    """A validated Policy from YAML text; PolicyError names the first problem."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PolicyError(f"not valid YAML: {exc}") from None
    if document is None:
        return Policy()
    if not isinstance(document, dict):
        raise PolicyError("the policy must be a mapping with `rules`")
    unknown = set(document) - {"rules", "defaultAction", "apiVersion", "kind"}
    if unknown:
        raise PolicyError(f"unknown key(s) {', '.join(sorted(map(str, unknown)))}")
    default = document.get("defaultAction", "allow")
    if default not in ("allow", "audit", "deny"):
        raise PolicyError(f"defaultAction must be allow, audit or deny, not {default!r}")
    rules = document.get("rules")
    if rules is None:
        rules = []
    if not isinstance(rules, list):
        raise PolicyError("rules must be a list")
    names: set[str] = set()
    return Policy(tuple(_rule(raw, i, names) for i, raw in enumerate(rules)), default)


def _listing(patterns: Sequence[str]) -> str:
    return ", ".join(patterns)


def _check(rule: Rule, namespace: str, decision: Decision) -> list[str]:
    problems = [problem for role in decision.roles for problem in _check_role(rule, role)]
    audience = decision.audience
    if rule.audiences and not any(fnmatch.fnmatchcase(audience, a) for a in rule.audiences):
        problems.append(
            f"audience {decision.audience!r} is not allowed (allowed: {_listing(rule.audiences)})"
        )
    seconds = decision.token_expiration
    if rule.min_expiration is not None and seconds < rule.min_expiration:
        problems.append(f"token expiration {seconds}s is below the minimum {rule.min_expiration}s")
    if rule.max_expiration is not None and seconds > rule.max_expiration:
        problems.append(f"token expiration {seconds}s is above the maximum {rule.max_expiration}s")
    if rule.session_names and decision.method == "sts_web_identity":
        session = decision.session_name
        if session is None:
            problems.append(
                f"no role session name is set (allowed: {_listing(rule.session_names)})"
            )
        elif not any(fnmatch.fnmatchcase(str(session), p) for p in rule.session_names):
            problems.append(
                f"role session name {str(session)!r} is not allowed "
                f"(allowed: {_listing(rule.session_names)})"
            )
    problems += _endpoint_problems(rule, decision)
    return [
        f"policy rule {rule.name!r} ({rule.mode}) for namespace {namespace}: {problem}; "
        "change the ServiceAccount's annotations or ask for the rule to be extended"
        for problem in problems
    ]


def _check_role(rule: Rule, role: str) -> list[str]:
    problems = []
    arn = parse_arn(role)
    if rule.role_arns and not any(fnmatch.fnmatchcase(role, p) for p in rule.role_arns):
        problems.append(f"role {role} is not allowed (allowed: {_listing(rule.role_arns)})")
    if rule.partitions and (arn is None or arn.partition not in rule.partitions):
        problems.append(f"role {role} is not in an allowed partition ({_listing(rule.partitions)})")
    if rule.accounts and (arn is None or arn.account not in rule.accounts):
        problems.append(f"role {role} is not in an allowed account ({_listing(rule.accounts)})")
    return problems


def _endpoint_problems(rule: Rule, decision: Decision) -> list[str]:
    """Ours: a redirected STS or a trusted CA bundle that the rule does not allow."""
    endpoints = decision.endpoints
    if endpoints is None:
        return []
    problems = []
    allowed = rule.sts_endpoints
    url = endpoints.sts_url
    if allowed is not None and url and not any(fnmatch.fnmatchcase(url, p) for p in allowed):
        problems.append(
            f"STS endpoint {url} is not allowed (allowed: {_listing(allowed) or 'none'})"
        )
    allowed = rule.ca_bundles
    bundle = str(endpoints.ca_bundle) if endpoints.ca_bundle is not None else ""
    if allowed is not None and bundle and not any(fnmatch.fnmatchcase(bundle, p) for p in allowed):
        problems.append(
            f"CA bundle ConfigMap {bundle} is not allowed (allowed: {_listing(allowed) or 'none'})"
        )
    return problems


def evaluate(policy: Policy, namespace: str, decision: Decision) -> Judgement:
    """Judge a decision that hands out credentials; other decisions pass."""
    if decision.method is None:
        return Judgement()
    matching = [rule for rule in policy.rules if rule.covers(namespace)]
    if not matching:
        if policy.default_action == "allow":
            return Judgement()
        mode: Mode = "enforce" if policy.default_action == "deny" else "audit"
        message = (
            f"policy: no rule covers namespace {namespace} and defaultAction is "
            f"{policy.default_action}; ask for a rule that allows its ServiceAccounts' roles"
        )
        return Judgement((Violation("defaultAction", mode, message),))
    return Judgement(
        tuple(
            Violation(rule.name, rule.mode, message)
            for rule in matching
            for message in _check(rule, namespace, decision)
        )
    )
