"""Webhook deliveries end to end: the outbox, the engine and a real receiver that verifies
every signature with the ``standardwebhooks`` library."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from portal.db import db
from portal.kernel.actor import Actor
from portal.provisioning import delivery as engine
from portal.provisioning.jobs import sweep
from portal.provisioning.models import Delivery, DeliveryAttempt, VendorProvisioning
from tests.conftest import SYSTEM


def _subscription(world):
    from portal.seats.models import Subscription

    return db.session.get(Subscription, world.subscription_id)


def _admin(world):
    from portal.identity.models import User

    return Actor.person(db.session.get(User, world.admin_id))


def _assign(world, email):
    from portal.seats.services import seat_assign

    seat = seat_assign(
        db.session, actor=_admin(world), subscription=_subscription(world), user_email=email
    )
    db.session.commit()
    return seat


def _release(world, email):
    from portal.seats.services import seat_release

    seat_release(
        db.session, actor=_admin(world), subscription=_subscription(world), user_email=email
    )
    db.session.commit()


def _run_due(app):
    """What the workers do each minute: the sweep, then (inline) every delivery job it
    enqueued. The test's own transaction ends first (SQLite: one writer at a time)."""
    db.session.commit()
    sweep(db.session)
    db.session.commit()


def _deliveries():
    return db.session.scalars(sa.select(Delivery).order_by(Delivery.id)).all()


def test_assign_and_release_are_delivered_signed_and_in_order(app, world, receiver, jobs_inline):
    with app.app_context():
        _assign(world, "ann@buyer.example")
        _release(world, "ann@buyer.example")
        assert receiver.refused == []
        assert receiver.types == ["subscription.changed", "seat.assigned", "seat.released"]
        assigned = receiver.received[1].body
        assert assigned["data"]["person"]["email"] == "ann@buyer.example"
        assert assigned["data"]["product"]["sku"] == "hooked-app"
        assert assigned["data"]["organisation"]["slug"] == "buyer"
        rows = _deliveries()
        assert [r.state for r in rows] == ["delivered"] * 3
        assert [r.message_id for r in rows] == receiver.ids
        attempt = db.session.scalars(sa.select(DeliveryAttempt)).first()
        assert attempt.status == 200 and attempt.outcome == "delivered"
        assert world.secret not in attempt.request and "webhook-signature: v1,…" in attempt.request


def test_a_rolled_back_change_sends_nothing(app, world, receiver, jobs_inline):
    from portal.seats.services import seat_assign

    with app.app_context():
        before = len(_deliveries())
        seat_assign(
            db.session,
            actor=_admin(world),
            subscription=_subscription(world),
            user_email="bob@buyer.example",
        )
        assert len(_deliveries()) == before + 1  # written in the change's transaction
        db.session.rollback()
        assert len(_deliveries()) == before
        _run_due(app)
        assert "seat.assigned" not in receiver.types


def test_receiver_down_is_retried_with_backoff_and_delivered_in_order(
    app, world, receiver, jobs_inline, clock
):
    clock.freeze(clock.now)
    receiver.answer = 503
    with app.app_context():
        _assign(world, "cy@buyer.example")
        _release(world, "cy@buyer.example")
        _assign(world, "cy@buyer.example")
        assert receiver.received == []
        rows = _deliveries()
        # The first of the sequence was tried and waits; the later ones never overtook it.
        first = [r for r in rows if r.event == "seat.assigned"][0]
        assert first.state == "pending" and first.attempts == 1
        assert all(r.attempts == 0 for r in rows if r.id > first.id)
        # Down for six hours: tried again and again, with growing waits.
        for _ in range(12):
            clock.advance(dt.timedelta(minutes=30))
            _run_due(app)
        db.session.expire_all()
        first = db.session.get(Delivery, first.id)
        assert first.state == "pending" and 5 <= first.attempts <= 12
        waits = [
            a.at
            for a in db.session.scalars(
                sa.select(DeliveryAttempt)
                .where(DeliveryAttempt.delivery_id == first.id)
                .order_by(DeliveryAttempt.id)
            )
        ]
        assert all(b > a for a, b in zip(waits, waits[1:], strict=False))
        receiver.answer = 200
        clock.advance(dt.timedelta(hours=1, minutes=1))
        _run_due(app)
        assert receiver.types == [
            "subscription.changed",
            "seat.assigned",
            "seat.released",
            "seat.assigned",
        ]
        db.session.expire_all()
        assert {r.state for r in _deliveries()} == {"delivered"}


def test_a_refusal_fails_at_once_and_the_next_goes_ahead(app, world, receiver, jobs_inline):
    receiver.secrets[:] = ["whsec_" + "A" * 43]  # the receiver refuses every signature (400)
    with app.app_context():
        _assign(world, "dee@buyer.example")
        rows = _deliveries()
        assert [r.state for r in rows] == ["failed", "failed"]
        assert rows[0].last_status == 400
        receiver.secrets[:] = [world.secret]
        _release(world, "dee@buyer.example")
        assert receiver.types == ["seat.released"]


