"""Idle-seat prompts: the scheduled job ``metering.idle_seat_prompts`` (once a week).

An organisation holding seats nobody used for the council's idle threshold
(``idle_seat_days``; :func:`portal.metering.selectors.idle_seats`) gets a mail to
each of its active admins listing them, with the link to keep or release each
(``/org/idle-seats``). The recorded messages (kind ``idle_seats``) are the job's
memory: an organisation is prompted at most once in :data:`PROMPT_EVERY`
however often the job runs.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.identity.models import User
from portal.jobs.queue import job
from portal.kernel import policy
from portal.kernel.actor import Actor, Role
from portal.kernel.clock import now_utc
from portal.kernel.i18n import _ln
from portal.kernel.policy import Action
from portal.mail import build_message, mail_queue
from portal.mail.models import MailMessage
from portal.metering.selectors import idle_seats
from portal.settings.services import settings_get
from portal.tenancy.models import Organisation, OrganisationStatus

KIND = "idle_seats"
#: How often the schedule looks (and the most often an organisation is prompted).
PROMPT_EVERY = dt.timedelta(days=7)


def idle_seat_prompts_send(session: Session, *, actor: Actor, now: dt.datetime) -> list[int]:
    """Prompt the admins of each organisation with idle seats; the organisations' ids."""
    policy.require(actor, Action.JOB_RUN)
    idle_days = settings_get(session).idle_seat_days
    # A day's slack: the weekly run a little earlier than last week's still prompts.
    recent = set(
        session.scalars(
            sa.select(MailMessage.organisation_id).where(
                MailMessage.kind == KIND,
                MailMessage.queued_at > now - PROMPT_EVERY + dt.timedelta(days=1),
            )
        )
    )
    organisations = session.scalars(
        sa.select(Organisation)
        .where(Organisation.status == OrganisationStatus.ACTIVE)
        .order_by(Organisation.id)
    ).all()
    prompted = []
    for organisation in organisations:
        if organisation.id in recent:
            continue
        flagged = idle_seats(session, organisation_id=organisation.id, idle_days=idle_days, now=now)
        if not flagged:
            continue
        admins = session.execute(
            sa.select(User.email, User.locale)
            .where(
                User.organisation_id == organisation.id,
                User.role == Role.ORG_ADMIN,
                User.is_active.is_(True),
            )
            .order_by(User.id)
        ).all()
        for address, locale in admins:
            mail_queue(
                session,
                build_message(
                    to=address,
                    subject=_ln(
                        "%(num)d idle seat at %(organisation)s",
                        "%(num)d idle seats at %(organisation)s",
                        len(flagged),
                        organisation=organisation.name,
                    ),
                    locale=locale,  # each admin reads it in their own language
                    template=KIND,
                    organisation=organisation,
                    seats=flagged,
                    count=len(flagged),
                    idle_days=idle_days,
                ),
                organisation_id=organisation.id,
                related=("organisation", organisation.id),
                actor=actor,
            )
        if admins:
            prompted.append(organisation.id)
    return prompted


@job("metering.idle_seat_prompts", max_attempts=3, backoff=(300, 1800), every=PROMPT_EVERY)
def idle_seat_prompts_job(session: Session, *, actor: Actor) -> None:
    """Prompt organisations' admins about seats nobody uses (each at most once a week)."""
    policy.require(actor, Action.JOB_RUN)
    idle_seat_prompts_send(session, actor=actor, now=now_utc())
