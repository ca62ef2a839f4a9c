"""Sign-in sessions: listing and signing them out (issue 12, the sessions page)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from portal.audit.models import AuditEvent
from portal.db import db
from portal.identity import sessions
from portal.identity.models import User, UserSession
from portal.identity.sign_in import session_start, session_user
from portal.kernel.actor import Actor
from portal.kernel.errors import NotFound, PermissionDenied
from tests.conftest import login, post_form


def _start(db_session, user_id: int, agent: str = "Mozilla/5.0 (X11; Linux) Firefox/130.0"):
    user = db_session.get(User, user_id)
    token = session_start(db_session, user=user, ip="192.0.2.7", user_agent=agent)
    db_session.commit()
    return user, token


def _row(db_session, token: str) -> UserSession:
    from portal.identity.security import token_digest

    return db_session.scalar(
        sa.select(UserSession).where(UserSession.token_hash == token_digest(token))
    )


# ---------------------------------------------------------------- services


def test_owner_lists_and_revokes_own_session(db_session, make_org, make_user):
    ref = make_user("member", make_org())
    user, first = _start(db_session, ref.id)
    _, second = _start(db_session, ref.id)
    actor = Actor.for_user(user)
    assert len(sessions.sessions_active(db_session, actor=actor, user=user)) == 2
    sessions.session_revoke_one(
        db_session, actor=actor, user=user, session_id=_row(db_session, second).id
    )
    db_session.commit()
    assert session_user(db_session, second) is None
    assert session_user(db_session, first) is not None
    actions = db_session.scalars(sa.select(AuditEvent.action)).all()
    assert "session.revoke" in actions


def test_another_persons_session_is_refused(db_session, make_org, make_user):
    org = make_org()
    owner, token = _start(db_session, make_user("member", org).id)
    other = db_session.get(User, make_user("org_admin", org).id)
    actor = Actor.for_user(other)
    with pytest.raises(PermissionDenied):
        sessions.sessions_active(db_session, actor=actor, user=owner)
    with pytest.raises(PermissionDenied):
        sessions.session_revoke_one(
            db_session, actor=actor, user=owner, session_id=_row(db_session, token).id
        )
    with pytest.raises(PermissionDenied):
        sessions.sessions_revoke_all(db_session, actor=actor, user=owner)
    # A session of someone else, named through one's own account, is not found.
    with pytest.raises(NotFound):
        sessions.session_revoke_one(
            db_session, actor=actor, user=other, session_id=_row(db_session, token).id
        )


def test_council_admin_may_end_anyones_sessions(db_session, make_org, make_user):
    owner, token = _start(db_session, make_user("member", make_org()).id)
    _start(db_session, owner.id)
    admin = db_session.get(User, make_user("council_admin").id)
    actor = Actor.for_user(admin)
    sessions.session_revoke_one(
        db_session, actor=actor, user=owner, session_id=_row(db_session, token).id
    )
    assert sessions.sessions_revoke_all(db_session, actor=actor, user=owner) == 1
    db_session.commit()
    assert sessions.sessions_active(db_session, actor=actor, user=owner) == []


@pytest.mark.parametrize(
    "actor",
    [Actor(label="anonymous"), Actor.system(), Actor(label="no role", user_id=1)],
)
def test_actor_without_user_or_role_is_refused(db_session, make_org, make_user, actor):
    owner, token = _start(db_session, make_user("member", make_org()).id)
    actor = Actor(label=actor.label, user_id=owner.id if actor.user_id else None)
    with pytest.raises(PermissionDenied):
        sessions.sessions_active(db_session, actor=actor, user=owner)
    with pytest.raises(PermissionDenied):
        sessions.sessions_revoke_all(db_session, actor=actor, user=owner)


def test_revoke_all_keeps_the_current_session(db_session, make_org, make_user):
    user, here = _start(db_session, make_user("member", make_org()).id)
    _, there = _start(db_session, user.id)
    _, elsewhere = _start(db_session, user.id)
    count = sessions.sessions_revoke_all(
        db_session, actor=Actor.for_user(user), user=user, keep_token=here
    )
    db_session.commit()
    assert count == 2
    assert session_user(db_session, here) is not None
    assert session_user(db_session, there) is None and session_user(db_session, elsewhere) is None
    assert db_session.scalar(sa.select(AuditEvent).where(AuditEvent.action == "session.revoke_all"))


def test_device_label():
    chrome = (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
        "(KHTML, like Gecko) Chrome/126.0 Safari/537.36"
    )
    assert sessions.device_label(chrome) == "Chrome on Windows"
    assert sessions.device_label("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0) Safari/604.1") == (
        "Safari on iPhone"
    )
    assert sessions.device_label(None) == "Unknown device"


# ---------------------------------------------------------------- pages


def test_revoked_cookie_is_signed_out_on_the_next_request(app, make_org, make_user):
    user = make_user("member", make_org())
    phone, laptop = app.test_client(), app.test_client()
    login(phone, user)
    login(laptop, user)
    assert phone.get("/account/sessions").status_code == 200
    response = post_form(laptop, "/account/sessions/revoke-all", {}, token_from="/account/sessions")
    assert response.status_code == 302
    response = phone.get("/account/sessions")
    assert response.status_code == 302 and "/login" in response.headers["Location"]
    assert laptop.get("/account/sessions").status_code == 200


def test_page_lists_only_own_sessions_and_marks_this_one(app, make_org, make_user):
    org = make_org()
    me, colleague = make_user("member", org), make_user("member", org)
    client, other = app.test_client(), app.test_client()
    login(client, me)
    login(other, colleague)
    html = client.get("/account/sessions").get_data(as_text=True)
    assert "this session" in html
    assert html.count('/revoke"') == 1  # one row, one button
    assert "Sign out everywhere else" in html


def test_another_organisations_session_id_gives_404(app, make_org, make_user):
    me, stranger = make_user("member", make_org()), make_user("member", make_org())
    client = app.test_client()
    login(client, me)
    with app.app_context():
        _, token = _start(db.session, stranger.id)
        row_id = _row(db.session, token).id
    response = post_form(
        client, f"/account/sessions/{row_id}/revoke", {}, token_from="/account/sessions"
    )
    assert response.status_code == 404
    with app.app_context():
        assert session_user(db.session, token) is not None


def test_council_admin_ends_a_persons_sessions_from_the_people_page(
    app, make_org, make_user, signed_in
):
    org = make_org()
    member = make_user("member", org)
    with app.app_context():
        _, token = _start(db.session, member.id)
    admin = signed_in("council_admin")
    people = admin.get(f"/council/organisations/{org.slug}/users").get_data(as_text=True)
    page = f"/council/organisations/{org.slug}/users/{member.id}/sessions"
    assert page in people
    assert "End all sessions" in admin.get(page).get_data(as_text=True)
    response = post_form(admin, f"{page}/end-all", {}, token_from=page)
    assert response.status_code == 302
    with app.app_context():
        assert session_user(db.session, token) is None
    # Not a council admin: refused.
    org_admin = signed_in("org_admin", org)
    assert org_admin.get(page).status_code == 403
