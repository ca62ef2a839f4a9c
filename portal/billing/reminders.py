"""Overdue reminders: the scheduled job ``billing.overdue_reminders`` (once a day).

Every open invoice past its due date and the council's grace days
(:func:`portal.billing.overdue.past_due_invoices`) gets a reminder to its
organisation's billing contact, then one a week while it stays unpaid
(:data:`REMIND_EVERY`). The recorded messages (``mail_messages``, kind
``invoice_overdue``) are the job's memory: the job run twice in a day, or by
two workers, reminds nobody twice. Each reminder shows on the invoice's mail
record like any other message, and can be sent again.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.orm import Session

from portal import i18n
from portal.billing.documents import invoice_language
from portal.billing.overdue import past_due_invoices
from portal.jobs.queue import job
from portal.kernel import policy
from portal.kernel.actor import Actor
from portal.kernel.clock import now_utc
from portal.kernel.i18n import _
from portal.kernel.policy import Action
from portal.kernel.scope import Scope
from portal.mail import build_message, mail_queue
from portal.mail.models import MailMessage
from portal.settings.services import settings_get

KIND = "invoice_overdue"
#: How often the schedule looks for overdue invoices.
CHECK_EVERY = dt.timedelta(days=1)
#: A reminder at most this often per invoice.
REMIND_EVERY = dt.timedelta(days=7)


def overdue_reminders_send(session: Session, *, actor: Actor, now: dt.datetime) -> list[int]:
    """Queue a reminder for each overdue invoice not reminded in the last week; their ids."""
    policy.require(actor, Action.JOB_RUN)
    overdue = [
        p for p in past_due_invoices(session, scope=Scope.council(), today=now.date()) if p.overdue
    ]
    if not overdue:
        return []
    recent = set(
        session.scalars(
            sa.select(MailMessage.related_id).where(
                MailMessage.kind == KIND,
                MailMessage.related_type == "invoice",
                MailMessage.related_id.in_([p.invoice.id for p in overdue]),
                MailMessage.queued_at > now - REMIND_EVERY,
            )
        )
    )
    holds_back = settings_get(session).suspend_subscriptions_when_overdue
    reminded = []
    for late in overdue:
        invoice = late.invoice
        if invoice.id in recent:
            continue
        organisation = invoice.organisation
        with i18n.in_language(invoice_language(organisation)):
            message = build_message(
                to=organisation.billing_email,
                subject=_("Reminder: invoice %(number)s is overdue", number=invoice.number),
                template=KIND,
                invoice=invoice,
                organisation=organisation,
                days_late=late.days_late,
                holds_back=holds_back,
                council_name=current_app.config["PORTAL_COUNCIL_NAME"],
            )
        mail_queue(
            session,
            message,
            organisation_id=invoice.organisation_id,
            related=("invoice", invoice.id),
            actor=actor,
        )
        reminded.append(invoice.id)
    return reminded


@job("billing.overdue_reminders", max_attempts=3, backoff=(300, 1800), every=CHECK_EVERY)
def overdue_reminders_job(session: Session, *, actor: Actor) -> None:
    """Remind the billing contacts of overdue invoices (each at most once a week)."""
    policy.require(actor, Action.JOB_RUN)
    overdue_reminders_send(session, actor=actor, now=now_utc())
