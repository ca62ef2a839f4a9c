"""Provisioning into vendors' applications (SPEC 8.4): each vendor's settings, the outbox of
deliveries and every attempt at one.

* :class:`VendorProvisioning` (council-wide, one row per vendor): where a vendor wants its
  changes (a SCIM 2.0 base URL and bearer token, a webhook URL and its signing secret),
  sealed secrets, and how deliveries to it are faring (``failing_since``).
* :class:`Delivery` (tenant-owned: the person's or subscription's organisation): one change
  for one vendor over one channel (``scim`` or ``webhook``), written in the same
  transaction as the change (an outbox). Deliveries of the same ``sequence_key``
  (``user:<id>`` or ``subscription:<id>``) to the same vendor and channel are attempted in
  ``id`` order, one at a time.
* :class:`DeliveryAttempt` (tenant-owned): what one try sent and got back, secrets removed.
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.catalogue.models import Vendor
from portal.crypto import decrypt_secret
from portal.db import (
    Base,
    BigIntId,
    TenantKey,
    TenantMixin,
    TimestampMixin,
    UTCDateTime,
    enum_column,
)
from portal.kernel.clock import now_utc


class OnRelease(enum.StrEnum):
    """What SCIM does to a person at the vendor when their seat goes (or they do)."""

    DEACTIVATE = "deactivate"  # PATCH active: false
    DELETE = "delete"  # DELETE /Users/{id}


class Channel(enum.StrEnum):
    SCIM = "scim"
    WEBHOOK = "webhook"


class Event(enum.StrEnum):
    """What a delivery tells the vendor (a webhook's ``type``)."""

    SEAT_ASSIGNED = "seat.assigned"
    SEAT_RELEASED = "seat.released"
    USER_DEACTIVATED = "user.deactivated"
    USER_UPDATED = "user.updated"  # a profile change: SCIM PATCH only (no webhook)
    SUBSCRIPTION_CHANGED = "subscription.changed"


class DeliveryState(enum.StrEnum):
    PENDING = "pending"  # not attempted yet, or to be tried again at ``next_attempt_at``
    DELIVERED = "delivered"
    FAILED = "failed"  # refused for good, or still failing after three days


class VendorProvisioning(TimestampMixin, Base):
    """One vendor's provisioning settings and delivery health (no row: nothing configured)."""

    __tablename__ = "vendor_provisioning"
    __table_args__ = (
        sa.CheckConstraint("on_release IN ('deactivate', 'delete')", name="on_release_known"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    vendor_id: Mapped[int] = mapped_column(
        sa.ForeignKey("vendors.id", ondelete="CASCADE"), unique=True, nullable=False
    )
    scim_base_url: Mapped[str | None] = mapped_column(sa.String(500))
    scim_token_sealed: Mapped[str | None] = mapped_column(sa.Text)
    webhook_url: Mapped[str | None] = mapped_column(sa.String(500))
    # ``whsec_…`` sealed with portal.crypto; the previous one signs too until the overlap ends.
    webhook_secret_sealed: Mapped[str | None] = mapped_column(sa.Text)
    webhook_secret_created_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    previous_secret_sealed: Mapped[str | None] = mapped_column(sa.Text)
    previous_secret_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    on_release: Mapped[OnRelease] = mapped_column(
        enum_column(OnRelease, 16), nullable=False, default=OnRelease.DEACTIVATE
    )
    group_push: Mapped[bool] = mapped_column(sa.Boolean, nullable=False, default=False)
    reconcile_fix: Mapped[bool] = mapped_column(sa.Boolean, nullable=False, default=False)
    # Deliveries have failed without a success since then (None: the last one went through).
    failing_since: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    # When the council was told that this vendor has been failing for a day (once a spell).
    failing_reported_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    last_success_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())

    vendor: Mapped[Vendor] = relationship(lazy="joined")

    @property
    def scim_configured(self) -> bool:
        return bool(self.scim_base_url and self.scim_token_sealed)

    @property
    def webhook_configured(self) -> bool:
        return bool(self.webhook_url and self.webhook_secret_sealed)

    @property
    def channels(self) -> list[Channel]:
        """The channels deliveries go out on (none: the vendor gets nothing)."""
        out = []
        if self.scim_configured:
            out.append(Channel.SCIM)
        if self.webhook_configured:
            out.append(Channel.WEBHOOK)
        return out

    @property
    def failing(self) -> bool:
        """Marked failing: a day of failures without a success (the council was told)."""
        return self.failing_reported_at is not None

    def scim_token(self) -> str | None:
        """The SCIM bearer token in the clear (for the transport only; never shown)."""
        return decrypt_secret(self.scim_token_sealed) if self.scim_token_sealed else None

    def signing_secrets(self, now: dt.datetime | None = None) -> list[str]:
        """The webhook secrets that sign now: the current one, and the previous one during
        its overlap window after a rotation."""
        now = now or now_utc()
        out = []
        if self.webhook_secret_sealed:
            out.append(decrypt_secret(self.webhook_secret_sealed))
        if (
            self.previous_secret_sealed
            and self.previous_secret_until is not None
            and now < self.previous_secret_until
        ):
            out.append(decrypt_secret(self.previous_secret_sealed))
        return out


class Delivery(TenantMixin, Base):
    """One change for one vendor over one channel: the outbox row and its fate."""

    __tablename__ = "provisioning_deliveries"
    __tenant_key__ = TenantKey(ondelete="CASCADE")
    __table_args__ = (
        sa.CheckConstraint("state IN ('pending', 'delivered', 'failed')", name="state_known"),
        sa.CheckConstraint("channel IN ('scim', 'webhook')", name="channel_known"),
        sa.CheckConstraint("attempts >= 0", name="attempts_not_negative"),
        # The engine's question, "the earliest pending delivery of each sequence", answered
        # from the first entry of the sequence's range (delivery.due_heads). Pending rows
        # only: a scan of it costs the pending deliveries, never the delivered history,
        # whatever the planner's statistics say.
        sa.Index(
            "ix_provisioning_deliveries_sequence",
            "vendor_id",
            "channel",
            "sequence_key",
            "id",
            sqlite_where=sa.text("state = 'pending'"),
            postgresql_where=sa.text("state = 'pending'"),
        ),
        # Due work: pending deliveries by the time they are next due.
        sa.Index("ix_provisioning_deliveries_due", "state", "next_attempt_at"),
        # The log: a vendor's deliveries, newest first.
        sa.Index("ix_provisioning_deliveries_vendor_id_id", "vendor_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    vendor_id: Mapped[int] = mapped_column(
        sa.ForeignKey("vendors.id", ondelete="CASCADE"), nullable=False
    )
    channel: Mapped[Channel] = mapped_column(enum_column(Channel, 8), nullable=False)
    event: Mapped[Event] = mapped_column(enum_column(Event, 40), nullable=False)
    # Deliveries of one sequence go out in order: ``user:<id>`` (a person) or
    # ``subscription:<id>``.
    sequence_key: Mapped[str] = mapped_column(sa.String(40), nullable=False)
    user_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    product_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("products.id", ondelete="SET NULL")
    )
    # The Standard Webhooks ``webhook-id``: the same on every attempt (receivers dedupe on it).
    message_id: Mapped[str] = mapped_column(sa.String(40), unique=True, nullable=False)
    # What the change was, as the vendor is told (a snapshot taken with the change).
    payload: Mapped[dict[str, Any]] = mapped_column(sa.JSON, nullable=False)
    state: Mapped[DeliveryState] = mapped_column(
        enum_column(DeliveryState, 16), nullable=False, default=DeliveryState.PENDING
    )
    attempts: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), nullable=False, default=now_utc)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(
        UTCDateTime(), nullable=False, default=now_utc
    )
    # A worker holds the delivery while it sends it (a killed worker's hold runs out).
    lease_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    leased_by: Mapped[str | None] = mapped_column(sa.String(64))
    last_attempt_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    last_status: Mapped[int | None] = mapped_column(sa.Integer)
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    delivered_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    # Sent again by a person: the three days of retries count from then.
    redelivered_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())

    vendor: Mapped[Vendor] = relationship(lazy="joined")

    @property
    def person_email(self) -> str | None:
        person = self.payload.get("data", {}).get("person") or {}
        return person.get("email")


class DeliveryAttempt(TenantMixin, Base):
    """One try at a delivery: when, what was sent and answered (secrets removed), how long."""

    __tablename__ = "provisioning_delivery_attempts"
    __tenant_key__ = TenantKey(ondelete="CASCADE")

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    delivery_id: Mapped[int] = mapped_column(
        sa.ForeignKey("provisioning_deliveries.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    )
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), nullable=False, default=now_utc)
    # delivered, retry (tried again later) or failed (given up)
    outcome: Mapped[str] = mapped_column(sa.String(16), nullable=False)
    status: Mapped[int | None] = mapped_column(sa.Integer)
    request: Mapped[str] = mapped_column(sa.Text, nullable=False, default="")
    response: Mapped[str] = mapped_column(sa.Text, nullable=False, default="")
    error: Mapped[str | None] = mapped_column(sa.Text)
    duration_ms: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=0)
