"""Seeded random Pods and the identity sources both webhooks are given.

`world()` describes the ServiceAccounts, the `pod-identity-webhook` ConfigMap and the
container-credentials identities; the session fixture creates exactly these for both webhooks.
`generate(seed, count)` returns Pods that use them in every combination the mutation rules care
about: containers, init and sidecar containers, ephemeral containers, variables already present
(plain, `valueFrom`, partial credential pairs, the early-exit trio, everything already injected),
existing volumes and mounts (including ones named like the injected volume), annotations
(`skip-containers` in valid and invalid CSV, `token-expiration` in valid and invalid forms),
labels, Windows node selectors, and web-identity, ConfigMap and container-credentials identities.

Every Pod carries `case` notes (its identity source, the ConfigMap entry that applies, and
whether the API server can store it), which the classifier of `compare.py` uses to keep its
rules narrow.
"""

from __future__ import annotations

import copy
import json
import os
import random
from dataclasses import dataclass, field
from typing import Any

PREFIX = "eks.amazonaws.com"
ACCOUNT = "111122223333"
NAMESPACES = ("diff-alpha", "diff-beta")
WEBHOOK_NAMESPACE = "pod-identity-webhook"
REGION = "us-west-2"
FLAG_AUDIENCE = "sts.amazonaws.com"
FLAG_STS = True
GRACE_PERIOD = "250ms"
#: The tier's Pods: `generate(SEED, COUNT)`; the environment picks others for exploration.
SEED = int(os.environ.get("DIFFERENTIAL_SEED", "20261123"))
COUNT = int(os.environ.get("DIFFERENTIAL_PODS", "1200"))
IMAGE = "registry.invalid/app:1"

#: Flags given to both webhooks, on top of the TLS, port and kubeconfig flags.
COMMON_FLAGS = (
    f"--namespace={WEBHOOK_NAMESPACE}",
    "--watch-config-map=true",
    f"--aws-default-region={REGION}",
    f"--sts-regional-endpoint={'true' if FLAG_STS else 'false'}",
    f"--service-account-lookup-grace-period={GRACE_PERIOD}",
)


def role(name: str) -> str:
    return f"arn:aws:iam::{ACCOUNT}:role/{name}"


@dataclass(frozen=True)
class Identity:
    """One ServiceAccount name as the generator uses it, in every namespace of NAMESPACES."""

    name: str
    source: str
    """`none`, `sa`, `cm`, `cm-wildcard`, `cc` or `missing`: where the role comes from."""
    annotations: dict[str, str] | None = None
    """The ServiceAccount's annotations; None means the ServiceAccount does not exist."""
    cm_entry: dict[str, Any] | None = None
    """The exact-namespace ConfigMap entry (keyed `<ns>/<name>` in every namespace)."""
    wildcard_entry: dict[str, Any] | None = None
    """The `*/<name>` ConfigMap entry."""
    cc: bool = False
    """Listed in the container-credentials file."""
    weight: int = 1


def _a(**kwargs: str) -> dict[str, str]:
    return {f"{PREFIX}/{k.replace('_', '-')}": v for k, v in kwargs.items()}


