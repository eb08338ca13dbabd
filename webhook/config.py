"""Pure. The typed, immutable configuration and the flag table it is built from.

Every upstream flag keeps its name, default and Go grammar (see flags and gocompat). Two
defaults change on purpose: `--in-cluster` is false (the CSR flow it selected never worked on
current clusters) and `--service-account-lookup-grace-period` is non-zero (a ServiceAccount
created just before its Pod must not be missed).
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from webhook.aws import SessionName, parse_session_name
from webhook.errors import ConfigError, FlagError
from webhook.flags import FlagSpec, parse_args, usage
from webhook.gocompat import parse_go_bool, parse_go_duration, parse_go_int

MIN_TOKEN_EXPIRATION = 600
DEFAULT_TOKEN_EXPIRATION = 86400
DEFAULT_GRACE_PERIOD = 2.0  # seconds; see README "ServiceAccount lookups"
DEFAULT_CERT_VALIDITY_WARNING = 30 * 86400.0  # seconds: cert-manager renews 30 days ahead
# AWS SDKs refuse a region that is not a DNS label (botocore's InvalidRegionError): letters,
# digits and inner hyphens, 1 to 63 characters.
_REGION = re.compile(r"[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?")

#: Go's crypto/tls cipher-suite names (secure and insecure) → OpenSSL names. TLS 1.3 suites are
#: accepted but, as in Go, not configurable.
CIPHER_SUITES: dict[str, str | None] = {
    "TLS_AES_128_GCM_SHA256": None,
    "TLS_AES_256_GCM_SHA384": None,
    "TLS_CHACHA20_POLY1305_SHA256": None,
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_RSA_WITH_RC4_128_SHA": "RC4-SHA",
    "TLS_RSA_WITH_3DES_EDE_CBC_SHA": "DES-CBC3-SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA256": "AES128-SHA256",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA": "ECDHE-ECDSA-RC4-SHA",
    "TLS_ECDHE_RSA_WITH_RC4_128_SHA": "ECDHE-RSA-RC4-SHA",
    "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA": "ECDHE-RSA-DES-CBC3-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256": "ECDHE-ECDSA-AES128-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256": "ECDHE-RSA-AES128-SHA256",
}

TLS_VERSIONS = {
    "1.0": "1.0",
    "1.1": "1.1",
    "1.2": "1.2",
    "1.3": "1.3",
    "VersionTLS10": "1.0",
    "VersionTLS11": "1.1",
    "VersionTLS12": "1.2",
    "VersionTLS13": "1.3",
}


def parse_cipher_suites(text: str) -> tuple[str, ...]:
    """Comma list of Go names; blanks trimmed and skipped (upstream tlsCipherSuites)."""
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    for name in names:
        if name not in CIPHER_SUITES:
            raise ConfigError(f"invalid tls-cipher-suites: unsupported cipher suite: {name}")
    return names


def parse_tls_min_version(text: str) -> str:
    """`1.0`..`1.3` or `VersionTLS10`..`VersionTLS13`; empty means Go's default, TLS 1.2."""
    if text == "":
        return "1.2"
    if text not in TLS_VERSIONS:
        raise ConfigError(f"Invalid value for tls-min-version unsupported version {text}")
    return TLS_VERSIONS[text]


_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_CONFIG_MAP_KEY = re.compile(r"[-._a-zA-Z0-9]+")
DEFAULT_CA_BUNDLE_KEY = "ca.crt"  # kube-root-ca.crt's key, and cert-manager's


@dataclass(frozen=True, slots=True)
class ConfigMapKey:
    """One key of one ConfigMap in the Pod's own namespace, written `name/key`."""

    name: str
    key: str

    def __str__(self) -> str:
        return f"{self.name}/{self.key}"


def parse_config_map_key(text: str) -> ConfigMapKey:
    """`NAME` or `NAME/KEY` (key `ca.crt` by default), checked as the API server checks a
    configMap volume, so a typo is refused here rather than every Pod being rejected."""
    name, slash, key = text.partition("/")
    if not slash:
        key = DEFAULT_CA_BUNDLE_KEY
    if len(name) > 253 or not _DNS_SUBDOMAIN.fullmatch(name):
        raise ValueError(f"{name!r} is not a ConfigMap name (lowercase DNS subdomain)")
    if len(key) > 253 or not _CONFIG_MAP_KEY.fullmatch(key) or key.startswith(".."):
        raise ValueError(f"{key!r} is not a ConfigMap key (letters, digits, '-', '_', '.')")
    if key == ".":
        raise ValueError("'.' is not a ConfigMap key")
    return ConfigMapKey(name, key)


