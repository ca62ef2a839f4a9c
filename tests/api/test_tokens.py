"""API tokens: shown once, stored hashed, revoked, expired, refused when their owner is not live."""

from __future__ import annotations

import datetime as dt
import re

import pytest
import sqlalchemy as sa

from portal.api.models import ApiToken
from portal.audit.models import AuditEvent
from portal.db import db
from portal.identity.security import token_digest
from portal.kernel.clock import now_utc
from tests.api.conftest import assert_problem
from tests.conftest import SYSTEM, post_form

TOKEN_RE = re.compile(r'value="(pk_[a-z]_[A-Za-z0-9_-]+)"')


def _token_row(app, plaintext: str) -> ApiToken:
    with app.app_context():
        token = db.session.scalar(
            sa.select(ApiToken).where(ApiToken.token_hash == token_digest(plaintext))
        )
        assert token is not None
        db.session.expunge(token)
        return token


def test_a_token_is_stored_only_as_its_digest_with_a_visible_prefix(app, make_token, make_org):
    org = make_org()
    plaintext = make_token("organisation", org=org, name="sync")
    assert plaintext.startswith("pk_o_") and len(plaintext) > 40
    token = _token_row(app, plaintext)
    assert token.prefix == plaintext[:12]
    assert token.token_hash == token_digest(plaintext) != plaintext
    with app.app_context():
        for column in ApiToken.__table__.columns:
            values = db.session.scalars(sa.select(column)).all()
            assert plaintext not in [str(v) for v in values], column.name
        event = db.session.scalar(
            sa.select(AuditEvent).where(AuditEvent.action == "api_token.create")
        )
        assert event is not None and plaintext not in str(event.after)
        assert event.organisation_id == org.id


def test_each_scope_gets_its_own_letter(make_token, make_org, make_vendor):
    assert make_token("council").startswith("pk_c_")
    assert make_token("organisation", org=make_org()).startswith("pk_o_")
    assert make_token("vendor", vendor=make_vendor()).startswith("pk_v_")


