"""The offline `mutate` command as other tools drive it."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.support.reviews import ROLE, decode_patch
from webhook.cli import run

POD = """\
apiVersion: v1
kind: Pod
metadata:
  name: app
  namespace: team
spec:
  serviceAccountName: app
  containers:
  - name: app
    image: nginx
"""
SERVICE_ACCOUNTS = f"""\
apiVersion: v1
kind: ServiceAccount
metadata:
  name: app
  namespace: team
  annotations:
    eks.amazonaws.com/role-arn: {ROLE}
---
apiVersion: v1
kind: ServiceAccount
metadata: {{name: default, namespace: default}}
"""


@pytest.fixture
def files(tmp_path: Path) -> Path:
    (tmp_path / "pod.yaml").write_text(POD)
    (tmp_path / "sa.yaml").write_text(SERVICE_ACCOUNTS)
    return tmp_path


def mutate(*argv: str, stdin: str = "") -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = run(["mutate", *argv], stdin=io.StringIO(stdin), stdout=out, stderr=err)
    return status, out.getvalue(), err.getvalue()


def test_default_output_is_the_mutated_pod_as_yaml(files):
    status, out, err = mutate(
        "-f", str(files / "pod.yaml"), "--service-accounts", str(files / "sa.yaml")
    )
    assert (status, err) == (0, "")
    pod = yaml.safe_load(out)
    env = pod["spec"]["containers"][0]["env"]
    assert env[0] == {"name": "AWS_ROLE_ARN", "value": ROLE}
    assert pod["spec"]["volumes"][0]["name"] == "aws-iam-token"


def test_patch_output_is_a_json_patch(files):
    status, out, _ = mutate(
        "-f", str(files / "pod.yaml"), "--service-accounts", str(files / "sa.yaml"), "-o", "patch"
    )
    assert status == 0
    assert [op["path"] for op in json.loads(out)] == [
        "/spec/volumes",
        "/spec/containers/0/env",
        "/spec/containers/0/volumeMounts",
    ]


def test_unchanged_pod_gives_an_empty_patch_and_exit_zero(files):
    status, out, _ = mutate("-f", str(files / "pod.yaml"), "-o", "patch")
    assert (status, json.loads(out)) == (0, [])


def test_pod_from_stdin(files):
    status, out, _ = mutate(
        "-f", "-", "--service-accounts", str(files / "sa.yaml"), "-o", "patch", stdin=POD
    )
    assert status == 0
    assert len(json.loads(out)) == 3


def test_review_input_uses_the_request_namespace_and_echoes_uid(files):
    review = {
        "apiVersion": "admission.k8s.io/v1beta1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "abc",
            "namespace": "team",
            "object": yaml.safe_load(POD.replace("namespace: team", "namespace: other")),
        },
    }
    (files / "review.json").write_text(json.dumps(review))
    status, out, _ = mutate(
        "-f",
        str(files / "review.json"),
        "--service-accounts",
        str(files / "sa.yaml"),
        "-o",
        "review",
    )
    assert status == 0
    answer = json.loads(out)
    assert answer["apiVersion"] == "admission.k8s.io/v1beta1"
    assert answer["response"]["uid"] == "abc"
    assert answer["response"]["patchType"] == "JSONPatch"
    patch = decode_patch(answer["response"])
    assert patch[1]["value"][0]["value"] == ROLE
    assert answer["response"]["auditAnnotations"]["role-source"] == "service-account"


def test_review_output_for_a_pod_is_a_v1_review(files):
    status, out, _ = mutate("-f", str(files / "pod.yaml"), "-o", "review")
    answer = json.loads(out)
    assert status == 0
    assert answer["kind"] == "AdmissionReview"
    assert answer["apiVersion"] == "admission.k8s.io/v1"
    assert "patch" not in answer["response"]
    assert answer["response"]["warnings"] == [
        "pod-identity-webhook: ServiceAccount team/app not found"
    ]


def test_verbose_explains_on_stderr(files):
    status, out, err = mutate(
        "-f",
        str(files / "pod.yaml"),
        "--service-accounts",
        str(files / "sa.yaml"),
        "-v",
        "-o",
        "patch",
    )
    assert status == 0
    lines = err.splitlines()
    assert lines[0] == "decision: mutated (injected) for ServiceAccount team/app"
    assert f"role: {ROLE} from service-account" in lines
    json.loads(out)


def _mutate_with_config_map(files, namespace):
    """`mutate -o patch` of the sample Pod with the role in a ConfigMap of `namespace`."""
    (files / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\n"
        f"metadata: {{name: pod-identity-webhook, namespace: {namespace}}}\n"
        f'data:\n  config: \'{{"*/app": {{"RoleARN": "{ROLE}"}}}}\'\n'
    )
    return mutate(
        "-f",
        str(files / "pod.yaml"),
        "--watch-config-map",
        "--config-map",
        str(files / "cm.yaml"),
        "-o",
        "patch",
    )


def test_config_map_mode(files):
    status, out, _ = _mutate_with_config_map(files, "eks")
    assert status == 0
    assert len(json.loads(out)) == 3


def test_config_map_from_another_namespace_is_ignored_with_a_warning(files):
    status, out, err = _mutate_with_config_map(files, "other")
    assert (status, json.loads(out)) == (0, [])
    assert "ignored" in err


def test_container_credentials_file(files):
    (files / "cc.json").write_text(
        '{"identities": [{"namespace": "team", "serviceAccount": "app"}]}'
    )
    status, out, _ = mutate(
        "-f",
        str(files / "pod.yaml"),
        "--watch-container-credentials-config",
        str(files / "cc.json"),
        "-o",
        "patch",
    )
    assert status == 0
    assert json.loads(out)[0]["path"] == "/metadata/labels"


def test_list_kind_service_accounts(files):
    items = list(yaml.safe_load_all(SERVICE_ACCOUNTS))
    (files / "list.json").write_text(
        json.dumps({"apiVersion": "v1", "kind": "List", "items": items})
    )
    status, out, _ = mutate(
        "-f", str(files / "pod.yaml"), "--service-accounts", str(files / "list.json"), "-o", "patch"
    )
    assert (status, len(json.loads(out))) == (0, 3)


def test_help_exits_zero():
    status, out, _ = mutate("--help")
    assert status == 0
    assert "--service-accounts" in out
    assert "--aws-default-region" in out


@pytest.mark.parametrize(
    ("argv", "stdin", "status", "message"),
    [
        ([], "", 2, "-f FILE is required"),
        (["-f", "pod.yaml", "-o", "json"], "", 2, "invalid argument 'json' for -o"),
        (["-f", "pod.yaml", "--bogus"], "", 2, "unknown flag: --bogus"),
        (["-f", "pod.yaml", "extra"], "", 2, "unexpected argument 'extra'"),
        (["-f", "pod.yaml", "--config-map", "x"], "", 2, "only read with --watch-config-map"),
        (["-f", "missing.yaml"], "", 1, "cannot read missing.yaml"),
        (["-f", "-"], "{{{", 1, "not valid YAML or JSON"),
        (["-f", "-"], "", 1, "-: no Kubernetes object found"),
        (["-f", "-"], "---\n---\n", 1, "-: no Kubernetes object found"),
        (["-f", "-", "-f", "-"], "", 1, "-f - (stdin) can be given only once"),
        (["-f", "empty"], "", 1, "empty: no .yaml, .yml or .json file in this directory"),
        (["-f", "-"], "[1, 2]", 1, "-, document 1: not a Kubernetes object (a mapping), but list"),
        (["-f", "-"], "kind: Pod\nspec: []\n", 1, "spec must be an object"),
        (
            ["-f", "-"],
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec: []\n",
            1,
            "-, document 1: Deployment default/web: spec must be an object",
        ),
        (
            ["-f", "-"],
            (
                "kind: Service\n---\napiVersion: apps/v1\nkind: Deployment\n"
                "metadata: {name: web}\nspec: {template: []}\n"
            ),
            1,
            "-, document 2: Deployment default/web: spec.template must be an object",
        ),
        (
            ["-f", "-", "--service-accounts", "sa.yaml"],
            (
                "apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: nightly, namespace: team}\n"
                "spec: {jobTemplate: {spec: {template: {spec: {serviceAccountName: app, "
                "containers: 5}}}}}\n"
            ),
            1,
            (
                "-, document 1: CronJob team/nightly: spec.jobTemplate.spec.template: "
                "spec.containers must be a list"
            ),
        ),
        (
            ["-f", "-"],
            "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: [web]\n",
            1,
            "-, document 1: metadata must be an object",
        ),
        (
            ["-f", "-"],
            "apiVersion: batch/v1\nkind: Job\nmetadata: {namespace: 5}\nspec: {template: {}}\n",
            1,
            "-, document 1: metadata.namespace must be a string",
        ),
        (["-f", "-"], "apiVersion: v1\nkind: List\nitems: 5\n", 1, "List.items must be a list"),
        (
            ["-f", "-"],
            "apiVersion: v1\nkind: List\nitems: [{kind: Service}, 3]\n",
            1,
            "-, document 1: items[1]: not a Kubernetes object (a mapping), but int",
        ),
        (
            ["-f", "-"],
            (
                "apiVersion: v1\nkind: List\nitems:\n- apiVersion: apps/v1\n  kind: DaemonSet\n"
                "  metadata: {name: agent}\n  spec: {template: {metadata: 7}}\n"
            ),
            1,
            (
                "-, document 1: DaemonSet default/agent (items[0]): spec.template: metadata must be "
                "an object"
            ),
        ),
        (
            ["-f", "-"],
            'kind: Pod\n---\n{"kind": "AdmissionReview"}\n',
            1,
            "-, document 2: the AdmissionReview has no `request` object",
        ),
        (["-f", "-"], '{"kind": "AdmissionReview"}', 1, "no `request` object"),
        (
            ["-f", "-", "--service-accounts", "sa.yaml"],
            "kind: Pod\nmetadata: {namespace: team}\nspec: {serviceAccountName: app, containers: 5}\n",
            1,
            "spec.containers must be a list",
        ),
        (
            ["-f", "pod.yaml", "--service-accounts", "bad.yaml"],
            "",
            1,
            "a ServiceAccount has no metadata.name",
        ),
        (
            ["-f", "pod.yaml", "--watch-container-credentials-config", "bad.json"],
            "",
            1,
            "container-credentials file",
        ),
        (
            ["-f", "pod.yaml", "--watch-config-map", "--config-map", "secret.yaml"],
            "",
            1,
            "does not hold a ConfigMap",
        ),
        (
            ["-f", "pod.yaml", "--watch-config-map", "--config-map", "bad.json"],
            "",
            1,
            "bad.json: not valid YAML",
        ),
        (["-f", "pod.yaml", "--token-expiration=soon"], "", 2, "--token-expiration"),
    ],
)
def test_bad_input_is_one_clear_line(files, monkeypatch, argv, stdin, status, message):
    monkeypatch.chdir(files)
    (files / "bad.yaml").write_text("kind: ServiceAccount\nmetadata: {}\n")
    (files / "bad.json").write_text("[")
    (files / "secret.yaml").write_text("kind: Secret\n")
    (files / "empty").mkdir()
    code, out, err = mutate(*argv, stdin=stdin)
    assert code == status
    assert out == ""
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


def test_console_script_runs_as_a_module(files):
    result = subprocess.run(
        [sys.executable, "-m", "webhook", "mutate", "-f", str(files / "pod.yaml"), "-o", "patch"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (result.returncode, json.loads(result.stdout)) == (0, [])


def test_mutate_says_when_the_token_expiration_flag_is_raised(files):
    status, out, err = mutate(
        "-f",
        str(files / "pod.yaml"),
        "--service-accounts",
        str(files / "sa.yaml"),
        "--token-expiration=10",
    )
    assert status == 0
    assert "warning: --token-expiration=10 raised to 600 seconds" in err
    assert "expirationSeconds: 600" in out


@pytest.mark.parametrize(
    ("argv", "hint"),
    [
        (["cert", "--dir", "x"], "did you mean 'certs'?"),
        (["frobnicate", "--port=8443"], "unknown command 'frobnicate'"),
        (["muatte", "-f", "x"], "did you mean 'mutate'?"),
        (["trust-polcy"], "did you mean 'trust-policy'?"),
    ],
)
def test_a_mistyped_command_is_an_error_not_a_server(argv, hint):
    out, err = io.StringIO(), io.StringIO()
    status = run(argv, stdin=io.StringIO(), stdout=out, stderr=err)
    assert (status, out.getvalue()) == (2, "")
    assert hint in err.getvalue()


@pytest.mark.parametrize(
    "command",
    [
        "mutate -f {pod} --service-accounts {sa} -o patch",
        "mutate --help",
        "--help",
        "oidc --help",
    ],
)
def test_a_closed_pipe_ends_quietly_and_successfully(files, command):
    """`... | head -1` in a `set -o pipefail` CI step must not fail or print a traceback."""
    argv = command.format(pod=files / "pod.yaml", sa=files / "sa.yaml").split()
    script = f"""
set -o pipefail
{sys.executable} -m webhook {" ".join(argv)} | true
"""
    result = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, check=False, timeout=60
    )
    assert (result.returncode, result.stderr) == (0, "")
