"""The Helm chart's options beyond the shared variants, and its values schema."""

from __future__ import annotations

import base64
import itertools
import json
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.deploy.rendering import (
    CHART,
    NAME,
    UPSTREAM_SELECTOR,
    Renderer,
    container,
    of_kind,
    one,
)


def _hook(objects: list[dict[str, object]]) -> dict[str, object]:
    (hook,) = one(objects, "MutatingWebhookConfiguration")["webhooks"]
    result: dict[str, object] = hook
    return result


def _template(helm: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(helm), "template", NAME, str(CHART), "--namespace", "pod-identity-webhook", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_chart_lints_strictly(helm: Path) -> None:
    result = subprocess.run(
        [str(helm), "lint", "--strict", str(CHART)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_default_values_are_valid_against_the_schema() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
    import yaml

    values = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    # Every top-level value is described (the schema forbids unknown keys).
    assert set(values) <= set(schema["properties"])
    assert schema["additionalProperties"] is False


def test_release_name_names_every_object(renderer: Renderer, helm: Path) -> None:
    objects = renderer.helm_template(release="piw")
    assert one(objects, "Deployment")["metadata"]["name"] == "piw-pod-identity-webhook"
    assert one(objects, "Service")["metadata"]["name"] == "piw-pod-identity-webhook"
    hook = _hook(objects)
    assert hook["clientConfig"] == {
        "service": {
            "name": "piw-pod-identity-webhook",
            "namespace": "pod-identity-webhook",
            "path": "/mutate",
            "port": 443,
        }
    }
    certificate = one(objects, "Certificate", "piw-pod-identity-webhook")
    assert certificate["spec"]["dnsNames"][0] == "piw-pod-identity-webhook"
    assert certificate["spec"]["secretName"] == "piw-pod-identity-webhook-cert"


def test_upstream_compatible_names_do_not_follow_the_release_name(
    renderer: Renderer, helm: Path
) -> None:
    objects = renderer.helm_template(
        "--set", "upstreamCompatible=true", release="other", namespace="default"
    )
    for obj in objects:
        if obj["kind"] in {"Issuer", "Certificate"}:
            continue
        assert obj["metadata"]["name"].startswith(NAME), obj["kind"]
    deployment = one(objects, "Deployment")
    assert deployment["metadata"]["name"] == NAME
    assert deployment["spec"]["selector"] == {"matchLabels": UPSTREAM_SELECTOR}
    assert container(deployment)["command"] == [NAME]
    assert one(objects, "Certificate", NAME)["spec"]["secretName"] == "pod-identity-webhook-cert"
    assert "namespaceSelector" not in _hook(objects)


def test_fail_closed_is_an_opt_in(renderer: Renderer, helm: Path) -> None:
    objects = renderer.helm_template("--set", "webhook.failurePolicy=Fail")
    assert _hook(objects)["failurePolicy"] == "Fail"


def test_excluded_namespaces_are_configurable_but_own_namespace_stays_excluded(
    renderer: Renderer, helm: Path
) -> None:
    objects = renderer.helm_template("--set", "webhook.excludeNamespaces=null", namespace="irsa")
    selector = _hook(objects)["namespaceSelector"]
    assert selector == {
        "matchExpressions": [
            {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["irsa"]}
        ]
    }


def test_existing_cert_manager_issuer_is_used_instead_of_a_new_ca(
    renderer: Renderer, helm: Path
) -> None:
    objects = renderer.helm_template(
        "--set",
        "certificates.certManager.issuerRef.kind=ClusterIssuer",
        "--set",
        "certificates.certManager.issuerRef.name=corp-ca",
    )
    assert of_kind(objects, "Issuer") == []
    (certificate,) = of_kind(objects, "Certificate")
    assert certificate["spec"]["issuerRef"] == {"kind": "ClusterIssuer", "name": "corp-ca"}


def test_existing_secret_mode_only_sets_the_ca_bundle(renderer: Renderer, helm: Path) -> None:
    certs = renderer.helm_certs()
    objects = renderer.helm_template(
        "--set",
        "certificates.mode=secret",
        "--set",
        "certificates.secretName=my-webhook-tls",
        "--set-file",
        f"certificates.caCrt={certs / 'ca.crt'}",
    )
    assert of_kind(objects, "Secret") == []
    assert of_kind(objects, "Certificate") == []
    client = _hook(objects)["clientConfig"]
    assert isinstance(client, dict)
    assert base64.b64decode(client["caBundle"]) == (certs / "ca.crt").read_bytes()
    volumes = one(objects, "Deployment")["spec"]["template"]["spec"]["volumes"]
    assert volumes[0]["secret"]["secretName"] == "my-webhook-tls"


@pytest.mark.parametrize("mode", ["secret", "bootstrap"])
def test_secret_name_defaults_to_the_documented_fullname_cert(
    renderer: Renderer, helm: Path, mode: str
) -> None:
    """values.yaml says secretName defaults to <fullname>-cert; the schema must let it."""
    certs = renderer.helm_certs()
    args = ["--set", f"certificates.mode={mode}"]
    if mode == "secret":
        args += ["--set-file", f"certificates.caCrt={certs / 'ca.crt'}"]
    objects = renderer.helm_template(*args)
    spec = one(objects, "Deployment")["spec"]["template"]["spec"]
    (volume,) = (v for v in spec["volumes"] if "secret" in v)
    assert volume["secret"]["secretName"] == f"{NAME}-cert"
    values = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    assert values["certificates"]["secretName"] == ""
    assert "Defaults to <fullname>-cert" in (CHART / "values.yaml").read_text(encoding="utf-8")


def test_flags_follow_the_config_values(renderer: Renderer, helm: Path) -> None:
    objects = renderer.helm_template(
        "--set",
        "config.awsDefaultRegion=eu-west-2",
        "--set",
        "config.stsRegionalEndpoint=true",
        "--set",
        "config.verbosity=4",
        "--set",
        "config.extraArgs={--compose-role-arn=true}",
        "--set",
        "image.digest=sha256:" + "a" * 64,
        "--set",
        "shutdownDelaySeconds=15",
        "--set",
        "terminationGracePeriodSeconds=45",
    )
    spec = container(one(objects, "Deployment"))
    assert {
        "--shutdown-delay=15s",
        "--aws-default-region=eu-west-2",
        "--sts-regional-endpoint=true",
        "--v=4",
        "--compose-role-arn=true",
    } <= set(spec["args"])
    assert spec["image"] == "pod-identity-webhook@sha256:" + "a" * 64


def test_spread_and_budget_can_be_switched_off(renderer: Renderer, helm: Path) -> None:
    objects = renderer.helm_template(
        "--set",
        "topologySpreadConstraints=null",
        "--set",
        "podDisruptionBudget.enabled=false",
        "--set",
        "replicaCount=1",
    )
    assert of_kind(objects, "PodDisruptionBudget") == []
    assert "topologySpreadConstraints" not in one(objects, "Deployment")["spec"]["template"]["spec"]


def test_host_network_option_uses_cluster_dns(renderer: Renderer, helm: Path) -> None:
    spec = one(renderer.helm_template("--set", "hostNetwork=true"), "Deployment")["spec"]
    assert spec["template"]["spec"]["hostNetwork"] is True
    assert spec["template"]["spec"]["dnsPolicy"] == "ClusterFirstWithHostNet"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "webhook.timeoutSeconds=31"], "timeoutSeconds"),
        (["--set", "webhook.timeoutSeconds=0"], "timeoutSeconds"),
        (["--set", "webhook.failurePolicy=Sometimes"], "failurePolicy"),
        (["--set", "webhook.reinvocationPolicy=Always"], "reinvocationPolicy"),
        (["--set", "webhook.name=short"], "/webhook/name"),
        (["--set", "replicaCount=0"], "replicaCount"),
        (["--set", "replicaTypo=2"], "replicaTypo"),
        (["--set", "config.tokenExpiration=60"], "tokenExpiration"),
        (["--set", "config.logFormat=text"], "logFormat"),
        (["--set", "config.extraArgs={verbose}"], "extraArgs"),
        (["--set", "containerPorts.https=443"], "containerPorts/https"),
        (["--set", "certificates.mode=vault"], "certificates/mode"),
        (["--set", "certificates.mode=self-signed"], "tlsCrt"),
        (["--set", "certificates.mode=secret"], "caCrt"),
        (["--set", "certificates.certManager.duration=90days"], "duration"),
        (["--set", "image.digest=latest"], "digest"),
        (["--set", "fullnameOverride=Pod_Identity"], "fullnameOverride"),
        (["--set", "upstreamCompatible=yes"], "upstreamCompatible"),
        # Not the schema: a template check, since it compares two values.
        (["--set", "replicaCount=1"], "must be above podDisruptionBudget.minAvailable"),
        (["--set", "shutdownDelaySeconds=20"], "the kubelet kills the webhook mid-drain"),
        (["--set", "shutdownDelaySeconds=-1"], "shutdownDelaySeconds"),
    ],
    ids=lambda value: value if isinstance(value, str) else " ".join(value[1:]),
)
def test_invalid_values_are_refused(helm: Path, args: list[str], message: str) -> None:
    result = _template(helm, *args)
    assert result.returncode != 0, result.stdout[:500]
    assert message in result.stderr, result.stderr


