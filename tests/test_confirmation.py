"""Irreversible actions ask first (issue 14): the first POST shows what will happen and changes
nothing; the confirm page's own form, posted as it is, does the action. No JavaScript involved.

The actions: finalise all drafts of a month, release a person's seat, release an idle seat
(the subscription shrinks or ends), deactivate a person (portal.forms.confirmation_needed).
"""

from __future__ import annotations

import html
import re

import sqlalchemy as sa

from portal.billing.models import Invoice
from portal.db import db
from portal.identity.models import User
from portal.kernel.clock import now_utc
from portal.seats import services as seats
from portal.seats.models import SeatAssignment, Subscription
from tests.billing.conftest import billed  # noqa: F401  (fixture re-export)
from tests.billing.factories import draft, subscribe
from tests.conftest import SYSTEM, csrf_token, flashes, login, post_form
from tests.support import db_rows

FORM_RE = re.compile(r'<form method="post" action="([^"]+)">(.*?)</form>', re.S)
HIDDEN_RE = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')


def confirm_form(response) -> tuple[str, dict[str, str]]:
    """The confirm page's form: where it posts and the fields it sends (as a browser would)."""
    assert response.status_code == 200, response.status_code
    page = response.get_data(as_text=True)
    assert 'class="confirm' in page, page[:500]
    forms = [(a, body) for a, body in FORM_RE.findall(page) if 'name="confirmed"' in body]
    assert len(forms) == 1, forms
    action, body = forms[0]
    fields = {html.unescape(n): html.unescape(v) for n, v in HIDDEN_RE.findall(body)}
    return html.unescape(action), fields


def text_of(response) -> str:
    """The page's text with tags removed and whitespace folded (for sentences that span tags)."""
    page = re.sub(r"<[^>]+>", " ", response.get_data(as_text=True))
    return " ".join(html.unescape(page).split())


def _subscription(app, org, product, quantity: int, emails: list[str]) -> tuple[int, list[int]]:
    from portal.catalogue.models import Product
    from portal.tenancy.models import Organisation

    with app.app_context():
        sub = seats.subscription_create(
            db.session,
            actor=SYSTEM,
            organisation=db.session.get(Organisation, org.id),
            product=db.session.get(Product, product.id),
            quantity=quantity,
        ).subscription
        seat_ids = [
            seats.seat_assign(db.session, actor=SYSTEM, subscription=sub, user_email=e).id
            for e in emails
        ]
        db.session.commit()
        return sub.id, seat_ids


# ---------------------------------------------------------------- finalise all drafts


def test_finalise_all_asks_first_with_counts_then_finalises(
    app,
    billed,  # noqa: F811
    signed_in,
    mailbox,
):
    invoice_id = draft(app, billed["org"].id, billed["period"])
    finance = signed_in("finance")
    month = f"/finance?period={billed['period']}"
    before = db_rows(app)

    asked = post_form(
        finance, "/finance/finalize-all", {"period": billed["period"]}, token_from=month
    )
    text = text_of(asked)
    assert f"Finalise 1 draft of {billed['period']}?" in text
    assert "1 invoice is issued to 1 organisation, for €" in text
    assert f"It takes the number INV-{now_utc().year}-000001;" in text
    assert "1 mail is sent, to billing@acme.example" in text
    assert "This cannot be undone." in text
    assert f'href="{month}"' in asked.get_data(as_text=True).replace("&amp;", "&")  # Cancel
    assert db_rows(app) == before  # nothing finalised, no number taken, no mail
    assert mailbox == []
    with app.app_context():
        assert db.session.get(Invoice, invoice_id).status == "draft"

    action, fields = confirm_form(asked)
    assert action == "/finance/finalize-all"
    assert fields["period"] == billed["period"] and fields["confirmed"] == "1"
    done = finance.post(action, data=fields)
    assert done.status_code == 302
    with app.app_context():
        invoice = db.session.get(Invoice, invoice_id)
        assert invoice.status == "open" and invoice.number == f"INV-{now_utc().year}-000001"
    assert len(mailbox) == 1


