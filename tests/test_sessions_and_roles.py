"""Session names, a container's own role and the require-credentials label (issue 16, items 2,
4 and 5): the grammar, the precedence, what the policy judges, and what `mutate` explains."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, cast

import pytest
import yaml

from tests.support.reviews import role_arn
from webhook.admission.entries import parse_service_account
from webhook.admission.mutation import Decision, decide
from webhook.admission.policy import PolicyError, evaluate, parse_policy
from webhook.admission.verdicts import answer, verdict, warnings_for
from webhook.admission.wire import Pod
from webhook.aws import SessionName, parse_session_name
from webhook.cli import run
from webhook.config import MutationConfig, config_from_argv
from webhook.errors import ConfigError
from webhook.sources.manifests import StaticSources

ROLE = role_arn("app")
SHIPPER = role_arn("log-shipper")
PREFIX = "eks.amazonaws.com"


def sources(annotations: dict[str, str] | None = None, *, config: MutationConfig) -> StaticSources:
    found = StaticSources()
    given = {f"{PREFIX}/role-arn": ROLE} if annotations is None else annotations
    found.service_accounts["team-a/app"] = parse_service_account(given, config)
    return found


def pod(*containers: str, annotations=None, labels=None, name: str | None = "app") -> Pod:
    metadata: dict[str, Any] = {"annotations": annotations or {}, "labels": labels or {}}
    if name is not None:
        metadata["name"] = name
    return cast(
        "Pod",
        {
            "metadata": metadata,
            "spec": {
                "serviceAccountName": "app",
                "containers": [{"name": c, "image": "x"} for c in containers or ("app",)],
            },
        },
    )


def run_decide(the_pod: Pod, *, config: MutationConfig | None = None, annotations=None) -> Decision:
    config = config or MutationConfig()
    return decide(
        the_pod, namespace="team-a", sources=sources(annotations, config=config), config=config
    )


def env_of(decision: Decision, container: int = 0) -> list[dict[str, Any]]:
    for op in decision.patch:
        if op["path"] == f"/spec/containers/{container}/env":
            return list(op["value"])
    return []


# --- the session-name grammar ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ci", SessionName("ci")),
        ("team-a.app@batch_1+x=y,z", SessionName("team-a.app@batch_1+x=y,z")),
        ("a" * 64, SessionName("a" * 64)),
        ("fieldRef:metadata.name", SessionName("metadata.name", field=True)),
        ("fieldRef:metadata.uid", SessionName("metadata.uid", field=True)),
        ("", None),
    ],
)
def test_session_names_that_sts_accepts(text, expected):
    assert parse_session_name(text) == expected
    if expected is not None:
        assert str(expected) == text


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("a", "2 to 64"),
        ("a" * 65, "2 to 64"),
        ("has space", "2 to 64"),
        ("slash/name", "2 to 64"),
        ("ünïcode", "2 to 64"),
        ("fieldRef:spec.nodeName", "not one of the Pod fields"),
        ("fieldRef:", "not one of the Pod fields"),
        ("fieldref:metadata.name", "2 to 64"),
    ],
)
def test_session_names_that_sts_would_refuse_are_errors(text, why):
    with pytest.raises(ValueError, match=why):
        parse_session_name(text)


def test_the_flag_is_validated_at_start_up():
    config, _, _ = config_from_argv(["--role-session-name=fieldRef:metadata.name"])
    assert config.mutation.session_name == SessionName("metadata.name", field=True)
    assert config_from_argv([])[0].mutation.session_name is None
    with pytest.raises(ConfigError, match="role-session-name"):
        config_from_argv(["--role-session-name=no spaces please"])


# --- precedence and add-only ----------------------------------------------------------------


def test_without_any_session_name_nothing_changes():
    decision = run_decide(pod())
    assert decision.session_name is None
    assert [v["name"] for v in env_of(decision)] == ["AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"]
    assert "role-session-name" not in answer(decision).audit


def test_pod_annotation_beats_service_account_beats_flag():
    config = MutationConfig(session_name=SessionName("flag"))
    sa = {f"{PREFIX}/role-arn": ROLE, f"{PREFIX}/role-session-name": "from-sa"}
    assert run_decide(pod(), config=config).session_name == SessionName("flag")
    assert run_decide(pod(), config=config, annotations=sa).session_name == SessionName("from-sa")
    annotated = pod(annotations={f"{PREFIX}/role-session-name": "from-pod"})
    decided = run_decide(annotated, config=config, annotations=sa)
    assert decided.session_name == SessionName("from-pod")
    assert env_of(decided)[-1] == {"name": "AWS_ROLE_SESSION_NAME", "value": "from-pod"}
    assert answer(decided).audit["role-session-name"] == "from-pod"


def test_an_empty_annotation_turns_the_default_off():
    config = MutationConfig(session_name=SessionName("flag"))
    off = pod(annotations={f"{PREFIX}/role-session-name": ""})
    assert run_decide(off, config=config).session_name is None
    sa_off = {f"{PREFIX}/role-arn": ROLE, f"{PREFIX}/role-session-name": ""}
    assert run_decide(pod(), config=config, annotations=sa_off).session_name is None


def test_an_invalid_annotation_is_reported_and_the_next_source_applies():
    config = MutationConfig(session_name=SessionName("flag"))
    bad_pod = pod(annotations={f"{PREFIX}/role-session-name": "x"})
    decided = run_decide(bad_pod, config=config)
    assert decided.session_name == SessionName("flag")
    assert any("role-session-name" in w for w in warnings_for(decided))
    bad_sa = {f"{PREFIX}/role-arn": ROLE, f"{PREFIX}/role-session-name": "a b"}
    entry = parse_service_account(bad_sa, config)
    assert entry.session_name is None
    assert [n.code for n in entry.notes] == ["invalid-annotation"]
    assert run_decide(pod(), config=config, annotations=bad_sa).session_name == SessionName("flag")


def test_the_pod_name_through_the_downward_api():
    config = MutationConfig(session_name=SessionName("metadata.name", field=True))
    decided = run_decide(pod(name=None), config=config)  # generateName: no name yet
    assert env_of(decided)[-1] == {
        "name": "AWS_ROLE_SESSION_NAME",
        "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}},
    }
    assert answer(decided).audit["role-session-name"] == "fieldRef:metadata.name"


def test_a_pod_name_sts_would_refuse_gets_no_session_name_and_a_warning():
    config = MutationConfig(session_name=SessionName("metadata.name", field=True))
    decided = run_decide(pod(name="p" * 65), config=config)
    assert decided.session_name is None
    assert [v["name"] for v in env_of(decided)] == ["AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"]
    assert any("at most 64" in w for w in warnings_for(decided))
    assert run_decide(pod(name="p" * 64), config=config).session_name is not None


# --- a container's own role -----------------------------------------------------------------


def test_a_container_gets_its_own_role_with_the_same_token_and_it_is_explained():
    annotated = pod(
        "app", "log-shipper", annotations={f"{PREFIX}/container-role-arn.log-shipper": SHIPPER}
    )
    decided = run_decide(annotated)
    assert env_of(decided, 0)[0] == {"name": "AWS_ROLE_ARN", "value": ROLE}
    assert env_of(decided, 1)[0] == {"name": "AWS_ROLE_ARN", "value": SHIPPER}
    assert env_of(decided, 0)[1] == env_of(decided, 1)[1]  # the one token file
    volumes = [op for op in decided.patch if op["path"] == "/spec/volumes"]
    assert len(volumes) == 1
    assert decided.container_roles == (("log-shipper", SHIPPER),)
    assert decided.roles == (ROLE, SHIPPER)
    reply = answer(decided)
    assert reply.audit["container-roles"] == f"log-shipper={SHIPPER}"
    assert any("container log-shipper gets its own role" in w for w in reply.warnings)


def test_container_roles_are_composed_and_checked_like_the_service_account_role():
    config = MutationConfig(compose_role_arn=True, account_id="111122223333")
    decided = run_decide(
        pod("app", annotations={f"{PREFIX}/container-role-arn.app": "team/reader"}), config=config
    )
    assert decided.container_roles == (("app", "arn:aws:iam::111122223333:role/team/reader"),)
    odd = run_decide(pod("app", annotations={f"{PREFIX}/container-role-arn.app": "arn:nope"}))
    assert [n.code for n in odd.notes if n.code == "invalid-role-arn"] == ["invalid-role-arn"]
    assert odd.container_roles == (("app", "arn:nope"),)  # reported, still injected (as upstream)


@pytest.mark.parametrize(
    "annotations",
    [
        {f"{PREFIX}/container-role-arn.": SHIPPER},
        {f"{PREFIX}/container-role-arn.app": ""},
        {f"{PREFIX}/container-role-arn.absent": SHIPPER},
    ],
)
def test_unusable_container_role_annotations_are_reported_and_ignored(annotations):
    decided = run_decide(pod("app", annotations=annotations))
    assert decided.container_roles == ()
    assert env_of(decided)[0] == {"name": "AWS_ROLE_ARN", "value": ROLE}
    assert any("container-role-arn" in w for w in warnings_for(decided))


def test_container_roles_do_not_apply_to_container_credentials():
    config = MutationConfig()
    found = sources(config=config)
    found.identities = frozenset({("team-a", "app")})
    decided = decide(
        pod("app", annotations={f"{PREFIX}/container-role-arn.app": SHIPPER}),
        namespace="team-a",
        sources=found,
        config=config,
    )
    assert decided.method == "container_credentials"
    assert decided.container_roles == ()
    assert any("web-identity roles only" in w for w in warnings_for(decided))


# --- the policy judges every role and the session name --------------------------------------


def policy(**fields) -> str:
    body = {"name": "r", "namespaces": ["team-a"], "mode": "enforce", **fields}
    return yaml.safe_dump({"rules": [body]})


def test_the_policy_judges_every_role_of_the_pod():
    rules = parse_policy(policy(roleArns=[ROLE]))
    plain = run_decide(pod("app", "log-shipper"))
    assert evaluate(rules, "team-a", plain).violations == ()
    two = run_decide(
        pod("app", "log-shipper", annotations={f"{PREFIX}/container-role-arn.log-shipper": SHIPPER})
    )
    denial = evaluate(rules, "team-a", two).denial
    assert denial is not None
    assert f"role {SHIPPER} is not allowed" in denial


def test_the_policy_can_require_a_session_name_pattern():
    rules = parse_policy(policy(roleSessionNames=["team-a-*", "fieldRef:metadata.name"]))
    missing = evaluate(rules, "team-a", run_decide(pod())).denial
    assert missing is not None
    assert "no role session name is set" in missing
    named = pod(annotations={f"{PREFIX}/role-session-name": "team-a-batch"})
    assert evaluate(rules, "team-a", run_decide(named)).violations == ()
    other = pod(annotations={f"{PREFIX}/role-session-name": "team-b-batch"})
    wrong = evaluate(rules, "team-a", run_decide(other)).denial
    assert wrong is not None
    assert "role session name 'team-b-batch' is not allowed" in wrong
    downward = pod(annotations={f"{PREFIX}/role-session-name": "fieldRef:metadata.name"})
    assert evaluate(rules, "team-a", run_decide(downward)).violations == ()


def test_session_name_rules_are_validated():
    with pytest.raises(PolicyError, match="roleSessionNames"):
        parse_policy(policy(roleSessionNames=[""]))


# --- eks.amazonaws.com/require-credentials --------------------------------------------------


REQUIRED = {"eks.amazonaws.com/require-credentials": "true"}


def test_a_pod_that_requires_credentials_and_would_get_none_is_denied():
    decided = run_decide(pod(labels=REQUIRED), annotations={})
    assert verdict(decided).outcome == "denied"
    assert verdict(decided).reason == "credentials-required"
    reply = answer(decided)
    assert reply.ops == ()
    assert reply.denial is not None
    assert "ServiceAccount team-a/app has no role" in reply.denial


def test_a_missing_service_account_is_named_in_the_denial():
    config = MutationConfig()
    decided = decide(
        pod(labels=REQUIRED), namespace="team-a", sources=StaticSources(), config=config
    )
    denial = answer(decided).denial
    assert denial is not None
    assert "was not found" in denial


@pytest.mark.parametrize("labels", [REQUIRED, {"eks.amazonaws.com/require-credentials": "no"}])
def test_the_label_changes_nothing_for_pods_that_get_credentials_or_do_not_opt_in(labels):
    with_role = run_decide(pod(labels=labels))
    assert verdict(with_role).outcome == "mutated"
    assert answer(with_role).denial is None
    without = run_decide(pod(labels={**labels, "x": "y"}), annotations={})
    if labels == REQUIRED:
        assert answer(without).denial is not None
    else:
        assert verdict(without).outcome == "not_mutated"


# --- what `mutate -v` says ------------------------------------------------------------------


def test_mutate_explains_container_roles_and_session_names(tmp_path: Path):
    (tmp_path / "sa.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {
                    "name": "app",
                    "namespace": "team-a",
                    "annotations": {f"{PREFIX}/role-arn": ROLE},
                },
            }
        )
    )
    the_pod = pod(
        "app", "log-shipper", annotations={f"{PREFIX}/container-role-arn.log-shipper": SHIPPER}
    )
    the_pod["metadata"]["namespace"] = "team-a"
    (tmp_path / "pod.yaml").write_text(yaml.safe_dump(the_pod))
    out, err = io.StringIO(), io.StringIO()
    status = run(
        [
            "mutate",
            "-f",
            str(tmp_path / "pod.yaml"),
            "--service-accounts",
            str(tmp_path / "sa.yaml"),
            "--role-session-name=fieldRef:metadata.name",
            "-v",
            "-o",
            "patch",
        ],
        stdout=out,
        stderr=err,
    )
    assert status == 0, err.getvalue()
    lines = err.getvalue().splitlines()
    assert f"role: {ROLE} from service-account" in lines
    assert f"role: {SHIPPER} for container log-shipper from its container-role-arn" in lines
    assert "session name: fieldRef:metadata.name" in lines
    assert any(line.startswith("note[container-role]: container log-shipper") for line in lines)


def test_mutate_fails_on_a_denied_required_pod(tmp_path: Path):
    the_pod = pod(labels=REQUIRED)
    the_pod["metadata"]["namespace"] = "team-a"
    (tmp_path / "pod.yaml").write_text(yaml.safe_dump(the_pod))
    out, err = io.StringIO(), io.StringIO()
    status = run(
        ["mutate", "-f", str(tmp_path / "pod.yaml"), "--fail-on-deny", "-o", "patch"],
        stdout=out,
        stderr=err,
    )
    assert status == 3
    assert "requires AWS credentials" in err.getvalue()
    assert out.getvalue().strip() == "[]"


def test_the_readme_shows_the_denial_a_required_pod_gets():
    from tests.test_docs import README, block_containing

    shown = block_containing(README.read_text(encoding="utf-8"), "denied the request: the Pod")
    the_pod = pod(labels=REQUIRED)
    the_pod["spec"]["serviceAccountName"] = "default"
    config = MutationConfig()
    found = StaticSources()
    found.service_accounts["team-a/default"] = parse_service_account({}, config)
    decided = decide(the_pod, namespace="team-a", sources=found, config=config)
    assert shown.rstrip().endswith(f"denied the request: {answer(decided).denial}")
