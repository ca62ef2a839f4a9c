"""Passkey pages: the security page's section and the second sign-in step, through the
test client, with a software authenticator (tests/identity/soft_authenticator.py)."""

from __future__ import annotations

import json

import sqlalchemy as sa

from portal.db import db
from portal.identity.models import Passkey, UserSession
from tests.conftest import csrf_token, flashes, login, post_form
from tests.identity.soft_authenticator import SoftAuthenticator

ORIGIN = "http://portal.test"  # the test app's PORTAL_BASE_URL


def _options(client, path: str, token_from: str):
    token = csrf_token(client, token_from)
    return client.post(path, headers={"X-CSRFToken": token, "Accept": "application/json"})


def _register(client, authenticator: SoftAuthenticator, name: str = "Laptop"):
    response = _options(client, "/account/security/passkeys/options", "/account/security")
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    answer = authenticator.create(response.get_data(as_text=True), origin=ORIGIN)
    return post_form(
        client,
        "/account/security/passkeys",
        {"passkey-name": name, "passkey-credential": json.dumps(answer)},
        token_from="/account/security",
    )


def _to_second_step(client, user):
    """The password step only (tests.conftest.login would answer the second step too)."""
    response = post_form(client, "/login", {"email": user.email, "password": user.password})
    assert response.status_code == 302, flashes(response)
    assert response.headers["Location"].endswith("/login/second-factor")


def _passkey_sign_in(client, authenticator: SoftAuthenticator, **kwargs):
    response = _options(client, "/login/passkey/options", "/login/second-factor")
    assert response.status_code == 200, response.get_data(as_text=True)
    answer = authenticator.get(response.get_data(as_text=True), **{"origin": ORIGIN, **kwargs})
    return post_form(
        client,
        "/login/passkey",
        {"credential": json.dumps(answer)},
        token_from="/login/second-factor",
    )


def _member_with_passkey(app, make_org, make_user):
    user = make_user("member", make_org())
    client = app.test_client()
    assert login(client, user).status_code == 302
    authenticator = SoftAuthenticator()
    assert _register(client, authenticator).status_code == 302
    client.post("/logout", data={"csrf_token": csrf_token(client, "/account/security")})
    return user, authenticator


# ---------------------------------------------------------------- the security page


def test_security_page_registers_renames_and_removes(app, make_org, make_user):
    user = make_user("member", make_org())
    client = app.test_client()
    login(client, user)
    page = client.get("/account/security").get_data(as_text=True)
    assert "Passkeys" in page and "You have no passkey yet." in page
    assert 'data-passkey="register"' in page and "needs JavaScript" in page
    assert "js/passkeys.js" in page

    response = _register(client, SoftAuthenticator(), name="Work laptop")
    assert response.status_code == 302
    page = client.get(response.headers["Location"])
    html = page.get_data(as_text=True)
    assert "Passkey “Work laptop” is added." in flashes(page)
    assert any("Make recovery codes" in m for m in flashes(page))  # none yet
    assert "Work laptop" in html

    with app.app_context():
        passkey_id = db.session.scalar(sa.select(Passkey.id))
    response = post_form(
        client,
        f"/account/security/passkeys/{passkey_id}/rename",
        {"name": "Desk key"},
        token_from="/account/security",
    )
    assert response.status_code == 302
    assert "Desk key" in client.get("/account/security").get_data(as_text=True)

    response = post_form(
        client,
        f"/account/security/passkeys/{passkey_id}/remove",
        {},
        token_from="/account/security",
    )
    assert response.status_code == 302
    assert "The passkey is removed." in flashes(client.get(response.headers["Location"]))
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Passkey)) == 0


def test_register_without_an_answer_or_with_garbage_is_a_clear_400(app, make_org, make_user):
    user = make_user("member", make_org())
    client = app.test_client()
    login(client, user)
    _options(client, "/account/security/passkeys/options", "/account/security")
    response = post_form(
        client,
        "/account/security/passkeys",
        {"passkey-name": "x", "passkey-credential": ""},
        token_from="/account/security",
    )
    assert response.status_code == 400
    assert any("Passkeys need JavaScript" in m for m in flashes(response))
    response = post_form(
        client,
        "/account/security/passkeys",
        {"passkey-credential": '{"id": "abc", "response": {}}'},
        token_from="/account/security",
    )
    assert response.status_code == 400
    response = post_form(
        client, "/account/security/passkeys/1/remove", {}, token_from="/account/security"
    )
    assert response.status_code == 404  # none yet
    _register(client, SoftAuthenticator())
    with app.app_context():
        passkey_id = db.session.scalar(sa.select(Passkey.id))
    response = post_form(
        client,
        f"/account/security/passkeys/{passkey_id}/rename",
        {"name": "x" * 101},
        token_from="/account/security",
    )
    assert response.status_code == 400
    assert flashes(response) == ["New name: Field cannot be longer than 100 characters."]
    # Options need the CSRF token like any POST.
    assert client.post("/account/security/passkeys/options").status_code == 400


