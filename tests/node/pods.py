"""Pods the node tier's tests run or probe with: the AWS-client Pod, its end, its output, and a
dry-run Pod that shows which variables the webhook would inject."""

from __future__ import annotations

import json
from typing import Any

from tests.e2e.kube import ApiError
from tests.node.images import Images
from tests.node.node import Node
from tests.node.sts import STS_NAMES, StsEndpoint


def pod_phase(node: Node, namespace: str, name: str) -> str | None:
    """`Succeeded` or `Failed` once the Pod has ended, else None."""
    phase: str = node.admin.get(f"/api/v1/namespaces/{namespace}/pods/{name}")["status"].get(
        "phase", ""
    )
    return phase if phase in ("Succeeded", "Failed") else None


def json_documents(text: str) -> list[Any]:
    """The JSON objects printed one after the other (the CLI's indented, boto3's on one line)."""
    decoder, documents, at = json.JSONDecoder(), [], text.find("{")
    while at != -1:
        document, end = decoder.raw_decode(text, at)
        documents.append(document)
        at = text.find("{", end)
    return documents


def aws_pod(
    name: str, images: Images, sts: StsEndpoint, *, service_account: str, script: str
) -> dict[str, Any]:
    """A Pod of the AWS-client image running `script` as a non-root user, whose SDKs reach
    moto's STS under their own names (the ConfigMap `sts-ca` of the namespace holds its CA)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "serviceAccountName": service_account,
            "restartPolicy": "Never",
            # The SDKs' own STS names lead to the test host; nothing else is redirected.
            "hostAliases": [{"ip": sts.address, "hostnames": list(STS_NAMES)}],
            "containers": [
                {
                    "name": "aws",
                    "image": images.aws_client,
                    "imagePullPolicy": "Never",
                    "command": ["sh", "-c", script],
                    "env": [
                        {"name": "AWS_CA_BUNDLE", "value": "/etc/sts-ca/ca.crt"},
                        {"name": "AWS_DEFAULT_REGION", "value": "us-east-1"},
                        {"name": "HOME", "value": "/tmp"},
                    ],
                    "volumeMounts": [{"name": "sts-ca", "mountPath": "/etc/sts-ca"}],
                    "securityContext": {"allowPrivilegeEscalation": False},
                }
            ],
            # The kubelet makes the projected token readable by this user only.
            "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 1000},
            "volumes": [{"name": "sts-ca", "configMap": {"name": "sts-ca"}}],
        },
    }


def injected(node: Node, namespace: str, service_account: str) -> set[str]:
    """The variables the webhook would give a Pod of this ServiceAccount now (a dry run; empty
    while the API server cannot create it)."""
    probe = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "probe", "namespace": namespace},
        "spec": {
            "serviceAccountName": service_account,
            "containers": [{"name": "app", "image": "registry.invalid/app:1"}],
        },
    }
    try:
        answer = node.admin.create(probe, dry_run=True)
    except ApiError:
        return set()
    return {item["name"] for item in answer["spec"]["containers"][0].get("env") or []}
