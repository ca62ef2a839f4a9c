"""Subscriptions against pool capacity (invariant 1), shortages and the waitlist."""

import pytest
import sqlalchemy as sa

from portal.catalogue.models import Product
from portal.db import db
from portal.kernel.actor import Actor, ActorKind
from portal.kernel.errors import Conflict, InvalidState, NotFound, ValidationFailed
from portal.seats import services
from portal.seats.models import Subscription, SubscriptionChange
from portal.tenancy.models import Organisation
from tests.conftest import SYSTEM


def _subscribe(org, product, quantity, on_shortage="reject", actor=SYSTEM):
    outcome = services.subscription_create(
        db.session,
        actor=actor,
        organisation=db.session.get(Organisation, org.id),
        product=db.session.get(Product, product.id),
        quantity=quantity,
        on_shortage=on_shortage,
    )
    db.session.commit()
    return outcome


def _reserved(product) -> int:
    return db.session.scalar(
        sa.select(sa.func.coalesce(sa.func.sum(Subscription.quantity), 0)).where(
            Subscription.product_id == product.id, Subscription.status != "cancelled"
        )
    )


def test_subscribing_within_capacity_grants_everything(app, make_org, make_product):
    org, product = make_org(), make_product(10)
    with app.app_context():
        outcome = _subscribe(org, product, 4)
        assert outcome.result == "granted"
        sub = outcome.subscription
        assert (sub.quantity, sub.requested_quantity, sub.status) == (4, 4, "active")
        changes = db.session.scalars(sa.select(SubscriptionChange)).all()
        assert [(c.quantity, c.reason) for c in changes] == [(4, "create")]


def test_reject_refuses_with_pool_exhausted_and_changes_nothing(app, make_org, make_product):
    a, b, product = make_org(), make_org(), make_product(5)
    with app.app_context():
        _subscribe(a, product, 3)
        with pytest.raises(Conflict) as refused:
            _subscribe(b, product, 3)
        db.session.rollback()
        assert refused.value.code == "pool_exhausted"
        assert refused.value.extra == {"available": 2}
        assert _reserved(product) == 3
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Subscription)) == 1


def test_partial_takes_what_is_free(app, make_org, make_product):
    a, b, product = make_org(), make_org(), make_product(5)
    with app.app_context():
        _subscribe(a, product, 3)
        outcome = _subscribe(b, product, 4, on_shortage="partial")
        assert outcome.result == "partial"
        assert (outcome.subscription.quantity, outcome.subscription.requested_quantity) == (2, 2)
        assert _reserved(product) == 5


def test_partial_with_nothing_free_is_refused(app, make_org, make_product):
    a, b, product = make_org(), make_org(), make_product(2)
    with app.app_context():
        _subscribe(a, product, 2)
        with pytest.raises(Conflict, match="Only 0 seats"):
            _subscribe(b, product, 1, on_shortage="partial")


def test_waitlist_is_granted_first_come_first_served(app, make_org, make_product):
    a, b, c, product = make_org(), make_org(), make_org(), make_product(4)
    with app.app_context():
        first = _subscribe(a, product, 4).subscription
        waiting_b = _subscribe(b, product, 2, on_shortage="waitlist").subscription
        waiting_c = _subscribe(c, product, 3, on_shortage="waitlist").subscription
        assert (waiting_b.status, waiting_b.quantity, waiting_b.requested_quantity) == (
            "waitlisted",
            0,
            2,
        )
        assert waiting_c.status == "waitlisted"
        # a gives back 3 seats: b (first in line) gets 2, c gets the remaining 1
        services.subscription_resize(db.session, actor=SYSTEM, subscription=first, quantity=1)
        db.session.commit()
        db.session.refresh(waiting_b)
        db.session.refresh(waiting_c)
        assert (waiting_b.status, waiting_b.quantity, waiting_b.waiting) == ("active", 2, 0)
        assert (waiting_c.status, waiting_c.quantity, waiting_c.waiting) == ("active", 1, 2)
        assert _reserved(product) == 4


