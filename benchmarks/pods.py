# ruff: noqa: INP001 - a module of the benchmark scripts, imported by path
"""The request classes the benchmarks send: one AdmissionReview per kind of Pod.

Shared by `upstream/run.py` (over HTTPS, against AWS's webhook) and `micro.py` (in process), so
both measure the same three Pods:

- small: one container, annotated ServiceAccount (the most common admission);
- large: ten containers with variables, ports, probes, resources and mounts;
- unannotated: the small Pod with a ServiceAccount that has no role (no patch).

And for `upstream/run.py` only, `distinct`: small Pods that all differ, as those of as many
Deployments do, more of them than the webhook's decision memo holds
(webhook/admission/memo.py), so that every one is decided anew. The three classes above repeat
one Pod, as the replicas of one Deployment do, and so measure the memo's hits.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ANNOTATED",
    "CLASSES",
    "DISTINCT",
    "NAMESPACE",
    "PLAIN",
    "ROLE",
    "ROLE_ANNOTATIONS",
    "distinct_reviews",
    "large_pod",
    "review",
    "reviews",
    "small_pod",
]

NAMESPACE = "bench"
ROLE = "arn:aws:iam::111122223333:role/bench"
ANNOTATED = "bench-annotated"
PLAIN = "bench-plain"
ROLE_ANNOTATIONS = {
    "eks.amazonaws.com/role-arn": ROLE,
    "eks.amazonaws.com/sts-regional-endpoints": "true",
    "eks.amazonaws.com/token-expiration": "3600",
}
"""The annotated ServiceAccount's annotations."""
CLASSES = ("small", "large", "unannotated")
DISTINCT = 1024
"""Pods in the `distinct` class: twice what the decision memo holds (MEMO_PODS)."""


def review(uid: str, pod: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": NAMESPACE,
            "operation": "CREATE",
            "userInfo": {
                "username": "system:serviceaccount:kube-system:replicaset-controller",
                "groups": ["system:serviceaccounts", "system:authenticated"],
            },
            "object": pod,
            "dryRun": False,
        },
    }


def small_pod(service_account: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": "orders-api-7d9f8b6c5d-",
            "namespace": NAMESPACE,
            "labels": {"app.kubernetes.io/name": "orders-api", "pod-template-hash": "7d9f8b6c5d"},
        },
        "spec": {
            "serviceAccountName": service_account,
            "containers": [
                {
                    "name": "api",
                    "image": "registry.invalid/orders-api:2.14.1",
                    "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                    "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
                }
            ],
        },
    }


def large_pod() -> dict[str, Any]:
    containers = [
        {
            "name": f"c{i}",
            "image": f"registry.invalid/component-{i}:1.{i}.0",
            "command": ["/bin/component"],
            "args": ["--listen=:8080", f"--shard={i}", "--log-level=info"],
            "ports": [
                {"name": "http", "containerPort": 8080 + i, "protocol": "TCP"},
                {"name": "metrics", "containerPort": 9090 + i, "protocol": "TCP"},
            ],
            "env": [{"name": f"SETTING_{j}", "value": f"value-{i}-{j}"} for j in range(6)]
            + [
                {
                    "name": "POD_NAME",
                    "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}},
                }
            ],
            "resources": {
                "requests": {"cpu": "250m", "memory": "256Mi"},
                "limits": {"cpu": "1", "memory": "512Mi"},
            },
            "volumeMounts": [
                {"name": "config", "mountPath": "/etc/component", "readOnly": True},
                {"name": "scratch", "mountPath": "/scratch"},
            ],
            "readinessProbe": {
                "httpGet": {"path": "/ready", "port": 8080 + i},
                "periodSeconds": 5,
            },
            "livenessProbe": {
                "httpGet": {"path": "/healthz", "port": 8080 + i},
                "periodSeconds": 10,
                "failureThreshold": 3,
            },
            "securityContext": {
                "runAsNonRoot": True,
                "allowPrivilegeEscalation": False,
                "capabilities": {"drop": ["ALL"]},
            },
            "imagePullPolicy": "IfNotPresent",
        }
        for i in range(10)
    ]
    pod = small_pod(ANNOTATED)
    pod["metadata"]["annotations"] = {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "9090",
    }
    pod["spec"]["containers"] = containers
    pod["spec"]["volumes"] = [
        {"name": "config", "configMap": {"name": "component-config"}},
        {"name": "scratch", "emptyDir": {}},
    ]
    return pod


def reviews() -> dict[str, dict[str, Any]]:
    """One review per class, in CLASSES order."""
    return {
        "small": review("5f0c4f3e-0000-4000-8000-000000000001", small_pod(ANNOTATED)),
        "large": review("5f0c4f3e-0000-4000-8000-000000000002", large_pod()),
        "unannotated": review("5f0c4f3e-0000-4000-8000-000000000003", small_pod(PLAIN)),
    }


def distinct_reviews(count: int = DISTINCT) -> list[dict[str, Any]]:
    """`count` small Pods that differ in their ReplicaSet's hash, as if each came from its own
    Deployment; sent in a cycle, a memo that holds fewer never sees one again in time."""
    found = []
    for i in range(count):
        pod = small_pod(ANNOTATED)
        template = f"{i:010x}"
        pod["metadata"]["generateName"] = f"orders-api-{template}-"
        pod["metadata"]["labels"]["pod-template-hash"] = template
        found.append(review(f"5f0c4f3e-0000-4000-8001-{i:012x}", pod))
    return found