def parse_endpoint_url(text: str) -> str:
    """An http(s) URL an AWS SDK takes as an endpoint: scheme, host, optional port and path;
    no user information (it would be a credential in every Pod's environment), query or
    fragment."""
    if len(text) > 1024:
        raise ValueError("is longer than 1024 characters")
    if not text.isprintable() or any(c.isspace() for c in text):
        raise ValueError("must be an http:// or https:// URL without spaces")
    url = urllib.parse.urlsplit(text)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    if url.username is not None or url.password is not None:
        raise ValueError("must not hold user information (user:password@)")
    if url.query or url.fragment or text.endswith(("?", "#")):
        raise ValueError("must not have a query or a fragment")
    try:
        _ = url.port
    except ValueError:
        raise ValueError("has an invalid port") from None
    return text


@dataclass(frozen=True, slots=True, kw_only=True)
class ContainerCredentialsSettings:
    """What container-credentials (EKS Pod Identity) mode injects; flags only."""

    audience: str = "pods.eks.amazonaws.com"
    mount_path: str = "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount"
    volume_name: str = "eks-pod-identity-token"
    token_path: str = "eks-pod-identity-token"
    full_uri: str = "http://169.254.170.23/v1/credentials"


@dataclass(frozen=True, slots=True, kw_only=True)
class MutationConfig:
    """Everything the pure mutation core reads."""

    annotation_prefix: str = "eks.amazonaws.com"
    token_audience: str = "sts.amazonaws.com"
    token_mount_path: str = "/var/run/secrets/eks.amazonaws.com/serviceaccount"
    token_expiration: int = DEFAULT_TOKEN_EXPIRATION
    """Already clamped to at least 600, as upstream does at start-up."""
    region: str = ""
    sts_regional_endpoint: bool = False
    sts_endpoint_url: str = ""
    """Ours: AWS_ENDPOINT_URL_STS for Pods that get credentials (a local STS in CI)."""
    ca_bundle: ConfigMapKey | None = None
    """Ours: the CA bundle mounted for AWS_CA_BUNDLE."""
    compose_role_arn: bool = False
    account_id: str = ""
    """Account for composed role ARNs; from EC2 instance metadata at start-up."""
    partition: str = "aws"
    container_credentials: ContainerCredentialsSettings = field(
        default_factory=ContainerCredentialsSettings
    )
    session_name: SessionName | None = None
    """Ours: AWS_ROLE_SESSION_NAME when no annotation names one (--role-session-name)."""


@dataclass(frozen=True, slots=True)
class Limits:
    """What one connection may cost: time, count and backlog (see README "Limits")."""

    header_timeout: float = 10.0
    """A new connection's TLS handshake, and a request's first byte to the end of its headers."""
    body_timeout: float = 10.0
    """The end of a request's headers to the end of its body."""
    idle_timeout: float = 100.0
    """An answered keep-alive connection with no new request. Longer than the 90 s after which
    the API server's Go client closes an idle connection, so the client closes first and never
    writes a request on a connection the server is closing."""
    max_connections: int = 1024
    listen_backlog: int = 4096
    shutdown_delay: float = 5.0
    """After SIGTERM: go on serving (only /readyz says 503) while the endpoint goes away."""
    shutdown_timeout: float = 10.0
    """Then at most this long for requests already received (upstream's 10 s)."""
    release_tls_buffers: bool = True
    """Hand an idle TLS connection's empty read buffers back to the kernel
    (webhook/server/tlsbuffers.py)."""