IDENTITIES: tuple[Identity, ...] = (
    Identity("plain", "none", {}, weight=4),
    Identity("role", "sa", _a(role_arn=role("app")), weight=10),
    Identity("role-aud", "sa", _a(role_arn=role("aud"), audience="custom-aud"), weight=3),
    Identity(
        "role-sts-true", "sa", _a(role_arn=role("sts"), sts_regional_endpoints="true"), weight=2
    ),
    Identity(
        "role-sts-false", "sa", _a(role_arn=role("sts"), sts_regional_endpoints="false"), weight=2
    ),
    Identity(
        "role-sts-bad", "sa", _a(role_arn=role("sts"), sts_regional_endpoints="yes"), weight=1
    ),
    Identity("role-exp-3600", "sa", _a(role_arn=role("exp"), token_expiration="3600"), weight=2),
    Identity("role-exp-100", "sa", _a(role_arn=role("exp"), token_expiration="100"), weight=1),
    Identity("role-exp-bad", "sa", _a(role_arn=role("exp"), token_expiration="12h"), weight=1),
    Identity("role-exp-86400", "sa", _a(role_arn=role("exp"), token_expiration="86400"), weight=1),
    Identity("role-invalid-arn", "sa", _a(role_arn="not-an-arn"), weight=1),
    Identity(
        "role-empty",
        "cm",
        _a(role_arn=""),
        cm_entry={"RoleARN": role("empty-sa-role"), "Audience": "cm-aud", "UseRegionalSTS": True},
        weight=1,
    ),
    Identity(
        "cm-exact",
        "cm",
        {},
        cm_entry={
            "RoleARN": role("cm-exact"),
            "Audience": "cm-aud",
            "UseRegionalSTS": False,
            "TokenExpiration": 7200,
        },
        weight=4,
    ),
    Identity("cm-partial", "cm", {}, cm_entry={"RoleARN": role("cm-partial")}, weight=3),
    Identity(
        "cm-lowexp",
        "cm",
        {},
        cm_entry={
            "RoleARN": role("cm-lowexp"),
            "Audience": "cm-aud",
            "UseRegionalSTS": True,
            "TokenExpiration": 300,
        },
        weight=2,
    ),
    Identity(
        "cm-wild",
        "cm-wildcard",
        {},
        wildcard_entry={"RoleARN": role("cm-wild"), "Audience": "wild-aud", "UseRegionalSTS": True},
        weight=2,
    ),
    Identity(
        "cm-shadow",
        "sa",
        _a(role_arn=role("shadow-sa"), token_expiration="4000"),
        cm_entry={"RoleARN": role("shadow-cm"), "Audience": "cm-aud", "UseRegionalSTS": True},
        weight=1,
    ),
    Identity(
        "cm-empty-exact",
        "none",
        {},
        cm_entry={"RoleARN": "", "Audience": "cm-aud", "UseRegionalSTS": True},
        wildcard_entry={"RoleARN": role("shadowed-wild"), "Audience": "wild-aud"},
        weight=1,
    ),
    Identity(
        "cm-nosa",
        "cm",
        None,
        cm_entry={"RoleARN": role("cm-nosa"), "Audience": "cm-aud", "UseRegionalSTS": True},
        weight=1,
    ),
    Identity("cc", "cc", {}, cc=True, weight=6),
    Identity(
        "cc-role",
        "cc",
        _a(role_arn=role("cc-role"), sts_regional_endpoints="true", token_expiration="10000"),
        cc=True,
        weight=2,
    ),
    Identity("cc-exp-86400", "cc", _a(token_expiration="86400"), cc=True, weight=1),
    Identity("cc-sts-false", "cc", _a(sts_regional_endpoints="false"), cc=True, weight=1),
    Identity(
        "cc-cm-nosa",
        "cc",
        None,
        cm_entry={"RoleARN": role("cc-cm"), "UseRegionalSTS": True, "TokenExpiration": 7200},
        cc=True,
        weight=1,
    ),
    Identity("cc-nosa", "cc", None, cc=True, weight=1),
    Identity("missing", "missing", None, weight=1),
)
BY_NAME = {identity.name: identity for identity in IDENTITIES}


@dataclass(frozen=True)
class World:
    """What both webhooks are given: ServiceAccounts, the ConfigMap and the CC file."""

    service_accounts: list[dict[str, Any]]
    config_map: dict[str, Any]
    container_credentials: dict[str, Any]


def world() -> World:
    accounts: list[dict[str, Any]] = []
    config: dict[str, Any] = {}
    identities: list[dict[str, str]] = []
    for identity in IDENTITIES:
        if identity.wildcard_entry is not None:
            config[f"*/{identity.name}"] = identity.wildcard_entry
        for namespace in NAMESPACES:
            if identity.annotations is not None:
                metadata: dict[str, Any] = {"name": identity.name, "namespace": namespace}
                if identity.annotations:
                    metadata["annotations"] = dict(identity.annotations)
                accounts.append(
                    {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": metadata}
                )
            if identity.cm_entry is not None:
                config[f"{namespace}/{identity.name}"] = identity.cm_entry
            if identity.cc:
                identities.append({"namespace": namespace, "serviceAccount": identity.name})
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "pod-identity-webhook", "namespace": WEBHOOK_NAMESPACE},
        "data": {"config": json.dumps(config, sort_keys=True)},
    }
    return World(accounts, config_map, {"identities": identities})


