"""The injected AWS_ENDPOINT_URL_STS and AWS_CA_BUNDLE work with a real SDK (issue 17, part 2).

`mutate` gives a Pod its variables and volumes. The test then does what the kubelet would do:
it writes the token's projected volume and the ConfigMap's key under a directory standing in
for the container's root, and starts a Python process whose environment is exactly the mutated
container's env (file paths under that root), with no AWS configuration of its own. boto3's
default credential chain there calls AssumeRoleWithWebIdentity on moto's server, served over
HTTPS with a certificate of a private CA that only the ConfigMap holds, then GetCallerIdentity
with the credentials it got. The controls: without AWS_CA_BUNDLE, or with another CA's bundle,
TLS verification fails; without AWS_ENDPOINT_URL_STS the SDK goes to the public STS (here, a
refusing proxy). tests/e2e/test_local_sts.py does the same with a Pod stored by the real API
server and a token it issued.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml

from tests.localsts import (
    Moto,
    container_env,
    kubelet,
    moto_over_tls,
    run_sdk,
    unverified_token,
)
from tests.support.reviews import role_arn
from webhook.cli import run

ROLE = role_arn("ci-tests", account="123456789012")


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Moto]:
    with moto_over_tls(tmp_path_factory.mktemp("moto")) as server:
        yield server


def _mutated_pod(tmp_path: Path, moto: Moto) -> dict[str, Any]:
    account = {
        "name": "tests",
        "namespace": "ci",
        "annotations": {"eks.amazonaws.com/role-arn": ROLE},
    }
    (tmp_path / "sa.yaml").write_text(
        yaml.safe_dump({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": account})
    )
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "integration-tests", "namespace": "ci"},
        "spec": {"serviceAccountName": "tests", "containers": [{"name": "tests"}]},
    }
    (tmp_path / "pod.yaml").write_text(yaml.safe_dump(pod))
    out, err = io.StringIO(), io.StringIO()
    argv = ["mutate", "-f", str(tmp_path / "pod.yaml")]
    argv += ["--service-accounts", str(tmp_path / "sa.yaml"), "--aws-default-region=us-east-1"]
    argv += [f"--sts-endpoint-url={moto.url}", "--ca-bundle-config-map=ci-ca"]
    status = run(argv, stdin=io.StringIO(), stdout=out, stderr=err)
    assert status == 0, err.getvalue()
    mutated: dict[str, Any] = yaml.safe_load(out.getvalue())
    return mutated


def _container(tmp_path: Path, moto: Moto, ca_pem: str | None = None) -> dict[str, str]:
    pod = _mutated_pod(tmp_path, moto)
    root = tmp_path / "container"
    bundle = moto.ca.read_text() if ca_pem is None else ca_pem
    kubelet(pod, root, unverified_token(), {"ci-ca": {"ca.crt": bundle}})
    return container_env(pod, root)


def test_boto3_assumes_the_role_at_the_local_sts_through_the_private_ca(moto, tmp_path):
    env = _container(tmp_path, moto)
    assert set(env) == {
        "AWS_DEFAULT_REGION",
        "AWS_REGION",
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_ENDPOINT_URL_STS",
        "AWS_CA_BUNDLE",
    }
    assert env["AWS_ENDPOINT_URL_STS"] == moto.url
    result = run_sdk(env, tmp_path)
    assert result.returncode == 0, result.stderr
    identity = json.loads(result.stdout)
    # The SDK's credentials are moto's answer to AssumeRoleWithWebIdentity for the injected
    # role: GetCallerIdentity, signed with them, names the assumed role.
    assert identity["Arn"].startswith("arn:aws:sts::123456789012:assumed-role/ci-tests/")
    assert identity["Account"] == "123456789012"


def test_without_the_ca_bundle_the_sdk_refuses_the_local_sts(moto, tmp_path):
    env = _container(tmp_path, moto)
    del env["AWS_CA_BUNDLE"]
    result = run_sdk(env, tmp_path)
    assert result.returncode != 0
    assert "CERTIFICATE_VERIFY_FAILED" in result.stderr


def test_a_ca_bundle_of_another_ca_is_refused_too(moto, tmp_path):
    env = _container(tmp_path, moto, ca_pem=trustme.CA().cert_pem.bytes().decode())
    result = run_sdk(env, tmp_path)
    assert result.returncode != 0
    assert "CERTIFICATE_VERIFY_FAILED" in result.stderr


def test_without_the_sts_endpoint_the_sdk_goes_elsewhere(moto, tmp_path):
    env = _container(tmp_path, moto)
    del env["AWS_ENDPOINT_URL_STS"]
    result = run_sdk(env, tmp_path)
    assert result.returncode != 0
    assert "ProxyConnectionError" in result.stderr
