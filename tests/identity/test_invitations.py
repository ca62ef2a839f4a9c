"""Invitations by email over the real SMTP server: sending, accepting, and every refusal."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from portal.db import db
from portal.identity.models import Invitation, User
from portal.identity.security import verify_password
from portal.kernel.clock import now_utc
from tests.conftest import (
    SYSTEM,
    csrf_token,
    give_second_factor,
    login,
    mail_link,
    post_form,
)
from tests.support import count, db_rows, follow_messages, form_post, messages, quick_user

NEW_PASSWORD = "a brand new passphrase"


def invite(client, path: str, email: str, role: str, *, token_from: str):
    return form_post(
        client, path, {"email": email, "role": role}, token_from=token_from, prefix="invite"
    )


def accept(
    app,
    link: str,
    name: str = "New Person",
    password: str = NEW_PASSWORD,
    client=None,
    token_from: str = "/login",  # noqa: S107 (a page, not a secret)
):
    client = client or app.test_client()
    response = post_form(client, link, {"name": name, "password": password}, token_from=token_from)
    return client, response


def invitation_of(app, email: str) -> Invitation:
    with app.app_context():
        invitation = db.session.scalar(
            sa.select(Invitation).where(Invitation.email == email).order_by(Invitation.id.desc())
        )
        db.session.expunge_all()
        return invitation


def user_of(app, email: str) -> User | None:
    with app.app_context():
        user = db.session.scalar(sa.select(User).where(User.email == email))
        db.session.expunge_all()
        return user


# ---------------------------------------------------------------- the happy paths


def test_council_admin_invites_an_organisations_first_admin(app, make_org, signed_in, mailbox):
    org = make_org("acme", name="Acme GmbH")
    council = signed_in("council_admin")
    detail = f"/council/organisations/{org.slug}"
    response = invite(
        council,
        f"{detail}/users/invite",
        "First.Admin@Acme.example",
        "org_admin",
        token_from=detail,
    )
    assert response.headers["Location"] == detail
    assert "Invitation to First.Admin@Acme.example created; its mail is queued." in follow_messages(
        council, response
    )

    assert len(mailbox) == 1
    message = mailbox[0]
    assert message["To"] == "first.admin@acme.example"
    assert "invited" in message["Subject"]
    body = message.get_body(preferencelist=("plain",)).get_content()
    assert "organisation admin of Acme GmbH" in body
    assert council.user.email in body
    link = mail_link(message)
    assert link.startswith("/invitations/")

    invitation = invitation_of(app, "first.admin@acme.example")
    assert (invitation.role, invitation.organisation_id) == ("org_admin", org.id)
    assert invitation.invited_by_id == council.user.id
    assert invitation.state == "pending"

    newcomer = app.test_client()
    page = newcomer.get(link)
    assert page.status_code == 200
    assert "first.admin@acme.example" in page.get_data(as_text=True)
    assert "Acme GmbH" in page.get_data(as_text=True)
    newcomer, response = accept(app, link, name="Ada Admin", client=newcomer)
    assert response.status_code == 302
    assert response.headers["Location"] == "/org"
    assert newcomer.get("/org").status_code == 200  # signed in at once

    user = user_of(app, "first.admin@acme.example")
    assert (user.role, user.organisation_id, user.name) == ("org_admin", org.id, "Ada Admin")
    assert user.is_active
    assert verify_password(user.password_hash, NEW_PASSWORD)
    assert invitation_of(app, user.email).accepted_at is not None
    assert login(app.test_client(), user, password=NEW_PASSWORD).status_code == 302


def test_org_admin_invites_a_colleague_as_member(app, make_org, signed_in, mailbox):
    org = make_org()
    admin = signed_in("org_admin", org)
    response = invite(
        admin, "/org/users/invite", "colleague@example.com", "member", token_from="/org/users"
    )
    assert response.headers["Location"] == "/org/users"
    assert len(mailbox) == 1
    assert mailbox[0]["To"] == "colleague@example.com"
    assert "colleague@example.com" in admin.get("/org/users").get_data(as_text=True)

    newcomer, response = accept(app, mail_link(mailbox[0]))
    assert response.headers["Location"] == "/my"
    assert newcomer.get("/my").status_code == 200
    user = user_of(app, "colleague@example.com")
    assert (user.role, user.organisation_id) == ("member", org.id)


def test_org_admin_may_invite_another_org_admin(app, make_org, signed_in, mailbox):
    org = make_org()
    admin = signed_in("org_admin", org)
    invite(admin, "/org/users/invite", "deputy@example.com", "org_admin", token_from="/org/users")
    accept(app, mail_link(mailbox[0]))
    assert user_of(app, "deputy@example.com").role == "org_admin"


def test_council_admin_invites_council_staff(app, signed_in, mailbox):
    council = signed_in("council_admin")
    invite(
        council,
        "/council/staff/invite",
        "cfo@council.example",
        "finance",
        token_from="/council/staff",
    )
    assert len(mailbox) == 1
    newcomer, response = accept(app, mail_link(mailbox[0]))
    assert response.headers["Location"] == "/council"
    user = user_of(app, "cfo@council.example")
    assert (user.role, user.organisation_id) == ("finance", None)
    # Finance must sign in with a second factor: the newcomer sets one up first (SPEC 8.1)
    assert newcomer.get("/council").headers["Location"] == "/account/security"
    give_second_factor(app, user.id)
    assert newcomer.get("/council").status_code == 200


def test_accepting_while_signed_in_as_someone_else_switches_account(
    app, make_org, signed_in, mailbox
):
    org = make_org()
    admin = signed_in("org_admin", org)
    invite(admin, "/org/users/invite", "second@example.com", "member", token_from="/org/users")
    link = mail_link(mailbox[0])
    _, response = accept(app, link, client=admin, token_from=link)
    assert response.headers["Location"] == "/my"
    assert admin.get("/org").status_code == 403  # now the new member, not the admin
    assert "second@example.com" in admin.get("/profile").get_data(as_text=True)


def test_the_invitation_lifetime_comes_from_the_configuration(
    app, make_org, signed_in, mailbox, monkeypatch
):
    monkeypatch.setitem(app.config, "PORTAL_INVITATION_DAYS", 2)
    org = make_org()
    admin = signed_in("org_admin", org)
    invite(admin, "/org/users/invite", "soon@example.com", "member", token_from="/org/users")
    invitation = invitation_of(app, "soon@example.com")
    lifetime = invitation.expires_at - invitation.created_at
    assert dt.timedelta(days=2) - dt.timedelta(seconds=5) < lifetime <= dt.timedelta(days=2)
    assert "for 2 days" in mailbox[0].get_body(preferencelist=("plain",)).get_content()


# ---------------------------------------------------------------- links that no longer work


@pytest.fixture
def invited(app, make_org, signed_in, mailbox):
    """An org admin's client, and the link of an invitation it sent to invitee@example.com."""
    org = make_org()
    admin = signed_in("org_admin", org)
    invite(admin, "/org/users/invite", "invitee@example.com", "member", token_from="/org/users")
    assert len(mailbox) == 1
    link = mail_link(mailbox[0])
    mailbox.clear()
    return admin, link


