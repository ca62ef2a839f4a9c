"""The seat lean path (``portal.api.seat_fastpath``) answers and writes as Flask does.

Each plain assignment or release is made once through the whole application (where
the lean path answers first) and once, for another person, through the Flask
application alone (the middleware's inner WSGI app): the answers must have the same
status, headers and shape, and the rows written (the seat, the subscription's counter,
the audit event and its link in the chain, the approved seat request, the provisioning
outbox) must be the same. Every other request is left to Flask (a spy on
``SeatFastPath.answer`` tells which path answered).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import pytest
import sqlalchemy as sa
from werkzeug.test import Client

from portal.api import seat_fastpath
from portal.api.seat_fastpath import SeatFastPath
from portal.audit.models import AuditEvent
from portal.audit.services import audit_verify
from portal.catalogue.models import Product
from portal.db import council_wide, db
from portal.identity.accounts import user_create
from portal.identity.models import User
from portal.kernel.actor import Role
from portal.seats import services
from portal.seats.models import SeatAssignment, SeatRequest, Subscription
from portal.tenancy.models import Organisation
from tests.api.conftest import assert_problem
from tests.conftest import SYSTEM
from tests.provisioning.conftest import receiver, world  # noqa: F401
from tests.support import seat_counts

#: The peer's address, as Flask's test client gives it (werkzeug's own gives none).
PEER = {"REMOTE_ADDR": "127.0.0.1"}


@dataclass
class Setup:
    org_id: int
    slug: str
    subscription_id: int
    product_id: int
    token: str
    people: list[str]


def _middleware(app) -> SeatFastPath:
    layer = app.wsgi_app
    while not isinstance(layer, SeatFastPath):
        layer = layer.wsgi_app
    return layer


@pytest.fixture
def spy(app, monkeypatch) -> list[bool]:
    """Whether the lean path answered each seat request (True) or left it to Flask."""
    middleware = _middleware(app)
    answered: list[bool] = []
    answer = middleware.answer

    def spying(environ):
        result = answer(environ)
        answered.append(result is not None)
        return result

    monkeypatch.setattr(middleware, "answer", spying)
    return answered


def _setup(app, make_org, make_product, make_token, *, slug="acme", quantity=3, people=4):
    org = make_org(slug)
    product = make_product(capacity=20)
    with app.app_context():
        organisation = db.session.get(Organisation, org.id)
        emails = [f"p{i}@{slug}.example" for i in range(people)]
        for email in emails:  # no passwords: no mail is due on assignment
            user_create(
                db.session, actor=SYSTEM, email=email, role=Role.MEMBER, organisation=organisation
            )
        outcome = services.subscription_create(
            db.session,
            actor=SYSTEM,
            organisation=organisation,
            product=db.session.get(Product, product.id),
            quantity=quantity,
        )
        db.session.commit()
        subscription_id = outcome.subscription.id
    token = make_token("council")
    setup = Setup(org.id, slug, subscription_id, product.id, token, emails)
    _warm(app, setup.token, subscription_id)
    return setup


def _warm(app, token: str, subscription_id: int) -> None:
    """A first request notes the token's time of use (Flask's work; the lean path then may)."""
    response = app.test_client().get(
        f"/api/v1/subscriptions/{subscription_id}", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 200


def _headers(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _assign(client, setup: Setup, email: str, **headers: str):
    return client.post(
        f"/api/v1/subscriptions/{setup.subscription_id}/seats",
        json={"user_email": email},
        headers={**_headers(setup.token), **headers},
        environ_base=PEER,
    )


def _release(client, setup: Setup, email: str):
    return client.delete(
        f"/api/v1/subscriptions/{setup.subscription_id}/seats/{email}",
        headers=_headers(setup.token),
        environ_base=PEER,
    )


def _flask(app) -> Client:
    return Client(_middleware(app).wsgi_app)


def _counter_and_active(app, subscription_id: int) -> tuple[int, int]:
    with app.app_context():
        return seat_counts(subscription_id)


def _event(app, action: str, email: str) -> dict:
    with app.app_context(), council_wide(db.session):
        event = db.session.scalars(
            sa.select(AuditEvent)
            .where(AuditEvent.action == action, AuditEvent.target_label.endswith(email))
            .order_by(AuditEvent.seq.desc())
        ).first()
        assert event is not None
        return {
            "actor_user_id": event.actor_user_id,
            "actor_label": event.actor_label,
            "organisation_id": event.organisation_id,
            "target_type": event.target_type,
            "target_label": event.target_label.replace(email, "EMAIL"),
            "before": _blank(event.before, email),
            "after": _blank(event.after, email),
            "ip": event.ip,
        }


def _blank(value, email):
    if isinstance(value, dict):
        return {k: ("EMAIL" if v == email else v) for k, v in value.items()}
    return value


def _same_answer(fast, flask, email_fast: str, email_flask: str) -> None:
    assert fast.status_code == flask.status_code
    ignore = {"date", "x-request-id", "vary"}
    assert sorted(k.lower() for k, _ in fast.headers if k.lower() not in ignore) == sorted(
        k.lower() for k, _ in flask.headers if k.lower() not in ignore
    )
    assert fast.headers["Content-Type"] == flask.headers["Content-Type"]
    a, b = fast.get_json(), flask.get_json()
    assert set(a) == set(b) == {"subscription", "user_email", "assigned_at", "released_at"}
    assert a["user_email"] == email_fast and b["user_email"] == email_flask
    assert a["subscription"] == b["subscription"]
    for key in ("assigned_at", "released_at"):
        assert (a[key] is None) == (b[key] is None)
        if a[key] is not None:
            assert len(a[key]) == len(b[key]) and a[key][-1] == b[key][-1]


def test_a_plain_assignment_and_release_are_answered_here_as_flask_answers(
    app, make_org, make_product, make_token, spy
):
    setup = _setup(app, make_org, make_product, make_token)
    client = app.test_client()
    one, two = setup.people[:2]

    fast = _assign(client, setup, one)
    assert spy == [True]
    flask = _assign(_flask(app), setup, two)
    assert spy == [True]  # the inner app is Flask alone
    _same_answer(fast, flask, one, two)
    assert _event(app, "seat.assign", one) == _event(app, "seat.assign", two)
    assert _counter_and_active(app, setup.subscription_id) == (2, 2)

    fast = _release(client, setup, one)
    assert spy == [True, True]
    flask = _release(_flask(app), setup, two)
    _same_answer(fast, flask, one, two)
    assert _event(app, "seat.release", one) == _event(app, "seat.release", two)
    assert _counter_and_active(app, setup.subscription_id) == (0, 0)
    with app.app_context():
        assert audit_verify(db.session).broken is None
        seats = db.session.scalars(
            sa.select(SeatAssignment).where(SeatAssignment.subscription_id == setup.subscription_id)
        ).all()
        assert {s.release_reason for s in seats} == {"released"}
        assert all(s.released_at >= s.assigned_at for s in seats)


def test_an_organisation_token_assigns_in_its_own_organisation_only(
    app, make_org, make_product, make_token, spy
):
    acme = _setup(app, make_org, make_product, make_token, slug="acme")
    globex = _setup(app, make_org, make_product, make_token, slug="globex")
    with app.app_context():
        org = db.session.get(Organisation, acme.org_id)
        ref = type("Ref", (), {"id": org.id, "slug": org.slug})()
    own = make_token("organisation", org=ref)
    _warm(app, own, acme.subscription_id)
    client = app.test_client()
    mine = Setup(**{**acme.__dict__, "token": own})
    assert _assign(client, mine, acme.people[0]).status_code == 201
    assert spy == [True]
    theirs = Setup(**{**globex.__dict__, "token": own})
    assert_problem(_assign(client, theirs, globex.people[0]), 404)
    assert_problem(_release(client, theirs, globex.people[0]), 404)
    assert spy[1:] == [False, False]
    assert _release(client, mine, acme.people[0]).status_code == 200
    assert spy[-1] is True
    assert _counter_and_active(app, acme.subscription_id) == (0, 0)
    assert _counter_and_active(app, globex.subscription_id) == (0, 0)


def test_everything_else_goes_to_flask(app, make_org, make_product, make_token, spy):
    setup = _setup(app, make_org, make_product, make_token, quantity=2, people=4)
    client = app.test_client()
    a, b, c, _ = setup.people

    assert _assign(client, setup, a).status_code == 201
    assert spy == [True]
    # Already holding a seat: Flask's 409.
    assert_problem(_assign(client, setup, a), 409, "already_assigned")
    # An unknown address: Flask invites the person (and assigns the seat).
    assert _assign(client, setup, "new.person@acme.example").status_code == 201
    assert spy[1:] == [False, False]
    # Full: Flask's 409, for a known and an unknown address alike.
    assert_problem(_assign(client, setup, b), 409, "no_free_seat")
    assert_problem(_assign(client, setup, "other@acme.example"), 409, "no_free_seat")
    # Releasing a person without a seat: Flask's 404.
    assert_problem(_release(client, setup, c), 404, "seat_not_found")
    # An address that is not plain, an Idempotency-Key: Flask.
    assert_problem(_assign(client, setup, a.upper()), 409)
    assert spy[1:] == [False] * 6
    assert _release(client, setup, a).status_code == 200
    assert spy[-1] is True
    response = _assign(client, setup, a, **{"Idempotency-Key": "k-1"})
    assert response.status_code == 201
    assert spy[-1] is False
    # No token, a bad token: Flask's 401.
    response = app.test_client().post(
        f"/api/v1/subscriptions/{setup.subscription_id}/seats", json={"user_email": c}
    )
    assert_problem(response, 401)
    bad = Setup(**{**setup.__dict__, "token": "pk_c_" + "x" * 40})
    assert_problem(_assign(client, bad, c), 401)
    assert _counter_and_active(app, setup.subscription_id) == (2, 2)
    with app.app_context():
        assert audit_verify(db.session).broken is None


def test_a_deactivated_person_and_a_person_with_a_password_go_to_flask(
    app, make_org, make_product, make_token, make_user, spy
):
    setup = _setup(app, make_org, make_product, make_token)
    client = app.test_client()
    with app.app_context():
        person = db.session.scalar(sa.select(User).where(User.email == setup.people[0]))
        person.is_active = False
        db.session.commit()
    assert_problem(_assign(client, setup, setup.people[0]), 409)
    assert spy == [False]
    ref = type("Ref", (), {"id": setup.org_id, "slug": setup.slug})()
    member = make_user("member", ref)  # with a password: a mail is due, Flask sends it
    assert _assign(client, setup, member.email).status_code == 201
    assert spy == [False, False]
    assert _counter_and_active(app, setup.subscription_id) == (1, 1)


def test_the_pending_seat_request_is_approved_by_the_seat(
    app, make_org, make_product, make_token, spy
):
    from portal.kernel.actor import Actor
    from portal.seats.requests import seat_request_create

    setup = _setup(app, make_org, make_product, make_token)
    with app.app_context():
        for email in setup.people[:2]:
            person = db.session.scalar(sa.select(User).where(User.email == email))
            seat_request_create(
                db.session,
                actor=Actor.person(person),
                user=person,
                product=db.session.get(Product, setup.product_id),
            )
        db.session.commit()
    assert _assign(app.test_client(), setup, setup.people[0]).status_code == 201
    assert _assign(_flask(app), setup, setup.people[1]).status_code == 201
    assert spy == [True]
    with app.app_context(), council_wide(db.session):
        requests = db.session.scalars(sa.select(SeatRequest).order_by(SeatRequest.id)).all()
        assert [r.status for r in requests] == ["approved", "approved"]
        assert all(r.decided_at is not None and r.decided_by_id is None for r in requests)


def test_the_provisioning_outbox_is_written_in_the_same_transaction(
    app,
    world,  # noqa: F811
    make_token,
    spy,
):
    from portal.provisioning.models import Delivery

    with app.app_context():
        organisation = db.session.get(Organisation, world.org_id)
        for email in ("amy@buyer.example", "bob@buyer.example"):
            user_create(
                db.session, actor=SYSTEM, email=email, role=Role.MEMBER, organisation=organisation
            )
        db.session.commit()
        product_id = db.session.scalar(
            sa.select(Subscription.product_id).where(Subscription.id == world.subscription_id)
        )
    setup = Setup(world.org_id, world.org_slug, world.subscription_id, product_id, "", [])
    setup.token = make_token("council")
    _warm(app, setup.token, world.subscription_id)
    assert _assign(app.test_client(), setup, "amy@buyer.example").status_code == 201
    assert _assign(_flask(app), setup, "bob@buyer.example").status_code == 201
    assert _release(app.test_client(), setup, "amy@buyer.example").status_code == 200
    assert _release(_flask(app), setup, "bob@buyer.example").status_code == 200
    assert spy == [True, True]
    with app.app_context(), council_wide(db.session):
        rows = db.session.scalars(
            sa.select(Delivery).where(Delivery.event.in_(["seat.assigned", "seat.released"]))
        ).all()

        def shape(row):
            return (row.event, row.channel, row.organisation_id, sorted(row.payload))

        amy = sorted(shape(r) for r in rows if r.user_id == _user_id("amy@buyer.example"))
        bob = sorted(shape(r) for r in rows if r.user_id == _user_id("bob@buyer.example"))
        assert amy == bob and len(amy) == 2


def test_the_seat_signals_have_one_receiver_the_provisioning_outbox():
    """The lean path skips the seat signals when provisioning's outbox would write nothing
    for the product's vendor (PostgreSQL's one round trip): that holds while the outbox is
    their only receiver. A new receiver must be weighed there (``_in_one_trip``)."""
    from portal.provisioning import outbox
    from portal.signals import seat_assigned, seat_released

    assert [r() for r in seat_assigned.receivers.values()] == [outbox._on_seat_assigned]
    assert [r() for r in seat_released.receivers.values()] == [outbox._on_seat_released]


def test_on_postgresql_a_seat_change_with_nothing_to_provision_is_one_round_trip_of_writes(
    app, make_org, make_product, make_token, spy, monkeypatch
):
    """No vendor channel configured: the writes, the event and the commit go together
    (``_in_one_trip``); what is written is what the other paths write (above)."""
    with app.app_context():
        kind = db.engine.dialect.name
    if kind != "postgresql":
        pytest.skip("the pipelined writes are PostgreSQL's (SQLite has no pipeline mode)")
    one_trip: list[str] = []
    original = SeatFastPath._in_one_trip

    def counting(self, run, session, kind, *args):
        one_trip.append(kind)
        return original(self, run, session, kind, *args)

    monkeypatch.setattr(SeatFastPath, "_in_one_trip", counting)
    setup = _setup(app, make_org, make_product, make_token, quantity=1)
    client = app.test_client()
    one, two = setup.people[:2]
    assert _assign(client, setup, one).status_code == 201
    # Full: the statement writes nothing and fails, the transaction ends, Flask answers.
    assert_problem(_assign(client, setup, two), 409, "no_free_seat")
    assert _release(client, setup, one).status_code == 200
    assert_problem(_release(client, setup, one), 404, "seat_not_found")
    assert spy == [True, False, True, False]
    assert one_trip == ["assign", "assign", "release"]  # the last found no seat to read
    assert _counter_and_active(app, setup.subscription_id) == (0, 0)
    with app.app_context():
        assert audit_verify(db.session).broken is None
        with council_wide(db.session):
            actions = db.session.scalars(
                sa.select(AuditEvent.action).where(AuditEvent.target_type == "seat")
            ).all()
    assert sorted(actions) == ["seat.assign", "seat.release"]


def test_on_sqlite_the_token_is_read_before_the_writers_queue(
    app, make_org, make_product, make_token, spy, monkeypatch
):
    """SQLite's writers queue on a lock file; the token and provisioning's settings are read
    before it, in a read of their own, so the queue holds the writes alone."""
    with app.app_context():
        kind = db.engine.dialect.name
    if kind != "sqlite":
        pytest.skip("the writers' queue is SQLite's")
    setup = _setup(app, make_org, make_product, make_token)
    middleware = _middleware(app)
    order: list[str] = []
    read_first, writers = middleware._read_first, middleware._writers

    class Queue:
        def __enter__(self):
            order.append("queue")
            return writers.__enter__()

        def __exit__(self, *exc):
            return writers.__exit__(*exc)

    def reading(engine, digest):
        order.append("read")
        return read_first(engine, digest)

    monkeypatch.setattr(middleware, "_read_first", reading)
    monkeypatch.setattr(middleware, "_writers", Queue())
    monkeypatch.setattr(seat_fastpath, "_SQLiteWriters", Queue)
    client = app.test_client()
    assert _assign(client, setup, setup.people[0]).status_code == 201
    assert _release(client, setup, setup.people[0]).status_code == 200
    assert spy == [True, True]
    assert order == ["read", "queue", "read", "queue"]
    # A bad token is refused by the read: Flask answers, the queue is not taken.
    bad = Setup(**{**setup.__dict__, "token": "pk_c_" + "x" * 40})
    assert_problem(_assign(client, bad, setup.people[1]), 401)
    assert order[-1] == "read"


def _user_id(email: str) -> int:
    return db.session.scalar(sa.select(User.id).where(User.email == email))


def test_a_lean_assignment_waits_for_a_locked_subscription_instead_of_deadlocking(
    app, make_org, make_product, make_token, spy, caplog
):
    """PostgreSQL, two real connections. Another transaction holds the subscription's row
    (as the services' assignment does first) while the lean path assigns the same person;
    that transaction then writes the person's seat and commits. The lean path changes the
    subscription's counter before it writes the seat, so it must have waited at the
    subscription's row without a seat written. Had it written the seat first (as it once
    did: the seat's foreign key is checked after the row and its unique index entry are
    written), the two would wait for each other and PostgreSQL would abort one
    (``deadlock detected``): this transaction, or the lean path's, which then logs it."""
    from concurrent.futures import ThreadPoolExecutor

    from tests.conftest import owner_engine

    setup = _setup(app, make_org, make_product, make_token)
    email = setup.people[0]
    with app.app_context():
        engine = owner_engine(app)
        if engine.dialect.name != "postgresql":
            pytest.skip("row locks between connections: PostgreSQL (SQLite has one writer)")
        user_id = db.session.scalar(sa.select(User.id).where(User.email == email))
    client = app.test_client()
    with engine.connect() as other, ThreadPoolExecutor(1) as pool:
        other.execute(
            sa.text("SELECT id FROM subscriptions WHERE id = :id FOR UPDATE"),
            {"id": setup.subscription_id},
        )
        answer = pool.submit(_assign, client, setup, email)
        waiting = sa.text(  # in this test's database (other tests run beside it)
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            " AND datname = current_database() AND pid <> pg_backend_pid()"
        )
        with engine.connect() as watcher:
            for _ in range(200):  # until the lean path waits for the row (at most 10 s)
                if watcher.execute(waiting).scalar():
                    break
                threading.Event().wait(0.05)
            else:
                pytest.fail("the lean assignment never waited for the subscription's row")
        other.execute(
            sa.text(
                "INSERT INTO seat_assignments"
                " (organisation_id, subscription_id, product_id, user_id, assigned_at)"
                " VALUES (:org, :sub, :product, :user, now())"
            ),
            {
                "org": setup.org_id,
                "sub": setup.subscription_id,
                "product": setup.product_id,
                "user": user_id,
            },
        )  # had the lean path written the person's seat, this would wait for it
        other.execute(
            sa.text("UPDATE subscriptions SET assigned = assigned + 1 WHERE id = :id"),
            {"id": setup.subscription_id},
        )
        other.execute(  # and the product's count, as the services write them (seats.counts)
            sa.text(
                "INSERT INTO product_seat_counts (product_id, reserved, waiting, assigned)"
                " VALUES (:product, 0, 0, 1)"
            ),
            {"product": setup.product_id},
        )
        other.commit()
        response = answer.result(timeout=60)
    assert_problem(response, 409)  # already holds a seat: Flask's answer, not a 503
    assert response.get_json()["code"] == "already_assigned"
    assert spy == [False]  # the lean path rolled back and left it to Flask
    # ... because the seat was taken, not because PostgreSQL aborted it (a deadlock).
    assert not [r.getMessage() for r in caplog.records if r.name == "portal.api.seat_fastpath"]
    assert _counter_and_active(app, setup.subscription_id) == (1, 1)
