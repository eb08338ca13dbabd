"""Pure. Ours: a local STS and a private CA for the SDK in a Pod, for CI clusters that run moto
or LocalStack as their AWS. Upstream declined it (its PR #302), so people patch the variables in
by hand.

`--sts-endpoint-url` and `--ca-bundle-config-map` apply to every Pod that gets credentials; a
ServiceAccount's `sts-endpoint-url` and `ca-bundle-config-map` annotations override them, and
an empty annotation turns them off for that ServiceAccount. The variables ride along with the
credentials under the same add-only rules: a container keeps a variable it already sets (and
then gets no CA mount either), and one that sets AWS_ENDPOINT_URL has chosen its endpoints and
gets no STS URL, which would silently take precedence over it in the SDKs. The role policy
decides per namespace which endpoints and bundles may be injected (`policy`).

The bundle is one key of a ConfigMap in the Pod's namespace, mounted read-only through a plain
`configMap` volume: the volume says exactly that in `kubectl describe`, the kubelet refreshes
the file when the ConfigMap changes, and the token's projected volume, which upstream defines
and other tools match by shape, stays as it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from webhook.admission.notes import Note
from webhook.admission.wire import EnvVar, Volume, VolumeMount
from webhook.config import ConfigMapKey, MutationConfig, parse_config_map_key, parse_endpoint_url

__all__ = [
    "CA_BUNDLE_VAR",
    "CA_BUNDLE_VOLUME",
    "ENDPOINT_VARS",
    "NO_CA_BUNDLE",
    "STS_ENDPOINT_VAR",
    "EndpointAnnotations",
    "Endpoints",
    "ca_mount",
    "ca_volume",
    "endpoint_audit",
    "endpoint_variables",
    "parse_endpoint_annotations",
    "resolve_endpoints",
]

STS_ENDPOINT_URL = "sts-endpoint-url"  # annotation suffixes
CA_BUNDLE_CONFIG_MAP = "ca-bundle-config-map"

STS_ENDPOINT_VAR = "AWS_ENDPOINT_URL_STS"
ENDPOINT_VAR = "AWS_ENDPOINT_URL"  # every service's endpoint; the SDKs prefer _STS over it
CA_BUNDLE_VAR = "AWS_CA_BUNDLE"
CA_BUNDLE_VOLUME = "aws-ca-bundle"
CA_BUNDLE_MOUNT_PATH = "/var/run/secrets/eks.amazonaws.com/ca-bundle"
CA_BUNDLE_FILE = "ca-bundle.pem"
ENDPOINT_VARS = (STS_ENDPOINT_VAR, CA_BUNDLE_VAR)
"""Reserved to the webhook: extension rules cannot add them around the policy."""

NO_CA_BUNDLE = ConfigMapKey("", "")
"""An annotation that says `""`: no bundle, whatever --ca-bundle-config-map says."""

Origin = Literal["flag", "service-account"]


@dataclass(frozen=True, slots=True)
class EndpointAnnotations:
    """A ServiceAccount's overrides. None: the flag's; "" or NO_CA_BUNDLE: none."""

    sts_url: str | None = None
    ca_bundle: ConfigMapKey | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Endpoints:
    """What one Pod's SDK is pointed at, and where each setting came from."""

    sts_url: str = ""
    ca_bundle: ConfigMapKey | None = None
    sts_origin: Origin = "flag"
    ca_origin: Origin = "flag"


def parse_endpoint_annotations(
    annotations: Mapping[str, Any], prefix: str, notes: list[Note]
) -> EndpointAnnotations | None:
    """The overrides of a ServiceAccount (`prefix` ends with "/"); None when it has none.
    An invalid value is noted and ignored, so the flag applies."""
    url = annotations.get(prefix + STS_ENDPOINT_URL)
    bundle = annotations.get(prefix + CA_BUNDLE_CONFIG_MAP)
    if not isinstance(url, str) and not isinstance(bundle, str):
        return None
    sts_url = None
    if isinstance(url, str):
        try:
            sts_url = parse_endpoint_url(url) if url else ""
        except ValueError as exc:
            # Not echoed: a URL with user information carries a password.
            text = f"{prefix}{STS_ENDPOINT_URL} {exc}; ignored"
            notes.append(Note("invalid-annotation", text))
    ca_bundle = None
    if isinstance(bundle, str):
        try:
            ca_bundle = parse_config_map_key(bundle) if bundle else NO_CA_BUNDLE
        except ValueError as exc:
            text = f"{prefix}{CA_BUNDLE_CONFIG_MAP}: {exc}; ignored"
            notes.append(Note("invalid-annotation", text))
    return EndpointAnnotations(sts_url, ca_bundle)


