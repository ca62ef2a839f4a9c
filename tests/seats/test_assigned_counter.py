"""``subscriptions.assigned`` equals the subscription's active seats after every path that
assigns or releases seats, and holds the cap under real concurrency (both databases).

The paths: one assignment, a bulk assignment with refusals in it, a release, an idle
seat's release, a person's deactivation (the web's, SCIM's deprovisioning), a shrink
(refused below the count), a cancellation; the API's lean path and Flask's are
tests/api/test_seat_fastpath.py's. Concurrency: parallel connections, each thread its
own transaction, assigning and releasing through the services and through the API.
"""

from __future__ import annotations

import threading
from collections import Counter

import pytest
import sqlalchemy as sa

from portal.db import bind_scope, db
from portal.identity.accounts import user_set_active
from portal.identity.models import User
from portal.kernel.errors import Conflict
from portal.kernel.scope import Scope
from portal.seats import services
from portal.seats.models import SeatAssignment, Subscription
from tests.conftest import SYSTEM
from tests.seats.test_concurrency import _people, _race, _subscription
from tests.support import seat_counts


def _exact(subscription_id: int, expected: int) -> None:
    db.session.expire_all()
    assert seat_counts(subscription_id) == (expected, expected)


def test_every_path_keeps_the_counter_exact(app, make_org, make_product):
    org, product = make_org("acme"), make_product(30)
    emails = _people(app, org, 8)
    sub_id = _subscription(app, org, product, 5)
    other_id = _subscription(app, org, make_product(30), 5)
    with app.app_context():
        bind_scope(db.session, Scope.council())

        def sub(subscription_id: int = sub_id) -> Subscription:
            found = db.session.get(Subscription, subscription_id)
            assert found is not None
            return found

        services.seat_assign(db.session, actor=SYSTEM, subscription=sub(), user_email=emails[0])
        db.session.commit()
        _exact(sub_id, 1)

        # Bulk: one new, one already holding, one invalid, three more new, then full.
        results = services.seat_assign_many(
            db.session,
            actor=SYSTEM,
            subscription=sub(),
            emails=[emails[1], emails[0], "not an address", *emails[2:6]],
        )
        db.session.commit()
        assert [r.ok for r in results] == [True, False, False, True, True, True, False]
        _exact(sub_id, 5)

        # A shrink below the count is refused; to the count is fine.
        with pytest.raises(Conflict):
            services.subscription_resize(db.session, actor=SYSTEM, subscription=sub(), quantity=4)
        db.session.rollback()
        _exact(sub_id, 5)

        services.seat_release(db.session, actor=SYSTEM, subscription=sub(), user_email=emails[1])
        db.session.commit()
        _exact(sub_id, 4)

        # An idle seat's release (the subscription shrinks by one as well).
        from portal.metering.services import idle_seat_release

        seat = db.session.scalars(
            sa.select(SeatAssignment).where(
                SeatAssignment.subscription_id == sub_id, SeatAssignment.released_at.is_(None)
            )
        ).first()
        assert seat is not None
        idle_seat_release(db.session, actor=SYSTEM, seat=seat)
        db.session.commit()
        _exact(sub_id, 3)
        assert sub().quantity == 4

        # A deactivated person's seats go back, in each of their subscriptions.
        holder = db.session.scalar(sa.select(User).where(User.email == emails[3]))
        services.seat_assign(
            db.session, actor=SYSTEM, subscription=sub(other_id), user_email=emails[3]
        )
        db.session.commit()
        _exact(other_id, 1)
        user_set_active(db.session, actor=SYSTEM, user=holder, active=False)
        db.session.commit()
        _exact(sub_id, 2)
        _exact(other_id, 0)

        # Cancelling releases every seat.
        services.subscription_cancel(db.session, actor=SYSTEM, subscription=sub())
        db.session.commit()
        _exact(sub_id, 0)


def test_the_migration_backfilled_counter_and_the_model_agree(app, make_org, make_product):
    """A fresh subscription counts nothing; the column is there with its default."""
    org, product = make_org(), make_product(5)
    sub_id = _subscription(app, org, product, 2)
    with app.app_context():
        _exact(sub_id, 0)


def test_parallel_assignments_and_releases_keep_the_counter_and_the_cap(
    app, make_org, make_product
):
    org, product = make_org(), make_product(60)
    emails = _people(app, org, 120)
    sub_id = _subscription(app, org, product, 40)

    def assign(email: str) -> None:
        subscription = db.session.get(Subscription, sub_id)
        services.seat_assign(db.session, actor=SYSTEM, subscription=subscription, user_email=email)

    ok, refused = _race(app, emails, assign)
    assert ok == 40 and refused == Counter({"no_free_seat": 80})
    with app.app_context():
        _exact(sub_id, 40)
        holders = db.session.scalars(
            sa.select(User.email)
            .join(SeatAssignment, SeatAssignment.user_id == User.id)
            .where(SeatAssignment.subscription_id == sub_id, SeatAssignment.released_at.is_(None))
        ).all()
    others = [e for e in emails if e not in set(holders)]

    # Releases of the 40 holders race assignments of 80 others: never more than 40 held.
    def either(job: tuple[str, str]) -> None:
        kind, email = job
        subscription = db.session.get(Subscription, sub_id)
        if kind == "release":
            services.seat_release(
                db.session, actor=SYSTEM, subscription=subscription, user_email=email
            )
        else:
            services.seat_assign(
                db.session, actor=SYSTEM, subscription=subscription, user_email=email
            )

    jobs = [("release", e) for e in holders] + [("assign", e) for e in others]
    jobs = [j for pair in zip(jobs[:40], jobs[40:80], strict=True) for j in pair] + jobs[80:]
    _race(app, jobs, either)
    with app.app_context():
        db.session.expire_all()
        assigned, active = seat_counts(sub_id)
        assert assigned == active <= 40


def test_parallel_api_requests_keep_the_counter_and_the_cap(app, make_org, make_product):
    """Through the whole application (the lean path and Flask), from parallel threads."""
    org, product = make_org(), make_product(60)
    emails = _people(app, org, 60)
    sub_id = _subscription(app, org, product, 20)
    from portal.api.services import token_create

    with app.app_context():
        _, token = token_create(db.session, actor=SYSTEM, scope="council", name="race")
        db.session.commit()
    headers = {"Authorization": f"Bearer {token}"}
    assert app.test_client().get(f"/api/v1/subscriptions/{sub_id}", headers=headers).status_code
    statuses: Counter = Counter()
    lock = threading.Lock()
    queue = list(emails)
    barrier = threading.Barrier(8)

    def worker() -> None:
        client = app.test_client()
        barrier.wait()
        while True:
            with lock:
                if not queue:
                    return
                email = queue.pop()
            response = client.post(
                f"/api/v1/subscriptions/{sub_id}/seats", json={"user_email": email}, headers=headers
            )
            released = None
            if response.status_code == 201 and len(email) % 2:  # some give theirs back at once
                released = client.delete(
                    f"/api/v1/subscriptions/{sub_id}/seats/{email}", headers=headers
                ).status_code
            with lock:
                statuses[response.status_code] += 1
                if released is not None:
                    statuses[f"release {released}"] += 1

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert set(statuses) <= {201, 409, "release 200"}, statuses
    assert statuses[201] + statuses[409] == 60
    with app.app_context():
        db.session.expire_all()
        assigned, active = seat_counts(sub_id)
        assert assigned == active == statuses[201] - statuses["release 200"] <= 20
