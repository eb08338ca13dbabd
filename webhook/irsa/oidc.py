"""Pure. The issuer half of IRSA on a self-managed cluster: what AWS STS needs to trust tokens.

STS accepts a projected ServiceAccount token only if it can fetch the issuer's OIDC discovery
document and key set (JWKS) over HTTPS, the issuer is registered as an IAM OIDC provider, and
the role's trust policy names the token's audience and subject. This module checks issuers and
builds the discovery document and the kube-apiserver flags; keys and the JWKS are `jwks`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "DISCOVERY_PATH",
    "apiserver_flags",
    "check_issuer",
    "check_previous_issuer",
    "discovery_document",
    "issuer_warnings",
    "jwks_uri_for",
    "s3_location",
]

DISCOVERY_PATH = ".well-known/openid-configuration"
DEFAULT_JWKS_PATH = "openid/v1/jwks"
IAM_URL_MAX = 255  # the Url of an IAM OIDC provider is at most 255 characters


# --- the issuer and the discovery document ---------------------------------------------------


def check_issuer(url: str) -> str:
    """The issuer if STS can use it: https, a host, no user info, query or fragment."""
    if not url.startswith("https://"):
        raise ValueError("the issuer must be an https:// URL (STS fetches it over HTTPS)")
    if any(char.isspace() for char in url):
        raise ValueError("the issuer must not contain white space")
    if "?" in url or "#" in url:
        raise ValueError("the issuer must not have a query or a fragment")
    parts = urlsplit(url)
    if "@" in parts.netloc:
        raise ValueError("the issuer must not contain user information")
    if not parts.hostname:
        raise ValueError("the issuer has no host name")
    try:
        _ = parts.port
    except ValueError:
        raise ValueError("the issuer has an invalid port") from None
    return url


def issuer_warnings(issuer: str) -> list[str]:
    """Legal but risky issuer spellings."""
    warnings = []
    if issuer.endswith("/"):
        warnings.append(
            f"issuer {issuer!r} ends with '/': the tokens' iss claim, the discovery document, "
            "the IAM provider and --service-account-issuer must all use exactly this spelling; "
            "an issuer without the trailing slash is less error-prone"
        )
    if len(issuer) > IAM_URL_MAX:
        warnings.append(f"issuer is longer than {IAM_URL_MAX} characters, IAM's limit")
    host = urlsplit(issuer).hostname or ""
    s3 = _S3_VIRTUAL_HOST.fullmatch(host)
    if s3 and s3.group("bucket") and "." in s3.group("bucket"):
        warnings.append(
            f"bucket name {s3.group('bucket')!r} contains dots: S3's certificate does not "
            "cover that virtual host, so STS cannot fetch over HTTPS; use a bucket name "
            "without dots, the path-style URL, or CloudFront"
        )
    return warnings


def issuer_base(issuer: str) -> str:
    return issuer.rstrip("/")


def jwks_uri_for(issuer: str, jwks_path: str = DEFAULT_JWKS_PATH) -> str:
    """Where the JWKS is served: under the issuer, at jwks_path."""
    return f"{issuer_base(issuer)}/{jwks_path}"


def discovery_document(issuer: str, jwks_uri: str, algorithms: Sequence[str]) -> dict[str, Any]:
    """The /.well-known/openid-configuration document kube-apiserver serves, same members."""
    return {
        "issuer": issuer,
        "jwks_uri": jwks_uri,
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": list(algorithms),
    }


_S3_VIRTUAL_HOST = re.compile(
    r"(?:(?P<bucket>[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?)\.)?s3(?:[.-][a-z0-9-]+)?\.amazonaws\.com(?:\.cn)?"
)


def s3_location(issuer: str) -> tuple[str | None, str]:
    """(bucket, key prefix) of an S3-hosted issuer; bucket is None for other hosts."""
    parts = urlsplit(issuer)
    path = parts.path.strip("/")
    match = _S3_VIRTUAL_HOST.fullmatch(parts.hostname or "")
    if match is None:
        return None, path
    if match.group("bucket"):
        return match.group("bucket"), path
    bucket, _, rest = path.partition("/")  # path-style: https://s3.<region>.amazonaws.com/bucket
    return (bucket or None), rest


def check_jwks_path(text: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9._~-]+(?:/[A-Za-z0-9._~-]+)*", text):
        raise ValueError("must be a relative path such as openid/v1/jwks or keys.json")
    if any(part in (".", "..") for part in text.split("/")):
        raise ValueError("must not contain . or .. components")
    if text == DISCOVERY_PATH or text.startswith(DISCOVERY_PATH + "/"):
        raise ValueError(f"must differ from {DISCOVERY_PATH}")
    return text


# --- API server flags ----------------------------------------------------------------------------


def check_previous_issuer(text: str) -> str:
    """An issuer kube-apiserver accepts: not empty, a URL if it has a ':' (its own rule)."""
    if not text or any(char.isspace() for char in text):
        raise ValueError("must be the running API server's issuer, without white space")
    if ":" in text:
        parts = urlsplit(text)
        try:
            _ = parts.port
        except ValueError:
            raise ValueError("contains a ':' but is not a valid URL") from None
        if not parts.scheme:
            raise ValueError("contains a ':' but is not a valid URL")
    return text


def apiserver_flags(
    issuer: str,
    *,
    key_files: Sequence[str],
    signing_key_file: str,
    jwks_uri: str,
    previous_issuers: Sequence[str] = (),
) -> str:
    """The kube-apiserver flags for a self-hosted issuer, with notes per distribution.

    With previous issuers (a running cluster moving to `issuer`), `--service-account-issuer`
    is given once per issuer, the new one first: kube-apiserver signs with the first and
    accepts all, so the tokens Pods already hold stay valid.
    """
    issuers = [issuer, *previous_issuers]
    issuer_lines = "\n".join(f"--service-account-issuer={value}" for value in issuers)
    keys = "\n".join(f"--service-account-key-file={path}" for path in key_files)
    transition = ""
    if previous_issuers:
        transition = """
