"""Forgotten passwords: a mailed, single-use, expiring link that signs every session out."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from portal.db import db
from portal.identity.models import User, UserSession
from tests.conftest import login, mail_link, post_form
from tests.support import count, db_rows, follow_messages, messages, quick_user, row

NEW_PASSWORD = "a new and longer passphrase"
SAME_ANSWER = "If that email has an account, a reset link is on its way. It works once."


def ask_for_link(client, email: str):
    return post_form(client, "/password/forgot", {"email": email})


def live_sessions(app, user_id: int) -> int:
    return count(app, UserSession, UserSession.user_id == user_id, UserSession.revoked_at.is_(None))


def test_forgot_password_mails_a_link_over_smtp(app, make_org, mailbox):
    user = quick_user(app, "member", make_org())
    client = app.test_client()
    response = ask_for_link(client, f"  {user.email.upper()} ")
    assert response.headers["Location"] == "/login"
    assert follow_messages(client, response) == [SAME_ANSWER]
    assert len(mailbox) == 1
    message = mailbox[0]
    assert message["To"] == user.email
    assert message["Subject"] == "Reset your portal password"
    body = message.get_body(preferencelist=("plain",)).get_content()
    assert "for 60 minutes" in body
    assert mail_link(message).startswith("/password/reset/")


def test_unknown_and_deactivated_emails_get_the_same_answer_and_no_mail(app, make_org, mailbox):
    org = make_org()
    known = quick_user(app, "member", org)
    inactive = quick_user(app, "member", org, active=False)
    client = app.test_client()
    answers = []
    for email in (known.email, "nobody@nowhere.example", inactive.email, "not an email"):
        response = ask_for_link(client, email)
        answers.append((response.status_code, response.headers["Location"]))
        assert follow_messages(client, response) == [SAME_ANSWER]
    assert len(set(answers)) == 1
    assert [m["To"] for m in mailbox] == [known.email]


def test_the_link_sets_a_new_password_once_and_ends_every_session(app, make_org, mailbox):
    user = quick_user(app, "member", make_org())
    laptop, phone = app.test_client(), app.test_client()
    login(laptop, user)
    login(phone, user)
    assert live_sessions(app, user.id) == 2
    ask_for_link(app.test_client(), user.email)
    link = mail_link(mailbox[0])

    reset_client = app.test_client()
    page = reset_client.get(link)
    assert page.status_code == 200
    assert user.email in page.get_data(as_text=True)
    response = post_form(reset_client, link, {"password": NEW_PASSWORD})
    assert response.headers["Location"] == "/login"
    assert "Your password is changed. Sign in with it now." in follow_messages(
        reset_client, response
    )

    assert laptop.get("/my").status_code == 302
    assert phone.get("/my").status_code == 302
    assert live_sessions(app, user.id) == 0
    assert login(app.test_client(), user).status_code == 401  # the old password
    assert login(app.test_client(), user, password=NEW_PASSWORD).status_code == 302

    # the link is spent
    again = app.test_client()
    page = again.get(link)
    assert page.status_code == 409
    assert "This reset link has already been used. Ask for a new one." in page.get_data(
        as_text=True
    )
    before = db_rows(app)
    response = post_form(again, link, {"password": "yet another passphrase"}, token_from="/login")
    assert response.status_code == 409
    assert db_rows(app) == before


def test_the_link_expires(app, make_org, mailbox, clock):
    clock.freeze(clock.now)
    user = quick_user(app, "member", make_org())
    ask_for_link(app.test_client(), user.email)
    link = mail_link(mailbox[0])
    password_hash = row(app, User, user.id)["password_hash"]
    clock.advance(dt.timedelta(minutes=61))
    client = app.test_client()
    page = client.get(link)
    assert page.status_code == 409
    assert "This reset link has expired. Ask for a new one." in page.get_data(as_text=True)
    response = post_form(client, link, {"password": NEW_PASSWORD}, token_from="/login")
    assert response.status_code == 409
    assert row(app, User, user.id)["password_hash"] == password_hash


def test_the_link_lifetime_comes_from_the_configuration(app, make_org, mailbox, monkeypatch, clock):
    clock.freeze(clock.now)
    monkeypatch.setitem(app.config, "PORTAL_PASSWORD_RESET_MINUTES", 5)
    user = quick_user(app, "member", make_org())
    ask_for_link(app.test_client(), user.email)
    link = mail_link(mailbox[0])
    assert "for 5 minutes" in mailbox[0].get_body(preferencelist=("plain",)).get_content()
    clock.advance(dt.timedelta(minutes=4))
    assert app.test_client().get(link).status_code == 200
    clock.advance(dt.timedelta(minutes=2))
    assert app.test_client().get(link).status_code == 409


def test_a_too_short_password_is_refused_on_the_form(app, make_org, mailbox):
    user = quick_user(app, "member", make_org())
    ask_for_link(app.test_client(), user.email)
    link = mail_link(mailbox[0])
    client = app.test_client()
    before = db_rows(app)
    for password in ("short", ""):
        response = post_form(client, link, {"password": password})
        assert response.status_code == 400
        assert messages(response) in (
            ["Field must be between 10 and 1024 characters long."],
            ["This field is required."],
        )
    spaces = post_form(client, link, {"password": " " * 12})
    assert spaces.status_code == 400
    assert "A password cannot be only spaces." in messages(spaces)
    assert db_rows(app) == before
    # the link still works after the refusals
    assert post_form(client, link, {"password": NEW_PASSWORD}).status_code == 302


def test_a_tampered_link_is_refused(app, make_org, mailbox):
    user = quick_user(app, "member", make_org())
    ask_for_link(app.test_client(), user.email)
    link = mail_link(mailbox[0])
    page = app.test_client().get(link[:-3] + ("aaa" if not link.endswith("aaa") else "bbb"))
    assert page.status_code == 404
    assert "This reset link is not valid." in page.get_data(as_text=True)


def test_changing_the_password_spends_an_outstanding_link(app, make_org, mailbox):
    user = quick_user(app, "member", make_org())
    ask_for_link(app.test_client(), user.email)
    link = mail_link(mailbox[0])
    with app.app_context():
        from portal.identity.security import hash_password

        db.session.execute(
            sa.update(User).where(User.id == user.id).values(password_hash=hash_password("x" * 12))
        )
        db.session.commit()
    assert app.test_client().get(link).status_code == 409


def test_the_forgot_password_form_needs_an_email(app, mailbox):
    client = app.test_client()
    response = ask_for_link(client, "")
    assert response.status_code == 400
    assert messages(response) == ["This field is required."]
    assert mailbox == []
