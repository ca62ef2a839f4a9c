"""Browser defences on every response (portal.security), and /dev/outbox locked down.

Pages, error pages, the API (answers and problems), SCIM, static files and the
entitlement fast path all carry the same security headers; pages get a CSP
without ``unsafe-inline``, everything else ``default-src 'none'``; HSTS only in
production.
"""

from __future__ import annotations

import re
from email.message import EmailMessage
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from werkzeug.test import EnvironBuilder

from portal import security
from portal.db import db
from tests.api.conftest import api, make_token  # noqa: F401  (fixtures)
from tests.api.test_fastpath import seated  # noqa: F401  (fixture: a vendor token, a seat)
from tests.conftest import post_form, second_step
from tests.metering.conftest import metered  # noqa: F401  (fixture, for seated)
from tests.scim.conftest import scim_org  # noqa: F401  (fixture)

COMMON = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "strict-origin-when-cross-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}
TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


def _directives(csp: str) -> dict[str, list[str]]:
    out = {}
    for part in csp.split(";"):
        name, *values = part.split()
        out[name] = values
    return out


def assert_defended(response, *, page: bool, hsts: bool = False) -> dict[str, list[str]]:
    """The response carries every header; returns its CSP's directives."""
    for name, value in COMMON.items():
        assert response.headers.get(name) == value, (name, dict(response.headers))
    permissions = response.headers["Permissions-Policy"]
    for feature in ("camera=()", "microphone=()", "geolocation=()", "payment=()"):
        assert feature in permissions
    assert ("Strict-Transport-Security" in response.headers) is hsts
    csp = response.headers["Content-Security-Policy"]
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    directives = _directives(csp)
    assert directives["frame-ancestors"] == ["'none'"]
    if page:
        assert directives["default-src"] == ["'self'"]
        assert directives["object-src"] == ["'none'"]
        assert directives["base-uri"] == ["'self'"]
        assert directives["form-action"][0] == "'self'"
        assert directives["script-src"][0] == "'self'"
    else:
        assert directives == {"default-src": ["'none'"], "frame-ancestors": ["'none'"]}
    return directives


def test_a_page_a_signed_in_page_and_a_redirect_carry_the_page_policy(client, signed_in):
    response = client.get("/login")
    assert response.status_code == 200 and response.mimetype == "text/html"
    assert_defended(response, page=True)
    dashboard = signed_in("council_admin").get("/council")
    assert dashboard.status_code == 200
    directives = assert_defended(dashboard, page=True)
    # An ordinary page's forms post to the portal only.
    assert directives["form-action"] == ["'self'"]
    assert_defended(client.get("/council"), page=True)  # 302 to the sign-in page


def test_error_pages_carry_the_headers(client):
    missing = client.get("/no-such-page")
    assert missing.status_code == 404 and missing.mimetype == "text/html"
    assert_defended(missing, page=True)
    refused = client.post("/login", data={})  # no CSRF token
    assert refused.status_code == 400
    assert_defended(refused, page=True)


def test_api_answers_and_problems_carry_the_strict_policy(client, api):  # noqa: F811
    assert_defended(client.get("/api/v1/openapi.json"), page=False)
    council = api("council")
    answer = council.get("/organisations")
    assert answer.status_code == 200 and answer.mimetype == "application/json"
    assert_defended(answer, page=False)
    unauthorised = client.get("/api/v1/organisations")
    assert unauthorised.status_code == 401
    assert unauthorised.mimetype == "application/problem+json"
    assert_defended(unauthorised, page=False)
    invalid = council.post("/organisations", {"slug": ""})
    assert invalid.status_code == 422
    assert_defended(invalid, page=False)


def test_scim_answers_and_errors_carry_the_strict_policy(app, client, scim_org):  # noqa: F811
    scim = scim_org("acme")
    users = scim.get("/Users")
    assert users.status_code == 200 and users.mimetype == "application/scim+json"
    assert_defended(users, page=False)
    unauthorised = client.get("/scim/v2/Users")
    assert unauthorised.status_code == 401
    assert_defended(unauthorised, page=False)


def test_static_files_carry_the_headers(client):
    for path, mimetype in (
        ("/static/portal.css", "text/css"),
        ("/static/sso-login.js", "text/javascript"),
        ("/static/vendor/swagger-ui/swagger-ui-bundle.js", "text/javascript"),
    ):
        response = client.get(path)
        assert response.status_code == 200 and response.mimetype == mimetype, path
        assert_defended(response, page=False)
        response.close()


