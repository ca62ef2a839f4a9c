"""One's own profile: the display name, and changing the password."""

from __future__ import annotations

from portal.identity.models import User, UserSession
from portal.identity.security import verify_password
from tests.conftest import TEST_PASSWORD, login
from tests.support import client_for, count, db_rows, follow_messages, form_post, messages, row

NEW_PASSWORD = "an entirely new passphrase"


def save_name(client, name: str):
    return form_post(client, "/profile", {"name": name}, token_from="/profile", prefix="profile")


def change_password(client, current: str, new: str):
    return form_post(
        client,
        "/profile/password",
        {"current_password": current, "new_password": new},
        token_from="/profile",
        prefix="password",
    )


def live_sessions(app, user_id: int) -> int:
    return count(app, UserSession, UserSession.user_id == user_id, UserSession.revoked_at.is_(None))


def test_the_profile_page_shows_the_account(app, make_org, signed_in):
    org = make_org(name="Acme GmbH")
    member = signed_in("member", org)
    page = member.get("/profile").get_data(as_text=True)
    assert member.user.email in page
    assert "Member" in page and "Acme GmbH" in page
    staff = signed_in("finance").get("/profile").get_data(as_text=True)
    assert "Council staff" in staff


def test_changing_the_display_name(app, make_org, signed_in):
    member = signed_in("member", make_org())
    response = save_name(member, "  Jonas Example  ")
    assert response.headers["Location"] == "/profile"
    assert follow_messages(member, response) == ["Profile saved."]
    assert row(app, User, member.user.id)["name"] == "Jonas Example"
    assert "Jonas Example" in member.get("/my").get_data(as_text=True)  # in the navigation


def test_a_bad_name_is_refused_on_the_form(app, make_org, signed_in):
    member = signed_in("member", make_org())
    before = db_rows(app)
    for name, message in (
        ("", "This field is required."),
        ("   ", "This field is required."),
        ("x" * 201, "Field cannot be longer than 200 characters."),
    ):
        response = save_name(member, name)
        assert response.status_code == 400
        assert message in messages(response), name
    assert db_rows(app) == before


def test_changing_the_password_needs_the_current_one(app, make_org):
    member = client_for(app, "member", make_org())
    before = db_rows(app)
    response = change_password(member, "not my password", NEW_PASSWORD)
    assert response.status_code == 400
    assert "This is not your current password." in messages(response)
    too_short = change_password(member, TEST_PASSWORD, "short")
    assert too_short.status_code == 400
    assert "Field must be between 10 and 1024 characters long." in messages(too_short)
    assert db_rows(app) == before
    assert member.get("/my").status_code == 200


def test_changing_the_password_ends_the_other_sessions_but_keeps_this_one(app, make_org):
    org = make_org()
    member = client_for(app, "member", org)
    other = app.test_client()
    login(other, member.user)
    assert live_sessions(app, member.user.id) == 2

    response = change_password(member, TEST_PASSWORD, NEW_PASSWORD)
    assert response.headers["Location"] == "/profile"
    assert follow_messages(member, response) == [
        "Password changed. Your other sessions were signed out."
    ]
    assert member.get("/my").status_code == 200  # this session goes on
    assert other.get("/my").status_code == 302  # the other one ended
    assert live_sessions(app, member.user.id) == 1
    assert verify_password(row(app, User, member.user.id)["password_hash"], NEW_PASSWORD)
    assert login(app.test_client(), member.user).status_code == 401  # the old password
    assert login(app.test_client(), member.user, password=NEW_PASSWORD).status_code == 302


def test_every_role_has_a_profile(app, make_org, signed_in):
    org = make_org()
    for role, home in (
        ("council_admin", "/council"),
        ("finance", "/council"),
        ("org_admin", "/org"),
        ("member", "/my"),
    ):
        client = signed_in(role, org if role in ("org_admin", "member") else None)
        assert client.get("/profile").status_code == 200
        response = save_name(client, f"Name of {role}")
        assert response.status_code == 302
        assert row(app, User, client.user.id)["name"] == f"Name of {role}"
        assert client.get(home).status_code == 200
