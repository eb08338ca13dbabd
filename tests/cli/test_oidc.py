"""The `oidc` command: the documents to publish for self-hosted IRSA, and kube-apiserver's flags."""

from __future__ import annotations

import io
import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.cli.helpers import one_line, run
from tests.support.http import LoopbackServer, QuietHandler
from tests.support.irsa import (
    DATA,
    ISSUER,
    b64url,
    b64url_decode,
    compact,
    der_kid,
    private_pem,
    public_pem,
    sign_jwt,
    verify_jwt,
    write,
)
from webhook.cli import oidc
from webhook.cli.oidc import oidc_command


def test_tokens_signed_by_kube_apiserver_verify_against_our_jwks(tmp_path):
    status, _, err = run(
        oidc_command,
        "--issuer=https://oidc.example.com/cluster",
        f"--key={DATA / 'go-keys.pem'}",
        f"--dir={tmp_path}",
    )
    assert status == 0, err
    jwks = json.loads((tmp_path / "openid/v1/jwks").read_text())
    algs = []
    for token in (DATA / "go-tokens.txt").read_text().split():
        claims = verify_jwt(token, jwks)
        assert claims["iss"] == "https://oidc.example.com/cluster"
        assert claims["sub"] == "system:serviceaccount:default:app"
        assert claims["aud"] == ["sts.amazonaws.com"]
        algs.append(json.loads(b64url_decode(token.split(".")[0]))["alg"])
    assert algs == ["RS256", "ES384", "ES512"]


def test_oidc_writes_both_documents_and_prints_the_commands(tmp_path, keys):
    key = write(tmp_path, "sa.pub", public_pem(keys["rsa2048"]))
    out_dir = tmp_path / "out"
    status, out, err = run(oidc_command, "--issuer", ISSUER, "--key", key, "--dir", str(out_dir))
    assert (status, err) == (0, "")
    discovery = json.loads((out_dir / ".well-known/openid-configuration").read_text())
    jwks = json.loads((out_dir / "openid/v1/jwks").read_text())
    assert discovery["issuer"] == ISSUER
    assert discovery["id_token_signing_alg_values_supported"] == ["RS256"]
    # jwks_uri, relative to the issuer, is exactly where the file was written in the directory.
    relative = discovery["jwks_uri"].removeprefix(ISSUER + "/")
    assert (out_dir / relative).read_text() == (out_dir / "openid/v1/jwks").read_text()
    assert [k["kid"] for k in jwks["keys"]] == [der_kid(keys["rsa2048"].public_key())]
    s3 = "s3://irsa-demo/cluster1/"
    assert (
        f"aws s3 cp {out_dir}/.well-known/openid-configuration {s3}.well-known/openid-configuration"
        " --content-type application/json" in out
    )
    assert (
        f"aws s3 cp {out_dir}/openid/v1/jwks {s3}openid/v1/jwks --content-type application/json"
        in out
    )
    assert "publicly readable" in out
    assert (
        f"aws iam create-open-id-connect-provider --url {ISSUER} --client-id-list sts.amazonaws.com"
        in out
    )
    # An IAM OIDC provider is registered per issuer (in each account that trusts it).
    assert "once per issuer" in out
    assert "once per AWS account" not in out
    assert "thumbprint" in out.lower()
    assert "openssl s_client" not in out  # S3: no thumbprint to compute
    for path in out_dir.rglob("*"):
        if path.is_file():
            assert path.stat().st_mode & 0o777 == 0o644