@dataclass(frozen=True, slots=True)
class Notice:
    """Something about the command line worth one log line at start-up."""

    event: str
    message: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """The whole process configuration, built once from the command line."""

    mutation: MutationConfig = field(default_factory=MutationConfig)
    port: int = 443
    metrics_port: int = 9999
    kubeconfig: str = ""
    kube_api: str = ""
    tls_cert: str = "/etc/webhook/certs/tls.crt"
    tls_key: str = "/etc/webhook/certs/tls.key"
    tls_cipher_suites: tuple[str, ...] = ()
    tls_min_version: str = "1.2"
    namespace: str = "eks"
    service_name: str = "pod-identity-webhook"
    tls_secret: str = "pod-identity-webhook"
    watch_config_map: bool = False
    container_credentials_file: str = ""
    enable_debugging_handlers: bool = False
    grace_period: float = DEFAULT_GRACE_PERIOD
    resync_period: float = 60.0
    verbosity: int = 0
    log_format: str = "json"
    service_accounts_files: tuple[str, ...] = ()
    config_map_file: str = ""
    ignored_flags: tuple[str, ...] = ()
    """klog flags that were given; accepted for compatibility and otherwise unused."""
    notices: tuple[Notice, ...] = ()
    """Values adjusted or ignored the way upstream does, logged once at start-up."""
    cert_bootstrap: bool = False
    webhook_configuration: str = ""
    cert_validity_days: int = 365
    cert_extra_names: tuple[str, ...] = ()
    policy_file: str = ""
    rules: tuple[str, ...] = ()
    rule_timeout: float = 0.25
    rule_failure_policy: str = "ignore"
    pod_identity_associations: bool = False
    """--watch-pod-identity-associations: associations feed container-credentials mode."""
    client_ca_file: str = ""
    """Ours: require API-server client certificates signed by these CAs (mTLS)."""
    client_allowed_names: tuple[str, ...] = ()
    """Ours: and carrying one of these names (common name or DNS name); empty: any."""
    audit_pods: bool = False
    """Ours: watch Pods and report those without the credentials they should have."""
    audit_exclude_namespaces: tuple[str, ...] = ("kube-system",)
    audit_delete_pods: bool = False
    """Ours: delete reported Pods that a controller recreates (never in kube-system)."""
    audit_delete_interval: float = 10.0
    """At most one deletion per this many seconds."""
    limits: Limits = field(default_factory=Limits)
    cert_validity_warning: float = DEFAULT_CERT_VALIDITY_WARNING
    """Warn when the serving certificate expires within this many seconds (0: never)."""


def _int(text: str) -> int:
    return parse_go_int(text)


def parse_port(text: str) -> int:
    """A TCP port in pflag's int grammar (base prefixes too); every command's port flags."""
    value = parse_go_int(text)
    if not 0 <= value <= 65535:
        raise ValueError("not a TCP port (0-65535)")
    return value


def _str(text: str) -> str:
    return text


def _positive_duration(text: str) -> float:
    value = parse_go_duration(text)
    if value <= 0:
        raise ValueError("must be a positive duration, e.g. 250ms")
    return value


def _non_negative_duration(text: str) -> float:
    value = parse_go_duration(text)
    if value < 0:
        raise ValueError("must not be negative (0 disables the wait)")
    return value


def _endpoint_url(text: str) -> str:
    return parse_endpoint_url(text) if text else ""  # empty: none, the default


def _ca_bundle(text: str) -> ConfigMapKey | None:
    return parse_config_map_key(text) if text else None


def _session_name(text: str) -> SessionName | None:
    return parse_session_name(text)  # ValueError names the problem


def _count(text: str) -> int:
    value = parse_go_int(text)
    if not 1 <= value <= 1_000_000:
        raise ValueError("must be between 1 and 1000000")
    return value


def _annotation_prefix(text: str) -> str:
    if not text:
        raise ValueError("must not be empty (the annotations would be read as /role-arn)")
    return text


def _region(text: str) -> str:
    if text and not _REGION.fullmatch(text):
        raise ValueError(
            "not a region name: letters, digits and inner hyphens, like us-west-2 (the AWS "
            "SDKs refuse anything else)"
        )
    return text


def _days(text: str) -> int:
    value = parse_go_int(text)
    if not 1 <= value <= 3650:
        raise ValueError("must be between 1 and 3650")
    return value


def _log_format(text: str) -> str:
    if text not in ("json", "console"):
        raise ValueError("must be json or console")
    return text


_CC = ContainerCredentialsSettings()
_M = MutationConfig()

