"""Signing in and out, and the security of the session."""

import sqlalchemy as sa

from portal.db import db
from portal.identity.models import UserSession
from tests.conftest import csrf_token, flashes, login, post_form, second_step


def _session_cookie(client):
    cookie = client.get_cookie("portal_session")
    return cookie.value if cookie else None


def test_sign_in_lands_each_role_on_its_home(app, make_org, make_user):
    org = make_org()
    expected = {
        "council_admin": "/council",
        "finance": "/council",
        "org_admin": "/org",
        "member": "/my",
    }
    for role, home in expected.items():
        user = make_user(role, org if role in ("org_admin", "member") else None)
        client = app.test_client()
        response = login(client, user)
        assert response.status_code == 302
        assert response.headers["Location"] == home


def test_one_post_with_email_password_and_csrf_signs_in(app, make_org, make_user):
    """Without a second factor, one POST signs in (council staff have one: the next step
    is tested in test_second_factor_pages.py)."""
    user = make_user("org_admin", make_org())
    client = app.test_client()
    token = csrf_token(client)
    response = client.post(
        "/login", data={"email": user.email.upper(), "password": user.password, "csrf_token": token}
    )
    assert response.status_code == 302
    assert client.get("/org").status_code == 200


def test_wrong_password_and_unknown_email_get_the_same_generic_message(app, make_user):
    user = make_user("council_admin")
    client = app.test_client()
    wrong = login(client, user, password="not the password")
    unknown = post_form(
        client, "/login", {"email": "nobody@x.example", "password": "whatever it is"}
    )
    assert wrong.status_code == unknown.status_code == 401
    assert (
        flashes(wrong) == flashes(unknown) == ["That email and password do not match an account."]
    )
    assert client.get("/council").status_code == 302  # still signed out


def test_missing_csrf_token_is_refused_and_signs_nobody_in(app, make_user):
    user = make_user("council_admin")
    client = app.test_client()
    response = client.post("/login", data={"email": user.email, "password": user.password})
    assert response.status_code == 400
    assert "CSRF" in response.get_data(as_text=True)
    assert client.get("/council").status_code == 302


def test_stale_csrf_token_from_another_session_is_refused(app, make_user):
    user = make_user("council_admin")
    other = app.test_client()
    token = csrf_token(other)
    client = app.test_client()
    client.get("/login")
    response = client.post(
        "/login", data={"email": user.email, "password": user.password, "csrf_token": token}
    )
    assert response.status_code == 400
    assert client.get("/council").status_code == 302


def test_session_cookie_changes_at_sign_in(app, make_user):
    user = make_user("council_admin")
    client = app.test_client()
    client.get("/login")
    before = _session_cookie(client)
    login(client, user)
    after = _session_cookie(client)
    assert before and after and before != after


def test_old_cookie_stops_working_after_sign_out(app, make_user):
    user = make_user("council_admin")
    client = app.test_client()
    login(client, user)
    stolen = _session_cookie(client)
    assert client.get("/council").status_code == 200
    post_form(client, "/logout", {}, token_from="/council")
    thief = app.test_client()
    thief.set_cookie("portal_session", stolen)
    assert thief.get("/council").status_code == 302


def test_deactivation_ends_existing_sessions(app, make_org, make_user, signed_in):
    org = make_org()
    admin = signed_in("org_admin", org)
    member = make_user("member", org)
    member_client = app.test_client()
    login(member_client, member)
    assert member_client.get("/my").status_code == 200
    response = post_form(
        admin, f"/org/users/{member.id}/deactivate", {"confirmed": "1"}, token_from="/org/users"
    )
    assert response.status_code == 302
    assert member_client.get("/my").status_code == 302
    refused = login(app.test_client(), member)
    assert refused.status_code == 401
    assert "deactivated" in flashes(refused)[0]


def test_suspended_and_closed_organisations_cannot_sign_in_and_are_told_why(
    app, make_org, make_user
):
    for status, word in (("suspended", "suspended"), ("closed", "closed")):
        org = make_org(status=status)
        user = make_user("member", org)
        response = login(app.test_client(), user)
        assert response.status_code == 401
        assert word in flashes(response)[0]


