"""The typed configuration built from upstream's command line."""

from __future__ import annotations

import pytest

from webhook.config import (
    ALL_SERVE_FLAGS,
    CIPHER_SUITES,
    Config,
    config_from_argv,
    parse_cipher_suites,
    parse_tls_min_version,
    serve_usage,
)
from webhook.errors import ConfigError

UPSTREAM_FLAGS = {
    "port": 443,
    "metrics-port": 9999,
    "kubeconfig": "",
    "kube-api": "",
    "tls-key": "/etc/webhook/certs/tls.key",
    "tls-cert": "/etc/webhook/certs/tls.crt",
    "tls-cipher-suites": "",
    "tls-min-version": "",
    "in-cluster": False,
    "service-name": "pod-identity-webhook",
    "namespace": "eks",
    "tls-secret": "pod-identity-webhook",
    "annotation-prefix": "eks.amazonaws.com",
    "token-audience": "sts.amazonaws.com",
    "token-mount-path": "/var/run/secrets/eks.amazonaws.com/serviceaccount",
    "token-expiration": 86400,
    "aws-default-region": "",
    "sts-regional-endpoint": False,
    "watch-config-map": False,
    "compose-role-arn": False,
    "watch-container-credentials-config": "",
    "container-credentials-audience": "pods.eks.amazonaws.com",
    "container-credentials-token-mount-path": "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount",
    "container-credentials-token-volume-name": "eks-pod-identity-token",
    "container-credentials-token-path": "eks-pod-identity-token",
    "container-credentials-full-uri": "http://169.254.170.23/v1/credentials",
    "version": False,
    "enable-debugging-handlers": False,
    "resync-period": 60.0,
}
KLOG = [
    "log_dir",
    "log_file",
    "log_file_max_size",
    "logtostderr",
    "alsologtostderr",
    "legacy_stderr_threshold_behavior",
    "v",
    "add_dir_header",
    "skip_headers",
    "one_output",
    "skip_log_headers",
    "stderrthreshold",
    "alsologtostderrthreshold",
    "vmodule",
    "log_backtrace_at",
]


def test_every_upstream_flag_exists_with_its_default():
    specs = {spec.name: spec for spec in ALL_SERVE_FLAGS}
    for name, default in UPSTREAM_FLAGS.items():
        assert specs[name].default == default, name
    for name in KLOG:
        assert name in specs


def test_help_lists_every_flag():
    text = serve_usage()
    for spec in ALL_SERVE_FLAGS:
        assert f"--{spec.name}" in text


def test_defaults_give_the_default_config():
    config, wants_help, wants_version = config_from_argv([])
    assert config == Config()
    assert (wants_help, wants_version) == (False, False)
    assert config.grace_period == 2.0


def test_upstream_deployment_command_line_is_accepted():
    argv = [
        "--in-cluster=false",
        "--namespace=default",
        "--service-name=pod-identity-webhook",
        "--annotation-prefix=eks.amazonaws.com",
        "--token-audience=sts.amazonaws.com",
        "--logtostderr",
        "--port",
        "0x20FB",
        "--resync-period=1m30s",
        "--service-account-lookup-grace-period=0",
        "-v=4",
        "--vmodule=x=1",
    ]
    config, _, _ = config_from_argv(argv)
    assert config.port == 8443
    assert config.namespace == "default"
    assert config.resync_period == 90.0
    assert config.grace_period == 0.0
    assert config.verbosity == 4
    assert config.ignored_flags == ("logtostderr", "vmodule")


def test_token_expiration_is_clamped_to_ten_minutes_and_said_so():
    config, _, _ = config_from_argv(["--token-expiration=60"])
    assert config.mutation.token_expiration == 600
    assert [n.event for n in config.notices] == ["token_expiration_raised"]
    assert "--token-expiration=60 raised to 600" in config.notices[0].message
    assert config_from_argv(["--token-expiration=600"])[0].notices == ()


def test_stray_arguments_are_ignored_like_upstream_but_said_so():
    config, _, _ = config_from_argv(["--sts-regional-endpoint", "false"])
    assert config.mutation.sts_regional_endpoint is True  # pflag: bools take =value only
    assert [n.event for n in config.notices] == ["arguments_ignored"]
    assert "--flag=false" in config.notices[0].message


def test_mutation_flags_reach_the_mutation_config():
    config, _, _ = config_from_argv(
        [
            "--aws-default-region=eu-west-1",
            "--sts-regional-endpoint",
            "--container-credentials-full-uri=http://[fd00:ec2::23]/v1/credentials",
            "--annotation-prefix=example.com",
        ]
    )
    assert config.mutation.region == "eu-west-1"
    assert config.mutation.sts_regional_endpoint is True
    assert config.mutation.annotation_prefix == "example.com"
    assert config.mutation.container_credentials.full_uri.startswith("http://[fd00")


def test_our_own_flags_reach_the_config():
    config, _, _ = config_from_argv(
        ["--cert-validity-days=0x1e", "--log-format=console", "--rule-failure-policy=deny"]
    )
    assert (config.cert_validity_days, config.log_format, config.rule_failure_policy) == (
        30,
        "console",
        "deny",
    )


def test_in_cluster_true_is_refused_with_a_pointer():
    with pytest.raises(ConfigError, match="cert-manager"):
        config_from_argv(["--in-cluster"])