def test_the_link_works_once(app, invited):
    _, link = invited
    accept(app, link)
    first_hash = user_of(app, "invitee@example.com").password_hash

    again = app.test_client()
    page = again.get(link)
    assert page.status_code == 409
    assert "already been used" in page.get_data(as_text=True)
    before = db_rows(app)
    response = post_form(
        again,
        link,
        {"name": "Intruder", "password": "another password entirely"},
        token_from="/login",
    )
    assert response.status_code == 409
    assert "already been used" in response.get_data(as_text=True)
    assert db_rows(app) == before
    assert user_of(app, "invitee@example.com").password_hash == first_hash
    assert again.get("/my").status_code == 302  # not signed in


def test_an_expired_link_is_refused(app, invited):
    _, link = invited
    with app.app_context():
        invitation = db.session.scalar(sa.select(Invitation))
        invitation.expires_at = now_utc() - dt.timedelta(minutes=1)
        db.session.commit()
    client = app.test_client()
    page = client.get(link)
    assert page.status_code == 409
    assert "This invitation has expired. Ask for a new one." in page.get_data(as_text=True)
    before = db_rows(app)
    response = post_form(
        client, link, {"name": "Late", "password": NEW_PASSWORD}, token_from="/login"
    )
    assert response.status_code == 409
    assert db_rows(app) == before
    assert user_of(app, "invitee@example.com") is None


