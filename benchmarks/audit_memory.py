#!/usr/bin/env python3
"""Memory the Pod auditor (--audit-pods) keeps per Pod, and the time to judge them.

Builds Pods as the API server lists them (managed fields, status, a defaulted token volume,
owner references: about 2.5 KB of JSON each), reduces them the way the auditor's watch does,
and measures with tracemalloc what stays allocated, then the time of one full sweep through
`missing` (what the auditor does every --resync-period).

    .venv/bin/python benchmarks/audit_memory.py [--pods 10000] [--deployments 50]
"""

from __future__ import annotations

import argparse
import gc
import json
import time
import tracemalloc
import uuid
from typing import Any

from webhook.admission.entries import parse_service_account
from webhook.admission.integrity import Interner, SlimPod, Sweep, missing, slim
from webhook.config import MutationConfig
from webhook.sources.manifests import StaticSources

PREFIX = "eks.amazonaws.com"


def listed_pod(index: int, deployments: int) -> dict[str, Any]:
    deployment = index % deployments
    name = f"web-{deployment}-5d9c7f{deployment:04d}-{uuid.uuid4().hex[:5]}"
    return {
        "metadata": {
            "name": name,
            "generateName": f"web-{deployment}-5d9c7f{deployment:04d}-",
            "namespace": f"team-{deployment % 20}",
            "uid": str(uuid.uuid4()),
            "resourceVersion": str(100000 + index),
            "creationTimestamp": "2026-12-02T06:00:00Z",
            "labels": {"app": f"web-{deployment}", "pod-template-hash": f"5d9c7f{deployment:04d}"},
            "annotations": {"kubectl.kubernetes.io/restartedAt": "2026-12-01T00:00:00Z"},
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": f"web-{deployment}-5d9c7f{deployment:04d}",
                    "uid": f"00000000-0000-0000-0000-{deployment:012d}",
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
            "managedFields": [
                {
                    "manager": "kube-controller-manager",
                    "operation": "Update",
                    "apiVersion": "v1",
                    "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:metadata": {"f:labels": {}}, "f:spec": {"f:containers": {}}},
                }
            ],
        },
        "spec": {
            "serviceAccountName": "app",
            "containers": [
                {
                    "name": "app",
                    "image": "registry.example/web:1.2.3",
                    "env": [
                        {"name": "PORT", "value": "8080"},
                        {"name": "AWS_ROLE_ARN", "value": "arn:aws:iam::111122223333:role/app"},
                        {"name": "AWS_WEB_IDENTITY_TOKEN_FILE", "value": "/var/run/x/token"},
                    ],
                    "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                    "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
                    "volumeMounts": [
                        {"name": "kube-api-access-abcde", "mountPath": "/var/run/secrets/k"}
                    ],
                },
                {
                    "name": "proxy",
                    "image": "envoy:1.30",
                    "args": ["--config", "/etc/envoy.yaml"],
                    # One Deployment in ten was created while the webhook was down.
                    **(
                        {}
                        if deployment % 10 == 0
                        else {"env": [{"name": "AWS_ROLE_ARN", "value": "r"}]}
                    ),
                },
            ],
            "volumes": [{"name": "kube-api-access-abcde", "projected": {"sources": []}}],
            "nodeName": f"node-{index % 100}",
        },
        "status": {"phase": "Running", "podIP": f"10.0.{index // 250}.{index % 250}"},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pods", type=int, default=10_000)
    parser.add_argument("--deployments", type=int, default=50)
    arguments = parser.parse_args()
    # As the watch receives them: JSON text, decoded one at a time and dropped once reduced.
    lines = [json.dumps(listed_pod(i, arguments.deployments)) for i in range(arguments.pods)]
    json_bytes = sum(len(line) for line in lines)
    interner = Interner()
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    kept: dict[str, SlimPod] = {}
    for line in lines:
        pod = slim(json.loads(line), PREFIX, interner)
        if pod is not None:
            kept[pod.uid] = pod
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    config = MutationConfig()
    sources = StaticSources()
    for team in range(20):
        sources.service_accounts[f"team-{team}/app"] = parse_service_account(
            {f"{PREFIX}/role-arn": "arn:aws:iam::111122223333:role/app"}, config
        )
    started = time.perf_counter()
    findings = sum(missing(pod, sources, config) is not None for pod in kept.values())
    each = time.perf_counter() - started
    started = time.perf_counter()
    judge = Sweep(sources, config)
    if findings != sum(judge(pod) is not None for pod in kept.values()):
        raise SystemExit(
            "audit_memory: the sweep and missing() disagree on which Pods lack credentials"
        )
    sweep = time.perf_counter() - started
    per_pod = grown / len(kept)
    print(f"Pods: {len(kept):,} from {arguments.deployments} Deployments")
    print(f"listed JSON: {json_bytes / len(lines):,.0f} bytes per Pod")
    print(f"kept: {per_pod:,.0f} bytes per Pod, {per_pod * 10_000 / 2**20:.2f} MiB per 10,000")
    print(f"decide per Pod: {each / len(kept) * 1e6:.0f} us; {findings} Pods lack credentials")
    print(f"one sweep (Pods of a template judged once): {sweep * 1000:.0f} ms")


if __name__ == "__main__":
    main()
