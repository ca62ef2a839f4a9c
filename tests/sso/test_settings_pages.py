"""The org admin's SSO and domain pages, the council's domain approvals, and council staff SSO."""

from __future__ import annotations

import html

import sqlalchemy as sa

from portal.db import db
from portal.sso.models import EmailDomain, SsoConnection
from tests.conftest import login, post_form
from tests.sso.conftest import begin_sso, connect, finish_sso, live_sessions
from tests.support import client_for, count, form_post, messages


def test_the_settings_page_shows_the_redirect_uri_and_stores_the_secret_encrypted(
    app, make_org, idp
):
    org = make_org("acme")
    admin = client_for(app, "org_admin", org)
    page = admin.get("/org/sso").get_data(as_text=True)
    assert 'value="http://portal.test/sso/org/acme/callback"' in page
    client_id, secret = idp.register_client("http://portal.test/sso/org/acme/callback")
    response = form_post(
        admin,
        "/org/sso",
        {
            "issuer": idp.issuer + "/",
            "client_id": client_id,
            "client_secret": secret,
            "enabled": "y",
            "jit_enabled": "y",
        },
        token_from="/org/sso",
    )
    assert response.status_code == 302, messages(response)
    with app.app_context():
        connection = db.session.scalar(sa.select(SsoConnection))
        assert connection.issuer == idp.issuer  # trailing slash dropped
        assert secret not in connection.client_secret_encrypted
        from portal.crypto import decrypt_secret

        assert decrypt_secret(connection.client_secret_encrypted) == secret
        from portal.audit.models import AuditEvent

        events = db.session.scalars(sa.select(AuditEvent)).all()
        assert all(secret not in str(e.after) for e in events)
    # Saving again without a secret keeps the stored one.
    form_post(
        admin,
        "/org/sso",
        {"issuer": idp.issuer, "client_id": client_id, "enabled": "y"},
        token_from="/org/sso",
    )
    with app.app_context():
        from portal.crypto import decrypt_secret

        stored = db.session.scalar(sa.select(SsoConnection.client_secret_encrypted))
        assert decrypt_secret(stored) == secret


def test_settings_refuse_plain_http_issuers_and_enforcement_without_break_glass(app, make_org):
    org = make_org("acme")
    admin = client_for(app, "org_admin", org)
    response = form_post(
        admin,
        "/org/sso",
        {"issuer": "http://login.example.com", "client_id": "x", "client_secret": "y"},
        token_from="/org/sso",
    )
    assert response.status_code == 400
    assert any("https" in m for m in messages(response))
    response = form_post(
        admin,
        "/org/sso",
        {
            "issuer": "https://login.example.com",
            "client_id": "x",
            "client_secret": "y",
            "enforce_sso": "y",
        },
        token_from="/org/sso",
    )
    assert response.status_code == 400
    assert any("break-glass" in m for m in messages(response))
    assert count(app, SsoConnection) == 0


def test_test_connection_runs_a_real_sign_in_and_reports_each_step(app, sso_org, idp):
    acme = sso_org("acme")
    admin = app.test_client()
    assert login(admin, acme.admin).status_code == 302
    idp.add_account("ada", email="ada@acme.example")
    response = post_form(admin, "/org/sso/test", {}, token_from="/org/sso")
    assert response.status_code == 302
    authorize = response.headers["Location"]
    assert "prompt=login" in authorize
    report = finish_sso(admin, idp.sign_in(authorize, "ada"))
    page = html.unescape(report.get_data(as_text=True))
    assert report.status_code == 200, page
    assert "Connection works" in page and "ada@acme.example would get a new member account" in page
    assert admin.get("/org").status_code == 200  # the admin is still the admin
    assert live_sessions(app, "ada@acme.example") == 0
    assert "Connection works" in html.unescape(admin.get("/org/sso").get_data(as_text=True))


def test_test_connection_reports_client_authentication_failures(app, sso_org, idp):
    acme = sso_org("acme")
    connect(
        app,
        acme.org,
        {"issuer": acme.issuer, "client_id": acme.client_id, "client_secret": "wrong"},
    )
    admin = app.test_client()
    login(admin, acme.admin)
    idp.add_account("ada", email="ada@acme.example")
    authorize = post_form(admin, "/org/sso/test", {}, token_from="/org/sso").headers["Location"]
    report = finish_sso(admin, idp.sign_in(authorize, "ada"))
    page = html.unescape(report.get_data(as_text=True))
    assert report.status_code == 422
    assert "client id or secret" in page
    assert "Client authentication (client id and secret)</td><td><span" in page
    assert ">failed<" in page