def test_finalise_all_of_two_drafts_names_the_number_range_and_recipients(
    app,
    billed,  # noqa: F811
    make_org,
    signed_in,
):
    other = make_org("beta")
    subscribe(app, other.id, billed["product"].id, 3, billed["first"])
    for org in (billed["org"], other):
        draft(app, org.id, billed["period"])
    finance = signed_in("finance")
    month = f"/finance?period={billed['period']}"
    asked = post_form(
        finance, "/finance/finalize-all", {"period": billed["period"]}, token_from=month
    )
    text = text_of(asked)
    year = now_utc().year
    assert f"Finalise all 2 drafts of {billed['period']}?" in text
    assert "2 invoices are issued to 2 organisations" in text
    assert f"They take the numbers INV-{year}-000001 to INV-{year}-000002, in order" in text
    assert "2 mails are sent, to billing@acme.example, billing@beta.example" in text
    assert "Finalise 2 invoices" in text


def test_finalise_all_with_nothing_to_finalise_does_not_ask(app, billed, signed_in):  # noqa: F811
    finance = signed_in("finance")
    month = f"/finance?period={billed['period']}"
    response = post_form(
        finance, "/finance/finalize-all", {"period": billed["period"]}, token_from=month
    )
    assert response.status_code == 302
    assert "no drafts" in " ".join(flashes(finance.get(response.headers["Location"])))


# ---------------------------------------------------------------- seat release


def test_seat_release_asks_whose_seat_then_releases(app, make_org, make_product, make_user):
    org = make_org("alpha")
    product = make_product(10, sku="cad-suite")
    admin = make_user("org_admin", org)
    person = make_user("member", org)
    sub_id, [seat_id] = _subscription(app, org, product, 3, [person.email])
    client = app.test_client()
    login(client, admin)
    page = f"/org/subscriptions/{sub_id}"
    before = db_rows(app)

    asked = post_form(
        client, f"{page}/seats/release", {"user_email": person.email}, token_from=page
    )
    text = text_of(asked)
    with app.app_context():
        who = f"{db.session.get(User, person.id).name} ({person.email})"
    assert f"Release the seat of {who}?" in text
    assert f"{who} loses the seat of Product cad-suite at once" in text
    assert "the subscription keeps its 3 seats and its charge" in text
    assert db_rows(app) == before
    with app.app_context():
        assert db.session.get(SeatAssignment, seat_id).released_at is None

    action, fields = confirm_form(asked)
    assert fields["user_email"] == person.email
    done = client.post(action, data=fields)
    assert done.status_code == 302
    with app.app_context():
        assert db.session.get(SeatAssignment, seat_id).released_at is not None
        assert db.session.get(Subscription, sub_id).quantity == 3


def test_a_confirm_page_posted_with_a_stale_token_changes_nothing(
    app, make_org, make_product, make_user
):
    org = make_org("alpha")
    product = make_product(10, sku="cad-suite")
    admin = make_user("org_admin", org)
    person = make_user("member", org)
    sub_id, [seat_id] = _subscription(app, org, product, 1, [person.email])
    client = app.test_client()
    login(client, admin)
    page = f"/org/subscriptions/{sub_id}"
    action, fields = confirm_form(
        post_form(client, f"{page}/seats/release", {"user_email": person.email}, token_from=page)
    )
    fields["csrf_token"] = csrf_token(app.test_client(), "/login")  # another session's token
    before = db_rows(app)
    client.post(action, data=fields)
    assert db_rows(app) == before
    with app.app_context():
        assert db.session.get(SeatAssignment, seat_id).released_at is None


# ---------------------------------------------------------------- idle seat release


