"""The documentation's examples, run through the real `mutate` command, so they cannot drift.

Each example is taken from the Markdown file itself: a fenced block is found by its first
line (`# policy.yaml`), a message by the code span it is quoted in. Changing an example without
changing the behaviour (or the reverse) fails here.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shlex
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.reviews import decode_patch
from webhook.admission.endpoints import Endpoints
from webhook.admission.mutation import Decision
from webhook.admission.policy import evaluate, parse_policy
from webhook.cli import run
from webhook.config import ConfigMapKey

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
MANIFESTS_README = REPO / "manifests" / "README.md"
LOCAL_STS = REPO / "docs" / "local-sts.md"

_FENCE = re.compile(
    r"^(?P<indent>[ ]*)```(?P<info>[\w-]*)\n(?P<body>.*?)^(?P=indent)```$", re.MULTILINE | re.DOTALL
)


def fenced_blocks(markdown: str) -> list[str]:
    """Every fenced code block's text, dedented (blocks inside list items are indented)."""
    return [textwrap.dedent(match.group("body")) for match in _FENCE.finditer(markdown)]


def block(markdown: str, first_line: str) -> str:
    """The one fenced block whose first line is `first_line`."""
    found = [text for text in fenced_blocks(markdown) if text.startswith(first_line + "\n")]
    assert len(found) == 1, f"{len(found)} blocks start with {first_line!r}"
    return found[0]


def code_span(markdown: str, starts_with: str) -> str:
    """The one inline code span starting with `starts_with`, its line breaks made spaces."""
    spans = [
        " ".join(span.split())
        for span in re.findall(r"(?<!`)`([^`]+)`(?!`)", markdown)
        if span.startswith(starts_with)
    ]
    assert len(spans) == 1, f"{len(spans)} code spans start with {starts_with!r}"
    return spans[0]


def mutate(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = run(["mutate", *argv], stdin=io.StringIO(), stdout=out, stderr=err)
    return status, out.getvalue(), err.getvalue()


def pod(namespace: str, service_account: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"{service_account}-pod", "namespace": namespace},
        "spec": {"serviceAccountName": service_account, "containers": [{"name": "app"}]},
    }


def env_of(patch: list[dict[str, Any]]) -> dict[str, str]:
    return {
        variable["name"]: variable.get("value", "")
        for op in patch
        if op["path"].endswith("/env")
        for variable in op["value"]
    }


def webhook_name() -> str:
    document = yaml.safe_load(
        (REPO / "manifests" / "base" / "mutatingwebhook.yaml").read_text(encoding="utf-8")
    )
    name: str = document["webhooks"][0]["name"]
    return name


# --- README: the role policy -------------------------------------------------------------


@pytest.fixture
def policy_example(tmp_path: Path) -> Path:
    markdown = README.read_text(encoding="utf-8")
    (tmp_path / "policy.yaml").write_text(block(markdown, "# policy.yaml"), encoding="utf-8")
    (tmp_path / "service-accounts.yaml").write_text(
        block(markdown, "# service-accounts.yaml"), encoding="utf-8"
    )
    return tmp_path


def _review(directory: Path, service_account: str) -> tuple[int, dict[str, Any], str]:
    (directory / "pod.yaml").write_text(yaml.safe_dump(pod("team-a", service_account)))
    status, out, err = mutate(
        "-f",
        str(directory / "pod.yaml"),
        "--service-accounts",
        str(directory / "service-accounts.yaml"),
        "--policy",
        str(directory / "policy.yaml"),
        "--fail-on-deny",
        "-o",
        "review",
    )
    response: dict[str, Any] = json.loads(out)["response"]
    return status, response, err


def test_readme_policy_admits_a_permitted_role_with_the_default_expiration(policy_example):
    """The example's rule must not deny what its text permits (86400 s is the default)."""
    status, response, err = _review(policy_example, "app")
    assert status == 0, err
    assert response["allowed"] is True
    assert "warnings" not in response, response.get("warnings")
    patch = decode_patch(response)
    assert env_of(patch)["AWS_ROLE_ARN"] == "arn:aws:iam::111122223333:role/team-a-app"
    (volume,) = (op for op in patch if op["path"] == "/spec/volumes")
    projection = volume["value"][0]["projected"]["sources"][0]["serviceAccountToken"]
    assert projection["expirationSeconds"] == 86400


def test_readme_policy_denial_is_the_message_the_user_sees(policy_example):
    status, response, err = _review(policy_example, "ops")
    assert status == 3, err
    assert response["allowed"] is False
    # The API server prefixes the webhook's message with this sentence (kubectl prints both).
    shown = f'admission webhook "{webhook_name()}" denied the request: '
    shown += response["status"]["message"]
    assert code_span(README.read_text(encoding="utf-8"), "admission webhook ") == shown


