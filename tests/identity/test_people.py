"""Managing people: roles, deactivation and reactivation, and the rules that guard them."""

from __future__ import annotations

from portal.identity.models import User, UserSession
from tests.conftest import csrf_token, login, post_form
from tests.support import count, db_rows, follow_messages, quick_user, row

LAST_ADMIN = "This is the organisation's only admin. Make someone else an admin first."


def act(client, path: str, data: dict | None = None, *, back: str):
    """POST a people action with a CSRF token from ``back``; the messages shown afterwards.

    A deactivation is posted as confirmed (its confirm step: tests/test_confirmation.py)."""
    data = {**(data or {}), **({"confirmed": "1"} if path.endswith("/deactivate") else {})}
    response = post_form(client, path, data, token_from=back)
    assert response.status_code == 302, response.status_code
    assert response.headers["Location"] == back
    return follow_messages(client, response)


def test_an_org_admin_changes_a_members_role_and_back(app, make_org, signed_in):
    org = make_org()
    admin = signed_in("org_admin", org)
    member = quick_user(app, "member", org)
    shown = act(admin, f"/org/users/{member.id}/role", {"role": "org_admin"}, back="/org/users")
    assert f"{member.email} is now organisation admin." in shown
    assert row(app, User, member.id)["role"] == "org_admin"
    shown = act(admin, f"/org/users/{member.id}/role", {"role": "member"}, back="/org/users")
    assert f"{member.email} is now member." in shown
    assert row(app, User, member.id)["role"] == "member"


def test_a_demoted_admin_loses_admin_pages_at_once(app, make_org, signed_in):
    org = make_org()
    admin = signed_in("org_admin", org)
    deputy = signed_in("org_admin", org)
    act(admin, f"/org/users/{deputy.user.id}/role", {"role": "member"}, back="/org/users")
    assert deputy.get("/org/users").status_code == 403
    assert deputy.get("/my").status_code == 200


def test_the_only_org_admin_cannot_be_demoted_or_deactivated(app, make_org, signed_in):
    org = make_org()
    admin = signed_in("org_admin", org)
    council = signed_in("council_admin")
    quick_user(app, "org_admin", org, active=False)  # an inactive admin does not count
    council_back = f"/council/organisations/{org.slug}"
    before = db_rows(app)
    assert LAST_ADMIN in act(
        admin, f"/org/users/{admin.user.id}/role", {"role": "member"}, back="/org/users"
    )
    assert LAST_ADMIN in act(
        council,
        f"/council/organisations/{org.slug}/users/{admin.user.id}/role",
        {"role": "member"},
        back=council_back,
    )
    assert LAST_ADMIN in act(
        council,
        f"/council/organisations/{org.slug}/users/{admin.user.id}/deactivate",
        back=council_back,
    )
    assert db_rows(app) == before
    assert admin.get("/org").status_code == 200


def test_with_a_second_admin_the_first_may_step_down(app, make_org, signed_in):
    org = make_org()
    admin = signed_in("org_admin", org)
    deputy = quick_user(app, "org_admin", org)
    act(admin, f"/org/users/{admin.user.id}/role", {"role": "member"}, back="/org/users")
    assert row(app, User, admin.user.id)["role"] == "member"
    assert row(app, User, deputy.id)["role"] == "org_admin"
    # and now the deputy is the last one
    deputy_client = app.test_client()
    login(deputy_client, deputy)
    before = db_rows(app)
    assert LAST_ADMIN in act(
        deputy_client, f"/org/users/{deputy.id}/role", {"role": "member"}, back="/org/users"
    )
    assert db_rows(app) == before


def test_no_one_can_deactivate_themselves(app, make_org, signed_in):
    org = make_org()
    admin = signed_in("org_admin", org)
    quick_user(app, "org_admin", org)
    council = signed_in("council_admin")
    before = db_rows(app)
    message = "You cannot deactivate your own account."
    assert message in act(admin, f"/org/users/{admin.user.id}/deactivate", back="/org/users")
    assert message in act(
        council, f"/council/staff/{council.user.id}/deactivate", back="/council/staff"
    )
    assert db_rows(app) == before
    assert admin.get("/org").status_code == 200
    assert council.get("/council").status_code == 200


