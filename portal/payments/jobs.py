"""The job cron runs every few minutes (``portal payments collect``).

It sits above both halves it drives: the collections that are due
(:mod:`portal.payments.collection`) and the stored webhook events nobody
applied (:mod:`portal.payments.webhooks`, which itself applies outcomes through
the collection module).
"""

from __future__ import annotations

import logging

from sqlalchemy.orm import Session

from portal.payments.collection import collection_attempt, collections_due
from portal.payments.gateway import StripeGateway
from portal.payments.webhooks import event_process_commit, events_unprocessed

log = logging.getLogger(__name__)


def collect_due(session: Session, *, gateway: StripeGateway) -> dict[str, int]:
    """Every due attempt, then every stored webhook event not applied yet; counts by result."""
    counts: dict[str, int] = {}
    ids = collections_due(session)
    session.rollback()
    for invoice_id in ids:
        result = collection_attempt(session, invoice_id=invoice_id, gateway=gateway)
        counts[result] = counts.get(result, 0) + 1
    for event_id in events_unprocessed(session):
        try:
            result = event_process_commit(session, event_id=event_id)
        except Exception:  # written on the event; the next run tries again
            log.exception("Applying Stripe event %s failed", event_id)
            result = "failed"
        counts[f"event {result}"] = counts.get(f"event {result}", 0) + 1
    return counts