# --- Pods -----------------------------------------------------------------------------------


@dataclass
class Case:
    """One generated Pod, the namespace it is admitted in, and notes for the classifier."""

    index: int
    seed: int
    namespace: str
    pod: dict[str, Any]
    identity: Identity | None
    storable: bool = True
    """False when the API server would refuse or rewrite the Pod before any webhook sees it
    (unknown fields, ephemeral containers on create, integers too large for Go's types)."""
    tags: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        metadata = self.pod["metadata"]
        return str(metadata.get("name") or metadata.get("generateName") or "")

    def review(self, api_version: str = "admission.k8s.io/v1") -> dict[str, Any]:
        return {
            "apiVersion": api_version,
            "kind": "AdmissionReview",
            "request": {
                "uid": f"00000000-0000-4000-8000-{self.seed % 10**6:06d}{self.index:06d}",
                "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
                "requestResource": {"group": "", "version": "v1", "resource": "pods"},
                "namespace": self.namespace,
                "operation": "CREATE",
                "userInfo": {"username": "differential", "groups": ["system:authenticated"]},
                "object": self.pod,
                "dryRun": False,
                "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
            },
        }


AWS_VALUES = {
    "AWS_ROLE_ARN": role("preset"),
    "AWS_WEB_IDENTITY_TOKEN_FILE": "/preset/token",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://127.0.0.1:9/creds",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": "/preset/cc-token",
    "AWS_REGION": "eu-central-1",
    "AWS_DEFAULT_REGION": "eu-central-1",
    "AWS_STS_REGIONAL_ENDPOINTS": "legacy",
}
#: Sets of AWS variables a container may already have (weights in the second element).
PRESETS: tuple[tuple[tuple[str, ...], int], ...] = (
    ((), 30),
    (("AWS_REGION",), 4),
    (("AWS_DEFAULT_REGION",), 2),
    (("AWS_STS_REGIONAL_ENDPOINTS",), 2),
    (("AWS_ROLE_ARN",), 3),
    (("AWS_WEB_IDENTITY_TOKEN_FILE",), 2),
    (("AWS_ROLE_ARN", "AWS_REGION", "AWS_STS_REGIONAL_ENDPOINTS"), 3),
    (("AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_DEFAULT_REGION"), 2),
    (("AWS_CONTAINER_CREDENTIALS_FULL_URI",), 2),
    (("AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_REGION", "AWS_STS_REGIONAL_ENDPOINTS"), 2),
    (
        (
            "AWS_STS_REGIONAL_ENDPOINTS",
            "AWS_DEFAULT_REGION",
            "AWS_REGION",
            "AWS_ROLE_ARN",
            "AWS_WEB_IDENTITY_TOKEN_FILE",
        ),
        2,
    ),
)
QUANTITIES_CPU = ("100m", "0.5", "1", "1000m", "250m", "2", "1.5", "0.1", "1e0", "500m")
QUANTITIES_MEMORY = (
    "64Mi",
    "128Mi",
    "1Gi",
    "1024Mi",
    "1.5Gi",
    "100M",
    "1000M",
    "512Ki",
    "1e9",
    "2G",
)
TOKEN_EXPIRATIONS = ("3600", "0", "-5", "abc", "+7200", "86400", " 100", "599", "100000", "")
#: Fields newer than upstream's Go types (k8s.io/api v0.36) at the levels it re-serialises.
FUTURE_FIELDS = ("futureField", "x-experimental")


def _weighted(rng: random.Random, items: tuple[tuple[Any, int], ...]) -> Any:
    values, weights = zip(*items, strict=True)
    return rng.choices(values, weights=weights)[0]