# Two issuers, for a running cluster: kube-apiserver signs new tokens with the first
#     --service-account-issuer and accepts the tokens of each, so the tokens Pods already
#     hold keep working. --api-audiences lists them all, because a token requested without
#     an audience carries the issuers in force then as its audience; if the API server
#     already has --api-audiences, keep its values and add the new issuer. Once every Pod has
#     been restarted or has refreshed its projected tokens (the kubelet does so at 80 % of
#     their life, and at least daily), remove the previous issuers from both flags. Only the
#     new issuer is published and registered for STS.
"""
    return f"""\
# kube-apiserver flags for IRSA; set them on every control-plane node.
{issuer_lines}
{keys}
--service-account-signing-key-file={signing_key_file}
--api-audiences={",".join(issuers)}
--service-account-jwks-uri={jwks_uri}
{transition}
# --service-account-issuer  becomes the iss claim of every token; must equal the issuer in
#     the published discovery document and the IAM OIDC provider URL, character for character.
#     To move a running cluster to a new issuer, give the flag twice, the new issuer first: the
#     first signs new tokens, both are accepted, so tokens already issued keep working;
#     --previous-issuer OLD prints that form.
# --service-account-key-file  public (or private) keys that verify tokens, one flag per file,
#     old and new during a rotation; these are the keys to pass to
#     `pod-identity-webhook oidc --key`.
#     The API server publishes all of them at /openid/v1/jwks.
# --service-account-signing-key-file  the private key that signs tokens; its public part must
#     be among the key files, and must be in the published JWKS before it signs anything.
# --api-audiences  the audiences the API server accepts for its own clients' tokens; the value
#     above equals the default for one issuer. While two issuers are given, list both here, or
#     leave the flag out (it then defaults to every --service-account-issuer). Do not add
#     sts.amazonaws.com: that audience is for STS, and the webhook asks for it on its own.
# --service-account-jwks-uri  optional: without it the API server's own discovery document
#     points at its internal address; with it that document matches the published one.
#
# kubeadm: the keys already exist (/etc/kubernetes/pki/sa.key and sa.pub) and are already
#     passed. Set service-account-issuer, api-audiences and service-account-jwks-uri under
#     apiServer.extraArgs in the ClusterConfiguration (an extraArgs entry replaces kubeadm's
#     default issuer https://kubernetes.default.svc.cluster.local; v1beta4's list form can
#     repeat service-account-issuer to keep it), or edit
#     /etc/kubernetes/manifests/kube-apiserver.yaml on each control-plane node (the kubelet
#     restarts the static Pod).
# k3s: pass each flag as --kube-apiserver-arg=service-account-issuer=... on the k3s server (or
#     list them under kube-apiserver-arg in /etc/rancher/k3s/config.yaml). k3s passes its own
#     key flags with keys under /var/lib/rancher/k3s/server/tls/; publish those keys (see the
#     running kube-apiserver's --service-account-key-file) rather than replacing them.
# kOps: set spec.kubeAPIServer.serviceAccountIssuer and serviceAccountJWKSURI in the cluster
#     spec; kOps can also publish the discovery documents itself
#     (spec.serviceAccountIssuerDiscovery), in which case `pod-identity-webhook oidc` is not
#     needed."""
