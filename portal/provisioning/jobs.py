"""The provisioning jobs: delivering a vendor's due deliveries, and the minute's sweep.

* ``provisioning.deliver`` (``vendor_id``, ``lease``; declared in
  :mod:`portal.provisioning.delivery`): enqueued by the outbox with the change's commit,
  by the sweep, and by a redelivery; sends that vendor's due deliveries in order. A worker
  killed mid-way has its message delivered again: the same ``lease`` takes up what it
  held at once.
* ``provisioning.sweep`` (every minute): a delivery job for each vendor with deliveries
  due (retries whose time came, deliveries whose job never ran, leases that ran out), the
  council told of vendors failing for a day even when nothing is being tried, and
  delivered deliveries older than :data:`KEEP_DELIVERED` deleted.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.jobs.queue import job
from portal.kernel import policy
from portal.kernel.actor import Actor
from portal.kernel.clock import now_utc
from portal.kernel.policy import Action
from portal.provisioning import (
    delivery,
    outbox,  # noqa: F401  (the signal receivers connect)
)
from portal.provisioning.delivery import enqueue_delivery
from portal.provisioning.models import (
    Delivery,
    DeliveryAttempt,
    DeliveryState,
    VendorProvisioning,
)

#: Delivered deliveries (and their attempts) are deleted this long after they were written;
#: failed ones are kept until a person sends them again or the vendor goes.
KEEP_DELIVERED = dt.timedelta(days=90)
#: At most this many are deleted a sweep (the next sweep goes on).
PURGE_BATCH = 5000


@job("provisioning.sweep", max_attempts=1, every=dt.timedelta(minutes=1))
def sweep_job(session: Session, *, actor: Actor) -> None:
    policy.require(actor, Action.JOB_RUN)
    sweep(session)


def sweep(session: Session) -> list[int]:
    """Enqueue a delivery job per vendor with due deliveries; report failing vendors."""
    now = now_utc()
    vendors = delivery.vendors_with_due(session, now=now)
    for vendor_id in vendors:
        enqueue_delivery(session, vendor_id)
    failing = session.scalars(
        sa.select(VendorProvisioning).where(
            VendorProvisioning.failing_since.is_not(None),
            VendorProvisioning.failing_reported_at.is_(None),
            VendorProvisioning.failing_since <= now - delivery.FAILING_AFTER,
        )
    ).all()
    for settings in failing:
        delivery.report_if_failing(session, settings, now=now)
    purge_delivered(session, now=now)
    return vendors


def purge_delivered(session: Session, *, now: dt.datetime) -> int:
    """Delete up to :data:`PURGE_BATCH` deliveries delivered :data:`KEEP_DELIVERED` ago."""
    old = list(
        session.scalars(
            sa.select(Delivery.id)
            .where(
                Delivery.state == DeliveryState.DELIVERED,
                Delivery.created_at < now - KEEP_DELIVERED,
            )
            .order_by(Delivery.id)
            .limit(PURGE_BATCH)
        )
    )
    if not old:
        return 0
    session.execute(sa.delete(DeliveryAttempt).where(DeliveryAttempt.delivery_id.in_(old)))
    session.execute(sa.delete(Delivery).where(Delivery.id.in_(old)))
    return len(old)
