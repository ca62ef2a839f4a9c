"""Who may see and do what: every page and POST action, for each role and across tenants.

A refused request must change nothing: the tests compare every row of every
table before and after.
"""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from portal.db import db
from portal.identity.models import Invitation, User
from portal.kernel.clock import now_utc
from portal.tenancy.models import Organisation
from tests.conftest import csrf_token, login, post_form
from tests.support import db_rows, quick_user, row

ROLES = ("anonymous", "council_admin", "finance", "org_admin", "member")


@pytest.fixture
def world(app, make_org, signed_in):
    """Two organisations with people and invitations, and a client per role (in ``a``)."""
    a = make_org("alpha")
    b = make_org("bravo")
    clients = {
        "anonymous": app.test_client(),
        "council_admin": signed_in("council_admin"),
        "finance": signed_in("finance"),
        "org_admin": signed_in("org_admin", a),
        "member": signed_in("member", a),
    }
    b_admin = quick_user(app, "org_admin", b)
    b_member = quick_user(app, "member", b)
    b_inactive = quick_user(app, "member", b, active=False)
    a_inactive = quick_user(app, "member", a, active=False)
    staff = quick_user(app, "finance")
    with app.app_context():
        invitations = {}
        for key, org_id, role in (
            ("a", a.id, "member"),
            ("b", b.id, "member"),
            ("staff", None, "finance"),
        ):
            invitation = Invitation(
                organisation_id=org_id,
                email=f"invited-{key}@example.com",
                role=role,
                token_hash=f"{key:0>64}",
                expires_at=now_utc() + dt.timedelta(days=3),
            )
            db.session.add(invitation)
            db.session.flush()
            invitations[key] = invitation.id
        db.session.commit()
    return {
        "a": a,
        "b": b,
        "clients": clients,
        "b_admin": b_admin,
        "b_member": b_member,
        "b_inactive": b_inactive,
        "a_member": clients["member"].user,
        "a_inactive": a_inactive,
        "staff": staff,
        "invitations": invitations,
    }


def _is_sign_in_redirect(response) -> bool:
    return response.status_code == 302 and response.headers["Location"].startswith("/login")


# ---------------------------------------------------------------- pages


def test_every_page_answers_each_role_as_it_should(world):
    a = world["a"].slug
    # page -> roles that may see it (everyone else: 403; anonymous: the sign-in redirect)
    pages = {
        "/council": {"council_admin", "finance"},
        "/council/organisations": {"council_admin", "finance"},
        "/council/organisations?status=active&q=alp&page=1": {"council_admin", "finance"},
        f"/council/organisations/{a}": {"council_admin", "finance"},
        "/council/organisations/new": {"council_admin"},
        f"/council/organisations/{a}/edit": {"council_admin"},
        f"/council/organisations/{a}/users": {"council_admin"},
        "/council/staff": {"council_admin"},
        "/audit": {"council_admin", "org_admin"},
        "/org": {"org_admin"},
        "/org/profile": {"org_admin"},
        "/org/users": {"org_admin"},
        "/profile": {"council_admin", "finance", "org_admin", "member"},
        "/my": {"council_admin", "finance", "org_admin", "member"},
    }
    wrong = []
    for path, allowed in pages.items():
        for role in ROLES:
            response = world["clients"][role].get(path)
            if role == "anonymous":
                ok = _is_sign_in_redirect(response) and "next=" in response.headers["Location"]
            elif role in allowed:
                ok = response.status_code == 200
            else:
                ok = response.status_code == 403
            if not ok:
                wrong.append((path, role, response.status_code))
    assert wrong == []


def test_public_pages_are_open_to_everyone(world):
    for role in ROLES:
        client = world["clients"][role]
        assert client.get("/apply").status_code == 200
        assert client.get("/password/forgot").status_code == 200
        assert client.get("/healthz").status_code == 200