# --- README: the ConfigMap and the container-credentials file ------------------------------


def block_containing(markdown: str, text: str) -> str:
    """The one fenced block that contains `text`."""
    found = [body for body in fenced_blocks(markdown) if text in body]
    assert len(found) == 1, f"{len(found)} blocks contain {text!r}"
    return found[0]


def _mutate_patch(
    directory: Path, namespace: str, service_account: str, *flags: str, warns: str = ""
) -> Any:
    (directory / "pod.yaml").write_text(yaml.safe_dump(pod(namespace, service_account)))
    status, out, err = mutate("-f", str(directory / "pod.yaml"), *flags, "-o", "patch")
    assert status == 0, err
    if warns:
        assert warns in err
    else:
        assert "warning" not in err, err
    return json.loads(out)


def _token(patch: list[dict[str, Any]]) -> dict[str, Any]:
    (volume,) = (op for op in patch if op["path"] == "/spec/volumes")
    token: dict[str, Any] = volume["value"][0]["projected"]["sources"][0]["serviceAccountToken"]
    return token


@pytest.mark.parametrize("markdown", [README, MANIFESTS_README], ids=lambda p: p.parent.name)
def test_documented_config_map_gives_the_documented_roles(markdown: Path, tmp_path: Path):
    config_map = yaml.safe_load(block(markdown.read_text(encoding="utf-8"), "# config-map.yaml"))
    (tmp_path / "cm.yaml").write_text(yaml.safe_dump(config_map))
    flags = (
        "--watch-config-map",
        "--config-map",
        str(tmp_path / "cm.yaml"),
        f"--namespace={config_map['metadata']['namespace']}",
    )
    app = _mutate_patch(tmp_path, "team-a", "app", *flags)
    assert env_of(app)["AWS_ROLE_ARN"] == "arn:aws:iam::111122223333:role/team-a-app"
    assert env_of(app)["AWS_STS_REGIONAL_ENDPOINTS"] == "regional"
    assert _token(app) == {
        "audience": "sts.amazonaws.com",
        "expirationSeconds": 3600,
        "path": "token",
    }
    # The `*` entry: any namespace, the flags' settings.
    runner = _mutate_patch(tmp_path, "build-17", "ci-runner", *flags, "--token-audience=example")
    assert env_of(runner)["AWS_ROLE_ARN"] == "arn:aws:iam::111122223333:role/ci-runner"
    assert "AWS_STS_REGIONAL_ENDPOINTS" not in env_of(runner)
    assert _token(runner) == {"audience": "example", "expirationSeconds": 86400, "path": "token"}
    # Only the ConfigMap in --namespace is read, as the server reads only that one.
    other = (*flags[:-1], "--namespace=other")
    assert _mutate_patch(tmp_path, "team-a", "app", *other, warns="ignored") == []


def test_documented_container_credentials_file_gives_pod_identity(tmp_path: Path):
    document = block_containing(README.read_text(encoding="utf-8"), '"identities"')
    (tmp_path / "identities.json").write_text(document)
    flags = ("--watch-container-credentials-config", str(tmp_path / "identities.json"))
    for name in ("reporter", "exporter"):
        patch = _mutate_patch(tmp_path, "team-b", name, *flags)
        env = env_of(patch)
        assert env["AWS_CONTAINER_CREDENTIALS_FULL_URI"] == "http://169.254.170.23/v1/credentials"
        assert env["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"] == (
            "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount/eks-pod-identity-token"
        )
        assert "AWS_ROLE_ARN" not in env
        assert _token(patch)["audience"] == "pods.eks.amazonaws.com"
        assert {
            "op": "add",
            "path": "/metadata/labels",
            "value": {"eks.amazonaws.com/pod-identity": "enabled"},
        } in patch
    # Exact matching: the same name in another namespace is not listed.
    assert _mutate_patch(tmp_path, "team-c", "reporter", *flags) == []


# --- manifests/README.md: the tree ----------------------------------------------------------


def tree_directories(tree: str) -> set[str]:
    """The directories of an indented tree (two spaces a level), as paths from its root."""
    listed: set[str] = set()
    stack: list[str] = []
    for line in tree.splitlines():
        match = re.match(r"(?P<indent> *)(?P<name>[\w.-]+)/(\s|$)", line)
        if match is None:
            continue  # a description continued on the next line
        depth = len(match.group("indent")) // 2
        stack[depth:] = [match.group("name")]
        listed.add("/".join(stack))
    return listed


