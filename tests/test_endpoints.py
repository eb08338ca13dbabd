"""A local STS and a CA bundle (issue 17, part 2): the flags' and annotations' grammar, the
precedence, the policy's stsEndpoints and caBundles, and the rules that cannot add them.

The injected Pods themselves are table-driven in tests/scenarios/ours-sts-endpoint-*.yaml and
ours-ca-bundle-*.yaml; the SDK reading the variables is tests/test_endpoints_sdk.py."""

from __future__ import annotations

import jsonpatch
import pytest
import yaml

from tests.support.reviews import role_arn
from webhook.admission.endpoints import (
    CA_BUNDLE_VAR,
    NO_CA_BUNDLE,
    STS_ENDPOINT_VAR,
    EndpointAnnotations,
    Endpoints,
    parse_endpoint_annotations,
    resolve_endpoints,
)
from webhook.admission.entries import parse_service_account
from webhook.admission.mutation import Decision, decide
from webhook.admission.notes import Note
from webhook.admission.policy import PolicyError, evaluate, parse_policy
from webhook.admission.rules import RuleResult, rule_patch
from webhook.admission.wire import Pod
from webhook.config import (
    ConfigMapKey,
    MutationConfig,
    config_from_argv,
    parse_config_map_key,
    parse_endpoint_url,
)
from webhook.errors import ConfigError
from webhook.sources.manifests import StaticSources

PREFIX = "eks.amazonaws.com/"
ROLE = role_arn("ci-tests", account="123456789012")
MOTO = "https://moto.moto.svc:5000"


@pytest.mark.parametrize(
    "url",
    [
        "https://moto.moto.svc:5000",
        "http://localstack:4566",
        "https://sts.us-east-1.amazonaws.com",
        "http://127.0.0.1:5000/",
        "http://[::1]:5000",
        "https://proxy.example/sts/",
    ],
)
def test_endpoint_urls_an_sdk_takes(url):
    assert parse_endpoint_url(url) == url


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("moto:5000", "http:// or https:// URL with a host"),
        ("ftp://moto", "http:// or https:// URL with a host"),
        ("https://", "with a host"),
        ("https://user:password@sts.local", "user information"),
        ("https://token@sts.local", "user information"),
        ("https://sts.local/?X-Amz-Security-Token=x", "query or a fragment"),
        ("https://sts.local/#x", "query or a fragment"),
        ("https://sts.local/?", "query or a fragment"),
        ("https://sts.local:99999", "invalid port"),
        ("https://sts.local:port", "invalid port"),
        ("https://sts .local", "without spaces"),
        ("https://sts.local\n", "without spaces"),
        ("https://" + "a" * 1100, "longer than 1024 characters"),
        ("", "with a host"),
    ],
)
def test_endpoint_urls_refused_with_the_reason(url, message):
    with pytest.raises(ValueError, match=message):
        parse_endpoint_url(url)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ci-ca", ConfigMapKey("ci-ca", "ca.crt")),
        ("kube-root-ca.crt", ConfigMapKey("kube-root-ca.crt", "ca.crt")),
        ("ci-ca/root_CA.pem", ConfigMapKey("ci-ca", "root_CA.pem")),
        ("a/.hidden", ConfigMapKey("a", ".hidden")),
    ],
)
def test_config_map_keys(text, expected):
    assert parse_config_map_key(text) == expected
    assert str(expected) == (text if "/" in text else f"{text}/ca.crt")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("CI-CA", "not a ConfigMap name"),
        ("ci_ca", "not a ConfigMap name"),
        ("-ci", "not a ConfigMap name"),
        ("", "not a ConfigMap name"),
        ("/ca.crt", "not a ConfigMap name"),
        ("a" * 254, "not a ConfigMap name"),
        ("ci-ca/", "not a ConfigMap key"),
        ("ci-ca/a/b", "not a ConfigMap key"),
        ("ci-ca/..data", "not a ConfigMap key"),
        ("ci-ca/..", "not a ConfigMap key"),
        ("ci-ca/.", "'.' is not a ConfigMap key"),
        ("ci-ca/ca crt", "not a ConfigMap key"),
    ],
)
def test_config_map_keys_refused(text, message):
    with pytest.raises(ValueError, match=message):
        parse_config_map_key(text)