def test_a_newer_invitation_replaces_the_older_link(app, invited, mailbox):
    admin, old_link = invited
    invite(admin, "/org/users/invite", "invitee@example.com", "org_admin", token_from="/org/users")
    assert len(mailbox) == 1
    new_link = mail_link(mailbox[0])
    assert new_link != old_link

    page = app.test_client().get(old_link)
    assert page.status_code == 409
    assert "replaced or withdrawn" in page.get_data(as_text=True)
    before = db_rows(app)
    _, response = accept(app, old_link)
    assert response.status_code == 409
    assert db_rows(app) == before

    accept(app, new_link)
    assert user_of(app, "invitee@example.com").role == "org_admin"  # the newer role


def test_a_withdrawn_invitation_does_not_work(app, invited):
    admin, link = invited
    invitation_id = invitation_of(app, "invitee@example.com").id
    response = post_form(
        admin, f"/org/users/invitations/{invitation_id}/revoke", {}, token_from="/org/users"
    )
    assert "The invitation to invitee@example.com is withdrawn." in follow_messages(admin, response)
    assert invitation_of(app, "invitee@example.com").revoked_at is not None
    assert "invitee@example.com" not in admin.get("/org/users").get_data(as_text=True)

    page = app.test_client().get(link)
    assert page.status_code == 409
    assert "replaced or withdrawn" in page.get_data(as_text=True)
    _, response = accept(app, link)
    assert response.status_code == 409
    assert user_of(app, "invitee@example.com") is None

    # withdrawing it again is refused with a message
    response = post_form(
        admin, f"/org/users/invitations/{invitation_id}/revoke", {}, token_from="/org/users"
    )
    assert "This invitation is revoked." in follow_messages(admin, response)


def test_a_made_up_link_is_refused(app):
    client = app.test_client()
    page = client.get("/invitations/not-a-real-token")
    assert page.status_code == 404
    assert "This invitation link is not valid." in page.get_data(as_text=True)


def test_a_too_short_password_is_refused_and_the_link_still_works(app, invited):
    _, link = invited
    client = app.test_client()
    before = db_rows(app)
    response = post_form(client, link, {"name": "Shorty", "password": "short"})
    assert response.status_code == 400
    assert "Field must be between 10 and 1024 characters long." in messages(response)
    missing_name = post_form(client, link, {"name": "  ", "password": NEW_PASSWORD})
    assert missing_name.status_code == 400
    assert "This field is required." in messages(missing_name)
    assert db_rows(app) == before
    _, response = accept(app, link)
    assert response.status_code == 302


def test_an_invitation_to_a_suspended_organisation_cannot_be_accepted(app, invited, signed_in):
    _, link = invited
    slug = invitation_of(app, "invitee@example.com").organisation.slug
    council = signed_in("council_admin")
    post_form(
        council,
        f"/council/organisations/{slug}/status/suspend",
        {"reason": "Unpaid"},
        token_from="/council",
    )
    client = app.test_client()
    before = db_rows(app)
    _, response = accept(app, link, client=client)
    assert response.status_code == 409
    assert "the invitation cannot be used now" in response.get_data(as_text=True)
    assert db_rows(app) == before
    assert client.get("/my").status_code == 302


# ---------------------------------------------------------------- invitations refused when sent


def _refused(response, email: str) -> list[str]:
    """A refused invitation: the people page again (400), every message on it at once, and
    the email as it was typed kept in the form (issue 14: an error lost the typed email)."""
    assert response.status_code == 400, response.status_code
    page = response.get_data(as_text=True)
    assert f'name="invite-email" type="email" value="{email}"' in page or (
        f'value="{email}"' in page and 'name="invite-email"' in page
    ), "the typed email is not kept"
    return messages(response)


def test_inviting_an_email_that_has_an_account_is_refused(app, make_org, signed_in, mailbox):
    org = make_org()
    admin = signed_in("org_admin", org)
    existing = quick_user(app, "member", org)
    other_org_person = quick_user(app, "member", make_org())
    before = db_rows(app)
    for email in (existing.email, existing.email.upper(), other_org_person.email):
        response = invite(admin, "/org/users/invite", email, "member", token_from="/org/users")
        assert "This email already has an account." in _refused(response, email)
    assert mailbox == []
    assert db_rows(app) == before


def test_an_invalid_email_is_refused_with_a_message(app, make_org, signed_in, mailbox):
    org = make_org()
    admin = signed_in("org_admin", org)
    before = db_rows(app)
    response = invite(admin, "/org/users/invite", "not-an-email", "member", token_from="/org/users")
    shown = _refused(response, "not-an-email")
    assert any(m.startswith("Enter a valid email address") for m in shown), shown
    response = invite(admin, "/org/users/invite", "", "member", token_from="/org/users")
    assert "This field is required." in _refused(response, "")
    assert mailbox == []
    assert db_rows(app) == before