def test_pages_of_an_unknown_organisation_are_404_for_the_council(world):
    council = world["clients"]["council_admin"]
    for path in (
        "/council/organisations/no-such-org",
        "/council/organisations/no-such-org/edit",
        "/council/organisations/no-such-org/users",
    ):
        assert council.get(path).status_code == 404, path
    # A filter box naming no organisation: a message beside the box (issue 14), not a 404.
    assert council.get("/audit?organisation=no-such-org").status_code == 422


# ---------------------------------------------------------------- POST actions


def _actions(world) -> dict[str, tuple[dict, set[str]]]:
    """Every POST action -> (form data, the roles allowed to do it)."""
    a = world["a"].slug
    a_member = world["a_member"].id
    a_inactive = world["a_inactive"].id
    staff = world["staff"].id
    inv = world["invitations"]
    org_fields = {
        "name": "Renamed",
        "country": "FR",
        "currency": "EUR",
        "billing_email": "x@renamed.example",
        "billing_provider": "manual",
    }
    return {
        "/council/organisations/new": (
            {**org_fields, "slug": "brand-new"},
            {"council_admin"},
        ),
        f"/council/organisations/{a}/edit": ({**org_fields, "slug": a}, {"council_admin"}),
        f"/council/organisations/{a}/status/suspend": ({"reason": "x"}, {"council_admin"}),
        f"/council/organisations/{a}/status/close": ({}, {"council_admin"}),
        f"/council/organisations/{a}/users/invite": (
            {"invite-email": "new@example.com", "invite-role": "member"},
            {"council_admin"},
        ),
        f"/council/organisations/{a}/users/{a_member}/role": (
            {"role": "org_admin"},
            {"council_admin"},
        ),
        f"/council/organisations/{a}/users/{a_member}/deactivate": ({}, {"council_admin"}),
        f"/council/organisations/{a}/users/{a_inactive}/reactivate": ({}, {"council_admin"}),
        f"/council/organisations/{a}/users/invitations/{inv['a']}/revoke": (
            {},
            {"council_admin"},
        ),
        "/council/staff/invite": (
            {"invite-email": "staff@example.com", "invite-role": "finance"},
            {"council_admin"},
        ),
        f"/council/staff/{staff}/role": ({"role": "council_admin"}, {"council_admin"}),
        f"/council/staff/{staff}/deactivate": ({}, {"council_admin"}),
        f"/council/staff/invitations/{inv['staff']}/revoke": ({}, {"council_admin"}),
        "/org/users/invite": (
            {"invite-email": "colleague@example.com", "invite-role": "member"},
            {"org_admin"},
        ),
        f"/org/users/{a_member}/role": ({"role": "org_admin"}, {"org_admin"}),
        f"/org/users/{a_member}/deactivate": ({}, {"org_admin"}),
        f"/org/users/{a_inactive}/reactivate": ({}, {"org_admin"}),
        f"/org/users/invitations/{inv['a']}/revoke": ({}, {"org_admin"}),
        "/org/profile": (
            {"name": "Alpha Renamed", "billing_email": "b@alpha.example"},
            {"org_admin"},
        ),
    }


def test_refused_post_actions_change_nothing(app, world):
    """Each role that may not do an action gets 403 (anonymous: sign-in) and no row changes."""
    tokens = {
        role: csrf_token(client, "/login" if role == "anonymous" else "/profile")
        for role, client in world["clients"].items()
    }
    before = db_rows(app)
    wrong = []
    for path, (data, allowed) in _actions(world).items():
        for role in ROLES:
            if role in allowed:
                continue
            client = world["clients"][role]
            response = client.post(path, data={**data, "csrf_token": tokens[role]})
            if role == "anonymous":
                ok = _is_sign_in_redirect(response)
            else:
                ok = response.status_code == 403
            if not ok:
                wrong.append((path, role, response.status_code))
    assert wrong == []
    assert db_rows(app) == before