def test_manifests_tree_lists_every_directory():
    tree = block(MANIFESTS_README.read_text(encoding="utf-8"), "manifests/")
    on_disk = {
        str(path.relative_to(REPO))
        for path in (REPO / "manifests").rglob("*")
        if path.is_dir() and "generated" not in path.parts  # self-signed.sh's output, ignored
    }
    assert tree_directories(tree) == on_disk | {"manifests"}


# --- docs/self-hosted-irsa.md ----------------------------------------------------------------

IRSA_GUIDE = REPO / "docs" / "self-hosted-irsa.md"


def _oidc_output(argv: list[str]) -> str:
    out, err = io.StringIO(), io.StringIO()
    assert run(argv, stdin=io.StringIO(), stdout=out, stderr=err) == 0, err.getvalue()
    return out.getvalue()


@pytest.mark.parametrize("previous", [False, True], ids=["one issuer", "two issuers"])
def test_guide_shows_the_api_server_flags_the_command_prints(previous: bool):
    blocks = fenced_blocks(IRSA_GUIDE.read_text(encoding="utf-8"))
    (index,) = (
        i
        for i, text in enumerate(blocks)
        if text.startswith("pod-identity-webhook oidc --print-apiserver-flags")
        and ("--previous-issuer" in text) == previous
    )
    command = shlex.split(blocks[index].replace("\\\n", " "))
    printed = [line for line in _oidc_output(command[1:]).splitlines() if line.startswith("--")]
    shown = blocks[index + 1].splitlines()
    assert shown == printed