def test_growing_a_pool_grants_waiting_seats(app, make_org, make_product, mailbox, make_user):
    from portal.catalogue.models import LicencePool
    from portal.catalogue.services import pool_update

    a, b, product = make_org(), make_org(), make_product(2)
    admin_b = make_user("org_admin", b)
    with app.app_context():
        _subscribe(a, product, 2)
        waiting = _subscribe(b, product, 3, on_shortage="waitlist").subscription
        pool = db.session.scalar(sa.select(LicencePool).where(LicencePool.product_id == product.id))
        pool_update(db.session, actor=SYSTEM, pool=pool, data={"capacity": 4})
        db.session.commit()
        db.session.refresh(waiting)
        assert (waiting.quantity, waiting.waiting, waiting.status) == (2, 1, "active")
    assert any(m["To"] == admin_b.email and "granted" in m["Subject"] for m in mailbox)


def test_shrinking_below_assigned_seats_names_how_many_to_release(
    app, make_org, make_product, make_user
):
    org, product = make_org(), make_product(10)
    people = [make_user("member", org) for _ in range(3)]
    with app.app_context():
        sub = _subscribe(org, product, 5).subscription
        for person in people:
            services.seat_assign(
                db.session, actor=SYSTEM, subscription=sub, user_email=person.email
            )
        db.session.commit()
        with pytest.raises(Conflict) as refused:
            services.subscription_resize(db.session, actor=SYSTEM, subscription=sub, quantity=1)
        assert refused.value.code == "seats_assigned"
        assert "release 2" in refused.value.detail
        db.session.rollback()
        assert db.session.get(Subscription, sub.id).quantity == 5


def test_vendor_under_review_cannot_be_newly_subscribed(app, make_org, make_product):
    org = make_org()
    product = make_product(5, vendor="shady-soft", vendor_status="under_review")
    with app.app_context(), pytest.raises(InvalidState) as refused:
        _subscribe(org, product, 1)
    assert refused.value.code == "vendor_unavailable"


def test_suspended_organisation_cannot_subscribe(app, make_org, make_product):
    org, product = make_org(status="suspended"), make_product(5)
    with app.app_context(), pytest.raises(InvalidState):
        _subscribe(org, product, 1)


def test_one_live_subscription_per_product(app, make_org, make_product):
    org, product = make_org(), make_product(5)
    with app.app_context():
        _subscribe(org, product, 1)
        with pytest.raises(Conflict) as refused:
            _subscribe(org, product, 1)
        assert refused.value.code == "subscription_exists"


def test_cancel_releases_seats_and_feeds_the_waitlist(app, make_org, make_product, make_user):
    a, b, product = make_org(), make_org(), make_product(2)
    person = make_user("member", a)
    with app.app_context():
        sub = _subscribe(a, product, 2).subscription
        services.seat_assign(db.session, actor=SYSTEM, subscription=sub, user_email=person.email)
        waiting = _subscribe(b, product, 2, on_shortage="waitlist").subscription
        services.subscription_cancel(db.session, actor=SYSTEM, subscription=sub)
        db.session.commit()
        db.session.refresh(waiting)
        assert waiting.quantity == 2 and waiting.status == "active"
        from portal.seats.models import SeatAssignment

        seat = db.session.scalar(sa.select(SeatAssignment))
        assert seat.released_at is not None and seat.release_reason == "cancelled"


def test_org_admin_cannot_touch_another_organisations_subscription(
    app, make_org, make_product, make_user
):
    a, b, product = make_org(), make_org(), make_product(5)
    admin_b = make_user("org_admin", b)
    with app.app_context():
        sub = _subscribe(a, product, 2).subscription
        actor = Actor.person(admin_b)
        with pytest.raises(NotFound):
            services.subscription_resize(db.session, actor=actor, subscription=sub, quantity=3)
        with pytest.raises(NotFound):
            services.subscription_create(
                db.session,
                actor=actor,
                organisation=db.session.get(Organisation, a.id),
                product=db.session.get(Product, product.id),
                quantity=1,
            )


@pytest.mark.parametrize("quantity", [0, -1, 100_001, "3", 2.5, True])
def test_quantity_must_be_a_sensible_whole_number(app, make_org, make_product, quantity):
    org, product = make_org(), make_product(5)
    with app.app_context(), pytest.raises(ValidationFailed) as refused:
        _subscribe(org, product, quantity)
    assert "quantity" in refused.value.errors


def test_lowering_only_the_waiting_seats_keeps_the_granted_ones(app, make_org, make_product):
    a, b, product = make_org(), make_org(), make_product(5)
    with app.app_context():
        _subscribe(a, product, 2)
        waiting = _subscribe(b, product, 5, on_shortage="waitlist").subscription
        assert (waiting.quantity, waiting.requested_quantity) == (3, 5)
        queued_at = waiting.waitlisted_at
        outcome = services.subscription_resize(
            db.session, actor=SYSTEM, subscription=waiting, quantity=4
        )
        db.session.commit()
        assert outcome.result == "waitlisted"
        assert (waiting.quantity, waiting.requested_quantity) == (3, 4)
        assert waiting.waitlisted_at == queued_at  # keeps its place in the queue