def test_suspending_an_organisation_signs_its_people_out(app, make_org, make_user, signed_in):
    org = make_org()
    member = make_user("member", org)
    member_client = app.test_client()
    login(member_client, member)
    council = signed_in("council_admin")
    post_form(
        council,
        f"/council/organisations/{org.slug}/status/suspend",
        {"reason": "Unpaid fees"},
        token_from=f"/council/organisations/{org.slug}",
    )
    assert member_client.get("/my").status_code == 302
    with app.app_context():
        live = db.session.scalar(
            sa.select(sa.func.count())
            .select_from(UserSession)
            .where(UserSession.organisation_id == org.id, UserSession.revoked_at.is_(None))
        )
        assert live == 0


def test_cookie_flags_in_test_and_production(app, make_user, monkeypatch, tmp_path):
    # No authenticator app: the production app below has another encryption key.
    user = make_user("council_admin", second_factor=False)
    client = app.test_client()
    response = login(client, user)
    header = response.headers["Set-Cookie"]
    assert "HttpOnly" in header and "SameSite=Lax" in header
    from portal import create_app

    monkeypatch.setenv("PORTAL_ENV", "production")
    from cryptography.fernet import Fernet  # random keys: production refuses weak ones

    monkeypatch.setenv("PORTAL_SECRET_KEY", Fernet.generate_key().decode())
    monkeypatch.setenv("PORTAL_ENCRYPTION_KEY", Fernet.generate_key().decode())
    monkeypatch.setenv("PORTAL_INSTANCE_PATH", str(tmp_path))
    monkeypatch.setenv("PORTAL_SINGLE_PROCESS", "1")  # no Redis here: one process
    prod = create_app({"SQLALCHEMY_DATABASE_URI": app.config["SQLALCHEMY_DATABASE_URI"]})
    prod_client = prod.test_client()
    prod_response = login(prod_client, user)
    prod_header = prod_response.headers["Set-Cookie"]
    with prod.app_context():
        db.engine.dispose()
    assert "Secure" in prod_header and "HttpOnly" in prod_header and "SameSite=Lax" in prod_header


def test_production_refuses_to_start_without_secrets(monkeypatch, tmp_path):
    import pytest

    from portal import create_app
    from portal.config import ConfigError

    monkeypatch.setenv("PORTAL_ENV", "production")
    monkeypatch.delenv("PORTAL_SECRET_KEY", raising=False)
    monkeypatch.setenv("PORTAL_INSTANCE_PATH", str(tmp_path))
    with pytest.raises(ConfigError, match="PORTAL_SECRET_KEY"):
        create_app()


def test_next_never_redirects_off_the_site(app, make_user):
    user = make_user("council_admin")
    for target in (
        "https://evil.example",
        "//evil.example",
        "/\\evil.example",
        "\\\\evil.example",
        "https:/evil.example",
        " //evil.example",
    ):
        client = app.test_client()
        response = post_form(
            client, "/login", {"email": user.email, "password": user.password, "next": target}
        )
        response = second_step(client, user)
        assert response.status_code == 302
        assert response.headers["Location"] == "/council", target


def test_next_to_a_page_on_the_site_is_followed(app, make_user):
    user = make_user("council_admin")
    client = app.test_client()
    response = client.get("/council/organisations?status=active")
    assert response.status_code == 302
    assert "next=" in response.headers["Location"]
    response = post_form(
        client,
        "/login",
        {
            "email": user.email,
            "password": user.password,
            "next": "/council/organisations?status=active",
        },
    )
    assert response.headers["Location"] == "/login/second-factor"
    response = second_step(client, user)
    assert response.headers["Location"] == "/council/organisations?status=active"


def test_repeated_failed_sign_ins_get_429_with_retry_after(app, make_user):
    user = make_user("council_admin")
    client = app.test_client()
    statuses = [login(client, user, password=f"wrong password {i}").status_code for i in range(6)]
    assert statuses[:5] == [401] * 5
    assert statuses[5] == 429
    response = login(client, user)  # even the right password waits now
    assert response.status_code == 429
    assert int(response.headers["Retry-After"]) > 0


def test_successful_sign_ins_do_not_count_against_the_limit(app, make_user):
    user = make_user("council_admin")
    for _ in range(8):
        client = app.test_client()
        assert login(client, user).status_code == 302


def test_long_passwords_work(app, make_user):
    password = "p" * 40 + " a passphrase with spaces and ünïcödé " + "q" * 30
    assert len(password) > 64
    user = make_user("council_admin", password=password)
    assert login(app.test_client(), user, password=password).status_code == 302


def test_passwords_are_hashed_with_argon2(app, make_user):
    from portal.identity.models import User

    user = make_user("council_admin")
    with app.app_context():
        stored = db.session.get(User, user.id).password_hash
    assert stored.startswith("$argon2id$")
    assert user.password not in stored