def test_flags_reach_the_mutation_config():
    config, _, _ = config_from_argv(
        [f"--sts-endpoint-url={MOTO}", "--ca-bundle-config-map=ci-ca/root.pem"]
    )
    assert config.mutation.sts_endpoint_url == MOTO
    assert config.mutation.ca_bundle == ConfigMapKey("ci-ca", "root.pem")
    default, _, _ = config_from_argv([])
    assert (default.mutation.sts_endpoint_url, default.mutation.ca_bundle) == ("", None)
    empty, _, _ = config_from_argv(["--sts-endpoint-url=", "--ca-bundle-config-map="])
    assert (empty.mutation.sts_endpoint_url, empty.mutation.ca_bundle) == ("", None)


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        ("--sts-endpoint-url=localhost:4566", "--sts-endpoint-url: must be an http://"),
        ("--ca-bundle-config-map=Bad", "--ca-bundle-config-map: 'Bad' is not a ConfigMap name"),
    ],
)
def test_bad_flags_are_refused_at_start_up(flag, message):
    with pytest.raises(ConfigError, match=message):
        config_from_argv([flag])


def test_annotations_absent_cost_nothing():
    notes: list[Note] = []
    assert parse_endpoint_annotations({PREFIX + "role-arn": ROLE}, PREFIX, notes) is None
    assert resolve_endpoints(None, MutationConfig(), notes) is None
    assert notes == []
    entry = parse_service_account({PREFIX + "role-arn": ROLE}, MutationConfig())
    assert entry.endpoints is None


def test_annotations_parse_and_an_empty_one_means_none():
    notes: list[Note] = []
    parsed = parse_endpoint_annotations(
        {PREFIX + "sts-endpoint-url": "", PREFIX + "ca-bundle-config-map": "x/y"}, PREFIX, notes
    )
    assert parsed == EndpointAnnotations("", ConfigMapKey("x", "y"))
    parsed = parse_endpoint_annotations({PREFIX + "ca-bundle-config-map": ""}, PREFIX, notes)
    assert parsed == EndpointAnnotations(None, NO_CA_BUNDLE)
    assert notes == []


def test_a_bad_annotation_is_noted_without_echoing_a_password():
    notes: list[Note] = []
    parsed = parse_endpoint_annotations(
        {PREFIX + "sts-endpoint-url": "https://ci:hunter2@sts.local"}, PREFIX, notes
    )
    assert parsed == EndpointAnnotations(None, None)
    assert [n.code for n in notes] == ["invalid-annotation"]
    assert "hunter2" not in notes[0].message


@pytest.mark.parametrize(
    ("annotated", "expected"),
    [
        (None, Endpoints(sts_url=MOTO, ca_bundle=ConfigMapKey("ci-ca", "ca.crt"))),
        (
            EndpointAnnotations("http://localstack:4566", None),
            Endpoints(
                sts_url="http://localstack:4566",
                ca_bundle=ConfigMapKey("ci-ca", "ca.crt"),
                sts_origin="service-account",
            ),
        ),
        (
            EndpointAnnotations(None, NO_CA_BUNDLE),
            Endpoints(sts_url=MOTO, ca_bundle=None, ca_origin="service-account"),
        ),
        (EndpointAnnotations("", NO_CA_BUNDLE), None),
    ],
)
def test_the_service_account_overrides_the_flags(annotated, expected):
    config = MutationConfig(sts_endpoint_url=MOTO, ca_bundle=ConfigMapKey("ci-ca", "ca.crt"))
    assert resolve_endpoints(annotated, config, []) == expected


def _pod() -> Pod:
    return {"metadata": {"name": "p"}, "spec": {"serviceAccountName": "app", "containers": [{}]}}


def _sources(config: MutationConfig, annotations: dict[str, str]) -> StaticSources:
    sources = StaticSources()
    account = {"name": "app", "namespace": "ci", "annotations": annotations}
    sources.add_service_accounts([{"kind": "ServiceAccount", "metadata": account}], config)
    return sources


def _decide(config: MutationConfig, annotations: dict[str, str]) -> Decision:
    return decide(_pod(), namespace="ci", sources=_sources(config, annotations), config=config)


def test_the_decision_carries_the_endpoints_and_a_second_pass_adds_nothing():
    config = MutationConfig(sts_endpoint_url=MOTO, ca_bundle=ConfigMapKey("ci-ca", "ca.crt"))
    decision = _decide(config, {PREFIX + "role-arn": ROLE})
    assert decision.endpoints == Endpoints(sts_url=MOTO, ca_bundle=ConfigMapKey("ci-ca", "ca.crt"))
    mutated = jsonpatch.apply_patch(_pod(), list(decision.patch))
    env = {v["name"]: v["value"] for v in mutated["spec"]["containers"][0]["env"]}
    assert env[STS_ENDPOINT_VAR] == MOTO
    assert env[CA_BUNDLE_VAR] == "/var/run/secrets/eks.amazonaws.com/ca-bundle/ca-bundle.pem"
    sources = _sources(config, {PREFIX + "role-arn": ROLE})
    assert decide(mutated, namespace="ci", sources=sources, config=config).patch == ()


