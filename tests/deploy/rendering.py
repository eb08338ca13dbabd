"""Every deployment variant rendered to Kubernetes objects, and lookups in the result.

A variant is one way to install the webhook: a kustomize overlay of manifests/ or the Helm
chart with some values. The tests assert the issue's requirements on the rendered objects, the
same way for every variant, then what is particular to each.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.deploy.tools import REPO, run

MANIFESTS = REPO / "manifests"
CHART = REPO / "charts" / "pod-identity-webhook"
SELF_SIGNED_SCRIPT = REPO / "tools" / "deploy" / "self-signed.sh"
WEBHOOK_COMMAND = REPO / ".venv" / "bin" / "pod-identity-webhook"

NAME = "pod-identity-webhook"
NAMESPACE = "pod-identity-webhook"
WEBHOOK_NAME = "pod-identity-webhook.amazonaws.com"
SECRET = "pod-identity-webhook-cert"
SKIP_LABEL = "eks.amazonaws.com/skip-pod-identity-webhook"
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
CERT_MANAGER_GROUP = "cert-manager.io"
UPSTREAM_SELECTOR = {"app": "pod-identity-webhook"}

Obj = dict[str, Any]


@dataclass(frozen=True)
class Variant:
    """One way to install the webhook, and what its rendering must be."""

    name: str
    tool: str
    """kustomize or helm."""
    source: str
    """The overlay directory under manifests/overlays, or the values preset of the chart."""
    namespace: str = NAMESPACE
    certificates: str = "cert-manager"
    """cert-manager or self-signed."""
    config_map: bool = False
    upstream: bool = False
    manages_namespace: bool = False
    """The variant creates its Namespace (the kustomize base does; a Helm chart never does)."""
    components: tuple[str, ...] = ()
    """kustomize: components under manifests/components added on top of the overlay."""
    monitor: str = ""
    """"" or the kind that scrapes the webhook: ServiceMonitor or PodMonitor. A variant with a
    monitor also has the alert rules, the dashboard and the caBundle check."""
    network_policy: bool = False


KUSTOMIZE_VARIANTS: tuple[Variant, ...] = (
    Variant("kustomize/cert-manager", "kustomize", "cert-manager", manages_namespace=True),
    Variant(
        "kustomize/config-map", "kustomize", "config-map", config_map=True, manages_namespace=True
    ),
    Variant(
        "kustomize/self-signed",
        "kustomize",
        "self-signed",
        certificates="self-signed",
        manages_namespace=True,
    ),
    Variant(
        "kustomize/upstream-compatible",
        "kustomize",
        "upstream-compatible",
        namespace="default",
        upstream=True,
    ),
)
MONITORED_KUSTOMIZE_VARIANTS = (
    Variant(
        "kustomize/cert-manager+monitoring",
        "kustomize",
        "cert-manager",
        manages_namespace=True,
        components=("monitoring", "network-policy"),
        monitor="ServiceMonitor",
        network_policy=True,
    ),
    Variant(
        "kustomize/upstream-compatible+pod-monitor",
        "kustomize",
        "upstream-compatible",
        namespace="default",
        upstream=True,
        components=("monitoring", "pod-monitor", "network-policy"),
        monitor="PodMonitor",
        network_policy=True,
    ),
)
KUSTOMIZE_VARIANTS = KUSTOMIZE_VARIANTS + MONITORED_KUSTOMIZE_VARIANTS
HELM_VARIANTS = (
    Variant("helm/default", "helm", "default"),
    Variant("helm/self-signed", "helm", "self-signed", certificates="self-signed"),
    Variant("helm/config-map", "helm", "config-map", config_map=True),
    Variant(
        "helm/upstream-compatible",
        "helm",
        "upstream-compatible",
        namespace="default",
        upstream=True,
    ),
    Variant(
        "helm/monitoring",
        "helm",
        "monitoring",
        monitor="ServiceMonitor",
        network_policy=True,
    ),
    Variant(
        "helm/upstream-compatible+pod-monitor",
        "helm",
        "upstream-compatible+pod-monitor",
        namespace="default",
        upstream=True,
        monitor="PodMonitor",
        network_policy=True,
    ),
)
VARIANTS = KUSTOMIZE_VARIANTS + HELM_VARIANTS
MONITORED_VARIANTS = tuple(v for v in VARIANTS if v.monitor)
#: EKS Pod Identity with the webhook's and the broker's and agent's monitoring. Not in VARIANTS:
#: the broker is a second Deployment and its rules a second PrometheusRule, which the checks of
#: every variant do not expect; test_pod_identity_monitoring.py and the dry runs cover them.
POD_IDENTITY_MONITORED_VARIANTS = (
    Variant(
        "kustomize/pod-identity+monitoring",
        "kustomize",
        "pod-identity",
        manages_namespace=True,
        components=("monitoring", "pod-monitor", "pod-identity-monitoring"),
        monitor="PodMonitor",
    ),
    Variant(
        "helm/pod-identity+monitoring",
        "helm",
        "pod-identity+monitoring",
        monitor="PodMonitor",
    ),
)


#: The values of each chart preset but self-signed (which needs certificates made first).
HELM_PRESETS: dict[str, tuple[str, ...]] = {
    "default": (),
    "config-map": ("config.watchConfigMap=true",),
    "upstream-compatible": ("upstreamCompatible=true",),
    "monitoring": (
        "metrics.serviceMonitor.enabled=true",
        "metrics.prometheusRule.enabled=true",
        "metrics.dashboard.enabled=true",
        "networkPolicy.enabled=true",
    ),
    "upstream-compatible+pod-monitor": (
        "upstreamCompatible=true",
        "metrics.podMonitor.enabled=true",
        "metrics.prometheusRule.enabled=true",
        "metrics.dashboard.enabled=true",
        "networkPolicy.enabled=true",
    ),
    "pod-identity+monitoring": (
        "podIdentity.enabled=true",
        "podIdentity.clusterName=prod",
        "metrics.podMonitor.enabled=true",
        "metrics.prometheusRule.enabled=true",
    ),
}


def parse(text: str) -> list[Obj]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def self_signed(
    out: Path, *, namespace: str = NAMESPACE, service: str = NAME, dns: tuple[str, ...] = ()
) -> Path:
    """Run tools/deploy/self-signed.sh into `out` with the repository's webhook command."""
    run(
        [
            str(SELF_SIGNED_SCRIPT),
            "--out",
            str(out),
            "--namespace",
            namespace,
            "--service-name",
            service,
            *(arg for name in dns for arg in ("--dns", name)),
        ],
        env={"POD_IDENTITY_WEBHOOK": str(WEBHOOK_COMMAND)},
        timeout=60,
    )
    return out


