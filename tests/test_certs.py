"""`pod-identity-webhook certs`: certificates an API server and a TLS client accept."""

from __future__ import annotations

import base64
import io
import ipaddress
import socket
import ssl
import stat
import tempfile
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import cast

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa, x25519
from cryptography.x509 import DNSName, IPAddress
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from webhook.certificates.bootstrap import Bootstrap
from webhook.certificates.issuing import (
    ca_bundle,
    certificate_expiry,
    certificate_serial,
    make_ca,
    make_serving_cert,
    needs_renewal,
    service_dns_names,
    subject_alt_names,
    trusts,
)
from webhook.certificates.summary import names_cover
from webhook.cli.certs import certs_command
from webhook.errors import ConfigError
from webhook.kube import Api

NOW = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
SERVICE_NAMES = [
    "pod-identity-webhook",
    "pod-identity-webhook.default",
    "pod-identity-webhook.default.svc",
    "pod-identity-webhook.default.svc.cluster.local",
]
TIMEOUT = 5.0


@pytest.fixture(scope="module")
def ca() -> tuple[bytes, bytes]:
    return make_ca(now=NOW)


def certs(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = certs_command(list(argv), stdout=out, stderr=err)
    return status, out.getvalue(), err.getvalue()


def sans(cert: x509.Certificate) -> tuple[list[str], list[str]]:
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return ext.get_values_for_type(x509.DNSName), [
        str(ip) for ip in ext.get_values_for_type(x509.IPAddress)
    ]


def verifier_for(ca_pem: bytes, subject: DNSName | IPAddress, when: datetime = NOW):
    store = Store([x509.load_pem_x509_certificate(ca_pem)])
    return PolicyBuilder().store(store).time(when).build_server_verifier(subject)


# --- pure functions -------------------------------------------------------------------------


def test_service_dns_names_cover_every_form_the_api_server_may_use():
    assert service_dns_names("pod-identity-webhook", "default") == SERVICE_NAMES
    assert service_dns_names("web", "kube-system")[-1] == "web.kube-system.svc.cluster.local"


@pytest.mark.parametrize(("service", "namespace"), [("Web", "default"), ("web", "a.b"), ("", "x")])
def test_service_dns_names_reject_names_kubernetes_would_not_allow(service, namespace):
    with pytest.raises(ConfigError):
        service_dns_names(service, namespace)


def test_ca_may_sign_leaf_certificates_only(ca):
    cert = x509.load_pem_x509_certificate(ca[0])
    basic = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical
    assert basic.value.ca
    assert basic.value.path_length == 0
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical
    assert usage.value.key_cert_sign
    assert usage.value.crl_sign
    assert not usage.value.digital_signature
    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(cert.public_key())
    assert cert.subject == cert.issuer
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == (
        "pod-identity-webhook-ca"
    )
    cert.verify_directly_issued_by(cert)
    key = cert.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    assert isinstance(key.curve, ec.SECP256R1)
    assert cert.not_valid_after_utc == NOW + timedelta(days=3650)


def test_serving_certificate_names_flags_and_validity(ca):
    cert_pem, key_pem = make_serving_cert(
        *ca, dns_names=SERVICE_NAMES, ip_addresses=["10.0.0.7", "::1"], days=30, now=NOW
    )
    cert = x509.load_pem_x509_certificate(cert_pem)
    ca_cert = x509.load_pem_x509_certificate(ca[0])
    assert sans(cert) == (SERVICE_NAMES, ["10.0.0.7", "::1"])
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == SERVICE_NAMES[0]
    assert cert.issuer == ca_cert.subject
    basic = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical
    assert not basic.value.ca
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical
    assert usage.value.digital_signature
    assert not usage.value.key_cert_sign
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ca_ski.digest
    # Backdated against clock skew; lives exactly `days`.
    assert cert.not_valid_before_utc == NOW - timedelta(minutes=5)
    assert certificate_expiry(cert_pem) == NOW + timedelta(days=30)
    assert certificate_serial(cert_pem) == cert.serial_number
    cert.verify_directly_issued_by(ca_cert)
    assert b"PRIVATE KEY" in key_pem


def test_serving_certificate_chains_to_the_ca_for_each_name_and_address(ca):
    cert_pem, _ = make_serving_cert(
        *ca, dns_names=SERVICE_NAMES, ip_addresses=["127.0.0.1"], now=NOW
    )
    leaf = x509.load_pem_x509_certificate(cert_pem)
    for name in SERVICE_NAMES:
        chain = verifier_for(ca[0], DNSName(name)).verify(leaf, [])
        assert chain[-1] == x509.load_pem_x509_certificate(ca[0])
    verifier_for(ca[0], IPAddress(ipaddress.ip_address("127.0.0.1"))).verify(leaf, [])
    with pytest.raises(VerificationError):
        verifier_for(ca[0], DNSName("other.default.svc")).verify(leaf, [])
    with pytest.raises(VerificationError):
        verifier_for(ca[0], IPAddress(ipaddress.ip_address("127.0.0.2"))).verify(leaf, [])
    expired = verifier_for(ca[0], DNSName(SERVICE_NAMES[0]), NOW + timedelta(days=366))
    with pytest.raises(VerificationError):
        expired.verify(leaf, [])


def test_serial_numbers_are_random(ca):
    serials = {
        certificate_serial(make_serving_cert(*ca, dns_names=["a"], now=NOW)[0]) for _ in range(3)
    }
    assert len(serials) == 3


def test_ip_only_certificate_uses_the_address_as_common_name(ca):
    cert_pem, _ = make_serving_cert(*ca, dns_names=[], ip_addresses=["192.0.2.1"], now=NOW)
    cert = x509.load_pem_x509_certificate(cert_pem)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "192.0.2.1"
    assert sans(cert) == ([], ["192.0.2.1"])


def test_duplicate_names_are_listed_once(ca):
    cert_pem, _ = make_serving_cert(
        *ca, dns_names=["a.example", "A.example", "a.example"], ip_addresses=["::1", "::01"]
    )
    assert sans(x509.load_pem_x509_certificate(cert_pem)) == (["a.example"], ["::1"])


def test_ca_bundle_is_base64_of_the_pem(ca):
    assert base64.b64decode(ca_bundle(ca[0]), validate=True) == ca[0]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dns_names": ["a"], "ip_addresses": ["10.0.0.300"]}, "invalid IP address '10.0.0.300'"),
        ({"dns_names": []}, "at least one DNS name or IP address"),
        ({"dns_names": ["bad name"]}, "invalid DNS name 'bad name'"),
        ({"dns_names": ["10.1.2.3"]}, "is an IP address"),
        ({"dns_names": ["a"], "days": 0}, "at least 1 day"),
        ({"dns_names": ["a"], "days": 10**9}, "too long"),
    ],
)
def test_bad_serving_input_is_a_config_error(ca, kwargs, message):
    with pytest.raises(ConfigError, match=message) as info:
        make_serving_cert(*ca, **kwargs)
    assert "\n" not in str(info.value)


