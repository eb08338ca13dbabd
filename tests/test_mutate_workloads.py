"""`mutate` on what repositories hold (issue 17, part 3): workloads, multi-document files,
Lists and directories. Each Pod template is admitted as the API server would admit the Pod;
the output keeps each document's shape; unknown kinds pass through with a warning."""

from __future__ import annotations

import base64
import copy
import io
import json
from pathlib import Path
from typing import Any

import jsonpatch
import pytest
import yaml

from tests.support.reviews import role_arn
from webhook.cli import run

ROLE = role_arn("shop-web")
LEGACY_ROLE = "arn:aws:iam::111122223333:role/legacy"
DEFAULT_ROLE = "arn:aws:iam::111122223333:role/default-ns"
SERVICE_ACCOUNTS = [
    {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {
            "name": "web",
            "namespace": "shop",
            "annotations": {"eks.amazonaws.com/role-arn": ROLE},
        },
    },
    {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {
            "name": "legacy",
            "namespace": "shop",
            "annotations": {"eks.amazonaws.com/role-arn": LEGACY_ROLE},
        },
    },
    {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {
            "name": "default",
            "namespace": "default",
            "annotations": {"eks.amazonaws.com/role-arn": DEFAULT_ROLE},
        },
    },
]


def pod_spec(service_account: str | None = "web", **fields: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "app", "image": "registry.example/app:1"}]}
    if service_account is not None:
        spec["serviceAccountName"] = service_account
    return {**spec, **fields}


def template(service_account: str | None = "web", **fields: Any) -> dict[str, Any]:
    return {"metadata": {"labels": {"app": "web"}}, "spec": pod_spec(service_account, **fields)}


def workload(kind: str, name: str = "web", namespace: str | None = "shop", **spec: Any) -> Any:
    api_version = {
        "Deployment": "apps/v1",
        "StatefulSet": "apps/v1",
        "DaemonSet": "apps/v1",
        "ReplicaSet": "apps/v1",
        "Job": "batch/v1",
        "CronJob": "batch/v1",
        "ReplicationController": "v1",
        "Pod": "v1",
    }[kind]
    metadata: dict[str, Any] = {"name": name}
    if namespace is not None:
        metadata["namespace"] = namespace
    body: dict[str, Any] = {"apiVersion": api_version, "kind": kind, "metadata": metadata}
    if kind == "Pod":
        body["spec"] = spec.get("spec", pod_spec())
    elif kind == "CronJob":
        body["spec"] = {
            "schedule": "0 3 * * *",
            "jobTemplate": {"spec": {"template": spec.get("template", template())}},
        }
    else:
        body["spec"] = {
            "selector": {"matchLabels": {"app": "web"}},
            "template": spec.get("template", template()),
        }
    return body


TEMPLATE_PATHS = {
    "Pod": "",
    "Deployment": "/spec/template",
    "StatefulSet": "/spec/template",
    "DaemonSet": "/spec/template",
    "ReplicaSet": "/spec/template",
    "Job": "/spec/template",
    "ReplicationController": "/spec/template",
    "CronJob": "/spec/jobTemplate/spec/template",
}


@pytest.fixture
def files(tmp_path: Path) -> Path:
    (tmp_path / "sa.yaml").write_text(yaml.safe_dump_all(SERVICE_ACCOUNTS))
    return tmp_path


def mutate(*argv: str, stdin: str = "") -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = run(["mutate", *argv], stdin=io.StringIO(stdin), stdout=out, stderr=err)
    return status, out.getvalue(), err.getvalue()


def json_stream(text: str) -> list[Any]:
    """The JSON values printed one after another (-o patch: one per document; -o review: one
    per Pod)."""
    decoder, found, position = json.JSONDecoder(), [], 0
    while position < len(text):
        if text[position].isspace():
            position += 1
            continue
        value, position = decoder.raw_decode(text, position)
        found.append(value)
    return found


def write(directory: Path, name: str, *documents: Any) -> str:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump_all(documents, sort_keys=False))
    return str(path)


def env_at(document: Any, pointer: str) -> dict[str, str]:
    spec = (
        jsonpatch.JsonPointer(pointer + "/spec").resolve(document) if pointer else document["spec"]
    )
    return {e["name"]: e.get("value", "") for e in spec["containers"][0].get("env", [])}


