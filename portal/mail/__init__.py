"""Outgoing mail: queued with the database change, sent once it is committed.

Services call :func:`mail_queue` with the session they write in. The message is
sent only after that session commits, so a rolled-back change never mails
anyone. With ``PORTAL_SMTP_HOST`` set, mail goes over SMTP; without it (a
developer's machine) each message is written as an ``.eml`` file to the outbox
folder, readable at ``/dev/outbox`` in development.
"""

from __future__ import annotations

import smtplib
import uuid
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

from flask import current_app, render_template
from sqlalchemy import event
from sqlalchemy.orm import Session

from portal.kernel.clock import now_utc

_PENDING_KEY = "portal_outgoing_mail"


def build_message(*, to: str, subject: str, template: str, **context) -> EmailMessage:
    """Render ``templates/mail/<template>.txt`` into a plain-text message."""
    message = EmailMessage()
    message["From"] = current_app.config["PORTAL_MAIL_FROM"]
    message["To"] = to
    message["Subject"] = subject
    message["Message-ID"] = make_msgid(domain="portal.local")
    context.setdefault("council_name", current_app.config["PORTAL_COUNCIL_NAME"])
    context.setdefault("base_url", current_app.config["PORTAL_BASE_URL"])
    message.set_content(render_template(f"mail/{template}.txt", **context))
    return message


def mail_queue(session: Session, message: EmailMessage) -> None:
    """Send ``message`` when ``session`` commits; drop it if the session rolls back."""
    session.info.setdefault(_PENDING_KEY, []).append(message)


def deliver(message: EmailMessage) -> None:
    """Send one message now, by SMTP or into the outbox folder."""
    config = current_app.config
    host = config["PORTAL_SMTP_HOST"]
    if host:
        with smtplib.SMTP(host, config["PORTAL_SMTP_PORT"], timeout=10) as smtp:
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


@event.listens_for(Session, "after_commit")
def _send_after_commit(session: Session) -> None:
    pending = session.info.pop(_PENDING_KEY, None)
    for message in pending or []:
        try:
            deliver(message)
        except Exception:  # a mail server being down must not undo a committed change
            current_app.logger.exception("Could not send mail to %s", message["To"])


@event.listens_for(Session, "after_rollback")
def _drop_after_rollback(session: Session) -> None:
    session.info.pop(_PENDING_KEY, None)