#: Upstream's webhook flags, in upstream's order, with our few additions at the end.
SERVER_FLAGS: tuple[FlagSpec, ...] = (
    FlagSpec("port", parse_port, 443, "Port to listen on (HTTPS)", "int"),
    FlagSpec("metrics-port", parse_port, 9999, "Port for /metrics (plain HTTP)", "int"),
    FlagSpec("kubeconfig", _str, "", "(out-of-cluster) Absolute path to a kubeconfig file"),
    FlagSpec("kube-api", _str, "", "(out-of-cluster) The URL of the Kubernetes API server"),
    FlagSpec("tls-key", _str, "/etc/webhook/certs/tls.key", "Serving private key file (PEM)"),
    FlagSpec("tls-cert", _str, "/etc/webhook/certs/tls.crt", "Serving certificate file (PEM)"),
    FlagSpec("tls-cipher-suites", _str, "", "Comma-separated Go TLS 1.2 cipher-suite names"),
    FlagSpec("tls-min-version", _str, "", "Minimum TLS version: 1.2, 1.3, VersionTLS12, ..."),
    FlagSpec(
        "in-cluster",
        parse_go_bool,
        False,
        "Deprecated CSR certificate flow; only false is supported",
        "bool",
    ),
    FlagSpec("service-name", _str, "pod-identity-webhook", "Service name (certificate names)"),
    FlagSpec("namespace", _str, "eks", "Webhook namespace; the ConfigMap is read from it"),
    FlagSpec("tls-secret", _str, "pod-identity-webhook", "Secret name for the CSR flow (unused)"),
)

MUTATION_FLAGS: tuple[FlagSpec, ...] = (
    FlagSpec(
        "annotation-prefix",
        _annotation_prefix,
        _M.annotation_prefix,
        "Prefix of the annotations read",
    ),
    FlagSpec("token-audience", _str, _M.token_audience, "Default audience of the token"),
    FlagSpec("token-mount-path", _str, _M.token_mount_path, "Mount path of the token volume"),
    FlagSpec(
        "token-expiration",
        _int,
        DEFAULT_TOKEN_EXPIRATION,
        "Default token expiration in seconds (at least 600)",
        "int",
    ),
    FlagSpec("aws-default-region", _region, "", "Inject AWS_DEFAULT_REGION and AWS_REGION"),
    FlagSpec(
        "sts-regional-endpoint",
        parse_go_bool,
        False,
        "Inject AWS_STS_REGIONAL_ENDPOINTS=regional by default",
        "bool",
    ),
    FlagSpec(
        "sts-endpoint-url",
        _endpoint_url,
        "",
        "Inject AWS_ENDPOINT_URL_STS (a local STS, e.g. moto or LocalStack in CI); the "
        "ServiceAccount annotation sts-endpoint-url overrides it",
    ),
    FlagSpec(
        "ca-bundle-config-map",
        _ca_bundle,
        None,
        "NAME[/KEY] (key ca.crt by default): mount that ConfigMap key of the Pod's namespace "
        "read-only and inject AWS_CA_BUNDLE; the annotation ca-bundle-config-map overrides it",
    ),
    FlagSpec(
        "watch-config-map",
        parse_go_bool,
        False,
        "Read roles from the pod-identity-webhook ConfigMap",
        "bool",
    ),
    FlagSpec(
        "compose-role-arn",
        parse_go_bool,
        False,
        "Allow a bare role name; account and partition from EC2 metadata",
        "bool",
    ),
    FlagSpec(
        "watch-container-credentials-config",
        _str,
        "",
        "Container-credentials (EKS Pod Identity) identities file",
    ),
    FlagSpec(
        "watch-pod-identity-associations",
        parse_go_bool,
        False,
        "Container-credentials identities from PodIdentityAssociation objects (with the file)",
        "bool",
    ),
    FlagSpec(
        "container-credentials-audience", _str, _CC.audience, "Container-credentials audience"
    ),
    FlagSpec(
        "container-credentials-token-mount-path",
        _str,
        _CC.mount_path,
        "Container-credentials token mount path",
    ),
    FlagSpec(
        "container-credentials-token-volume-name",
        _str,
        _CC.volume_name,
        "Container-credentials token volume name",
    ),
    FlagSpec(
        "container-credentials-token-path",
        _str,
        _CC.token_path,
        "Container-credentials token file name",
    ),
    FlagSpec(
        "container-credentials-full-uri",
        _str,
        _CC.full_uri,
        "Value of AWS_CONTAINER_CREDENTIALS_FULL_URI",
    ),
    FlagSpec(
        "role-session-name",
        _session_name,
        None,
        "Default AWS_ROLE_SESSION_NAME: a name, or fieldRef:metadata.name for the Pod's name "
        "(web identity only; annotations override it)",
    ),
)

