"""The broker's typed configuration and flags (Go grammar, as the webhook's)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from webhook.config import parse_port, parse_tls_min_version
from webhook.errors import ConfigError, FlagError
from webhook.flags import FlagSpec, parse_args
from webhook.gocompat import parse_go_bool, parse_go_duration
from webhook.irsa.trustpolicy import parse_service_account
from webhook.podidentity.wire import AUDIENCE, CLUSTER_NAME

__all__ = ["BROKER_FLAGS", "BrokerConfig", "broker_config"]

DEFAULT_AGENT = ("kube-system", "pod-identity-agent")
DEFAULT_AGENT_AUDIENCE = "pod-identity-broker"


@dataclass(frozen=True, slots=True)
class BrokerConfig:
    cluster_name: str
    cluster_arn: str = ""
    """Empty: arn:<partition>:eks:<region>:<account of the broker's credentials>:cluster/<name>."""
    port: int = 8443
    metrics_port: int = 9990
    tls_cert: str = "/etc/broker/certs/tls.crt"
    tls_key: str = "/etc/broker/certs/tls.key"
    tls_min_version: str = "1.2"
    kubeconfig: str = ""
    kube_api: str = ""
    audience: str = AUDIENCE
    agent_audience: str = DEFAULT_AGENT_AUDIENCE
    agent_service_accounts: tuple[tuple[str, str], ...] = (DEFAULT_AGENT,)
    require_agent_token: bool = True
    region: str = ""
    sts_endpoint: str = ""
    session_duration: int = 3600
    refresh_margin: float = 25 * 60.0
    sts_qps: float = 20.0
    sts_burst: int = 40
    sts_wait: float = 5.0
    policy_file: str = ""
    status_interval: float = 30.0
    resync_period: float = 60.0
    log_format: str = "json"
    verbosity: int = 0


def _duration_seconds(text: str) -> int:
    value = int(text, 10)
    if not 900 <= value <= 43200:
        raise ValueError("STS takes 900 to 43200 seconds")
    return value


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise ValueError("must be above 0")
    return value


def _cluster(text: str) -> str:
    if not CLUSTER_NAME.fullmatch(text):
        raise ValueError("letters, digits, - and _, 1-100 characters")
    return text


def _log_format(text: str) -> str:
    if text not in ("json", "console"):
        raise ValueError("must be json or console")
    return text


