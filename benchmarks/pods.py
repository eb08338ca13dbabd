# ruff: noqa: INP001 - a module of the benchmark scripts, imported by path
"""The request classes the benchmarks send: one AdmissionReview per kind of Pod.

Shared by `upstream/run.py` (over HTTPS, against AWS's webhook) and `micro.py` (in process), so
both measure the same three Pods:

- small: one container, annotated ServiceAccount (the most common admission);
- large: ten containers with variables, ports, probes, resources and mounts;
- unannotated: the small Pod with a ServiceAccount that has no role (no patch).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ANNOTATED",
    "CLASSES",
    "NAMESPACE",
    "PLAIN",
    "ROLE",
    "ROLE_ANNOTATIONS",
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