RUNTIME_FLAGS: tuple[FlagSpec, ...] = (
    FlagSpec("version", parse_go_bool, False, "Print the version and exit", "bool"),
    FlagSpec(
        "enable-debugging-handlers",
        parse_go_bool,
        False,
        "Serve /debug/alpha/* on the metrics port",
        "bool",
    ),
    FlagSpec(
        "service-account-lookup-grace-period",
        _non_negative_duration,
        DEFAULT_GRACE_PERIOD,
        "How long a cache miss waits for the ServiceAccount (0 disables)",
        "duration",
    ),
    FlagSpec("resync-period", _positive_duration, 60.0, "Informer resync period", "duration"),
    FlagSpec("log-format", _log_format, "json", "Log format: json or console"),
    FlagSpec(
        "service-accounts",
        _str,
        None,
        "ServiceAccounts file (YAML/JSON) instead of the cluster; repeatable",
        "stringArray",
        repeatable=True,
    ),
    FlagSpec("config-map", _str, "", "pod-identity-webhook ConfigMap manifest file"),
    FlagSpec(
        "cert-bootstrap",
        parse_go_bool,
        False,
        "Keep the serving pair in --tls-secret and the caBundle of --webhook-configuration "
        "in step, without cert-manager",
        "bool",
    ),
    FlagSpec(
        "webhook-configuration",
        _str,
        "",
        "MutatingWebhookConfiguration whose caBundle must trust the served certificate "
        "(checked, and with --cert-bootstrap kept in step; default pod-identity-webhook then)",
    ),
    FlagSpec("cert-validity-days", _days, 365, "Lifetime of bootstrapped certificates", "int"),
    FlagSpec(
        "cert-extra-names",
        _str,
        "",
        "Comma-separated DNS names or IP addresses added to bootstrapped certificates",
    ),
    FlagSpec(
        "audit-pods",
        parse_go_bool,
        False,
        "Watch Pods; report (metric, Event) those without the credentials the webhook would "
        "give them now",
        "bool",
    ),
    FlagSpec(
        "audit-exclude-namespaces",
        _str,
        "kube-system",
        "Comma-separated namespaces the Pod audit ignores (as the webhook configuration does)",
    ),
    FlagSpec(
        "audit-delete-pods",
        parse_go_bool,
        False,
        "Delete reported Pods that have a controller, so they are recreated through the "
        "webhook (never in kube-system); needs --audit-pods",
        "bool",
    ),
    FlagSpec(
        "audit-delete-interval",
        _positive_duration,
        10.0,
        "At most one Pod deletion per this interval",
        "duration",
    ),
    FlagSpec(
        "client-ca-file",
        _str,
        "",
        "Require a client certificate signed by these CAs (PEM) in the TLS handshake: the API "
        "server's; reloaded when it changes",
    ),
    FlagSpec(
        "client-allowed-names",
        _str,
        "",
        "Comma-separated names (common name or DNS name) one of which a client certificate "
        "must carry; needs --client-ca-file",
    ),
    FlagSpec(
        "cert-validity-warning",
        _non_negative_duration,
        DEFAULT_CERT_VALIDITY_WARNING,
        "Warn (log and metric) when the serving certificate expires within this (0 never)",
        "duration",
    ),
)

_L = Limits()

#: Ours: what a connection may cost, and how a stop drains (README "Limits").
CONNECTION_FLAGS: tuple[FlagSpec, ...] = (
    FlagSpec(
        "header-timeout",
        _positive_duration,
        _L.header_timeout,
        "Time for a new connection's TLS handshake and for a request's headers",
        "duration",
    ),
    FlagSpec(
        "body-timeout",
        _positive_duration,
        _L.body_timeout,
        "Time for a request's body once its headers are in (then 408)",
        "duration",
    ),
    FlagSpec(
        "idle-timeout",
        _positive_duration,
        _L.idle_timeout,
        "Close a keep-alive connection idle this long (keep it above the API server's 90s)",
        "duration",
    ),
    FlagSpec(
        "max-connections",
        _count,
        _L.max_connections,
        "Open connections at most; then the longest-idle one is closed for a new one, or "
        "new ones wait in the listen backlog",
        "int",
    ),
    FlagSpec(
        "listen-backlog",
        _count,
        _L.listen_backlog,
        "Connections the kernel queues before they are accepted (capped by somaxconn)",
        "int",
    ),
    FlagSpec(
        "release-tls-buffers",
        parse_go_bool,
        _L.release_tls_buffers,
        "Give the memory of an idle TLS connection's empty read buffers back to the kernel "
        "(Linux, CPython; false turns it off)",
        "bool",
    ),
    FlagSpec(
        "shutdown-delay",
        _non_negative_duration,
        _L.shutdown_delay,
        "After SIGTERM, keep serving this long (/readyz says 503) while the endpoint removal "
        "reaches the API servers, then drain; SIGINT skips it",
        "duration",
    ),
)