def test_a_pdf_may_not_be_framed_but_keeps_its_viewer(app):
    """Browsers' own PDF viewers run inside the PDF's document: only framing is refused."""
    with app.test_request_context("/org/invoices/1.pdf"):
        response = app.process_response(
            app.make_response((b"%PDF-1.7", 200, {"Content-Type": "application/pdf"}))
        )
    assert response.headers["Content-Security-Policy"] == "frame-ancestors 'none'"
    for name, value in COMMON.items():
        assert response.headers[name] == value


def test_the_api_docs_page_is_a_page_with_no_inline_code(client):
    response = client.get("/api/v1/docs")
    assert response.status_code == 200
    assert_defended(response, page=True)
    html = response.get_data(as_text=True)
    assert "<style" not in html and "style=" not in html
    assert all("src=" in tag for tag in re.findall(r"<script[^>]*>", html))


def test_no_template_has_inline_styles_scripts_or_handlers():
    """A CSP without unsafe-inline blocks them; the PDF templates (``*_pdf.html``: invoices,
    purchase orders) are rendered for WeasyPrint, not served, and mails are not pages."""
    offenders = []
    for path in TEMPLATES.rglob("*.html"):
        relative = path.relative_to(TEMPLATES).as_posix()
        if relative.startswith("mail/") or relative.endswith("_pdf.html"):
            continue
        text = path.read_text()
        for pattern in (r"\sstyle=", r"<style(?![^>]*nonce=)", r"\son[a-z]+=\"", r"javascript:"):
            offenders += [f"{relative}: {pattern}" for _ in re.findall(pattern, text)]
        for tag in re.findall(r"<script[^>]*>", text):
            if "src=" not in tag and "nonce=" not in tag:
                offenders.append(f"{relative}: {tag}")
    assert offenders == []


def test_an_inline_script_gets_this_responses_nonce(app):
    """csp_nonce() in a template puts the same fresh nonce in the tag and the policy."""
    from flask import render_template_string

    seen = []
    for _ in range(2):
        with app.test_request_context("/"):
            html = render_template_string('<script nonce="{{ csp_nonce() }}">1</script>')
            response = app.process_response(app.make_response(html))
        nonce = re.search(r'nonce="([^"]+)"', html).group(1)
        directives = _directives(response.headers["Content-Security-Policy"])
        assert f"'nonce-{nonce}'" in directives["script-src"]
        assert f"'nonce-{nonce}'" in directives["style-src"]
        seen.append(nonce)
    assert seen[0] != seen[1] and len(seen[0]) >= 22
    # A page that asks for no nonce gets none: 'self' only.
    assert "nonce-" not in app.test_client().get("/login").headers["Content-Security-Policy"]


def test_pages_whose_forms_lead_to_a_provider_may_post_beyond_the_portal(signed_in, make_org):
    """Browsers apply form-action to the redirects after a POST: sign-in through an
    organisation's provider and the card form at Stripe need it wider there."""
    client = signed_in("org_admin", make_org())
    for path in ("/login", "/org/sso", "/org/payment-method"):
        response = (client if path != "/login" else client.application.test_client()).get(path)
        assert response.status_code == 200, path
        form_action = assert_defended(response, page=True)["form-action"]
        # Outside production the tests' and developers' providers are on http://127.0.0.1.
        assert form_action == ["'self'", "https:", "http:"], path
    assert security.page_policy(nonce=None, production=True, forms_leave_site=True).count(
        "form-action 'self' https:;"
    )


def test_the_fast_path_sends_the_same_headers_as_flask(app):
    """tests/api/test_fastpath.py compares whole answers; here the headers themselves."""
    fast = app.wsgi_app
    environ = EnvironBuilder(path="/api/v1/entitlements/check").get_environ()
    sent = []
    body = b"".join(fast._reply({"entitled": False}, environ, lambda s, h: sent.extend(h)))
    assert body.startswith(b"{")
    headers = dict(sent)
    flask_answer = app.test_client().get("/api/v1/openapi.json")
    for name in (*COMMON, "Content-Security-Policy", "Permissions-Policy"):
        assert headers[name] == flask_answer.headers[name], name
    assert "Strict-Transport-Security" not in headers


