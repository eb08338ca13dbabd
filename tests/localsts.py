"""moto's STS over HTTPS with a private CA, a stand-in kubelet and an SDK process: what the
local-STS tests (tests/test_endpoints_sdk.py, tests/e2e/test_local_sts.py) share.

The SDK runs in its own Python process whose environment is a container's env and nothing of
the test's: no AWS configuration files, no instance metadata, and a proxy that refuses every
connection but loopback's, so an SDK that ignored the endpoint variable fails instead of
reaching the real STS.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import subprocess
import sys
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trustme

from tests.e2e.processes import Process, wait_until
from tests.support.ports import free_port

SDK_SCRIPT = """
import json, boto3
print(json.dumps(boto3.client("sts").get_caller_identity(), default=str))
"""
SECRETS = "/var/run/secrets/"


@dataclass(frozen=True)
class Moto:
    port: int
    ca: Path
    """The private CA's certificate (PEM), the only one that verifies the server."""

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"


@contextmanager
def moto_over_tls(directory: Path) -> Iterator[Moto]:
    """moto's server on loopback over HTTPS, its certificate from a fresh private CA."""
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    leaf.cert_chain_pems[0].write_to_path(str(directory / "tls.crt"))
    leaf.private_key_pem.write_to_path(str(directory / "tls.key"))
    ca.cert_pem.write_to_path(str(directory / "ca.crt"))
    port = free_port()
    argv = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    argv += ["--ssl-cert", str(directory / "tls.crt"), "--ssl-key", str(directory / "tls.key")]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
    process = Process("moto", argv, directory / "moto.log", env=env)
    context = ssl.create_default_context(cafile=str(directory / "ca.crt"))

    def ready() -> bool:
        url = f"https://127.0.0.1:{port}/moto-api/"
        with urllib.request.urlopen(url, context=context, timeout=2) as answer:
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


def unverified_token() -> str:
    """A token shaped like the API server's; moto reads it without verifying it."""

    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    claims = {"iss": "https://oidc.ci.example", "sub": "system:serviceaccount:ci:tests"}
    return f"{part({'alg': 'RS256'})}.{part(claims)}.c2lnbmF0dXJl"


def kubelet(
    pod: Mapping[str, Any], root: Path, token: str, config_maps: Mapping[str, Mapping[str, str]]
) -> None:
    """Write what the first container's volume mounts show, under `root`: tokens of projected
    serviceAccountToken sources, and items of configMap volumes and sources among
    `config_maps` (others, like the API server's kube-root-ca.crt, are left out)."""
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    for mount in pod["spec"]["containers"][0]["volumeMounts"]:
        volume = volumes[mount["name"]]
        directory = root / mount["mountPath"].lstrip("/")
        directory.mkdir(parents=True)
        sources = volume["projected"]["sources"] if "projected" in volume else [volume]
        for source in sources:
            if "serviceAccountToken" in source:
                (directory / source["serviceAccountToken"]["path"]).write_text(token)
            elif source.get("configMap", {}).get("name") in config_maps:
                config_map = config_maps[source["configMap"]["name"]]
                for item in source["configMap"]["items"]:
                    (directory / item["path"]).write_text(config_map[item["key"]])
        directory.chmod(0o555)


def container_env(pod: Mapping[str, Any], root: Path) -> dict[str, str]:
    """The first container's env as its process sees it, mounted files under `root`."""
    env = {}
    for variable in pod["spec"]["containers"][0]["env"]:
        value = variable["value"]
        env[variable["name"]] = (
            str(root / value.lstrip("/")) if value.startswith(SECRETS) else value
        )
    return env


def run_sdk(env: Mapping[str, str], home: Path) -> subprocess.CompletedProcess[str]:
    """boto3's default chain, then GetCallerIdentity, with `env` and nothing else of AWS."""
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
