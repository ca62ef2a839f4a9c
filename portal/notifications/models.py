"""Notifications, people's choices of how to be told, and the org admins' daily digests.

A :class:`Notification` is one thing told to one person, stored as its ``kind`` and
``params`` (never as text): the page and the mail render it in the reader's language
from the kind's templates (:mod:`portal.notifications.kinds`). ``key`` names the event
(``incident:12:opened``): a person is told each event once however often it is signalled
or its job delivered (unique ``(user_id, key)``).

Mixed tenancy like ``users``: a member's notification carries their organisation; council
staff's and vendor admins' have none (seen in council scope only, on PostgreSQL).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from portal.db import Base, BigIntId, MixedTenantMixin, TenantMixin, UTCDateTime
from portal.kernel.clock import now_utc


class Notification(MixedTenantMixin, Base):
    """One event told to one person: kind + params (rendered when read), a link, read or not."""

    __tablename__ = "notifications"
    __table_args__ = (
        # Each event is told once per person (the job may be delivered again).
        sa.UniqueConstraint("user_id", "key", name="uq_notifications_user_key"),
        # The list (newest first) and the unread count of one person.
        sa.Index("ix_notifications_user_created", "user_id", "created_at"),
        sa.Index(
            "ix_notifications_user_unread",
            "user_id",
            sqlite_where=sa.text("read_at IS NULL"),
            postgresql_where=sa.text("read_at IS NULL"),
        ),
        # The digest reads an organisation's notifications of a day.
        sa.Index("ix_notifications_org_created", "organisation_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    user_id: Mapped[int] = mapped_column(
        sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    )
    kind: Mapped[str] = mapped_column(sa.String(60), nullable=False)
    key: Mapped[str] = mapped_column(sa.String(200), nullable=False)
    params: Mapped[dict[str, Any]] = mapped_column(sa.JSON, nullable=False, default=dict)
    # A path inside the portal (``/suppliers/acme``), or none.
    link: Mapped[str | None] = mapped_column(sa.String(500))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), nullable=False, default=now_utc)
    read_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


class NotificationPreference(MixedTenantMixin, Base):
    """A person's choices of what is also mailed; no row: the defaults (everything on).

    Every notification is in the portal; these say which are mailed as well, and whether an
    org admin gets the daily digest.
    """

    __tablename__ = "notification_preferences"

    user_id: Mapped[int] = mapped_column(
        sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    mail_incidents: Mapped[bool] = mapped_column(sa.Boolean, nullable=False, default=True)
    mail_standing: Mapped[bool] = mapped_column(sa.Boolean, nullable=False, default=True)
    mail_operations: Mapped[bool] = mapped_column(sa.Boolean, nullable=False, default=True)
    digest: Mapped[bool] = mapped_column(sa.Boolean, nullable=False, default=True)
    updated_at: Mapped[dt.datetime] = mapped_column(
        UTCDateTime(), nullable=False, default=now_utc, onupdate=now_utc
    )


class NotificationDigest(TenantMixin, Base):
    """An org admin's digest of one UTC day: sent once (unique ``(user_id, day)``)."""

    __tablename__ = "notification_digests"
    __table_args__ = (
        sa.UniqueConstraint("user_id", "day", name="uq_notification_digests_user_day"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    user_id: Mapped[int] = mapped_column(
        sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    )
    day: Mapped[dt.date] = mapped_column(sa.Date, nullable=False)
    events: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    sent_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), nullable=False, default=now_utc)
