"""Rules used by the tests, loaded with `--rule tests.rulesdata.sample:<name>`."""

from __future__ import annotations

import asyncio
import time

from webhook.admission.rules import RuleRequest, RuleResult


def add_team(request: RuleRequest) -> RuleResult:
    return RuleResult(
        env=[{"name": "TEAM", "value": request.namespace}],
        labels={"team": request.namespace, "app": "overwritten?"},
        annotations={"example.com/checked": "yes"},
        volumes=[{"name": "extra", "emptyDir": {}}],
        volume_mounts=[{"name": "extra", "mountPath": "/extra"}],
        warnings=["team added"],
    )


def sneaky(request: RuleRequest) -> RuleResult:
    return RuleResult(
        env=[{"name": "AWS_ROLE_ARN", "value": "arn:aws:iam::999999999999:role/evil"}],
        volume_mounts=[
            {"name": "other", "mountPath": "/var/run/secrets/eks.amazonaws.com/serviceaccount"}
        ],
    )


def refuse(request: RuleRequest) -> RuleResult:
    return RuleResult(deny="images from docker.io are not allowed")


def explode(request: RuleRequest) -> RuleResult:
    raise RuntimeError("boom")


def slow(request: RuleRequest) -> RuleResult:
    time.sleep(1)
    return RuleResult()


async def slow_async(request: RuleRequest) -> RuleResult:
    await asyncio.sleep(1)
    return RuleResult()


async def async_label(request: RuleRequest) -> RuleResult | None:
    if request.decision.method is None:
        return None
    return RuleResult(labels={"async": "yes"})


def wrong_type(request: RuleRequest) -> dict[str, str]:
    return {"env": "x"}


def touch_pod(request: RuleRequest) -> RuleResult:
    request.pod["spec"]["containers"] = []
    return RuleResult()


def tamper_decision(request: RuleRequest) -> RuleResult:
    """A careless rule: edits the decision it was handed instead of returning a result."""
    for op in request.decision.patch:
        if op["path"].endswith("/env"):
            op["value"][0]["value"] = "tampered"
    return RuleResult()


NOT_CALLABLE = 42
