"""Seat assignment does not tell an organisation's admin who has an account elsewhere.

An address that cannot be given a seat in this organisation (an account of
another organisation, a council staff account, a new address on a domain
another organisation has verified) gets one answer, and a full subscription
answers the same for every address, known or not. Nothing is changed.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from portal.db import db
from portal.identity.models import Invitation, User
from portal.seats.models import SeatAssignment
from tests.api.conftest import assert_problem


@pytest.fixture
def acme(make_org):
    return make_org("acme")


@pytest.fixture
def globex(make_org, app):
    from portal.sso.models import EmailDomain

    globex = make_org("globex")
    with app.app_context():
        db.session.add(
            EmailDomain(organisation_id=globex.id, domain="globex.example", status="verified")
        )
        db.session.commit()
    return globex


def _rows(app) -> tuple[int, int, int]:
    with app.app_context():
        return tuple(
            db.session.scalar(sa.select(sa.func.count()).select_from(model))
            for model in (User, Invitation, SeatAssignment)
        )


def _answer(response, email: str) -> tuple[int, str, dict]:
    """Status, content type and body, with the address the admin typed taken out."""
    body = response.get_json()
    text = response.get_data(as_text=True).replace(email, "<email>")
    assert "elsewhere" not in text and "globex" not in text.lower(), text
    return (
        response.status_code,
        response.mimetype,
        {k: (v.replace(email, "<email>") if isinstance(v, str) else v) for k, v in body.items()},
    )


def test_addresses_that_cannot_get_a_seat_here_all_get_one_answer(
    app, api, acme, globex, make_product, make_user
):
    product = make_product(capacity=5)
    client = api("organisation", org=acme)
    sub_id = client.post("/subscriptions", json={"product": product.sku, "quantity": 2}).get_json()[
        "id"
    ]
    member_elsewhere = make_user("member", globex, email="pat@globex.example")
    staff = make_user("council_admin", email="chair@council.example")
    new_on_their_domain = "new.person@globex.example"
    before = _rows(app)

    answers = []
    for email in (member_elsewhere.email, staff.email, new_on_their_domain):
        response = client.post(f"/subscriptions/{sub_id}/seats", json={"user_email": email})
        assert_problem(response, 409, "email_not_assignable")
        answers.append(_answer(response, email))
    assert answers[0] == answers[1] == answers[2]
    assert answers[0][2]["errors"] == {
        "user_email": ["This address cannot be given a seat in this organisation."]
    }
    assert _rows(app) == before
    # A new address on a domain nobody has verified is invited and seated, as before.
    invited = client.post(f"/subscriptions/{sub_id}/seats", json={"user_email": "sam@acme.example"})
    assert invited.status_code == 201, invited.get_json()


def test_a_full_subscription_answers_the_same_for_every_address(
    app, api, acme, globex, make_product, make_user
):
    product = make_product(capacity=5)
    client = api("organisation", org=acme)
    sub_id = client.post("/subscriptions", json={"product": product.sku, "quantity": 1}).get_json()[
        "id"
    ]
    seated = client.post(f"/subscriptions/{sub_id}/seats", json={"user_email": "a@acme.example"})
    assert seated.status_code == 201
    elsewhere = make_user("member", globex, email="kim@globex.example")
    before = _rows(app)

    unknown_email = "nobody.yet@example.org"
    unknown = client.post(f"/subscriptions/{sub_id}/seats", json={"user_email": unknown_email})
    known = client.post(f"/subscriptions/{sub_id}/seats", json={"user_email": elsewhere.email})
    assert_problem(unknown, 409, "no_free_seat")
    assert _answer(unknown, unknown_email) == _answer(known, elsewhere.email)
    assert _rows(app) == before  # the unknown address got no account and no invitation
    # A person who holds the seat already is still told so.
    again = client.post(f"/subscriptions/{sub_id}/seats", json={"user_email": "a@acme.example"})
    assert_problem(again, 409, "already_assigned")