def test_allowed_post_actions_are_carried_out(app, world):
    """The same actions, by the role allowed to do them, redirect and change the data."""
    a = world["a"].slug
    a_member = world["a_member"].id
    a_inactive = world["a_inactive"].id
    staff = world["staff"].id
    inv = world["invitations"]
    org_fields = {
        "name": "Renamed",
        "country": "FR",
        "currency": "EUR",
        "billing_email": "x@renamed.example",
        "billing_provider": "manual",
    }
    council = [
        ("/council/organisations/new", {**org_fields, "slug": "brand-new"}),
        (f"/council/organisations/{a}/edit", {**org_fields, "slug": a}),
        (
            f"/council/organisations/{a}/users/invite",
            {"invite-email": "new@example.com", "invite-role": "member"},
        ),
        (f"/council/organisations/{a}/users/{a_member}/role", {"role": "org_admin"}),
        (f"/council/organisations/{a}/users/{a_member}/deactivate", {"confirmed": "1"}),
        (f"/council/organisations/{a}/users/{a_inactive}/reactivate", {}),
        (f"/council/organisations/{a}/users/invitations/{inv['a']}/revoke", {}),
        ("/council/staff/invite", {"invite-email": "staff@example.com", "invite-role": "finance"}),
        (f"/council/staff/{staff}/role", {"role": "council_admin"}),
        (f"/council/staff/{staff}/deactivate", {"confirmed": "1"}),
        (f"/council/staff/invitations/{inv['staff']}/revoke", {}),
        (f"/council/organisations/{a}/status/suspend", {"reason": "Unpaid"}),
        (f"/council/organisations/{a}/status/reactivate", {}),
    ]
    org_admin = [
        ("/org/users/invite", {"invite-email": "colleague@example.com", "invite-role": "member"}),
        (f"/org/users/{a_member}/role", {"role": "member"}),
        (f"/org/users/{a_member}/reactivate", {}),
        (f"/org/users/{a_inactive}/deactivate", {"confirmed": "1"}),
        ("/org/users/invitations/{colleague}/revoke", {}),
        ("/org/profile", {"name": "Alpha Renamed", "billing_email": "b@alpha.example"}),
    ]
    for role, actions in (("council_admin", council), ("org_admin", org_admin)):
        client = world["clients"][role]
        if role == "org_admin":  # the suspension above signed alpha's people out
            assert client.get("/org").status_code == 302
            login(client, client.user)
        for path, data in actions:
            if "{colleague}" in path:
                with app.app_context():
                    colleague = db.session.scalar(
                        sa.select(Invitation.id).where(Invitation.email == "colleague@example.com")
                    )
                path = path.format(colleague=colleague)
            data = dict(data)
            if "invite-email" in data:
                data["invite-csrf_token"] = csrf_token(client, "/profile")
            before = db_rows(app)
            response = post_form(client, path, data, token_from="/profile")
            assert response.status_code == 302, (path, response.status_code)
            assert not response.headers["Location"].startswith("/login"), path
            assert db_rows(app) != before, path
    with app.app_context():
        assert db.session.get(Organisation, world["a"].id).name == "Alpha Renamed"
        assert db.session.get(Organisation, world["a"].id).status == "active"
        assert db.session.get(User, staff).role == "council_admin"
        assert db.session.get(User, staff).is_active is False
        assert db.session.get(User, a_member).role == "member"
        assert db.session.get(User, a_member).is_active is True
        assert db.session.get(User, a_inactive).is_active is False


def test_signed_in_people_may_change_only_their_own_profile(app, world):
    for role in ("council_admin", "finance", "org_admin", "member"):
        client = world["clients"][role]
        response = client.post(
            "/profile",
            data={
                "profile-csrf_token": csrf_token(client, "/profile"),
                "profile-name": f"New {role}",
            },
        )
        assert response.status_code == 302
        assert row(app, User, client.user.id)["name"] == f"New {role}"
    anonymous = world["clients"]["anonymous"]
    before = db_rows(app)
    for path in ("/profile", "/profile/password"):
        response = post_form(anonymous, path, {"profile-name": "x"}, token_from="/login")
        assert _is_sign_in_redirect(response), path
    assert db_rows(app) == before


# ---------------------------------------------------------------- across tenants