# --- the policy ---------------------------------------------------------------------------


def decision(**endpoints) -> Decision:
    return Decision(
        namespace="prod",
        name="app",
        entry=None,
        reason="injected",
        method="sts_web_identity",
        role_source="service-account",
        role_arn=ROLE,
        audience="sts.amazonaws.com",
        token_expiration=86400,
        endpoints=Endpoints(**endpoints) if endpoints else None,
    )


def rule(**fields) -> str:
    body = {"name": "r", "namespaces": ["prod*"], "mode": "enforce", **fields}
    return yaml.safe_dump({"rules": [body]})


def test_an_empty_list_forbids_redirecting_sts_in_production():
    policy = parse_policy(rule(stsEndpoints=[]))
    judged = evaluate(policy, "prod-eu", decision(sts_url=MOTO))
    assert judged.denial == (
        f"policy rule 'r' (enforce) for namespace prod-eu: STS endpoint {MOTO} is not allowed "
        "(allowed: none); change the ServiceAccount's annotations or ask for the rule to be "
        "extended"
    )
    assert evaluate(policy, "prod-eu", decision()).violations == ()
    assert evaluate(policy, "ci", decision(sts_url=MOTO)).violations == ()
    # The CA bundle alone is not an STS redirection.
    assert evaluate(policy, "prod", decision(ca_bundle=ConfigMapKey("a", "b"))).violations == ()


def test_globs_allow_some_endpoints_and_bundles():
    policy = parse_policy(
        rule(stsEndpoints=["http://localstack.*:4566"], caBundles=["ci-*/ca.crt"], mode="audit")
    )
    fine = decision(
        sts_url="http://localstack.localstack:4566", ca_bundle=ConfigMapKey("ci-ca", "ca.crt")
    )
    assert evaluate(policy, "prod", fine).violations == ()
    judged = evaluate(
        policy, "prod", decision(sts_url=MOTO, ca_bundle=ConfigMapKey("corp", "ca.crt"))
    )
    assert judged.denial is None
    suffix = "; change the ServiceAccount's annotations or ask for the rule to be extended"
    assert [v.message.split(": ", 1)[1] for v in judged.audited] == [
        f"STS endpoint {MOTO} is not allowed (allowed: http://localstack.*:4566){suffix}",
        f"CA bundle ConfigMap corp/ca.crt is not allowed (allowed: ci-*/ca.crt){suffix}",
    ]


def test_a_rule_without_the_keys_leaves_endpoints_alone():
    policy = parse_policy(rule(accounts=["123456789012"]))
    judged = evaluate(policy, "prod", decision(sts_url=MOTO, ca_bundle=ConfigMapKey("a", "b")))
    assert judged.violations == ()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"stsEndpoints": "https://x"}, None),
        ({"stsEndpoints": [1]}, "stsEndpoints must be a non-empty list"),
        ({"caBundles": [""]}, "caBundles must be a non-empty list"),
        ({"caBundles": {"a": 1}}, "caBundles must be a non-empty list"),
    ],
)
def test_endpoint_rule_keys_are_checked(fields, message):
    if message is None:
        assert parse_policy(rule(**fields)).rules[0].sts_endpoints == ("https://x",)
        return
    with pytest.raises(PolicyError, match=message):
        parse_policy(rule(**fields))


# --- extension rules ----------------------------------------------------------------------


def test_extension_rules_cannot_add_the_endpoint_variables():
    config = MutationConfig()
    built = _decide(config, {PREFIX + "role-arn": ROLE})
    mutated = jsonpatch.apply_patch(_pod(), list(built.patch))
    result = RuleResult(
        env=[
            {"name": STS_ENDPOINT_VAR, "value": "http://evil"},
            {"name": CA_BUNDLE_VAR, "value": "/tmp/ca"},
            {"name": "FINE", "value": "1"},
        ]
    )
    ops, refused = rule_patch(mutated, built, [result])
    added = [op["value"]["name"] for op in ops]
    assert added == ["FINE"]
    assert len(refused) == 2
    assert all("set by the webhook itself" in r for r in refused)
