"""The `oidc` command: the discovery document and JWKS written for publishing, the commands that
publish and register them, and the kube-apiserver flags. It never calls AWS.
"""

from __future__ import annotations

import json
import shlex
import ssl
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

from webhook.atomic import write_atomically
from webhook.cli.common import PROG, fail, parse_command, warn
from webhook.errors import ConfigError
from webhook.flags import FlagSpec
from webhook.gocompat import parse_go_bool
from webhook.irsa.jwks import (
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
from webhook.irsa.oidc import (
    DEFAULT_JWKS_PATH,
    DISCOVERY_PATH,
    apiserver_flags,
    check_issuer,
    check_jwks_path,
    check_previous_issuer,
    discovery_document,
    issuer_base,
    issuer_warnings,
    jwks_uri_for,
    s3_location,
)
from webhook.irsa.trustpolicy import DEFAULT_AUDIENCE

# --- shared command helpers ----------------------------------------------------------------------

FETCH_TIMEOUT = 10.0
MAX_JWKS_BYTES = 1 << 20


def _write_file(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, data, mode=0o644)  # published documents: world-readable


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
        check_jwks_path,
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
        f"  curl -fsS {shlex.quote(issuer_base(issuer) + '/' + DISCOVERY_PATH)}",
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


def _print_apiserver_flags(values: dict[str, Any], stdout: TextIO, stderr: TextIO) -> int:
    issuer: str = values["issuer"]
    if values["from-jwks"]:
        return fail(stderr, "oidc", "--from-jwks is not used with --print-apiserver-flags", 2)
    shown = issuer or "https://ISSUER"
    previous = list(dict.fromkeys(values["previous-issuer"]))
    if shown in previous:
        # kube-apiserver refuses an issuer given twice.
        return fail(stderr, "oidc", "--previous-issuer must differ from --issuer", 2)
    for warning in issuer_warnings(issuer) if issuer else []:
        warn(stderr, "oidc", warning)
    text = apiserver_flags(
        shown,
        key_files=values["key"] or ["/etc/kubernetes/pki/sa.pub"],
        signing_key_file=values["signing-key"],
        jwks_uri=jwks_uri_for(shown, values["jwks-path"]),
        previous_issuers=previous,
    )
    print(text, file=stdout)
    return 0


def _problem(values: dict[str, Any], audiences: Sequence[str]) -> str | None:
    """The first flag combination that cannot be meant, for the documents mode."""
    problems = (
        (values["previous-issuer"], "--previous-issuer is only used with --print-apiserver-flags"),
        (
            values["ca"] and not values["from-jwks"].startswith("https://"),
            "--ca is only used with --from-jwks https://...",
        ),
        (not values["issuer"], "--issuer URL is required"),
        (
            not values["key"] and not values["from-jwks"],
            "give --key FILE (repeatable) or --from-jwks FILE|URL",
        ),
        (not values["dir"], "--dir must not be empty"),
        (any(not audience for audience in audiences), "--audience must not be empty"),
    )
    return next((message for wrong, message in problems if wrong), None)


def _keys(values: dict[str, Any], warnings: list[str]) -> list[PublishedKey]:
    """The keys to publish: PEM files and/or a JWKS; ConfigError names an unreadable one."""
    collected: list[PublishedKey] = []
    for path in values["key"]:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
        pem_keys, pem_warnings = load_pem_keys(data, path)
        collected += [PublishedKey(key, key_id(key)) for key in pem_keys]
        warnings += pem_warnings
    if values["from-jwks"]:
        source = values["from-jwks"]
        from_jwks, jwks_warnings = parse_jwks(_read_jwks_source(source, values["ca"]), source)
        collected += from_jwks
        warnings += jwks_warnings
    return unique_keys(collected)


def oidc_command(argv: Sequence[str], *, stdout: TextIO, stderr: TextIO) -> int:
    """The `oidc` command; returns the exit status."""
    parsed = parse_command("oidc", argv, OIDC_FLAGS, OIDC_USAGE, stdout=stdout, stderr=stderr)
    if isinstance(parsed, int):
        return parsed
    values = parsed.values
    if values["print-apiserver-flags"]:
        return _print_apiserver_flags(values, stdout, stderr)
    issuer: str = values["issuer"]
    jwks_path: str = values["jwks-path"]
    audiences: list[str] = list(dict.fromkeys(values["audience"])) or [DEFAULT_AUDIENCE]
    problem = _problem(values, audiences)
    if problem:
        return fail(stderr, "oidc", problem, 2)

    directory = Path(values["dir"])
    warnings = issuer_warnings(issuer)
    jwks_uri = jwks_uri_for(issuer, jwks_path)
    try:
        keys = _keys(values, warnings)
        discovery = discovery_document(issuer, jwks_uri, signing_algorithms(keys))
        _write_file(directory / DISCOVERY_PATH, _json_bytes(discovery))
        _write_file(directory / jwks_path, _json_bytes(jwks_document(keys)))
    except ConfigError as exc:
        return fail(stderr, "oidc", str(exc), 1)
    except OSError as exc:
        where = exc.filename if exc.filename is not None else directory
        return fail(stderr, "oidc", f"cannot write {where}: {exc.strerror or exc}", 1)

    lines, publish_warnings = _publish_instructions(
        issuer,
        directory=directory,
        jwks_path=jwks_path,
        bucket_flag=values["bucket"],
        audiences=audiences,
    )
    for warning in warnings + publish_warnings:
        warn(stderr, "oidc", warning)
    print(f"wrote {directory / DISCOVERY_PATH}", file=stdout)
    print(f"wrote {directory / jwks_path} ({len(keys)} key(s))", file=stdout)
    for item in keys:
        print(f"  kid {item.kid} {algorithm(item.key)}", file=stdout)
    print(f"issuer: {issuer}", file=stdout)
    print(f"jwks_uri: {jwks_uri}", file=stdout)
    print("\n".join(lines), file=stdout)
    return 0
