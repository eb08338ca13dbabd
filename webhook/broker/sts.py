"""STS through botocore, with the broker's own credentials from the default chain.

botocore is synchronous; calls run in threads (a handful at a time, bounded by the rate
limiter in front of them). Its errors are turned into EKS Auth errors here, with STS's own
message (which never contains a credential).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from webhook.errors import (
    AccessDeniedException,
    EksAuthError,
    InternalServerException,
    InvalidRequestException,
    ServiceUnavailableException,
    ThrottlingException,
)
from webhook.podidentity.wire import Credentials

__all__ = ["AssumeCall", "StsClient", "TokenBucket", "assume_error"]


@dataclass(frozen=True, slots=True)
class AssumeCall:
    """One sts:AssumeRole call as sent (kept by tests and the debug log, never the answer)."""

    role_arn: str
    session_name: str
    duration: int
    tags: tuple[tuple[str, str], ...] = ()
    transitive_tag_keys: tuple[str, ...] = ()
    external_id: str = ""
    policy: str = ""


@dataclass(frozen=True, slots=True)
class Assumed:
    credentials: Credentials
    arn: str
    role_id: str


_DENIED = {"AccessDenied", "AccessDeniedException", "RegionDisabledException"}
_THROTTLED = {"Throttling", "ThrottlingException", "RequestLimitExceeded"}
_BAD_REQUEST = {
    "MalformedPolicyDocument",
    "MalformedPolicyDocumentException",
    "PackedPolicyTooLarge",
    "PackedPolicyTooLargeException",
    "ValidationError",
    "InvalidParameterValue",
}
_UNAVAILABLE = {
    "ExpiredToken",
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
    "ServiceUnavailable",
}


def assume_error(exc: Exception) -> EksAuthError:
    """An EKS Auth error for a botocore exception."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    if isinstance(exc, ClientError):
        return _client_error(exc)
    if isinstance(exc, NoCredentialsError):
        return ServiceUnavailableException("the broker has no AWS credentials (default chain)")
    if isinstance(exc, BotoCoreError):
        return ServiceUnavailableException(f"STS cannot be reached: {exc}")
    return InternalServerException(f"STS call failed: {type(exc).__name__}")


def _client_error(exc: Any) -> EksAuthError:
    error = exc.response.get("Error") or {}
    code, message = str(error.get("Code") or ""), str(error.get("Message") or exc)
    for codes, kind, text in (
        (_DENIED, AccessDeniedException, "STS refused AssumeRole"),
        (_THROTTLED, ThrottlingException, "STS is throttling"),
        (_BAD_REQUEST, InvalidRequestException, "STS refused the request"),
        (
            _UNAVAILABLE,
            ServiceUnavailableException,
            f"the broker's own AWS credentials are not usable ({code})",
        ),
    ):
        if code in codes:
            return kind(f"{text}: {message}")
    return InternalServerException(f"STS answered {code or 'an error'}: {message}")


class TokenBucket:
    """`rate` calls a second, `burst` at once; a caller waits at most `wait` seconds."""

    def __init__(self, rate: float, burst: int, wait: float) -> None:
        self._rate, self._burst, self._wait = rate, float(burst), wait
        self._tokens, self._stamp = float(burst), time.monotonic()

    async def take(self) -> None:
        """Take one token or raise ThrottlingException."""
        deadline = time.monotonic() + self._wait
        while True:
            now = time.monotonic()
            self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate)
            self._stamp = now
            if self._tokens >= 1:
                self._tokens -= 1
                return
            pause = (1 - self._tokens) / self._rate
            if now + pause > deadline:
                raise ThrottlingException(
                    "too many new credentials at once: the broker's STS rate bound was reached"
                )
            await asyncio.sleep(pause)


class StsClient:
    """sts:AssumeRole (with tags, chaining, external ID, session policy), GetCallerIdentity."""

    def __init__(self, *, region: str = "", endpoint: str = "", threads: int = 8) -> None:
        import botocore.config
        import botocore.session

        self._session = botocore.session.get_session()
        self._region = region or self._session.get_config_variable("region") or "us-east-1"
        self._endpoint = endpoint or None
        self._config = botocore.config.Config(
            retries={"max_attempts": 3, "mode": "standard"},
            max_pool_connections=threads,
            connect_timeout=3,
            read_timeout=10,
        )
        self._client = self._make_client()
        self._threads = asyncio.Semaphore(threads)
        self.calls: list[AssumeCall] = []
        """Every AssumeRole sent, in order (bounded: the last 10,000)."""

    @property
    def region(self) -> str:
        return str(self._region)

    def _make_client(self, credentials: Credentials | None = None) -> Any:
        keys: dict[str, str] = {}
        if credentials is not None:
            keys = {
                "aws_access_key_id": credentials.access_key_id,
                "aws_secret_access_key": credentials.secret_access_key,
                "aws_session_token": credentials.session_token,
            }
        return self._session.create_client(
            "sts",
            region_name=self._region,
            endpoint_url=self._endpoint,
            config=self._config,
            **keys,
        )

    async def caller_identity(self) -> tuple[str, str]:
        """(account, arn) of the broker's own credentials; EKS Auth errors when unusable."""
        try:
            async with self._threads:
                answer = await asyncio.to_thread(self._client.get_caller_identity)
        except Exception as exc:  # noqa: BLE001 - every botocore failure is mapped
            raise assume_error(exc) from None
        return str(answer["Account"]), str(answer["Arn"])

    async def assume(self, calls: Sequence[AssumeCall]) -> Assumed:
        """AssumeRole for each call in turn, each with the credentials the previous one gave
        (role chaining); the last one's credentials are returned."""
        credentials: Credentials | None = None
        assumed: Assumed | None = None
        for call in calls:
            self.calls.append(call)
            del self.calls[:-10_000]
            try:
                async with self._threads:
                    assumed = await asyncio.to_thread(self._assume, call, credentials)
            except Exception as exc:  # noqa: BLE001 - every botocore failure is mapped
                raise assume_error(exc) from None
            credentials = assumed.credentials
        if assumed is None:
            raise InternalServerException("no role to assume")
        return assumed

    def _assume(self, call: AssumeCall, credentials: Credentials | None) -> Assumed:
        client = self._client if credentials is None else self._make_client(credentials)
        arguments: dict[str, Any] = {
            "RoleArn": call.role_arn,
            "RoleSessionName": call.session_name,
            "DurationSeconds": call.duration,
        }
        if call.tags:
            arguments["Tags"] = [{"Key": k, "Value": v} for k, v in call.tags]
            arguments["TransitiveTagKeys"] = list(call.transitive_tag_keys)
        if call.external_id:
            arguments["ExternalId"] = call.external_id
        if call.policy:
            arguments["Policy"] = call.policy
        answer = client.assume_role(**arguments)
        got = answer["Credentials"]
        user = answer["AssumedRoleUser"]
        return Assumed(
            Credentials(
                access_key_id=got["AccessKeyId"],
                secret_access_key=got["SecretAccessKey"],
                session_token=got["SessionToken"],
                expiration=got["Expiration"].timestamp(),
            ),
            str(user["Arn"]),
            str(user["AssumedRoleId"]),
        )
