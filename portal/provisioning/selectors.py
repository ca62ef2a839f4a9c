"""Reading provisioning settings and the delivery log, always within one vendor's reach.

Deliveries are tenant-owned rows (the person's organisation) read council-wide: council
staff read every vendor's, a vendor admin or vendor token only its own vendor's
(``vendor_id`` is then required: :func:`deliveries_page` takes the vendor the caller may
read, never "all" for a vendor).
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.identity.models import User
from portal.kernel import policy
from portal.kernel.actor import Actor
from portal.kernel.errors import NotFound
from portal.kernel.i18n import _l
from portal.kernel.policy import Action
from portal.pagination import Page, paginate
from portal.provisioning.models import (
    Delivery,
    DeliveryAttempt,
    DeliveryState,
    Event,
    VendorProvisioning,
)

PAGE_SIZE = 50


def settings_for(session: Session, vendor_id: int) -> VendorProvisioning | None:
    return session.scalar(
        sa.select(VendorProvisioning).where(VendorProvisioning.vendor_id == vendor_id)
    )


@dataclass(frozen=True)
class DeliveryFilter:
    """The log's filters (each optional)."""

    vendor_id: int | None = None
    state: DeliveryState | None = None
    event: Event | None = None
    person: str | None = None  # part of the person's email address


def _deliveries_query(actor: Actor, filters: DeliveryFilter) -> sa.Select:
    """The deliveries ``actor`` may read matching ``filters`` (a vendor's reader: its own
    vendor's only; naming another vendor finds nothing)."""
    reach = policy.reach_of(actor, Action.DELIVERY_READ)
    if reach is None:
        policy.require(actor, Action.DELIVERY_READ)  # raises
    if reach != policy.Reach.ANY:
        if actor.vendor_id is None or filters.vendor_id not in (None, actor.vendor_id):
            raise NotFound(_l("No such thing here."))
        filters = DeliveryFilter(
            vendor_id=actor.vendor_id,
            state=filters.state,
            event=filters.event,
            person=filters.person,
        )
    query = sa.select(Delivery)
    if filters.vendor_id is not None:
        query = query.where(Delivery.vendor_id == filters.vendor_id)
    if filters.state is not None:
        query = query.where(Delivery.state == filters.state)
    if filters.event is not None:
        query = query.where(Delivery.event == filters.event)
    if filters.person:
        needle = filters.person.strip().lower().replace("\\", "\\\\")
        needle = needle.replace("%", "\\%").replace("_", "\\_")
        query = query.join(User, User.id == Delivery.user_id).where(
            sa.func.lower(User.email).like(f"%{needle}%", escape="\\")
        )
    return query


def deliveries_page(
    session: Session,
    *,
    actor: Actor,
    filters: DeliveryFilter,
    limit: int = PAGE_SIZE,
    before_id: int | None = None,
) -> tuple[list[Delivery], bool]:
    """Up to ``limit`` deliveries, newest first, older than ``before_id`` (the API's cursor);
    and whether there are more."""
    query = _deliveries_query(actor, filters)
    if before_id is not None:
        query = query.where(Delivery.id < before_id)
    rows = list(session.scalars(query.order_by(Delivery.id.desc()).limit(limit + 1)))
    return rows[:limit], len(rows) > limit


def deliveries_paged(
    session: Session, *, actor: Actor, filters: DeliveryFilter, page: int, per_page: int = PAGE_SIZE
) -> Page[Delivery]:
    """A numbered page of the deliveries (the log pages), newest first."""
    query = _deliveries_query(actor, filters).order_by(Delivery.id.desc())
    return paginate(session, query, page=page, per_page=per_page)


def delivery_for(session: Session, *, actor: Actor, delivery_id: int) -> Delivery:
    """One delivery the actor may read (another vendor's: NotFound)."""
    delivery = session.get(Delivery, delivery_id)
    if delivery is None:
        raise NotFound(_l("No such delivery."))
    policy.require(actor, Action.DELIVERY_READ, vendor_id=delivery.vendor_id)
    return delivery


def attempts_of(session: Session, delivery: Delivery) -> list[DeliveryAttempt]:
    """Every attempt at the delivery, latest first."""
    return list(
        session.scalars(
            sa.select(DeliveryAttempt)
            .where(
                DeliveryAttempt.delivery_id == delivery.id,
                DeliveryAttempt.organisation_id == delivery.organisation_id,
            )
            .order_by(DeliveryAttempt.id.desc())
        )
    )


def last_attempts(session: Session, deliveries: list[Delivery]) -> dict[int, DeliveryAttempt]:
    """Each delivery's latest attempt (one query)."""
    ids = [d.id for d in deliveries]
    if not ids:
        return {}
    latest = (
        sa.select(sa.func.max(DeliveryAttempt.id))
        .where(DeliveryAttempt.delivery_id.in_(ids))
        .group_by(DeliveryAttempt.delivery_id)
    )
    rows = session.scalars(sa.select(DeliveryAttempt).where(DeliveryAttempt.id.in_(latest)))
    return {row.delivery_id: row for row in rows}


def state_counts(session: Session, *, vendor_id: int) -> dict[str, int]:
    """How many of the vendor's deliveries are in each state."""
    rows = session.execute(
        sa.select(Delivery.state, sa.func.count())
        .where(Delivery.vendor_id == vendor_id)
        .group_by(Delivery.state)
    ).all()
    counts = {str(state): 0 for state in DeliveryState}
    counts.update({str(state): int(n) for state, n in rows})
    return counts


def all_settings(session: Session) -> list[VendorProvisioning]:
    """Every vendor's settings row (council pages)."""
    return list(session.scalars(sa.select(VendorProvisioning)))