def resolve_endpoints(
    annotated: EndpointAnnotations | None, config: MutationConfig, notes: list[Note]
) -> Endpoints | None:
    """The ServiceAccount's settings over the flags'; None when neither applies (the usual
    case, which costs nothing more)."""
    sts_url, ca_bundle = config.sts_endpoint_url, config.ca_bundle
    sts_origin: Origin = "flag"
    ca_origin: Origin = "flag"
    if annotated is not None:
        if annotated.sts_url is not None:
            sts_url, sts_origin = annotated.sts_url, "service-account"
        if annotated.ca_bundle is not None:
            ca_bundle, ca_origin = annotated.ca_bundle, "service-account"
    if ca_bundle is NO_CA_BUNDLE:
        ca_bundle = None
    if not sts_url and ca_bundle is None:
        return None
    if sts_url:
        text = f"STS calls go to {sts_url} ({STS_ENDPOINT_VAR}, {_origin(sts_origin)})"
        notes.append(Note("sts-endpoint", text))
    if ca_bundle is not None:
        text = f"the SDK trusts ConfigMap {ca_bundle} ({CA_BUNDLE_VAR}, {_origin(ca_origin)})"
        notes.append(Note("ca-bundle", text))
    return Endpoints(
        sts_url=sts_url, ca_bundle=ca_bundle, sts_origin=sts_origin, ca_origin=ca_origin
    )


def _origin(origin: Origin) -> str:
    return "from the flag" if origin == "flag" else "from the ServiceAccount"


def endpoint_variables(
    name: str, present: set[str], endpoints: Endpoints, ca_file: str, notes: list[Note]
) -> tuple[list[EnvVar], bool]:
    """The variables one container lacks, and whether it takes the CA mount."""
    additions: list[EnvVar] = []
    if endpoints.sts_url:
        if STS_ENDPOINT_VAR in present or ENDPOINT_VAR in present:
            own = STS_ENDPOINT_VAR if STS_ENDPOINT_VAR in present else ENDPOINT_VAR
            text = f"container {name} already sets {own}; {STS_ENDPOINT_VAR} not added"
            notes.append(Note("variables-present", text))
        else:
            additions.append({"name": STS_ENDPOINT_VAR, "value": endpoints.sts_url})
    mounted = False
    if endpoints.ca_bundle is not None:
        if CA_BUNDLE_VAR in present:
            text = f"container {name} already sets {CA_BUNDLE_VAR}; not overwritten"
            notes.append(Note("variables-present", text))
        else:
            additions.append({"name": CA_BUNDLE_VAR, "value": ca_file})
            mounted = True
    return additions, mounted


def ca_mount() -> VolumeMount:
    return {"name": CA_BUNDLE_VOLUME, "readOnly": True, "mountPath": CA_BUNDLE_MOUNT_PATH}


def ca_volume(bundle: ConfigMapKey) -> Volume:
    """The ConfigMap's one key as a read-only file; a missing ConfigMap keeps the Pod waiting
    with an event that names it, rather than starting an SDK that cannot verify its peer."""
    return {
        "name": CA_BUNDLE_VOLUME,
        "configMap": {
            "name": bundle.name,
            "items": [{"key": bundle.key, "path": CA_BUNDLE_FILE}],
        },
    }


def endpoint_audit(endpoints: Endpoints | None) -> dict[str, str]:
    """The audit annotations that record where a Pod's STS calls go and what it trusts."""
    if endpoints is None:
        return {}
    audit = {}
    if endpoints.sts_url:
        audit["sts-endpoint-url"] = endpoints.sts_url
    if endpoints.ca_bundle is not None:
        audit["ca-bundle"] = str(endpoints.ca_bundle)
    return audit
