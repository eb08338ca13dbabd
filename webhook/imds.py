"""EC2 instance metadata, read once at start-up for `--compose-role-arn`.

Like the AWS SDK's IMDS client that upstream uses: IMDSv2 session token, then the instance
identity document; `AWS_EC2_METADATA_SERVICE_ENDPOINT` overrides the endpoint. A failure is
one sentence saying what the flag needs, since off EC2 the bare HTTP error explains nothing.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request

from webhook.aws import partition_for_region
from webhook.errors import ConfigError

__all__ = ["account_and_partition"]

DEFAULT_ENDPOINT = "http://169.254.169.254"
_TIMEOUT = 2.0
_NEEDS = (
    "--compose-role-arn needs this instance's account ID and region from the EC2 instance "
    "metadata service (IMDSv2)"
)
_REMEDY = (
    "run on an EC2 instance whose metadata service is on (in a container, with a hop limit of "
    "2 or more), or give the role-arn annotations full ARNs and leave --compose-role-arn off"
)


def _failure(base: str, what: str) -> ConfigError:
    return ConfigError(f"{_NEEDS}, but {base} {what}; {_REMEDY}")


def _http_problem(exc: urllib.error.HTTPError, request: str) -> str:
    why = ""
    if exc.code == 403:
        why = " (not on EC2, or the metadata service is turned off for this instance)"
    elif exc.code == 401:
        why = " (the session token was refused)"
    return f"answered HTTP {exc.code} {exc.reason} to the {request}{why}"


def account_and_partition(
    endpoint: str | None = None, *, timeout: float = _TIMEOUT
) -> tuple[str, str]:
    """(account ID, partition) of this instance; ConfigError saying what is needed if not."""
    base = endpoint or os.environ.get("AWS_EC2_METADATA_SERVICE_ENDPOINT") or DEFAULT_ENDPOINT
    base = base.rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise ConfigError(
            f"{_NEEDS}, and the endpoint {base!r} (AWS_EC2_METADATA_SERVICE_ENDPOINT) is not "
            "an http:// or https:// URL"
        )
    request_name = "request for a session token"
    try:
        token_request = urllib.request.Request(  # noqa: S310 - scheme checked above
            f"{base}/latest/api/token",
            method="PUT",
            headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"},
        )
        with urllib.request.urlopen(token_request, timeout=timeout) as answer:  # noqa: S310
            token = answer.read().decode()
        request_name = "request for the instance identity document"
        document_request = urllib.request.Request(  # noqa: S310
            f"{base}/latest/dynamic/instance-identity/document",
            headers={"X-aws-ec2-metadata-token": token},
        )
        with urllib.request.urlopen(document_request, timeout=timeout) as answer:  # noqa: S310
            text = answer.read()
    except urllib.error.HTTPError as exc:
        exc.close()  # it holds the connection
        raise _failure(base, _http_problem(exc, request_name)) from None
    except (OSError, ValueError) as exc:  # URLError is an OSError: refused, unreachable, timeout
        reason = getattr(exc, "reason", exc)
        raise _failure(base, f"did not answer the {request_name} ({reason})") from None
    try:
        document = json.loads(text)
    except ValueError:
        raise _failure(base, "sent an instance identity document that is not JSON") from None
    account = document.get("accountId") if isinstance(document, dict) else None
    region = document.get("region") if isinstance(document, dict) else None
    if not isinstance(account, str) or not isinstance(region, str):
        raise _failure(base, "sent an instance identity document without accountId or region")
    return account, partition_for_region(region)
