"""The Pods a repository's manifests make: which objects carry a Pod template, where it is, and
the Pod the API server would admit from it. The `mutate` command's view of a repository.

A controller creates a workload's Pods from its template in the workload's namespace; the Pod's
`metadata` and `spec` are the template's. The webhook sees them after the API server's
ServiceAccount admission plugin, which names the ServiceAccount when the template does not
(the deprecated `serviceAccount` field, else `default`). Each template is therefore admitted as
such a Pod, and what the webhook adds to the Pod is added at the same place under the template,
so the patch of a document is the Pod's patch with the template's JSON pointer in front.

Documents that carry no Pod pass through unchanged: silently for the built-in kinds that never
do, with a warning for kinds this module does not know (a custom resource may well make Pods).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, cast

from webhook.admission.wire import Pod
from webhook.errors import InvalidPod

__all__ = [
    "POD_TEMPLATES",
    "Template",
    "dotted",
    "pod_templates",
    "service_account_default",
]

#: (API group, kind) → the path of the Pod template in the object; () is the Pod itself.
POD_TEMPLATES: dict[tuple[str, str], tuple[str, ...]] = {
    ("", "Pod"): (),
    ("", "ReplicationController"): ("spec", "template"),
    ("apps", "Deployment"): ("spec", "template"),
    ("apps", "StatefulSet"): ("spec", "template"),
    ("apps", "DaemonSet"): ("spec", "template"),
    ("apps", "ReplicaSet"): ("spec", "template"),
    ("batch", "Job"): ("spec", "template"),
    ("batch", "CronJob"): ("spec", "jobTemplate", "spec", "template"),
}

#: Built-in kinds that never make Pods: passed through without a warning.
WITHOUT_PODS: frozenset[tuple[str, str]] = frozenset(
    {
        *(
            ("", kind)
            for kind in (
                "ConfigMap",
                "Endpoints",
                "LimitRange",
                "Namespace",
                "PersistentVolume",
                "PersistentVolumeClaim",
                "ResourceQuota",
                "Secret",
                "Service",
                "ServiceAccount",
            )
        ),
        *(
            ("rbac.authorization.k8s.io", kind)
            for kind in ("Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding")
        ),
        ("networking.k8s.io", "Ingress"),
        ("networking.k8s.io", "IngressClass"),
        ("networking.k8s.io", "NetworkPolicy"),
        ("policy", "PodDisruptionBudget"),
        ("autoscaling", "HorizontalPodAutoscaler"),
        ("scheduling.k8s.io", "PriorityClass"),
        ("storage.k8s.io", "StorageClass"),
        ("discovery.k8s.io", "EndpointSlice"),
        ("apiextensions.k8s.io", "CustomResourceDefinition"),
        ("admissionregistration.k8s.io", "MutatingWebhookConfiguration"),
        ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration"),
        ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy"),
        ("admissionregistration.k8s.io", "ValidatingAdmissionPolicyBinding"),
        ("apiregistration.k8s.io", "APIService"),
        ("coordination.k8s.io", "Lease"),
    }
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Template:
    """One Pod the API server would admit from a document."""

    pointer: str
    """JSON pointer of the Pod, or of the template, inside its document ("" for a Pod)."""
    place: str
    """Where the object is in its document: "" or `items[2]` in a List."""
    path: str
    """Where the template is in the object: "" for a Pod, `spec.template`, ..."""
    kind: str
    """The kind of the object that holds it."""
    namespace: str
    name: str
    pod: Pod
    """What the webhook sees: the Pod, or a Pod with the template's metadata and spec."""
    default_service_account: str
    """What the ServiceAccount admission plugin puts in an empty `serviceAccountName`."""

    @property
    def label(self) -> str:
        """`Deployment team/web`, or `Deployment team/web (items[2])` in a List."""
        where = f" ({self.place})" if self.place else ""
        return f"{self.kind} {self.namespace}/{self.name}{where}"


def dotted(pointer: str) -> str:
    """A JSON pointer as people write the path: `/items/2/spec` is `items[2].spec`."""
    out = ""
    for token in pointer.split("/")[1:]:
        out += f"[{token}]" if token.isdigit() else (f".{token}" if out else token)
    return out