def test_readme_documents_every_certificate_mode_with_a_command_that_renders(
    renderer: Renderer, helm: Path
) -> None:
    """charts/.../README.md: a section and a `helm install` per mode of the schema, and each
    command's values render (--set-file paths taken from `certs` output of the same names)."""
    import shlex

    from tests.test_docs import fenced_blocks

    readme = (CHART / "README.md").read_text(encoding="utf-8")
    schema = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
    modes = schema["properties"]["certificates"]["properties"]["mode"]["enum"]
    certs = renderer.helm_certs()
    rendered = {}
    for text in fenced_blocks(readme):
        for command in text.replace("\\\n", " ").splitlines():
            argv = shlex.split(command, comments=True)
            if argv[:2] != ["helm", "install"]:
                continue
            values: list[str] = []
            for flag, value in itertools.pairwise(argv):
                if flag == "--set":
                    values += [flag, value]
                elif flag == "--set-file":
                    key, _, path = value.partition("=")
                    values += [flag, f"{key}={certs / Path(path).name}"]
            mode = next((v.split("=")[1] for v in values if "certificates.mode=" in v), None)
            objects = renderer.helm_template(*values)
            rendered[mode or "cert-manager"] = objects
    for mode in modes:
        assert f"**{mode}**" in readme, mode
        assert mode in rendered, f"no helm install example for {mode}"
    bootstrap = container(one(rendered["bootstrap"], "Deployment"))
    assert "--cert-bootstrap=true" in bootstrap["args"]