def test_bad_ca_material_is_a_config_error(ca):
    _, other_key = make_ca()
    leaf, leaf_key = make_serving_cert(*ca, dns_names=["a"])
    cases = [
        (b"not a pem", ca[1], "CA certificate is not a PEM certificate"),
        (ca[0], b"garbage", "CA key is not a PEM private key"),
        (ca[0], other_key, "does not belong"),
        (leaf, leaf_key, "is not a CA"),
    ]
    for cert_pem, key_pem, message in cases:
        with pytest.raises(ConfigError, match=message):
            make_serving_cert(cert_pem, key_pem, dns_names=["a"])
    for helper in (ca_bundle, certificate_expiry, certificate_serial):
        with pytest.raises(ConfigError, match="not a PEM certificate"):
            helper(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")


def _hand_made_ca(
    key, *, name: str = "hand-made", is_ca: bool = True, key_id: bool = True, signer=None
) -> bytes:
    """A CA certificate built without make_ca: another key type, or a missing extension."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=30))
    )
    if is_ca:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=0), True)
    if key_id:
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        builder = builder.add_extension(ski, critical=False)
    signing = signer or key
    digest = None if isinstance(signing, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(signing, digest).public_bytes(serialization.Encoding.PEM)


def _pem(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@pytest.mark.parametrize(
    "key",
    [ed25519.Ed25519PrivateKey.generate(), rsa.generate_private_key(65537, 2048)],
    ids=["ed25519", "rsa"],
)
def test_a_ca_of_another_key_type_issues_certificates_it_is_trusted_for(key):
    ca_pem = _hand_made_ca(key)
    leaf, _ = make_serving_cert(ca_pem, _pem(key), dns_names=["hook.ns.svc"], now=NOW)
    assert trusts(ca_pem, leaf)
    assert not trusts(make_ca(now=NOW)[0], leaf)


def test_a_ca_without_a_key_identifier_is_named_by_its_public_key():
    key = ec.generate_private_key(ec.SECP256R1())
    leaf, _ = make_serving_cert(
        _hand_made_ca(key, key_id=False), _pem(key), dns_names=["a"], now=NOW
    )
    cert = x509.load_pem_x509_certificate(leaf)
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki == x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key())


def test_ca_material_that_cannot_issue_is_refused():
    key = ec.generate_private_key(ec.SECP256R1())
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    x25519_key = x25519.X25519PrivateKey.generate()
    cases = [
        (_hand_made_ca(key), encrypted, "CA key is encrypted"),
        (_hand_made_ca(key), _pem(x25519_key), "cannot sign certificates"),
        (_hand_made_ca(key, is_ca=False), _pem(key), "basicConstraints CA:TRUE is missing"),
    ]
    for cert_pem, key_pem, message in cases:
        with pytest.raises(ConfigError, match=message):
            make_serving_cert(cert_pem, key_pem, dns_names=["a"], now=NOW)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"common_name": ""}, "1 to 64 characters"), ({"common_name": "c" * 65}, "1 to 64")],
)
def test_bad_ca_names_are_refused(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        make_ca(**kwargs, now=NOW)


def test_dns_names_must_be_ascii():
    with pytest.raises(ConfigError, match="punycode"):
        make_serving_cert(*make_ca(now=NOW), dns_names=["bücher.example"])


def test_a_certificate_without_alternative_names_has_none():
    assert subject_alt_names(_hand_made_ca(ec.generate_private_key(ec.SECP256R1()))) == []


def test_renewal_is_due_in_the_last_third_of_a_certificates_life(ca):
    leaf, _ = make_serving_cert(*ca, dns_names=["a"], days=30, now=NOW)
    assert not needs_renewal(leaf, NOW + timedelta(days=19))
    assert needs_renewal(leaf, NOW + timedelta(days=21))
    assert needs_renewal(b"not a certificate", NOW)


def test_a_bundle_trusts_its_ca_the_certificate_itself_and_nothing_else(ca):
    leaf, _ = make_serving_cert(*ca, dns_names=["a"], now=NOW)
    other_ca, _ = make_ca(now=NOW)
    assert trusts(ca[0], leaf)
    assert trusts(other_ca + ca[0], leaf)
    assert trusts(leaf, leaf)
    assert not trusts(other_ca, leaf)
    assert not trusts(b"garbage", leaf)
    assert not trusts(ca[0], b"garbage")
    # Same issuer name, another key: the name alone is not trust.
    impostor = _hand_made_ca(
        ec.generate_private_key(ec.SECP256R1()), name="pod-identity-webhook-ca"
    )
    assert not trusts(impostor, leaf)


# --- the command ----------------------------------------------------------------------------


def test_command_writes_four_files_and_reports_them(tmp_path):
    out_dir = tmp_path / "nested" / "certs"
    status, out, err = certs("--dir", str(out_dir))
    assert (status, err) == (0, "")
    lines = out.splitlines()
    assert len(lines) == 3
    names = ["ca.crt", "ca.key", "tls.crt", "tls.key"]
    assert lines[0] == "wrote " + " ".join(str(out_dir / n) for n in names)
    assert lines[1] == "serving names: " + ",".join(SERVICE_NAMES)
    bundle = lines[2].removeprefix("caBundle: ")
    assert lines[2].startswith("caBundle: ")
    assert base64.b64decode(bundle, validate=True) == (out_dir / "ca.crt").read_bytes()
    assert sorted(p.name for p in out_dir.iterdir()) == names  # no temp files left behind
    for name in ("ca.key", "tls.key"):
        assert stat.S_IMODE((out_dir / name).stat().st_mode) == 0o600
    leaf = x509.load_pem_x509_certificate((out_dir / "tls.crt").read_bytes())
    assert sans(leaf) == (SERVICE_NAMES, [])
    verifier_for(
        (out_dir / "ca.crt").read_bytes(), DNSName(SERVICE_NAMES[2]), datetime.now(UTC)
    ).verify(leaf, [])


def test_service_namespace_extra_names_and_local(tmp_path):
    status, out, _ = certs(
        f"--dir={tmp_path}",
        "--service-name=irsa",
        "--namespace",
        "kube-system",
        "--dns",
        "webhook.example.com",
        "--dns=alt.example.com",
        "--ip",
        "10.96.0.10",
        "--local",
        "--days=0x10",
    )
    assert status == 0
    expected_dns = [
        "irsa",
        "irsa.kube-system",
        "irsa.kube-system.svc",
        "irsa.kube-system.svc.cluster.local",
        "webhook.example.com",
        "alt.example.com",
        "localhost",
    ]
    expected_ips = ["10.96.0.10", "127.0.0.1"]
    assert out.splitlines()[1] == "serving names: " + ",".join(expected_dns + expected_ips)
    cert_pem = (tmp_path / "tls.crt").read_bytes()
    assert sans(x509.load_pem_x509_certificate(cert_pem)) == (expected_dns, expected_ips)
    lifetime = certificate_expiry(cert_pem) - datetime.now(UTC)
    assert timedelta(days=15) < lifetime <= timedelta(days=16)


def _serve_once(listener: socket.socket, context: ssl.SSLContext, errors: list[Exception]) -> None:
    try:
        conn, _ = listener.accept()
    except OSError as exc:
        errors.append(exc)
        return
    with conn:
        conn.settimeout(TIMEOUT)
        try:
            with context.wrap_socket(conn, server_side=True) as tls:
                tls.sendall(b"ok")
        except (ssl.SSLError, OSError) as exc:
            errors.append(exc)


def handshake(cert_dir: Path, server_hostname: str) -> bytes:
    """Serve tls.crt/tls.key on loopback once; connect trusting only ca.crt."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert_dir / "tls.crt", cert_dir / "tls.key")
    client_ctx = ssl.create_default_context(cadata=(cert_dir / "ca.crt").read_text())
    errors: list[Exception] = []
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(TIMEOUT)
        port = listener.getsockname()[1]
        thread = threading.Thread(target=_serve_once, args=(listener, server_ctx, errors))
        thread.start()
        try:
            with (
                socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as raw,
                client_ctx.wrap_socket(raw, server_hostname=server_hostname) as tls,
            ):
                return tls.recv(2)
        finally:
            thread.join(TIMEOUT)
            assert not thread.is_alive()


@pytest.mark.parametrize("hostname", ["localhost", "127.0.0.1", "pod-identity-webhook.default.svc"])
def test_real_tls_handshake_succeeds_for_the_certificate_names(tmp_path, hostname):
    assert certs("--dir", str(tmp_path), "--local")[0] == 0
    assert handshake(tmp_path, hostname) == b"ok"


@pytest.mark.parametrize("hostname", ["example.com", "127.0.0.2", "pod-identity-webhook.eks.svc"])
def test_real_tls_handshake_fails_for_other_names(tmp_path, hostname):
    assert certs("--dir", str(tmp_path), "--local")[0] == 0
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(tmp_path, hostname)


def test_handshake_without_local_does_not_cover_localhost(tmp_path):
    assert certs("--dir", str(tmp_path))[0] == 0
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(tmp_path, "localhost")


def test_existing_files_are_kept_without_force_and_replaced_with_it(tmp_path):
    assert certs("--dir", str(tmp_path))[0] == 0
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    serial = certificate_serial(before["tls.crt"])

    for argv in (["--dir", str(tmp_path)], [f"--dir={tmp_path}", "--force=false"]):
        status, out, err = certs(*argv)
        assert (status, out) == (1, "")
        assert err == (
            f"pod-identity-webhook certs: {tmp_path}/tls.crt exists; use --force to overwrite\n"
        )
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before

    status, _, err = certs("--dir", str(tmp_path), "--force")
    assert (status, err) == (0, "")
    assert certificate_serial((tmp_path / "tls.crt").read_bytes()) != serial
    assert (tmp_path / "ca.crt").read_bytes() != before["ca.crt"]
    assert stat.S_IMODE((tmp_path / "tls.key").stat().st_mode) == 0o600


def test_any_one_existing_file_blocks_the_write(tmp_path):
    (tmp_path / "ca.key").write_text("keep me")
    status, _, err = certs("--dir", str(tmp_path))
    assert status == 1
    assert (
        err == f"pod-identity-webhook certs: {tmp_path}/ca.key exists; use --force to overwrite\n"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ca.key"]


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--ip", "300.1.1.1"], "--ip"),
        (["--ip=localhost"], "--ip"),
        (["--dns", "not a name"], "--dns"),
        (["--bogus"], "--bogus"),
        (["--days=abc"], "--days"),
        (["--days", "0"], "--days"),
        (["--days=-5"], "--days"),
        (["--force=maybe"], "--force"),
        (["--namespace=Kube_System"], "--namespace"),
        (["--dns"], "--dns"),
        (["stray"], "'stray'"),
    ],
)
def test_flag_errors_exit_2_with_one_line_naming_the_flag(tmp_path, argv, needle):
    status, out, err = certs("--dir", str(tmp_path / "c"), *argv)
    assert (status, out) == (2, "")
    assert err.count("\n") == 1
    assert err.startswith("pod-identity-webhook certs: ")
    assert needle in err
    assert not (tmp_path / "c").exists()