def test_another_persons_passkey_is_not_found(app, make_org, make_user):
    owner, _ = _member_with_passkey(app, make_org, make_user)
    with app.app_context():
        passkey_id = db.session.scalar(sa.select(Passkey.id))
    other = make_user("member", make_org())
    client = app.test_client()
    login(client, other)
    for action, data in (("remove", {}), ("rename", {"name": "Mine now"})):
        response = post_form(
            client,
            f"/account/security/passkeys/{passkey_id}/{action}",
            data,
            token_from="/account/security",
        )
        assert response.status_code == 404
    with app.app_context():
        assert db.session.scalar(sa.select(Passkey.name)) == "Laptop"


def test_signed_out_people_cannot_ask_for_options(client):
    response = client.post("/account/security/passkeys/options")
    assert response.status_code in (302, 400, 401)
    response = client.post("/login/passkey/options", headers={"Accept": "application/json"})
    assert response.status_code == 400


# ---------------------------------------------------------------- the second sign-in step


def test_sign_in_with_a_passkey(app, make_org, make_user):
    user, authenticator = _member_with_passkey(app, make_org, make_user)
    client = app.test_client()
    _to_second_step(client, user)
    page = client.get("/login/second-factor").get_data(as_text=True)
    assert "Or use a passkey" in page and 'data-passkey="authenticate"' in page
    assert client.get("/my").status_code == 302  # not signed in yet

    response = _passkey_sign_in(client, authenticator)
    assert response.status_code == 302, flashes(response)
    assert response.headers["Location"].endswith("/my")
    assert client.get("/my").status_code == 200
    with app.app_context():
        row = db.session.scalar(
            sa.select(UserSession).where(
                UserSession.user_id == user.id, UserSession.revoked_at.is_(None)
            )
        )
        assert row.amr == "pwd+passkey"
        assert db.session.scalar(sa.select(Passkey.sign_count)) == 1


def test_a_refused_passkey_answers_401_and_does_not_sign_in(app, make_org, make_user):
    user, authenticator = _member_with_passkey(app, make_org, make_user)
    client = app.test_client()
    _to_second_step(client, user)
    response = _passkey_sign_in(client, authenticator, origin="https://phish.example")
    assert response.status_code == 401
    assert "The passkey could not be verified. Try again." in flashes(response)
    assert client.get("/my").status_code == 302
    # Without a pending password step, nothing to finish.
    fresh = app.test_client()
    response = post_form(fresh, "/login/passkey", {"credential": "{}"}, token_from="/login")
    assert response.status_code == 302 and response.headers["Location"].endswith("/login")


def test_failed_passkey_answers_are_rate_limited(app, make_org, make_user):
    user, authenticator = _member_with_passkey(app, make_org, make_user)
    client = app.test_client()
    _to_second_step(client, user)
    statuses = []
    for _ in range(7):
        response = post_form(
            client, "/login/passkey", {"credential": "not json"}, token_from="/login/second-factor"
        )
        statuses.append(response.status_code)
    assert statuses[:5] == [401] * 5
    assert 429 in statuses[5:]


def test_a_council_admin_without_a_factor_enrols_a_passkey_then_signs_in_with_it(app, make_user):
    admin = make_user("council_admin", second_factor=False)
    client = app.test_client()
    response = post_form(client, "/login", {"email": admin.email, "password": admin.password})
    assert response.status_code == 302  # no factor yet: signed in, but sent to enrol
    response = client.get("/council")
    assert response.status_code == 302 and response.headers["Location"].endswith(
        "/account/security"
    )
    # The passkey pages are open to them (the enrolment guard lets them through).
    authenticator = SoftAuthenticator()
    assert _register(client, authenticator, name="Admin key").status_code == 302
    assert client.get("/council").status_code == 200

    client.post("/logout", data={"csrf_token": csrf_token(client, "/account/security")})
    _to_second_step(client, admin)
    response = _passkey_sign_in(client, authenticator)
    assert response.status_code == 302 and response.headers["Location"].endswith("/council")
    assert client.get("/council").status_code == 200


def test_a_counter_gone_backwards_is_refused_and_audited(app, make_org, make_user):
    from portal.audit.models import AuditEvent

    user, authenticator = _member_with_passkey(app, make_org, make_user)
    client = app.test_client()
    _to_second_step(client, user)
    assert _passkey_sign_in(client, authenticator, sign_count=7).status_code == 302
    client.post("/logout", data={"csrf_token": csrf_token(client, "/account/security")})

    _to_second_step(client, user)  # a copy of the key, used fewer times
    response = _passkey_sign_in(client, authenticator, sign_count=3)
    assert response.status_code == 401
    assert any("may have been copied" in m for m in flashes(response))
    assert client.get("/my").status_code == 302
    with app.app_context():
        event = db.session.scalar(
            sa.select(AuditEvent).where(AuditEvent.action == "passkey.clone_suspected")
        )
        assert event is not None and event.target_id == str(user.id)
        assert event.after["sign_count"] == 7 and event.after["reported"] == 3
        assert db.session.scalar(sa.select(Passkey.sign_count)) == 7
