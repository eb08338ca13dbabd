"""EC2 instance metadata for --compose-role-arn, against a fake IMDSv2 endpoint on loopback."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from webhook.errors import ConfigError
from webhook.imds import account_and_partition


class FakeIMDS(BaseHTTPRequestHandler):
    document: object = {"accountId": "111122223333", "region": "cn-north-1"}

    def do_PUT(self) -> None:
        assert self.path == "/latest/api/token"
        assert self.headers["X-aws-ec2-metadata-token-ttl-seconds"]
        self._send(b"token-1")

    def do_GET(self) -> None:
        if self.headers.get("X-aws-ec2-metadata-token") != "token-1":
            self.send_error(401)
            return
        assert self.path == "/latest/dynamic/instance-identity/document"
        self._send(json.dumps(self.document).encode())

    def _send(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def imds() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeIMDS)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_account_and_partition_from_the_identity_document(imds, monkeypatch):
    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds + "/")
    assert account_and_partition() == ("111122223333", "aws-cn")


def test_document_without_account_is_an_error(imds, monkeypatch):
    monkeypatch.setattr(FakeIMDS, "document", {"region": "us-east-1"})
    with pytest.raises(ConfigError, match="no accountId"):
        account_and_partition(imds)


def test_unreachable_metadata_is_a_start_up_error():
    with pytest.raises(ConfigError, match="Error getting instance identity document"):
        account_and_partition("http://127.0.0.1:9")
    with pytest.raises(ConfigError, match="bad endpoint"):
        account_and_partition("file:///etc/passwd")


def test_mutate_composes_a_bare_role_name(imds, monkeypatch, tmp_path):
    import io

    from webhook.cli import run

    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds)
    (tmp_path / "sa.yaml").write_text(
        "kind: ServiceAccount\nmetadata:\n  name: default\n  namespace: default\n"
        "  annotations: {eks.amazonaws.com/role-arn: s3-reader}\n"
    )
    (tmp_path / "pod.yaml").write_text("kind: Pod\nspec: {containers: [{name: a}]}\n")
    out = io.StringIO()
    argv = [
        "mutate",
        "-f",
        str(tmp_path / "pod.yaml"),
        "--service-accounts",
        str(tmp_path / "sa.yaml"),
        "--compose-role-arn",
        "-o",
        "patch",
    ]
    assert run(argv, stdout=out, stderr=io.StringIO()) == 0
    assert (
        json.loads(out.getvalue())[1]["value"][0]["value"]
        == "arn:aws-cn:iam::111122223333:role/s3-reader"
    )
