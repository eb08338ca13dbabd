"""Pure. IAM documents for Pod Identity roles: the trust policy of a role the broker assumes
(the broker's role as principal, sts:AssumeRole and sts:TagSession, conditions on the session
tags that pin it to a cluster, namespace and ServiceAccount) and the broker role's own policy.

This mirrors EKS, where the principal is the service `pods.eks.amazonaws.com`; here it is the
broker's role, and the same `aws:RequestTag/...` conditions hold because the broker sends the
same tags.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

__all__ = ["association_manifest", "broker_policy", "target_trust_policy"]


def _is_pattern(text: str) -> bool:
    return "*" in text or "?" in text


def target_trust_policy(
    broker_role_arn: str,
    cluster_name: str,
    service_accounts: Sequence[tuple[str, str]],
) -> dict[str, Any]:
    """One statement per namespace:ServiceAccount, so a namespace never gets another's account.

    `*` and `?` in a pair use StringLike for that pair; exact pairs use StringEquals.
    """
    statements = []
    for namespace, name in dict.fromkeys(service_accounts):
        exact: dict[str, str] = {"aws:RequestTag/eks-cluster-name": cluster_name}
        like: dict[str, str] = {}
        for key, value in (
            ("aws:RequestTag/kubernetes-namespace", namespace),
            ("aws:RequestTag/kubernetes-service-account", name),
        ):
            (like if _is_pattern(value) else exact)[key] = value
        condition: dict[str, Any] = {"StringEquals": exact}
        if like:
            condition["StringLike"] = like
        statements.append(
            {
                "Sid": _sid(namespace, name),
                "Effect": "Allow",
                "Principal": {"AWS": broker_role_arn},
                "Action": ["sts:AssumeRole", "sts:TagSession"],
                "Condition": condition,
            }
        )
    return {"Version": "2012-10-17", "Statement": statements}


def _sid(namespace: str, name: str) -> str:
    words = re.split(r"[^A-Za-z0-9]+", f"{namespace}-{name}")
    cleaned = "".join(word[:1].upper() + word[1:] for word in words)
    return f"PodIdentity{cleaned or 'Any'}"[:100]


def broker_policy(role_arns: Sequence[str]) -> dict[str, Any]:
    """The broker role's identity policy: assume (and tag sessions of) these roles only."""
    resources: str | list[str] = role_arns[0] if len(role_arns) == 1 else list(role_arns)
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "AssumeAssociatedRoles",
                "Effect": "Allow",
                "Action": ["sts:AssumeRole", "sts:TagSession"],
                "Resource": resources,
            }
        ],
    }


def association_manifest(namespace: str, name: str, role_arn: str) -> dict[str, Any]:
    return {
        "apiVersion": "podidentity.pod-identity-webhook.io/v1alpha1",
        "kind": "PodIdentityAssociation",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"serviceAccountName": name, "roleArn": role_arn},
    }