@pytest.mark.parametrize("kind", list(TEMPLATE_PATHS))
def test_every_kind_is_admitted_as_its_pod_at_its_template(files, kind):
    document = workload(kind)
    path = write(files, "app.yaml", document)
    status, out, err = mutate(
        "-f", path, "--service-accounts", str(files / "sa.yaml"), "-o", "patch"
    )
    assert (status, err) == (0, "")
    (patch,) = json_stream(out)
    prefix = TEMPLATE_PATHS[kind]
    assert [op["path"] for op in patch] == [
        f"{prefix}/spec/volumes",
        f"{prefix}/spec/containers/0/env",
        f"{prefix}/spec/containers/0/volumeMounts",
    ]
    status, out, _ = mutate("-f", path, "--service-accounts", str(files / "sa.yaml"))
    mutated = yaml.safe_load(out)
    assert mutated == jsonpatch.apply_patch(document, patch)
    assert env_at(mutated, prefix)["AWS_ROLE_ARN"] == ROLE
    # Nothing else of the object changed.
    assert jsonpatch.make_patch(document, mutated).patch == patch


def test_a_multi_document_file_keeps_every_document_in_order(files):
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]},
    }
    config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {}}
    documents = [workload("Deployment"), service, workload("CronJob", "report"), config_map]
    path = write(files, "app.yaml", *documents)
    original = copy.deepcopy(documents)
    sa = str(files / "sa.yaml")

    status, out, err = mutate("-f", path, "--service-accounts", sa)
    assert (status, err) == (0, "")  # known kinds without Pods pass silently
    printed = list(yaml.safe_load_all(out))
    assert len(printed) == 4
    assert printed[1] == service
    assert printed[3] == config_map
    assert env_at(printed[0], "/spec/template")["AWS_ROLE_ARN"] == ROLE
    assert env_at(printed[2], "/spec/jobTemplate/spec/template")["AWS_ROLE_ARN"] == ROLE

    status, out, _ = mutate("-f", path, "--service-accounts", sa, "-o", "patch")
    found = json_stream(out)
    assert [len(p) for p in found] == [3, 0, 3, 0]
    assert [jsonpatch.apply_patch(d, p) for d, p in zip(documents, found, strict=True)] == printed
    assert documents == original

    # The API server's reinvocation, for the repository: a second pass adds nothing.
    again = write(files, "again.yaml", *printed)
    status, out, _ = mutate("-f", again, "--service-accounts", sa, "-o", "patch")
    assert json_stream(out) == [[], [], [], []]


def test_list_items_are_admitted_with_their_place_in_the_list(files):
    inner = {"apiVersion": "v1", "kind": "List", "items": [workload("Job", "migrate")]}
    listing = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "x"}},
            workload("StatefulSet", "db"),
            inner,
        ],
    }
    path = files / "list.json"
    path.write_text(json.dumps(listing))
    status, out, err = mutate(
        "-f", str(path), "--service-accounts", str(files / "sa.yaml"), "-o", "patch", "-v"
    )
    assert status == 0
    (patch,) = json_stream(out)
    assert {op["path"].split("/spec/containers")[0].split("/spec/volumes")[0] for op in patch} == {
        "/items/1/spec/template",
        "/items/2/items/0/spec/template",
    }
    assert "== " + str(path) + ", document 1: StatefulSet shop/db (items[1])" in err
    assert "== " + str(path) + ", document 1: Job shop/migrate (items[2].items[0])" in err
    mutated = jsonpatch.apply_patch(listing, patch)
    assert env_at(mutated, "/items/2/items/0/spec/template")["AWS_ROLE_ARN"] == ROLE


def test_the_namespace_comes_from_the_object_and_defaults_to_default(files):
    # No namespace: the `default` namespace's `default` ServiceAccount (its own role).
    document = workload("Deployment", namespace=None, template=template(service_account=None))
    path = write(files, "app.yaml", document)
    status, out, _ = mutate("-f", path, "--service-accounts", str(files / "sa.yaml"))
    assert status == 0
    assert env_at(yaml.safe_load(out), "/spec/template")["AWS_ROLE_ARN"] == DEFAULT_ROLE
    # In `shop`, `web` is found there and not in `default`.
    elsewhere = workload("Deployment", namespace="other")
    path = write(files, "other.yaml", elsewhere)
    status, out, _ = mutate(
        "-f", path, "--service-accounts", str(files / "sa.yaml"), "-o", "review"
    )
    response = json.loads(out)["response"]
    assert "patch" not in response
    assert response["warnings"] == ["pod-identity-webhook: ServiceAccount other/web not found"]


