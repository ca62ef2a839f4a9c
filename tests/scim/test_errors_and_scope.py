"""Invalid SCIM requests get SCIM error bodies; tokens are per organisation and revocable."""

from __future__ import annotations

from tests.conftest import post_form
from tests.scim.conftest import PATCH_OP, USER_SCHEMA, ScimClient, assert_scim_error
from tests.support import client_for


def test_requests_without_a_valid_token_get_401(app, scim_org):
    okta = scim_org("acme")
    anonymous = app.test_client()
    response = anonymous.get("/scim/v2/Users")
    assert_scim_error(response, 401)
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    bad = ScimClient(app, "scim_not-a-token", okta.org)
    assert_scim_error(bad.get("/Users"), 401)
    api_token_shape = ScimClient(app, "pk_o_something", okta.org)
    assert_scim_error(api_token_shape.get("/Users"), 401)


def test_invalid_payloads_get_scim_error_bodies(app, scim_org):
    okta = scim_org("acme")
    assert_scim_error(okta.post("/Users", {"schemas": [USER_SCHEMA]}), 400, "invalidValue")
    assert_scim_error(okta.post("/Users", {"schemas": [USER_SCHEMA], "userName": 42}), 400)
    assert_scim_error(
        okta.post("/Users", {"schemas": ["urn:example:not-a-user"], "userName": "a@acme.example"}),
        400,
        "invalidSyntax",
    )
    assert_scim_error(
        okta.post(
            "/Users", {"schemas": [USER_SCHEMA], "userName": "a@acme.example", "active": "maybe"}
        ),
        400,
        "invalidValue",
    )
    not_json = okta.client.post(
        "/scim/v2/Users",
        data="{not json",
        headers={"Authorization": f"Bearer {okta.token}", "Content-Type": "application/scim+json"},
    )
    assert_scim_error(not_json, 400, "invalidSyntax")
    assert_scim_error(okta.post("/Users", ["a list"]), 400, "invalidSyntax")
    # An address outside the organisation's verified domains is refused.
    outside = okta.post("/Users", {"schemas": [USER_SCHEMA], "userName": "x@elsewhere.example"})
    assert "verified" in assert_scim_error(outside, 400, "invalidValue")["detail"]
    no_email = okta.post("/Users", {"schemas": [USER_SCHEMA], "userName": "jdoe"})
    assert_scim_error(no_email, 400, "invalidValue")


def test_invalid_filters_and_patches(app, scim_org):
    okta = scim_org("acme")
    uid = okta.post("/Users", {"schemas": [USER_SCHEMA], "userName": "a@acme.example"}).get_json()[
        "id"
    ]
    assert_scim_error(okta.get("/Users", filter="userName eq"), 400, "invalidFilter")
    assert_scim_error(okta.get("/Users", filter='title eq "boss"'), 400, "invalidFilter")
    assert_scim_error(okta.get("/Users", filter='active eq "yes"'), 400, "invalidFilter")
    assert_scim_error(okta.get("/Users", startIndex="one"), 400, "invalidValue")
    assert_scim_error(
        okta.send(
            "PATCH", f"/Users/{uid}", {"schemas": [PATCH_OP], "Operations": [{"op": "jump"}]}
        ),
        400,
    )
    assert_scim_error(okta.send("PATCH", f"/Users/{uid}", {"Operations": []}), 400)
    assert_scim_error(
        okta.patch(f"/Users/{uid}", {"op": "replace", "path": "active", "value": "perhaps"}), 400
    )
    gid = okta.post("/Groups", {"displayName": "G"}).get_json()["id"]
    assert_scim_error(
        okta.patch(f"/Groups/{gid}", {"op": "add", "path": "owner", "value": "x"}),
        400,
        "invalidPath",
    )
    assert_scim_error(
        okta.patch(
            f"/Groups/{gid}", {"op": "add", "path": "members", "value": [{"value": "999999"}]}
        ),
        400,
        "invalidValue",
    )
    assert_scim_error(okta.post("/Groups", {"displayName": "G"}), 409, "uniqueness")
    assert_scim_error(okta.post("/Groups", {"members": []}), 400)


def test_unknown_endpoints_and_methods_answer_in_scim(app, scim_org):
    okta = scim_org("acme")
    assert_scim_error(okta.get("/Widgets"), 404)
    assert_scim_error(okta.send("PUT", "/ServiceProviderConfig", {}), 405)
    assert_scim_error(okta.get("/Users/not-a-number"), 404)
    assert_scim_error(okta.get("/Schemas/urn:example:nothing"), 404)


