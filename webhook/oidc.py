"""The other half of IRSA on a self-managed cluster: what AWS STS needs to trust the tokens.

STS accepts a projected ServiceAccount token only if it can fetch the issuer's OIDC discovery
document and key set (JWKS) over HTTPS, the issuer is registered as an IAM OIDC provider, and
the role's trust policy names the token's audience and subject. This module owns the issuer:

    oidc             discovery document + JWKS from PEM keys or the API server's JWKS
    oidc --print-apiserver-flags
                     the kube-apiserver flags that make it sign tokens for that issuer

Keys and the JWKS are `webhook.jwks`; trust policies and `trust-policy` are
`webhook.trustpolicy`. The document functions are pure; `oidc_command` reads and writes files
and prints the commands that publish and register them. It never calls AWS.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import ssl
import tempfile
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

from webhook.errors import ConfigError, FlagError
from webhook.flags import FlagSpec, parse_args, usage
from webhook.gocompat import parse_go_bool
from webhook.jwks import (
    MIN_RSA_BITS,
    PublishedKey,
    algorithm,
    jwks_document,
    key_id,
    load_pem_keys,
    parse_jwks,
    signing_algorithms,
    unique_keys,
)
from webhook.trustpolicy import DEFAULT_AUDIENCE

__all__ = [
    "DISCOVERY_PATH",
    "apiserver_flags",
    "check_issuer",
    "check_previous_issuer",
    "discovery_document",
    "issuer_warnings",
    "jwks_uri_for",
    "oidc_command",
    "s3_location",
    "thumbprint_command",
]

PROG = "pod-identity-webhook"
DISCOVERY_PATH = ".well-known/openid-configuration"
DEFAULT_JWKS_PATH = "openid/v1/jwks"
FETCH_TIMEOUT = 10.0
MAX_JWKS_BYTES = 1 << 20
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


def _issuer_base(issuer: str) -> str:
    return issuer.rstrip("/")


def jwks_uri_for(issuer: str, jwks_path: str = DEFAULT_JWKS_PATH) -> str:
    """Where the JWKS is served: under the issuer, at jwks_path."""
    return f"{_issuer_base(issuer)}/{jwks_path}"


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


def _check_jwks_path(text: str) -> str:
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
#     old and new during a rotation; these are the keys to pass to `{PROG} oidc --key`.
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
#     (spec.serviceAccountIssuerDiscovery), in which case `{PROG} oidc` is not needed."""


# --- shared command helpers ----------------------------------------------------------------------


def _write_file(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), 0o644)  # published documents: world-readable
            handle.write(data)
        Path(temp).replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            Path(temp).unlink()
        raise


def _json_bytes(document: Mapping[str, Any]) -> bytes:
    return (json.dumps(document, indent=2) + "\n").encode("utf-8")


def _tls_context(ca_file: str) -> ssl.SSLContext:
    """The system's trust store, or only the CA(s) in ca_file (a private-CA API server)."""
    if not ca_file:
        return ssl.create_default_context()
    try:
        return ssl.create_default_context(cafile=ca_file)
    except FileNotFoundError:
        raise ConfigError(f"cannot read --ca {ca_file}: no such file") from None
    except (ssl.SSLError, ValueError):
        raise ConfigError(f"--ca {ca_file}: no PEM certificate in it") from None
    except OSError as exc:
        raise ConfigError(f"cannot read --ca {ca_file}: {exc.strerror or exc}") from None


def _untrusted(source: str, ca_file: str, reason: str) -> ConfigError:
    if ca_file:
        return ConfigError(
            f"cannot fetch {source}: its certificate is not signed by the CA in --ca {ca_file} "
            f"({reason})"
        )
    return ConfigError(
        f"cannot fetch {source}: its certificate is not trusted by this system ({reason}); "
        "for an API server with its own CA, give that CA with --ca FILE "
        "(kubeadm: /etc/kubernetes/pki/ca.crt), or save the key set with "
        "kubectl get --raw /openid/v1/jwks > jwks.json and pass the file"
    )


