"""What is particular to the kustomize layout of manifests/: the base files the e2e tier
reads raw, the upstream-compatible names, the components, the self-signed script's inputs."""

from __future__ import annotations

import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest
import yaml

from tests.deploy.rendering import (
    KUSTOMIZE_VARIANTS,
    MANIFESTS,
    NAME,
    SECRET,
    UPSTREAM_SELECTOR,
    WEBHOOK_NAME,
    Renderer,
    Variant,
    container,
    of_kind,
    one,
    parse,
)

UPSTREAM = next(v for v in KUSTOMIZE_VARIANTS if v.upstream)
CERT_MANAGER = next(v for v in KUSTOMIZE_VARIANTS if v.source == "cert-manager")


def _overlay(manifests: Path, body: str) -> Path:
    """A throw-away overlay inside a copy of manifests/ (kustomize wants relative paths)."""
    directory = manifests / "test-overlay"
    directory.mkdir()
    (directory / "kustomization.yaml").write_text(textwrap.dedent(body), encoding="utf-8")
    return directory


def test_base_files_the_e2e_tier_applies_stay_plain_kubernetes_yaml() -> None:
    """tests/e2e applies these files without kustomize, so they must be complete objects."""
    rbac = parse((MANIFESTS / "base" / "rbac.yaml").read_text(encoding="utf-8"))
    assert [o["kind"] for o in rbac] == ["ServiceAccount", "ClusterRole", "ClusterRoleBinding"]
    assert one(rbac, "ServiceAccount")["metadata"]["namespace"] == "pod-identity-webhook"
    (configuration,) = parse(
        (MANIFESTS / "base" / "mutatingwebhook.yaml").read_text(encoding="utf-8")
    )
    assert configuration["kind"] == "MutatingWebhookConfiguration"
    assert configuration["webhooks"][0]["clientConfig"]["service"]["path"] == "/mutate"
    config_map = parse(
        (MANIFESTS / "components" / "config-map" / "rbac.yaml").read_text(encoding="utf-8")
    )
    assert [o["kind"] for o in config_map] == ["Role", "RoleBinding"]


def test_base_renders_without_any_certificate_source(renderer: Renderer, kustomize: Path) -> None:
    objects = renderer.kustomize_build(MANIFESTS / "base")
    assert sorted(o["kind"] for o in objects) == sorted(
        [
            "Namespace",
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "Deployment",
            "Service",
            "PodDisruptionBudget",
            "MutatingWebhookConfiguration",
        ]
    )
    webhook = one(objects, "MutatingWebhookConfiguration")
    assert "caBundle" not in webhook["webhooks"][0]["clientConfig"]


@pytest.mark.parametrize("variant", KUSTOMIZE_VARIANTS, ids=[v.name for v in KUSTOMIZE_VARIANTS])
def test_every_object_carries_the_common_labels(
    variant: Variant, renderer: Renderer, kustomize: Path
) -> None:
    for obj in renderer.render(variant):
        labels = obj["metadata"].get("labels") or {}
        if obj["kind"] == "Secret":  # made by the overlay's secretGenerator
            continue
        assert labels.get("app.kubernetes.io/name") == NAME, obj["kind"]


def test_upstream_compatible_overlay_keeps_upstream_names(
    renderer: Renderer, kustomize: Path
) -> None:
    objects = renderer.render(UPSTREAM)
    for kind in (
        "Deployment",
        "Service",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "MutatingWebhookConfiguration",
        "PodDisruptionBudget",
    ):
        assert one(objects, kind)["metadata"]["name"] == NAME
    assert one(objects, "Certificate", NAME)["spec"]["secretName"] == SECRET
    deployment = one(objects, "Deployment")
    assert deployment["metadata"]["namespace"] == "default"
    assert deployment["spec"]["selector"] == {"matchLabels": UPSTREAM_SELECTOR}
    # Volume name as upstream's: an in-place apply merges it instead of adding a second one.
    volumes = deployment["spec"]["template"]["spec"]["volumes"]
    assert volumes[0]["name"] == "cert"
    assert container(deployment)["name"] == NAME
    assert container(deployment)["command"] == [NAME]
    (hook,) = one(objects, "MutatingWebhookConfiguration")["webhooks"]
    assert hook["name"] == WEBHOOK_NAME
    assert one(objects, "Service")["spec"]["ports"][0]["port"] == 443
    assert of_kind(objects, "Namespace") == []


def test_other_overlays_keep_upstream_selector_for_in_place_adoption(
    renderer: Renderer, kustomize: Path
) -> None:
    deployment = one(renderer.render(CERT_MANAGER), "Deployment")
    assert deployment["spec"]["selector"] == {"matchLabels": UPSTREAM_SELECTOR}
    assert "command" not in container(deployment)