def test_missing_and_malformed_authorization_is_401_with_a_bearer_challenge(client):
    for headers in ({}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer "}):
        response = client.get("/api/v1/organisations", headers=headers)
        assert_problem(response, 401, "unauthorized")
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_an_unknown_token_is_401_invalid_token(client):
    response = client.get(
        "/api/v1/organisations", headers={"Authorization": "Bearer pk_c_not-a-real-token"}
    )
    assert_problem(response, 401, "unauthorized")
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


def test_a_revoked_token_stops_working_at_once(app, api):
    council = api("council")
    assert council.get("/organisations").status_code == 200
    from portal.api.services import token_revoke

    with app.app_context():
        token = db.session.scalar(
            sa.select(ApiToken).where(ApiToken.token_hash == token_digest(council.token))
        )
        token_revoke(db.session, actor=SYSTEM, token=token)
        db.session.commit()
    assert_problem(council.get("/organisations"), 401)


def test_an_expired_token_is_refused(app, api):
    council = api("council", expires_at=now_utc() + dt.timedelta(minutes=5))
    assert council.get("/organisations").status_code == 200
    with app.app_context():
        db.session.execute(
            sa.update(ApiToken).values(expires_at=now_utc() - dt.timedelta(seconds=1))
        )
        db.session.commit()
    assert_problem(council.get("/organisations"), 401)


def test_an_expiry_in_the_past_is_a_validation_error(app, make_token):
    from portal.kernel.errors import ValidationFailed

    try:
        make_token("council", expires_at=now_utc() - dt.timedelta(days=1))
    except ValidationFailed as error:
        assert "expires_at" in error.errors
    else:  # pragma: no cover
        raise AssertionError("expected ValidationFailed")


def test_tokens_of_a_suspended_organisation_or_vendor_are_refused(app, api, make_org, make_vendor):
    from portal.catalogue.models import Vendor
    from portal.tenancy.models import Organisation
    from portal.tenancy.services import organisation_transition

    org = make_org()
    vendor = make_vendor()
    org_client = api("organisation", org=org)
    vendor_client = api("vendor", vendor=vendor)
    assert org_client.get("/catalogue").status_code == 200
    assert vendor_client.get("/catalogue").status_code == 200
    with app.app_context():
        organisation_transition(
            db.session,
            actor=SYSTEM,
            organisation=db.session.get(Organisation, org.id),
            to_status="suspended",
        )
        db.session.get(Vendor, vendor.id).status = "suspended"
        db.session.commit()
    assert_problem(org_client.get("/catalogue"), 401)
    assert_problem(vendor_client.get("/catalogue"), 401)


def test_a_vendor_under_review_keeps_its_token(app, api, make_vendor):
    vendor_client = api("vendor", vendor=make_vendor(status="under_review"))
    assert vendor_client.get("/catalogue").status_code == 200


def test_last_used_is_written_at_most_once_a_minute(app, api):
    council = api("council")
    council.get("/organisations")
    first = _token_row(app, council.token).last_used_at
    assert first is not None
    council.get("/organisations")
    assert _token_row(app, council.token).last_used_at == first
    with app.app_context():
        db.session.execute(sa.update(ApiToken).values(last_used_at=first - dt.timedelta(minutes=2)))
        db.session.commit()
    council.get("/organisations")
    assert _token_row(app, council.token).last_used_at > first


def test_org_admins_create_only_their_own_organisations_tokens(app, make_org, make_user):
    from portal.api.services import token_create
    from portal.identity.models import User
    from portal.kernel.actor import Actor
    from portal.kernel.errors import NotFound, PermissionDenied
    from portal.tenancy.models import Organisation

    mine, other = make_org(), make_org()
    admin = make_user("org_admin", mine)
    with app.app_context():
        actor = Actor.for_user(db.session.get(User, admin.id))
        for scope, org in (("organisation", other), ("council", None)):
            try:
                token_create(
                    db.session,
                    actor=actor,
                    scope=scope,
                    organisation=db.session.get(Organisation, org.id) if org else None,
                    name="x",
                )
            except (PermissionDenied, NotFound):  # another organisation's: not found
                db.session.rollback()
            else:  # pragma: no cover
                raise AssertionError(f"org admin created a {scope} token")


# ---------------------------------------------------------------- pages


def test_council_admin_creates_a_token_that_is_shown_once(app, signed_in, make_org):
    make_org("acme")
    client = signed_in("council_admin")
    page = client.get("/council/tokens")
    assert page.status_code == 200
    response = post_form(
        client,
        "/council/tokens",
        {
            "name": "Billing sync",
            "scope": "organisation",
            "organisation": "acme",
            "vendor": "",
            "expires_in": "30",
        },
    )
    assert response.status_code == 201
    assert response.headers["Cache-Control"] == "no-store"
    plaintext = TOKEN_RE.search(response.get_data(as_text=True)).group(1)
    assert plaintext.startswith("pk_o_")
    token = _token_row(app, plaintext)
    assert token.organisation_id is not None and token.expires_at is not None
    listing = client.get("/council/tokens").get_data(as_text=True)
    assert token.prefix in listing and "Billing sync" in listing
    assert plaintext not in listing
    # The token works.
    from tests.api.conftest import ApiClient

    assert ApiClient(app.test_client(), plaintext).get("/catalogue").status_code == 200


def test_council_token_form_explains_a_missing_owner(signed_in):
    client = signed_in("council_admin")
    response = post_form(
        client,
        "/council/tokens",
        {"name": "x", "scope": "vendor", "organisation": "", "vendor": "", "expires_in": "90"},
    )
    assert response.status_code == 400
    assert "Choose the vendor this token acts for." in response.get_data(as_text=True)


def test_council_token_form_takes_an_organisations_slug_not_a_list_of_them(
    app, signed_in, make_org
):
    """A council has thousands of organisations (issue 13): the form does not list them
    all; an unknown slug is the field's error, a known one (any case, spaces) is taken."""
    for n in range(3):
        make_org(f"listed-{n}")
    client = signed_in("council_admin")
    page = client.get("/council/tokens").get_data(as_text=True)
    assert "listed-1" not in page
    data = {"name": "x", "scope": "organisation", "vendor": "", "expires_in": "90"}
    refused = post_form(client, "/council/tokens", {**data, "organisation": "no-such-org"})
    assert refused.status_code == 400
    assert "No such organisation." in refused.get_data(as_text=True)
    too_long = post_form(client, "/council/tokens", {**data, "organisation": "x" * 64})
    assert too_long.status_code == 400
    created = post_form(client, "/council/tokens", {**data, "organisation": " Listed-2 "})
    assert created.status_code == 201


def test_council_admin_revokes_a_token(app, signed_in, api):
    council = api("council")
    client = signed_in("council_admin")
    token = _token_row(app, council.token)
    response = post_form(
        client, f"/council/tokens/{token.id}/revoke", {}, token_from="/council/tokens"
    )
    assert response.status_code == 302
    assert _token_row(app, council.token).revoked_at is not None
    assert_problem(council.get("/organisations"), 401)
    assert "revoked" in client.get("/council/tokens").get_data(as_text=True)


def test_org_admin_sees_and_revokes_only_their_own_organisations_tokens(
    app, signed_in, make_org, make_token
):
    mine, other = make_org(), make_org()
    my_token = _token_row(app, make_token("organisation", org=mine, name="mine"))
    their_token = _token_row(app, make_token("organisation", org=other, name="theirs"))
    council_token = _token_row(app, make_token("council", name="council's"))
    client = signed_in("org_admin", mine)
    page = client.get("/org/tokens").get_data(as_text=True)
    assert my_token.prefix in page
    assert their_token.prefix not in page and council_token.prefix not in page
    for token in (their_token, council_token):
        response = post_form(client, f"/org/tokens/{token.id}/revoke", {}, token_from="/org/tokens")
        assert response.status_code == 404
    with app.app_context():
        assert db.session.get(ApiToken, their_token.id).revoked_at is None
        assert db.session.get(ApiToken, council_token.id).revoked_at is None
    response = post_form(client, f"/org/tokens/{my_token.id}/revoke", {}, token_from="/org/tokens")
    assert response.status_code == 302
    with app.app_context():
        assert db.session.get(ApiToken, my_token.id).revoked_at is not None


def test_org_admin_creates_an_organisation_token(app, signed_in, make_org):
    org = make_org()
    client = signed_in("org_admin", org)
    response = post_form(client, "/org/tokens", {"name": "HR sync", "expires_in": "never"})
    assert response.status_code == 201
    assert "never expires" in response.get_data(as_text=True)
    plaintext = TOKEN_RE.search(response.get_data(as_text=True)).group(1)
    token = _token_row(app, plaintext)
    assert token.scope == "organisation" and token.organisation_id == org.id
    assert token.expires_at is None  # chosen: "never"


NINETY_DAYS = dt.timedelta(days=90)


@pytest.mark.parametrize("path", ["/org/tokens", "/council/tokens"])
def test_the_token_form_preselects_90_days_and_offers_never(signed_in, make_org, path):
    client = (
        signed_in("org_admin", make_org()) if path == "/org/tokens" else signed_in("council_admin")
    )
    html = client.get(path).get_data(as_text=True)
    select = re.search(r'<select[^>]*name="expires_in".*?</select>', html, re.S).group(0)
    options = re.findall(r'<option([^>]*)value="([^"]*)"([^>]*)>', select)
    values = [value for _, value, _ in options]
    assert "never" in values and "" not in values
    selected = [value for before, value, after in options if "selected" in before + after]
    assert selected == ["90"]


def test_a_page_token_expires_in_90_days_unless_never_is_chosen(app, signed_in, make_org):
    org = make_org()
    client = signed_in("org_admin", org)
    for data in ({"name": "default", "expires_in": "90"}, {"name": "a script, no choice"}):
        before = now_utc()
        response = post_form(client, "/org/tokens", data, token_from="/org/tokens")
        after = now_utc()
        assert response.status_code == 201, data
        token = _token_row(app, TOKEN_RE.search(response.get_data(as_text=True)).group(1))
        assert before + NINETY_DAYS <= token.expires_at <= after + NINETY_DAYS, data
    response = post_form(client, "/org/tokens", {"name": "blank", "expires_in": ""})
    assert response.status_code == 400
    assert "Not a valid choice" in response.get_data(as_text=True)
    with app.app_context():
        names = db.session.scalars(sa.select(ApiToken.name)).all()
    assert sorted(names) == ["a script, no choice", "default"]


def test_the_service_defaults_to_90_days_and_never_only_when_chosen(app, make_org):
    from portal.api.services import token_create
    from portal.kernel.errors import ValidationFailed

    with app.app_context():
        before = now_utc()
        default, _ = token_create(db.session, actor=SYSTEM, scope="council", name="default")
        after = now_utc()
        assert before + NINETY_DAYS <= default.expires_at <= after + NINETY_DAYS
        never, _ = token_create(
            db.session, actor=SYSTEM, scope="council", name="never", never_expires=True
        )
        assert never.expires_at is None
        with pytest.raises(ValidationFailed) as both:
            token_create(
                db.session,
                actor=SYSTEM,
                scope="council",
                name="both",
                never_expires=True,
                expires_at=now_utc() + dt.timedelta(days=1),
            )
        assert "expires_at" in both.value.errors
        db.session.commit()


def test_token_pages_are_for_admins_only(signed_in, make_org):
    org = make_org()
    assert signed_in("member", org).get("/council/tokens").status_code == 403
    assert signed_in("member", org).get("/org/tokens").status_code == 403
    assert signed_in("finance").get("/council/tokens").status_code == 403
    assert signed_in("org_admin", org).get("/council/tokens").status_code == 403