def test_oidc_with_private_keys_writes_only_public_material(tmp_path, keys):
    rsa_key = write(tmp_path, "sa.key", private_pem(keys["rsa3072"], "traditional"))
    ec_key = write(tmp_path, "ec.key", private_pem(keys["p384"], "traditional"))
    out_dir = tmp_path / "out"
    status, out, err = run(
        oidc_command,
        f"--issuer={ISSUER}",
        f"--key={rsa_key}",
        f"--key={ec_key}",
        f"--dir={out_dir}",
    )
    assert (status, err) == (0, "")
    files = [p for p in out_dir.rglob("*") if p.is_file()]
    assert len(files) == 2
    private_values = {
        b64url(n.to_bytes((n.bit_length() + 7) // 8, "big"))
        for n in (
            keys["rsa3072"].private_numbers().d,
            keys["rsa3072"].private_numbers().p,
            keys["p384"].private_numbers().private_value,
        )
    }
    for path in files:
        text = path.read_text()
        assert "PRIVATE" not in text
        assert not any(value in text for value in private_values)
    for jwk in json.loads((out_dir / "openid/v1/jwks").read_text())["keys"]:
        assert set(jwk) <= {"use", "kty", "kid", "crv", "alg", "n", "e", "x", "y"}
    assert "PRIVATE" not in out


def test_oidc_rotation_keys_and_duplicates(tmp_path, keys):
    old = write(tmp_path, "old.pub", public_pem(keys["rsa2048"]))
    new = write(tmp_path, "new.key", private_pem(keys["p256"]))
    both = write(tmp_path, "both.pem", public_pem(keys["p256"]) + private_pem(keys["rsa2048"]))
    out_dir = tmp_path / "out"
    status, out, err = run(
        oidc_command,
        f"--issuer={ISSUER}",
        *(f"--key={p}" for p in (old, new, both)),
        f"--dir={out_dir}",
    )
    assert status == 0
    # new.key holds a PKCS#8 EC key, which kube-apiserver would skip in a key file.
    assert one_line(err).startswith(f"pod-identity-webhook oidc: warning: {new}: PEM block 1")
    jwks = json.loads((out_dir / "openid/v1/jwks").read_text())
    assert [k["kid"] for k in jwks["keys"]] == [
        der_kid(keys["rsa2048"].public_key()),
        der_kid(keys["p256"].public_key()),
    ]
    discovery = json.loads((out_dir / ".well-known/openid-configuration").read_text())
    assert discovery["id_token_signing_alg_values_supported"] == ["ES256", "RS256"]
    assert "(2 key(s))" in out


@pytest.mark.parametrize("name", ["rsa2048", "rsa3072", "p256", "p384", "p521"])
def test_token_signed_with_the_private_key_verifies_against_the_published_jwks(
    tmp_path, keys, name
):
    key = keys[name]
    path = write(tmp_path, "sa.key", private_pem(key, "traditional"))
    status, _, err = run(oidc_command, f"--issuer={ISSUER}", f"--key={path}", f"--dir={tmp_path}")
    assert status == 0, err
    jwks = json.loads((tmp_path / "openid/v1/jwks").read_text())
    claims = {
        "iss": ISSUER,
        "sub": "system:serviceaccount:default:app",
        "aud": ["sts.amazonaws.com"],
    }
    token = sign_jwt(key, der_kid(key.public_key()), claims)
    assert verify_jwt(token, jwks) == claims
    other = keys["p256"] if name != "p256" else keys["p384"]
    with pytest.raises(AssertionError, match="not in the JWKS"):
        verify_jwt(sign_jwt(other, der_kid(other.public_key()), claims), jwks)


def test_oidc_jwks_path_moves_the_file_and_the_uri(tmp_path, keys):
    key = write(tmp_path, "sa.pub", public_pem(keys["p256"]))
    out_dir = tmp_path / "out"
    status, out, _ = run(
        oidc_command,
        f"--issuer={ISSUER}",
        f"--key={key}",
        f"--dir={out_dir}",
        "--jwks-path",
        "keys.json",
    )
    assert status == 0
    discovery = json.loads((out_dir / ".well-known/openid-configuration").read_text())
    assert discovery["jwks_uri"] == f"{ISSUER}/keys.json"
    assert json.loads((out_dir / "keys.json").read_text())["keys"][0]["alg"] == "ES256"
    assert not (out_dir / "openid").exists()
    assert "s3://irsa-demo/cluster1/keys.json" in out


def test_oidc_from_jwks_file_re_emits_the_api_servers_keys(tmp_path):
    out_dir = tmp_path / "out"
    status, _, err = run(
        oidc_command,
        f"--issuer={ISSUER}",
        f"--from-jwks={DATA / 'k8s-jwks.json'}",
        f"--dir={out_dir}",
    )
    assert (status, err) == (0, "")
    written = json.loads((out_dir / "openid/v1/jwks").read_text())
    assert compact(written) == (DATA / "k8s-jwks.json").read_text()


def test_oidc_from_jwks_and_keys_merge(tmp_path):
    out_dir = tmp_path / "out"
    status, _, _ = run(
        oidc_command,
        f"--issuer={ISSUER}",
        f"--key={DATA / 'k8s-rsa-private.pem'}",
        f"--from-jwks={DATA / 'k8s-jwks.json'}",
        f"--dir={out_dir}",
    )
    assert status == 0
    assert len(json.loads((out_dir / "openid/v1/jwks").read_text())["keys"]) == 2


class _Response(io.BytesIO):
    def __enter__(self):
        return self

    def __exit__(self, *args: object) -> None:
        self.close()


def test_oidc_from_jwks_https_url_is_fetched_with_a_timeout(tmp_path, monkeypatch):
    calls: list[tuple[str, float]] = []

    def fake_urlopen(url: str, timeout: float, **kwargs: object) -> _Response:
        calls.append((url, timeout))
        return _Response((DATA / "k8s-jwks.json").read_bytes())

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    status, _, err = run(
        oidc_command,
        f"--issuer={ISSUER}",
        "--from-jwks=https://api.example.com:6443/openid/v1/jwks",
        f"--dir={tmp_path}",
    )
    assert (status, err) == (0, "")
    assert calls == [("https://api.example.com:6443/openid/v1/jwks", oidc.FETCH_TIMEOUT)]


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (urllib.error.HTTPError("u", 403, "Forbidden", None, None), "HTTP 403"),  # type: ignore[arg-type]
        (urllib.error.URLError("connection refused"), "connection refused"),
        (TimeoutError("timed out"), "timed out"),
    ],
)
def test_oidc_from_jwks_url_failures_are_one_line(tmp_path, monkeypatch, error, message):
    def fake_urlopen(url: str, timeout: float, **kwargs: object) -> _Response:
        raise error

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    status, _, err = run(
        oidc_command, f"--issuer={ISSUER}", "--from-jwks=https://h/jwks", f"--dir={tmp_path}"
    )
    assert status == 1
    assert message in one_line(err)