def test_fail_closed_component_switches_only_the_failure_policy(
    renderer: Renderer, kustomize: Path
) -> None:
    manifests = renderer.manifests_copy()
    overlay = _overlay(
        manifests,
        """\
        apiVersion: kustomize.config.k8s.io/v1beta1
        kind: Kustomization
        resources:
          - ../overlays/cert-manager
        components:
          - ../components/fail-closed
        """,
    )
    try:
        closed = renderer.kustomize_build(overlay)
    finally:
        (overlay / "kustomization.yaml").unlink()
        overlay.rmdir()
    opened = renderer.render(CERT_MANAGER)
    closed_hook = one(closed, "MutatingWebhookConfiguration")["webhooks"][0]
    opened_hook = one(opened, "MutatingWebhookConfiguration")["webhooks"][0]
    assert closed_hook["failurePolicy"] == "Fail"
    assert {**closed_hook, "failurePolicy": "Ignore"} == opened_hook


def test_config_map_component_adds_the_flag_once(renderer: Renderer, kustomize: Path) -> None:
    variant = next(v for v in KUSTOMIZE_VARIANTS if v.config_map)
    args = container(one(renderer.render(variant), "Deployment"))["args"]
    assert args.count("--watch-config-map=true") == 1


def test_self_signed_overlay_needs_the_script_output_first(kustomize: Path, tmp_path: Path) -> None:
    """Without generated/ the build fails, rather than deploying a webhook with no CA."""
    copy = tmp_path / "manifests"
    shutil.copytree(MANIFESTS, copy, ignore=shutil.ignore_patterns("generated"))
    result = subprocess.run(
        [str(kustomize), "build", str(copy / "overlays" / "self-signed")],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode != 0
    assert "generated" in result.stderr


def test_generated_certificates_are_never_committed() -> None:
    ignore = (MANIFESTS / "overlays" / "self-signed" / ".gitignore").read_text(encoding="utf-8")
    assert "/generated/" in ignore.splitlines()


def test_documented_out_of_tree_overlay_sets_the_image_and_leaves_the_checkout_alone(
    renderer: Renderer, kustomize: Path, tmp_path: Path
) -> None:
    """manifests/README.md's own overlay with `images:`, laid out as it says: next to a
    checkout, which the build neither needs to edit nor changes."""
    from tests.test_docs import MANIFESTS_README, block

    text = block(
        MANIFESTS_README.read_text(encoding="utf-8"),
        "# my-webhook/kustomization.yaml, next to a checkout of this repository",
    )
    (tmp_path / "pod-identity-webhook").symlink_to(MANIFESTS.parent)
    overlay = tmp_path / "my-webhook"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(text, encoding="utf-8")
    files = [p for p in MANIFESTS.rglob("*") if p.is_file() and "generated" not in p.parts]
    before = {p: p.read_bytes() for p in files}
    objects = renderer.kustomize_build(overlay)
    assert container(one(objects, "Deployment", NAME))["image"] == (
        "registry.example.com/platform/pod-identity-webhook:0.1.0"
    )
    # Apart from the image, the cert-manager overlay's objects.
    reference = renderer.kustomize_build(MANIFESTS / "overlays" / "cert-manager")
    container(one(reference, "Deployment", NAME))["image"] = container(
        one(objects, "Deployment", NAME)
    )["image"]
    assert objects == reference
    assert {p: p.read_bytes() for p in files} == before


def test_guide_overlay_does_the_whole_install_step(renderer: Renderer, tmp_path: Path) -> None:
    """docs/self-hosted-irsa.md step 8: its overlay of the self-signed overlay gives the
    namespace with its Pod Security labels, the Secret, the caBundle, the image and the
    region; nothing is left for the reader to write."""
    from tests.test_docs import IRSA_GUIDE, block

    text = block(
        IRSA_GUIDE.read_text(encoding="utf-8"),
        "# my-webhook/kustomization.yaml, next to a checkout of this repository",
    )
    # A checkout whose self-signed overlay has its generated/ inputs, as self-signed.sh leaves.
    (tmp_path / "pod-identity-webhook").symlink_to(renderer.manifests_copy().parent)
    overlay = tmp_path / "my-webhook"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(text, encoding="utf-8")
    objects = renderer.kustomize_build(overlay)

    namespace = one(objects, "Namespace", NAME)
    base = yaml.safe_load((MANIFESTS / "base" / "namespace.yaml").read_text(encoding="utf-8"))
    assert base["metadata"]["labels"].items() <= namespace["metadata"]["labels"].items()
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    one(objects, "Secret", SECRET)
    for kind in ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Service"):
        one(objects, kind, NAME)
    (hook,) = one(objects, "MutatingWebhookConfiguration", NAME)["webhooks"]
    assert hook["clientConfig"]["caBundle"]
    spec = container(one(objects, "Deployment", NAME))
    assert spec["image"] == "registry.example.com/platform/pod-identity-webhook:0.1.0"
    assert "--aws-default-region=us-west-2" in spec["args"]