@dataclass
class Renderer:
    """Renders variants (each once per session) with the given tools."""

    kustomize: Path | None
    helm: Path | None
    workdir: Path
    _cache: dict[str, list[Obj]] = field(default_factory=dict)

    def kustomize_build(self, directory: Path) -> list[Obj]:
        assert self.kustomize is not None
        return parse(run([str(self.kustomize), "build", str(directory)]))

    def manifests_copy(self) -> Path:
        """A copy of manifests/ whose self-signed overlay has its generated/ inputs."""
        copy = self.workdir / "manifests"
        if not copy.exists():
            shutil.copytree(MANIFESTS, copy, ignore=shutil.ignore_patterns("generated"))
            self_signed(copy / "overlays" / "self-signed" / "generated")
        return copy

    def helm_template(
        self,
        *args: str,
        namespace: str = NAMESPACE,
        release: str = NAME,
        chart: Path = CHART,
    ) -> list[Obj]:
        assert self.helm is not None
        return parse(
            run([str(self.helm), "template", release, str(chart), "--namespace", namespace, *args])
        )

    def helm_certs(self) -> Path:
        """`pod-identity-webhook certs` output for the chart's default names."""
        out = self.workdir / "helm-certs"
        if not out.exists():
            self_signed(out)
        return out

    def helm_args(self, preset: str) -> list[str]:
        if preset == "self-signed":
            certs = self.helm_certs()
            return [
                "--set",
                "certificates.mode=self-signed",
                "--set-file",
                f"certificates.caCrt={certs / 'ca.crt'}",
                "--set-file",
                f"certificates.tlsCrt={certs / 'tls.crt'}",
                "--set-file",
                f"certificates.tlsKey={certs / 'tls.key'}",
            ]
        return [arg for value in HELM_PRESETS[preset] for arg in ("--set", value)]

    def with_components(self, variant: Variant) -> Path:
        """A kustomization in the manifests copy: the variant's overlay plus its components
        (in the overlay's namespace, as docs/monitoring.md tells users to write it)."""
        directory = self.manifests_copy() / "variants" / variant.name.replace("/", "_")
        if not directory.exists():
            directory.mkdir(parents=True)
            lines = [
                "apiVersion: kustomize.config.k8s.io/v1beta1",
                "kind: Kustomization",
                *([f"namespace: {variant.namespace}"] if variant.upstream else []),
                "resources:",
                f"  - ../../overlays/{variant.source}",
                "components:",
                *(f"  - ../../components/{name}" for name in variant.components),
            ]
            (directory / "kustomization.yaml").write_text("\n".join(lines) + "\n")
        return directory

    def render(self, variant: Variant) -> list[Obj]:
        if variant.name not in self._cache:
            if variant.tool == "kustomize" and variant.components:
                objects = self.kustomize_build(self.with_components(variant))
            elif variant.tool == "kustomize":
                overlay = self.manifests_copy() / "overlays" / variant.source
                objects = self.kustomize_build(overlay)
            else:
                objects = self.helm_template(
                    *self.helm_args(variant.source), namespace=variant.namespace
                )
            self._cache[variant.name] = objects
        return self._cache[variant.name]


# --- lookups -----------------------------------------------------------------------------


def of_kind(objects: Iterable[Obj], kind: str) -> list[Obj]:
    return [obj for obj in objects if obj["kind"] == kind]


def one(objects: Iterable[Obj], kind: str, name: str | None = None) -> Obj:
    found = [
        obj for obj in of_kind(objects, kind) if name is None or obj["metadata"]["name"] == name
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def rules_spec(path: Path) -> Obj:
    """The spec of the one PrometheusRule in a component's rules file."""
    spec: Obj = one(parse(path.read_text(encoding="utf-8")), "PrometheusRule")["spec"]
    return spec


def container(deployment: Obj) -> Obj:
    (first,) = deployment["spec"]["template"]["spec"]["containers"]
    result: Obj = first
    return result


def port_number(container_spec: Obj, port: int | str) -> int:
    """A container port given by number or name."""
    if isinstance(port, int):
        return port
    for item in container_spec.get("ports", []):
        if item.get("name") == port:
            number: int = item["containerPort"]
            return number
    raise AssertionError(f"no container port named {port!r}")


def selects(selector: Obj, labels: dict[str, str]) -> bool:
    """Kubernetes label-selector semantics (matchLabels and matchExpressions)."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression["key"], expression["operator"]
        values = expression.get("values") or []
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


def namespaced(obj: Obj) -> bool:
    return obj["kind"] not in {
        "Namespace",
        "ClusterRole",
        "ClusterRoleBinding",
        "MutatingWebhookConfiguration",
        "ClusterIssuer",
    }