def test_test_connection_reports_discovery_failures(app, sso_org):
    from tests.oidc.peer import free_port

    acme = sso_org("acme")
    connect(app, acme.org, {"issuer": f"http://127.0.0.1:{free_port()}", "client_id": "x"})
    admin = app.test_client()
    login(admin, acme.admin)
    report = post_form(admin, "/org/sso/test", {}, token_from="/org/sso")
    assert report.status_code == 422
    assert "could not be reached" in report.get_data(as_text=True)


def test_domains_are_claimed_by_org_admins_and_verified_by_council_admins(app, make_org):
    acme, bolt = make_org("acme"), make_org("bolt")
    acme_admin = client_for(app, "org_admin", acme)
    bolt_admin = client_for(app, "org_admin", bolt)
    council = client_for(app, "council_admin")

    assert (
        form_post(
            acme_admin, "/org/domains", {"domain": "@Acme.Example"}, token_from="/org/domains"
        ).status_code
        == 302
    )
    refused = form_post(
        acme_admin, "/org/domains", {"domain": "gmail.com"}, token_from="/org/domains"
    )
    assert refused.status_code == 400 and any("public mail" in m for m in messages(refused))
    # A pending claim squats nothing: another organisation may claim it too…
    assert (
        form_post(
            bolt_admin, "/org/domains", {"domain": "acme.example"}, token_from="/org/domains"
        ).status_code
        == 302
    )
    with app.app_context():
        claims = db.session.scalars(sa.select(EmailDomain).order_by(EmailDomain.id)).all()
        ids = [c.id for c in claims]
    page = council.get("/council/domains").get_data(as_text=True)
    assert page.count("acme.example") == 2
    # …but only one can have it verified.
    ok = post_form(council, f"/council/domains/{ids[0]}/verify", {}, token_from="/council/domains")
    assert ok.status_code == 302
    second = post_form(
        council, f"/council/domains/{ids[1]}/verify", {}, token_from="/council/domains"
    )
    assert "already verified for Org acme" in html.unescape(
        " ".join(messages(council.get(second.headers["Location"])))
    )
    assert (
        form_post(
            bolt_admin, "/org/domains", {"domain": "acme.example"}, token_from="/org/domains"
        ).status_code
        == 400
    )
    # Org admins cannot verify, nor touch another organisation's claim.
    assert (
        post_form(
            acme_admin, f"/council/domains/{ids[0]}/verify", {}, token_from="/org/domains"
        ).status_code
        == 403
    )
    assert (
        post_form(
            acme_admin, f"/org/domains/{ids[1]}/remove", {}, token_from="/org/domains"
        ).status_code
        == 404
    )


def test_council_staff_sign_in_through_the_councils_provider(app, make_user, idp):
    staff = make_user("council_admin", email="clara@council.example")
    client_id, secret = idp.register_client("http://portal.test/sso/council/callback")
    before = dict(app.config)
    app.config.update(
        PORTAL_COUNCIL_OIDC_ISSUER=idp.issuer,
        PORTAL_COUNCIL_OIDC_CLIENT_ID=client_id,
        PORTAL_COUNCIL_OIDC_CLIENT_SECRET=secret,
        PORTAL_COUNCIL_OIDC_DOMAINS=("council.example",),
    )
    try:
        idp.add_account("clara", email=staff.email)
        idp.add_account("stranger", email="stranger@council.example")
        client = app.test_client()
        assert "Council staff: sign in" in html.unescape(
            client.get("/login").get_data(as_text=True)
        )
        started = begin_sso(client, staff.email)
        assert started.headers["Location"].startswith(idp.issuer)
        landed = finish_sso(client, idp.sign_in(started.headers["Location"], "clara"))
        assert landed.headers["Location"] == "/council"
        assert client.get("/council").status_code == 200

        other = app.test_client()
        link = other.get("/sso/council/start")
        refused = finish_sso(other, idp.sign_in(link.headers["Location"], "stranger"))
        assert refused.status_code == 403
        assert "not a council staff account" in refused.get_data(as_text=True)
        assert other.get("/council").status_code == 302
    finally:
        app.config.clear()
        app.config.update(before)


def test_nav_links_lead_to_the_pages(app, make_org):
    org = make_org("acme")
    admin = client_for(app, "org_admin", org)
    page = admin.get("/org").get_data(as_text=True)
    for path in ("/org/sso", "/org/domains", "/org/scim"):
        assert f'href="{path}"' in page
        assert admin.get(path).status_code == 200
    council = client_for(app, "council_admin")
    assert 'href="/council/domains"' in council.get("/council").get_data(as_text=True)
    member = client_for(app, "member", org)
    for path in ("/org/sso", "/org/domains", "/org/scim", "/org/scim/groups", "/council/domains"):
        assert member.get(path).status_code == 403