def test_idle_seat_release_says_the_subscription_shrinks_then_does_it(
    app, make_org, make_product, make_user
):
    org = make_org("alpha")
    product = make_product(10, sku="cad-suite")
    admin = make_user("org_admin", org)
    idle = make_user("member", org)
    sub_id, [seat_id] = _subscription(app, org, product, 2, [idle.email])
    client = app.test_client()
    login(client, admin)
    before = db_rows(app)

    asked = post_form(
        client, f"/org/idle-seats/{seat_id}/release", {}, token_from="/org/idle-seats"
    )
    text = text_of(asked)
    assert "Release the idle seat of" in text and idle.email in text
    assert "loses the seat of Product cad-suite at once" in text
    assert "Your subscription shrinks from 2 seats to 1" in text
    assert db_rows(app) == before

    action, fields = confirm_form(asked)
    assert client.post(action, data=fields).status_code == 302
    with app.app_context():
        assert db.session.get(SeatAssignment, seat_id).release_reason == "idle"
        assert db.session.get(Subscription, sub_id).quantity == 1


def test_releasing_the_only_idle_seat_says_the_subscription_ends(
    app, make_org, make_product, make_user
):
    org = make_org("alpha")
    product = make_product(10, sku="cad-suite")
    admin = make_user("org_admin", org)
    idle = make_user("member", org)
    _, [seat_id] = _subscription(app, org, product, 1, [idle.email])
    client = app.test_client()
    login(client, admin)
    asked = post_form(
        client, f"/org/idle-seats/{seat_id}/release", {}, token_from="/org/idle-seats"
    )
    text = text_of(asked)
    assert "the subscription of Product cad-suite is cancelled" in text
    assert "shrinks" not in text


def test_keeping_an_idle_seat_does_not_ask(app, make_org, make_product, make_user):
    org = make_org("alpha")
    product = make_product(10, sku="cad-suite")
    admin = make_user("org_admin", org)
    idle = make_user("member", org)
    _, [seat_id] = _subscription(app, org, product, 1, [idle.email])
    client = app.test_client()
    login(client, admin)
    kept = post_form(
        client, f"/org/idle-seats/{seat_id}/keep", {"days": "7"}, token_from="/org/idle-seats"
    )
    assert kept.status_code == 302


# ---------------------------------------------------------------- deactivation


def test_deactivation_asks_first_naming_the_seats_then_deactivates(
    app, make_org, make_product, make_user
):
    org = make_org("alpha")
    product = make_product(10, sku="cad-suite")
    admin = make_user("org_admin", org)
    person = make_user("member", org)
    _, [seat_id] = _subscription(app, org, product, 1, [person.email])
    client = app.test_client()
    login(client, admin)
    before = db_rows(app)

    asked = post_form(client, f"/org/users/{person.id}/deactivate", {}, token_from="/org/users")
    text = text_of(asked)
    assert "Deactivate Person" in text and person.email in text
    assert "can no longer sign in, and every session of theirs ends now" in text
    assert "Their 1 seat (Product cad-suite) is released" in text
    assert db_rows(app) == before

    action, fields = confirm_form(asked)
    assert action == f"/org/users/{person.id}/deactivate"
    assert client.post(action, data=fields).status_code == 302
    with app.app_context():
        assert db.session.get(User, person.id).is_active is False
        assert db.session.get(SeatAssignment, seat_id).released_at is not None


def test_reactivation_does_not_ask(app, make_org, make_user):
    org = make_org("alpha")
    admin = make_user("org_admin", org)
    person = make_user("member", org)
    with app.app_context():
        db.session.get(User, person.id).is_active = False
        db.session.commit()
    client = app.test_client()
    login(client, admin)
    response = post_form(client, f"/org/users/{person.id}/reactivate", {}, token_from="/org/users")
    assert response.status_code == 302
    with app.app_context():
        assert db.session.scalar(sa.select(User.is_active).where(User.id == person.id)) is True


def test_the_confirm_page_is_in_the_readers_language(app, make_org, make_user):
    org = make_org("alpha")
    admin = make_user("org_admin", org)
    person = make_user("member", org)
    client = app.test_client()
    login(client, admin)
    token = csrf_token(client, "/org/users")
    with app.app_context():
        db.session.get(User, admin.id).locale = "ru"
        db.session.commit()
    asked = client.post(f"/org/users/{person.id}/deactivate", data={"csrf_token": token})
    text = text_of(asked)
    assert 'lang="ru"' in asked.get_data(as_text=True)
    assert "Это нельзя отменить." in text
    assert "Отменить и ничего не менять" in text