def test_unwritable_directory_exits_1_with_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    status, out, err = certs("--dir", str(blocker / "certs"))
    assert (status, out) == (1, "")
    assert err.count("\n") == 1
    assert err.startswith("pod-identity-webhook certs: cannot write ")
    assert "Traceback" not in err


@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_help_exits_0_and_lists_the_flags(tmp_path, flag):
    status, out, err = certs(flag, "--dir", str(tmp_path / "c"))
    assert (status, err) == (0, "")
    for name in ("--dir", "--service-name", "--namespace", "--dns", "--ip", "--local", "--days"):
        assert name in out
    assert "--force" in out
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize(
    ("names", "host", "covered"),
    [
        (["hook.ns.svc"], "hook.ns.svc", True),
        (["HOOK.ns.svc."], "hook.ns.svc", True),
        (["*.ns.svc"], "hook.ns.svc", True),
        (["*.svc"], "hook.ns.svc", False),
        (["*.ns.svc"], "ns.svc", False),
        (["hook.ns.svc.cluster.local"], "hook.ns.svc", False),
        (["localhost", "127.0.0.1"], "hook.ns.svc", False),
        ([], "hook.ns.svc", False),
    ],
)
def test_names_cover_follows_the_api_servers_hostname_check(names, host, covered):
    assert names_cover(names, host) is covered


def test_the_bootstrap_pair_is_removed_with_the_directory_it_made(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    made = Bootstrap(cast("Api", None), namespace="n", secret="s", service="w", configuration="")
    made._write_files(b"cert", b"key")
    given = Bootstrap(
        cast("Api", None),
        namespace="n",
        secret="s",
        service="w",
        configuration="",
        directory=tmp_path / "given",
    )
    given.directory.mkdir()
    given._write_files(b"cert", b"key")
    made.close()
    given.close()
    assert [path.name for path in tmp_path.iterdir()] == ["given"]  # not ours to remove
    assert list(given.directory.iterdir()) == []
    made.close()  # twice: nothing left to remove is no error
    # A rotation that was still running in its thread when the webhook stopped writes nothing.
    assert made._write_files(b"cert 2", b"key 2") is False
    assert [path.name for path in tmp_path.iterdir()] == ["given"]
