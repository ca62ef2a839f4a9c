"""Suppliers' incidents and standing → the seat holders of their products, once each.

The incidents are opened and updated through the suppliers' own services and the standing
changed through the catalogue's, so the real signals fire; the jobs run inline (the
``mailbox`` fixture) or are delivered by hand as a worker would (``deliver_job``).
"""

from __future__ import annotations

import collections
import datetime as dt

import pytest
import sqlalchemy as sa

from portal.db import db
from portal.jobs.models import Job, JobState
from portal.mail.models import MailMessage
from portal.notifications.models import Notification
from tests.conftest import SYSTEM
from tests.notifications.conftest import VENDOR
from tests.support import deliver_job


def _vendor(session):
    from portal.catalogue.models import Vendor

    return session.scalar(sa.select(Vendor).where(Vendor.slug == VENDOR))


def open_incident(app, *, impact: str = "major", title: str = "Mail delivery delayed") -> int:
    from portal.suppliers.services import open_incident as open_it

    with app.app_context():
        incident = open_it(
            db.session, SYSTEM, _vendor(db.session), title=title, impact=impact, body="Looking."
        )
        db.session.commit()
        return incident.id


def update_incident(app, incident_id: int, *, impact: str | None = None, state: str | None = None):
    from portal.suppliers.models import Incident
    from portal.suppliers.services import add_incident_update

    with app.app_context():
        incident = db.session.get(Incident, incident_id)
        add_incident_update(db.session, SYSTEM, incident, body="News.", impact=impact, state=state)
        db.session.commit()


def signal_again(app, incident_id: int, change: str) -> None:
    """The same change signalled a second time (a sender retrying, a second code path)."""
    from portal import signals
    from portal.suppliers.models import Incident

    with app.app_context():
        incident = db.session.get(Incident, incident_id)
        signals.vendor_incident_changed.send(
            incident, session=db.session, actor=SYSTEM, change=change
        )
        db.session.commit()


def told(app) -> dict[int, list[tuple[str, str]]]:
    """Each person's notifications as (kind, key), oldest first."""
    with app.app_context():
        rows = db.session.execute(
            sa.select(Notification.user_id, Notification.kind, Notification.key).order_by(
                Notification.id
            )
        ).all()
    found: dict[int, list[tuple[str, str]]] = collections.defaultdict(list)
    for user_id, kind, key in rows:
        found[user_id].append((kind, key))
    return dict(found)


def notification_mail(app) -> collections.Counter:
    """How many notification messages were recorded per recipient."""
    with app.app_context():
        return collections.Counter(
            db.session.scalars(
                sa.select(MailMessage.recipient).where(MailMessage.related_type == "notification")
            )
        )


def test_an_incident_opened_twice_signalled_tells_each_seat_holder_once(app, world, mailbox):
    mailbox.clear()
    incident = open_incident(app)
    signal_again(app, incident, "opened")

    found = told(app)
    # Seat holders of the vendor's product, of both organisations; nobody else.
    assert set(found) == {world.alice.id, world.boris.id, world.dave.id}
    for person in (world.alice, world.boris, world.dave):
        assert found[person.id] == [("incident.opened", f"incident:{incident}:opened")]
    with app.app_context():  # the link is the vendor's page in the supplier directory
        assert set(db.session.scalars(sa.select(Notification.link))) == {"/suppliers/status-soft"}
    # Mail as each chose: Dave turned incident mail off (his row is there, no mail).
    sent = collections.Counter(str(m["To"]) for m in mailbox)
    assert sent == {world.alice.email: 1, world.boris.email: 1}
    assert notification_mail(app) == {world.alice.email: 1, world.boris.email: 1}


def test_the_mail_is_in_the_readers_language(app, world, mailbox):
    mailbox.clear()
    open_incident(app, title="Mail delivery delayed")
    by_reader = {str(m["To"]): m for m in mailbox}
    english, russian = by_reader[world.alice.email], by_reader[world.boris.email]
    assert english["Content-Language"] == "en"
    assert english["Subject"] == "Incident at Status Soft: Mail delivery delayed"
    assert "impact: major" in english.get_content()
    assert russian["Content-Language"] == "ru"
    assert russian["Subject"] == "Инцидент у Status Soft: Mail delivery delayed"
    assert "серьёзное" in russian.get_content()
    assert "/notifications/settings" in russian.get_content()