def _group(api_version: Any) -> str | None:
    """The API group; "" for the core group or no apiVersion; None when it is no string."""
    if api_version is None:
        return ""
    if not isinstance(api_version, str):
        return None
    group, slash, _ = api_version.rpartition("/")
    return group if slash else ""


def _metadata(obj: Mapping[str, Any], where: str) -> tuple[str, str]:
    metadata = obj.get("metadata")
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise InvalidPod(f"{where}metadata must be an object")
    namespace = metadata.get("namespace") or "default"
    if not isinstance(namespace, str):
        raise InvalidPod(f"{where}metadata.namespace must be a string")
    name = metadata.get("name") or metadata.get("generateName") or "(unnamed)"
    return namespace, str(name)


def _describe(obj: Mapping[str, Any]) -> str:
    """`namespace/name` of any object, whatever shape its metadata has."""
    try:
        namespace, name = _metadata(obj, "")
    except InvalidPod:
        return "(unnamed)"
    return f"{namespace}/{name}"


def service_account_default(spec: Any) -> str:
    """The ServiceAccount a Pod with this spec runs as when `serviceAccountName` is empty: the
    deprecated `serviceAccount` (the API server copies it over), else `default`."""
    if isinstance(spec, dict):
        deprecated = spec.get("serviceAccount")
        if isinstance(deprecated, str) and deprecated:
            return deprecated
    return "default"


def _template(
    obj: Mapping[str, Any], path: tuple[str, ...], where: str
) -> Mapping[str, Any] | None:
    """The object at `path`; None when a step is missing; InvalidPod when one is no object."""
    current: Any = obj
    for depth, key in enumerate(path, 1):
        current = current.get(key)
        if current is None:
            return None
        if not isinstance(current, dict):
            raise InvalidPod(f"{where}{'.'.join(path[:depth])} must be an object")
    return cast("Mapping[str, Any]", current)


def pod_templates(document: Any, *, kindless_pod: bool = False) -> tuple[list[Template], list[str]]:
    """The Pods of one document (a `List`'s items included), and why other objects are
    passed through unchanged. With `kindless_pod`, a document without `kind` is a Pod.

    Raises InvalidPod when an object that makes Pods is not shaped like one where it matters.
    """
    templates: list[Template] = []
    warnings: list[str] = []
    for pointer, obj in _objects(document, ""):
        place = dotted(pointer)
        at = f"{place}: " if place else ""
        kind = obj.get("kind")
        if kind is None and kindless_pod and not pointer:
            kind = "Pod"
        if not isinstance(kind, str) or not kind:
            warnings.append(f"{at}an object without `kind` is passed through unchanged")
            continue
        group = _group(obj.get("apiVersion"))
        path = POD_TEMPLATES.get((group, kind)) if group is not None else None
        if path is None:
            if group is None or (group, kind) not in WITHOUT_PODS:
                warnings.append(
                    f"{at}{kind} {_describe(obj)} (apiVersion {obj.get('apiVersion')}) is not a "
                    "kind mutate admits Pods from; passed through unchanged"
                )
            continue
        namespace, name = _metadata(obj, at)
        found = _template(obj, path, f"{at}{kind} {namespace}/{name}: ")
        if found is None:
            warnings.append(
                f"{at}{kind} {namespace}/{name} has no {'.'.join(path)}; passed through unchanged"
            )
            continue
        view = found if not path else {k: found[k] for k in ("metadata", "spec") if k in found}
        templates.append(
            Template(
                pointer=pointer + "".join(f"/{key}" for key in path),
                place=place,
                path=".".join(path),
                kind=kind,
                namespace=namespace,
                name=name,
                pod=cast("Pod", view),
                default_service_account=service_account_default(found.get("spec")),
            )
        )
    return templates, warnings


def _objects(document: Any, pointer: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Each object of a document, `List` items flattened, with its JSON pointer."""
    if not isinstance(document, dict):
        at = f"{dotted(pointer)}: " if pointer else ""
        raise InvalidPod(f"{at}not a Kubernetes object (a mapping), but {type(document).__name__}")
    kind = document.get("kind")
    if isinstance(kind, str) and kind.endswith("List") and "items" in document:
        items = document["items"]
        if items is None:
            return
        if not isinstance(items, list):
            raise InvalidPod(f"{kind}.items must be a list")
        for index, item in enumerate(items):
            yield from _objects(item, f"{pointer}/items/{index}")
        return
    yield pointer, document
