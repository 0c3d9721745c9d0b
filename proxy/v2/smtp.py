"""The SMTP sender: one outbox email to its tenant's relay with aiosmtplib, bounded in time.

STARTTLS (required, not opportunistic) or implicit TLS, certificates verified (against the system's
CAs, or `--smtp-ca-file`), AUTH when the tenant names a credential. What went wrong is classified
for the outbox:
- temporary (retried with backoff): any 4xx, a refused, lost or timed-out connection, a TLS or
  AUTH failure (the relay or our configuration, not this message: every email would fail alike);
- permanent (dead-lettered with the reason): a 5xx to this message's MAIL FROM, RCPT TO or DATA;
- relay down (the tenant's other emails wait instead of each timing out in turn): anything that is
  not about this one message.
A dry run never sends: the sender refuses inside one, whatever called it.
"""

from __future__ import annotations

import asyncio
import ssl
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Final

import aiosmtplib

from proxy.v2.db import dry_run
from proxy.v2.outbox import Email, SendFailure
from proxy.v2.relays import Relay

QUIT_TIMEOUT_S: Final = 5.0
_RELAY_LEVEL_CODES: Final = frozenset({421, 554})  # "closing the channel" / "no service": not this message


class DryRunSendRefused(RuntimeError):
    """An email was about to be sent inside a dry run (a mirrored request): refused."""


def message_for(email: Email) -> EmailMessage:
    """The MIME message: multipart/alternative, plain text first, HTML second."""
    message = EmailMessage()
    message["From"] = Address(email.from_name, addr_spec=email.from_address)
    message["To"] = Address(email.to_name, addr_spec=email.to_address)
    if email.reply_to:
        message["Reply-To"] = email.reply_to
    message["Subject"] = email.subject
    message["Date"] = format_datetime(datetime.now(UTC))
    domain = email.from_address.rpartition("@")[2] or "localhost"
    # The same id for every attempt of one (order, template): a copy sent twice (a worker dying
    # between the relay's answer and the mark) is recognisably the same message.
    message["Message-ID"] = f"<{email.template}.{email.order_id}.{email.tenant}@{domain}>"
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(email.text)
    message.add_alternative(email.html, subtype="html")
    message["Content-Language"] = email.language  # after the parts: set_content replaces Content-* headers
    return message


class SmtpSender:
    def __init__(self, *, timeout_s: float = 30.0, ca_file: str | None = None,
                 local_hostname: str | None = None) -> None:
        self.timeout_s = timeout_s
        self._tls = ssl.create_default_context(cafile=ca_file)
        self._local_hostname = local_hostname

    async def send(self, email: Email) -> None:
        if dry_run.get() is not None:
            raise DryRunSendRefused(f"email {email.template} for order {email.order_id} inside a dry run")
        relay = email.relay
        where = f"relay {relay.host}:{relay.port}"
        credential = relay.credential
        try:
            async with asyncio.timeout(self.timeout_s):
                client = await self._deliver(relay, message_for(email))
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            answers = "; ".join(f"{r.code} {r.message}" for r in exc.recipients)
            raise SendFailure(f"{where} refused the recipient: {answers}",
                              permanent=all(code >= 500 for code in codes)) from None
        except aiosmtplib.SMTPAuthenticationError as exc:
            name = credential.name if credential else "?"
            raise SendFailure(f"{where} refused credential {name}: {exc.code} {exc.message}",
                              relay_down=True) from None
        except (aiosmtplib.SMTPSenderRefused, aiosmtplib.SMTPDataError) as exc:
            relay_level = exc.code in _RELAY_LEVEL_CODES
            raise SendFailure(f"{where}: {exc.code} {exc.message}", permanent=exc.code >= 500 and not relay_level,
                              relay_down=relay_level) from None
        except aiosmtplib.SMTPResponseException as exc:  # greeting, HELO, or another unexpected answer
            raise SendFailure(f"{where}: {exc.code} {exc.message}", relay_down=True) from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:  # incl. TLS, refused, lost, timed out
            detail = str(exc) or type(exc).__name__
            if isinstance(exc, TimeoutError) and not str(exc):
                detail = f"no answer within {self.timeout_s:g} s"
            raise SendFailure(f"{where}: {detail}", relay_down=True) from None

        await _quit(client)  # outside the bound above: a slow goodbye never undoes an accepted message

    async def _deliver(self, relay: Relay, message: EmailMessage) -> aiosmtplib.SMTP:
        """Connect, TLS, AUTH, MAIL/RCPT/DATA; the connection is closed at once if anything fails."""
        client = aiosmtplib.SMTP(hostname=relay.host, port=relay.port, use_tls=relay.security == "tls",
                                 start_tls=relay.security == "starttls",
                                 tls_context=self._tls if relay.security != "none" else None,
                                 timeout=self.timeout_s, local_hostname=self._local_hostname)
        try:
            await client.connect()
            if relay.security == "starttls":
                await client.ehlo()  # the extensions offered inside TLS (AUTH among them), not those before it
            if relay.credential is not None:
                username, password = relay.credential.username, relay.credential.password.reveal()
                if "PLAIN" in client.esmtp_extensions.get("auth", "").upper().split():
                    # One mechanism, inside TLS: a refusal is one clear 535 rather than a tour of them all.
                    await client.auth_plain(username, password)
                else:
                    await client.login(username, password)
            await client.send_message(message)
        except BaseException:
            client.close()  # no QUIT to a relay that failed, nor while being cancelled
            raise
        return client


async def _quit(client: aiosmtplib.SMTP) -> None:
    try:
        async with asyncio.timeout(QUIT_TIMEOUT_S):
            await client.quit()
    except (aiosmtplib.SMTPException, OSError):  # TimeoutError included: the message was accepted already
        client.close()
    except BaseException:
        client.close()
        raise
