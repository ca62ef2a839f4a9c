"""Idle-seat prompts speak each admin's language (issue 14): subject and body, plural forms."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from portal.db import db
from portal.identity.models import User
from portal.kernel.clock import now_utc
from portal.mail.models import MailMessage
from portal.mail.services import unseal
from portal.metering.prompts import idle_seat_prompts_send
from portal.seats import services as seats
from portal.seats.models import SeatAssignment, Subscription
from tests.conftest import SYSTEM
from tests.metering.conftest import subscribe


def test_each_admin_is_prompted_in_their_own_language(app, metered, make_user):
    english = make_user("org_admin", metered["org"])
    russian = make_user("org_admin", metered["org"])
    idle = [make_user("member", metered["org"]) for _ in range(2)]
    sub_id = subscribe(app, metered["org"].slug, metered["product"].sku, quantity=3)
    with app.app_context():
        db.session.get(User, russian.id).locale = "ru"
        sub = db.session.get(Subscription, sub_id)
        for person in idle:
            seat = seats.seat_assign(
                db.session, actor=SYSTEM, subscription=sub, user_email=person.email
            )
            db.session.flush()
            db.session.get(SeatAssignment, seat.id).assigned_at = now_utc() - dt.timedelta(days=60)
        db.session.commit()
        assert idle_seat_prompts_send(db.session, actor=SYSTEM, now=now_utc()) == [
            metered["org"].id
        ]
        db.session.commit()
        mails = {
            m.recipient: (m.subject, unseal(m).get_content())
            for m in db.session.scalars(
                sa.select(MailMessage).where(MailMessage.kind == "idle_seats")
            )
        }
    subject, _body = mails[english.email]
    assert subject == f"2 idle seats at {metered['org'].name}"
    subject, body = mails[russian.email]
    assert subject.startswith("2 простаивающих места") and metered["org"].name in subject
    assert "Hello" not in body
