"""Each product's seats reserved, waiting and assigned, kept as they change.

The catalogue (the council's, the members', ``GET /api/v1/catalogue``, the vendor's
products) shows each product's seats reserved, waiting and assigned, summed over every
organisation. Summing the subscriptions on each read cost a scan of all of them (50,015 at
the scale of docs/PERFORMANCE.md: 8–16 ms a page, growing with the council). Instead,
each change adds a row of differences to ``product_seat_counts``
(:class:`~portal.seats.models.ProductSeatCount`) in the transaction that makes it:

* a subscription opened, resized, cancelled or granted seats from the waitlist:
  :func:`count_reservation` (its seats reserved and waiting, before and after);
* a seat assigned or released: :data:`SEAT_TAKEN` and :data:`SEATS_GIVEN_BACK`, run by
  :mod:`portal.seats.writes` and by the API's seat fast path.

A product's figures are the sums of its rows (:func:`seat_counts`). Rows are only added,
never updated, so no seat change waits on another organisation's (a counter row per product
would make every assignment of a product queue on it); ``seats.fold_counts`` replaces each
product's rows by one row of their sums every minute (:func:`fold`), so a read sums the
few rows written since. Subscriptions stay the record: :func:`recount` compares the sums
with them, and ``tests/seats/test_counts.py`` proves they agree after every kind of change,
on both databases and under concurrent writers on PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import cast

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.audit.services import audit_record
from portal.db import council_wide
from portal.jobs.queue import job
from portal.kernel import policy
from portal.kernel.actor import Actor
from portal.kernel.policy import Action
from portal.seats.models import ProductSeatCount, Subscription, SubscriptionStatus

_counts = cast(sa.Table, ProductSeatCount.__table__)
_subscriptions = cast(sa.Table, Subscription.__table__)

#: How often ``seats.fold_counts`` folds the rows.
FOLD_EVERY = dt.timedelta(minutes=1)

#: A change of a product's figures.
COUNT = sa.insert(_counts).values(
    product_id=sa.bindparam("product_id"),
    reserved=sa.bindparam("reserved"),
    waiting=sa.bindparam("waiting"),
    assigned=sa.bindparam("assigned"),
)

#: One seat of the subscription ``:subscription_id`` assigned.
SEAT_TAKEN = sa.insert(_counts).from_select(
    ["product_id", "reserved", "waiting", "assigned"],
    sa.select(
        _subscriptions.c.product_id, sa.literal(0), sa.literal(0), sa.literal(1, sa.BigInteger)
    ).where(_subscriptions.c.id == sa.bindparam("subscription_id")),
)

#: ``:n`` seats of the subscription ``:subscription_id`` released.
SEATS_GIVEN_BACK = sa.insert(_counts).from_select(
    ["product_id", "reserved", "waiting", "assigned"],
    sa.select(
        _subscriptions.c.product_id,
        sa.literal(0),
        sa.literal(0),
        -sa.bindparam("n", type_=sa.BigInteger),
    ).where(_subscriptions.c.id == sa.bindparam("subscription_id")),
)


def reservation(subscription: Subscription) -> tuple[int, int]:
    """The seats ``subscription`` reserves and has waiting (none once cancelled)."""
    if subscription.status == SubscriptionStatus.CANCELLED:
        return 0, 0
    return subscription.quantity, subscription.requested_quantity - subscription.quantity


def count_change(
    session: Session, product_id: int, *, reserved: int = 0, waiting: int = 0, assigned: int = 0
) -> None:
    """Add a change of ``product_id``'s figures (nothing when every difference is zero)."""
    if reserved or waiting or assigned:
        session.execute(
            COUNT,
            {
                "product_id": product_id,
                "reserved": reserved,
                "waiting": waiting,
                "assigned": assigned,
            },
        )


def count_reservation(
    session: Session, subscription: Subscription, before: tuple[int, int], *, assigned: int = 0
) -> None:
    """Count the change of ``subscription``'s reservation since ``before`` (what
    :func:`reservation` gave before the change; ``(0, 0)`` for a new one), and
    ``assigned`` seats more (or fewer: a cancellation releases them all)."""
    reserved, waiting = reservation(subscription)
    count_change(
        session,
        subscription.product_id,
        reserved=reserved - before[0],
        waiting=waiting - before[1],
        assigned=assigned,
    )


def seat_counts(session: Session, product_ids: list[int]) -> dict[int, tuple[int, int, int]]:
    """Per product id: (seats reserved, waiting, assigned), council-wide; a product with no
    rows has none."""
    if not product_ids:
        return {}
    return _kept(session, _counts.c.product_id.in_(product_ids))