def test_the_service_account_defaults_as_the_admission_plugin_sets_it(files):
    """`serviceAccount` (deprecated) names it when `serviceAccountName` is empty; else `default`."""
    deprecated = template(service_account=None, serviceAccount="legacy")
    documents = [
        workload("DaemonSet", "agent", template=deprecated),
        workload("Deployment", "plain", template=template(service_account=None)),
    ]
    path = write(files, "app.yaml", *documents)
    status, out, err = mutate(
        "-f", path, "--service-accounts", str(files / "sa.yaml"), "-o", "review"
    )
    assert status == 0, err
    first, second = json_stream(out)
    assert first["response"]["auditAnnotations"]["service-account"] == "shop/legacy"
    assert first["response"]["auditAnnotations"]["role-arn"] == LEGACY_ROLE
    assert second["response"]["auditAnnotations"]["service-account"] == "shop/default"
    # A review's patch is the Pod's, as the server sends it; -o review is per Pod.
    patch = json.loads(base64.b64decode(first["response"]["patch"]))
    assert patch[0]["path"] == "/spec/volumes"


def test_unknown_kinds_pass_through_with_a_warning_and_are_never_dropped(files):
    rollout = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"template": template()},
    }
    old = {"apiVersion": "extensions/v1beta1", "kind": "Deployment", "metadata": {"name": "x"}}
    kindless = {"spec": pod_spec()}
    documents = [rollout, workload("Deployment"), old, kindless]
    path = write(files, "app.yaml", *documents)
    status, out, err = mutate("-f", path, "--service-accounts", str(files / "sa.yaml"))
    assert status == 0
    printed = list(yaml.safe_load_all(out))
    assert printed[0] == rollout
    assert printed[2] == old
    assert printed[3] == kindless
    assert err.splitlines() == [
        (
            f"pod-identity-webhook mutate: warning: {path}, document 1: Rollout shop/web (apiVersion "
            "argoproj.io/v1alpha1) is not a kind mutate admits Pods from; passed through unchanged"
        ),
        (
            f"pod-identity-webhook mutate: warning: {path}, document 3: Deployment default/x "
            "(apiVersion extensions/v1beta1) is not a kind mutate admits Pods from; passed through "
            "unchanged"
        ),
        (
            f"pod-identity-webhook mutate: warning: {path}, document 4: an object without `kind` is "
            "passed through unchanged"
        ),
    ]


def test_a_lone_document_without_kind_is_still_read_as_a_pod(files):
    path = write(files, "pod.yaml", {"metadata": {"namespace": "shop"}, "spec": pod_spec()})
    status, out, err = mutate("-f", path, "--service-accounts", str(files / "sa.yaml"))
    assert (status, err) == (0, "")
    assert env_at(yaml.safe_load(out), "")["AWS_ROLE_ARN"] == ROLE


def test_a_workload_without_a_template_passes_through_with_a_warning(files):
    patch_file = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}}
    cron = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "c"},
        "spec": {"jobTemplate": {"spec": None}},
    }
    path = write(files, "app.yaml", patch_file, cron)
    status, out, err = mutate("-f", path, "-o", "patch")
    assert (status, json_stream(out)) == (0, [[], []])
    assert f"{path}, document 1: Deployment default/web has no spec.template" in err
    assert f"{path}, document 2: CronJob default/c has no spec.jobTemplate.spec.template" in err


def test_fail_on_deny_covers_every_pod_of_every_file(files):
    policy = files / "policy.yaml"
    policy.write_text(
        "rules:\n  - {name: shop, namespaces: [shop], mode: enforce, "
        "roleArns: ['arn:aws:iam::111122223333:role/shop-*']}\n"
    )
    allowed = write(files, "a/web.yaml", workload("Deployment"))
    denied = write(
        files,
        "b/jobs.yaml",
        workload("Job", "ok"),
        workload("CronJob", "cleanup", template=template(service_account="legacy")),
    )
    argv = ["-f", allowed, "-f", denied, "--service-accounts", str(files / "sa.yaml")]
    argv += ["--policy", str(policy), "-o", "patch"]
    status, out, err = mutate(*argv)
    assert status == 0  # denials are reported; only --fail-on-deny fails
    status, out, err = mutate(*argv, "--fail-on-deny")
    assert status == 3
    assert [len(p) for p in json_stream(out)] == [3, 3, 0]
    (line,) = [line for line in err.splitlines() if "denied" in line]
    assert line.startswith(
        f"pod-identity-webhook mutate: denied: {denied}, document 2: CronJob shop/cleanup: "
        "policy rule 'shop' (enforce) for namespace shop: role "
        f"{LEGACY_ROLE} is not allowed"
    )
    # Without the denied document, the same command passes.
    status, _, _ = mutate(*argv[:2], *argv[4:], "--fail-on-deny")
    assert status == 0