class _JwksHandler(QuietHandler):
    def do_GET(self) -> None:
        self.send_body((DATA / "k8s-jwks.json").read_bytes(), "application/jwk-set+json")


@pytest.fixture
def private_ca_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """(URL of the JWKS on a loopback HTTPS server, PEM of the private CA that signed it)."""
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    ca_file = tmp_path / "ca.crt"
    ca.cert_pem.write_to_path(str(ca_file))
    with LoopbackServer(_JwksHandler, context) as server:
        yield f"{server.origin}/openid/v1/jwks", ca_file


def test_oidc_from_jwks_of_a_private_ca_server_needs_ca(tmp_path, private_ca_server):
    url, ca_file = private_ca_server
    argv = (f"--issuer={ISSUER}", f"--from-jwks={url}", f"--dir={tmp_path / 'out'}")
    status, out, err = run(oidc_command, *argv)
    assert (status, out) == (1, "")
    message = one_line(err)
    assert "certificate is not trusted by this system" in message
    assert "give that CA with --ca FILE" in message
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()

    status, out, err = run(oidc_command, *argv, f"--ca={ca_file}")
    assert (status, err) == (0, "")
    written = json.loads((tmp_path / "out" / "openid/v1/jwks").read_text())
    served = json.loads((DATA / "k8s-jwks.json").read_text())
    assert [k["kid"] for k in written["keys"]] == [k["kid"] for k in served["keys"]]


def test_oidc_from_jwks_with_another_ca_says_which(tmp_path, private_ca_server):
    url, _ = private_ca_server
    other = tmp_path / "other-ca.crt"
    trustme.CA().cert_pem.write_to_path(str(other))
    status, _, err = run(
        oidc_command,
        f"--issuer={ISSUER}",
        f"--from-jwks={url}",
        f"--ca={other}",
        f"--dir={tmp_path}",
    )
    assert status == 1
    assert f"not signed by the CA in --ca {other}" in one_line(err)


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "cannot read --ca"), ("not a certificate", "no PEM certificate")],
)
def test_oidc_unusable_ca_file_exits_1(tmp_path, content, message):
    ca_file = tmp_path / "ca.crt"
    if content is not None:
        ca_file.write_text(content)
    status, _, err = run(
        oidc_command,
        f"--issuer={ISSUER}",
        "--from-jwks=https://127.0.0.1:1/openid/v1/jwks",
        f"--ca={ca_file}",
        f"--dir={tmp_path}",
    )
    assert status == 1
    assert message in one_line(err)


def test_oidc_trailing_slash_issuer_works_with_a_warning(tmp_path, keys):
    key = write(tmp_path, "sa.pub", public_pem(keys["p256"]))
    status, _, err = run(
        oidc_command, "--issuer=https://oidc.example.com/", f"--key={key}", f"--dir={tmp_path}"
    )
    assert status == 0
    assert "warning" in err
    assert "ends with '/'" in err
    discovery = json.loads((tmp_path / ".well-known/openid-configuration").read_text())
    assert discovery["issuer"] == "https://oidc.example.com/"  # exactly as the tokens carry it
    assert discovery["jwks_uri"] == "https://oidc.example.com/openid/v1/jwks"


