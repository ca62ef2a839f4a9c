"""The delivery engine: due deliveries go out in order, each attempt is recorded, failures
are tried again with backoff for three days, and a vendor failing for a day is reported.

Order. Deliveries of one sequence (a vendor, a channel and ``user:<id>`` or
``subscription:<id>``) go out in ``id`` order, one at a time: a delivery is due only when
no earlier delivery of its sequence is still pending (delivered or failed for good ones do
not hold it back). Ids are given as rows are written, and a change that depends on an
earlier one (a release on its assignment) can only be made once that one committed, so a
release never overtakes its assignment.

Never lost, at least once. A delivery is taken by a *lease* (``lease_until``,
``leased_by``) committed before the request goes out, and recorded after the answer. A
worker killed between the two leaves the delivery pending under its lease: the job's
message is delivered again (late acknowledgement) and takes it up at once (the lease
names the job), or, failing that, any job takes it once the lease ran out. The vendor then
gets the same delivery again with the same ``webhook-id`` (receivers dedupe on it; SCIM
requests are idempotent: find or create, set inactive).

Retries. A failure worth retrying (a timeout, a refused connection, 408, 429, a 5xx) is
due again after an exponential backoff with jitter (30 s, 1 min, 2 min, … capped at an
hour, each between half and all of it), or after the vendor's ``Retry-After`` if longer;
a delivery still failing three days after it was written, or refused outright (another
4xx), fails for good. Later deliveries of its sequence then go ahead.

Health. The first failure after a success starts the vendor's ``failing_since``; a success
clears it. When a vendor has been failing for :data:`FAILING_AFTER`, council admins are
told once (a notification, and their mail if they chose it) and the vendor is shown as
failing until a delivery gets through.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import secrets
import time
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.orm import Session, aliased

from portal.catalogue.models import Vendor
from portal.db import read_only
from portal.jobs.queue import enqueue, job
from portal.kernel import policy
from portal.kernel.actor import Actor
from portal.kernel.clock import now_utc
from portal.kernel.i18n import _
from portal.kernel.policy import Action
from portal.notifications.kinds import Group, Kind, register
from portal.notifications.services import notify_council_staff
from portal.provisioning import scim_client, webhooks
from portal.provisioning.models import (
    Channel,
    Delivery,
    DeliveryAttempt,
    DeliveryState,
    VendorProvisioning,
)
from portal.provisioning.transport import Outcome

log = logging.getLogger("portal.provisioning")

#: How long a worker holds a delivery it is sending (longer than any request takes).
LEASE = dt.timedelta(minutes=5)
#: A delivery still failing this long after it was written fails for good.
GIVE_UP_AFTER = dt.timedelta(days=3)
#: A vendor failing this long without a success is reported to the council.
FAILING_AFTER = dt.timedelta(hours=24)
BASE_DELAY = dt.timedelta(seconds=30)
MAX_DELAY = dt.timedelta(hours=1)
#: Deliveries one job sends at most (more: it enqueues another job and ends).
BATCH = 500
#: Jobs that send one vendor's deliveries at once after a large change (one per BATCH
#: deliveries the change wrote, at most this many), each for its own share of the people.
PARALLEL = 4

Transport = Callable[[Session, VendorProvisioning, Delivery], Outcome]

FAILING_KIND = "provisioning.vendor_failing"
register(
    Kind(
        name=FAILING_KIND,
        group=Group.OPERATIONS,
        title=lambda p: _("Deliveries to %(vendor)s are failing", vendor=p["vendor"]),
        body=lambda p: _(
            "Every delivery to %(vendor)s has failed for %(hours)s hours. "
            "The portal keeps trying; check the vendor's settings and delivery log.",
            vendor=p["vendor"],
            hours=p["hours"],
        ),
    )
)


def backoff(attempts: int, *, rng: random.Random | None = None) -> dt.timedelta:
    """The wait before the next try after ``attempts`` failed tries (jittered)."""
    ceiling = min(MAX_DELAY, BASE_DELAY * (2 ** max(0, min(attempts - 1, 20))))
    factor = 0.5 + (rng or random).random() / 2  # noqa: S311 (jitter, not a secret)
    return ceiling * factor


def _wait(attempts: int, outcome: Outcome) -> dt.timedelta:
    """The backoff, or longer when the vendor asked for it (``Retry-After``)."""
    wait = backoff(attempts)
    if outcome.retry_after:
        wait = max(wait, dt.timedelta(seconds=outcome.retry_after))
    return wait


def _scim(session: Session, settings: VendorProvisioning, delivery: Delivery) -> Outcome:
    return scim_client.deliver(session, settings, delivery)


def _webhook(session: Session, settings: VendorProvisioning, delivery: Delivery) -> Outcome:
    return webhooks.send(settings, delivery)


#: Each channel's transport.
TRANSPORTS: dict[Channel, Transport] = {Channel.SCIM: _scim, Channel.WEBHOOK: _webhook}


def due_heads(
    session: Session,
    *,
    now: dt.datetime,
    vendor_id: int | None = None,
    lease: str | None = None,
    limit: int = 100,
    shard: tuple[int, int] | None = None,
) -> list[int]:
    """Ids of deliveries to try now: the first pending one of each sequence, if it is due
    and not held by another worker's lease; with ``shard=(i, n)``, only the sequences of
    people whose id is ``i`` modulo ``n`` (sequences without a person are share 0).

    A pending delivery is its sequence's head when its id is the sequence's smallest
    pending id. That minimum is a correlated scalar subquery, which both databases run as
    one probe per candidate into the first entry of the sequence's range in
    ``ix_provisioning_deliveries_sequence`` (a partial index of pending rows): the cost is
    the vendor's pending deliveries times one index probe, whatever the planner believes.
    (The earlier ``NOT EXISTS (an earlier pending one)`` was pulled up into an anti-join;
    on a freshly written, never analysed outbox PostgreSQL planned it as a nested loop over
    every pair of pending rows: 35 s a call at 10,000 pending.) ``'pending'`` is written
    as a literal so that the partial index also serves prepared (generic) plans.
    """
    pending: sa.ColumnElement[str] = sa.literal_column("'pending'")
    earlier = aliased(Delivery)
    head = (
        sa.select(sa.func.min(earlier.id))
        .where(
            earlier.vendor_id == Delivery.vendor_id,
            earlier.channel == Delivery.channel,
            earlier.sequence_key == Delivery.sequence_key,
            earlier.state == pending,
        )
        .scalar_subquery()
    )
    free = sa.or_(Delivery.lease_until.is_(None), Delivery.lease_until <= now)
    if lease:
        free = sa.or_(free, Delivery.leased_by == lease)
    query = (
        sa.select(Delivery.id)
        .where(Delivery.state == pending, Delivery.next_attempt_at <= now, free)
        .where(Delivery.id == head)
        .order_by(Delivery.id)
        .limit(limit)
    )
    if vendor_id is not None:
        query = query.where(Delivery.vendor_id == vendor_id)
    if shard is not None:
        query = query.where(_share(shard[1]) == shard[0])
    return list(session.scalars(query))


def _share(shares: int) -> sa.ColumnElement[int]:
    """Which of ``shares`` a delivery's sequence is in (all of a person's are in one).

    A share only divides the work between jobs: the order holds whatever the shares,
    since a delivery goes out only as the head of its whole sequence and under a lease.
    """
    return sa.func.coalesce(Delivery.user_id, 0) % shares


def _take(session: Session, delivery_id: int, *, lease: str, now: dt.datetime) -> bool:
    """Hold the delivery for this worker (committed); False if another holds it, it is done,
    or it is not due (another job's attempt failed since this one listed it: the retry
    waits for its backoff)."""
    free = sa.or_(
        Delivery.lease_until.is_(None), Delivery.lease_until <= now, Delivery.leased_by == lease
    )
    result = session.execute(
        sa.update(Delivery)
        .where(
            Delivery.id == delivery_id,
            Delivery.state == DeliveryState.PENDING,
            Delivery.next_attempt_at <= now,
            free,
        )
        .values(lease_until=now + LEASE, leased_by=lease)
        .execution_options(synchronize_session=False)
    )
    session.commit()
    return bool(getattr(result, "rowcount", 0))


def attempt(session: Session, delivery_id: int, *, lease: str) -> str | None:
    """Try one delivery now; what became of it (``delivered``, ``retry``, ``failed``), or
    None when it was not this worker's to try."""
    now = now_utc()
    if not _take(session, delivery_id, lease=lease, now=now):
        return None
    # The request goes out inside a read (SQLite: no write lock; PostgreSQL: no open
    # transaction), so a slow vendor holds up no one; the outcome is written afterwards.
    read_only(session)
    delivery = session.get(Delivery, delivery_id, populate_existing=True)
    if delivery is None:
        session.rollback()
        return None
    settings = _settings(session, delivery.vendor_id)
    started = time.monotonic()
    if settings is None or delivery.channel not in settings.channels:
        outcome = Outcome.failed(
            retry=False, error="The vendor no longer has this channel configured."
        )
    else:
        try:
            outcome = TRANSPORTS[delivery.channel](session, settings, delivery)
        except Exception as error:  # a transport's bug must not stop the others' deliveries
            log.exception("Delivery %s: the transport failed", delivery_id)
            session.rollback()
            outcome = Outcome.failed(retry=True, error=f"{type(error).__name__}: {error}"[:500])
            reread = session.get(Delivery, delivery_id)
            if reread is None:
                return None
            delivery = reread
            settings = _settings(session, delivery.vendor_id)
    duration_ms = int((time.monotonic() - started) * 1000)
    session.commit()  # the read ends; the outcome is written in a transaction of its own
    return record(session, delivery, settings, outcome, duration_ms=duration_ms)


