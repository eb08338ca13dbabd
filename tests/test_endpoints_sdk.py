"""The injected AWS_ENDPOINT_URL_STS and AWS_CA_BUNDLE work with a real SDK (issue 17, part 2).

`mutate` gives a Pod its variables and volumes. This test then does what the kubelet would do:
it writes the token's projected volume and the ConfigMap's key under a directory standing in
for the container's root, and starts a Python process whose environment is exactly the mutated
container's env (file paths under that root), with no AWS configuration of its own. boto3's
default credential chain in that process calls AssumeRoleWithWebIdentity on moto's server,
served over HTTPS with a certificate of a private CA that only the ConfigMap holds, and then
GetCallerIdentity with the credentials it got. Without AWS_CA_BUNDLE the same process fails TLS
verification, so the CA bundle is what makes it work.

A proxy that refuses connections is set for everything but loopback, so an SDK that ignored the
endpoint variable would fail here rather than reach the real STS.
"""

from __future__ import annotations

import base64
import io
import json
import os
import ssl
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml

from tests.e2e.processes import Process, free_port, wait_until
from webhook.cli import run

ROLE = "arn:aws:iam::123456789012:role/ci-tests"
SDK_SCRIPT = """
import json, boto3
sts = boto3.client("sts")
print(json.dumps(sts.get_caller_identity(), default=str))
"""


class Moto:
    def __init__(self, port: int, ca: Path) -> None:
        self.port, self.ca = port, ca

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Moto]:
    """moto's server on loopback over HTTPS, its certificate from a private CA."""
    directory = tmp_path_factory.mktemp("moto")
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    leaf.cert_chain_pems[0].write_to_path(str(directory / "tls.crt"))
    leaf.private_key_pem.write_to_path(str(directory / "tls.key"))
    ca.cert_pem.write_to_path(str(directory / "ca.crt"))
    port = free_port()
    argv = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    argv += ["--ssl-cert", str(directory / "tls.crt"), "--ssl-key", str(directory / "tls.key")]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    process = Process("moto", argv, directory / "moto.log", env=env)
    context = ssl.create_default_context(cafile=str(directory / "ca.crt"))

    def ready() -> bool:
        with urllib.request.urlopen(
            f"https://127.0.0.1:{port}/moto-api/", context=context, timeout=2
        ) as answer:
            return bool(answer.status == 200)

    try:
        wait_until(
            ready,
            timeout=45,
            what="moto's server over HTTPS",
            alive=lambda: None if process.running else f"{process.describe()}: {process.tail()}",
        )
        yield Moto(port, directory / "ca.crt")
    finally:
        process.stop()


def _mutated_pod(tmp_path: Path, moto: Moto) -> dict[str, Any]:
    (tmp_path / "sa.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {
                    "name": "tests",
                    "namespace": "ci",
                    "annotations": {"eks.amazonaws.com/role-arn": ROLE},
                },
            }
        )
    )
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "integration-tests", "namespace": "ci"},
        "spec": {"serviceAccountName": "tests", "containers": [{"name": "tests"}]},
    }
    (tmp_path / "pod.yaml").write_text(yaml.safe_dump(pod))
    out, err = io.StringIO(), io.StringIO()
    status = run(
        [
            "mutate",
            "-f",
            str(tmp_path / "pod.yaml"),
            "--service-accounts",
            str(tmp_path / "sa.yaml"),
            "--aws-default-region=us-east-1",
            f"--sts-endpoint-url={moto.url}",
            "--ca-bundle-config-map=ci-ca",
        ],
        stdin=io.StringIO(),
        stdout=out,
        stderr=err,
    )
    assert status == 0, err.getvalue()
    mutated: dict[str, Any] = yaml.safe_load(out.getvalue())
    return mutated


def _token() -> str:
    """A token shaped like the API server's (moto reads it, it does not verify it)."""

    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    claims = {"iss": "https://oidc.ci.example", "sub": "system:serviceaccount:ci:tests"}
    return f"{part({'alg': 'RS256'})}.{part(claims)}.c2lnbmF0dXJl"


