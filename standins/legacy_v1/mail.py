"""The confirmation emails the SQLite generation sends and awaits inside the request: with SMTP
unreachable, the create or the settlement answers 500 after the order or its status was written."""

from __future__ import annotations

from email.message import EmailMessage

import aiosmtplib

SMTP_TIMEOUT_S = 10.0


class MailFailed(Exception):
    pass


class Mailer:
    def __init__(self, host: str, port: int, sender: str = "noreply@localhost") -> None:
        self.host, self.port, self.sender = host, port, sender

    async def send(self, to: str, subject: str, text: str) -> None:
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = self.sender, to, subject
        message.set_content(text)
        try:
            await aiosmtplib.send(message, hostname=self.host, port=self.port, timeout=SMTP_TIMEOUT_S,
                                  start_tls=False, use_tls=False)
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise MailFailed(f"{type(exc).__name__}: {exc}") from None
