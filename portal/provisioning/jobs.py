"""The provisioning jobs: delivering a vendor's due deliveries, and the minute's sweep.

* ``provisioning.deliver`` (``vendor_id``, ``lease``; declared in
  :mod:`portal.provisioning.delivery`): enqueued by the outbox with the change's commit,
  by the sweep, and by a redelivery; sends that vendor's due deliveries in order. A worker
  killed mid-way has its message delivered again: the same ``lease`` takes up what it
  held at once.
* ``provisioning.sweep`` (every minute): a delivery job for each vendor with deliveries
  due (retries whose time came, deliveries whose job never ran, leases that ran out), and
  the council told of vendors failing for a day even when nothing is being tried.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.jobs.queue import job
from portal.kernel.actor import Actor
from portal.kernel.clock import now_utc
from portal.provisioning import (
    delivery,
    outbox,  # noqa: F401  (the signal receivers connect)
)
from portal.provisioning.delivery import enqueue_delivery
from portal.provisioning.models import VendorProvisioning


@job("provisioning.sweep", max_attempts=1, every=dt.timedelta(minutes=1))
def sweep_job(session: Session, *, actor: Actor) -> None:
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
    return vendors