def _failure_policy(text: str) -> str:
    if text not in ("ignore", "deny"):
        raise ValueError("must be ignore or deny")
    return text


#: Ours, for security teams: the role policy and extension rules (serve and mutate).
EXTENSION_FLAGS: tuple[FlagSpec, ...] = (
    FlagSpec("policy", _str, "", "Role policy file (YAML); reloaded when it changes"),
    FlagSpec(
        "rule",
        _str,
        None,
        "Extension rule: an installed entry-point name or module:callable; repeatable",
        "stringArray",
        repeatable=True,
    ),
    FlagSpec("rule-timeout", _positive_duration, 0.25, "Time limit of one rule", "duration"),
    FlagSpec(
        "rule-failure-policy",
        _failure_policy,
        "ignore",
        "A rule that fails or times out: ignore it (fail-open) or deny the Pod",
    ),
)

#: klog's flags: accepted so upstream command lines keep working; only -v/--v is used.
KLOG_FLAGS: tuple[FlagSpec, ...] = (
    FlagSpec("v", _int, 0, "Log verbosity (4 or more logs debug lines)", "int", shorthand="v"),
    *(
        FlagSpec(
            name, parse_go_bool, default, "klog flag (accepted, unused)", "bool", accepted_only=True
        )
        for name, default in (
            ("logtostderr", True),
            ("alsologtostderr", False),
            ("legacy_stderr_threshold_behavior", True),
            ("add_dir_header", False),
            ("skip_headers", False),
            ("one_output", False),
            ("skip_log_headers", False),
        )
    ),
    *(
        FlagSpec(name, _str, "", "klog flag (accepted, unused)", accepted_only=True)
        for name in (
            "log_dir",
            "log_file",
            "stderrthreshold",
            "alsologtostderrthreshold",
            "vmodule",
            "log_backtrace_at",
        )
    ),
    FlagSpec(
        "log_file_max_size", _int, 1800, "klog flag (accepted, unused)", "int", accepted_only=True
    ),
)

HELP_FLAG = FlagSpec("help", parse_go_bool, False, "Show this help", "bool", shorthand="h")

ALL_SERVE_FLAGS: tuple[FlagSpec, ...] = (
    SERVER_FLAGS
    + MUTATION_FLAGS
    + RUNTIME_FLAGS
    + CONNECTION_FLAGS
    + EXTENSION_FLAGS
    + KLOG_FLAGS
    + (HELP_FLAG,)
)


def serve_usage() -> str:
    return usage(ALL_SERVE_FLAGS)


def mutation_config(values: dict[str, Any]) -> MutationConfig:
    """MutationConfig from parsed flag values (names as on the command line)."""
    return MutationConfig(
        annotation_prefix=values["annotation-prefix"],
        token_audience=values["token-audience"],
        token_mount_path=values["token-mount-path"],
        token_expiration=max(MIN_TOKEN_EXPIRATION, values["token-expiration"]),
        region=values["aws-default-region"],
        sts_regional_endpoint=values["sts-regional-endpoint"],
        sts_endpoint_url=values["sts-endpoint-url"],
        ca_bundle=values["ca-bundle-config-map"],
        compose_role_arn=values["compose-role-arn"],
        container_credentials=ContainerCredentialsSettings(
            audience=values["container-credentials-audience"],
            mount_path=values["container-credentials-token-mount-path"],
            volume_name=values["container-credentials-token-volume-name"],
            token_path=values["container-credentials-token-path"],
            full_uri=values["container-credentials-full-uri"],
        ),
        session_name=values["role-session-name"],
    )


def mutation_notices(values: dict[str, Any]) -> tuple[Notice, ...]:
    """What `mutation_config` changed from the flags as given."""
    given = values["token-expiration"]
    if given >= MIN_TOKEN_EXPIRATION:
        return ()
    return (
        Notice(
            "token_expiration_raised",
            f"--token-expiration={given} raised to {MIN_TOKEN_EXPIRATION} seconds, the "
            "shortest lifetime the API server issues",
        ),
    )


