"""Properties of the patch over generated Pods, ServiceAccounts and flags (hypothesis)."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import jsonpatch
import pytest
from hypothesis import given
from hypothesis import strategies as st

from webhook.admission.entries import ConfigMapEntry, parse_service_account
from webhook.admission.mutation import decide
from webhook.admission.patches import POD_IDENTITY_LABEL
from webhook.aws import SessionName
from webhook.config import ConfigMapKey, MutationConfig
from webhook.sources.manifests import StaticSources

NAMES = st.sampled_from(["app", "sidecar", "init", "b", " b", "x,y"])
VARS = st.sampled_from(
    [
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_STS_REGIONAL_ENDPOINTS",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
        "AWS_ROLE_SESSION_NAME",
        "AWS_ENDPOINT_URL_STS",
        "AWS_ENDPOINT_URL",
        "AWS_CA_BUNDLE",
        "OTHER",
    ]
)
VOLUME_NAMES = st.sampled_from(
    ["aws-iam-token", "eks-pod-identity-token", "aws-ca-bundle", "data", "cache"]
)
UNKNOWN = st.dictionaries(
    st.sampled_from(["startupProbe", "futureField", "restartPolicy", "resizePolicy"]),
    st.one_of(
        st.none(),
        st.integers(),
        st.text(max_size=5),
        st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    ),
    max_size=2,
)


@st.composite
def env_var(draw: st.DrawFn) -> dict[str, Any]:
    var: dict[str, Any] = {"name": draw(VARS)}
    if draw(st.booleans()):
        var["value"] = draw(st.text(max_size=8))
    else:
        var["valueFrom"] = {"fieldRef": {"fieldPath": "metadata.name"}}
    return var


@st.composite
def container(draw: st.DrawFn) -> dict[str, Any]:
    result: dict[str, Any] = {"name": draw(NAMES), "image": "busybox", **draw(UNKNOWN)}
    env = draw(st.one_of(st.none(), st.just("absent"), st.lists(env_var(), max_size=4)))
    if env != "absent":
        result["env"] = env
    mounts = draw(st.one_of(st.just("absent"), st.lists(VOLUME_NAMES, max_size=2)))
    if mounts != "absent":
        result["volumeMounts"] = [{"name": n, "mountPath": f"/m/{n}"} for n in mounts]
    return result


@st.composite
def pod_annotations(draw: st.DrawFn) -> dict[str, str]:
    annotations = {}
    if draw(st.booleans()):
        annotations["eks.amazonaws.com/skip-containers"] = draw(
            st.sampled_from(["sidecar", "app, b", '"x,y"', 'bad"', ""])
        )
    if draw(st.booleans()):
        annotations["eks.amazonaws.com/include-containers"] = draw(
            st.sampled_from(["app", "app,init", 'x"'])
        )
    if draw(st.booleans()):
        annotations["eks.amazonaws.com/token-expiration"] = draw(
            st.sampled_from(["0", "3600", "86400", "x", "-1"])
        )
    if draw(st.booleans()):
        annotations["eks.amazonaws.com/role-session-name"] = draw(
            st.sampled_from(["", "batch", "not valid", "fieldRef:metadata.name"])
        )
    if draw(st.booleans()):
        annotations[f"eks.amazonaws.com/container-role-arn.{draw(NAMES)}"] = draw(
            st.sampled_from(["arn:aws:iam::111122223333:role/own", "", "own"])
        )
    return annotations


@st.composite
def pods(draw: st.DrawFn) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": "p", "annotations": draw(pod_annotations())}
    labels = draw(
        st.sampled_from([None, "absent", {}, {"a": "b"}, {POD_IDENTITY_LABEL: "enabled"}])
    )
    if labels != "absent":
        metadata["labels"] = labels
    spec: dict[str, Any] = {
        "serviceAccountName": "app",
        "containers": draw(st.lists(container(), min_size=0, max_size=3)),
        "ephemeralContainers": draw(st.lists(container(), max_size=1)),
    }
    if draw(st.booleans()):
        spec["initContainers"] = draw(st.lists(container(), max_size=2))
    volumes = draw(
        st.one_of(st.none(), st.just("absent"), st.lists(VOLUME_NAMES, max_size=2, unique=True))
    )
    if volumes != "absent":
        spec["volumes"] = (
            volumes if volumes is None else [{"name": n, "emptyDir": {}} for n in volumes]
        )
    if draw(st.booleans()):
        spec["nodeSelector"] = {"kubernetes.io/os": draw(st.sampled_from(["windows", "linux"]))}
    if draw(st.booleans()):
        spec["os"] = {"name": draw(st.sampled_from(["windows", "linux"]))}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}


@st.composite
def service_account_annotations(draw: st.DrawFn) -> dict[str, str]:
    annotations: dict[str, str] = {}
    if draw(st.booleans()):
        annotations["eks.amazonaws.com/role-arn"] = draw(
            st.sampled_from(["arn:aws:iam::111122223333:role/r", ""])
        )
    if draw(st.booleans()):
        annotations["eks.amazonaws.com/sts-regional-endpoints"] = draw(
            st.sampled_from(["true", "false", "x"])
        )
    if draw(st.booleans()):
        annotations["eks.amazonaws.com/audience"] = draw(st.sampled_from(["", "aud"]))
    if draw(st.booleans()):
        annotations["eks.amazonaws.com/region"] = draw(st.sampled_from(["", "eu-west-1"]))
    if draw(st.booleans()):
        annotations["eks.amazonaws.com/role-session-name"] = draw(
            st.sampled_from(["", "from-sa", "x"])
        )
    if draw(st.booleans()):
        annotations["eks.amazonaws.com/sts-endpoint-url"] = draw(
            st.sampled_from(["", "http://localstack.ci:4566", "ftp://x", "https://u:p@h"])
        )
    if draw(st.booleans()):
        annotations["eks.amazonaws.com/ca-bundle-config-map"] = draw(
            st.sampled_from(["", "local-ca", "local-ca/root.pem", "Not/A/Name"])
        )
    return annotations


@st.composite
def setups(draw: st.DrawFn) -> tuple[StaticSources, MutationConfig]:
    config = MutationConfig(
        region=draw(st.sampled_from(["", "us-west-2"])),
        sts_regional_endpoint=draw(st.booleans()),
        token_mount_path=draw(
            st.sampled_from(["/var/run/secrets/eks.amazonaws.com/serviceaccount", "/t/"])
        ),
        session_name=draw(
            st.sampled_from([None, SessionName("cluster"), SessionName("metadata.name", True)])
        ),
        sts_endpoint_url=draw(st.sampled_from(["", "https://moto.ci.svc:5000"])),
        ca_bundle=draw(st.sampled_from([None, ConfigMapKey("aws-local-ca", "ca.crt")])),
    )
    sources = StaticSources()
    if draw(st.booleans()):
        annotations = draw(service_account_annotations())
        sources.service_accounts["default/app"] = parse_service_account(annotations, config)
    if draw(st.booleans()):
        key = draw(st.sampled_from(["default/app", "*/app", "other/app"]))
        sources.config_map[key] = ConfigMapEntry(
            "arn:aws:iam::111122223333:role/cm", "", False, 3600
        )
    if draw(st.booleans()):
        sources.identities = frozenset({("default", "app")})
    return sources, dataclasses.replace(config)


def contained(before: Any, after: Any) -> bool:
    """`after` keeps every value of `before`; lists may only grow at one end."""
    if isinstance(before, dict):
        return isinstance(after, dict) and all(
            key in after
            and (contained(value, after[key]) or (value is None and after[key] is not None))
            for key, value in before.items()
        )
    if isinstance(before, list):
        if not isinstance(after, list) or len(after) < len(before):
            return False
        n = len(before)
        head, tail = after[:n], after[len(after) - n :]
        return all(map(contained, before, head)) or all(map(contained, before, tail))
    return before == after


def lowest(low: int, high: int) -> int:
    return low


# The "full" profile (CI) generates 1,000 Pods: minutes under coverage on a busy machine.
@pytest.mark.timeout(600)
@given(pods(), setups())
def test_patch_is_additive_applicable_and_idempotent(pod, setup):
    sources, config = setup
    original = copy.deepcopy(pod)
    decision = decide(pod, namespace="default", sources=sources, config=config, jitter=lowest)
    assert pod == original
    assert all(op["op"] == "add" for op in decision.patch)

    result = jsonpatch.apply_patch(pod, list(decision.patch))

    comparable = copy.deepcopy(original)
    labels = comparable["metadata"].get("labels")
    if decision.method == "container_credentials" and isinstance(labels, dict):
        labels.pop(POD_IDENTITY_LABEL, None)  # the one webhook-owned value upstream overwrites
    assert contained(comparable, result)
    assert result["spec"]["ephemeralContainers"] == original["spec"]["ephemeralContainers"]

    again = decide(result, namespace="default", sources=sources, config=config, jitter=lowest)
    assert again.patch == ()
