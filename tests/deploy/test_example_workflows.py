"""The chart side of examples/workflows/kind-credentials.yaml: its `helm install` values pass
the chart's schema, and the webhook's container gets the local-STS flags, which the webhook's
own command line accepts (tests/workflows checks the rest of the workflow)."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import yaml

from tests.deploy.rendering import CHART, NAME, container, one, parse
from webhook.config import ConfigMapKey, config_from_argv

REPO = Path(__file__).resolve().parents[2]
KIND = REPO / "examples" / "workflows" / "kind-credentials.yaml"


def _helm_install_arguments() -> list[str]:
    """The workflow's `helm install` command line, its variables expanded, without `install`,
    the release, the chart and the flags that wait for a cluster."""
    workflow = yaml.safe_load(KIND.read_text(encoding="utf-8"))
    (job,) = workflow["jobs"].values()
    (script,) = [
        s["run"] for s in job["steps"] if s.get("name") == "Install the webhook, pointed at moto"
    ]
    for name, value in sorted(workflow["env"].items(), key=lambda item: -len(item[0])):
        script = script.replace(f"${name}", str(value))
    argv = shlex.split(script.replace("\\\n", " "))
    assert argv[:4] == ["helm", "install", NAME, "charts/pod-identity-webhook"]
    kept, skip = [], {"--wait", "--create-namespace"}
    rest = iter(argv[4:])
    for arg in rest:
        if arg in skip:
            continue
        if arg == "--timeout":
            next(rest)
            continue
        kept.append(arg)
    return kept


def test_the_kind_workflow_values_render_the_local_sts_flags(helm: Path) -> None:
    result = subprocess.run(
        [str(helm), "template", NAME, str(CHART), *_helm_install_arguments()],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    deployment = one(parse(result.stdout), "Deployment")
    webhook = container(deployment)
    assert webhook["image"].endswith(":ci")
    args = webhook["args"]
    assert "--sts-endpoint-url=https://moto.moto.svc:5000" in args
    assert "--ca-bundle-config-map=aws-local-ca" in args
    assert "--aws-default-region=us-east-1" in args
    assert "--cert-bootstrap=true" in args or "--cert-bootstrap" in args
    # The webhook itself accepts that command line.
    expanded = [arg.replace("$(POD_NAMESPACE)", "pod-identity-webhook") for arg in args]
    config, _, _ = config_from_argv(expanded)
    assert config.mutation.sts_endpoint_url == "https://moto.moto.svc:5000"
    assert config.mutation.ca_bundle == ConfigMapKey("aws-local-ca", "ca.crt")