def test_an_org_admin_cannot_touch_another_organisations_people(app, world):
    """Guessing ids of another tenant's people and invitations: 404, and nothing changes."""
    admin = world["clients"]["org_admin"]
    b_people = (world["b_admin"].id, world["b_member"].id, world["b_inactive"].id)
    council_people = (world["clients"]["council_admin"].user.id, world["staff"].id)
    b_invitations = (world["invitations"]["b"], world["invitations"]["staff"])
    attempts = []
    for user_id in (*b_people, *council_people):
        attempts += [
            (f"/org/users/{user_id}/role", {"role": "member"}),
            (f"/org/users/{user_id}/role", {"role": "org_admin"}),
            (f"/org/users/{user_id}/deactivate", {}),
            (f"/org/users/{user_id}/reactivate", {}),
        ]
    for invitation_id in b_invitations:
        attempts.append((f"/org/users/invitations/{invitation_id}/revoke", {}))
    before = db_rows(app)
    for path, data in attempts:
        response = post_form(admin, path, data, token_from="/org/users")
        assert response.status_code == 404, path
    assert db_rows(app) == before
    assert row(app, User, world["b_member"].id)["is_active"] is True
    assert row(app, User, world["b_inactive"].id)["is_active"] is False
    assert row(app, Invitation, world["invitations"]["b"])["revoked_at"] is None


def test_an_org_admin_sees_only_their_own_people(world):
    page = world["clients"]["org_admin"].get("/org/users").get_data(as_text=True)
    assert world["a_member"].email in page
    for ref in (world["b_admin"], world["b_member"], world["staff"]):
        assert ref.email not in page
    assert "invited-a@example.com" in page
    assert "invited-b@example.com" not in page
    searched = world["clients"]["org_admin"].get(f"/org/users?q={world['b_member'].email}")
    searched_page = searched.get_data(as_text=True)
    assert "No one yet" in searched_page
    assert searched_page.count(world["b_member"].email) == 1  # only in the search box


def test_an_org_admin_cannot_reach_another_organisation_through_council_pages(app, world):
    admin = world["clients"]["org_admin"]
    b = world["b"].slug
    for path in (
        f"/council/organisations/{b}",
        f"/council/organisations/{b}/edit",
        f"/council/organisations/{b}/users",
    ):
        assert admin.get(path).status_code == 403, path
    before = db_rows(app)
    for path, data in (
        (
            f"/council/organisations/{b}/edit",
            {
                "name": "Hijacked",
                "slug": b,
                "country": "DE",
                "currency": "EUR",
                "billing_email": "evil@example.com",
            },
        ),
        (f"/council/organisations/{b}/status/suspend", {"reason": "x"}),
        (f"/council/organisations/{b}/status/close", {}),
        (
            f"/council/organisations/{b}/users/invite",
            {"invite-email": "evil@example.com", "invite-role": "org_admin"},
        ),
        (f"/council/organisations/{b}/users/{world['b_member'].id}/role", {"role": "org_admin"}),
        (f"/council/organisations/{b}/users/{world['b_member'].id}/deactivate", {}),
        (f"/council/organisations/{b}/users/{world['b_inactive'].id}/reactivate", {}),
        (f"/council/organisations/{b}/users/invitations/{world['invitations']['b']}/revoke", {}),
    ):
        response = post_form(admin, path, data, token_from="/org/users")
        assert response.status_code == 403, path
    assert db_rows(app) == before


def test_an_org_admin_cannot_change_another_organisations_profile(app, world):
    """The profile form edits the admin's own organisation whatever else is posted."""
    admin = world["clients"]["org_admin"]
    b_before = row(app, Organisation, world["b"].id)
    response = post_form(
        admin,
        "/org/profile",
        {
            "name": "Alpha New Name",
            "billing_email": "billing@alpha.example",
            "slug": world["b"].slug,
            "organisation": world["b"].slug,
            "organisation_id": world["b"].id,
            "id": world["b"].id,
        },
    )
    assert response.status_code == 302
    assert row(app, Organisation, world["b"].id) == b_before
    assert row(app, Organisation, world["a"].id)["name"] == "Alpha New Name"
    assert world["b"].name not in admin.get("/org/profile").get_data(as_text=True)