def _settings(session: Session, vendor_id: int) -> VendorProvisioning | None:
    return session.scalar(
        sa.select(VendorProvisioning).where(VendorProvisioning.vendor_id == vendor_id)
    )


def record(
    session: Session,
    delivery: Delivery,
    settings: VendorProvisioning | None,
    outcome: Outcome,
    *,
    duration_ms: int = 0,
) -> str:
    """Write the attempt and the delivery's new state; update the vendor's health; commit."""
    now = now_utc()
    delivery.attempts += 1
    delivery.last_attempt_at = now
    delivery.last_status = outcome.status
    delivery.lease_until = None
    delivery.leased_by = None
    if outcome.delivered:
        result = "delivered"
        delivery.state = DeliveryState.DELIVERED
        delivery.delivered_at = now
        delivery.last_error = None
    elif outcome.retry and (due := now + _wait(delivery.attempts, outcome)) < (
        (delivery.redelivered_at or delivery.created_at) + GIVE_UP_AFTER
    ):
        result = "retry"
        delivery.next_attempt_at = due
        delivery.last_error = outcome.error
    else:
        result = "failed"
        delivery.state = DeliveryState.FAILED
        delivery.last_error = outcome.error or (
            "still failing after three days" if outcome.retry else None
        )
    session.add(
        DeliveryAttempt(
            organisation_id=delivery.organisation_id,
            delivery_id=delivery.id,
            at=now,
            outcome=result,
            status=outcome.status,
            request=outcome.request or "",
            response=outcome.response or "",
            error=outcome.error,
            duration_ms=max(0, duration_ms),
        )
    )
    if settings is not None:
        _note_health(session, settings, delivered=outcome.delivered, now=now)
    session.commit()
    return result