def _read_jwks_source(source: str, ca_file: str = "") -> bytes:
    if source.startswith("https://"):
        context = _tls_context(ca_file)
        try:
            with urllib.request.urlopen(  # noqa: S310 - the scheme is checked to be https above
                source, timeout=FETCH_TIMEOUT, context=context
            ) as response:
                data: bytes = response.read(MAX_JWKS_BYTES + 1)
        except urllib.error.HTTPError as exc:
            exc.close()  # it holds the connection
            raise ConfigError(
                f"cannot fetch {source}: HTTP {exc.code}; "
                "try kubectl get --raw /openid/v1/jwks > jwks.json and pass the file"
            ) from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            if isinstance(reason, ssl.SSLCertVerificationError):
                raise _untrusted(source, ca_file, reason.verify_message or str(reason)) from None
            raise ConfigError(f"cannot fetch {source}: {reason}") from None
        if len(data) > MAX_JWKS_BYTES:
            raise ConfigError(f"{source}: larger than {MAX_JWKS_BYTES} bytes")
        return data
    if "://" in source:
        raise ConfigError(f"{source}: only https:// URLs are fetched; or give a file")
    try:
        return Path(source).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {source}: {exc.strerror or exc}") from None


def _warn(stderr: TextIO, command: str, message: str) -> None:
    print(f"{PROG} {command}: warning: {message}", file=stderr)


# --- the `oidc` command --------------------------------------------------------------------------


OIDC_FLAGS: tuple[FlagSpec, ...] = (
    FlagSpec("issuer", check_issuer, "", "Issuer URL (https://, the tokens' iss claim)"),
    FlagSpec(
        "key",
        str,
        None,
        "PEM file with the ServiceAccount public or private key(s); repeatable",
        "stringArray",
        repeatable=True,
    ),
    FlagSpec(
        "from-jwks",
        str,
        "",
        "JWKS file or https:// URL copied from the API server's /openid/v1/jwks",
    ),
    FlagSpec(
        "ca",
        str,
        "",
        "With --from-jwks https://...: PEM file of the CA that signed the server's certificate "
        "(default: the system's trust store)",
    ),
    FlagSpec("dir", str, "oidc", "Directory to write the documents into"),
    FlagSpec(
        "jwks-path",
        _check_jwks_path,
        DEFAULT_JWKS_PATH,
        "Path of the JWKS under the issuer (sets jwks_uri)",
    ),
    FlagSpec("bucket", str, "", "S3 bucket for the printed upload commands (default: from issuer)"),
    FlagSpec(
        "audience",
        str,
        None,
        f"Client ID for the IAM OIDC provider; repeatable (default {DEFAULT_AUDIENCE})",
        "stringArray",
        repeatable=True,
    ),
    FlagSpec(
        "print-apiserver-flags",
        parse_go_bool,
        False,
        "Print the kube-apiserver flags and notes instead of writing files",
        "bool",
    ),
    FlagSpec(
        "signing-key",
        str,
        "/etc/kubernetes/pki/sa.key",
        "With --print-apiserver-flags: the signing key's path on the control plane",
    ),
    FlagSpec(
        "previous-issuer",
        check_previous_issuer,
        None,
        "With --print-apiserver-flags: the issuer a running cluster signs with now, still "
        "accepted after the move to --issuer; repeatable",
        "stringArray",
        repeatable=True,
    ),
    FlagSpec("help", parse_go_bool, False, "Show this help", "bool", shorthand="h"),
)

OIDC_USAGE = f"""Usage: {PROG} oidc --issuer URL (--key FILE... | --from-jwks FILE|URL [--ca FILE])
       [--dir DIR] [--jwks-path PATH] [--bucket NAME] [--audience AUD]...
       {PROG} oidc --print-apiserver-flags [--issuer URL] [--key PATH]...
       [--signing-key PATH] [--jwks-path PATH] [--previous-issuer OLD]...

Writes the OIDC discovery document (DIR/{DISCOVERY_PATH}) and the key
set (DIR/<jwks-path>) that AWS STS fetches to verify the cluster's ServiceAccount tokens, laid
out as they must be served under the issuer URL, then prints the upload and IAM commands.
Nothing is sent to AWS.

Keys come from PEM files (public or private keys, RSA of at least {MIN_RSA_BITS} bits or ECDSA
P-256/P-384/P-521; only public values are written; give every key the API server verifies
with during a rotation) or from a JWKS copied from the API server with
`kubectl get --raw /openid/v1/jwks`. Key IDs are computed as kube-apiserver computes them.
Existing files in DIR are replaced.

Flags:
"""

