"""The daily sweep deletes notifications read long ago and old digest records; an unread
notification stays however old it is."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from portal.db import db
from portal.notifications.models import Notification, NotificationDigest
from tests.conftest import SYSTEM
from tests.notifications.test_pages import tell

NOW = dt.datetime(2027, 6, 1, 12, tzinfo=dt.UTC)


def test_long_read_notifications_and_old_digests_go_unread_ones_stay(app, world, clock):
    from portal.notifications.retention import KEEP_READ, notifications_sweep

    clock.freeze(NOW - dt.timedelta(days=400))
    old_read, old_unread = tell(app, world.alice.id, "old-read"), tell(app, world.alice.id, "old")
    recent_read = tell(app, world.alice.id, "recent-read")
    with app.app_context():
        read_at = {
            old_read: NOW - KEEP_READ - dt.timedelta(days=1),
            recent_read: NOW - KEEP_READ + dt.timedelta(days=1),
        }
        for notification_id, when in read_at.items():
            db.session.get(Notification, notification_id).read_at = when
        for day in (NOW - dt.timedelta(days=401), NOW - dt.timedelta(days=10)):
            db.session.add(
                NotificationDigest(
                    organisation_id=world.acme.id,
                    user_id=world.acme_admin.id,
                    day=day.date(),
                    events=1,
                    sent_at=day,
                )
            )
        db.session.commit()
        assert notifications_sweep(db.session, actor=SYSTEM, now=NOW) == (1, 1)
        db.session.commit()
        left = set(db.session.scalars(sa.select(Notification.id)))
        days = db.session.scalars(sa.select(NotificationDigest.day)).all()
    assert left == {old_unread, recent_read}
    assert days == [(NOW - dt.timedelta(days=10)).date()]