def _note_health(
    session: Session, settings: VendorProvisioning, *, delivered: bool, now: dt.datetime
) -> None:
    if delivered:
        settings.last_success_at = now
        settings.failing_since = None
        settings.failing_reported_at = None
        return
    if settings.failing_since is None:
        settings.failing_since = now
    report_if_failing(session, settings, now=now)


def report_if_failing(session: Session, settings: VendorProvisioning, *, now: dt.datetime) -> bool:
    """Mark the vendor failing and tell the council, once a spell, after a day of failures."""
    if (
        settings.failing_since is None
        or settings.failing_reported_at is not None
        or now - settings.failing_since < FAILING_AFTER
    ):
        return False
    settings.failing_reported_at = now
    vendor = session.get(Vendor, settings.vendor_id)
    name = vendor.name if vendor is not None else str(settings.vendor_id)
    hours = int((now - settings.failing_since).total_seconds() // 3600)
    notify_council_staff(
        session,
        kind=FAILING_KIND,
        # One notification per failing spell (a spell starts at failing_since).
        key=f"provisioning.failing:{settings.vendor_id}:{settings.failing_since.isoformat()}",
        params={"vendor": name, "hours": hours},
        link=f"/provisioning/deliveries?vendor={vendor.slug}" if vendor is not None else None,
    )
    log.warning("Deliveries to vendor %s have failed for %s hours", settings.vendor_id, hours)
    return True


def deliver_due(
    session: Session,
    *,
    lease: str,
    vendor_id: int | None = None,
    batch: int = BATCH,
    shard: tuple[int, int] | None = None,
) -> tuple[int, bool]:
    """Send due deliveries (of one vendor, or all; of one share of the people, or all)
    until none is due or ``batch`` were tried; returns how many were tried and whether
    more are due."""
    tried = 0
    while tried < batch:
        heads = due_heads(
            session,
            now=now_utc(),
            vendor_id=vendor_id,
            lease=lease,
            limit=min(100, batch - tried),
            shard=shard,
        )
        session.commit()
        if not heads:
            return tried, False
        for delivery_id in heads:
            if attempt(session, delivery_id, lease=lease) is not None:
                tried += 1
    more = bool(
        due_heads(session, now=now_utc(), vendor_id=vendor_id, lease=lease, limit=1, shard=shard)
    )
    session.commit()
    return tried, more


def vendors_with_due(session: Session, *, now: dt.datetime) -> list[int]:
    """Vendors with a pending delivery due now and not held."""
    return sorted(
        session.scalars(
            sa.select(Delivery.vendor_id)
            .where(
                Delivery.state == DeliveryState.PENDING,
                Delivery.next_attempt_at <= now,
                sa.or_(Delivery.lease_until.is_(None), Delivery.lease_until <= now),
            )
            .distinct()
        ).all()
    )


# ------------------------------------------------------------------ the delivery job

DELIVER_JOB = "provisioning.deliver"
_ENQUEUER = Actor.system("provisioning.outbox")


def enqueue_delivery(session: Session, vendor_id: int, *, deliveries: int = 0) -> None:
    """Enqueue the job that delivers ``vendor_id``'s due deliveries (after the commit); for
    a change that wrote ``deliveries`` of at least two batches, several jobs (at most
    :data:`PARALLEL`), each sending its own share of the people's sequences, so that
    several workers deliver one vendor's large change at once.

    ``lease`` names a job's hold on the deliveries it sends: the same message delivered
    again (a worker killed mid-way) takes them up at once, another job waits for the hold
    to run out.
    """
    shares = max(1, min(PARALLEL, deliveries // BATCH))
    for share in range(shares):
        _enqueue(session, vendor_id, share=share, shares=shares)


def _enqueue(session: Session, vendor_id: int, *, share: int, shares: int) -> None:
    arguments: dict[str, object] = {"vendor_id": vendor_id, "lease": secrets.token_hex(8)}
    if shares > 1:
        arguments.update(share=share, shares=shares)
    enqueue(session, DELIVER_JOB, arguments, actor=_ENQUEUER)


@job(DELIVER_JOB, max_attempts=5, backoff=(10, 60, 300, 900))
def deliver_job(
    session: Session,
    *,
    actor: Actor,
    vendor_id: int,
    lease: str,
    share: int = 0,
    shares: int = 1,
) -> None:
    """Send the vendor's due deliveries (of one share of its people's sequences, when
    ``shares`` > 1); a long queue continues in a job of its own (for the same share)."""
    policy.require(actor, Action.JOB_RUN)  # the system's work only
    share, shares = int(share), int(shares)
    if not (1 <= shares <= PARALLEL and 0 <= share < shares):
        share, shares = 0, 1  # not a share this engine makes: the whole vendor
    shard = (share, shares) if shares > 1 else None
    _, more = deliver_due(session, lease=lease, vendor_id=int(vendor_id), shard=shard)
    if more:
        _enqueue(session, int(vendor_id), share=share, shares=shares)