_THUMBPRINT_COMMAND = (
    "openssl s_client -connect {host}:443 -servername {host} -showcerts </dev/null 2>/dev/null"
    ' | awk \'/-----BEGIN CERTIFICATE-----/{{pem=""}} {{pem=pem $0 "\\n"}}'
    ' /-----END CERTIFICATE-----/{{last=pem}} END{{printf "%s", last}}\''
    " | openssl x509 -noout -fingerprint -sha1 | cut -d= -f2 | tr -d : | tr A-F a-f"
)


def thumbprint_command(host: str) -> str:
    """A shell pipeline printing the SHA-1 thumbprint of the last certificate a host sends."""
    return _THUMBPRINT_COMMAND.format(host=shlex.quote(host))


def _publish_instructions(
    issuer: str,
    *,
    directory: Path,
    jwks_path: str,
    bucket_flag: str,
    audiences: Sequence[str],
) -> tuple[list[str], list[str]]:
    """(stdout lines, warnings) telling how to upload and register the documents."""
    warnings: list[str] = []
    inferred, prefix = s3_location(issuer)
    if bucket_flag and inferred and bucket_flag != inferred:
        warnings.append(f"--bucket {bucket_flag} differs from the issuer's bucket {inferred}")
    bucket = bucket_flag or inferred or "BUCKET"
    base = f"s3://{bucket}/{prefix + '/' if prefix else ''}"
    lines = [
        "",
        "Upload both files (they must be publicly readable, or served through CloudFront):",
    ]
    lines.extend(
        f"  aws s3 cp {shlex.quote(str(directory / relative))} "
        f"{shlex.quote(base + relative)} --content-type application/json"
        for relative in (DISCOVERY_PATH, jwks_path)
    )
    if bucket == "BUCKET":
        lines.append("  (BUCKET: the bucket behind the issuer's host; the key prefix is its path)")
    lines += [
        "Check that STS will see them:",
        f"  curl -fsS {shlex.quote(_issuer_base(issuer) + '/' + DISCOVERY_PATH)}",
        f"  curl -fsS {shlex.quote(jwks_uri_for(issuer, jwks_path))}",
        "",
        "Register the issuer as an IAM OIDC provider (once per issuer, in each account whose",
        "roles trust its tokens):",
        (
            f"  aws iam create-open-id-connect-provider --url {shlex.quote(issuer)} "
            f"--client-id-list {' '.join(shlex.quote(a) for a in audiences)}"
        ),
    ]
    host = urlsplit(issuer).hostname or ""
    if inferred is not None:
        lines += [
            "Thumbprint: for a key set served from S3, IAM validates the TLS certificate",
            "  against the certificate authorities AWS trusts and ignores any thumbprint, so",
            "  there is nothing to compute. Recent AWS CLIs let you leave --thumbprint-list out;",
            "  if yours insists on it, any 40 hexadecimal digits will do.",
        ]
    else:
        lines += [
            f"Thumbprint: {host} is not S3, so IAM may check its certificate against the",
            "  thumbprint you register: the SHA-1 fingerprint of the top intermediate CA (the",
            "  last certificate the host sends). Left out, recent IAM versions fetch it once",
            "  themselves; to choose it, compute it and add --thumbprint-list THUMBPRINT:",
            f"  {thumbprint_command(host)}",
        ]
    lines += [
        "",
        (
            f"The API server must sign with this issuer: {PROG} oidc --print-apiserver-flags "
            f"--issuer {shlex.quote(issuer)}"
        ),
        (
            f"Trust policy for a role: {PROG} trust-policy --provider {shlex.quote(issuer)} "
            "--account-id ACCOUNT --service-account NAMESPACE:SERVICEACCOUNT"
        ),
    ]
    return lines, warnings


