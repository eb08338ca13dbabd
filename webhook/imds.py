"""EC2 instance metadata, read once at start-up for `--compose-role-arn`.

Like the AWS SDK's IMDS client that upstream uses: IMDSv2 session token, then the instance
identity document; `AWS_EC2_METADATA_SERVICE_ENDPOINT` overrides the endpoint.
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


def account_and_partition(endpoint: str | None = None) -> tuple[str, str]:
    """(account ID, partition) of this instance; ConfigError when metadata is unreachable."""
    base = endpoint or os.environ.get("AWS_EC2_METADATA_SERVICE_ENDPOINT") or DEFAULT_ENDPOINT
    base = base.rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise ConfigError(f"Error getting instance identity document: bad endpoint {base!r}")
    try:
        token_request = urllib.request.Request(  # noqa: S310 - scheme checked above
            f"{base}/latest/api/token",
            method="PUT",
            headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"},
        )
        with urllib.request.urlopen(token_request, timeout=_TIMEOUT) as answer:  # noqa: S310
            token = answer.read().decode()
        document_request = urllib.request.Request(  # noqa: S310
            f"{base}/latest/dynamic/instance-identity/document",
            headers={"X-aws-ec2-metadata-token": token},
        )
        with urllib.request.urlopen(document_request, timeout=_TIMEOUT) as answer:  # noqa: S310
            document = json.loads(answer.read())
    except (OSError, ValueError, urllib.error.URLError) as exc:
        raise ConfigError(f"Error getting instance identity document: {exc}") from None
    account = document.get("accountId") if isinstance(document, dict) else None
    region = document.get("region") if isinstance(document, dict) else None
    if not isinstance(account, str) or not isinstance(region, str):
        raise ConfigError("Error getting instance identity document: no accountId or region")
    return account, partition_for_region(region)