def test_oidc_on_another_host_explains_the_thumbprint(tmp_path, keys):
    key = write(tmp_path, "sa.pub", public_pem(keys["p256"]))
    status, out, _ = run(
        oidc_command,
        "--issuer=https://oidc.example.com/c1",
        f"--key={key}",
        f"--dir={tmp_path}",
        "--audience=sts.amazonaws.com",
        "--audience=other",
    )
    assert status == 0
    assert "s3://BUCKET/c1/.well-known/openid-configuration" in out
    assert "openssl s_client -connect oidc.example.com:443 -servername oidc.example.com" in out
    assert "--thumbprint-list" in out
    assert "--client-id-list sts.amazonaws.com other" in out


def test_oidc_bucket_flag_names_the_bucket(tmp_path, keys):
    key = write(tmp_path, "sa.pub", public_pem(keys["p256"]))
    status, out, err = run(
        oidc_command,
        "--issuer=https://d111.cloudfront.net",
        f"--key={key}",
        f"--dir={tmp_path}",
        "--bucket=my-bucket",
    )
    assert (status, err) == (0, "")
    assert "s3://my-bucket/.well-known/openid-configuration" in out


def test_oidc_help(tmp_path):
    status, out, _ = run(oidc_command, "-h")
    assert status == 0
    assert "--print-apiserver-flags" in out
    assert "--jwks-path" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--issuer=http://oidc.example.com", "--key=k"], "https:// URL"),
        (["--issuer=https://h?x", "--key=k"], "query"),
        (["--key=k"], "--issuer URL is required"),
        (["--issuer=https://h"], "--key FILE"),
        (["--issuer=https://h", "--key=k", "--dir="], "--dir must not be empty"),
        (["--issuer=https://h", "--key=k", "--audience="], "--audience must not be empty"),
        (["--issuer=https://h", "--key=k", "--jwks-path=/abs"], "relative path"),
        (["--issuer=https://h", "--key=k", "--jwks-path=a/../b"], ". or .."),
        (
            ["--issuer=https://h", "--key=k", "--jwks-path=.well-known/openid-configuration"],
            "differ",
        ),
        (["--issuer=https://h", "--nope"], "unknown flag: --nope"),
        (["--issuer"], "flag needs an argument"),
        (["--issuer=https://h", "--key=k", "extra"], "unexpected argument 'extra'"),
        (["--print-apiserver-flags", "--from-jwks=j"], "not used with"),
        (["--issuer=https://h", "--key=k", "--ca=ca.crt"], "--ca is only used with --from-jwks"),
        (["--issuer=https://h", "--from-jwks=j.json", "--ca=c"], "--ca is only used with"),
    ],
)
def test_oidc_command_line_errors_exit_2(argv, message):
    status, out, err = run(oidc_command, *argv)
    assert status == 2
    assert out == ""
    assert message in one_line(err)
    assert err.startswith("pod-identity-webhook oidc: ")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read"),
        (b"garbage", "not a PEM file"),
        (b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "not a valid public key"),
    ],
)
def test_oidc_bad_key_file_exits_1(tmp_path, content, message):
    path = tmp_path / "sa.pub"
    if content is not None:
        path.write_bytes(content)
    status, out, err = run(oidc_command, f"--issuer={ISSUER}", f"--key={path}", f"--dir={tmp_path}")
    assert status == 1
    assert out == ""
    assert message in one_line(err)
    assert not (tmp_path / ".well-known").exists()


def test_oidc_weak_key_exits_1(tmp_path):
    weak = rsa.generate_private_key(65537, 1024)  # noqa: S505 - must be refused
    path = write(tmp_path, "weak.pub", public_pem(weak))
    status, _, err = run(oidc_command, f"--issuer={ISSUER}", f"--key={path}", f"--dir={tmp_path}")
    assert status == 1
    assert "too weak" in one_line(err)


@pytest.mark.parametrize(
    ("source", "content", "message"),
    [
        ("missing.json", None, "cannot read"),
        ("bad.json", "{", "not JSON"),
        ("priv.json", '{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB","d":"AA"}]}', "private key"),
        ("http://api:6443/openid/v1/jwks", None, "only https:// URLs"),
    ],
)
def test_oidc_bad_jwks_exits_1(tmp_path, source, content, message):
    path = tmp_path / source if "://" not in source else None
    if path is not None and content is not None:
        path.write_text(content)
    status, _, err = run(
        oidc_command,
        f"--issuer={ISSUER}",
        f"--from-jwks={path if path is not None else source}",
        f"--dir={tmp_path / 'out'}",
    )
    assert status == 1
    assert message in one_line(err)


