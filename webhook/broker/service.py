"""What the broker does for one AssumeRoleForPodIdentity request, behind the HTTP edge.

    caller check → TokenReview of the Pod's token → the Pod, live → node check → association
    → role policy → cache (by Pod UID and association) → one STS call per key at a time,
    under the rate bound → the EKS Auth answer

The Kubernetes and STS edges are injected, so the unit tests drive this with fakes and the
integration tiers with the real API server and moto's STS.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from webhook.admission.mutation import Decision
from webhook.admission.policy import Policy, evaluate
from webhook.broker.sts import AssumeCall, Assumed, TokenBucket
from webhook.errors import (
    AccessDeniedException,
    EksAuthError,
    InvalidTokenException,
    ResourceNotFoundException,
    ServiceUnavailableException,
)
from webhook.podidentity.associations import Association, AssociationIndex
from webhook.podidentity.session import (
    TAG_KEYS,
    CacheKey,
    PodIdentity,
    association_arn,
    needs_refresh,
    session_name,
    session_tags,
)
from webhook.podidentity.tokens import reviewed_identity, unverified_claims
from webhook.podidentity.wire import AssumedRole, AssumeRequest

__all__ = ["Broker", "KubeCalls", "StsCalls"]

log = structlog.get_logger("webhook.broker")

CHAINED_MAX_DURATION = 3600  # STS caps a role-chained session at one hour
CALLER_REVIEW_TTL = 60.0  # an agent's token is reviewed at most once a minute


class KubeCalls(Protocol):
    async def review(self, token: str, audiences: Iterable[str]) -> dict[str, Any]: ...

    async def pod(self, namespace: str, name: str) -> dict[str, Any] | None: ...


class StsCalls(Protocol):
    async def assume(self, calls: list[AssumeCall]) -> Assumed: ...


@dataclass(frozen=True, slots=True)
class Settings:
    cluster_name: str
    cluster_arn: str
    audience: str
    agent_audience: str
    agent_service_accounts: frozenset[tuple[str, str]]
    require_agent_token: bool
    session_duration: int
    refresh_margin: float


@dataclass(slots=True)
class Outcome:
    """How one request went, for metrics and the status writer."""

    source: str = ""  # cache, sts, shared
    association: Association | None = None
    violations: list[tuple[str, str]] = field(default_factory=list)


class Broker:
    def __init__(
        self,
        settings: Settings,
        index: AssociationIndex,
        kube: KubeCalls,
        sts: StsCalls,
        bucket: TokenBucket,
        *,
        policy: Callable[[], Policy | None] = lambda: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.index = index
        self._kube, self._sts, self._bucket = kube, sts, bucket
        self._policy, self._clock = policy, clock
        self._cache: dict[CacheKey, Assumed] = {}
        self._in_flight: dict[CacheKey, asyncio.Future[Assumed]] = {}
        self._callers: dict[str, tuple[float, str]] = {}  # token digest → (checked at, node)

    @property
    def cache_size(self) -> int:
        return len(self._cache)

    # -- the caller ---------------------------------------------------------------------------

    async def caller_node(self, authorization: str) -> str | None:
        """The node of the calling agent (None when callers are not checked)."""
        if not self.settings.require_agent_token:
            return None
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AccessDeniedException(
                "the caller must authenticate with its node agent's token "
                "(Authorization: Bearer <token>); AWS's agent needs --require-agent-token=false"
            )
        token = token.strip()
        digest = hashlib.sha256(token.encode()).hexdigest()
        now = time.monotonic()
        seen = self._callers.get(digest)
        if seen is not None and now - seen[0] < CALLER_REVIEW_TTL:
            return seen[1]
        status = await self._kube.review(token, [self.settings.agent_audience])
        try:
            caller = reviewed_identity(status, self.settings.agent_audience)
        except EksAuthError as exc:
            raise AccessDeniedException(f"the caller's token was refused: {exc.message}") from None
        if (caller.namespace, caller.service_account) not in self.settings.agent_service_accounts:
            raise AccessDeniedException(
                f"ServiceAccount {caller.namespace}/{caller.service_account} is not a node agent"
            )
        node = caller.node_name
        if not node:  # a cluster whose tokens carry no node claim: ask the agent's Pod
            pod = await self._kube.pod(caller.namespace, caller.pod_name)
            node = _node_of(pod, caller.pod_uid) or ""
        if not node:
            raise AccessDeniedException("the caller's Pod is not on a node")
        if len(self._callers) > 10_000:
            self._callers.clear()
        self._callers[digest] = (now, node)
        return node

    # -- the Pod ------------------------------------------------------------------------------

    async def pod_identity(self, token: str, node: str | None, said_node: str) -> PodIdentity:
        """The Pod the token belongs to, alive, with the same UID, on the caller's node."""
        status = await self._kube.review(token, [self.settings.audience])
        identity = reviewed_identity(status, self.settings.audience)
        pod = await self._kube.pod(identity.namespace, identity.pod_name)
        if pod is None:
            raise InvalidTokenException(
                f"Pod {identity.namespace}/{identity.pod_name} no longer exists"
            )
        pod_node = _node_of(pod, identity.pod_uid)
        if pod_node is None:
            raise InvalidTokenException(
                f"Pod {identity.namespace}/{identity.pod_name} was replaced (its UID changed)"
            )
        spec = pod.get("spec")
        account = (spec.get("serviceAccountName") if isinstance(spec, dict) else "") or "default"
        if account != identity.service_account:
            raise InvalidTokenException("the token's ServiceAccount is not the Pod's")
        if node is not None and pod_node != node:
            raise AccessDeniedException(
                f"Pod {identity.namespace}/{identity.pod_name} does not run on the caller's node"
            )
        if said_node and pod_node != said_node:
            raise AccessDeniedException(
                f"Pod {identity.namespace}/{identity.pod_name} does not run on node {said_node}"
            )
        return PodIdentity(
            identity.namespace,
            identity.service_account,
            identity.pod_name,
            identity.pod_uid,
            pod_node,
        )

    # -- the association and the policy -------------------------------------------------------

    def association_for(self, pod: PodIdentity) -> Association:
        association = self.index.get(pod.namespace, pod.service_account)
        if association is None:
            raise ResourceNotFoundException(
                f"no PodIdentityAssociation for ServiceAccount {pod.namespace}/"
                f"{pod.service_account}"
            )
        return association

    def judge(
        self, pod: PodIdentity, association: Association, token: str
    ) -> list[tuple[str, str]]:
        """The role policy, as the webhook applies it to annotations: enforce denies, audit
        reports. Both the role and the chained target role are judged."""
        policy = self._policy()
        if policy is None:
            return []
        claims = unverified_claims(token)  # validated by the API server a moment ago
        lifetime = claims.get("exp", 0) - claims.get("iat", 0)
        denials: list[tuple[tuple[str, str], str]] = []
        audited: list[tuple[tuple[str, str], str]] = []
        for role in filter(None, (association.role_arn, association.target_role_arn)):
            decision = Decision(
                namespace=pod.namespace,
                name=pod.service_account,
                entry=None,
                reason="injected",
                method="container_credentials",
                role_source="pod-identity-association",
                role_arn=role,
                audience=self.settings.audience,
                token_expiration=lifetime if isinstance(lifetime, int) else 0,
            )
            for violation in evaluate(policy, pod.namespace, decision).violations:
                pair = (violation.rule, violation.mode)
                (denials if violation.mode == "enforce" else audited).append(
                    (pair, violation.message)
                )
        if denials:
            raise AccessDeniedException("; ".join(message for _, message in denials))
        return [pair for pair, _ in audited]

    # -- credentials --------------------------------------------------------------------------

    def calls_for(self, pod: PodIdentity, association: Association) -> list[AssumeCall]:
        settings = self.settings
        name = session_name(settings.cluster_name, pod)
        tags: tuple[tuple[str, str], ...] = ()
        if not association.disable_session_tags:
            tags = tuple(
                (t["Key"], t["Value"])
                for t in session_tags(settings.cluster_name, settings.cluster_arn, pod)
            )
        first = AssumeCall(
            role_arn=association.role_arn,
            session_name=name,
            duration=settings.session_duration
            if not association.target_role_arn
            else min(settings.session_duration, CHAINED_MAX_DURATION),
            tags=tags,
            transitive_tag_keys=TAG_KEYS if tags else (),
            policy="" if association.target_role_arn else association.session_policy,
        )
        if not association.target_role_arn:
            return [first]
        # The tags are transitive, so the chained session carries them without sending them.
        second = AssumeCall(
            role_arn=association.target_role_arn,
            session_name=name,
            duration=min(settings.session_duration, CHAINED_MAX_DURATION),
            external_id=association.external_id,
            policy=association.session_policy,
        )
        return [first, second]

    async def credentials(
        self, pod: PodIdentity, association: Association, outcome: Outcome
    ) -> Assumed:
        key = CacheKey.of(pod, association)
        cached = self._cache.get(key)
        now = self._clock()
        if cached is not None and not needs_refresh(
            cached.credentials.expiration, now, self.settings.refresh_margin
        ):
            outcome.source = "cache"
            return cached
        running = self._in_flight.get(key)
        if running is not None:
            outcome.source = "shared"
            return await asyncio.shield(running)
        future: asyncio.Future[Assumed] = asyncio.get_running_loop().create_future()
        self._in_flight[key] = future
        try:
            await self._bucket.take()
            assumed = await self._sts.assume(self.calls_for(pod, association))
        except BaseException as exc:
            if not future.done():
                future.set_exception(exc)
                future.exception()  # marked retrieved: waiters may be none
            raise
        else:
            self._cache[key] = assumed
            future.set_result(assumed)
            outcome.source = "sts"
            return assumed
        finally:
            del self._in_flight[key]

    def forget_expired(self) -> int:
        """Drop cached credentials that can no longer be handed out; returns how many."""
        now = self._clock()
        stale = [
            key
            for key, assumed in self._cache.items()
            if needs_refresh(assumed.credentials.expiration, now, self.settings.refresh_margin)
        ]
        for key in stale:
            del self._cache[key]
        return len(stale)

    # -- the whole request --------------------------------------------------------------------

    async def assume(
        self, request: AssumeRequest, authorization: str, outcome: Outcome
    ) -> AssumedRole:
        settings = self.settings
        if not self.index.synced or not settings.cluster_arn:
            raise ServiceUnavailableException(
                "the broker is starting: associations or its own AWS identity are not known yet"
            )
        if request.cluster_name != settings.cluster_name:
            raise ResourceNotFoundException(
                f"no cluster {request.cluster_name!r} here (this broker serves "
                f"{settings.cluster_name!r})"
            )
        node = await self.caller_node(authorization)
        pod = await self.pod_identity(request.token, node, request.node_name)
        association = self.association_for(pod)
        outcome.association = association
        outcome.violations = self.judge(pod, association, request.token)
        assumed = await self.credentials(pod, association, outcome)
        return AssumedRole(
            namespace=pod.namespace,
            service_account=pod.service_account,
            association_arn=association_arn(
                settings.cluster_arn, settings.cluster_name, association
            ),
            association_id=association.association_id,
            assumed_role_arn=assumed.arn,
            assumed_role_id=assumed.role_id,
            credentials=assumed.credentials,
            audience=settings.audience,
        )


def _node_of(pod: dict[str, Any] | None, uid: str) -> str | None:
    """The Pod's node name ("" when not scheduled), or None when it is not the Pod `uid`."""
    if not isinstance(pod, dict):
        return None
    metadata, spec = pod.get("metadata"), pod.get("spec")
    if not isinstance(metadata, dict) or metadata.get("uid") != uid:
        return None
    node = spec.get("nodeName") if isinstance(spec, dict) else None
    return node if isinstance(node, str) else ""
