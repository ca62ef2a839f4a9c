"""Card payments through Stripe: the organisation's account, invoice collections, events.

The portal rates and invoices; Stripe holds each organisation's customer and
payment method and collects each finalised invoice (docs/PAYMENTS.md). These
tables keep the portal's side of that:

* :class:`PaymentAccount`: the organisation's Stripe customer and its default
  payment method (what the org admin sees; the card itself stays at Stripe).
* :class:`PaymentCollection`: one per finalised invoice of a Stripe-billed
  organisation: the attempts made, the next retry, the outcome.
* :class:`StripeEvent`: every verified webhook delivery, stored under Stripe's
  unique event id *before* it is applied, so an event is applied once however
  often it is delivered (SPEC invariant 6).
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from portal.db import (
    Base,
    BigIntId,
    MixedTenantMixin,
    TenantKey,
    TenantMixin,
    TimestampMixin,
    UTCDateTime,
    enum_column,
)
from portal.kernel.clock import now_utc


class PaymentAccount(TenantMixin, TimestampMixin, Base):
    """An organisation's Stripe customer and the payment method invoices are charged to."""

    __tablename__ = "payment_accounts"
    __tenant_key__ = TenantKey(unique=True)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    customer_id: Mapped[str] = mapped_column(sa.String(100), nullable=False, unique=True)
    default_payment_method_id: Mapped[str | None] = mapped_column(sa.String(100))
    # What the org admin is shown; the card number never reaches the portal.
    method_type: Mapped[str | None] = mapped_column(sa.String(32))
    method_brand: Mapped[str | None] = mapped_column(sa.String(32))
    method_last4: Mapped[str | None] = mapped_column(sa.String(4))
    method_exp_month: Mapped[int | None] = mapped_column(sa.Integer)
    method_exp_year: Mapped[int | None] = mapped_column(sa.Integer)
    method_updated_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())

    @property
    def method_label(self) -> str | None:
        """``Visa ending 4242 (12/2030)``, or None without a payment method."""
        if not self.default_payment_method_id:
            return None
        label = f"{(self.method_brand or self.method_type or 'Card').title()}"
        if self.method_last4:
            label += f" ending {self.method_last4}"
        if self.method_exp_month and self.method_exp_year:
            label += f" ({self.method_exp_month:02d}/{self.method_exp_year})"
        return label


class CollectionStatus(enum.StrEnum):
    """Where the collection of one invoice stands.

    ``scheduled``: attempt number ``attempts + 1`` is due at ``next_attempt_at``.
    ``processing``: attempt ``attempts`` was sent to Stripe and its outcome is not
    known yet (a timeout leaves it here; the same attempt is re-sent with the
    same idempotency key). ``succeeded``, ``abandoned`` (retries used up) and
    ``cancelled`` (the invoice no longer needs collecting) are final, though a
    person may ask for one more attempt of an abandoned collection.
    """

    SCHEDULED = "scheduled"
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    ABANDONED = "abandoned"
    CANCELLED = "cancelled"


#: Stripe keeps an idempotency key for at least 24 hours; an attempt whose answer
#: was lost is re-sent within this window only, and after it left to a person.
RESEND_WINDOW = dt.timedelta(hours=23)


class PaymentCollection(TenantMixin, TimestampMixin, Base):
    """Collecting one finalised invoice with Stripe PaymentIntents, retried on a schedule."""

    __tablename__ = "payment_collections"
    __table_args__ = (
        sa.CheckConstraint(
            "status IN ('scheduled', 'processing', 'succeeded', 'abandoned', 'cancelled')",
            name="status_known",
        ),
        sa.CheckConstraint("attempts >= 0", name="attempts_not_negative"),
        sa.CheckConstraint("amount >= 0", name="amount_not_negative"),
        sa.Index("ix_payment_collections_due", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    invoice_id: Mapped[int] = mapped_column(
        sa.ForeignKey("invoices.id", ondelete="RESTRICT"), nullable=False, unique=True
    )
    status: Mapped[CollectionStatus] = mapped_column(
        enum_column(CollectionStatus, 16), nullable=False, default=CollectionStatus.SCHEDULED
    )
    attempts: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=0)
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    # The current attempt: what was asked of Stripe, so a re-sent request is identical.
    amount: Mapped[int] = mapped_column(sa.BigInteger, nullable=False, default=0)
    currency: Mapped[str] = mapped_column(sa.String(3), nullable=False)
    payment_method_id: Mapped[str | None] = mapped_column(sa.String(100))
    last_attempt_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    # Only one worker sends an attempt: it holds the collection until this time.
    locked_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    payment_intent_id: Mapped[str | None] = mapped_column(sa.String(100), index=True)
    last_error: Mapped[str | None] = mapped_column(sa.String(500))
    failure_code: Mapped[str | None] = mapped_column(sa.String(64))
    succeeded_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())

    @property
    def retryable(self) -> bool:
        """Whether a person may ask for another attempt now (given up, or failed and waiting)."""
        return self.status == CollectionStatus.ABANDONED or (
            self.status == CollectionStatus.SCHEDULED and self.attempts > 0
        )


class StripeEvent(MixedTenantMixin, Base):
    """A verified webhook delivery, stored under Stripe's event id before it is applied."""

    __tablename__ = "stripe_events"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    event_id: Mapped[str] = mapped_column(sa.String(100), nullable=False, unique=True)
    type: Mapped[str] = mapped_column(sa.String(100), nullable=False)
    # None when the event is about no customer the portal knows.
    object_id: Mapped[str | None] = mapped_column(sa.String(100), index=True)
    stripe_created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), nullable=False)
    livemode: Mapped[bool] = mapped_column(sa.Boolean, nullable=False, default=False)
    payload: Mapped[dict[str, Any]] = mapped_column(sa.JSON, nullable=False)
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), nullable=False, default=now_utc)
    deliveries: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=1)
    processed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    # applied | ignored, and why (e.g. "stale: attempt 1 was followed by attempt 2").
    outcome: Mapped[str | None] = mapped_column(sa.String(16))
    note: Mapped[str | None] = mapped_column(sa.String(500))
    error: Mapped[str | None] = mapped_column(sa.Text)
