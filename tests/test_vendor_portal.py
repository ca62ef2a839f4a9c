"""The vendor portal (issue 15, SPEC 8.1): a vendor admin's own vendor, end to end.

Vendor admins are invited by a council admin from the vendor's council page, sign in with
a password, and see and change only their own vendor: its profile, service status and
incidents, its products' seat counts (sums, never people), its usage-reporting health
(counted at ingest, ``usage_report_days``) and its API tokens.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid

import pytest
import sqlalchemy as sa

from portal.api.models import ApiToken
from portal.audit.models import AuditEvent
from portal.catalogue.models import Vendor
from portal.db import db
from portal.identity.models import Invitation, User
from portal.kernel.clock import now_utc
from portal.metering.models import UsageReportDay
from portal.suppliers.models import Incident, IncidentUpdate
from tests.conftest import SYSTEM, login, mail_link, post_form
from tests.support import count, follow_messages, form_post, messages, row


@pytest.fixture
def world(app, make_org, make_product, make_user, clock):
    """Two vendors with a product each; an organisation holding 3 seats of the first's
    product, one assigned to a named member; an admin of each vendor."""
    from portal.catalogue.models import Product
    from portal.seats.services import seat_assign, subscription_create
    from portal.tenancy.models import Organisation

    org = make_org("buyer-org")
    mine = make_product(20, sku="cad-suite", vendor="acme-soft", vendor_name="Acme Soft")
    theirs = make_product(5, sku="other-tool", vendor="rival-soft", vendor_name="Rival Soft")
    member = make_user("member", org, email="secret.person@buyer-org.example")
    with app.app_context():
        outcome = subscription_create(
            db.session,
            actor=SYSTEM,
            organisation=db.session.get(Organisation, org.id),
            product=db.session.get(Product, mine.id),
            quantity=3,
            starts_on=now_utc().date() - dt.timedelta(days=10),
        )
        seat_assign(
            db.session,
            actor=SYSTEM,
            subscription=outcome.subscription,
            user_email=member.email,
        )
        db.session.commit()
        subscription_id = outcome.subscription.id
    return {
        "org": org,
        "mine": mine,
        "theirs": theirs,
        "member": member,
        "subscription": subscription_id,
        "admin": make_user("vendor_admin", vendor="acme-soft"),
        "rival_admin": make_user("vendor_admin", vendor="rival-soft"),
    }


def _vendor(app, slug: str) -> Vendor:
    with app.app_context():
        vendor = db.session.scalar(sa.select(Vendor).where(Vendor.slug == slug))
        db.session.expunge_all()
        return vendor


def _signed_in(app, user):
    client = app.test_client()
    response = login(client, user)
    assert response.status_code == 302, response.get_data(as_text=True)
    client.user = user
    return client


# ---------------------------------------------------------------- signing in, the pages


def test_a_vendor_admin_signs_in_to_the_vendor_portal_and_sees_its_pages(app, world):
    client = app.test_client()
    response = login(client, world["admin"])
    assert response.headers["Location"].endswith("/vendor")
    for path in (
        "/vendor",
        "/vendor/profile",
        "/vendor/status",
        "/vendor/products",
        "/vendor/usage-health",
        "/vendor/tokens",
        "/profile",
        "/account/security",
        "/account/sessions",
    ):
        response = client.get(path)
        assert response.status_code == 200, (path, response.status_code)
    home = client.get("/vendor").get_data(as_text=True)
    assert "Acme Soft" in home
    assert "Rival Soft" not in home


def test_other_roles_get_403_on_the_vendor_portal(app, world, signed_in):
    for role, org in (
        ("council_admin", None),
        ("finance", None),
        ("org_admin", world["org"]),
        ("member", world["org"]),
    ):
        client = signed_in(role, org)
        for path in ("/vendor", "/vendor/status", "/vendor/tokens", "/vendor/products"):
            assert client.get(path).status_code == 403, (role, path)
    anonymous = app.test_client().get("/vendor")
    assert anonymous.status_code == 302 and "/login" in anonymous.headers["Location"]


def test_a_vendor_admin_resets_a_forgotten_password_and_enrols_an_authenticator(
    app, world, mailbox
):
    from tests.conftest import give_second_factor

    user = world["admin"]
    post_form(app.test_client(), "/password/forgot", {"email": user.email})
    (message,) = [m for m in mailbox if m["To"] == user.email]
    link = mail_link(message)
    reset = app.test_client()
    assert reset.get(link).status_code == 200
    assert post_form(reset, link, {"password": "a new vendor passphrase"}).status_code == 302
    assert login(app.test_client(), user, password="a new vendor passphrase").status_code == 302
    # With an authenticator app they are asked for its code, then land in the vendor portal.
    give_second_factor(app, user.id)
    client = app.test_client()
    response = login(client, user, password="a new vendor passphrase")
    assert response.status_code == 302 and response.headers["Location"].endswith("/vendor")


# ---------------------------------------------------------------- tenant probes


PEOPLE_AND_MONEY = (
    "/council",
    "/council/organisations",
    "/council/organisations/buyer-org",
    "/council/organisations/buyer-org/users",
    "/council/staff",
    "/council/vendors",
    "/council/vendors/acme-soft",
    "/council/tokens",
    "/council/usage",
    "/finance",
    "/finance/exports",
    "/org",
    "/org/users",
    "/org/subscriptions",
    "/org/invoices",
    "/org/usage",
    "/org/tokens",
    "/audit",
)


def test_a_vendor_admin_never_reaches_organisations_people_or_invoices(app, world):
    client = _signed_in(app, world["admin"])
    for path in PEOPLE_AND_MONEY:
        assert client.get(path).status_code in (403, 404), path
    for path in ("/vendor", "/vendor/products", "/vendor/usage-health", "/vendor/status"):
        html = client.get(path).get_data(as_text=True)
        assert world["member"].email not in html, path
        assert "buyer-org" not in html and "Buyer" not in html, path


def test_another_vendors_incident_and_token_are_not_found(app, world):
    from portal.api.services import token_create
    from portal.suppliers.services import open_incident

    with app.app_context():
        rival = db.session.scalar(sa.select(Vendor).where(Vendor.slug == "rival-soft"))
        incident = open_incident(
            db.session, SYSTEM, rival, title="Rival is down", impact="major", body="Down."
        )
        token, _plaintext = token_create(
            db.session, actor=SYSTEM, scope="vendor", vendor=rival, name="rival sync"
        )
        db.session.commit()
        incident_id, token_id = incident.id, token.id
    client = _signed_in(app, world["admin"])
    response = form_post(
        client,
        f"/vendor/incidents/{incident_id}/updates",
        {"body": "Not ours", "state": "resolved", "impact": ""},
        token_from="/vendor/status",
        prefix=f"update-{incident_id}",
    )
    assert response.status_code == 404
    response = post_form(
        client, f"/vendor/tokens/{token_id}/revoke", {}, token_from="/vendor/tokens"
    )
    assert response.status_code == 404
    assert row(app, ApiToken, token_id)["revoked_at"] is None
    assert count(app, IncidentUpdate, IncidentUpdate.incident_id == incident_id) == 1
    assert "rival sync" not in client.get("/vendor/tokens").get_data(as_text=True)
    assert "Rival is down" not in client.get("/vendor/status").get_data(as_text=True)


def test_a_vendor_token_works_only_on_its_own_vendor_in_the_api(app, world):
    from portal.api.services import token_create

    with app.app_context():
        acme = db.session.scalar(sa.select(Vendor).where(Vendor.slug == "acme-soft"))
        _token, plaintext = token_create(
            db.session, actor=SYSTEM, scope="vendor", vendor=acme, name="acme sync"
        )
        db.session.commit()
    client = app.test_client()
    headers = {"Authorization": f"Bearer {plaintext}"}
    body = {"service_status": "major_outage", "message": "Down"}
    theirs = client.put("/api/v1/vendors/rival-soft/service-status", json=body, headers=headers)
    assert theirs.status_code == 404
    assert theirs.headers["Content-Type"].startswith("application/problem+json")
    assert _vendor(app, "rival-soft").service_status == "operational"
    ours = client.put("/api/v1/vendors/acme-soft/service-status", json=body, headers=headers)
    assert ours.status_code == 200, ours.get_data(as_text=True)
    assert _vendor(app, "acme-soft").service_status == "major_outage"
    # People and money stay closed to a vendor token.
    for path in ("/api/v1/organisations", "/api/v1/invoices", "/api/v1/subscriptions"):
        assert client.get(path, headers=headers).status_code == 403, path


# ---------------------------------------------------------------- invitations by the council


def test_the_council_invites_a_vendor_admin_who_creates_an_account_of_that_vendor(
    app, world, signed_in, mailbox
):
    council = signed_in("council_admin")
    page = "/council/vendors/acme-soft"
    assert "Vendor admins" in council.get(page).get_data(as_text=True)
    response = form_post(
        council,
        f"{page}/admins/invite",
        {"email": "Ops@Acme.example"},
        token_from=page,
        prefix="admin",
    )
    assert response.headers["Location"].endswith(page)
    assert any("ops@acme.example" in m.lower() for m in follow_messages(council, response))
    (message,) = [m for m in mailbox if m["To"].lower() == "ops@acme.example"]
    text = message.get_body(("plain",)).get_content()
    assert "Acme Soft" in text and "vendor admin" in text.lower()
    link = mail_link(message)
    invitation = app.test_client()
    page_html = invitation.get(link).get_data(as_text=True)
    assert "Acme Soft" in page_html and "council staff" not in page_html
    response = post_form(
        invitation, link, {"name": "Olga Ops", "password": "a long vendor passphrase"}
    )
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/vendor")
    with app.app_context():
        user = db.session.scalar(sa.select(User).where(User.email == "ops@acme.example"))
        acme = db.session.scalar(sa.select(Vendor).where(Vendor.slug == "acme-soft"))
        assert (user.role, user.vendor_id, user.organisation_id) == ("vendor_admin", acme.id, None)
    assert invitation.get("/vendor").status_code == 200
    # The council's vendor page lists them; the staff page does not.
    assert "ops@acme.example" in council.get(page).get_data(as_text=True)
    assert "ops@acme.example" not in council.get("/council/staff").get_data(as_text=True)


@pytest.mark.parametrize("email", ["", "not an email", "x" * 300 + "@a.example"])
def test_a_bad_invitation_is_refused_beside_its_field_and_nothing_is_sent(
    app, world, signed_in, email
):
    council = signed_in("council_admin")
    page = "/council/vendors/acme-soft"
    before = count(app, Invitation)
    response = form_post(
        council, f"{page}/admins/invite", {"email": email}, token_from=page, prefix="admin"
    )
    assert response.status_code == 400
    assert messages(response)
    assert count(app, Invitation) == before


def test_only_council_admins_invite_and_deactivate_vendor_admins(app, world, signed_in):
    admin_id = world["admin"].id
    finance = signed_in("finance")
    page = "/council/vendors/acme-soft"
    assert "Vendor admins" not in finance.get(page).get_data(as_text=True)
    refused = [
        form_post(finance, f"{page}/admins/invite", {"email": "a@b.example"}, token_from=page),
        post_form(finance, f"{page}/admins/{admin_id}/deactivate", {}, token_from=page),
    ]
    vendor_admin = _signed_in(app, world["rival_admin"])
    refused.append(
        post_form(vendor_admin, f"{page}/admins/{admin_id}/deactivate", {}, token_from="/vendor")
    )
    assert [r.status_code for r in refused] == [403, 403, 403]
    assert count(app, Invitation) == 0
    assert row(app, User, admin_id)["is_active"] is True


def test_a_council_admin_deactivates_a_vendor_admin_after_a_confirm_step(app, world, signed_in):
    user = world["admin"]
    vendor_client = _signed_in(app, user)
    council = signed_in("council_admin")
    page = "/council/vendors/acme-soft"
    path = f"{page}/admins/{user.id}/deactivate"
    confirm = post_form(council, path, {}, token_from=page)
    assert confirm.status_code == 200 and "Deactivate" in confirm.get_data(as_text=True)
    assert row(app, User, user.id)["is_active"] is True
    done = post_form(council, path, {"confirmed": "1"}, token_from=page)
    assert done.status_code == 302
    assert row(app, User, user.id)["is_active"] is False
    # Their session ended; signing in again is refused.
    assert vendor_client.get("/vendor").status_code == 302
    refused = login(app.test_client(), user)
    assert refused.status_code == 401
    assert "Ask the council to restore it." in messages(refused)[0]
    # Another vendor's admin is not found under this vendor's page.
    other = post_form(
        council, f"{page}/admins/{world['rival_admin'].id}/deactivate", {}, token_from=page
    )
    assert other.status_code == 404


def test_a_vendor_admins_role_does_not_change_on_the_staff_pages(app, world, signed_in):
    council = signed_in("council_admin")
    user_id = world["admin"].id
    response = post_form(
        council,
        f"/council/staff/{user_id}/role",
        {"role": "council_admin"},
        token_from="/council/staff",
    )
    assert response.status_code in (302, 400, 404)
    assert row(app, User, user_id)["role"] == "vendor_admin"


# ---------------------------------------------------------------- profile


def test_a_vendor_admin_edits_its_profile_audited(app, world):
    client = _signed_in(app, world["admin"])
    response = post_form(
        client,
        "/vendor/profile",
        {
            "legal_name": "Acme Software GmbH",
            "website": "https://acme.example",
            "support_contact": "support@acme.example",
            "country": "de",
            "data_residency": "EU (Frankfurt)",
        },
    )
    assert response.status_code == 302
    vendor = _vendor(app, "acme-soft")
    assert (vendor.legal_name, vendor.country, vendor.data_residency) == (
        "Acme Software GmbH",
        "DE",
        "EU (Frankfurt)",
    )
    with app.app_context():
        event = db.session.scalar(
            sa.select(AuditEvent).where(AuditEvent.action == "vendor.profile_update")
        )
        assert event.actor_label == world["admin"].email
        assert event.after["legal_name"] == "Acme Software GmbH"
    assert _vendor(app, "rival-soft").legal_name is None


@pytest.mark.parametrize(
    "field, value",
    [
        ("country", "Germany"),
        ("website", "javascript:alert(1)"),
        ("legal_name", "x" * 201),
        ("data_residency", "EU\x00"),
    ],
)
def test_a_bad_profile_is_refused_beside_its_field_and_nothing_changes(app, world, field, value):
    client = _signed_in(app, world["admin"])
    before = row(app, Vendor, _vendor(app, "acme-soft").id)
    response = post_form(client, "/vendor/profile", {field: value})
    assert response.status_code == 400
    # A control character is refused for the whole form, before the view (portal.inputs).
    assert messages(response) or "control character" in response.get_data(as_text=True)
    assert row(app, Vendor, before["id"]) == before


# ---------------------------------------------------------------- status and incidents


def test_a_vendor_admin_sets_the_status_opens_and_resolves_an_incident(app, world):
    client = _signed_in(app, world["admin"])
    response = form_post(
        client,
        "/vendor/status",
        {"service_status": "degraded", "message": "Exports are slow"},
        token_from="/vendor/status",
        prefix="status",
    )
    assert response.status_code == 302
    vendor = _vendor(app, "acme-soft")
    assert (vendor.service_status, vendor.service_status_source) == ("degraded", "vendor")
    response = form_post(
        client,
        "/vendor/incidents",
        {"title": "Exports fail", "impact": "major", "body": "We are looking into it."},
        token_from="/vendor/status",
        prefix="incident",
    )
    assert response.status_code == 302
    with app.app_context():
        incident = db.session.scalar(sa.select(Incident).where(Incident.title == "Exports fail"))
        assert (incident.vendor_id, incident.state, incident.source) == (
            vendor.id,
            "investigating",
            "vendor",
        )
        incident_id = incident.id
    assert "Exports fail" in client.get("/vendor").get_data(as_text=True)
    response = form_post(
        client,
        f"/vendor/incidents/{incident_id}/updates",
        {"body": "Fixed.", "state": "resolved", "impact": ""},
        token_from="/vendor/status",
        prefix=f"update-{incident_id}",
    )
    assert response.status_code == 302
    incident = row(app, Incident, incident_id)
    assert incident["state"] == "resolved" and incident["resolved_at"] is not None
    assert count(app, IncidentUpdate, IncidentUpdate.incident_id == incident_id) == 2


@pytest.mark.parametrize(
    "path, prefix, data",
    [
        ("/vendor/status", "status", {"service_status": "on_fire", "message": ""}),
        ("/vendor/status", "status", {"service_status": "degraded", "message": "x" * 501}),
        ("/vendor/incidents", "incident", {"title": "", "impact": "major", "body": "b"}),
        ("/vendor/incidents", "incident", {"title": "t", "impact": "apocalyptic", "body": "b"}),
        ("/vendor/incidents", "incident", {"title": "t", "impact": "minor", "body": ""}),
    ],
)
def test_bad_status_and_incident_forms_are_refused_and_nothing_changes(
    app, world, path, prefix, data
):
    client = _signed_in(app, world["admin"])
    before = row(app, Vendor, _vendor(app, "acme-soft").id)
    response = form_post(client, path, data, token_from="/vendor/status", prefix=prefix)
    assert response.status_code == 400
    assert messages(response)
    assert row(app, Vendor, before["id"]) == before
    assert count(app, Incident) == 0


# ---------------------------------------------------------------- products and seats


def test_products_show_pools_and_seat_counts_never_people(app, world):
    client = _signed_in(app, world["admin"])
    html = client.get("/vendor/products").get_data(as_text=True)
    assert "Product cad-suite" in html and "other-tool" not in html
    # capacity 20, reserved 3, assigned 1, free 17
    figures = [int(n) for n in _numbers_of_row(html, "cad-suite")]
    assert figures[:5] == [20, 3, 1, 17, 0]
    assert world["member"].email not in html and "buyer-org" not in html


def _numbers_of_row(html: str, sku: str) -> list[str]:
    import re

    start = html.index(f"<code>{sku}</code>")
    end = html.index("</tr>", start)
    return re.findall(r'<td class="num">([\d,\s\u00a0]+)</td>', html[start:end])


# ---------------------------------------------------------------- usage reporting health


def _batch(events: list[dict]) -> bytes:
    return json.dumps({"events": events}).encode()


def _event(org: str, product: str, *, key: str | None = None, **extra) -> dict:
    return {
        "idempotency_key": key or uuid.uuid4().hex,
        "organisation": org,
        "product": product,
        "meter": "api_calls",
        "quantity": 1,
        "occurred_at": (now_utc() - dt.timedelta(hours=1)).isoformat(),
        **extra,
    }


def test_usage_health_counts_each_vendor_batch_by_day_and_rejection_code(app, world, clock):
    from portal.api.services import token_create

    with app.app_context():
        acme = db.session.scalar(sa.select(Vendor).where(Vendor.slug == "acme-soft"))
        _t, plaintext = token_create(
            db.session, actor=SYSTEM, scope="vendor", vendor=acme, name="usage"
        )
        _c, council_plaintext = token_create(db.session, actor=SYSTEM, scope="council", name="c")
        db.session.commit()
        acme_id = acme.id
    api = app.test_client()
    headers = {"Authorization": f"Bearer {plaintext}", "Content-Type": "application/json"}
    first = [
        _event("buyer-org", "cad-suite", key="k1"),
        _event("buyer-org", "cad-suite", key="k2"),
        _event("buyer-org", "cad-suite", key="k2"),  # twice in the batch: a duplicate
        _event("buyer-org", "other-tool"),  # not one of ours: invalid
        _event("buyer-org", "cad-suite", user_email="nobody@else.example"),  # not a person
    ]
    response = api.post("/api/v1/usage", data=_batch(first), headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert (response.json["accepted"], response.json["duplicates"]) == (2, 1)
    second = [_event("buyer-org", "cad-suite", key="k1"), _event("nowhere-org", "cad-suite")]
    response = api.post("/api/v1/usage", data=_batch(second), headers=headers)
    assert (response.json["accepted"], response.json["duplicates"]) == (0, 1)
    # A council token's batch is nobody's vendor health.
    council_headers = {**headers, "Authorization": f"Bearer {council_plaintext}"}
    api.post(
        "/api/v1/usage", data=_batch([_event("buyer-org", "cad-suite")]), headers=council_headers
    )
    with app.app_context():
        (day,) = db.session.scalars(sa.select(UsageReportDay)).all()
        assert (day.vendor_id, day.day) == (acme_id, now_utc().date())
        assert (day.batches, day.accepted, day.duplicates) == (2, 2, 2)
        assert day.rejected_by_code == {
            "invalid": 2,
            "no_subscription": 0,
            "not_organisation_person": 1,
        }
    # The next day is a row of its own.
    clock.advance(dt.timedelta(days=1))
    api.post("/api/v1/usage", data=_batch([_event("buyer-org", "cad-suite")]), headers=headers)
    assert count(app, UsageReportDay) == 2
    client = _signed_in(app, world["admin"])
    html = client.get("/vendor/usage-health").get_data(as_text=True)
    assert "not_organisation_person" in html and "invalid" in html
    assert "<strong>3</strong>" in html  # batches over the window
    # Another vendor's admin sees none of it.
    rival = _signed_in(app, world["rival_admin"])
    rival_html = rival.get("/vendor/usage-health").get_data(as_text=True)
    assert "not_organisation_person</code>" not in rival_html
    for bad in ("?days=-5", "?days=abc", "?days=99999999999999999999"):
        assert client.get("/vendor/usage-health" + bad).status_code == 200


# ---------------------------------------------------------------- API tokens


def test_a_vendor_admin_creates_a_token_shown_once_and_revokes_it(app, world):
    client = _signed_in(app, world["admin"])
    response = post_form(client, "/vendor/tokens", {"name": "Usage sync", "expires_in": "30"})
    assert response.status_code == 201
    assert response.headers["Cache-Control"] == "no-store"
    import re

    plaintext = re.search(r'value="(pk_v_[^"]+)"', response.get_data(as_text=True)).group(1)
    with app.app_context():
        token = db.session.scalar(sa.select(ApiToken).where(ApiToken.name == "Usage sync"))
        acme = db.session.scalar(sa.select(Vendor).where(Vendor.slug == "acme-soft"))
        assert (token.scope, token.vendor_id, token.organisation_id) == ("vendor", acme.id, None)
        token_id = token.id
    assert plaintext not in client.get("/vendor/tokens").get_data(as_text=True)
    api = app.test_client()
    headers = {"Authorization": f"Bearer {plaintext}"}
    assert api.get("/api/v1/catalogue", headers=headers).status_code == 200
    response = post_form(
        client, f"/vendor/tokens/{token_id}/revoke", {}, token_from="/vendor/tokens"
    )
    assert response.status_code == 302
    assert row(app, ApiToken, token_id)["revoked_at"] is not None
    assert api.get("/api/v1/catalogue", headers=headers).status_code == 401


@pytest.mark.parametrize(
    "data",
    [
        {"name": "", "expires_in": "30"},
        {"name": "x", "expires_in": "7000"},
        {"name": "x" * 201, "expires_in": "30"},
    ],
)
def test_a_bad_token_form_is_refused_and_nothing_is_made(app, world, data):
    client = _signed_in(app, world["admin"])
    response = post_form(client, "/vendor/tokens", data)
    assert response.status_code == 400
    assert count(app, ApiToken) == 0


def test_a_vendor_admin_cannot_make_a_council_token_through_the_service(app, world):
    from portal.api.services import token_create
    from portal.kernel.actor import Actor
    from portal.kernel.errors import NotFound, PermissionDenied

    with app.app_context():
        user = db.session.get(User, world["admin"].id)
        actor = Actor.person(user)
        rival = db.session.scalar(sa.select(Vendor).where(Vendor.slug == "rival-soft"))
        with pytest.raises(PermissionDenied):
            token_create(db.session, actor=actor, scope="council", name="sneaky")
        with pytest.raises(NotFound):
            token_create(db.session, actor=actor, scope="vendor", vendor=rival, name="sneaky")
        db.session.rollback()


# ---------------------------------------------------------------- the command line


def test_the_cli_invites_and_lists_a_vendors_admins(app, world, runner, mailbox):
    result = runner.invoke(
        args=["vendor-admin", "invite", "--vendor", "acme-soft", "--email", "cli@acme.example"]
    )
    assert result.exit_code == 0, result.output
    assert "cli@acme.example" in result.output
    assert any(m["To"] == "cli@acme.example" and "Acme Soft" in str(m) for m in mailbox)
    listing = runner.invoke(args=["vendor-admin", "list", "--vendor", "acme-soft"])
    assert listing.exit_code == 0
    assert world["admin"].email in listing.output and "cli@acme.example" in listing.output
    assert world["rival_admin"].email not in listing.output


@pytest.mark.parametrize(
    "args",
    [
        ["invite", "--vendor", "nobody", "--email", "a@b.example"],
        ["invite", "--vendor", "acme-soft", "--email", "not-an-email"],
        ["list", "--vendor", "nobody"],
    ],
)
def test_the_cli_refuses_bad_input_in_one_line(app, world, runner, args):
    result = runner.invoke(args=["vendor-admin", *args])
    assert result.exit_code != 0
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert count(app, Invitation) == 0


def test_a_stale_status_page_reading_is_shown_as_such(app, world):
    with app.app_context():
        vendor = db.session.scalar(sa.select(Vendor).where(Vendor.slug == "acme-soft"))
        vendor.status_page_url = "https://status.acme.example"
        vendor.status_poll_error = "timed out"
        db.session.commit()
    client = _signed_in(app, world["admin"])
    home = client.get("/vendor").get_data(as_text=True)
    assert "reading out of date" in home and "timed out" in home
    assert "reading out of date" in client.get("/vendor/status").get_data(as_text=True)
    rival = _signed_in(app, world["rival_admin"])
    assert "reading out of date" not in rival.get("/vendor").get_data(as_text=True)


# ---------------------------------------------------------------- the API


def _token(app, scope: str, vendor_slug: str | None = None) -> dict[str, str]:
    from portal.api.services import token_create

    with app.app_context():
        vendor = (
            db.session.scalar(sa.select(Vendor).where(Vendor.slug == vendor_slug))
            if vendor_slug
            else None
        )
        organisation = None
        if scope == "organisation":
            from portal.tenancy.selectors import organisation_by_slug

            organisation = organisation_by_slug(db.session, "buyer-org")
        _t, plaintext = token_create(
            db.session,
            actor=SYSTEM,
            scope=scope,
            vendor=vendor,
            organisation=organisation,
            name="t",
        )
        db.session.commit()
    return {"Authorization": f"Bearer {plaintext}"}


def test_the_api_gives_a_vendor_its_seat_counts_and_usage_health(app, world):
    api = app.test_client()
    acme = _token(app, "vendor", "acme-soft")
    seats = api.get("/api/v1/vendors/acme-soft/seats", headers=acme)
    assert seats.status_code == 200, seats.get_data(as_text=True)
    assert seats.json["data"] == [
        {
            "product": "cad-suite",
            "name": "Product cad-suite",
            "capacity": 20,
            "reserved": 3,
            "assigned": 1,
            "free": 17,
            "waiting": 0,
        }
    ]
    assert world["member"].email not in seats.get_data(as_text=True)
    batch = _batch([_event("buyer-org", "cad-suite"), _event("buyer-org", "other-tool")])
    api.post("/api/v1/usage", data=batch, headers={**acme, "Content-Type": "application/json"})
    health = api.get("/api/v1/vendors/acme-soft/usage-health?days=7", headers=acme)
    assert health.status_code == 200
    body = health.json
    assert (body["days"], body["batches"], body["accepted"], body["rejected"]) == (7, 1, 1, 1)
    assert body["rejected_by_code"] == {
        "invalid": 1,
        "no_subscription": 0,
        "not_organisation_person": 0,
    }
    assert [d["day"] for d in body["data"]] == [now_utc().date().isoformat()]
    council = _token(app, "council")
    assert api.get("/api/v1/vendors/acme-soft/usage-health", headers=council).status_code == 200


def test_the_api_refuses_another_vendor_and_organisations_and_bad_input(app, world):
    api = app.test_client()
    rival = _token(app, "vendor", "rival-soft")
    org = _token(app, "organisation")
    for path in ("/api/v1/vendors/acme-soft/seats", "/api/v1/vendors/acme-soft/usage-health"):
        theirs = api.get(path, headers=rival)
        assert theirs.status_code == 404, path
        assert theirs.headers["Content-Type"].startswith("application/problem+json")
        assert api.get(path, headers=org).status_code == 403, path
        assert api.get(path).status_code == 401, path
    acme = _token(app, "vendor", "acme-soft")
    for days in ("0", "91", "abc", "-1", "9" * 30):
        bad = api.get(f"/api/v1/vendors/acme-soft/usage-health?days={days}", headers=acme)
        assert bad.status_code == 422, days
        assert "days" in bad.json["errors"]
    assert api.get("/api/v1/vendors/nobody/seats", headers=acme).status_code == 404


def test_a_council_admin_resets_a_vendor_admins_lost_second_factors(app, world, signed_in):
    from portal.identity.models import TotpFactor
    from tests.conftest import give_second_factor

    user = world["admin"]
    give_second_factor(app, user.id)
    council = signed_in("council_admin")
    page = f"/council/vendors/acme-soft/admins/{user.id}/second-factors"
    assert page in council.get("/council/vendors/acme-soft").get_data(as_text=True)
    html = council.get(page).get_data(as_text=True)
    assert user.email in html and "Reset" in html
    done = post_form(council, f"{page}/reset", {}, token_from=page)
    assert done.status_code == 302
    assert count(app, TotpFactor, TotpFactor.user_id == user.id) == 0
    # Not under another vendor's page; not for finance.
    other = f"/council/vendors/rival-soft/admins/{user.id}/second-factors"
    assert council.get(other).status_code == 404
    assert signed_in("finance").get(page).status_code == 403