def oidc_command(argv: Sequence[str], *, stdout: TextIO, stderr: TextIO) -> int:
    """The `oidc` command; returns the exit status."""
    try:
        parsed = parse_args(argv, OIDC_FLAGS)
    except FlagError as exc:
        print(f"{PROG} oidc: {exc}", file=stderr)
        return 2
    values = parsed.values
    if values["help"]:
        print(OIDC_USAGE + usage(OIDC_FLAGS), file=stdout)
        return 0
    if parsed.positional:
        print(f"{PROG} oidc: unexpected argument {parsed.positional[0]!r}", file=stderr)
        return 2
    issuer: str = values["issuer"]
    jwks_path: str = values["jwks-path"]
    key_files: list[str] = values["key"]
    audiences: list[str] = list(dict.fromkeys(values["audience"])) or [DEFAULT_AUDIENCE]

    if values["print-apiserver-flags"]:
        if values["from-jwks"]:
            print(f"{PROG} oidc: --from-jwks is not used with --print-apiserver-flags", file=stderr)
            return 2
        shown = issuer or "https://ISSUER"
        previous = list(dict.fromkeys(values["previous-issuer"]))
        if shown in previous:
            # kube-apiserver refuses an issuer given twice.
            print(f"{PROG} oidc: --previous-issuer must differ from --issuer", file=stderr)
            return 2
        for warning in issuer_warnings(issuer) if issuer else []:
            _warn(stderr, "oidc", warning)
        text = apiserver_flags(
            shown,
            key_files=key_files or ["/etc/kubernetes/pki/sa.pub"],
            signing_key_file=values["signing-key"],
            jwks_uri=jwks_uri_for(shown, jwks_path),
            previous_issuers=previous,
        )
        print(text, file=stdout)
        return 0

    if values["previous-issuer"]:
        print(
            f"{PROG} oidc: --previous-issuer is only used with --print-apiserver-flags", file=stderr
        )
        return 2
    if values["ca"] and not values["from-jwks"].startswith("https://"):
        print(f"{PROG} oidc: --ca is only used with --from-jwks https://...", file=stderr)
        return 2
    if not issuer:
        print(f"{PROG} oidc: --issuer URL is required", file=stderr)
        return 2
    if not key_files and not values["from-jwks"]:
        print(f"{PROG} oidc: give --key FILE (repeatable) or --from-jwks FILE|URL", file=stderr)
        return 2
    if not values["dir"]:
        print(f"{PROG} oidc: --dir must not be empty", file=stderr)
        return 2
    if any(not audience for audience in audiences):
        print(f"{PROG} oidc: --audience must not be empty", file=stderr)
        return 2

    directory = Path(values["dir"])
    warnings = issuer_warnings(issuer)
    try:
        collected: list[PublishedKey] = []
        for path in key_files:
            try:
                data = Path(path).read_bytes()
            except OSError as exc:
                raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
            pem_keys, pem_warnings = load_pem_keys(data, path)
            collected += [PublishedKey(key, key_id(key)) for key in pem_keys]
            warnings += pem_warnings
        if values["from-jwks"]:
            source = values["from-jwks"]
            data = _read_jwks_source(source, values["ca"])
            from_jwks, jwks_warnings = parse_jwks(data, source)
            collected += from_jwks
            warnings += jwks_warnings
        keys = unique_keys(collected)
        jwks_uri = jwks_uri_for(issuer, jwks_path)
        discovery = discovery_document(issuer, jwks_uri, signing_algorithms(keys))
        targets = (
            (directory / DISCOVERY_PATH, _json_bytes(discovery)),
            (directory / jwks_path, _json_bytes(jwks_document(keys))),
        )
        for target, content in targets:
            _write_file(target, content)
    except ConfigError as exc:
        print(f"{PROG} oidc: {exc}", file=stderr)
        return 1
    except OSError as exc:
        where = exc.filename if exc.filename is not None else directory
        print(f"{PROG} oidc: cannot write {where}: {exc.strerror or exc}", file=stderr)
        return 1

    lines, publish_warnings = _publish_instructions(
        issuer,
        directory=directory,
        jwks_path=jwks_path,
        bucket_flag=values["bucket"],
        audiences=audiences,
    )
    for warning in warnings + publish_warnings:
        _warn(stderr, "oidc", warning)
    print(f"wrote {directory / DISCOVERY_PATH}", file=stdout)
    print(f"wrote {directory / jwks_path} ({len(keys)} key(s))", file=stdout)
    for item in keys:
        print(f"  kid {item.kid} {algorithm(item.key)}", file=stdout)
    print(f"issuer: {issuer}", file=stdout)
    print(f"jwks_uri: {jwks_uri}", file=stdout)
    print("\n".join(lines), file=stdout)
    return 0
