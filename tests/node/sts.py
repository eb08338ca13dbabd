"""STS for the node's Pods: moto's server on the test host, over TLS, recording what it gets.

The Pods use the SDKs' own endpoints (https://sts.amazonaws.com and the regional one); their
spec maps those names to the test host (`hostAliases`) and trusts this endpoint's CA
(`AWS_CA_BUNDLE`), so nothing in the SDKs is told where STS is. moto does not check web
identity tokens, so it records every request (MOTO_ENABLE_RECORDING) and the tests verify the
token it received against the API server's keys themselves.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from tests.e2e import pki
from tests.e2e.processes import Process, wait_until
from tests.node.node import serving_cert

STS_NAMES = ("sts.amazonaws.com", "sts.us-east-1.amazonaws.com")
PORT = 443


@dataclass
class StsEndpoint:
    address: str
    workdir: Path
    env: dict[str, str]
    python: Path
    """The interpreter of moto's own environment."""
    process: Process | None = None
    ca: pki.KeyPair = field(init=False)

    @property
    def recording(self) -> Path:
        return self.workdir / "recording.jsonl"

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.ca = pki.certificate_authority(self.workdir, "ca", "piw-node-sts-ca")
        cert = serving_cert(self.ca, self.workdir, "sts", dns=list(STS_NAMES), ips=[self.address])
        # The recording holds the tokens the Pods present: readable by root only.
        self.recording.touch(mode=0o600)
        env = {
            **self.env,
            "MOTO_ENABLE_RECORDING": "True",
            "MOTO_RECORDER_FILEPATH": str(self.recording),
        }
        self.process = Process(
            "moto-sts",
            [
                str(self.python),
                "-m",
                "moto.server",
                f"--host={self.address}",
                f"--port={PORT}",
                f"--ssl-cert={cert.cert_path}",
                f"--ssl-key={cert.key_path}",
            ],
            self.workdir / "moto.log",
            env=env,
        )
        process = self.process
        wait_until(
            lambda: f"Running on https://{self.address}:{PORT}" in process.tail(20),
            timeout=30,
            what="moto's server",
            alive=lambda: None if process.running else f"{process.describe()} exited",
        )

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def requests(self, action: str) -> list[dict[str, Any]]:
        """The form parameters of every recorded request for `action` (e.g. GetCallerIdentity)."""
        found = []
        for line in self.recording.read_text(encoding="utf-8").splitlines():
            entry = json.loads(line)
            body = entry.get("body") or ""
            if entry.get("body_encoded"):
                body = base64.b64decode(body).decode("utf-8", "replace")
            form = {k: v[0] for k, v in parse_qs(body).items()}
            if form.get("Action") == action:
                found.append({"headers": entry.get("headers", {}), "form": form})
        return found
