"""The `trust-policy` command: a role's trust policy and its ServiceAccount, as text."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.cli.helpers import one_line, run
from tests.support.irsa import HOST_PATH, PROVIDER_ARN
from tests.support.reviews import ACCOUNT, ROLE
from webhook.cli.trust_policy import trust_policy_command
from webhook.irsa.trustpolicy import OidcProvider, trust_policy

PROVIDER = OidcProvider("aws", ACCOUNT, HOST_PATH)


def test_trust_policy_command_prints_policy_then_service_accounts():
    status, out, err = run(
        trust_policy_command,
        f"--provider={PROVIDER_ARN}",
        "--service-account=default:app",
        "--service-account=batch:worker",
        f"--role-arn={ROLE}",
    )
    assert (status, err) == (0, "")
    documents = list(yaml.safe_load_all(out))
    assert documents[0] == trust_policy(PROVIDER, [("default", "app"), ("batch", "worker")])
    assert out.startswith("{\n")
    json.loads(out.split("---\n")[0])  # the first document is plain JSON for aws iam
    assert [d["metadata"]["name"] for d in documents[1:]] == ["app", "worker"]
    for document in documents[1:]:
        assert document["kind"] == "ServiceAccount"
        assert document["metadata"]["annotations"] == {"eks.amazonaws.com/role-arn": ROLE}


def test_trust_policy_command_policy_only_from_host_and_account():
    status, out, _ = run(
        trust_policy_command,
        "--provider",
        HOST_PATH,
        "--account-id",
        ACCOUNT,
        "--service-account",
        "default:app",
        "-o",
        "policy",
    )
    assert status == 0
    assert json.loads(out) == trust_policy(PROVIDER, [("default", "app")])


def test_trust_policy_command_service_account_only_with_custom_audience_and_prefix():
    status, out, _ = run(
        trust_policy_command,
        f"--provider={PROVIDER_ARN}",
        "--service-account=default:app",
        f"--role-arn={ROLE}",
        "--audience=beta-sts.amazonaws.com",
        "--annotation-prefix=irsa.example.com",
        "-oservice-account",
    )
    assert status == 0
    (manifest,) = yaml.safe_load_all(out)
    assert manifest["metadata"]["annotations"] == {
        "irsa.example.com/role-arn": ROLE,
        "irsa.example.com/audience": "beta-sts.amazonaws.com",
    }


def test_trust_policy_command_without_role_arn_uses_a_placeholder():
    status, out, _ = run(
        trust_policy_command, f"--provider={PROVIDER_ARN}", "--service-account=default:app"
    )
    assert status == 0
    manifest = list(yaml.safe_load_all(out))[1]
    assert manifest["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == (
        f"arn:aws:iam::{ACCOUNT}:role/ROLE_NAME"
    )
    assert "# Replace ROLE_NAME" in out


def test_trust_policy_command_wildcards_give_no_manifest_and_a_warning():
    status, out, err = run(
        trust_policy_command,
        f"--provider={PROVIDER_ARN}",
        "--service-account=team-a:*",
        "--service-account=*:*",
    )
    assert status == 0
    (policy,) = yaml.safe_load_all(out)
    assert "StringLike" in policy["Statement"][0]["Condition"]
    assert "every ServiceAccount" in err
    assert "no ServiceAccount manifest" in err


def test_trust_policy_command_warns_when_role_and_provider_accounts_differ():
    status, _, err = run(
        trust_policy_command,
        f"--provider={PROVIDER_ARN}",
        "--service-account=default:app",
        "--role-arn=arn:aws:iam::999999999999:role/x",
    )
    assert status == 0
    assert "different accounts" in err


def test_trust_policy_help():
    status, out, _ = run(trust_policy_command, "--help")
    assert status == 0
    assert "StringLike" in out
    assert "--service-account" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--service-account=default:app"], "--provider is required"),
        ([f"--provider={PROVIDER_ARN}"], "--service-account NAMESPACE:NAME is required"),
        ([f"--provider={HOST_PATH}", "--service-account=a:b"], "--account-id is required"),
        (["--provider=http://h", "--account-id=111122223333", "--service-account=a:b"], "https"),
        ([f"--provider={PROVIDER_ARN}", "--service-account=bad"], "namespace:serviceaccount"),
        ([f"--provider={PROVIDER_ARN}", "--service-account=a:b", "--account-id=1"], "12-digit"),
        ([f"--provider={PROVIDER_ARN}", "--service-account=a:b", "--partition=x"], "partition"),
        (
            [f"--provider={PROVIDER_ARN}", "--service-account=a:b", "--partition=aws-cn"],
            "differs from the provider ARN's partition",
        ),
        ([f"--provider={PROVIDER_ARN}", "--service-account=a:b", "--role-arn=x"], "role ARN"),
        ([f"--provider={PROVIDER_ARN}", "--service-account=a:b", "-o", "yaml"], "must be policy"),
        ([f"--provider={PROVIDER_ARN}", "--service-account=a:b", "--audience="], "audience"),
        (
            [f"--provider={PROVIDER_ARN}", "--service-account=a:b", "--annotation-prefix=A/B"],
            "DNS subdomain",
        ),
        (
            [f"--provider={PROVIDER_ARN}", "--service-account=a:*", "-o", "service-account"],
            "exact namespace:name",
        ),
        ([f"--provider={PROVIDER_ARN}", "--service-account=a:b", "--bogus"], "unknown flag"),
        ([f"--provider={PROVIDER_ARN}", "--service-account=a:b", "extra"], "unexpected argument"),
    ],
)
def test_trust_policy_command_line_errors_exit_2(argv, message):
    status, out, err = run(trust_policy_command, *argv)
    assert status == 2
    assert out == ""
    assert message in one_line(err)
    assert err.startswith("pod-identity-webhook trust-policy: ")
