"""Organisations: created by the council, applied for in public, edited, and their lifecycle."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa

from portal.db import db
from portal.identity.models import Invitation, User
from portal.tenancy.models import Organisation
from tests.conftest import SYSTEM, csrf_token, login, mail_link, post_form
from tests.support import count, db_rows, follow_messages, messages, quick_user, row

NEW_ORG = {
    "slug": "Nova-Tech",
    "name": "Nova Tech GmbH",
    "country": "DE",
    "currency": "EUR",
    "tax_id": "DE123456789",
    "billing_email": "Billing@Nova.example",
    "billing_provider": "stripe",
    "tax_rate_percent": "19",
    "reverse_charge": "y",
}

APPLICATION = {
    "slug": "caspian",
    "name": "Caspian Energy LLC",
    "country": "AZ",
    "currency": "USD",
    "tax_id": "",
    "billing_email": "billing@caspian.example",
    "applicant_name": "Leyla Aliyeva",
    "applicant_email": "Leyla@Caspian.example",
    "note": "We need CAD seats.",
}


def org_row(app, slug: str) -> dict | None:
    with app.app_context():
        org_id = db.session.scalar(sa.select(Organisation.id).where(Organisation.slug == slug))
    return None if org_id is None else row(app, Organisation, org_id)


def status_action(client, slug: str, action: str, reason: str = ""):
    back = f"/council/organisations/{slug}"
    response = post_form(client, f"{back}/status/{action}", {"reason": reason}, token_from=back)
    assert response.status_code == 302
    assert response.headers["Location"] == back
    return follow_messages(client, response)


def apply(client, **changes):
    return post_form(client, "/apply", {**APPLICATION, **changes})


# ---------------------------------------------------------------- the council creates and edits


def test_council_creates_an_organisation_that_starts_active(app, signed_in):
    council = signed_in("council_admin")
    assert council.get("/council/organisations/new").status_code == 200
    response = post_form(council, "/council/organisations/new", NEW_ORG)
    assert response.status_code == 302
    assert response.headers["Location"] == "/council/organisations/nova-tech"
    assert "Nova Tech GmbH is created. Invite its first admin below." in follow_messages(
        council, response
    )
    org = org_row(app, "nova-tech")
    assert org["status"] == "active"
    assert (org["name"], org["country"], org["currency"]) == ("Nova Tech GmbH", "DE", "EUR")
    assert (org["tax_id"], org["billing_email"]) == ("DE123456789", "billing@nova.example")
    assert (org["billing_provider"], org["tax_rate_bp"], org["reverse_charge"]) == (
        "stripe",
        1900,
        True,
    )
    assert org["applicant_email"] is None


def test_council_edits_an_organisation_but_not_its_slug(app, make_org, signed_in):
    org = make_org("acme", tax_id="OLD-1", tax_rate_bp=2000)
    council = signed_in("council_admin")
    path = f"/council/organisations/{org.slug}/edit"
    page = council.get(path).get_data(as_text=True)
    assert 'value="20.00"' in page  # the tax rate shown in percent
    response = post_form(
        council,
        path,
        {
            "slug": "renamed-slug",
            "name": "Acme Europe SE",
            "country": "FR",
            "currency": "CHF",
            "tax_id": "",
            "billing_email": "ap@acme.example",
            "billing_provider": "stripe",
            "tax_rate_percent": "7.5",
        },
    )
    assert response.headers["Location"] == "/council/organisations/acme"
    assert "Organisation saved." in follow_messages(council, response)
    after = row(app, Organisation, org.id)
    assert after["slug"] == "acme"
    assert (after["name"], after["country"], after["currency"]) == ("Acme Europe SE", "FR", "CHF")
    assert (after["tax_id"], after["billing_email"]) == (None, "ap@acme.example")
    assert (after["billing_provider"], after["tax_rate_bp"], after["reverse_charge"]) == (
        "stripe",
        750,
        False,
    )
    assert org_row(app, "renamed-slug") is None


# ---------------------------------------------------------------- the status lifecycle


def test_the_full_lifecycle(app, make_org, make_user, signed_in):
    org = make_org("acme", name="Acme GmbH")
    member = make_user("member", org)
    council = signed_in("council_admin")

    shown = status_action(council, org.slug, "suspend", "Unpaid membership fee")
    assert "Acme GmbH is now suspended." in shown
    after = row(app, Organisation, org.id)
    assert (after["status"], after["status_reason"]) == ("suspended", "Unpaid membership fee")
    refused = login(app.test_client(), member)
    assert refused.status_code == 401
    assert "Reason: Unpaid membership fee." in messages(refused)[0]

    assert "Acme GmbH is now active." in status_action(council, org.slug, "reactivate")
    after = row(app, Organisation, org.id)
    assert (after["status"], after["status_reason"]) == ("active", None)
    assert login(app.test_client(), member).status_code == 302

    assert "Acme GmbH is now closed." in status_action(council, org.slug, "close", "Left")
    after = row(app, Organisation, org.id)
    assert (after["status"], after["status_reason"]) == ("closed", "Left")
    assert login(app.test_client(), member).status_code == 401
    detail = council.get(f"/council/organisations/{org.slug}").get_data(as_text=True)
    assert "/status/" not in detail  # a closed organisation offers no actions


def test_suspended_organisations_can_be_closed(app, make_org, signed_in):
    org = make_org(status="suspended")
    council = signed_in("council_admin")
    status_action(council, org.slug, "close")
    assert row(app, Organisation, org.id)["status"] == "closed"


# status -> actions that do not apply to it
INVALID = {
    "pending": ("suspend", "reactivate", "close"),
    "active": ("approve", "decline", "reactivate"),
    "suspended": ("approve", "decline", "suspend"),
    "closed": ("approve", "decline", "suspend", "reactivate", "close"),
}


def _pending_org(app, slug: str):
    from portal.tenancy.services import organisation_apply

    with app.app_context():
        organisation_apply(
            db.session,
            actor=SYSTEM,
            data={**APPLICATION, "slug": slug, "applicant_email": f"boss@{slug}.example"},
        )
        db.session.commit()


@pytest.mark.parametrize("status", list(INVALID))
def test_invalid_transitions_are_refused_and_change_nothing(
    app, make_org, signed_in, mailbox, status
):
    slug = f"in-{status}"
    if status == "pending":
        _pending_org(app, slug)
    else:
        make_org(slug, name="Stuck Org", status=status)
    council = signed_in("council_admin")
    before = db_rows(app)
    for action in INVALID[status]:
        shown = status_action(council, slug, action)
        assert any(f"is {status}; you cannot {action} it." in m for m in shown), (action, shown)
    assert db_rows(app) == before
    assert mailbox == []
    response = post_form(
        council, f"/council/organisations/{slug}/status/delete", {}, token_from="/council"
    )
    assert response.status_code == 404


# ---------------------------------------------------------------- the public application


def test_an_application_starts_pending_and_approval_mails_the_applicant(app, signed_in, mailbox):
    visitor = app.test_client()
    assert visitor.get("/apply").status_code == 200
    response = apply(visitor)
    assert response.status_code == 200
    assert "your application is in" in response.get_data(as_text=True)
    assert "leyla@caspian.example" in response.get_data(as_text=True).lower()
    org = org_row(app, "caspian")
    assert org["status"] == "pending"
    assert (org["applicant_name"], org["applicant_email"]) == (
        "Leyla Aliyeva",
        "leyla@caspian.example",
    )
    assert org["application_note"] == "We need CAD seats."
    assert mailbox == []

    council = signed_in("council_admin")
    assert "Caspian Energy LLC" in council.get("/council").get_data(as_text=True)
    shown = status_action(council, "caspian", "approve")
    assert (
        "Caspian Energy LLC is now active. "
        "An invitation to leyla@caspian.example is queued to be mailed."
    ) in shown
    assert row(app, Organisation, org["id"])["status"] == "active"
    assert [m["To"] for m in mailbox] == ["leyla@caspian.example"]
    body = mailbox[0].get_body(preferencelist=("plain",)).get_content()
    assert "organisation admin of Caspian Energy LLC" in body

    applicant = app.test_client()
    response = post_form(
        applicant,
        mail_link(mailbox[0]),
        {"name": "Leyla Aliyeva", "password": "a long enough passphrase"},
    )
    assert response.headers["Location"] == "/org"
    assert applicant.get("/org").status_code == 200
    with app.app_context():
        user = db.session.scalar(sa.select(User).where(User.email == "leyla@caspian.example"))
        assert (user.role, user.organisation_id) == ("org_admin", org["id"])


def test_declining_an_application_closes_it_without_mail(app, signed_in, mailbox):
    _pending_org(app, "declined")
    council = signed_in("council_admin")
    shown = status_action(council, "declined", "decline", "Not a member company")
    assert any("is now closed" in m for m in shown)
    assert org_row(app, "declined")["status"] == "closed"
    assert mailbox == []


def test_approving_when_the_applicant_already_has_an_account(app, make_org, signed_in, mailbox):
    """The organisation is approved; no invitation can go to an existing account."""
    _pending_org(app, "second")
    quick_user(app, "member", make_org(), email="boss@second.example")
    council = signed_in("council_admin")
    shown = status_action(council, "second", "approve")
    assert "Caspian Energy LLC is now active." in shown
    assert any("boss@second.example already has an account" in m for m in shown), shown
    assert org_row(app, "second")["status"] == "active"
    assert mailbox == []
    assert count(app, Invitation) == 0


# ---------------------------------------------------------------- bad input on every form

BAD_ORGANISATION_INPUT = [
    ({"name": ""}, "name", "This field is required."),
    ({"name": "   "}, "name", "This field is required."),
    ({"name": "x" * 201}, "name", "Field cannot be longer than 200 characters."),
    ({"billing_email": ""}, "billing_email", "This field is required."),
    ({"billing_email": "not-an-email"}, "billing_email", "Enter a valid email address"),
    ({"billing_email": "a@b"}, "billing_email", "Enter a valid email address"),
    ({"country": ""}, "country", "This field is required."),
    ({"country": "XX"}, "country", "Choose a country (ISO 3166-1 two-letter code, e.g. DE)."),
    ({"currency": ""}, "currency", "This field is required."),
    ({"currency": "EURO"}, "currency", "Choose a currency (ISO 4217 code, e.g. EUR)."),
    ({"currency": "XAU"}, "currency", "Choose a currency (ISO 4217 code, e.g. EUR)."),
    ({"tax_id": "T" * 65}, "tax_id", "Field cannot be longer than 64 characters."),
]


def _field_error(response, field: str) -> str:
    """The error text shown beside a field."""
    match = re.search(
        rf'id="{field}-error" class="field-error">([^<]*)<', response.get_data(as_text=True)
    )
    assert match, f"no error beside {field}"
    return match.group(1)


def test_bad_input_on_the_new_organisation_form(app, make_org, signed_in):
    make_org("taken")
    council = signed_in("council_admin")
    cases = [
        *BAD_ORGANISATION_INPUT,
        ({"slug": ""}, "slug", "This field is required."),
        ({"slug": "ab"}, "slug", "Field must be between 3 and 63 characters long."),
        ({"slug": "Bad Slug!"}, "slug", "Use lower-case letters, digits and single hyphens"),
        ({"slug": "taken"}, "slug", "This slug is taken; choose another."),
        ({"slug": "TAKEN"}, "slug", "This slug is taken; choose another."),
        ({"tax_rate_percent": "101"}, "tax_rate_percent", "Number must be between 0 and 100."),
        ({"tax_rate_percent": "abc"}, "tax_rate_percent", "Not a valid decimal value."),
        ({"billing_provider": "paypal"}, "billing_provider", "Not a valid choice."),
    ]
    token = csrf_token(council, "/council/organisations/new")
    before = db_rows(app)
    for change, field, message in cases:
        data = {**NEW_ORG, **change, "csrf_token": token}
        response = council.post("/council/organisations/new", data=data)
        assert response.status_code == 400, change
        assert message in _field_error(response, field), change
    assert db_rows(app) == before


def test_bad_input_on_the_edit_form(app, make_org, signed_in):
    org = make_org("acme")
    council = signed_in("council_admin")
    path = f"/council/organisations/{org.slug}/edit"
    token = csrf_token(council, path)
    before = db_rows(app)
    for change, field, message in BAD_ORGANISATION_INPUT:
        data = {**NEW_ORG, "slug": "acme", **change, "csrf_token": token}
        response = council.post(path, data=data)
        assert response.status_code == 400, change
        assert message in _field_error(response, field), change
    assert db_rows(app) == before


def test_bad_input_on_the_application_form(app, make_org):
    make_org("taken")
    visitor = app.test_client()
    cases = [
        *BAD_ORGANISATION_INPUT,
        ({"slug": "taken"}, "slug", "This slug is taken; choose another."),
        ({"slug": "-x-"}, "slug", "Use lower-case letters, digits and single hyphens"),
        ({"applicant_name": ""}, "applicant_name", "This field is required."),
        ({"applicant_email": "leyla"}, "applicant_email", "Enter a valid email address"),
        ({"note": "n" * 2001}, "note", "Field cannot be longer than 2000 characters."),
    ]
    token = csrf_token(visitor, "/apply")
    before = db_rows(app)
    for change, field, message in cases:
        response = visitor.post("/apply", data={**APPLICATION, **change, "csrf_token": token})
        assert response.status_code == 400, change
        assert message in _field_error(response, field), change
    assert db_rows(app) == before


def test_missing_or_stale_csrf_tokens_are_refused_with_a_message(app, make_org, signed_in):
    org = make_org("acme")
    council = signed_in("council_admin")
    stale = csrf_token(app.test_client(), "/login")  # another session's token
    visitor = app.test_client()
    visitor.get("/apply")
    before = db_rows(app)
    for client, path, data in (
        (council, "/council/organisations/new", NEW_ORG),
        (council, f"/council/organisations/{org.slug}/edit", {**NEW_ORG, "slug": "acme"}),
        (council, f"/council/organisations/{org.slug}/status/suspend", {"reason": "x"}),
        (visitor, "/apply", APPLICATION),
    ):
        for token in (None, stale):
            sent = dict(data)
            if token:
                sent["csrf_token"] = token
            response = client.post(path, data=sent)
            assert response.status_code == 400, path
            text = response.get_data(as_text=True)
            assert "nothing was saved" in text and "reload the page" in text, path
    assert db_rows(app) == before


# ---------------------------------------------------------------- the list


def test_the_list_searches_filters_and_pages(app, make_org, signed_in):
    for n in range(1, 28):
        make_org(f"bulk-{n:02d}", name=f"Bulk Company {n:02d}")
    make_org("zeta", name="Zeta Widgets", billing_email="invoices@zeta-widgets.example")
    make_org("paused", name="Paused Works", status="suspended")
    finance = signed_in("finance")

    def names(path: str) -> list[str]:
        page = finance.get(path)
        assert page.status_code == 200
        return re.findall(r'/council/organisations/[^"]+">([^<]+)</a>', page.get_data(as_text=True))

    first = names("/council/organisations")
    assert len(first) == 25
    assert first[0] == "Bulk Company 01"
    page_one = finance.get("/council/organisations").get_data(as_text=True)
    assert "Page 1 of 2 (29 in all)" in page_one
    assert 'rel="next"' in page_one
    second = names("/council/organisations?page=2")
    assert second == ["Bulk Company 26", "Bulk Company 27", "Paused Works", "Zeta Widgets"]
    assert not set(first) & set(second)
    assert names("/council/organisations?page=99") == []

    assert names("/council/organisations?q=zeta") == ["Zeta Widgets"]
    assert names("/council/organisations?q=INVOICES@ZETA") == ["Zeta Widgets"]  # billing email
    assert names("/council/organisations?q=bulk-07") == ["Bulk Company 07"]  # slug
    assert names("/council/organisations?q=100%25") == []  # a literal %, not a wildcard
    assert names("/council/organisations?status=suspended") == ["Paused Works"]
    assert names("/council/organisations?status=pending") == []
    assert names("/council/organisations?status=active&q=zeta") == ["Zeta Widgets"]
    assert len(names("/council/organisations?status=bogus")) == 25  # an unknown status: all
    bulk_two = finance.get("/council/organisations?q=bulk&page=2").get_data(as_text=True)
    assert "Page 2 of 2 (27 in all)" in bulk_two
    assert "q=bulk" in bulk_two  # the pager keeps the search


# ---------------------------------------------------------------- the organisation's own admin


def test_an_org_admin_edits_only_name_tax_id_and_billing_email(app, make_org, signed_in):
    org = make_org("acme", tax_rate_bp=1900)
    admin = signed_in("org_admin", org)
    before = row(app, Organisation, org.id)
    response = post_form(
        admin,
        "/org/profile",
        {
            "name": "Acme Holding GmbH",
            "tax_id": "DE999",
            "billing_email": "AP@acme.example",
            "slug": "hijack",
            "country": "US",
            "currency": "USD",
            "billing_provider": "stripe",
            "tax_rate_bp": "0",
            "tax_rate_percent": "0",
            "reverse_charge": "y",
            "status": "closed",
        },
    )
    assert response.headers["Location"] == "/org/profile"
    assert "Profile saved." in follow_messages(admin, response)
    after = row(app, Organisation, org.id)
    assert (after["name"], after["tax_id"], after["billing_email"]) == (
        "Acme Holding GmbH",
        "DE999",
        "ap@acme.example",
    )
    unchanged = ("slug", "country", "currency", "billing_provider", "tax_rate_bp")
    assert {k: after[k] for k in unchanged} == {k: before[k] for k in unchanged}
    assert (after["reverse_charge"], after["status"]) == (False, "active")


def test_bad_input_on_the_org_profile_form(app, make_org, signed_in):
    org = make_org("acme")
    admin = signed_in("org_admin", org)
    before = db_rows(app)
    for change, field, message in (
        ({"name": ""}, "name", "This field is required."),
        ({"name": "x" * 201}, "name", "Field cannot be longer than 200 characters."),
        ({"billing_email": "nope"}, "billing_email", "Enter a valid email address"),
        ({"tax_id": "T" * 65}, "tax_id", "Field cannot be longer than 64 characters."),
    ):
        data = {"name": "Acme", "billing_email": "b@acme.example", **change}
        response = post_form(admin, "/org/profile", data)
        assert response.status_code == 400, change
        assert message in _field_error(response, field), change
    assert db_rows(app) == before


def test_the_service_keeps_council_fields_from_org_admins(app, make_org):
    from portal.kernel.actor import Actor
    from portal.kernel.errors import NotFound, PermissionDenied
    from portal.tenancy.services import organisation_update

    org = make_org("acme")
    other = make_org("other")
    admin = quick_user(app, "org_admin", org, password=False)
    before = db_rows(app)
    with app.app_context():
        actor = Actor.for_user(db.session.get(User, admin.id))
        own = db.session.get(Organisation, org.id)
        for data in ({"country": "FR"}, {"tax_rate_bp": 0}, {"name": "x", "currency": "USD"}):
            with pytest.raises(PermissionDenied):
                organisation_update(db.session, actor=actor, organisation=own, data=data)
            db.session.rollback()
        with pytest.raises(NotFound):  # another organisation's: as if it did not exist
            organisation_update(
                db.session,
                actor=actor,
                organisation=db.session.get(Organisation, other.id),
                data={"name": "Hijacked"},
            )
        db.session.rollback()
    assert db_rows(app) == before


def test_org_dashboard_shows_seats_requests_idle_seats_and_what_is_owed(app, make_org, make_user):
    import datetime as dt

    from portal.catalogue.models import Product
    from portal.db import db
    from portal.kernel.clock import now_utc
    from portal.seats import services as seats
    from portal.tenancy.models import Organisation
    from tests.conftest import SYSTEM, login

    org = make_org("glance")
    admin = make_user("org_admin", org)
    idle = make_user("member", org)
    other = make_org("elsewhere")
    with app.app_context():
        from portal.catalogue.services import (
            pool_create,
            price_create,
            product_create,
            vendor_create,
        )

        vendor_create(db.session, actor=SYSTEM, data={"slug": "glance-soft", "name": "Glance"})
        product_create(
            db.session,
            actor=SYSTEM,
            data={"sku": "glance", "vendor": "glance-soft", "name": "Glance"},
        )
        today = now_utc().date()
        pool_create(
            db.session,
            actor=SYSTEM,
            data={
                "product": "glance",
                "capacity": 4,
                "starts_on": today - dt.timedelta(days=1),
                "ends_on": today + dt.timedelta(days=30),
                "unit_cost": {"amount": 1, "currency": "EUR"},
            },
        )
        price_create(
            db.session,
            actor=SYSTEM,
            data={"product": "glance", "currency": "EUR", "model": "seat", "unit_amount": 100},
        )
        product = db.session.scalar(sa.select(Product))
        sub = seats.subscription_create(
            db.session,
            actor=SYSTEM,
            organisation=db.session.get(Organisation, org.id),
            product=product,
            quantity=3,
        ).subscription
        seat = seats.seat_assign(db.session, actor=SYSTEM, subscription=sub, user_email=idle.email)
        seat.assigned_at = now_utc() - dt.timedelta(days=60)
        seats.subscription_create(
            db.session,
            actor=SYSTEM,
            organisation=db.session.get(Organisation, other.id),
            product=product,
            quantity=1,
        )
        db.session.commit()
    client = app.test_client()
    login(client, admin)
    page = client.get("/org").get_data(as_text=True)
    assert "<strong>1 / 3</strong>seats assigned / reserved" in page
    assert "<strong>1</strong>idle seat<" in page
    assert "<strong>1</strong>subscription<" in page
    assert "0 open invoices" in page


def test_only_approving_an_application_invites_its_applicant(app, make_org, mailbox):
    """The service behind the status buttons: approval invites; reactivation and the rest do not."""
    from portal.identity.invitations import organisation_change_status
    from portal.tenancy.models import OrganisationStatus

    _pending_org(app, "service")
    with app.app_context():
        org = db.session.scalar(sa.select(Organisation).where(Organisation.slug == "service"))
        change = organisation_change_status(
            db.session, actor=SYSTEM, organisation=org, to_status="active", action="approve"
        )
        db.session.commit()
        assert change.organisation.status is OrganisationStatus.ACTIVE
        assert (change.invited, change.not_invited) == ("boss@service.example", None)
        for to_status in (OrganisationStatus.SUSPENDED, OrganisationStatus.ACTIVE):
            change = organisation_change_status(
                db.session, actor=SYSTEM, organisation=org, to_status=to_status
            )
            db.session.commit()
            assert (change.invited, change.not_invited) == (None, None)
    assert [m["To"] for m in mailbox] == ["boss@service.example"]
    assert count(app, Invitation) == 1


def test_approval_stands_when_the_applicant_already_has_an_account(app, make_org, mailbox):
    from portal.identity.invitations import organisation_change_status

    _pending_org(app, "taken")
    quick_user(app, "member", make_org(), email="boss@taken.example")
    with app.app_context():
        org = db.session.scalar(sa.select(Organisation).where(Organisation.slug == "taken"))
        change = organisation_change_status(
            db.session, actor=SYSTEM, organisation=org, to_status="active", action="approve"
        )
        db.session.commit()
        assert change.invited is None
        assert change.not_invited == "boss@taken.example already has an account."
    assert org_row(app, "taken")["status"] == "active"
    assert mailbox == [] and count(app, Invitation) == 0