def test_an_entitlement_check_answered_by_the_fast_path_carries_the_headers(
    app,
    seated,  # noqa: F811
    monkeypatch,
):
    """A real check, answered without Flask (Flask is made to fail), has every header."""
    middleware = app.wsgi_app

    def no_flask(environ, start_response):
        raise AssertionError("the fast path should have answered")

    monkeypatch.setattr(middleware, "wsgi_app", no_flask)
    answer = app.test_client().get(
        "/api/v1/entitlements/check",
        query_string={
            "organisation": "acme",
            "user_email": seated["email"],
            "product": "cad-suite",
        },
        headers={"Authorization": f"Bearer {seated['token']}"},
    )
    assert answer.status_code == 200 and answer.get_json()["entitled"] is True
    assert_defended(answer, page=False)


# ------------------------------------------------------------------ production


@pytest.fixture
def production_app(app, monkeypatch, tmp_path):
    """The portal as production builds it (strong secrets), on the test database."""
    from portal import create_app

    monkeypatch.setenv("PORTAL_ENV", "production")
    monkeypatch.setenv("PORTAL_SECRET_KEY", "kT3v" + Fernet.generate_key().decode())
    monkeypatch.setenv("PORTAL_ENCRYPTION_KEY", Fernet.generate_key().decode())
    monkeypatch.setenv("PORTAL_INSTANCE_PATH", str(tmp_path))
    monkeypatch.setenv("PORTAL_SINGLE_PROCESS", "1")  # no Redis here: one process
    prod = create_app({"SQLALCHEMY_DATABASE_URI": app.config["SQLALCHEMY_DATABASE_URI"]})
    yield prod
    with prod.app_context():
        db.engine.dispose()


def test_hsts_in_production_only(client, production_app):
    prod = production_app.test_client()
    for path, page in (("/login", True), ("/static/portal.css", False), ("/nowhere", True)):
        response = prod.get(path)
        directives = assert_defended(response, page=page, hsts=True)
        assert response.headers["Strict-Transport-Security"] == (
            "max-age=31536000; includeSubDomains"
        )
        if path == "/login":
            assert directives["form-action"] == ["'self'", "https:"]
        response.close()
    assert_defended(prod.get("/api/v1/organisations"), page=False, hsts=True)
    assert_defended(client.get("/login"), page=True, hsts=False)
    environ = EnvironBuilder(path="/api/v1/entitlements/check").get_environ()
    sent = []
    production_app.wsgi_app._reply({}, environ, lambda s, h: sent.extend(h))
    assert dict(sent)["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"


# ------------------------------------------------------------------ /dev/outbox


@pytest.fixture
def development(app, monkeypatch, tmp_path):
    """The session app as in development, with one message in its outbox folder."""
    monkeypatch.setitem(app.config, "PORTAL_ENV", "development")
    monkeypatch.setitem(app.config, "PORTAL_OUTBOX_DIR", str(tmp_path))
    message = EmailMessage()
    message["To"] = "someone@acme.example"
    message["Subject"] = "Reset your password"
    message.set_content("http://portal.test/reset/secret-link-0123")
    (tmp_path / "0001.eml").write_bytes(bytes(message))
    return app


@pytest.mark.parametrize("role", ["council_admin", "finance"])
def test_council_staff_read_the_outbox_in_development(development, signed_in, role):
    response = signed_in(role).get("/dev/outbox")
    assert response.status_code == 200
    assert "secret-link-0123" in response.get_data(as_text=True)
    assert_defended(response, page=True)


def test_nobody_else_reads_the_outbox(development, client, signed_in, make_org):
    anonymous = client.get("/dev/outbox")
    assert anonymous.status_code == 302 and "/login" in anonymous.headers["Location"]
    org = make_org()
    for role in ("org_admin", "member"):
        response = signed_in(role, org).get("/dev/outbox")
        assert response.status_code == 403, role
        assert "secret-link-0123" not in response.get_data(as_text=True)


@pytest.mark.parametrize("environment", ["test", "production"])
def test_the_outbox_does_not_exist_outside_development(
    app, monkeypatch, signed_in, client, environment
):
    staff = signed_in("council_admin")
    monkeypatch.setitem(app.config, "PORTAL_ENV", environment)
    assert staff.get("/dev/outbox").status_code == 404
    assert client.get("/dev/outbox").status_code == 404


def test_signing_in_from_the_outbox_redirect_comes_back_to_it(development, client, make_user):
    staff = make_user("council_admin")
    response = post_form(
        client,
        "/login?next=/dev/outbox",
        {"email": staff.email, "password": staff.password, "next": "/dev/outbox"},
    )
    response = second_step(client, staff)  # council staff sign in with a second factor
    assert response.status_code == 302 and response.headers["Location"] == "/dev/outbox"
    assert "secret-link-0123" in client.get("/dev/outbox").get_data(as_text=True)