def test_an_org_admin_never_sees_another_organisations_audit_log(app, world):
    council = world["clients"]["council_admin"]
    # something happens in bravo that alpha must not see
    post_form(
        council,
        f"/council/organisations/{world['b'].slug}/users/{world['b_member'].id}/deactivate",
        {},
        token_from="/profile",
    )
    admin = world["clients"]["org_admin"]
    for path in ("/audit", f"/audit?organisation={world['b'].slug}", "/org"):
        page = admin.get(path).get_data(as_text=True)
        assert world["b_member"].email not in page, path
        assert "user.deactivate" not in page, path
        assert world["b"].slug not in page, path
    # the council does see it
    assert world["b_member"].email in council.get("/audit").get_data(as_text=True)


def test_a_council_admin_acts_on_people_only_through_their_own_scope(app, world):
    """A user id must belong to the organisation (or the staff) in the URL."""
    council = world["clients"]["council_admin"]
    a = world["a"].slug
    before = db_rows(app)
    for path, data in (
        (f"/council/organisations/{a}/users/{world['b_member'].id}/deactivate", {}),
        (f"/council/organisations/{a}/users/{world['b_inactive'].id}/reactivate", {}),
        (f"/council/organisations/{a}/users/{world['b_member'].id}/role", {"role": "org_admin"}),
        (f"/council/organisations/{a}/users/{world['staff'].id}/deactivate", {}),
        (f"/council/organisations/{a}/users/invitations/{world['invitations']['b']}/revoke", {}),
        (f"/council/staff/{world['a_member'].id}/deactivate", {}),
        (f"/council/staff/{world['a_member'].id}/role", {"role": "finance"}),
        (f"/council/staff/invitations/{world['invitations']['a']}/revoke", {}),
    ):
        response = post_form(council, path, data, token_from="/profile")
        assert response.status_code == 404, path
    assert db_rows(app) == before


def test_a_member_cannot_manage_people(app, world):
    member = world["clients"]["member"]
    before = db_rows(app)
    for path in (
        "/org/users",
        "/org",
        f"/council/organisations/{world['a'].slug}/users",
        "/council/staff",
    ):
        assert member.get(path).status_code == 403, path
    for path, data in (
        ("/org/users/invite", {"invite-email": "x@example.com", "invite-role": "member"}),
        (f"/org/users/{world['a_inactive'].id}/reactivate", {}),
        (f"/org/users/{member.user.id}/role", {"role": "org_admin"}),
        (f"/org/users/invitations/{world['invitations']['a']}/revoke", {}),
    ):
        assert post_form(member, path, data, token_from="/my").status_code == 403, path
    assert db_rows(app) == before
    assert row(app, User, member.user.id)["role"] == "member"


def test_finance_reads_council_pages_but_changes_nothing(app, world):
    finance = world["clients"]["finance"]
    a = world["a"]
    assert a.name in finance.get("/council/organisations").get_data(as_text=True)
    detail = finance.get(f"/council/organisations/{a.slug}").get_data(as_text=True)
    assert a.name in detail
    assert "/status/suspend" not in detail  # no buttons it could not use
    assert "/edit" not in detail
    before = db_rows(app)
    for path, data in (
        (f"/council/organisations/{a.slug}/status/suspend", {"reason": "x"}),
        (f"/council/organisations/{a.slug}/edit", {"name": "Changed", "slug": a.slug}),
        ("/council/organisations/new", {"slug": "fin-org", "name": "Fin"}),
        (f"/council/organisations/{a.slug}/users/{world['a_member'].id}/deactivate", {}),
        (f"/council/staff/{world['staff'].id}/role", {"role": "council_admin"}),
        ("/council/staff/invite", {"invite-email": "x@example.com", "invite-role": "finance"}),
    ):
        assert post_form(finance, path, data, token_from="/profile").status_code == 403, path
    assert db_rows(app) == before