def test_a_directory_is_read_recursively_in_order(files):
    tree = files / "deploy"
    write(tree, "b/worker.yml", workload("StatefulSet", "worker"))
    write(tree, "a/web.yaml", workload("Deployment"))
    (tree / "a" / "job.json").write_text(json.dumps(workload("Job", "once")))
    (tree / "README.md").write_text("not a manifest")
    write(tree, "a/serviceaccounts.yaml", *SERVICE_ACCOUNTS)
    status, out, err = mutate("-f", str(tree), "--service-accounts", str(tree), "-v")
    assert status == 0, err
    kinds = [d["kind"] for d in yaml.safe_load_all(out)]
    assert kinds == ["Job", "ServiceAccount", "ServiceAccount", "ServiceAccount", "Deployment",
                     "StatefulSet"]  # fmt: skip
    headers = [line for line in err.splitlines() if line.startswith("== ") and "no Pod" not in line]
    assert headers == [
        f"== {tree}/a/job.json, document 1: Job shop/once",
        f"== {tree}/a/web.yaml, document 1: Deployment shop/web",
        f"== {tree}/b/worker.yml, document 1: StatefulSet shop/worker",
    ]
    # Other objects in the ServiceAccounts files are skipped without a word (they are -v notes).
    _, _, quiet = mutate("-f", str(tree), "--service-accounts", str(tree))
    assert quiet == ""


def test_container_credentials_label_a_template_without_metadata(files):
    cc = files / "cc.json"
    cc.write_text(json.dumps({"identities": [{"namespace": "shop", "serviceAccount": "web"}]}))
    document = workload("Job", template={"spec": pod_spec()})
    path = write(files, "job.yaml", document)
    status, out, _ = mutate("-f", path, "--watch-container-credentials-config", str(cc))
    assert status == 0
    mutated = yaml.safe_load(out)
    assert mutated["spec"]["template"]["metadata"] == {
        "labels": {"eks.amazonaws.com/pod-identity": "enabled"}
    }
    assert mutated["metadata"] == document["metadata"]  # the Job's own labels are not touched


def test_template_annotations_apply_as_the_pods_own(files):
    skipping = template(
        containers=[{"name": "app", "image": "a"}, {"name": "proxy", "image": "envoy"}]
    )
    skipping["metadata"]["annotations"] = {"eks.amazonaws.com/skip-containers": "proxy"}
    path = write(files, "app.yaml", workload("Deployment", template=skipping))
    status, out, _ = mutate("-f", path, "--service-accounts", str(files / "sa.yaml"), "-o", "patch")
    (patch,) = json_stream(out)
    assert status == 0
    assert not any("/containers/1/" in op["path"] for op in patch)
    assert any(op["path"] == "/spec/template/spec/containers/0/env" for op in patch)


def test_a_review_among_workloads_prints_its_pod(files):
    review = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {"uid": "u1", "namespace": "shop", "object": workload("Pod", "p")},
    }
    path = write(files, "mixed.yaml", review, workload("Deployment"))
    status, out, err = mutate("-f", path, "--service-accounts", str(files / "sa.yaml"))
    assert status == 0, err
    pod, deployment = yaml.safe_load_all(out)
    assert pod["kind"] == "Pod"
    assert env_at(pod, "")["AWS_ROLE_ARN"] == ROLE
    assert deployment["kind"] == "Deployment"
    status, out, _ = mutate(
        "-f", path, "--service-accounts", str(files / "sa.yaml"), "-o", "review"
    )
    assert [r["response"]["uid"] for r in json_stream(out)] == [
        "u1",
        "00000000-0000-0000-0000-000000000000",
    ]


def test_stdin_takes_a_stream_of_workloads(files):
    text = yaml.safe_dump_all([workload("Deployment"), workload("Job", "once")])
    status, out, _ = mutate(
        "-f", "-", "--service-accounts", str(files / "sa.yaml"), "-o", "patch", stdin=text
    )
    assert status == 0
    assert [len(p) for p in json_stream(out)] == [3, 3]