def test_a_worker_killed_after_sending_delivers_again_with_the_same_id(
    app, world, receiver, jobs_inline, monkeypatch
):
    """The worker dies between the vendor's answer and recording it. Simulated (the one
    stand-in of these tests): the real request goes out and is answered, then recording
    the attempt raises, as a killed process stops there; nothing of the attempt is saved.
    The job's message comes again (here: the job framework's retry of the same job, as
    Celery's late acknowledgement redelivers a killed worker's message) and the delivery,
    still pending under the same lease, goes out again with the same webhook-id."""
    real_record = engine.record
    killed: list[str] = []

    def die_before_recording(session, delivery, settings, outcome, **kwargs):
        if delivery.event == "seat.assigned" and not killed:
            killed.append(delivery.message_id)
            raise RuntimeError("worker killed after the request went out")
        return real_record(session, delivery, settings, outcome, **kwargs)

    monkeypatch.setattr(engine, "record", die_before_recording)
    with app.app_context():
        _assign(world, "eve@buyer.example")
        assert killed
        assigned = [r for r in receiver.received if r.type == "seat.assigned"]
        assert len(assigned) == 2 and {r.webhook_id for r in assigned} == {killed[0]}
        assert [r.type for r in receiver.unique()] == ["subscription.changed", "seat.assigned"]
        db.session.expire_all()
        row = db.session.scalar(sa.select(Delivery).where(Delivery.message_id == killed[0]))
        assert row.state == "delivered" and row.attempts == 1


def test_secret_rotation_signs_with_both_during_the_overlap(
    app, world, receiver, jobs_inline, clock
):
    from portal.catalogue.models import Vendor
    from portal.provisioning import services

    clock.freeze(clock.now)
    with app.app_context():
        vendor = db.session.get(Vendor, world.vendor_id)
        _, new = services.webhook_secret_rotate(db.session, actor=SYSTEM, vendor=vendor)
        db.session.commit()
        receiver.secrets[:] = [world.secret, new]
        _assign(world, "fay@buyer.example")
        last = receiver.received[-1]
        assert last.type == "seat.assigned" and last.verified_with == [world.secret, new]
        assert len(last.headers["webhook-signature"].split(" ")) == 2
        clock.advance(dt.timedelta(hours=25))
        _release(world, "fay@buyer.example")
        last = receiver.received[-1]
        assert last.type == "seat.released" and last.verified_with == [new]
        assert len(last.headers["webhook-signature"].split(" ")) == 1


def test_a_vendor_failing_for_a_day_is_reported_to_the_council_once(
    app, world, receiver, jobs_inline, clock, make_user
):
    from portal.notifications.models import Notification

    staff = make_user("council_admin")
    clock.freeze(clock.now)
    receiver.answer = 500
    with app.app_context():
        _assign(world, "gus@buyer.example")
        for _ in range(30):
            clock.advance(dt.timedelta(hours=1))
            _run_due(app)
        settings = db.session.scalar(sa.select(VendorProvisioning))
        assert settings.failing and settings.failing_since is not None
        told = db.session.scalars(
            sa.select(Notification).where(Notification.user_id == staff.id)
        ).all()
        assert len(told) == 1 and told[0].kind == "provisioning.vendor_failing"
        receiver.answer = 200
        clock.advance(dt.timedelta(hours=1, minutes=5))
        _run_due(app)
        db.session.expire_all()
        settings = db.session.scalar(sa.select(VendorProvisioning))
        assert not settings.failing and settings.failing_since is None


def test_deactivating_a_person_tells_the_vendor(app, world, receiver, jobs_inline):
    from portal.identity.accounts import user_set_active
    from portal.identity.models import User

    with app.app_context():
        seat = _assign(world, "hal@buyer.example")
        user = db.session.get(User, seat.user_id)
        user_set_active(db.session, actor=_admin(world), user=user, active=False)
        db.session.commit()
        assert receiver.types[-3:] == ["seat.assigned", "user.deactivated", "seat.released"][
            : len(receiver.types[-3:])
        ] or set(receiver.types[-2:]) == {"user.deactivated", "seat.released"}
        assert receiver.received[-1].body["data"]["person"]["email"] == "hal@buyer.example"


@pytest.mark.parametrize("give_up_after_days", [3])
def test_a_delivery_failing_for_three_days_fails_for_good(
    app, world, receiver, jobs_inline, clock, give_up_after_days
):
    clock.freeze(clock.now)
    receiver.answer = 502
    with app.app_context():
        _assign(world, "ida@buyer.example")
        for _ in range(give_up_after_days * 24 + 2):
            clock.advance(dt.timedelta(hours=1))
            _run_due(app)
        db.session.expire_all()
        assert {r.state for r in _deliveries()} == {"failed"}


def test_delivered_deliveries_are_deleted_after_90_days_failed_ones_kept(
    app, world, receiver, jobs_inline, clock
):
    clock.freeze(clock.now)
    with app.app_context():
        _assign(world, "old@buyer.example")
        receiver.answer = 400
        _release(world, "old@buyer.example")
        states = sorted(str(r.state) for r in _deliveries())
        assert states == ["delivered", "delivered", "failed"]
        clock.advance(dt.timedelta(days=91))
        _run_due(app)
        db.session.expire_all()
        assert [str(r.state) for r in _deliveries()] == ["failed"]
        assert db.session.scalar(sa.select(sa.func.count()).select_from(DeliveryAttempt)) == 1


def test_a_retry_after_is_waited_for(app, world, receiver, jobs_inline, clock):
    """A 503 with ``Retry-After: 3600`` is not tried again before the hour is out (the
    backoff alone would try after 30 s at most)."""
    clock.freeze(clock.now)
    receiver.answer = 503
    receiver.retry_after = "3600"
    with app.app_context():
        _assign(world, "ray@buyer.example")
        first = [r for r in _deliveries() if r.event == "seat.assigned"][0]
        assert first.attempts == 1
        assert first.next_attempt_at >= clock.now + dt.timedelta(seconds=3600)
        clock.advance(dt.timedelta(minutes=30))
        _run_due(app)
        db.session.expire_all()
        assert db.session.get(Delivery, first.id).attempts == 1
