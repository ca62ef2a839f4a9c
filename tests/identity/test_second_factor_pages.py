"""Second factors, the pages (issue 12): the two-step sign-in, enforcement, enrolment,
the council's reset, the organisation's requirement, and "last use" of a session."""

from __future__ import annotations

import datetime as dt
import re

import pyotp
import pytest
import sqlalchemy as sa

from portal.audit.models import AuditEvent
from portal.db import db
from portal.identity.models import RecoveryCode, TotpFactor, User, UserSession
from portal.identity.sign_in import session_start
from portal.tenancy.models import Organisation
from tests.conftest import (
    csrf_token,
    flashes,
    login,
    post_form,
    second_step,
    totp_code,
)

SECOND_STEP = "/login/second-factor"


def _password_step(client, user):
    response = post_form(client, "/login", {"email": user.email, "password": user.password})
    assert response.status_code == 302, response.get_data(as_text=True)
    return response


def _sessions(app, user_id: int) -> list[UserSession]:
    with app.app_context():
        rows = db.session.scalars(
            sa.select(UserSession).where(UserSession.user_id == user_id).order_by(UserSession.id)
        ).all()
        db.session.expunge_all()
        return list(rows)


def _recovery_codes(app, user) -> list[str]:
    """Ten fresh recovery codes for ``user`` (through the service, as the person)."""
    from portal.identity import factors
    from portal.kernel.actor import Actor

    with app.app_context():
        person = db.session.get(User, user.id)
        codes = factors.recovery_codes_generate(db.session, actor=Actor.person(person), user=person)
        db.session.commit()
        return codes


# ---------------------------------------------------------------- two steps


def test_password_alone_does_not_sign_in_a_person_with_a_factor(app, make_user):
    user = make_user("council_admin")
    client = app.test_client()
    response = _password_step(client, user)
    assert response.headers["Location"] == SECOND_STEP
    assert client.get("/council").status_code == 302  # not signed in yet
    assert _sessions(app, user.id) == []
    page = client.get(SECOND_STEP)
    assert page.status_code == 200 and user.email in page.get_data(as_text=True)
    wrong = post_form(client, SECOND_STEP, {"code": "000000"})
    assert wrong.status_code == 401
    assert "That code is not right" in wrong.get_data(as_text=True)
    assert client.get("/council").status_code == 302
    done = second_step(client, user)
    assert done.status_code == 302 and done.headers["Location"] == "/council"
    assert client.get("/council").status_code == 200
    (row,) = _sessions(app, user.id)
    assert row.amr == "pwd+otp"
    with app.app_context():
        event = db.session.scalars(
            sa.select(AuditEvent).where(AuditEvent.action == "user.sign_in")
        ).one()
        assert event.after == {"amr": "pwd+otp"}


def test_one_step_for_a_person_without_a_factor(app, make_org, make_user):
    user = make_user("member", make_org())
    client = app.test_client()
    assert login(client, user).headers["Location"] == "/my"
    assert _sessions(app, user.id)[0].amr == "pwd"


def test_recovery_code_signs_in_once(app, make_user):
    user = make_user("finance")
    codes = _recovery_codes(app, user)
    first = app.test_client()
    _password_step(first, user)
    response = post_form(first, SECOND_STEP, {"code": codes[0]})
    assert response.status_code == 302 and response.headers["Location"] == "/council"
    assert _sessions(app, user.id)[0].amr == "pwd+recovery"
    again = app.test_client()
    _password_step(again, user)
    assert post_form(again, SECOND_STEP, {"code": codes[0]}).status_code == 401
    assert post_form(again, SECOND_STEP, {"code": codes[1]}).status_code == 302


def test_the_pending_step_expires_after_five_minutes(app, clock, make_user):
    clock.freeze(dt.datetime(2026, 11, 3, 9, 0, tzinfo=dt.UTC))
    user = make_user("council_admin")
    client = app.test_client()
    _password_step(client, user)
    clock.advance(dt.timedelta(minutes=4, seconds=59))
    token = csrf_token(client, SECOND_STEP)  # the page still opens
    clock.advance(dt.timedelta(seconds=2))
    response = client.post(
        SECOND_STEP, data={"code": totp_code(app, user_id=user.id), "csrf_token": token}
    )
    # the form's own page refuses first: the pending state is gone
    assert response.status_code == 302 and response.headers["Location"] == "/login"
    assert client.get("/council").status_code == 302
    assert _sessions(app, user.id) == []


def test_a_new_sign_in_page_forgets_the_pending_step(app, make_user):
    user = make_user("council_admin")
    client = app.test_client()
    _password_step(client, user)
    client.get("/login")
    response = client.get(SECOND_STEP, follow_redirects=True)
    assert "Sign in again" in " ".join(flashes(response))


