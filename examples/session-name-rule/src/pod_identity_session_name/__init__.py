"""An example rule: name each AWS role session after its Pod (upstream issue #112).

With the web-identity credentials, the AWS SDKs read AWS_ROLE_SESSION_NAME and use it as the
STS session name, so CloudTrail shows which Pod made a call. The value comes from the downward
API, so it is the Pod's real name even for Pods created from a generateName.
"""

from __future__ import annotations

from webhook.admission.rules import RuleRequest, RuleResult

__all__ = ["session_name"]


def session_name(request: RuleRequest) -> RuleResult | None:
    """AWS_ROLE_SESSION_NAME for every container that got web-identity credentials."""
    if request.decision.method != "sts_web_identity":
        return None  # container credentials (EKS Pod Identity) name sessions themselves
    return RuleResult(
        env=[
            {
                "name": "AWS_ROLE_SESSION_NAME",
                "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}},
            }
        ]
    )