def test_the_job_delivered_twice_tells_nobody_twice(app, world, jobs_inline):
    """A job killed after its work committed but before it was recorded is run again."""
    app.extensions["celery"].conf.task_always_eager = False  # deliver by hand, as a worker
    incident = open_incident(app)
    with app.app_context():
        job = db.session.scalars(
            sa.select(Job).where(Job.name == "notifications.seat_holders")
        ).one()
        job_id = job.id
    assert deliver_job(app, job_id) == "succeeded"
    with app.app_context():  # as if the worker died before recording: delivered again
        db.session.execute(
            sa.update(Job).where(Job.id == job_id).values(state=JobState.QUEUED, attempts=0)
        )
        db.session.commit()
    assert deliver_job(app, job_id) == "succeeded"
    assert deliver_job(app, job_id) == "skipped"  # a third message of a finished job
    found = told(app)
    assert {k: len(v) for k, v in found.items()} == {
        world.alice.id: 1,
        world.boris.id: 1,
        world.dave.id: 1,
    }
    assert found[world.alice.id] == [("incident.opened", f"incident:{incident}:opened")]
    assert notification_mail(app) == {world.alice.email: 1, world.boris.email: 1}


def test_the_same_event_signalled_twice_queues_one_job(app, world):
    incident = open_incident(app)
    signal_again(app, incident, "opened")
    with app.app_context():
        jobs = db.session.scalars(
            sa.select(Job.dedupe_key).where(Job.name == "notifications.seat_holders")
        ).all()
    assert jobs == [f"notifications.seat_holders:incident:{incident}:opened"]


def test_impact_changes_and_resolution_are_told_plain_updates_are_not(app, world, mailbox):
    incident = open_incident(app, impact="minor")
    update_incident(app, incident)  # same impact, same state: nobody is told
    update_incident(app, incident, state="identified")  # a state that is not resolved: no
    update_incident(app, incident, impact="critical")
    update_incident(app, incident, state="resolved")
    assert told(app)[world.alice.id] == [
        ("incident.opened", f"incident:{incident}:opened"),
        ("incident.impact_changed", f"incident:{incident}:impact:critical"),
        ("incident.resolved", f"incident:{incident}:resolved"),
    ]
    assert notification_mail(app)[world.alice.email] == 3
    assert world.carol.id not in told(app)


def test_only_holders_of_an_active_seat_of_the_vendors_products_are_told(app, world, mailbox):
    from portal.seats.models import SeatAssignment
    from portal.seats.services import seat_release

    with app.app_context():  # Alice gives her seat back before the incident
        seat = db.session.scalars(
            sa.select(SeatAssignment).where(SeatAssignment.user_id == world.alice.id)
        ).one()
        seat_release(
            db.session, actor=SYSTEM, subscription=seat.subscription, user_email=world.alice.email
        )
        db.session.commit()
    open_incident(app)
    assert set(told(app)) == {world.boris.id, world.dave.id}


def test_a_standing_change_tells_the_seat_holders_with_the_councils_note(app, world, mailbox):
    from portal.catalogue.services import vendor_update

    mailbox.clear()
    with app.app_context():
        vendor_update(
            db.session,
            actor=SYSTEM,
            vendor=_vendor(db.session),
            data={"status": "under_review", "status_note": "Audit pending"},
        )
        db.session.commit()
    found = told(app)
    assert set(found) == {world.alice.id, world.boris.id, world.dave.id}
    ((kind, key),) = found[world.boris.id]
    assert kind == "vendor.standing_changed"
    assert key.startswith(f"standing:{world.vendor_id}:active:under_review:")
    by_reader = {str(m["To"]): m for m in mailbox}
    assert set(by_reader) == {world.alice.email, world.boris.email}  # Dave: mail off
    assert by_reader[world.alice.email]["Subject"] == "Status Soft is now under review"
    assert "The council's note: Audit pending" in by_reader[world.alice.email].get_content()
    assert "на рассмотрении" in by_reader[world.boris.email]["Subject"]


def test_a_second_change_of_standing_later_is_told_again(app, world, clock, mailbox):
    from portal.catalogue.services import vendor_update

    start = clock.freeze(clock.now.replace(microsecond=0))
    for status, at in (
        ("suspended", start),
        ("active", start + dt.timedelta(hours=1)),
        ("suspended", start + dt.timedelta(hours=2)),
    ):
        clock.freeze(at)
        with app.app_context():
            vendor_update(
                db.session, actor=SYSTEM, vendor=_vendor(db.session), data={"status": status}
            )
            db.session.commit()
    kinds_told = [kind for kind, _ in told(app)[world.alice.id]]
    assert kinds_told == ["vendor.standing_changed"] * 3


