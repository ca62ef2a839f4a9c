"""Invariant 1: seats reserved by live subscriptions of a product never exceed the
capacity of its pools in force.

Every change of a product's reservations first locks the product row
(:func:`portal.catalogue.services.lock_product`) and then counts
:func:`free_seats`. A pool change the catalogue makes is checked here too: the
catalogue sends :data:`~portal.signals.pool_changing` and :func:`_check_pool_change`
refuses a change that leaves fewer seats in force than are reserved.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from portal.catalogue.models import LicencePool
from portal.catalogue.selectors import capacity_in_force
from portal.kernel.clock import now_utc
from portal.kernel.errors import Conflict
from portal.kernel.i18n import _ln
from portal.seats.selectors import reserved_seats
from portal.signals import pool_changing


def free_seats(session: Session, product_id: int) -> int:
    """Seats of a product in the pools in force today that no live subscription holds."""
    today = now_utc().date()
    return max(
        0, capacity_in_force(session, product_id, today) - reserved_seats(session, product_id)
    )


@pool_changing.connect
def _check_pool_change(pool: LicencePool, **kwargs: Any) -> None:
    """Refuse a pool change that leaves fewer seats in force today than are reserved."""
    session: Session = kwargs["session"]
    capacity = capacity_in_force(session, pool.product_id, now_utc().date())
    reserved = reserved_seats(session, pool.product_id)
    if reserved > capacity:
        raise Conflict(
            _ln(
                "Members reserve %(num)d seat of %(product)s; the pools in force would hold "
                "only %(capacity)d. Reduce subscriptions first.",
                "Members reserve %(num)d seats of %(product)s; the pools in force would hold "
                "only %(capacity)d. Reduce subscriptions first.",
                reserved,
                product=pool.product.name,
                capacity=capacity,
            ),
            code="capacity_below_reserved",
            errors={
                "capacity": [
                    _ln(
                        "At least %(num)d seat needed.",
                        "At least %(num)d seats needed.",
                        reserved - capacity + pool.capacity,
                    )
                ]
            },
        )
