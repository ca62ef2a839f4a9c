"""Every mail a recorded message, sent by a job: queueing, sending, retrying, sending again.

* :func:`mail_queue` records the message (``mail_messages``, state ``queued``) and
  the ``mail.send`` job in the caller's transaction (an outbox): a rolled-back
  change mails nobody, a committed one always has its message and its job.
* The job (:func:`mail_send_job`) hands the message to the SMTP server. When the
  server does not answer (or refuses), the message says ``failed`` with the
  reason and when it is tried again, and the job is retried with exponential
  backoff (:data:`MAIL_BACKOFF`, :data:`MAIL_ATTEMPTS` tries); then it stays
  ``failed`` until a person presses "Send again".
* :func:`mail_resend` ("Send again", audited as ``mail.resend``) queues the same
  message again, whatever became of it.

Sending is at least once: a worker killed after the SMTP server took the
message but before the row said ``sent`` sends it again when the job is
redelivered. A message already ``sent`` is never sent again by a late job.
"""

from __future__ import annotations

import base64
import datetime as dt
from email import policy as email_policy
from email.message import EmailMessage
from email.parser import BytesParser

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.audit.services import audit_record
from portal.crypto import decrypt_secret, encrypt_secret
from portal.db import council_wide
from portal.jobs.models import Job
from portal.jobs.queue import REGISTRY, enqueue, job
from portal.kernel import policy
from portal.kernel.actor import Actor
from portal.kernel.clock import now_utc
from portal.kernel.errors import InvalidState
from portal.kernel.i18n import _l
from portal.kernel.policy import Action
from portal.mail.models import MailMessage, MailState
from portal.mail.transport import KIND_ATTRIBUTE, deliver, describe_failure

#: Tries before a message is left ``failed`` for a person: the first and five retries.
MAIL_ATTEMPTS = 6
#: Seconds before each retry: 1 minute, 5 minutes, 30 minutes, 2 hours, 6 hours.
MAIL_BACKOFF = (60, 300, 1800, 7200, 21600)

#: Who may send a message again, by what it is about (default: council admins, who run jobs).
RESEND_ACTIONS: dict[str | None, Action] = {
    "invitation": Action.USER_INVITE,
    "invoice": Action.INVOICE_FINALIZE,
}

_SYSTEM = Actor.system("mail")


class MailNotSent(RuntimeError):
    """The SMTP server did not take the message; the job is retried (the reason is recorded)."""


def _seal(message: EmailMessage) -> str:
    return encrypt_secret(base64.b64encode(bytes(message)).decode("ascii"))


def unseal(row: MailMessage) -> EmailMessage:
    """The message as it was rendered when queued."""
    raw = base64.b64decode(decrypt_secret(row.sealed))
    parsed = BytesParser(policy=email_policy.default).parsebytes(raw)
    assert isinstance(parsed, EmailMessage)
    return parsed


def mail_queue(
    session: Session,
    message: EmailMessage,
    *,
    organisation_id: int | None = None,
    related: tuple[str, int] | None = None,
    kind: str | None = None,
    actor: Actor | None = None,
) -> MailMessage:
    """Record ``message`` and the job that sends it, in ``session``'s transaction.

    ``organisation_id`` is the organisation it concerns (NULL: council staff's);
    ``related`` the object it is about (``("invitation", 12)``), for the page that
    shows the message's state. ``kind`` defaults to the template it was built from.
    """
    kind = kind or getattr(message, KIND_ATTRIBUTE, None) or "message"
    row = MailMessage(
        organisation_id=organisation_id,
        recipient=str(message["To"] or "")[:254],
        subject=str(message["Subject"] or "")[:300],
        kind=kind[:60],
        related_type=related[0] if related else None,
        related_id=related[1] if related else None,
        sealed=_seal(message),
        state=MailState.QUEUED,
        attempts=0,
        sends=1,
        queued_at=now_utc(),
    )
    # The portal's own record of its mail: written whatever scope the change runs in (an
    # anonymous reset, an organisation's invitation); pages read it through their scope.
    with council_wide(session):
        session.add(row)
        session.flush()
        _enqueue_send(session, row, actor=actor or _SYSTEM)
    return row


def _enqueue_send(session: Session, row: MailMessage, *, actor: Actor) -> None:
    queued = enqueue(session, "mail.send", {"message_id": row.id, "sends": row.sends}, actor=actor)
    row.job_id = queued.id
    session.flush()


def mail_resend(session: Session, *, actor: Actor, message: MailMessage) -> MailMessage:
    """Queue ``message`` again ("Send again"): a failed one, or a sent one asked for again."""
    action = RESEND_ACTIONS.get(message.related_type, Action.JOB_MANAGE)
    policy.require(actor, action, organisation_id=message.organisation_id)
    if message.state == MailState.QUEUED:
        raise InvalidState(
            _l("The message to %(recipient)s is already queued.", recipient=message.recipient),
            code="mail_queued",
        )
    before = {"state": message.state.value, "last_error": message.last_error}
    message.state = MailState.QUEUED
    message.sends += 1
    message.retry_at = None
    message.queued_at = now_utc()
    with council_wide(session):
        session.flush()
        _enqueue_send(session, message, actor=actor)
    audit_record(
        session,
        actor=actor,
        action="mail.resend",
        target_type="mail_message",
        target_id=message.id,
        target_label=f"{message.kind} to {message.recipient}",
        organisation_id=message.organisation_id,
        before=before,
        after={"state": MailState.QUEUED.value, "sends": message.sends},
    )
    return message


def _next_try(session: Session, row: MailMessage) -> dt.datetime | None:
    """When the job will try again (None: this was its last try)."""
    job_row = session.get(Job, row.job_id) if row.job_id is not None else None
    if job_row is None or job_row.attempts >= job_row.max_attempts:
        return None
    return now_utc() + dt.timedelta(
        seconds=REGISTRY["mail.send"].delay_before(job_row.attempts + 1)
    )


def _gave_up(session: Session, *, error: str, message_id: int, sends: int = 1, **_: object) -> None:
    """The job's last try failed: the message stays ``failed``, with no next try."""
    session.execute(
        sa.update(MailMessage)
        .where(MailMessage.id == message_id, MailMessage.sends == sends)
        .where(MailMessage.state == MailState.FAILED)
        .values(retry_at=None)
    )


@job("mail.send", max_attempts=MAIL_ATTEMPTS, backoff=MAIL_BACKOFF, on_give_up=_gave_up)
def mail_send_job(session: Session, *, actor: Actor, message_id: int, sends: int = 1) -> None:
    """Send one recorded message; on failure record the reason, then raise (the job retries)."""
    policy.require(actor, Action.JOB_RUN)
    row = session.scalars(
        sa.select(MailMessage).where(MailMessage.id == message_id).with_for_update()
    ).one_or_none()
    if row is None or row.sends != sends or row.state == MailState.SENT:
        return  # gone, sent again since (a newer job sends it), or already sent
    message = unseal(row)
    now = now_utc()
    row.attempts += 1
    row.last_attempt_at = now
    try:
        deliver(message)
    except Exception as error:
        reason = describe_failure(error)
        row.state = MailState.FAILED
        row.last_error = reason
        row.retry_at = _next_try(session, row)
        session.commit()  # the reason stays recorded; the job is retried with backoff
        raise MailNotSent(reason) from error
    row.state = MailState.SENT
    row.sent_at = now
    row.last_error = None
    row.retry_at = None
