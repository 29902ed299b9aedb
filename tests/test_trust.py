"""Which CAs verify the relay and the chat services (missedcall.deliver.trust), for real.

With no CA file configured, the system's CAs are read from OpenSSL's certificate directory when it
holds ``<hash>.0`` links (Debian), one CA per handshake, instead of the whole bundle on every call;
otherwise (a bundle only, as on RHEL and SNG7, or SSL_CERT_FILE set) exactly as before. Each case
mails through the suite's STARTTLS relay or posts to its HTTPS server, whose certificate is trusted
only where the test puts it: ``SSL_CERT_DIR`` and ``SSL_CERT_FILE`` point OpenSSL at the test's
folders, as an admin would. The store's counters (``cert_store_stats``) show what was read.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from missedcall import config
from missedcall.deliver import mime, transport, trust, webpost
from tests.support.chatserver import ChatServer
from tests.support.smtp import SmtpServer, make_tls_certificate


def _hash_link(directory: Path, cert: Path) -> Path:
    """Put ``cert`` in ``directory`` under OpenSSL's name for it (what update-ca-certificates makes)."""
    openssl = shutil.which("openssl")
    assert openssl is not None, "tests/run installs openssl"
    digest = subprocess.run(
        [openssl, "x509", "-hash", "-noout", "-in", str(cert)], check=True, capture_output=True, text=True, timeout=30
    ).stdout.strip()
    directory.mkdir(exist_ok=True)
    link = directory / f"{digest}.0"
    shutil.copyfile(cert, link)
    return link


@pytest.fixture
def no_openssl_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)


@pytest.fixture
def relay(tls_certificate: tuple[Path, Path]) -> Iterator[SmtpServer]:
    server = SmtpServer("starttls", tls_certificate)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _mail(relay: SmtpServer) -> None:
    settings = config.load_settings({"MISSEDCALL_CONFIG": "/nonexistent", **relay.config()})
    assert settings.smtp_security == "starttls" and settings.smtp_cafile == ""  # the system's CAs
    msg = mime.Draft()
    msg["Subject"] = "missed call"
    msg["To"] = "ops@example.com"
    msg.set_content("Пропущенный звонок\n")
    transport.send_smtp(msg, ["ops@example.com"], settings, timeout=5)


@pytest.mark.usefixtures("no_openssl_env")
def test_a_directory_of_hash_links_is_read_one_ca_at_a_time(
    tmp_path: Path, tls_certificate: tuple[Path, Path], relay: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    _hash_link(tmp_path / "certs", make_tls_certificate(_fresh(tmp_path / "other"))[0])  # some other CA
    _hash_link(tmp_path / "certs", tls_certificate[0])
    monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path / "certs"))
    assert trust.hashed_directory() == str(tmp_path / "certs")
    context = trust.client_context()
    assert context.cert_store_stats()["x509_ca"] == 0  # nothing read up front
    assert (context.verify_mode, context.check_hostname) == (ssl.CERT_REQUIRED, True)
    _mail(relay)
    [got] = relay.wait_for(1)
    assert got.tls and str(got.message["Subject"]) == "missed call"


@pytest.mark.usefixtures("no_openssl_env")
def test_a_certificate_no_ca_in_the_directory_vouches_for_is_refused(
    tmp_path: Path, relay: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    _hash_link(tmp_path / "certs", make_tls_certificate(_fresh(tmp_path / "other"))[0])
    monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path / "certs"))
    assert trust.hashed_directory()
    with pytest.raises(transport.TransportError, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
        _mail(relay)
    assert relay.messages == []


@pytest.mark.usefixtures("no_openssl_env")
def test_a_bundle_only_directory_rhel_style_reads_the_system_default_as_before(
    tmp_path: Path, tls_certificate: tuple[Path, Path], relay: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    rhel = _fresh(tmp_path / "pki")
    shutil.copyfile(tls_certificate[0], rhel / "ca-bundle.crt")  # a bundle, no hash links
    monkeypatch.setenv("SSL_CERT_DIR", str(rhel))
    assert trust.hashed_directory() == ""
    system = ssl.create_default_context().cert_store_stats()["x509_ca"]
    assert trust.client_context().cert_store_stats()["x509_ca"] == system
    with pytest.raises(transport.TransportError, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
        _mail(relay)  # a bundle in a directory is not a CA location, before or now


@pytest.mark.usefixtures("no_openssl_env")
def test_ssl_cert_file_is_the_file_to_trust_as_before(
    tmp_path: Path, tls_certificate: tuple[Path, Path], relay: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    _hash_link(tmp_path / "certs", make_tls_certificate(_fresh(tmp_path / "other"))[0])
    monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path / "certs"))
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_certificate[0]))
    assert trust.hashed_directory() == ""
    assert trust.client_context().cert_store_stats()["x509_ca"] == 1  # that file, read up front
    _mail(relay)
    assert len(relay.wait_for(1)) == 1


@pytest.mark.usefixtures("no_openssl_env")
def test_a_configured_ca_file_is_the_only_one(tmp_path: Path, tls_certificate: tuple[Path, Path]) -> None:
    context = trust.client_context(str(tls_certificate[0]))
    assert context.cert_store_stats()["x509_ca"] == 1
    with pytest.raises((OSError, ssl.SSLError)):
        trust.client_context(str(tmp_path / "missing.pem"))


@pytest.mark.usefixtures("no_openssl_env")
def test_chat_posts_verify_against_the_directory_too(
    tmp_path: Path, tls_certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    server = ChatServer(*tls_certificate).start()
    try:
        monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path / "certs"))
        _hash_link(tmp_path / "certs", make_tls_certificate(_fresh(tmp_path / "other"))[0])
        with pytest.raises(webpost.ChatError, match="TLS certificate not trusted"):
            webpost.request(server.url("/ok/a"), body=b"{}", headers={}, timeout=5, cafile="", secrets=[])
        _hash_link(tmp_path / "certs", tls_certificate[0])
        answer = webpost.request(server.url("/ok/a"), body=b"{}", headers={}, timeout=5, cafile="", secrets=[])
        assert answer.status == 200 and len(server.posts("/ok/")) == 1
    finally:
        server.stop()


def _fresh(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    return directory


@pytest.mark.usefixtures("no_openssl_env")
def test_a_long_running_process_makes_a_context_once_per_ca_file_until_forget(
    tmp_path: Path, tls_certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert trust.client_context() is not trust.client_context()  # the hook: a context per call
    trust.keep_contexts()
    try:
        first = trust.client_context()
        assert trust.client_context() is first
        assert trust.client_context(str(tls_certificate[0])) is not first  # a CA file of its own
        monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path))  # OpenSSL told to look elsewhere: a new context
        assert trust.client_context() is not first
        monkeypatch.delenv("SSL_CERT_DIR")
        assert trust.client_context() is first
        trust.forget()  # SIGHUP
        assert trust.client_context() is not first
    finally:
        trust.keep_contexts(False)