def test_an_org_admin_cannot_invite_council_roles(app, make_org, signed_in, mailbox):
    org = make_org()
    admin = signed_in("org_admin", org)
    before = db_rows(app)
    for role in ("council_admin", "finance"):
        response = invite(
            admin, "/org/users/invite", "boss@example.com", role, token_from="/org/users"
        )
        assert "Not a valid choice." in _refused(response, "boss@example.com")
        response = invite(
            admin, "/council/staff/invite", "boss@example.com", role, token_from="/org/users"
        )
        assert response.status_code == 403
    assert mailbox == []
    assert db_rows(app) == before


def test_the_service_refuses_council_roles_from_an_org_admin(app, make_org):
    """Whatever page or API calls it, the rule holds in the service."""
    from portal.identity.invitations import invitation_create
    from portal.kernel.actor import Actor
    from portal.kernel.errors import DomainError
    from portal.tenancy.models import Organisation

    org = make_org()
    admin = quick_user(app, "org_admin", org)
    with app.app_context():
        actor = Actor.for_user(db.session.get(User, admin.id))
        for role, organisation in (
            ("council_admin", db.session.get(Organisation, org.id)),
            ("council_admin", None),
            ("finance", None),
        ):
            with pytest.raises(DomainError):
                invitation_create(
                    db.session,
                    actor=actor,
                    email="x@example.com",
                    role=role,
                    organisation=organisation,
                )
            db.session.rollback()
    assert count(app, Invitation) == 0


def test_invitations_to_an_organisation_that_is_not_active_are_refused(
    app, make_org, signed_in, mailbox
):
    council = signed_in("council_admin")
    from portal.tenancy.services import organisation_apply

    with app.app_context():
        organisation_apply(
            db.session,
            actor=SYSTEM,
            data={
                "slug": "applicant",
                "name": "Applicant Ltd",
                "country": "GB",
                "currency": "GBP",
                "billing_email": "billing@applicant.example",
                "applicant_name": "Ann",
                "applicant_email": "ann@applicant.example",
            },
        )
        db.session.commit()
    suspended = make_org("paused", status="suspended")
    closed = make_org("gone", status="closed")
    before = db_rows(app)
    for slug, status in (
        ("applicant", "pending"),
        (suspended.slug, "suspended"),
        (closed.slug, "closed"),
    ):
        response = invite(
            council,
            f"/council/organisations/{slug}/users/invite",
            f"someone@{slug}.example",
            "org_admin",
            token_from="/council/staff",
        )
        shown = _refused(response, f"someone@{slug}.example")
        assert any(
            f"is {status}; invitations can be sent once it is active." in m for m in shown
        ), shown
    assert mailbox == []
    assert db_rows(app) == before


# ---------------------------------------------------------------- mail and transactions


def test_nothing_is_mailed_when_the_transaction_rolls_back(app, make_org, mailbox):
    from portal.identity.invitations import invitation_create
    from portal.tenancy.models import Organisation

    org = make_org()
    with app.app_context():
        organisation = db.session.get(Organisation, org.id)
        invitation_create(
            db.session,
            actor=SYSTEM,
            email="never@example.com",
            role="member",
            organisation=organisation,
        )
        db.session.rollback()
        # a later, unrelated commit in the same session does not send the dropped message
        db.session.get(Organisation, org.id).tax_id = "DE123"
        db.session.commit()
        invitation_create(
            db.session,
            actor=SYSTEM,
            email="sent@example.com",
            role="member",
            organisation=organisation,
        )
        assert mailbox == []  # queued, not yet sent
        db.session.commit()
    assert [m["To"] for m in mailbox] == ["sent@example.com"]
    assert count(app, Invitation, Invitation.email == "never@example.com") == 0


def test_a_request_that_fails_after_queueing_mail_sends_nothing(
    app, make_org, signed_in, mailbox, monkeypatch
):
    from sqlalchemy.orm import Session

    org = make_org()
    admin = signed_in("org_admin", org)
    token = csrf_token(admin, "/org/users")

    def failing_commit(self):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(Session, "commit", failing_commit)
    response = admin.post(
        "/org/users/invite",
        data={
            "invite-csrf_token": token,
            "invite-email": "lost@example.com",
            "invite-role": "member",
        },
    )
    monkeypatch.undo()
    assert response.status_code == 500
    assert mailbox == []
    assert count(app, Invitation) == 0