def _kubelet(pod: dict[str, Any], root: Path, config_maps: dict[str, dict[str, str]]) -> None:
    """Write what the container's volume mounts show, under `root`: the token of a projected
    serviceAccountToken source and the items of a configMap volume."""
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    for mount in pod["spec"]["containers"][0]["volumeMounts"]:
        volume = volumes[mount["name"]]
        directory = root / mount["mountPath"].lstrip("/")
        directory.mkdir(parents=True)
        if "projected" in volume:
            for source in volume["projected"]["sources"]:
                token = source["serviceAccountToken"]
                (directory / token["path"]).write_text(_token())
        else:
            config_map = config_maps[volume["configMap"]["name"]]
            for item in volume["configMap"]["items"]:
                (directory / item["path"]).write_text(config_map[item["key"]])
        directory.chmod(0o555)


def _container_env(pod: dict[str, Any], root: Path) -> dict[str, str]:
    """The container's env as the process sees it; absolute file paths live under `root`."""
    env = {}
    for variable in pod["spec"]["containers"][0]["env"]:
        value = variable["value"]
        if value.startswith("/var/run/secrets/"):
            value = str(root / value.lstrip("/"))
        env[variable["name"]] = value
    return env


def _sdk(env: dict[str, str], home: Path) -> subprocess.CompletedProcess[str]:
    refused = f"http://127.0.0.1:{free_port()}"  # nothing listens: no way out but loopback
    process_env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "AWS_CONFIG_FILE": str(home / "no-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(home / "no-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "HTTPS_PROXY": refused,
        "HTTP_PROXY": refused,
        "NO_PROXY": "127.0.0.1,localhost",
        **env,
    }
    return subprocess.run(
        [sys.executable, "-c", SDK_SCRIPT],
        env=process_env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_boto3_assumes_the_role_at_the_local_sts_through_the_private_ca(moto, tmp_path):
    pod = _mutated_pod(tmp_path, moto)
    root = tmp_path / "container"
    _kubelet(pod, root, {"ci-ca": {"ca.crt": moto.ca.read_text()}})
    env = _container_env(pod, root)
    assert set(env) == {
        "AWS_DEFAULT_REGION",
        "AWS_REGION",
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_ENDPOINT_URL_STS",
        "AWS_CA_BUNDLE",
    }
    assert env["AWS_ENDPOINT_URL_STS"] == moto.url

    result = _sdk(env, tmp_path)
    assert result.returncode == 0, result.stderr
    identity = json.loads(result.stdout)
    # The SDK's credentials are moto's answer to AssumeRoleWithWebIdentity for the injected
    # role: GetCallerIdentity, signed with them, names the assumed role.
    assert identity["Arn"].startswith("arn:aws:sts::123456789012:assumed-role/ci-tests/")
    assert identity["Account"] == "123456789012"


def test_without_the_ca_bundle_the_sdk_refuses_the_local_sts(moto, tmp_path):
    pod = _mutated_pod(tmp_path, moto)
    root = tmp_path / "container"
    _kubelet(pod, root, {"ci-ca": {"ca.crt": moto.ca.read_text()}})
    env = _container_env(pod, root)
    del env["AWS_CA_BUNDLE"]
    result = _sdk(env, tmp_path)
    assert result.returncode != 0
    assert "CERTIFICATE_VERIFY_FAILED" in result.stderr


def test_a_ca_bundle_of_another_ca_is_refused_too(moto, tmp_path):
    pod = _mutated_pod(tmp_path, moto)
    root = tmp_path / "container"
    other = trustme.CA().cert_pem.bytes().decode()
    _kubelet(pod, root, {"ci-ca": {"ca.crt": other}})
    result = _sdk(_container_env(pod, root), tmp_path)
    assert result.returncode != 0
    assert "CERTIFICATE_VERIFY_FAILED" in result.stderr


def test_without_the_sts_endpoint_the_sdk_goes_elsewhere(moto, tmp_path):
    """The control: the same env less AWS_ENDPOINT_URL_STS sends AssumeRoleWithWebIdentity to
    the public STS, which only the refusing proxy answers here."""
    pod = _mutated_pod(tmp_path, moto)
    root = tmp_path / "container"
    _kubelet(pod, root, {"ci-ca": {"ca.crt": moto.ca.read_text()}})
    env = _container_env(pod, root)
    del env["AWS_ENDPOINT_URL_STS"]
    result = _sdk(env, tmp_path)
    assert result.returncode != 0
    assert "ProxyConnectionError" in result.stderr
