"""Idle seats a page at a time (issue 13: an organisation of thousands of seats may have
hundreds idle); the database filters and counts them, and the dashboard's figure is a count."""

from __future__ import annotations

import datetime as dt

from portal.db import db
from portal.kernel.clock import now_utc
from portal.metering import selectors
from portal.seats import services as seats
from portal.seats.models import Subscription
from tests.conftest import SYSTEM
from tests.metering.conftest import event, ingest, subscribe


def _holders(app, metered, make_user, n: int) -> tuple[list[str], str]:
    """``n`` idle holders of a seat held for 40 days and one busy one; (idle emails, busy)."""
    people = [make_user("member", metered["org"]) for _ in range(n + 1)]
    sub_id = subscribe(app, "acme", "cad-suite", quantity=n + 1)
    with app.app_context():
        subscription = db.session.get(Subscription, sub_id)
        for k, person in enumerate(people):
            seat = seats.seat_assign(
                db.session, actor=SYSTEM, subscription=subscription, user_email=person.email
            )
            seat.assigned_at = now_utc() - dt.timedelta(days=40, minutes=k)
        db.session.commit()
    busy = people[0].email
    ingest(app, [event(user_email=busy)])
    return [p.email for p in people[1:]], busy


def test_idle_seats_come_a_page_at_a_time_and_are_counted(app, metered, make_user):
    idle, busy = _holders(app, metered, make_user, 5)
    org_id = metered["org"].id
    with app.app_context():
        now = now_utc()
        every = selectors.idle_seats(db.session, organisation_id=org_id, idle_days=30, now=now)
        count = selectors.idle_seat_count(db.session, organisation_id=org_id, idle_days=30, now=now)
        pages = [
            selectors.idle_seats_page(
                db.session, organisation_id=org_id, idle_days=30, now=now, page=n, per_page=2
            )
            for n in (1, 2, 3, 4)
        ]
        listed = [[i.seat.user.email for i in page.items] for page in pages]
    assert sorted(i.seat.user.email for i in every) == sorted(idle) and busy not in idle
    assert count == 5 and all(page.total == 5 and page.pages == 3 for page in pages)
    assert [len(emails) for emails in listed] == [2, 2, 1, 0]
    assert sum(listed, []) == [i.seat.user.email for i in every]  # the same order, once each
    assert all(i.last_used_at is None for i in every)


def test_the_idle_seats_page_links_to_the_next_page(app, metered, make_user, monkeypatch):
    from tests.conftest import login

    _holders(app, metered, make_user, 3)
    original = selectors.idle_seats_page
    monkeypatch.setattr(
        selectors, "idle_seats_page", lambda *a, **k: original(*a, **{**k, "per_page": 2})
    )
    admin = make_user("org_admin", metered["org"])
    client = app.test_client()
    login(client, admin)
    first = client.get("/org/idle-seats").get_data(as_text=True)
    assert first.count("<small>") == 2 and 'rel="next"' in first
    second = client.get("/org/idle-seats?page=2").get_data(as_text=True)
    assert second.count("<small>") == 1 and 'rel="prev"' in second
    for bad in ("0", "-1", "x", "99999999999999999999"):
        assert client.get(f"/org/idle-seats?page={bad}").status_code == 200
    dashboard = client.get("/org").get_data(as_text=True)
    assert client.get("/org").status_code == 200 and dashboard