def test_oidc_unwritable_directory_exits_1(tmp_path, keys):
    key = write(tmp_path, "sa.pub", public_pem(keys["p256"]))
    blocker = tmp_path / "file"
    blocker.write_text("")
    status, _, err = run(oidc_command, f"--issuer={ISSUER}", f"--key={key}", f"--dir={blocker}")
    assert status == 1
    assert "cannot write" in one_line(err)


# --- --print-apiserver-flags ---------------------------------------------------------------------


def test_print_apiserver_flags_has_the_four_flags_and_the_notes():
    status, out, err = run(oidc_command, "--print-apiserver-flags", f"--issuer={ISSUER}")
    assert (status, err) == (0, "")
    lines = out.splitlines()
    for line in (
        f"--service-account-issuer={ISSUER}",
        "--service-account-key-file=/etc/kubernetes/pki/sa.pub",
        "--service-account-signing-key-file=/etc/kubernetes/pki/sa.key",
        f"--api-audiences={ISSUER}",
        f"--service-account-jwks-uri={ISSUER}/openid/v1/jwks",
    ):
        assert line in lines
    for word in ("kubeadm", "k3s", "kOps", "sts.amazonaws.com"):
        assert word in out


def test_print_apiserver_flags_lists_every_key_file_and_the_jwks_path():
    status, out, _ = run(
        oidc_command,
        "--print-apiserver-flags",
        "--issuer=https://oidc.example.com",
        "--key=/keys/old.pub",
        "--key=/keys/new.pub",
        "--signing-key=/keys/new.key",
        "--jwks-path=keys.json",
    )
    assert status == 0
    lines = out.splitlines()
    assert "--service-account-key-file=/keys/old.pub" in lines
    assert "--service-account-key-file=/keys/new.pub" in lines
    assert "--service-account-signing-key-file=/keys/new.key" in lines
    assert "--service-account-jwks-uri=https://oidc.example.com/keys.json" in lines


def test_print_apiserver_flags_two_issuer_form_for_a_running_cluster():
    old = "https://kubernetes.default.svc.cluster.local"
    status, out, err = run(
        oidc_command, "--print-apiserver-flags", f"--issuer={ISSUER}", f"--previous-issuer={old}"
    )
    assert (status, err) == (0, "")
    flags = [line for line in out.splitlines() if line.startswith("--")]
    # The new issuer first: kube-apiserver signs with the first and accepts every one given.
    assert [f for f in flags if f.startswith("--service-account-issuer=")] == [
        f"--service-account-issuer={ISSUER}",
        f"--service-account-issuer={old}",
    ]
    # Tokens requested without an audience were issued for the old issuer: still accepted.
    assert f"--api-audiences={ISSUER},{old}" in flags
    assert f"--service-account-jwks-uri={ISSUER}/openid/v1/jwks" in flags
    assert "remove the previous issuers from both flags" in out


def test_print_apiserver_flags_keeps_the_single_issuer_form_by_default():
    status, out, _ = run(oidc_command, "--print-apiserver-flags", f"--issuer={ISSUER}")
    assert status == 0
    assert [line for line in out.splitlines() if line.startswith("--service-account-issuer=")] == [
        f"--service-account-issuer={ISSUER}"
    ]
    assert "Two issuers" not in out
    assert "--previous-issuer OLD prints" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([f"--previous-issuer={ISSUER}"], "--previous-issuer must differ from --issuer"),
        (["--previous-issuer="], "--previous-issuer"),
        (["--previous-issuer=http://[::1]:namedport"], "not a valid URL"),
        (["--previous-issuer=a b"], "white space"),
    ],
)
def test_print_apiserver_flags_refuses_previous_issuers_kube_apiserver_refuses(argv, message):
    status, out, err = run(oidc_command, "--print-apiserver-flags", f"--issuer={ISSUER}", *argv)
    assert status == 2
    assert out == ""
    assert message in one_line(err)


def test_previous_issuer_is_only_for_the_api_server_flags(tmp_path, keys):
    key = write(tmp_path, "sa.pub", public_pem(keys["p256"]))
    argv = (f"--issuer={ISSUER}", f"--key={key}", f"--dir={tmp_path}", "--previous-issuer=k3s")
    status, _, err = run(oidc_command, *argv)
    assert status == 2
    assert "only used with --print-apiserver-flags" in err


def test_print_apiserver_flags_without_issuer_uses_a_placeholder():
    status, out, _ = run(oidc_command, "--print-apiserver-flags")
    assert status == 0
    assert "--service-account-issuer=https://ISSUER" in out.splitlines()
