"""Rendering a message and handing it to the SMTP server (or the development outbox).

With ``PORTAL_SMTP_HOST`` set, mail goes over SMTP; without it (a developer's
machine) each message is written as an ``.eml`` file to the outbox folder,
readable at ``/dev/outbox`` in development. Nothing here records or retries:
:mod:`portal.mail.services` does (every message is a ``mail_messages`` row sent
by the ``mail.send`` job).
"""

from __future__ import annotations

import smtplib
import socket
import uuid
from contextlib import nullcontext
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any

from flask import current_app, render_template

from portal.i18n import in_language, language
from portal.kernel.clock import now_utc

#: The attribute :func:`build_message` leaves on a message: the template it came from.
KIND_ATTRIBUTE = "portal_kind"


def build_message(
    *, to: str, subject: Any, template: str, locale: str | None = None, **context: Any
) -> EmailMessage:
    """Render ``templates/mail/<template>.txt`` into a plain-text message, in ``locale``.

    ``locale`` is the recipient's language (``users.locale``; for an organisation's
    mail, its admins' or invoice language). Without one, the language spoken where the
    message is built: a caller's ``with i18n.in_language(…)`` block, else the request's
    reader's (English in a job). ``subject`` may be a lazy message
    (``_l("Invoice %(number)s", number=…)``): it is read, like the body, in that language.
    The message says which (``Content-Language``).
    """
    speaking = in_language(locale) if locale else nullcontext(language())
    with speaking as spoken:
        message = EmailMessage()
        message["From"] = current_app.config["PORTAL_MAIL_FROM"]
        message["To"] = to
        message["Subject"] = str(subject)
        message["Message-ID"] = make_msgid(domain="portal.local")
        context.setdefault("council_name", current_app.config["PORTAL_COUNCIL_NAME"])
        context.setdefault("base_url", current_app.config["PORTAL_BASE_URL"])
        message.set_content(render_template(f"mail/{template}.txt", **context))
    message["Content-Language"] = spoken  # after set_content, which replaces Content-* headers
    setattr(message, KIND_ATTRIBUTE, template)
    return message


def deliver(message: EmailMessage) -> None:
    """Send one message now, by SMTP or into the outbox folder; raises when it could not."""
    config = current_app.config
    host = config["PORTAL_SMTP_HOST"]
    if host:
        timeout = config.get("PORTAL_SMTP_TIMEOUT", 10)
        with smtplib.SMTP(host, config["PORTAL_SMTP_PORT"], timeout=timeout) as smtp:
            if config["PORTAL_SMTP_STARTTLS"]:
                smtp.starttls()
            if config["PORTAL_SMTP_USERNAME"]:
                smtp.login(config["PORTAL_SMTP_USERNAME"], config["PORTAL_SMTP_PASSWORD"] or "")
            smtp.send_message(message)
        return
    outbox = Path(config["PORTAL_OUTBOX_DIR"])
    outbox.mkdir(parents=True, exist_ok=True)
    name = f"{now_utc():%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}.eml"
    (outbox / name).write_bytes(bytes(message))


def describe_failure(error: BaseException) -> str:
    """Why a message was not sent, as a person reads it (no stack trace, no password)."""
    # smtplib reports a greeting that never came as a closed connection "timed out".
    silent = isinstance(error, smtplib.SMTPServerDisconnected) and "timed out" in str(error)
    if silent or isinstance(error, socket.timeout | TimeoutError):
        return "The SMTP server did not answer (timed out)."
    if isinstance(error, ConnectionRefusedError):
        return "The SMTP server refused the connection (nothing listens there)."
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        answers = "; ".join(
            f"{code} {text.decode(errors='replace') if isinstance(text, bytes) else text}"
            for code, text in error.recipients.values()
        )
        return f"The SMTP server refused the recipient: {answers}."[:500]
    if isinstance(error, smtplib.SMTPAuthenticationError):
        return "The SMTP server refused the portal's user name or password."
    if isinstance(error, smtplib.SMTPServerDisconnected):
        return "The SMTP server closed the connection."
    if isinstance(error, smtplib.SMTPResponseException):
        text = error.smtp_error
        text = text.decode(errors="replace") if isinstance(text, bytes) else str(text)
        return f"The SMTP server answered {error.smtp_code} {text}."[:500]
    if isinstance(error, socket.gaierror):
        return "The SMTP server's name could not be resolved."
    if isinstance(error, OSError):
        return f"The SMTP server could not be reached ({error.strerror or error})."[:500]
    return f"Sending failed ({type(error).__name__})."


def outbox_messages(limit: int = 50) -> list[tuple[str, EmailMessage]]:
    """The newest messages in the development outbox, as (file name, message)."""
    from email import policy
    from email.parser import BytesParser

    outbox = Path(current_app.config["PORTAL_OUTBOX_DIR"])
    if not outbox.is_dir():
        return []
    files = sorted(outbox.glob("*.eml"), reverse=True)[:limit]
    parser = BytesParser(policy=policy.default)
    return [(f.name, parser.parsebytes(f.read_bytes())) for f in files]
