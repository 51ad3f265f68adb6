"""Email over SMTP (smtplib in a worker thread), with a Message-ID derived from the delivery id.

SMTP has no idempotency key: after a crash between the server accepting a message and the ledger recording
it, the resend is a second copy. Both copies carry the same Message-ID, so a mail client or a gateway can
fold them, and the ledger still holds one row (see docs/NOTIFY.md, "delivery guarantee").
"""

from __future__ import annotations

import asyncio
import smtplib
from email.message import EmailMessage
from email.utils import formatdate

from services.notify.channels.base import PermanentFailure, Sent, TransientFailure
from services.notify.messages import AlertMessage
from services.notify.models import NotifyDelivery
from services.notify.settings import NotifySettings


def message_id(delivery_id: str) -> str:
    return f"<{delivery_id}@cme-tracker.notify>"


class SmtpSender:
    def __init__(self, settings: NotifySettings) -> None:
        self._settings = settings

    def build(self, message: AlertMessage) -> EmailMessage:
        email = EmailMessage()
        email["From"] = self._settings.notify_mail_from
        email["To"] = message.address
        email["Subject"] = message.subject
        email["Date"] = formatdate(usegmt=True)
        email["Message-ID"] = message_id(message.delivery_id)
        email["X-CME-Delivery"] = message.delivery_id
        email["Auto-Submitted"] = "auto-generated"  # RFC 3834: no out-of-office replies to an alert
        email.set_content(message.body)
        return email

    async def send(self, delivery: NotifyDelivery, message: AlertMessage) -> Sent:
        await asyncio.to_thread(self._send_sync, self.build(message))
        return Sent(provider_ref=message_id(message.delivery_id))

    async def find_previous(self, delivery: NotifyDelivery, message: AlertMessage) -> Sent | None:
        return None  # SMTP cannot be asked whether it took a message: resend (same Message-ID)

    async def aclose(self) -> None:
        return None  # one connection per message: nothing held open

    def _send_sync(self, email: EmailMessage) -> None:
        s = self._settings
        try:
            with smtplib.SMTP(
                s.notify_smtp_host, s.notify_smtp_port, timeout=s.notify_smtp_timeout_s
            ) as smtp:
                if s.notify_smtp_starttls:
                    smtp.starttls()
                if s.notify_smtp_username and s.notify_smtp_password:
                    smtp.login(s.notify_smtp_username, s.notify_smtp_password.get_secret_value())
                smtp.send_message(email)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = sorted({code for code, _ in exc.recipients.values()})
            if all(500 <= c < 600 for c in codes):
                raise PermanentFailure(f"recipient refused (SMTP {codes})") from exc
            raise TransientFailure(f"recipient deferred (SMTP {codes})") from exc
        except smtplib.SMTPResponseException as exc:
            # The server's text can quote the address: keep only the code.
            if 500 <= exc.smtp_code < 600 and exc.smtp_code not in (421, 451, 452):
                raise PermanentFailure(f"SMTP {exc.smtp_code}") from exc
            raise TransientFailure(f"SMTP {exc.smtp_code}") from exc
        except (TimeoutError, smtplib.SMTPException, OSError) as exc:
            raise TransientFailure(f"SMTP connection: {type(exc).__name__}") from exc