def _base64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.mark.parametrize("name", ["s3-reader", "s3-readers", "s3-readers-2"])
def test_guide_decodes_the_token_header_with_its_kid(name: str, tmp_path: Path):
    """The guide's pipeline prints the header (with the kid to look for) and the claims, for
    every padding a base64url part can lack (the names give three lengths)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    from webhook.irsa.jwks import key_id

    key = ec.generate_private_key(ec.SECP256R1())
    header = {"alg": "ES256", "kid": key_id(key.public_key())}
    claims = {
        "aud": ["sts.amazonaws.com"],
        "iss": "https://irsa-demo-oidc.s3.us-west-2.amazonaws.com/cluster1",
        "sub": f"system:serviceaccount:demo:{name}",
    }
    signed = ".".join(_base64url(json.dumps(part).encode()) for part in (header, claims))
    token = f"{signed}.{_base64url(key.sign(signed.encode(), ec.ECDSA(hashes.SHA256())))}"
    kubectl = tmp_path / "kubectl"
    kubectl.write_text(f"#!/bin/sh\nprintf '%s\\n' '{token}'\n", encoding="utf-8")
    kubectl.chmod(0o755)

    first_line = "TOKEN=$(kubectl -n demo create token s3-reader --audience sts.amazonaws.com)"
    script = block(IRSA_GUIDE.read_text(encoding="utf-8"), first_line)
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"},
        timeout=30,
    )
    assert (result.returncode, result.stderr) == (0, "")
    printed = [json.loads(line) for line in result.stdout.splitlines()]
    assert printed == [header, claims]


# --- README: the layout table ------------------------------------------------------------------


def test_readme_layout_names_every_module():
    markdown = README.read_text(encoding="utf-8")
    table = markdown[markdown.index("| module | role |") :].split("\n\n", 1)[0]
    named = set(re.findall(r"`(webhook/[\w/]+\.py)`", table))
    modules = {
        path.relative_to(REPO).as_posix()
        for path in (REPO / "webhook").rglob("*.py")
        if not path.name.startswith("__")
    }
    assert named == modules


# --- README: mutate over a repository's manifests ------------------------------------------


def test_readme_mutate_over_the_example_manifests(monkeypatch):
    """The console example: the command before `| jq`, and the paths jq prints."""
    example = block_containing(README.read_text(encoding="utf-8"), "-f examples/manifests/")
    command, _, rest = example.partition("|")
    argv = shlex.split(command.removeprefix("$ ").replace("\\\n", " "))
    assert argv[:2] == ["pod-identity-webhook", "mutate"]
    printed = [json.loads(line) for line in rest.splitlines()[1:] if line]
    monkeypatch.chdir(REPO)
    status, out, err = mutate(*argv[2:])
    assert (status, err) == (0, "")
    decoder, position, paths = json.JSONDecoder(), 0, []
    while out[position:].strip():
        start = len(out) - len(out[position:].lstrip())
        patch, position = decoder.raw_decode(out, start)
        paths += [op["path"] for op in patch]
    assert paths == printed


# --- docs/local-sts.md ------------------------------------------------------------------


def test_local_sts_mutate_example_gives_the_documented_additions(tmp_path: Path):
    markdown = LOCAL_STS.read_text(encoding="utf-8")
    command = block_containing(markdown, "pod-identity-webhook mutate -f pod.yaml")
    argv = shlex.split(command.replace("\\\n", " "))
    assert argv[:2] == ["pod-identity-webhook", "mutate"]
    (tmp_path / "serviceaccount.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {
                    "name": "tests",
                    "namespace": "ci",
                    "annotations": {
                        "eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/ci-tests"
                    },
                },
            }
        )
    )
    (tmp_path / "pod.yaml").write_text(yaml.safe_dump(pod("ci", "tests")))
    files = {
        "pod.yaml": tmp_path / "pod.yaml",
        "serviceaccount.yaml": tmp_path / "serviceaccount.yaml",
    }
    status, out, err = mutate(*(str(files.get(arg, arg)) for arg in argv[2:]))
    assert status == 0, err
    container = yaml.safe_load(out)["spec"]["containers"][0]
    documented = yaml.safe_load(block(markdown, "# the container's additions"))
    assert {"env": container["env"], "volumeMounts": container["volumeMounts"]} == documented


def test_local_sts_policy_forbids_production_and_audits_ci():
    policy = parse_policy(block(LOCAL_STS.read_text(encoding="utf-8"), "# policy.yaml"))
    decision = Decision(
        namespace="",
        name="tests",
        entry=None,
        reason="injected",
        method="sts_web_identity",
        role_arn="arn:aws:iam::123456789012:role/ci-tests",
        endpoints=Endpoints(
            sts_url="https://moto.moto.svc:5000", ca_bundle=ConfigMapKey("aws-local-ca", "ca.crt")
        ),
    )
    assert evaluate(policy, "ci-42", decision).violations == ()
    denied = evaluate(policy, "payments", decision)
    assert denied.denial is not None
    assert "STS endpoint https://moto.moto.svc:5000 is not allowed (allowed: none)" in denied.denial
    assert "CA bundle ConfigMap aws-local-ca/ca.crt is not allowed" in denied.denial
    other = Decision(
        namespace="",
        name="tests",
        entry=None,
        reason="injected",
        method="sts_web_identity",
        endpoints=Endpoints(sts_url="http://localstack:4566"),
    )
    audited = evaluate(policy, "ci-7", other)
    assert (audited.denial, [v.rule for v in audited.audited]) == (None, ["ci-uses-its-moto"])


# --- links between the documents -------------------------------------------------------------

COMPATIBILITY = REPO / "docs" / "compatibility.md"
DOCUMENTS = (
    README,
    MANIFESTS_README,
    IRSA_GUIDE,
    COMPATIBILITY,
    LOCAL_STS,
    REPO / "charts" / "pod-identity-webhook" / "README.md",
    REPO / "tests" / "differential" / "README.md",
    REPO / "CHANGELOG.md",
    REPO / "CONTRIBUTING.md",
    REPO / "SECURITY.md",
)


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(markdown: str) -> set[str]:
    without_code = _FENCE.sub("", markdown)
    return {_slug(m) for m in re.findall(r"^#{1,6} (.+)$", without_code, flags=re.MULTILINE)}


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(REPO)))
def test_links_point_to_files_and_headings_that_exist(document: Path):
    markdown = document.read_text(encoding="utf-8")
    for target in re.findall(r"\]\(([^)\s]+)\)", _FENCE.sub("", markdown)):
        if "://" in target:
            continue
        path, _, anchor = target.partition("#")
        linked = (document.parent / path).resolve() if path else document
        assert linked.exists(), f"{document.name}: {target}"
        if anchor:
            assert anchor in _anchors(linked.read_text(encoding="utf-8")), f"{target}"


# --- docs/compatibility.md: what the code cites ------------------------------------------------


def test_code_cites_only_sections_the_compatibility_document_has():
    sections = set(re.findall(r"^#{2,3} (\d[a-g]?)\. ", COMPATIBILITY.read_text(), re.MULTILINE))
    assert {"1", "2", "3", "2a", "2b", "2c", "2d", "2e", "2f", "2g"} <= sections
    cited: dict[str, set[str]] = {}
    for path in sorted([*(REPO / "webhook").rglob("*.py"), *(REPO / "tests").rglob("*.py")]):
        text = path.read_text(encoding="utf-8")
        name = str(path.relative_to(REPO))
        # The old form, which named a document outside the repository.
        assert not re.search(r"\(compatibility 2[a-g]\)", text), name
        found = re.findall(r"docs/compatibility\.md(?:,| section)\s*(\d[a-g]?)\b", text)
        cited.update({name: set(found)} if found else {})
    assert cited, "no code cites docs/compatibility.md"
    unknown = {name: found - sections for name, found in cited.items() if found - sections}
    assert not unknown
