"""The `broker`, `agent` and `trust-policy --pod-identity` command lines."""

from __future__ import annotations

import io
import json

import pytest
import yaml

from webhook.agent.config import agent_config, parse_listen
from webhook.broker.config import broker_config
from webhook.cli import run
from webhook.errors import ConfigError

BROKER_ROLE = "arn:aws:iam::111122223333:role/pod-identity-broker"
APP_ROLE = "arn:aws:iam::111122223333:role/team-app"


def call(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = run(list(argv), stdout=out, stderr=err)
    return status, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("command", ["broker", "agent"])
def test_help(command: str) -> None:
    status, out, _ = call(command, "--help")
    assert status == 0
    assert f"pod-identity-webhook {command}" in out
    assert "--cluster-name" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["broker"], "--cluster-name is required"),
        (["broker", "--cluster-name=-x"], "invalid argument"),
        (["broker", "--cluster-name=c", "--session-duration=60"], "900 to 43200"),
        (["broker", "--cluster-name=c", "--refresh-margin=2h"], "shorter than --session-duration"),
        (["broker", "--cluster-name=c", "--agent-service-account=kube-system:*"], "exact"),
        (["broker", "--cluster-name=c", "--sts-qps=0"], "above 0"),
        (["broker", "--cluster-name=c", "extra"], "unexpected argument"),
        (["broker", "--nope"], "unknown flag"),
        (["agent"], "--broker-url is required"),
        (["agent", "--broker-url=http://x"], "over TLS"),
        (["agent", "--broker-url=https://x"], "--cluster-name is required"),
        (
            ["agent", "--broker-url=https://x", "--cluster-name=c", "--listen=localhost:80"],
            "not an IP",
        ),
        (
            ["agent", "--broker-url=https://x", "--cluster-name=c", "--listen=1.2.3.4"],
            "ADDRESS:PORT",
        ),
        (
            ["agent", "--broker-url=https://x", "--cluster-name=c", "--log-format=xml"],
            "json or console",
        ),
    ],
)
def test_bad_command_lines_exit_2_with_one_line(argv: list[str], message: str) -> None:
    status, _, err = call(*argv)
    assert status == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1


def test_broker_defaults() -> None:
    config, wants_help = broker_config(["--cluster-name=prod"])
    assert not wants_help
    assert config.require_agent_token is True
    assert config.agent_service_accounts == (("kube-system", "pod-identity-agent"),)
    assert (config.session_duration, config.refresh_margin) == (3600, 1500.0)
    with pytest.raises(ConfigError):
        broker_config(["--cluster-name=prod", "--tls-min-version=9"])


def test_agent_defaults() -> None:
    config, _ = agent_config(["--broker-url=https://broker/", "--cluster-name=prod"])
    assert config.broker_url == "https://broker"
    assert [str(x) for x in config.listen] == ["169.254.170.23:80", "[fd00:ec2::23]:80"]
    assert (config.health_port, config.metrics_port) == (19703, 19705)
    assert config.setup_link is True
    assert str(parse_listen("[FD00:EC2::23]:8080")) == "[fd00:ec2::23]:8080"


def test_trust_policy_pod_identity_form() -> None:
    status, out, err = call(
        "trust-policy",
        "--pod-identity",
        f"--broker-role-arn={BROKER_ROLE}",
        "--cluster-name=prod",
        "--service-account=team-a:app",
        "--service-account=team-b:*",
        f"--role-arn={APP_ROLE}",
    )
    assert status == 0, err
    trust, broker, association = out.split("---\n")
    statements = json.loads(trust)["Statement"]
    assert statements[0] == {
        "Sid": "PodIdentityTeamAApp",
        "Effect": "Allow",
        "Principal": {"AWS": BROKER_ROLE},
        "Action": ["sts:AssumeRole", "sts:TagSession"],
        "Condition": {
            "StringEquals": {
                "aws:RequestTag/eks-cluster-name": "prod",
                "aws:RequestTag/kubernetes-namespace": "team-a",
                "aws:RequestTag/kubernetes-service-account": "app",
            }
        },
    }
    assert statements[1]["Condition"]["StringLike"] == {
        "aws:RequestTag/kubernetes-service-account": "*"
    }
    assert json.loads(broker)["Statement"][0]["Resource"] == APP_ROLE
    manifest = yaml.safe_load(association)
    assert manifest["metadata"] == {"name": "app", "namespace": "team-a"}
    assert manifest["spec"] == {"serviceAccountName": "app", "roleArn": APP_ROLE}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "--broker-role-arn, --cluster-name, --service-account required"),
        (["-o", "broker-policy"], "--role-arn required"),
        (["--broker-role-arn=nope"], "IAM role ARN"),
        (["-o", "x"], "must be policy"),
        (["stray"], "unexpected argument"),
    ],
)
def test_trust_policy_pod_identity_errors(argv: list[str], message: str) -> None:
    status, _, err = call("trust-policy", "--pod-identity", *argv)
    assert status == 2
    assert message in err


def test_trust_policy_pod_identity_help() -> None:
    status, out, _ = call("trust-policy", "--pod-identity", "--help")
    assert status == 0
    assert "sts:TagSession" in out