def test_deactivate_and_reactivate_a_member(app, make_org, signed_in):
    org = make_org()
    admin = signed_in("org_admin", org)
    member = quick_user(app, "member", org)
    member_client = app.test_client()
    login(member_client, member)

    shown = act(admin, f"/org/users/{member.id}/deactivate", back="/org/users")
    assert f"{member.email} is deactivated." in shown
    assert row(app, User, member.id)["is_active"] is False
    assert member_client.get("/my").status_code == 302
    assert (
        count(app, UserSession, UserSession.user_id == member.id, UserSession.revoked_at.is_(None))
        == 0
    )
    assert login(app.test_client(), member).status_code == 401

    shown = act(admin, f"/org/users/{member.id}/reactivate", back="/org/users")
    assert f"{member.email} is active again." in shown
    assert row(app, User, member.id)["is_active"] is True
    assert login(app.test_client(), member).status_code == 302
    assert member_client.get("/my").status_code == 302  # the old session stays ended


def test_a_council_admin_manages_an_organisations_people(app, make_org, signed_in):
    org = make_org()
    council = signed_in("council_admin")
    admin = quick_user(app, "org_admin", org)
    member = quick_user(app, "member", org)
    back = f"/council/organisations/{org.slug}"
    base = f"/council/organisations/{org.slug}/users"
    act(council, f"{base}/{member.id}/role", {"role": "org_admin"}, back=back)
    act(council, f"{base}/{admin.id}/deactivate", back=back)
    assert row(app, User, member.id)["role"] == "org_admin"
    assert row(app, User, admin.id)["is_active"] is False
    act(council, f"{base}/{admin.id}/reactivate", back=back)
    assert row(app, User, admin.id)["is_active"] is True
    page = council.get(base).get_data(as_text=True)
    assert admin.email in page and member.email in page


def test_a_council_admin_manages_council_staff(app, signed_in):
    council = signed_in("council_admin")
    finance = quick_user(app, "finance")
    act(
        council,
        f"/council/staff/{finance.id}/role",
        {"role": "council_admin"},
        back="/council/staff",
    )
    assert row(app, User, finance.id)["role"] == "council_admin"
    act(council, f"/council/staff/{finance.id}/deactivate", back="/council/staff")
    assert row(app, User, finance.id)["is_active"] is False


def test_roles_from_the_other_side_or_unknown_roles_are_refused(app, make_org, signed_in):
    org = make_org()
    admin = signed_in("org_admin", org)
    council = signed_in("council_admin")
    member = quick_user(app, "member", org)
    finance = quick_user(app, "finance")
    refused = "Choose a role from the list; nothing was changed."
    before = db_rows(app)
    for role in ("council_admin", "finance", "owner", ""):
        assert refused in act(
            admin, f"/org/users/{member.id}/role", {"role": role}, back="/org/users"
        )
        assert refused in act(
            council,
            f"/council/organisations/{org.slug}/users/{member.id}/role",
            {"role": role},
            back=f"/council/organisations/{org.slug}",
        )
    for role in ("org_admin", "member"):
        assert refused in act(
            council, f"/council/staff/{finance.id}/role", {"role": role}, back="/council/staff"
        )
    assert db_rows(app) == before


def test_people_actions_without_a_valid_csrf_token_change_nothing(app, make_org, signed_in):
    org = make_org()
    admin = signed_in("org_admin", org)
    member = quick_user(app, "member", org)
    other = app.test_client()
    stale = csrf_token(other, "/login")  # a token of another session
    before = db_rows(app)
    for data in ({}, {"csrf_token": stale}):
        for path, extra in (
            (f"/org/users/{member.id}/deactivate", {}),
            (f"/org/users/{member.id}/role", {"role": "org_admin"}),
            ("/org/users/invite", {"invite-email": "x@example.com", "invite-role": "member"}),
        ):
            response = admin.post(path, data={**data, **extra})
            assert response.status_code == 400, path
            assert "CSRF" in response.get_data(as_text=True)
    assert db_rows(app) == before


def test_the_people_list_searches_by_email_and_name(app, make_org, signed_in):
    org = make_org()
    admin = signed_in("org_admin", org)
    alice = quick_user(app, "member", org, email="alice@example.com")
    bob = quick_user(app, "member", org, email="bob@example.com")
    page = admin.get("/org/users?q=ALICE").get_data(as_text=True)
    assert alice.email in page and bob.email not in page
    with_name = admin.get("/org/users?q=quick").get_data(as_text=True)  # quick users' names
    assert alice.email in with_name and bob.email in with_name
    assert admin.user.email not in with_name