def test_second_step_without_a_password_first_goes_to_sign_in(app):
    client = app.test_client()
    response = client.get(SECOND_STEP)
    assert response.status_code == 302 and response.headers["Location"] == "/login"


def test_wrong_codes_are_rate_limited_per_person(app, make_user):
    user = make_user("council_admin")
    statuses = []
    for n in range(5):  # five browsers, one person: the count is the person's
        client = app.test_client()
        _password_step(client, user)
        statuses.append(post_form(client, SECOND_STEP, {"code": f"{n:06d}"}).status_code)
    assert statuses == [401] * 5
    client = app.test_client()
    _password_step(client, user)
    refused = post_form(client, SECOND_STEP, {"code": totp_code(app, user_id=user.id)})
    assert refused.status_code == 429
    assert "Too many wrong codes" in refused.get_data(as_text=True)
    assert _sessions(app, user.id) == []
    # another person at the same address is not held up
    other = make_user("council_admin")
    assert login(app.test_client(), other).status_code == 302


def test_a_code_is_taken_once_across_sign_ins(app, make_user):
    user = make_user("council_admin")
    code = totp_code(app, user_id=user.id)
    first, second = app.test_client(), app.test_client()
    _password_step(first, user)
    _password_step(second, user)
    assert post_form(first, SECOND_STEP, {"code": code}).status_code == 302
    assert post_form(second, SECOND_STEP, {"code": code}).status_code == 401


# ---------------------------------------------------------------- enforcement

PAGES = [
    "/",
    "/council",
    "/council/organisations",
    "/council/staff",
    "/finance",
    "/profile",
    "/account/sessions",
    "/audit",
    "/my",
]


@pytest.mark.parametrize("role", ["council_admin", "finance"])
def test_council_staff_without_a_factor_are_sent_to_enrol_from_every_page(app, make_user, role):
    user = make_user(role, second_factor=False)
    client = app.test_client()
    assert login(client, user).status_code == 302  # signed in, password only
    for path in PAGES:
        response = client.get(path)
        assert response.status_code == 302, path
        assert response.headers["Location"] == "/account/security", path
    # a form elsewhere does nothing either
    refused = post_form(
        client, "/profile", {"profile-name": "Changed"}, token_from="/account/security"
    )
    assert refused.status_code == 302 and refused.headers["Location"] == "/account/security"
    with app.app_context():
        assert db.session.get(User, user.id).name != "Changed"
    page = client.get("/account/security")
    assert page.status_code == 200
    assert "must sign in with a second factor" in page.get_data(as_text=True)
    static = client.get("/static/portal.css")
    assert static.status_code == 200
    static.close()
    out = post_form(client, "/logout", {}, token_from="/account/security")
    assert out.status_code == 302 and out.headers["Location"] == "/login"


def test_enrolling_on_the_security_page_opens_the_portal(app, make_user):
    user = make_user("council_admin", second_factor=False)
    client = app.test_client()
    login(client, user)
    assert client.get("/council").headers["Location"] == "/account/security"
    started = post_form(client, "/account/security/totp", {})
    assert started.headers["Location"] == "/account/security"
    page = client.get("/account/security").get_data(as_text=True)
    assert "<svg" in page and page.count("otpauth") == 0  # the URI is in the QR code only
    secret = re.search(r'id="totp-secret">([A-Z2-7 ]+)<', page).group(1).replace(" ", "")
    wrong = post_form(client, "/account/security/totp/confirm", {"totp-code": "000000"})
    assert wrong.status_code == 400 and "does not match" in wrong.get_data(as_text=True)
    with app.app_context():
        from portal.kernel.clock import now_utc

        code = pyotp.TOTP(secret).at(now_utc())
    done = post_form(client, "/account/security/totp/confirm", {"totp-code": code})
    assert done.status_code == 200 and done.headers["Cache-Control"] == "no-store"
    shown = re.findall(
        r"<li><code>([a-z2-9]{5}-[a-z2-9]{5})</code></li>", done.get_data(as_text=True)
    )
    assert len(shown) == 10
    assert client.get("/council").status_code == 200
    # the codes are not shown again
    assert shown[0] not in client.get("/account/security").get_data(as_text=True)
    # a new sign-in asks for the code
    again = app.test_client()
    assert _password_step(again, user).headers["Location"] == SECOND_STEP
    assert post_form(again, SECOND_STEP, {"code": shown[0]}).status_code == 302


