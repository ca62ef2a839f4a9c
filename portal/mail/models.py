"""The ``mail_messages`` table: every mail the portal sends, and what became of it.

A message is written in the same transaction as the change that asked for it (an
invitation, a reset, a finalised invoice), with the ``mail.send`` job that sends
it (:mod:`portal.mail.services`). The row, not the SMTP server's log, is what the
pages show: queued, sent, or failed with the reason (and when it is tried again).
The rendered message is kept sealed (``portal.crypto``: its links carry
single-use tokens), so "Send again" sends the same message.
"""

from __future__ import annotations

import datetime as dt
import enum

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from portal.db import Base, BigIntId, MixedTenantMixin, UTCDateTime, enum_column
from portal.kernel.clock import now_utc


class MailState(enum.StrEnum):
    QUEUED = "queued"  # waiting for its job (a first try, or sent again by a person)
    SENT = "sent"  # the SMTP server (or the development outbox) took it
    FAILED = "failed"  # the last try failed (``last_error``); tried again at ``retry_at``


class MailMessage(MixedTenantMixin, Base):
    """One outgoing message: to whom, about what, its state, attempts and last error.

    ``organisation_id`` is the organisation it concerns (NULL: council staff's mail).
    """

    __tablename__ = "mail_messages"
    __table_args__ = (
        sa.CheckConstraint("state IN ('queued', 'sent', 'failed')", name="state_known"),
        sa.CheckConstraint("attempts >= 0", name="attempts_not_negative"),
        sa.Index("ix_mail_messages_related", "related_type", "related_id"),
        sa.Index("ix_mail_messages_state_queued_at", "state", "queued_at"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    recipient: Mapped[str] = mapped_column(sa.String(254), nullable=False)
    subject: Mapped[str] = mapped_column(sa.String(300), nullable=False)
    # The template it was rendered from: invitation, password_reset, invoice_issued, ...
    kind: Mapped[str] = mapped_column(sa.String(60), nullable=False)
    # The object it is about (``invitation`` 12, ``invoice`` 40), if any.
    related_type: Mapped[str | None] = mapped_column(sa.String(40))
    related_id: Mapped[int | None] = mapped_column(sa.BigInteger)
    # The whole rendered message (RFC 5322 bytes, base64), sealed with the encryption key.
    sealed: Mapped[str] = mapped_column(sa.Text, nullable=False)
    state: Mapped[MailState] = mapped_column(
        enum_column(MailState, 16), nullable=False, default=MailState.QUEUED
    )
    attempts: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=0)
    # How many times it was asked to be sent: 1, then one more per "Send again". A job sends
    # only the latest request (an older job's retry that comes late sends nothing).
    sends: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=1)
    # Why the last try failed, as a person reads it ("The SMTP server did not answer ...").
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    # The job sending it now (the latest one when sent again).
    job_id: Mapped[int | None] = mapped_column(
        BigIntId, sa.ForeignKey("jobs.id", ondelete="SET NULL")
    )
    queued_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), nullable=False, default=now_utc)
    last_attempt_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    # A failed message its job tries again: when.
    retry_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    sent_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
