"""EC2 instance metadata for --compose-role-arn, against a fake IMDSv2 endpoint on loopback."""

from __future__ import annotations

import io
import json
import socket
from collections.abc import Iterator

import pytest

from tests.support.http import LoopbackServer, QuietHandler
from webhook.errors import ConfigError
from webhook.imds import account_and_partition


class FakeIMDS(QuietHandler):
    document: object = {"accountId": "111122223333", "region": "cn-north-1"}
    token_status = 200  # 403: what a metadata service that is turned off (or a proxy) answers

    def do_PUT(self) -> None:
        if self.token_status != 200:
            self.send_error(self.token_status)
            return
        assert self.path == "/latest/api/token"
        assert self.headers["X-aws-ec2-metadata-token-ttl-seconds"]
        self.send_body(b"token-1")

    def do_GET(self) -> None:
        if self.headers.get("X-aws-ec2-metadata-token") != "token-1":
            self.send_error(401)
            return
        assert self.path == "/latest/dynamic/instance-identity/document"
        self.send_body(json.dumps(self.document).encode())


@pytest.fixture
def imds() -> Iterator[str]:
    with LoopbackServer(FakeIMDS) as server:
        yield server.origin


def test_account_and_partition_from_the_identity_document(imds, monkeypatch):
    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds + "/")
    assert account_and_partition() == ("111122223333", "aws-cn")


NEEDS = (
    "--compose-role-arn needs this instance's account ID and region from the EC2 instance "
    "metadata service (IMDSv2)"
)


def test_document_without_account_is_an_error(imds, monkeypatch):
    monkeypatch.setattr(FakeIMDS, "document", {"region": "us-east-1"})
    with pytest.raises(ConfigError, match="without accountId or region") as error:
        account_and_partition(imds)
    assert str(error.value).startswith(NEEDS)


def test_forbidden_metadata_says_what_the_flag_needs(imds, monkeypatch):
    """Off EC2 the token request is refused with 403: a sentence, not an HTTP error."""
    monkeypatch.setattr(FakeIMDS, "token_status", 403)
    with pytest.raises(ConfigError) as error:
        account_and_partition(imds)
    message = str(error.value)
    assert message.startswith(NEEDS)
    assert f"{imds} answered HTTP 403 Forbidden to the request for a session token" in message
    assert "not on EC2, or the metadata service is turned off" in message
    assert "give the role-arn annotations full ARNs and leave --compose-role-arn off" in message


def test_unreachable_metadata_says_what_the_flag_needs():
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    with pytest.raises(ConfigError) as error:
        account_and_partition(closed)
    assert str(error.value).startswith(NEEDS)
    assert f"{closed} did not answer the request for a session token" in str(error.value)


def test_silent_metadata_times_out_with_the_same_sentence():
    with socket.socket() as silent:  # accepts connections (backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        endpoint = f"http://127.0.0.1:{silent.getsockname()[1]}"
        with pytest.raises(ConfigError, match=r"did not answer .*\(timed out\)") as error:
            account_and_partition(endpoint, timeout=0.2)
    assert str(error.value).startswith(NEEDS)


def test_endpoint_that_is_no_url_is_refused():
    with pytest.raises(ConfigError, match="is not an http:// or https:// URL"):
        account_and_partition("file:///etc/passwd")


def _cli(argv: list[str]) -> tuple[int, str, str]:
    from webhook.cli import run

    out, err = io.StringIO(), io.StringIO()
    status = run(argv, stdin=io.StringIO(), stdout=out, stderr=err)
    return status, out.getvalue(), err.getvalue()


def test_mutate_and_serve_fail_with_the_sentence_off_ec2(imds, monkeypatch, tmp_path):
    monkeypatch.setattr(FakeIMDS, "token_status", 403)
    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds)
    (tmp_path / "pod.yaml").write_text("kind: Pod\nspec: {containers: [{name: a}]}\n")
    mutate = ["mutate", "-f", str(tmp_path / "pod.yaml"), "--compose-role-arn"]
    serve = ["--compose-role-arn=true", "--port=0", "--metrics-port=0"]
    for argv, prefix, expected in (
        (mutate, "pod-identity-webhook mutate: ", 1),
        (serve, "pod-identity-webhook: ", 2),
    ):
        status, _, err = _cli(argv)
        assert status == expected, err
        (line,) = err.splitlines()
        assert line.startswith(prefix + NEEDS), line
        assert "HTTP 403" in line
        assert "Traceback" not in err


@pytest.mark.parametrize(
    ("annotation", "composed"),
    [
        ("s3-reader", "arn:aws-cn:iam::111122223333:role/s3-reader"),
        ("team-a/s3-reader", "arn:aws-cn:iam::111122223333:role/team-a/s3-reader"),
        ("arn:aws:iam::444455556666:role/x", "arn:aws:iam::444455556666:role/x"),
    ],
)
def test_mutate_composes_a_bare_role_name(imds, monkeypatch, tmp_path, annotation, composed):
    """The README's examples: a name, a name with a path, and a full ARN left alone."""
    from webhook.cli import run

    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds)
    (tmp_path / "sa.yaml").write_text(
        "kind: ServiceAccount\nmetadata:\n  name: default\n  namespace: default\n"
        f"  annotations: {{eks.amazonaws.com/role-arn: {annotation}}}\n"
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
    env = {v["name"]: v["value"] for v in json.loads(out.getvalue())[1]["value"]}
    assert env["AWS_ROLE_ARN"] == composed