def test_api_tokens_are_not_affected(app, make_user, runner):
    make_user("council_admin", second_factor=False)
    result = runner.invoke(args=["token", "create", "--scope", "council"])
    assert result.exit_code == 0, result.output
    token = result.output.strip().splitlines()[-1]
    client = app.test_client()
    response = client.get("/api/v1/organisations", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200


def test_an_sso_session_is_not_asked_for_a_portal_factor(app, make_org, make_user):
    org = make_org()
    user = make_user("member", org)
    with app.app_context():
        db.session.get(Organisation, org.id).require_second_factor = True
        person = db.session.get(User, user.id)
        token = session_start(
            db.session, user=person, ip=None, user_agent=None, amr="sso", sso_amr="pwd mfa"
        )
        db.session.commit()
    client = app.test_client()
    with client.session_transaction() as cookie:
        cookie["_user_id"] = token
        cookie["_fresh"] = True
    assert client.get("/my").status_code == 200
    # the same person signed in with a password is sent to enrol
    password = app.test_client()
    login(password, user)
    assert password.get("/my").headers["Location"] == "/account/security"


# ---------------------------------------------------------------- the organisation's rule


def test_org_admin_requires_a_second_factor_for_everyone(app, make_org, make_user):
    org = make_org()
    admin = make_user("org_admin", org)
    member = make_user("member", org, second_factor=False)
    enrolled = make_user("member", org, second_factor=True)
    admin_client = app.test_client()
    login(admin_client, admin)
    page = admin_client.get("/org/profile").get_data(as_text=True)
    assert "Require a second factor for everyone in" in page
    response = post_form(
        admin_client, "/org/profile/second-factor", {"required": "y"}, token_from="/org/profile"
    )
    assert response.headers["Location"] == "/org/profile"
    with app.app_context():
        assert db.session.get(Organisation, org.id).require_second_factor is True
        assert db.session.scalar(
            sa.select(sa.func.count())
            .select_from(AuditEvent)
            .where(AuditEvent.action == "organisation.require_second_factor")
        )
    # the admin themselves has none: the next page sends them to enrol
    assert admin_client.get("/org").headers["Location"] == "/account/security"
    member_client = app.test_client()
    login(member_client, member)
    assert member_client.get("/my").headers["Location"] == "/account/security"
    enrolled_client = app.test_client()
    assert login(enrolled_client, enrolled).headers["Location"] == "/my"
    assert enrolled_client.get("/my").status_code == 200
    # others' members are not affected
    outsider = make_user("member", make_org(), second_factor=False)
    outsider_client = app.test_client()
    login(outsider_client, outsider)
    assert outsider_client.get("/my").status_code == 200


def test_a_member_cannot_set_the_organisations_rule(app, make_org, make_user):
    org = make_org()
    member = make_user("member", org)
    client = app.test_client()
    login(client, member)
    response = post_form(
        client, "/org/profile/second-factor", {"required": "y"}, token_from="/profile"
    )
    assert response.status_code == 403
    with app.app_context():
        assert db.session.get(Organisation, org.id).require_second_factor is False


# ---------------------------------------------------------------- the council's reset


def test_council_admin_resets_another_persons_factors(app, make_org, make_user):
    admin = make_user("council_admin")
    finance = make_user("finance")
    _recovery_codes(app, finance)
    client = app.test_client()
    login(client, admin)
    theirs = app.test_client()
    login(theirs, finance)
    page = client.get(f"/council/staff/{finance.id}/second-factors")
    assert page.status_code == 200 and "Reset" in page.get_data(as_text=True)
    response = post_form(
        client,
        f"/council/staff/{finance.id}/second-factors/reset",
        {},
        token_from=f"/council/staff/{finance.id}/second-factors",
    )
    assert response.status_code == 302
    with app.app_context():
        assert (
            db.session.scalar(
                sa.select(sa.func.count())
                .select_from(TotpFactor)
                .where(TotpFactor.user_id == finance.id)
            )
            == 0
        )
        assert db.session.scalar(sa.select(sa.func.count()).select_from(RecoveryCode)) == 0
        event = db.session.scalars(
            sa.select(AuditEvent).where(AuditEvent.action == "user.second_factor_reset")
        ).one()
        assert event.actor_user_id == admin.id
    assert theirs.get("/council").status_code == 302  # signed out
    # they sign in with the password alone, and must enrol again
    again = app.test_client()
    assert login(again, finance).headers["Location"] == "/council"
    assert again.get("/council").headers["Location"] == "/account/security"


def test_a_members_factors_reset_from_the_organisations_people_page(app, make_org, make_user):
    org = make_org()
    admin = make_user("council_admin")
    member = make_user("member", org, second_factor=True)
    client = app.test_client()
    login(client, admin)
    people = client.get(f"/council/organisations/{org.slug}/users").get_data(as_text=True)
    assert f"/council/organisations/{org.slug}/users/{member.id}/second-factors" in people
    path = f"/council/organisations/{org.slug}/users/{member.id}/second-factors"
    response = post_form(client, path + "/reset", {}, token_from=path)
    assert response.headers["Location"] == path
    with app.app_context():
        assert (
            db.session.scalar(
                sa.select(sa.func.count())
                .select_from(TotpFactor)
                .where(TotpFactor.user_id == member.id)
            )
            == 0
        )


def test_resetting_ones_own_factors_is_refused(app, make_user):
    admin = make_user("council_admin")
    client = app.test_client()
    login(client, admin)
    path = f"/council/staff/{admin.id}/second-factors"
    assert "cannot reset your own" in client.get(path).get_data(as_text=True)
    response = post_form(client, path + "/reset", {}, token_from=path)
    assert response.status_code == 302
    assert "ask another council admin" in " ".join(flashes(client.get(path)))
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(TotpFactor)) == 1