def _positional_notices(positional: Sequence[str]) -> tuple[Notice, ...]:
    if not positional:
        return ()
    return (
        Notice(
            "arguments_ignored",
            f"ignored the arguments {list(positional)} as upstream does; a bool flag takes "
            "its value only after = (--flag=false)",
        ),
    )


def _names(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())


def _grace_period(values: dict[str, Any], explicit: frozenset[str]) -> float:
    """ServiceAccounts from files arrive only when a file changes: no watch or live GET can
    deliver a missing one, so a miss answers at once unless the flag asks for a wait."""
    name = "service-account-lookup-grace-period"
    if values["service-accounts"] and name not in explicit:
        return 0.0
    grace: float = values[name]
    return grace


def config_from_argv(argv: Sequence[str]) -> tuple[Config, bool, bool]:
    """Build the Config; returns (config, wants_help, wants_version). Raises ConfigError."""
    try:
        parsed = parse_args(argv, ALL_SERVE_FLAGS)
    except FlagError as exc:
        raise ConfigError(str(exc)) from None
    values = parsed.values
    if values["in-cluster"]:
        raise ConfigError(
            "--in-cluster=true selected the certificate-signing-request flow, which no longer "
            "works on current clusters; pass --in-cluster=false with --tls-cert/--tls-key "
            "(cert-manager, or `pod-identity-webhook certs`)"
        )
    if values["audit-delete-pods"] and not values["audit-pods"]:
        raise ConfigError("--audit-delete-pods needs --audit-pods (the audit finds the Pods)")
    if values["client-allowed-names"] and not values["client-ca-file"]:
        raise ConfigError("--client-allowed-names needs --client-ca-file (the CAs to verify with)")
    config = Config(
        mutation=mutation_config(values),
        port=values["port"],
        metrics_port=values["metrics-port"],
        kubeconfig=values["kubeconfig"],
        kube_api=values["kube-api"],
        tls_cert=values["tls-cert"],
        tls_key=values["tls-key"],
        tls_cipher_suites=parse_cipher_suites(values["tls-cipher-suites"]),
        tls_min_version=parse_tls_min_version(values["tls-min-version"]),
        namespace=values["namespace"],
        service_name=values["service-name"],
        tls_secret=values["tls-secret"],
        watch_config_map=values["watch-config-map"],
        container_credentials_file=values["watch-container-credentials-config"],
        enable_debugging_handlers=values["enable-debugging-handlers"],
        grace_period=_grace_period(values, parsed.explicit),
        resync_period=values["resync-period"],
        verbosity=values["v"],
        log_format=values["log-format"],
        service_accounts_files=tuple(values["service-accounts"]),
        config_map_file=values["config-map"],
        cert_bootstrap=values["cert-bootstrap"],
        webhook_configuration=values["webhook-configuration"]
        or ("pod-identity-webhook" if values["cert-bootstrap"] else ""),
        cert_validity_days=values["cert-validity-days"],
        cert_extra_names=_names(values["cert-extra-names"]),
        audit_pods=values["audit-pods"],
        audit_exclude_namespaces=_names(values["audit-exclude-namespaces"]),
        audit_delete_pods=values["audit-delete-pods"],
        audit_delete_interval=values["audit-delete-interval"],
        client_ca_file=values["client-ca-file"],
        client_allowed_names=_names(values["client-allowed-names"]),
        policy_file=values["policy"],
        rules=tuple(values["rule"]),
        rule_timeout=values["rule-timeout"],
        rule_failure_policy=values["rule-failure-policy"],
        pod_identity_associations=values["watch-pod-identity-associations"],
        limits=Limits(
            header_timeout=values["header-timeout"],
            body_timeout=values["body-timeout"],
            idle_timeout=values["idle-timeout"],
            max_connections=values["max-connections"],
            listen_backlog=values["listen-backlog"],
            shutdown_delay=values["shutdown-delay"],
            release_tls_buffers=values["release-tls-buffers"],
        ),
        cert_validity_warning=values["cert-validity-warning"],
        ignored_flags=tuple(
            sorted(
                spec.name
                for spec in KLOG_FLAGS
                if spec.accepted_only and spec.name in parsed.explicit
            )
        ),
        notices=mutation_notices(values) + _positional_notices(parsed.positional),
    )
    return config, values["help"], values["version"]
