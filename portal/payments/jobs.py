"""Collecting card payments: the scheduled job ``payments.collect`` (every few minutes).

The worker's schedule (:mod:`portal.jobs.schedule`) enqueues it every
:data:`COLLECT_EVERY` while Stripe is configured; ``portal payments collect``
runs the same work by hand.

It sits above both halves it drives: the collections that are due
(:mod:`portal.payments.collection`) and the stored webhook events nobody
applied (:mod:`portal.payments.webhooks`, which itself applies outcomes through
the collection module).
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from sqlalchemy.orm import Session

from portal.jobs.queue import job
from portal.kernel import policy
from portal.kernel.actor import Actor
from portal.kernel.policy import Action
from portal.payments.accounts import current_gateway
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


#: How often the schedule collects: first tries, retries after 1, 3 and 5 days, lost answers.
COLLECT_EVERY = dt.timedelta(minutes=5)


def _stripe_configured(config: Any) -> bool:
    return bool(config.get("PORTAL_STRIPE_API_KEY"))


@job("payments.collect", max_attempts=1, every=COLLECT_EVERY, enabled=_stripe_configured)
def payments_collect_job(session: Session, *, actor: Actor) -> None:
    """Every due payment attempt and every stored webhook event not applied yet.

    One attempt (the next slot runs again): each attempt is claimed under a row
    lock and a lease, and a request sent again carries the same idempotency key,
    so a slot's job delivered twice, or two slots overlapping, charge nobody twice.
    """
    policy.require(actor, Action.PAYMENT_RETRY)  # every organisation's: council-wide only
    gateway = current_gateway()
    if gateway is None:
        log.info("Stripe is not configured; nothing to collect")
        return
    counts = collect_due(session, gateway=gateway)
    if counts:
        log.info("Payments collected: %s", ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