@pytest.mark.parametrize("role", ["finance", "org_admin"])
def test_only_council_admins_reach_the_reset(app, make_org, make_user, role):
    org = make_org()
    target = make_user("member", org, second_factor=True)
    actor = make_user(role, org if role == "org_admin" else None)
    client = app.test_client()
    login(client, actor)
    path = f"/council/organisations/{org.slug}/users/{target.id}/second-factors"
    assert client.get(path).status_code == 403
    assert post_form(client, path + "/reset", {}, token_from="/profile").status_code == 403


# ---------------------------------------------------------------- "last use"


def test_last_seen_is_written_at_most_once_a_minute(app, clock, make_org, make_user):
    start = clock.freeze(dt.datetime(2026, 11, 3, 9, 0, tzinfo=dt.UTC))
    user = make_user("member", make_org())
    client = app.test_client()
    login(client, user)
    assert _sessions(app, user.id)[0].last_seen_at == start
    clock.advance(dt.timedelta(seconds=30))
    client.get("/my")
    assert _sessions(app, user.id)[0].last_seen_at == start
    later = clock.advance(dt.timedelta(seconds=31))
    client.get("/my")
    assert _sessions(app, user.id)[0].last_seen_at == later
    clock.advance(dt.timedelta(seconds=10))
    client.get("/my")
    assert _sessions(app, user.id)[0].last_seen_at == later
    much_later = clock.advance(dt.timedelta(hours=2))
    client.get("/account/sessions")
    assert _sessions(app, user.id)[0].last_seen_at == much_later


def test_demo_council_staff_sign_in_with_the_published_secret(app, runner):
    from portal.demo import DEMO_PASSWORD, DEMO_TOTP_SECRET

    result = runner.invoke(args=["demo"])
    assert result.exit_code == 0, result.output
    assert DEMO_TOTP_SECRET in result.output
    for email, home in (
        ("admin@council.example", "/council"),
        ("finance@council.example", "/council"),
    ):
        client = app.test_client()
        response = post_form(client, "/login", {"email": email, "password": DEMO_PASSWORD})
        assert response.headers["Location"] == SECOND_STEP
        with app.app_context():
            from portal.kernel.clock import now_utc

            code = pyotp.TOTP(DEMO_TOTP_SECRET).at(now_utc())
        response = post_form(client, SECOND_STEP, {"code": code})
        assert response.headers["Location"] == home
        assert client.get(home).status_code == 200
    # members sign in with the password alone
    member = app.test_client()
    response = post_form(
        member, "/login", {"email": "jonas@acme-gmbh.example", "password": DEMO_PASSWORD}
    )
    assert response.headers["Location"] == "/my"


def test_setup_cancelled_and_app_removed_with_the_password(app, make_org, make_user):
    user = make_user("member", make_org())
    client = app.test_client()
    login(client, user)
    post_form(client, "/account/security/totp", {}, token_from="/account/security")
    page = client.get("/account/security").get_data(as_text=True)
    assert "Cancel the setup" in page
    token = re.search(r'name="remove-csrf_token"[^>]*value="([^"]+)"', page).group(1)
    cancelled = client.post("/account/security/totp/remove", data={"remove-csrf_token": token})
    assert cancelled.status_code == 302
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(TotpFactor)) == 0
    # set up for real (the fixture's app), then remove it: a wrong password is refused
    from tests.conftest import give_second_factor

    give_second_factor(app, user.id)
    refused = post_form(
        client,
        "/account/security/totp/remove",
        {"remove-password": "not my password"},
        token_from="/account/security",
    )
    assert refused.status_code == 400
    assert "current code from your app, or your password" in refused.get_data(as_text=True)
    removed = post_form(
        client,
        "/account/security/totp/remove",
        {"remove-password": user.password},
        token_from="/account/security",
    )
    assert removed.status_code == 302
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(TotpFactor)) == 0
        assert "user.totp_remove" in db.session.scalars(sa.select(AuditEvent.action)).all()