def test_deleting_pods_needs_the_audit_that_finds_them():
    with pytest.raises(ConfigError, match="--audit-delete-pods needs --audit-pods"):
        config_from_argv(["--audit-delete-pods"])
    config, _, _ = config_from_argv(["--audit-pods", "--audit-delete-pods"])
    assert (config.audit_pods, config.audit_delete_pods) == (True, True)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--port=http"], "--port"),
        (["--port=70000"], "--port"),
        (["--resync-period=60"], "--resync-period"),
        (["--token-expiration=1h"], "--token-expiration"),
        (["--log-format=xml"], "--log-format"),
        (["--tls-min-version=1.4"], "Invalid value for tls-min-version unsupported version 1.4"),
        (
            ["--tls-cipher-suites=TLS_FAKE"],
            "invalid tls-cipher-suites: unsupported cipher suite: TLS_FAKE",
        ),
        (["--unknown"], "unknown flag: --unknown"),
        (["--rule-timeout=-1s"], "--rule-timeout"),
        (["--rule-timeout=0"], "--rule-timeout"),
        (["--service-account-lookup-grace-period=-1s"], "--service-account-lookup-grace-period"),
        (["--resync-period=0"], "--resync-period"),
        (["--resync-period=-5m"], "--resync-period"),
        (["--cert-validity-days=0"], "--cert-validity-days"),
        (["--cert-validity-days=3651"], "--cert-validity-days"),
        (["--rule-failure-policy=open"], "--rule-failure-policy"),
        (["--annotation-prefix="], "--annotation-prefix"),
        (["--aws-default-region=us west 2"], "--aws-default-region"),
        (["--aws-default-region=us-west-2 "], "--aws-default-region"),
        (["--aws-default-region=-us-west-2"], "--aws-default-region"),
        (["--aws-default-region=us_west_2"], "--aws-default-region"),
        (["--aws-default-region=" + "a" * 64], "--aws-default-region"),
        (["--header-timeout=0"], "--header-timeout"),
        (["--body-timeout=-1s"], "--body-timeout"),
        (["--idle-timeout=0s"], "--idle-timeout"),
        (["--max-connections=0"], "--max-connections"),
        (["--max-connections=lots"], "--max-connections"),
        (["--listen-backlog=0"], "--listen-backlog"),
        (["--shutdown-delay=-1s"], "--shutdown-delay"),
        (["--cert-validity-warning=-1h"], "--cert-validity-warning"),
    ],
)
def test_invalid_values_name_the_flag(argv, message):
    with pytest.raises(ConfigError) as caught:
        config_from_argv(argv)
    assert message in str(caught.value)


@pytest.mark.parametrize("text", ["1.0", "1.1", "1.2", "1.3", "VersionTLS10", "VersionTLS13"])
def test_upstream_tls_versions(text):
    assert parse_tls_min_version(text).startswith("1.")


@pytest.mark.parametrize("text", ["1.4", "TLS1.2", " 1.2", "versiontls12"])
def test_other_tls_versions_fail(text):
    with pytest.raises(ConfigError):
        parse_tls_min_version(text)


def test_cipher_list_grammar():
    assert parse_cipher_suites("") == ()
    assert parse_cipher_suites(" , ,") == ()
    assert parse_cipher_suites(" TLS_AES_128_GCM_SHA256 ,,TLS_RSA_WITH_RC4_128_SHA") == (
        "TLS_AES_128_GCM_SHA256",
        "TLS_RSA_WITH_RC4_128_SHA",
    )
    assert len(CIPHER_SUITES) == 25
    with pytest.raises(ConfigError):
        parse_cipher_suites("TLS_AES_128_GCM_SHA256,nope")


@pytest.mark.parametrize(
    "region", ["us-west-2", "eu-central-1", "cn-north-1", "us-gov-west-1", "x"]
)
def test_region_names_are_accepted(region):
    config, _, _ = config_from_argv([f"--aws-default-region={region}"])
    assert config.mutation.region == region


def test_connection_limits_and_the_shutdown_delay_come_from_their_flags():
    config, _, _ = config_from_argv(
        [
            "--header-timeout=3s",
            "--body-timeout=4s",
            "--idle-timeout=2m",
            "--max-connections=0x100",
            "--listen-backlog=512",
            "--shutdown-delay=0",
            "--cert-validity-warning=168h",
        ]
    )
    limits = config.limits
    assert (limits.header_timeout, limits.body_timeout, limits.idle_timeout) == (3.0, 4.0, 120.0)
    assert (limits.max_connections, limits.listen_backlog) == (256, 512)
    assert limits.shutdown_delay == 0.0
    assert config.cert_validity_warning == 7 * 86400
    assert limits.release_tls_buffers is True


def test_release_tls_buffers_can_be_turned_off():
    config, _, _ = config_from_argv(["--release-tls-buffers=false"])
    assert config.limits.release_tls_buffers is False
    with pytest.raises(ConfigError):
        config_from_argv(["--release-tls-buffers=maybe"])


def test_with_service_accounts_from_files_a_miss_does_not_wait_unless_asked():
    """Issue 19, item 7: no watch or live GET can deliver a ServiceAccount missing from a file."""
    files, _, _ = config_from_argv(["--service-accounts=sa.yaml"])
    asked, _, _ = config_from_argv(
        ["--service-accounts=sa.yaml", "--service-account-lookup-grace-period=1s"]
    )
    cluster, _, _ = config_from_argv([])
    assert (files.grace_period, asked.grace_period, cluster.grace_period) == (0.0, 1.0, 2.0)
