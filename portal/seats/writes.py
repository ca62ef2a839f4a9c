"""The statements a seat change runs, each doing in one round trip what took several.

:mod:`portal.seats.assignments` keeps the rules (invariant 2, who may, the audit);
these are how it reads and writes the rows for them, measured in docs/PERFORMANCE.md
("After issue 13"):

* :func:`lock_subscription` locks the subscription row and reads it afresh in one
  ``SELECT … FOR UPDATE`` (it was a lock, then a refresh with two joins);
* :func:`holds_active_seat` asks whether a person holds a seat of a product by its id
  alone (the full seat loaded five tables);
* :func:`insert_seat` inserts a seat with ``ON CONFLICT DO NOTHING`` on the partial
  unique index of active seats (one per person and product): a race for the same
  person comes back as None instead of an ``IntegrityError`` inside a savepoint
  (``SAVEPOINT``, ``INSERT``, ``RELEASE`` and, on PostgreSQL, the scope set again
  for the savepoint: four statements for one);
* :data:`RELEASE_LOAD` loads a seat being released with its holder from the join the
  query makes anyway, and its subscription from the session (already loaded).
"""

from __future__ import annotations

from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, contains_eager, lazyload
from sqlalchemy.orm.attributes import set_committed_value

from portal.identity.models import User
from portal.kernel.clock import now_utc
from portal.seats import counts
from portal.seats.models import SeatAssignment, Subscription


def lock_subscription(session: Session, subscription: Subscription) -> None:
    """Lock ``subscription``'s row until the transaction ends and read its columns afresh.

    PostgreSQL: ``SELECT … FOR UPDATE OF subscriptions``; SQLite transactions that write
    begin ``IMMEDIATE`` (:mod:`portal.db`), so they are one at a time already. The
    organisation and product stay the session's (loaded with the subscription; they do
    not change under a seat change).
    """
    # The row must be fetched for its values to reach the object (populate_existing).
    session.scalars(
        sa.select(Subscription)
        .where(Subscription.id == subscription.id)
        .with_for_update(of=Subscription)
        .options(lazyload(Subscription.organisation), lazyload(Subscription.product))
        .execution_options(populate_existing=True)
    ).all()


def holds_active_seat(
    session: Session, *, organisation_id: int, user_id: int, product_id: int
) -> bool:
    """Whether the person holds an active seat of the product (by the seat's id alone)."""
    return (
        session.scalar(
            sa.select(SeatAssignment.id)
            .where(
                SeatAssignment.organisation_id == organisation_id,
                SeatAssignment.user_id == user_id,
                SeatAssignment.product_id == product_id,
                SeatAssignment.released_at.is_(None),
            )
            .limit(1)
        )
        is not None
    )


def insert_seat(
    session: Session, *, subscription: Subscription, user: User
) -> SeatAssignment | None:
    """A new active seat of ``subscription`` for ``user``; None if they hold one of its product.

    The partial unique index ``uq_seat_assignments_active_user_product`` decides (a
    concurrent assignment of the same person to another subscription of the product
    included). The seat comes back as a persistent object of the session, its
    subscription and holder set from the objects given.
    """
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = (
        insert(SeatAssignment)
        .values(
            organisation_id=subscription.organisation_id,
            subscription_id=subscription.id,
            product_id=subscription.product_id,
            user_id=user.id,
            assigned_at=now_utc(),
        )
        .on_conflict_do_nothing(
            index_elements=[SeatAssignment.user_id, SeatAssignment.product_id],
            index_where=SeatAssignment.released_at.is_(None),
        )
        .returning(SeatAssignment)
    )
    seat = session.scalars(statement).first()
    if seat is not None:
        set_committed_value(seat, "subscription", subscription)
        set_committed_value(seat, "user", user)
    return seat


#: Loader options for a seat selected joined to its holder (``.join(User, …)``): the
#: holder from that join, the subscription (and the holder's organisation) from the session.
RELEASE_LOAD = (
    contains_eager(SeatAssignment.user).lazyload(User.organisation),
    lazyload(SeatAssignment.subscription),
)


# ---------------------------------------------------------------- the counter of active seats

_subscriptions = cast(sa.Table, Subscription.__table__)

#: Take one seat of a live subscription if one is free: the capacity check and the count
#: of active seats in one statement (it also locks the row until the transaction ends).
TAKE_SEAT = (
    sa.update(_subscriptions)
    .where(
        _subscriptions.c.id == sa.bindparam("subscription_id"),
        _subscriptions.c.status == "active",
        _subscriptions.c.assigned < _subscriptions.c.quantity,
    )
    .values(assigned=_subscriptions.c.assigned + 1)
)

#: Give ``n`` seats of a subscription back (released ones).
GIVE_BACK = (
    sa.update(_subscriptions)
    .where(_subscriptions.c.id == sa.bindparam("subscription_id"))
    .values(assigned=_subscriptions.c.assigned - sa.bindparam("n"))
)


def take_seat(session: Session, subscription: Subscription) -> bool:
    """Count one more active seat of ``subscription`` (and of its product,
    :mod:`portal.seats.counts`); False when it has none free.

    ``subscriptions.assigned`` never passes ``quantity``: concurrent assignments queue on
    the row this statement updates, and each sees the count the one before it left.
    The object's ``assigned`` is set to what the row now holds.
    """
    values = {"subscription_id": subscription.id}
    result = cast(sa.CursorResult[Any], session.execute(TAKE_SEAT, values))
    taken = result.rowcount == 1
    if taken:
        set_committed_value(subscription, "assigned", subscription.assigned + 1)
        counts.count_change(session, subscription.product_id, assigned=1)
    return taken


def give_back(session: Session, released: dict[int, int]) -> None:
    """Count ``n`` fewer active seats of each subscription id in ``released`` (seats
    released), and of its product (:mod:`portal.seats.counts`)."""
    for subscription_id, n in released.items():
        if n:
            session.execute(GIVE_BACK, {"subscription_id": subscription_id, "n": n})
            session.execute(counts.SEATS_GIVEN_BACK, {"subscription_id": subscription_id, "n": n})
            held = session.identity_map.get(Session.identity_key(Subscription, subscription_id))
            if isinstance(held, Subscription) and "assigned" in held.__dict__:
                set_committed_value(held, "assigned", held.assigned - n)
