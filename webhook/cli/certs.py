"""The `certs` command: a CA and a serving pair written to a directory, and the caBundle."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from webhook.atomic import write_atomically
from webhook.certificates.issuing import (
    CLUSTER_DOMAIN,
    DEFAULT_CA_DAYS,
    MAX_DAYS,
    NAMESPACE_NAME,
    SERVICE_NAME,
    ca_bundle,
    dns_name,
    ip_address,
    make_ca,
    make_serving_cert,
    service_dns_names,
    subject_alt_names,
)
from webhook.cli.common import PROG, fail, parse_command
from webhook.errors import ConfigError
from webhook.flags import FlagSpec
from webhook.gocompat import parse_go_bool, parse_go_int

# --- the `certs` command (file I/O) ---------------------------------------------------------


def _flag_dns(text: str) -> str:
    try:
        return dns_name(text)
    except ConfigError as exc:
        raise ValueError(str(exc)) from None


def _flag_ip(text: str) -> str:
    try:
        return str(ip_address(text))
    except ConfigError as exc:
        raise ValueError(str(exc)) from None


def _flag_days(text: str) -> int:
    days = parse_go_int(text)
    if not 1 <= days <= MAX_DAYS:
        raise ValueError(f"must be between 1 and {MAX_DAYS}")
    return days


def _flag_service(text: str) -> str:
    if not SERVICE_NAME.fullmatch(text):
        raise ValueError("must be a lower-case DNS-1035 label (a Service name)")
    return text


def _flag_namespace(text: str) -> str:
    if not NAMESPACE_NAME.fullmatch(text):
        raise ValueError("must be a lower-case DNS-1123 label (a namespace name)")
    return text


CERTS_FLAGS: tuple[FlagSpec, ...] = (
    FlagSpec("dir", str, "certs", "Directory to write ca.crt, ca.key, tls.crt and tls.key into"),
    FlagSpec("service-name", _flag_service, "pod-identity-webhook", "The webhook's Service name"),
    FlagSpec("namespace", _flag_namespace, "default", "The webhook Service's namespace"),
    FlagSpec("dns", _flag_dns, None, "Extra DNS name; repeatable", "stringArray", repeatable=True),
    FlagSpec("ip", _flag_ip, None, "Extra IP address; repeatable", "stringArray", repeatable=True),
    FlagSpec(
        "local", parse_go_bool, False, "Also valid as localhost and 127.0.0.1 (make run)", "bool"
    ),
    FlagSpec("days", _flag_days, 365, "Lifetime of the serving certificate in days", "int"),
    FlagSpec("force", parse_go_bool, False, "Overwrite existing files", "bool"),
    FlagSpec("help", parse_go_bool, False, "Show this help", "bool", shorthand="h"),
)

CERTS_USAGE = f"""Usage: {PROG} certs [--dir DIR] [--service-name NAME] [--namespace NS]
       [--dns NAME]... [--ip ADDR]... [--local] [--days N] [--force]

Writes a new CA (ca.crt, ca.key) and a serving certificate signed by it (tls.crt, tls.key)
valid for <service>, <service>.<namespace>, <service>.<namespace>.svc and
<service>.<namespace>.svc.{CLUSTER_DOMAIN}, then prints the caBundle for the
MutatingWebhookConfiguration. Existing files are kept unless --force is given.

Flags:
"""

_FILES = ("ca.crt", "ca.key", "tls.crt", "tls.key")
_CHECK_ORDER = ("tls.crt", "tls.key", "ca.crt", "ca.key")


def certs_command(argv: Sequence[str], *, stdout: TextIO, stderr: TextIO) -> int:
    """The `certs` command; returns the exit status."""
    parsed = parse_command("certs", argv, CERTS_FLAGS, CERTS_USAGE, stdout=stdout, stderr=stderr)
    if isinstance(parsed, int):
        return parsed
    values = parsed.values
    if not values["dir"]:
        return fail(stderr, "certs", "--dir must not be empty", 2)

    directory = Path(values["dir"])
    paths = [directory / name for name in _FILES]
    days: int = values["days"]
    try:
        dns = [*service_dns_names(values["service-name"], values["namespace"]), *values["dns"]]
        ips = list(values["ip"])
        if values["local"]:
            dns.append("localhost")
            ips.append("127.0.0.1")
        if not values["force"]:
            # The serving pair first: it is what a user most likely means to keep.
            for path in (directory / name for name in _CHECK_ORDER):
                if path.exists() or path.is_symlink():
                    return fail(stderr, "certs", f"{path} exists; use --force to overwrite", 1)
        # The CA must not expire before the certificate it signed.
        ca_cert, ca_key = make_ca(days=max(DEFAULT_CA_DAYS, days))
        tls_cert, tls_key = make_serving_cert(
            ca_cert, ca_key, dns_names=dns, ip_addresses=ips, days=days
        )
        directory.mkdir(parents=True, exist_ok=True)
        for path, data, mode in zip(
            paths, (ca_cert, ca_key, tls_cert, tls_key), (0o644, 0o600, 0o644, 0o600), strict=True
        ):
            write_atomically(path, data, mode=mode)
    except ConfigError as exc:
        return fail(stderr, "certs", f"{exc}", 1)
    except OSError as exc:
        where = exc.filename if exc.filename is not None else directory
        return fail(stderr, "certs", f"cannot write {where}: {exc.strerror or exc}", 1)
    print("wrote " + " ".join(str(path) for path in paths), file=stdout)
    print("serving names: " + ",".join(subject_alt_names(tls_cert)), file=stdout)
    print(f"caBundle: {ca_bundle(ca_cert)}", file=stdout)
    return 0