def test_a_seat_given_directly_answers_a_pending_request(app, make_org, make_product, make_user):
    from portal.identity.models import User
    from portal.seats.models import SeatRequest

    org, product = make_org(), make_product(5)
    person = make_user("member", org)
    with app.app_context():
        sub = _subscribe(org, product, 2).subscription
        request = services.seat_request_create(
            db.session,
            actor=SYSTEM,
            user=db.session.get(User, person.id),
            product=db.session.get(Product, product.id),
        )
        services.seat_assign(db.session, actor=SYSTEM, subscription=sub, user_email=person.email)
        db.session.commit()
        assert db.session.get(SeatRequest, request.id).status == "approved"


def test_shrinking_a_pool_below_the_reserved_seats_is_refused(app, make_org, make_product):
    """Seats' receiver of pool_changing vetoes the catalogue's pool change (invariant 1)."""
    from portal.catalogue.models import LicencePool
    from portal.catalogue.services import pool_update

    org, product = make_org(), make_product(5)
    with app.app_context():
        _subscribe(org, product, 4)
        pool = db.session.scalar(sa.select(LicencePool).where(LicencePool.product_id == product.id))
        with pytest.raises(Conflict) as refused:
            pool_update(db.session, actor=SYSTEM, pool=pool, data={"capacity": 3})
        db.session.rollback()
        assert refused.value.code == "capacity_below_reserved"
        assert refused.value.errors == {"capacity": ["At least 4 seats needed."]}
        db.session.refresh(pool)
        assert pool.capacity == 5


def test_subscription_states_follow_the_transition_table(app, make_org, make_product):
    from portal.seats.lifecycle import TRANSITIONS, transition
    from portal.seats.models import SubscriptionStatus

    assert TRANSITIONS[SubscriptionStatus.CANCELLED] == frozenset()
    org, product = make_org(), make_product(1)
    with app.app_context():
        sub = _subscribe(org, product, 1).subscription
        assert sub.status is SubscriptionStatus.ACTIVE
        services.subscription_cancel(db.session, actor=SYSTEM, subscription=sub)
        db.session.commit()
        with pytest.raises(InvalidState) as refused:
            transition(sub, SubscriptionStatus.ACTIVE)
        assert refused.value.code == "invalid_transition"
        db.session.expire_all()
        assert db.session.get(Subscription, sub.id).status is SubscriptionStatus.CANCELLED


def test_the_app_connects_the_receivers_lower_domains_rely_on(app):
    """Seats asks billing, the catalogue asks seats: an unconnected receiver would let it pass."""
    from portal.signals import (
        pool_capacity_changed,
        pool_changing,
        subscription_opening,
        user_deactivated,
    )

    def names(signal):
        return {f"{r.__module__}.{r.__name__}" for r in signal.receivers_for(object())}

    assert "portal.billing.overdue._refuse_when_overdue" in names(subscription_opening)
    assert "portal.seats.capacity._check_pool_change" in names(pool_changing)
    assert "portal.seats.waitlist._pool_changed" in names(pool_capacity_changed)
    assert "portal.seats.assignments._release_seats_of_deactivated" in names(user_deactivated)


@pytest.mark.parametrize("role", ["member", "finance"])
def test_only_admins_manage_seats(role):
    from portal.kernel import policy
    from portal.kernel.actor import Role
    from portal.kernel.errors import PermissionDenied
    from portal.kernel.policy import Action

    def person(role: Role, organisation_id: int | None) -> Actor:
        return Actor(
            label="a", kind=ActorKind.PERSON, user_id=1, role=role, organisation_id=organisation_id
        )

    policy.require(person(Role.COUNCIL_ADMIN, None), Action.SEAT_ASSIGN, organisation_id=7)
    policy.require(person(Role.ORG_ADMIN, 7), Action.SEAT_ASSIGN, organisation_id=7)
    with pytest.raises(NotFound):
        policy.require(person(Role.ORG_ADMIN, 8), Action.SEAT_ASSIGN, organisation_id=7)
    with pytest.raises(PermissionDenied):
        policy.require(person(Role(role), 7), Action.SEAT_ASSIGN, organisation_id=7)