def test_a_token_sees_only_its_own_organisation(app, scim_org):
    acme, bolt = scim_org("acme"), scim_org("bolt")
    uid = acme.post("/Users", {"schemas": [USER_SCHEMA], "userName": "a@acme.example"}).get_json()[
        "id"
    ]
    gid = acme.post("/Groups", {"displayName": "Acme staff"}).get_json()["id"]
    assert bolt.get("/Users").get_json()["totalResults"] == 0
    assert_scim_error(bolt.get(f"/Users/{uid}"), 404)
    assert_scim_error(
        bolt.patch(f"/Users/{uid}", {"op": "replace", "path": "active", "value": False}), 404
    )
    assert_scim_error(bolt.delete(f"/Users/{uid}"), 404)
    assert_scim_error(bolt.get(f"/Groups/{gid}"), 404)
    # Bolt cannot put Acme's person in its group, nor create an Acme address.
    bgid = bolt.post("/Groups", {"displayName": "Bolt staff"}).get_json()["id"]
    assert_scim_error(
        bolt.patch(f"/Groups/{bgid}", {"op": "add", "path": "members", "value": [{"value": uid}]}),
        400,
    )
    assert_scim_error(
        bolt.post("/Users", {"schemas": [USER_SCHEMA], "userName": "z@acme.example"}), 400
    )
    assert acme.get(f"/Users/{uid}").get_json()["active"] is True


def test_tokens_are_created_once_shown_and_revoked_on_the_page(app, make_org):
    org = make_org("acme")
    admin = client_for(app, "org_admin", org)
    page = admin.get("/org/scim").get_data(as_text=True)
    assert "http://portal.test/scim/v2" in page
    created = post_form(
        admin, "/org/scim", {"name": "Entra", "expires_in": "90"}, token_from="/org/scim"
    )
    assert created.status_code == 201 and created.headers["Cache-Control"] == "no-store"
    assert "expires" in created.get_data(as_text=True)
    import re

    token = re.search(r'value="(scim_[^"]+)"', created.get_data(as_text=True)).group(1)
    client = ScimClient(app, token, org)
    assert client.get("/Users").status_code == 200
    assert token not in admin.get("/org/scim").get_data(as_text=True)
    from portal.db import db
    from portal.scim.models import ScimToken

    with app.app_context():
        token_id = db.session.query(ScimToken.id).scalar()
    revoked = post_form(admin, f"/org/scim/tokens/{token_id}/revoke", {}, token_from="/org/scim")
    assert revoked.status_code == 302
    assert_scim_error(client.get("/Users"), 401)


def test_a_scim_token_expires_in_90_days_unless_told_otherwise(app, make_org, clock):
    """As API tokens do (issue 11): the term is chosen on the page, 90 days by default,
    "never" only when chosen; an expired token gets 401 like an unknown one."""
    import datetime as dt
    import re

    from portal.db import db
    from portal.scim.models import ScimToken

    start = clock.freeze("2026-12-01T00:00:00Z")
    org = make_org("acme")
    admin = client_for(app, "org_admin", org)
    form = admin.get("/org/scim").get_data(as_text=True)
    assert re.search(r'<option selected value="90">', form)
    assert 'value="never"' in form

    def create(name: str, term: str) -> tuple[str, str]:
        page = post_form(admin, "/org/scim", {"name": name, "expires_in": term})
        assert page.status_code == 201, page.get_data(as_text=True)
        text = page.get_data(as_text=True)
        return re.search(r'value="(scim_[^"]+)"', text).group(1), text

    monthly, _ = create("Okta", "30")
    forever, shown = create("Entra", "never")
    assert "never expires" in shown
    with app.app_context():
        terms = {t.name: t.expires_at for t in db.session.query(ScimToken)}
    assert terms == {"Okta": start + dt.timedelta(days=30), "Entra": None}

    okta, entra = ScimClient(app, monthly, org), ScimClient(app, forever, org)
    assert okta.get("/Users").status_code == 200
    clock.advance(dt.timedelta(days=30))
    assert_scim_error(okta.get("/Users"), 401)
    assert entra.get("/Users").status_code == 200
    listed = admin.get("/org/scim").get_data(as_text=True)
    assert "expired" in listed and "never" in listed

    refused = post_form(admin, "/org/scim", {"name": "Bad", "expires_in": "7"})
    assert refused.status_code == 400
    with app.app_context():
        assert db.session.query(ScimToken).count() == 2


def test_the_scim_token_service_defaults_to_90_days_and_checks_the_term(app, make_org, clock):
    import datetime as dt

    import pytest

    from portal.db import db
    from portal.kernel.errors import ValidationFailed
    from portal.scim.services import token_create
    from portal.tenancy.models import Organisation
    from tests.conftest import SYSTEM

    start = clock.freeze("2026-12-01T00:00:00Z")
    org = make_org("acme")
    with app.app_context():
        acme = db.session.get(Organisation, org.id)
        token, _ = token_create(db.session, actor=SYSTEM, organisation=acme, name="IdP")
        assert token.expires_at == start + dt.timedelta(days=90)
        for wrong in (
            {"expires_at": start - dt.timedelta(seconds=1)},
            {"expires_at": start + dt.timedelta(days=1), "never_expires": True},
        ):
            with pytest.raises(ValidationFailed) as refused:
                token_create(db.session, actor=SYSTEM, organisation=acme, name="IdP", **wrong)
            assert "expires_at" in refused.value.errors
