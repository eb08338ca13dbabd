"""The node agent's typed configuration and flags."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from webhook.config import parse_port
from webhook.errors import ConfigError, FlagError
from webhook.flags import FlagSpec, parse_args
from webhook.gocompat import parse_go_bool, parse_go_duration
from webhook.podidentity.wire import CLUSTER_NAME

__all__ = ["AGENT_FLAGS", "AgentConfig", "Listen", "agent_config", "parse_listen"]

DEFAULT_LISTEN = ("169.254.170.23:80", "[fd00:ec2::23]:80")
# Health and metrics: outside the kubelet's and kube-proxy's 10248-10260, the NodePort range
# (30000-32767), Linux's ephemeral range (32768-60999), and the 2703/2705 pair of AWS's agent,
# which clashed with other node software. Both are flags.
DEFAULT_HEALTH_PORT = 19703
DEFAULT_METRICS_PORT = 19705


@dataclass(frozen=True, slots=True)
class Listen:
    host: str
    port: int

    @property
    def address(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        return ipaddress.ip_address(self.host)

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_listen(text: str) -> Listen:
    """`IPv4:port` or `[IPv6]:port`; the address must be an IP literal."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) <= 65535:
        raise ValueError("must be ADDRESS:PORT, e.g. 169.254.170.23:80 or [fd00:ec2::23]:80")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{host!r} is not an IP address") from None
    return Listen(str(address), int(port))


@dataclass(frozen=True, slots=True)
class AgentConfig:
    broker_url: str
    cluster_name: str
    token_file: str = "/var/run/secrets/pod-identity-agent/token"
    broker_ca: str = ""
    listen: tuple[Listen, ...] = tuple(parse_listen(t) for t in DEFAULT_LISTEN)
    interface: str = "pod-id-link0"
    setup_link: bool = True
    node_name: str = ""
    health_port: int = DEFAULT_HEALTH_PORT
    metrics_port: int = DEFAULT_METRICS_PORT
    health_host: str = "0.0.0.0"  # noqa: S104 - the kubelet probes the node's address
    refresh_margin: float = 20 * 60.0
    broker_timeout: float = 10.0
    log_format: str = "json"
    verbosity: int = 0


def _cluster(text: str) -> str:
    if not CLUSTER_NAME.fullmatch(text):
        raise ValueError("letters, digits, - and _, 1-100 characters")
    return text


def _url(text: str) -> str:
    if not text.startswith("https://"):
        raise ValueError("the broker is reached over TLS: https://HOST[:PORT]")
    return text.rstrip("/")


AGENT_FLAGS: tuple[FlagSpec, ...] = (
    FlagSpec("broker-url", _url, "", "The broker's EKS Auth endpoint, https://HOST[:PORT]"),
    FlagSpec("broker-ca", str, "", "CA bundle that signed the broker's certificate (PEM)"),
    FlagSpec("cluster-name", _cluster, "", "Cluster name, as the broker's --cluster-name"),
    FlagSpec(
        "token-file",
        str,
        "/var/run/secrets/pod-identity-agent/token",
        "The agent's own projected token (audience pod-identity-broker), re-read as it rotates",
    ),
    FlagSpec(
        "listen",
        parse_listen,
        None,
        "Address:port serving /v1/credentials; repeatable (default 169.254.170.23:80 and "
        "[fd00:ec2::23]:80)",
        "stringArray",
        repeatable=True,
    ),
    FlagSpec("interface", str, "pod-id-link0", "Dummy link that carries the listen addresses"),
    FlagSpec(
        "setup-link",
        parse_go_bool,
        True,
        "Create the link and add the addresses (needs CAP_NET_ADMIN)",
        "bool",
    ),
    FlagSpec("node-name", str, "", "This node's name (sent as eksNodeName)"),
    FlagSpec("health-port", parse_port, DEFAULT_HEALTH_PORT, "Port of /healthz and /readyz", "int"),
    FlagSpec("metrics-port", parse_port, DEFAULT_METRICS_PORT, "Port of /metrics", "int"),
    FlagSpec("health-address", str, "0.0.0.0", "Address of the health and metrics ports"),  # noqa: S104
    FlagSpec(
        "refresh-margin",
        parse_go_duration,
        20 * 60.0,
        "Cached credentials are fetched anew this long before they expire (the SDKs refresh "
        "15 minutes before)",
        "duration",
    ),
    FlagSpec(
        "broker-timeout", parse_go_duration, 10.0, "Time limit of one broker call", "duration"
    ),
    FlagSpec("log-format", str, "json", "json or console"),
    FlagSpec("v", lambda t: int(t, 10), 0, "Log verbosity (4 or more logs debug lines)", "int"),
    FlagSpec("help", parse_go_bool, False, "Show this help", "bool", shorthand="h"),
)


def agent_config(argv: Sequence[str]) -> tuple[AgentConfig, bool]:
    try:
        parsed = parse_args(argv, AGENT_FLAGS)
    except FlagError as exc:
        raise ConfigError(str(exc)) from None
    values = parsed.values
    if values["help"]:
        return AgentConfig(broker_url="", cluster_name=""), True
    if parsed.positional:
        raise ConfigError(f"unexpected argument {parsed.positional[0]!r}")
    for name in ("broker-url", "cluster-name"):
        if not values[name]:
            raise ConfigError(f"--{name} is required")
    if values["log-format"] not in ("json", "console"):
        raise ConfigError("--log-format must be json or console")
    listen = tuple(values["listen"]) or tuple(parse_listen(t) for t in DEFAULT_LISTEN)
    return (
        AgentConfig(
            broker_url=values["broker-url"],
            cluster_name=values["cluster-name"],
            token_file=values["token-file"],
            broker_ca=values["broker-ca"],
            listen=listen,
            interface=values["interface"],
            setup_link=values["setup-link"],
            node_name=values["node-name"],
            health_port=values["health-port"],
            metrics_port=values["metrics-port"],
            health_host=values["health-address"],
            refresh_margin=values["refresh-margin"],
            broker_timeout=values["broker-timeout"],
            log_format=values["log-format"],
            verbosity=values["v"],
        ),
        False,
    )
