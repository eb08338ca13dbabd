"""Pure. What the broker sends STS for one Pod: EKS's six session tags (same keys, so ABAC
policies written for EKS work unchanged), all transitive as EKS makes them, a session name
that stays the same for the Pod's whole life, and the key its credentials are cached under.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from webhook.podidentity.associations import Association

__all__ = [
    "TAG_KEYS",
    "CacheKey",
    "PodIdentity",
    "association_arn",
    "cluster_arn",
    "needs_refresh",
    "session_name",
    "session_tags",
]

TAG_KEYS = (
    "eks-cluster-arn",
    "eks-cluster-name",
    "kubernetes-namespace",
    "kubernetes-service-account",
    "kubernetes-pod-name",
    "kubernetes-pod-uid",
)
MAX_SESSION_NAME = 64


@dataclass(frozen=True, slots=True)
class PodIdentity:
    """Who a validated token belongs to (from the TokenReview and the Pod)."""

    namespace: str
    service_account: str
    pod_name: str
    pod_uid: str
    node_name: str = ""


def cluster_arn(partition: str, region: str, account: str, cluster: str) -> str:
    return f"arn:{partition}:eks:{region}:{account}:cluster/{cluster}"


def association_arn(cluster_arn_text: str, cluster: str, association: Association) -> str:
    """EKS's shape, `arn:...:eks:<region>:<account>:podidentityassociation/<cluster>/<id>`."""
    prefix = cluster_arn_text.split(":cluster/", 1)[0]
    return f"{prefix}:podidentityassociation/{cluster}/{association.association_id}"


def session_tags(cluster: str, cluster_arn_text: str, pod: PodIdentity) -> list[dict[str, str]]:
    values = (
        cluster_arn_text,
        cluster,
        pod.namespace,
        pod.service_account,
        pod.pod_name,
        pod.pod_uid,
    )
    return [{"Key": key, "Value": value} for key, value in zip(TAG_KEYS, values, strict=True)]


def session_name(cluster: str, pod: PodIdentity) -> str:
    """`eks-<cluster[:10]>-<pod[:10]>-<pod UID>`: EKS's shape, with the Pod's UID where EKS puts
    a random UUID, so the name stays the same across refreshes (services such as MSK drop a
    connection whose session name changes)."""
    name = f"eks-{cluster[:10]}-{pod.pod_name[:10]}-{pod.pod_uid}"
    cleaned = "".join(c if c.isalnum() or c in "+=,.@-_" else "-" for c in name)
    return cleaned[:MAX_SESSION_NAME]


@dataclass(frozen=True, slots=True)
class CacheKey:
    """One Pod's credentials for one association as it is now; any change of the association
    (role, chaining, external ID, tags, session policy) is a new key."""

    pod_uid: str
    role_arn: str
    target_role_arn: str
    external_id: str
    tags: bool
    policy_digest: str

    @classmethod
    def of(cls, pod: PodIdentity, association: Association) -> CacheKey:
        digest = hashlib.sha256(association.session_policy.encode()).hexdigest()[:16]
        return cls(
            pod.pod_uid,
            association.role_arn,
            association.target_role_arn,
            association.external_id,
            not association.disable_session_tags,
            digest if association.session_policy else "",
        )


def needs_refresh(expiration: float, now: float, margin: float) -> bool:
    """Whether credentials expiring at `expiration` are too close to it to hand out."""
    return expiration - now <= margin