class _PodBuilder:
    def __init__(self, rng: random.Random, index: int, seed: int) -> None:
        self.rng = rng
        self.index = index
        self.seed = seed
        self.storable = True
        self.tags: list[str] = []
        self.volumes: list[dict[str, Any]] = []

    def tag(self, name: str) -> None:
        self.tags.append(name)

    # -- containers ------------------------------------------------------------------------

    def env(self, name: str) -> list[dict[str, Any]] | None:
        rng = self.rng
        choice = rng.random()
        if choice < 0.25:
            return None
        if choice < 0.30:
            self.tag("env-empty-list")
            return []
        items: list[dict[str, Any]] = [
            {"name": f"APP_VAR_{i}", "value": rng.choice(("1", "x", "", "a b"))}
            for i in range(rng.randint(0, 3))
        ]
        if rng.random() < 0.15:
            self.tag("env-valuefrom-fieldref")
            items.append(
                {
                    "name": "POD_NAME",
                    "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}},
                }
            )
        if rng.random() < 0.10:
            self.tag("env-resourcefieldref")
            ref: dict[str, Any] = {"containerName": name, "resource": "limits.cpu"}
            if rng.random() < 0.5:
                ref["divisor"] = rng.choice(("1m", "1", "0.001"))
            items.append({"name": "CPU_LIMIT", "valueFrom": {"resourceFieldRef": ref}})
        preset = _weighted(rng, PRESETS)
        for var in preset:
            if rng.random() < 0.15:
                items.append(
                    {
                        "name": var,
                        "valueFrom": {"configMapKeyRef": {"name": "aws", "key": var.lower()}},
                    }
                )
            else:
                items.append({"name": var, "value": AWS_VALUES[var]})
        if preset:
            self.tag("env-aws-" + "+".join(v.removeprefix("AWS_").lower() for v in preset))
        rng.shuffle(items)
        return items

    def resources(self) -> dict[str, Any] | None:
        rng = self.rng
        if rng.random() < 0.4:
            return None
        if rng.random() < 0.1:
            return {}
        out: dict[str, Any] = {}
        cpu, memory = rng.choice(QUANTITIES_CPU), rng.choice(QUANTITIES_MEMORY)
        out["requests"] = {"cpu": cpu, "memory": memory}
        if rng.random() < 0.5:
            out["limits"] = {"cpu": cpu, "memory": memory}
        return out

    def probe(self) -> dict[str, Any]:
        rng = self.rng
        kind = rng.choice(("http-int", "http-str", "grpc", "grpc-service", "exec", "tcp"))
        self.tag(f"probe-{kind}")
        handler: dict[str, Any]
        if kind == "http-int":
            handler = {"httpGet": {"path": "/healthz", "port": 8080, "scheme": "HTTP"}}
        elif kind == "http-str":
            handler = {"httpGet": {"path": "/ready", "port": "http"}}
        elif kind == "grpc":
            handler = {"grpc": {"port": 9000}}
        elif kind == "grpc-service":
            handler = {"grpc": {"port": 9000, "service": "health"}}
        elif kind == "exec":
            handler = {"exec": {"command": ["true"]}}
        else:
            handler = {"tcpSocket": {"port": 8080}}
        return {**handler, "periodSeconds": rng.choice((5, 10)), "failureThreshold": 3}

    def container(self, name: str, *, init: bool = False, sidecar: bool = False) -> dict[str, Any]:
        c: dict[str, Any] = {"name": name, "image": IMAGE}
        self._command_and_env(c, name, init=init)
        # Regular containers and sidecars keep running: only they get probes and hooks.
        self._running(c, runs=not init or sidecar, sidecar=sidecar)
        self._hardening(c)
        if self.rng.random() < 0.03:
            self._future_field(c)
        return c

    def _command_and_env(self, c: dict[str, Any], name: str, *, init: bool) -> None:
        rng = self.rng
        if rng.random() < 0.3:
            c["command"] = ["/bin/app"]
            c["args"] = ["--serve", f"--id={self.index}"]
        if rng.random() < 0.3 and not init:
            c["ports"] = [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
        if rng.random() < 0.1:
            c["envFrom"] = [{"configMapRef": {"name": "settings", "optional": True}}]
        env = self.env(name)
        if env is not None:
            c["env"] = env
        resources = self.resources()
        if resources is not None:
            c["resources"] = resources

    def _running(self, c: dict[str, Any], *, runs: bool, sidecar: bool) -> None:
        rng = self.rng
        if runs and rng.random() < 0.1:
            self.tag("resize-policy")
            c["resizePolicy"] = [{"resourceName": "cpu", "restartPolicy": "NotRequired"}]
        if sidecar:
            c["restartPolicy"] = "Always"
            self.tag("sidecar")
        mounts = self.mounts()
        if mounts is not None:
            c["volumeMounts"] = mounts
        if runs:
            if rng.random() < 0.3:
                c["readinessProbe"] = self.probe()
            if rng.random() < 0.2:
                c["livenessProbe"] = self.probe()
            if rng.random() < 0.2:
                self.tag("startup-probe")
                c["startupProbe"] = self.probe()
        if runs and rng.random() < 0.1:
            c["lifecycle"] = {"preStop": {"exec": {"command": ["sleep", "1"]}}}

    def _hardening(self, c: dict[str, Any]) -> None:
        rng = self.rng
        if rng.random() < 0.15:
            c["securityContext"] = {
                "runAsNonRoot": True,
                "allowPrivilegeEscalation": False,
                "seccompProfile": {"type": "RuntimeDefault"},
                "capabilities": {"drop": ["ALL"]},
            }
        if rng.random() < 0.15:
            c["imagePullPolicy"] = rng.choice(("IfNotPresent", "Always"))
        if rng.random() < 0.08:
            self.tag("zero-values")
            c["stdin"] = False
            c["tty"] = False
            c["workingDir"] = ""

    def _future_field(self, c: dict[str, Any]) -> None:
        """A field newer than upstream's Go types, at one of the levels it re-serialises."""
        rng = self.rng
        key = rng.choice(FUTURE_FIELDS)
        self.tag("future-field")
        self.storable = False
        where = rng.choice(("container", "mount", "env", "security"))
        if where == "container" or not c.get("volumeMounts"):
            c[key] = {"enabled": True}
        elif where == "mount":
            c["volumeMounts"][0][key] = "v"
        elif where == "env" and c.get("env"):
            c["env"][0][key] = 1
        else:
            c.setdefault("securityContext", {})[key] = [1, 2]

    def mounts(self) -> list[dict[str, Any]] | None:
        rng = self.rng
        if not self.volumes or rng.random() < 0.4:
            return None if rng.random() < 0.9 else []
        chosen = rng.sample(self.volumes, rng.randint(1, len(self.volumes)))
        mounts = []
        for i, volume in enumerate(chosen):
            mount: dict[str, Any] = {"name": volume["name"], "mountPath": f"/mnt/v{i}"}
            if volume["name"] in ("aws-iam-token", "eks-pod-identity-token"):
                mount["mountPath"] = f"/some/other/path-{i}"
                self.tag("mount-named-like-injected")
            if rng.random() < 0.3:
                mount["readOnly"] = True
            mounts.append(mount)
        if rng.random() < 0.02:
            self.tag("mount-same-path-other-name")
            mounts.append(
                {
                    "name": chosen[0]["name"],
                    "mountPath": rng.choice(
                        (
                            "/var/run/secrets/eks.amazonaws.com/serviceaccount",
                            "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount",
                        )
                    ),
                }
            )
        return mounts

    # -- the Pod ---------------------------------------------------------------------------

    def build(self) -> tuple[dict[str, Any], Identity | None]:
        weights = [i.weight for i in IDENTITIES]
        identity: Identity | None = self.rng.choices(IDENTITIES, weights=weights)[0]
        metadata = self._metadata()
        volumes = self._volumes()  # first: mounts refer to them
        names, containers, init_containers = self._containers()
        annotations = self._annotations(names + [c["name"] for c in init_containers or []])
        if annotations:
            metadata["annotations"] = annotations
        spec: dict[str, Any] = {}
        if self.rng.random() < 0.01:
            identity = None
            self.tag("no-service-account-name")
        elif identity is not None:
            spec["serviceAccountName"] = identity.name
        if volumes is not None:
            spec["volumes"] = volumes
        if init_containers is not None:
            spec["initContainers"] = init_containers
        spec["containers"] = containers
        self._pod_settings(spec, first=names[0])
        if identity is not None and self.rng.random() < 0.04:
            self.pre_mutate(metadata, spec, identity)
        if self.rng.random() < 0.04:
            self.nulls(metadata, spec)
        self._undecodable(spec)
        return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}, identity

    def _metadata(self) -> dict[str, Any]:
        rng = self.rng
        metadata: dict[str, Any] = {}
        if rng.random() < 0.5:
            metadata["name"] = f"pod-{self.index}"
        else:
            metadata["generateName"] = f"gen-{self.index}-"
        labels_choice = rng.random()
        if labels_choice < 0.45:
            pass
        elif labels_choice < 0.5:
            metadata["labels"] = {}
        elif labels_choice < 0.55:
            metadata["labels"] = {"eks.amazonaws.com/pod-identity": "disabled", "app": "x"}
            self.tag("label-pod-identity-preset")
        else:
            metadata["labels"] = {"app": f"app-{self.index % 7}", "tier": "backend"}
        return metadata

    def _volumes(self) -> list[dict[str, Any]] | None:
        rng = self.rng
        volumes: list[dict[str, Any]] | None
        volume_choice = rng.random()
        if volume_choice < 0.45:
            volumes = None
        elif volume_choice < 0.5:
            volumes = []
        else:
            volumes = [{"name": "scratch", "emptyDir": {}}]
            if rng.random() < 0.4:
                volumes.append({"name": "config", "configMap": {"name": "settings"}})
            if rng.random() < 0.06:
                volumes.append({"name": "aws-iam-token", "hostPath": {"path": "/tmp/token"}})
                self.tag("volume-named-aws-iam-token")
            if rng.random() < 0.04:
                volumes.append({"name": "eks-pod-identity-token", "emptyDir": {"medium": "Memory"}})
                self.tag("volume-named-eks-pod-identity-token")
        self.volumes = list(volumes or [])
        return volumes

    def _containers(
        self,
    ) -> tuple[list[str], list[dict[str, Any]], list[dict[str, Any]] | None]:
        """(container names, containers, init containers or None)."""
        rng = self.rng
        container_count = rng.choice((1, 1, 1, 2, 2, 3, 4))
        names = ["app", "sidecar", "proxy", "worker"][:container_count]
        containers = [self.container(n) for n in names]
        init_containers: list[dict[str, Any]] | None = None
        init_choice = rng.random()
        if init_choice < 0.25:
            init_containers = [self.container("init-setup", init=True)]
            if rng.random() < 0.4:
                init_containers.append(self.container("init-mesh", init=True, sidecar=True))
        elif init_choice < 0.27:
            init_containers = []
        return names, containers, init_containers

    def _annotations(self, all_names: list[str]) -> dict[str, str]:
        rng = self.rng
        annotations: dict[str, str] = {}
        if rng.random() < 0.15:
            annotations[f"{PREFIX}/skip-containers"] = self._skip_containers(all_names)
        if rng.random() < 0.12:
            value = rng.choice(TOKEN_EXPIRATIONS)
            annotations[f"{PREFIX}/token-expiration"] = value
            self.tag("pod-token-expiration")
        if rng.random() < 0.05:
            annotations["example.com/unrelated"] = "yes"
        return annotations

    def _skip_containers(self, all_names: list[str]) -> str:
        """A skip-containers value, in one of the CSV spellings upstream's parser meets."""
        rng = self.rng
        skip = rng.sample(all_names, rng.randint(1, len(all_names)))
        style = rng.choice(("plain", "plain", "spaces", "quoted", "stray-quote", "unknown"))
        self.tag(f"skip-{style}")
        if style == "spaces":
            return ", ".join(skip)
        if style == "quoted":
            return ",".join(f'"{s}"' for s in skip)
        if style == "stray-quote":
            return ",".join(skip) + ',a"b'
        if style == "unknown":
            return "nonexistent," + skip[0]
        return ",".join(skip)

    def _pod_settings(self, spec: dict[str, Any], *, first: str) -> None:
        """Node selector, ephemeral containers and Pod-level settings."""
        rng = self.rng
        selector_choice = rng.random()
        if selector_choice < 0.08:
            spec["nodeSelector"] = {"kubernetes.io/os": "windows"}
            self.tag("windows")
        elif selector_choice < 0.11:
            spec["nodeSelector"] = {"beta.kubernetes.io/os": "windows"}
            self.tag("windows-beta")
        elif selector_choice < 0.13:
            spec["nodeSelector"] = {"kubernetes.io/os": "Windows"}
            self.tag("windows-capital")
        elif selector_choice < 0.2:
            spec["nodeSelector"] = {"kubernetes.io/os": "linux"}
        if rng.random() < 0.03:
            self.tag("ephemeral-container")
            self.storable = False  # the API server refuses them on create
            spec["ephemeralContainers"] = [
                {"name": "debugger", "image": IMAGE, "targetContainerName": first}
            ]
        if rng.random() < 0.1:
            spec["automountServiceAccountToken"] = False
        if rng.random() < 0.1:
            spec["securityContext"] = {"fsGroup": 65534}

    def _undecodable(self, spec: dict[str, Any]) -> None:
        """Rarely, a value upstream's Go types cannot decode (the API server would refuse it)."""
        rng = self.rng
        first = spec["containers"][0]
        if rng.random() < 0.005:
            self.tag("undecodable-int32-overflow")
            first["ports"] = [{"containerPort": 3_000_000_000}]
        elif rng.random() < 0.003:
            self.tag("undecodable-quantity")
            first["resources"] = {"requests": {"cpu": "1e3m"}}
        elif rng.random() < 0.003:
            self.tag("undecodable-bigint")
            spec["terminationGracePeriodSeconds"] = 10**30
        elif rng.random() < 0.003:
            self.tag("undecodable-float")
            first["readinessProbe"] = {"exec": {"command": ["true"]}, "periodSeconds": 5.5}
        else:
            return
        self.storable = False

    def nulls(self, metadata: dict[str, Any], spec: dict[str, Any]) -> None:
        """JSON nulls where lists and maps go: Go decodes them as absent. The API server never
        sends them (it serialises from Go types), so only direct reviews carry them."""
        self.tag("nulls")
        self.storable = False
        rng = self.rng
        for key in rng.sample(["labels", "annotations"], rng.randint(0, 2)):
            if key not in metadata:
                metadata[key] = None
        for key in rng.sample(["volumes", "initContainers", "nodeSelector"], rng.randint(1, 3)):
            if key not in spec:
                spec[key] = None
        for container in spec["containers"]:
            for key in ("env", "volumeMounts"):
                if key not in container and rng.random() < 0.5:
                    container[key] = None

    def pre_mutate(
        self, metadata: dict[str, Any], spec: dict[str, Any], identity: Identity
    ) -> None:
        """Everything the webhook would add is already there (a re-created Pod, say)."""
        self.tag("pre-mutated")
        cc = identity.cc
        if cc:
            metadata.setdefault("labels", {})["eks.amazonaws.com/pod-identity"] = "enabled"
            names = ("AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE")
        else:
            names = ("AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE")
        for container in [*spec.get("initContainers", []), *spec["containers"]]:
            env = [e for e in container.get("env") or [] if not e["name"].startswith("AWS_")]
            env.extend(
                {"name": name, "value": AWS_VALUES[name]}
                for name in (
                    "AWS_STS_REGIONAL_ENDPOINTS",
                    "AWS_DEFAULT_REGION",
                    "AWS_REGION",
                    *names,
                )
            )
            container["env"] = env
        volume = "eks-pod-identity-token" if cc else "aws-iam-token"
        volumes = [v for v in spec.get("volumes") or [] if v["name"] != volume]
        path = "eks-pod-identity-token" if cc else "token"
        volumes.insert(
            0,
            {
                "name": volume,
                "projected": {
                    "sources": [{"serviceAccountToken": {"expirationSeconds": 3600, "path": path}}]
                },
            },
        )
        spec["volumes"] = volumes
        for container in [*spec.get("initContainers", []), *spec["containers"]]:
            # The volume list was rebuilt: keep only mounts of volumes that still exist.
            if container.get("volumeMounts"):
                names_left = {v["name"] for v in volumes}
                container["volumeMounts"] = [
                    m for m in container["volumeMounts"] if m["name"] in names_left
                ]


def generate(seed: int, count: int) -> list[Case]:
    """`count` Pods from `seed`: the same arguments always give the same Pods."""
    master = random.Random(seed)  # noqa: S311 - seeded, reproducible data
    cases = []
    for index in range(count):
        rng = random.Random(master.getrandbits(64))  # noqa: S311
        builder = _PodBuilder(rng, index, seed)
        pod, identity = builder.build()
        namespace = rng.choice(NAMESPACES)
        cases.append(
            Case(
                index=index,
                seed=seed,
                namespace=namespace,
                pod=pod,
                identity=identity,
                storable=builder.storable,
                tags=builder.tags,
            )
        )
    return cases


def clone(pod: dict[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(pod)