def test_a_rolled_back_change_tells_nobody(app, world):
    from portal.suppliers.services import open_incident as open_it

    with app.app_context():
        open_it(db.session, SYSTEM, _vendor(db.session), title="Oops", impact="minor", body="x")
        db.session.rollback()
        names = db.session.scalars(sa.select(Job.name)).all()
    assert "notifications.seat_holders" not in names
    assert told(app) == {}


# ------------------------------------------------------------------ notify itself


def test_notify_refuses_an_unknown_kind_and_a_bad_key(app, world):
    from portal.notifications.services import notify

    with app.app_context():
        with pytest.raises(LookupError):
            notify(db.session, user_ids=[world.alice.id], kind="no.such", key="k", params={})
        for key in ("", "k" * 201):
            with pytest.raises(ValueError):
                notify(
                    db.session,
                    user_ids=[world.alice.id],
                    kind="incident.opened",
                    key=key,
                    params={},
                )
        with pytest.raises(TypeError):
            notify(
                db.session,
                user_ids=[world.alice.id],
                kind="incident.opened",
                key="k",
                params={"when": dt.date(2026, 1, 1)},
            )
        for link in ("https://elsewhere.example/", "//elsewhere.example/", "/\\elsewhere"):
            with pytest.raises(ValueError):
                notify(
                    db.session,
                    user_ids=[world.alice.id],
                    kind="incident.opened",
                    key="k",
                    params={},
                    link=link,
                )
        db.session.rollback()
    assert told(app) == {}


def test_notify_council_staff_tells_active_admins_of_the_roles_once(app, make_user, mailbox):
    from portal.identity.models import User
    from portal.kernel.i18n import _
    from portal.notifications.kinds import KINDS, Group, Kind, register
    from portal.notifications.services import notify_council_staff

    register(
        Kind(
            name="test.reminder",
            group=Group.OPERATIONS,
            title=lambda p: _("Reminder: %(what)s", what=p["what"]),
            body=lambda p: p["what"],
        )
    )
    try:
        admin = make_user("council_admin")
        gone = make_user("council_admin")
        finance = make_user("finance")
        with app.app_context():
            db.session.execute(sa.update(User).where(User.id == gone.id).values(is_active=False))
            db.session.commit()
        mailbox.clear()
        for _attempt in range(2):
            with app.app_context():
                notify_council_staff(
                    db.session, kind="test.reminder", key="po:7:reminder", params={"what": "PO 7"}
                )
                db.session.commit()
        assert told(app) == {admin.id: [("test.reminder", "po:7:reminder")]}
        assert [str(m["To"]) for m in mailbox] == [admin.email]
        with app.app_context():
            notify_council_staff(
                db.session,
                kind="test.reminder",
                key="po:7:reminder",
                params={"what": "PO 7"},
                roles=("council_admin", "finance"),
            )
            db.session.commit()
        assert set(told(app)) == {admin.id, finance.id}
    finally:
        KINDS.pop("test.reminder", None)


def test_params_that_do_not_fit_the_kind_show_its_name_not_an_error(app):
    from portal.notifications import kinds

    with app.test_request_context():
        assert kinds.title("incident.opened", {}) == "incident.opened"
        assert kinds.body("incident.opened", {"vendor": "V"}) == ""
        assert kinds.title("no.such.kind", {"x": 1}) == "no.such.kind"


def test_a_person_holding_two_of_the_vendors_products_is_told_once(
    app, world, make_product, mailbox
):
    from tests.notifications.conftest import hold_seat

    make_product(10, sku="mail-archive", vendor=VENDOR)
    hold_seat(app, world.acme, "mail-archive", world.alice)
    mailbox.clear()
    incident = open_incident(app)
    assert told(app)[world.alice.id] == [("incident.opened", f"incident:{incident}:opened")]
    assert [str(m["To"]) for m in mailbox].count(world.alice.email) == 1


def test_an_inactive_person_still_holding_a_seat_is_not_told(app, world, mailbox):
    """(Deactivation releases seats; an account switched off by other means keeps them.)"""
    from portal.identity.models import User

    with app.app_context():
        db.session.execute(sa.update(User).where(User.id == world.boris.id).values(is_active=False))
        db.session.commit()
    open_incident(app)
    assert set(told(app)) == {world.alice.id, world.dave.id}