BROKER_FLAGS: tuple[FlagSpec, ...] = (
    FlagSpec("cluster-name", _cluster, "", "Cluster name: the eks-cluster-name tag (required)"),
    FlagSpec("cluster-arn", str, "", "eks-cluster-arn tag (default: built from the account)"),
    FlagSpec("port", parse_port, 8443, "HTTPS port of the EKS Auth API", "int"),
    FlagSpec("metrics-port", parse_port, 9990, "Port for /metrics (plain HTTP)", "int"),
    FlagSpec("tls-cert", str, "/etc/broker/certs/tls.crt", "Serving certificate (PEM)"),
    FlagSpec("tls-key", str, "/etc/broker/certs/tls.key", "Serving private key (PEM)"),
    FlagSpec("tls-min-version", str, "", "Minimum TLS version (default 1.2)"),
    FlagSpec("kubeconfig", str, "", "kubeconfig file (default: in-cluster)"),
    FlagSpec("kube-api", str, "", "Kubernetes API server URL"),
    FlagSpec("audience", str, AUDIENCE, "Audience of the Pods' tokens"),
    FlagSpec(
        "agent-audience", str, DEFAULT_AGENT_AUDIENCE, "Audience of the node agents' own tokens"
    ),
    FlagSpec(
        "agent-service-account",
        parse_service_account,
        None,
        "namespace:name of the node agent's ServiceAccount; repeatable "
        "(default kube-system:pod-identity-agent)",
        "stringArray",
        repeatable=True,
    ),
    FlagSpec(
        "require-agent-token",
        parse_go_bool,
        True,
        "Callers must send an agent's Pod-bound token, and get only the credentials of Pods on "
        "their node; false accepts any caller (AWS's agent; weaker, see the docs)",
        "bool",
    ),
    FlagSpec("region", str, "", "STS region (default: AWS_REGION or the SDK's configuration)"),
    FlagSpec("sts-endpoint", str, "", "STS endpoint URL (default: the regional endpoint)"),
    FlagSpec("session-duration", _duration_seconds, 3600, "Credential lifetime, seconds", "int"),
    FlagSpec(
        "refresh-margin",
        parse_go_duration,
        25 * 60.0,
        "Cached credentials are renewed this long before they expire (at most half a session)",
        "duration",
    ),
    FlagSpec("sts-qps", _positive, 20.0, "STS AssumeRole calls per second, at most", "float"),
    FlagSpec("sts-burst", lambda t: int(_positive(t)), 40, "STS calls allowed at once", "int"),
    FlagSpec(
        "sts-wait",
        parse_go_duration,
        5.0,
        "How long a request waits for the STS rate bound before ThrottlingException",
        "duration",
    ),
    FlagSpec("policy", str, "", "Role policy file (YAML), as the webhook's --policy"),
    FlagSpec(
        "status-interval",
        parse_go_duration,
        30.0,
        "Least time between two status writes of one association",
        "duration",
    ),
    FlagSpec("resync-period", parse_go_duration, 60.0, "Association watch window", "duration"),
    FlagSpec("log-format", _log_format, "json", "json or console"),
    FlagSpec("v", lambda t: int(t, 10), 0, "Log verbosity (4 or more logs debug lines)", "int"),
    FlagSpec("help", parse_go_bool, False, "Show this help", "bool", shorthand="h"),
)


def broker_config(argv: Sequence[str]) -> tuple[BrokerConfig, bool]:
    """(config, wants_help); ConfigError for a bad command line."""
    try:
        parsed = parse_args(argv, BROKER_FLAGS)
    except FlagError as exc:
        raise ConfigError(str(exc)) from None
    values = parsed.values
    if values["help"]:
        return BrokerConfig(cluster_name="help"), True
    if parsed.positional:
        raise ConfigError(f"unexpected argument {parsed.positional[0]!r}")
    if not values["cluster-name"]:
        raise ConfigError("--cluster-name is required (the eks-cluster-name session tag)")
    if values["refresh-margin"] >= values["session-duration"]:
        raise ConfigError(
            "--refresh-margin must be shorter than --session-duration, or nothing is ever cached"
        )
    agents = tuple(values["agent-service-account"]) or (DEFAULT_AGENT,)
    if any("*" in part or "?" in part for pair in agents for part in pair):
        raise ConfigError("--agent-service-account takes an exact namespace:name")
    return (
        BrokerConfig(
            cluster_name=values["cluster-name"],
            cluster_arn=values["cluster-arn"],
            port=values["port"],
            metrics_port=values["metrics-port"],
            tls_cert=values["tls-cert"],
            tls_key=values["tls-key"],
            tls_min_version=parse_tls_min_version(values["tls-min-version"]),
            kubeconfig=values["kubeconfig"],
            kube_api=values["kube-api"],
            audience=values["audience"],
            agent_audience=values["agent-audience"],
            agent_service_accounts=agents,
            require_agent_token=values["require-agent-token"],
            region=values["region"],
            sts_endpoint=values["sts-endpoint"],
            session_duration=values["session-duration"],
            refresh_margin=values["refresh-margin"],
            sts_qps=values["sts-qps"],
            sts_burst=values["sts-burst"],
            sts_wait=values["sts-wait"],
            policy_file=values["policy"],
            status_interval=values["status-interval"],
            resync_period=values["resync-period"],
            log_format=values["log-format"],
            verbosity=values["v"],
        ),
        False,
    )
