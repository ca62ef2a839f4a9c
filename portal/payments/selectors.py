"""Reading payment accounts and collections, always for one organisation (or for finance)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.billing.models import Invoice
from portal.kernel.clock import now_utc
from portal.kernel.scope import Scope
from portal.payments.models import RESEND_WINDOW, CollectionStatus, PaymentCollection


@dataclass(frozen=True)
class CollectionRow:
    """A collection beside the invoice it collects."""

    collection: PaymentCollection
    invoice: Invoice

    @property
    def retryable(self) -> bool:
        """Whether a person may ask for another attempt now."""
        return self.collection.retryable


def collections_of(
    session: Session, *, organisation_id: int, limit: int = 24
) -> list[CollectionRow]:
    """The organisation's card payments, newest invoice first."""
    rows = session.execute(
        sa.select(PaymentCollection, Invoice)
        .join(Invoice, Invoice.id == PaymentCollection.invoice_id)
        .where(
            PaymentCollection.organisation_id == organisation_id,
            Invoice.organisation_id == organisation_id,
        )
        .order_by(PaymentCollection.id.desc())
        .limit(limit)
    ).all()
    return [CollectionRow(collection, invoice) for collection, invoice in rows]


def collection_for_invoice(
    session: Session, *, scope: Scope, invoice_id: int
) -> PaymentCollection | None:
    """The card payment of one invoice, if it is in ``scope``."""
    query = sa.select(PaymentCollection).where(
        PaymentCollection.invoice_id == invoice_id, scope.filter(PaymentCollection.organisation_id)
    )
    return session.scalar(query)


def collections_needing_attention(
    session: Session, *, scope: Scope, now: dt.datetime | None = None
) -> list[CollectionRow]:
    """Payments in ``scope`` given up after every retry, or whose answer was lost for so
    long that a person must look."""
    now = now or now_utc()
    rows = session.execute(
        sa.select(PaymentCollection, Invoice)
        .join(Invoice, Invoice.id == PaymentCollection.invoice_id)
        .where(
            scope.filter(PaymentCollection.organisation_id),
            sa.or_(
                PaymentCollection.status == CollectionStatus.ABANDONED,
                sa.and_(
                    PaymentCollection.status == CollectionStatus.PROCESSING,
                    PaymentCollection.last_attempt_at < now - RESEND_WINDOW,
                ),
            ),
        )
        .order_by(PaymentCollection.id)
    ).all()
    return [CollectionRow(collection, invoice) for collection, invoice in rows]