def _kept(session: Session, *where: sa.ColumnElement[bool]) -> dict[int, tuple[int, int, int]]:
    """The sums of the kept rows per product id, of the products ``where`` selects."""
    rows = session.execute(
        sa.select(
            _counts.c.product_id,
            sa.func.sum(_counts.c.reserved),
            sa.func.sum(_counts.c.waiting),
            sa.func.sum(_counts.c.assigned),
        )
        .where(*where)
        .group_by(_counts.c.product_id)
    ).all()
    return {int(pid): (int(r or 0), int(w or 0), int(a or 0)) for pid, r, w, a in rows}


def fold(session: Session) -> int:
    """Replace each product's rows (where it has more than one) by one row of their sums;
    the number of rows folded away.

    One ``DELETE … RETURNING`` takes the rows and the sums are written back in the same
    transaction, so a reader sees the rows before or after, never between. A row another
    transaction adds meanwhile is not among those the ``DELETE`` sees (PostgreSQL) or
    waits for this transaction (SQLite's one writer): it stays, and is folded next time.
    Two folds at once: the second's ``DELETE`` skips the rows the first deleted.
    """
    several = (
        sa.select(_counts.c.product_id)
        .group_by(_counts.c.product_id)
        .having(sa.func.count() > 1)
        .scalar_subquery()
    )
    taken = session.execute(
        sa.delete(_counts)
        .where(_counts.c.product_id.in_(several))
        .returning(_counts.c.product_id, _counts.c.reserved, _counts.c.waiting, _counts.c.assigned)
    ).all()
    sums: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0])
    for product_id, reserved, waiting, assigned in taken:
        total = sums[int(product_id)]
        total[0] += int(reserved)
        total[1] += int(waiting)
        total[2] += int(assigned)
    if sums:
        session.execute(
            COUNT,
            [
                {"product_id": pid, "reserved": r, "waiting": w, "assigned": a}
                for pid, (r, w, a) in sorted(sums.items())
            ],
        )
    return len(taken) - len(sums)


@job("seats.fold_counts", max_attempts=1, every=FOLD_EVERY)
def fold_job(session: Session, *, actor: Actor) -> None:
    """Every minute: each product's rows of seat changes folded into one."""
    policy.require(actor, Action.JOB_RUN)
    fold(session)


def recount(session: Session) -> dict[int, dict[str, tuple[int, int]]]:
    """Products whose kept figures differ from their subscriptions': per product id, each
    differing figure as (kept, counted). Empty when they agree (they always should)."""
    with council_wide(session):
        counted = {
            int(pid): (int(r or 0), int(w or 0), int(a or 0))
            for pid, r, w, a in session.execute(
                sa.select(
                    Subscription.product_id,
                    sa.func.sum(Subscription.quantity),
                    sa.func.sum(Subscription.requested_quantity - Subscription.quantity),
                    sa.func.sum(Subscription.assigned),
                )
                .where(Subscription.status != SubscriptionStatus.CANCELLED)
                .group_by(Subscription.product_id)
            ).all()
        }
    kept = _kept(session)
    out: dict[int, dict[str, tuple[int, int]]] = {}
    for pid in sorted(set(counted) | set(kept)):
        have, want = kept.get(pid, (0, 0, 0)), counted.get(pid, (0, 0, 0))
        differing = {
            name: (h, w)
            for name, h, w in zip(("reserved", "waiting", "assigned"), have, want, strict=True)
            if h != w
        }
        if differing:
            out[pid] = differing
    return out


def counts_recount(
    session: Session, *, actor: Actor, fix: bool = False
) -> dict[int, dict[str, tuple[int, int]]]:
    """:func:`recount`, for ``portal seats recount``; with ``fix``, a row of corrections
    per differing product (audited), so the kept figures become the subscriptions' sums.

    Both sums must be read at one moment: the caller starts the transaction at
    ``REPEATABLE READ`` on PostgreSQL (a change that commits between the two reads would
    otherwise look like a difference, and be "corrected" into one). Each change writes its
    subscription and its count row in one transaction, so at one snapshot they agree, and a
    correction is exactly the difference. SQLite reads one snapshot per transaction, and
    its one writer refuses the correction if another wrote meanwhile.
    """
    policy.require(actor, Action.POOL_UPDATE if fix else Action.POOL_READ)
    differing = recount(session)
    if fix:
        for product_id, figures in differing.items():
            count_change(
                session,
                product_id,
                **{name: counted - kept for name, (kept, counted) in figures.items()},
            )
            audit_record(
                session,
                actor=actor,
                action="seat_counts.recount",
                target_type="product",
                target_id=product_id,
                before={name: kept for name, (kept, _) in figures.items()},
                after={name: counted for name, (_, counted) in figures.items()},
            )
    return differing
