"""The audit log: every change leaves an event, and each reader sees only their own scope."""

from __future__ import annotations

import json
import re

import sqlalchemy as sa

from portal.audit.models import AuditEvent
from portal.db import db
from portal.identity.models import Invitation, User
from tests.conftest import TEST_PASSWORD, mail_link, post_form
from tests.support import client_for, form_post, quick_user

COUNCIL_IP = "203.0.113.10"
ADMIN_IP = "198.51.100.20"
VISITOR_IP = "192.0.2.30"


def events(app, action: str | None = None) -> list[dict]:
    """Audit events (oldest first) as dicts, optionally of one action."""
    with app.app_context():
        query = sa.select(AuditEvent).order_by(AuditEvent.id)
        if action:
            query = query.where(AuditEvent.action == action)
        return [
            {
                "actor_user_id": e.actor_user_id,
                "actor_label": e.actor_label,
                "organisation_id": e.organisation_id,
                "action": e.action,
                "target_type": e.target_type,
                "target_id": e.target_id,
                "target_label": e.target_label,
                "before": e.before,
                "after": e.after,
                "ip": e.ip,
                "occurred_at": e.occurred_at,
            }
            for e in db.session.scalars(query)
        ]


def only(app, action: str) -> dict:
    found = events(app, action)
    assert len(found) == 1, (action, found)
    return found[0]


def from_ip(client, ip: str):
    client.environ_base["REMOTE_ADDR"] = ip
    return client


def test_every_change_writes_an_audit_event(app, make_org, signed_in, mailbox):
    council = from_ip(signed_in("council_admin"), COUNCIL_IP)
    council_id, council_email = council.user.id, council.user.email

    # the council creates an organisation and edits it
    post_form(
        council,
        "/council/organisations/new",
        {
            "slug": "acme",
            "name": "Acme GmbH",
            "country": "DE",
            "currency": "EUR",
            "billing_email": "billing@acme.example",
            "billing_provider": "manual",
        },
    )
    created = only(app, "organisation.create")
    org_id = created["organisation_id"]
    assert created["actor_user_id"] == council_id
    assert created["actor_label"] == council_email
    assert (created["target_type"], created["target_id"], created["target_label"]) == (
        "organisation",
        str(org_id),
        "acme",
    )
    assert created["before"] is None
    assert created["after"]["status"] == "active" and created["after"]["name"] == "Acme GmbH"
    assert created["ip"] == COUNCIL_IP

    post_form(
        council,
        "/council/organisations/acme/edit",
        {
            "slug": "acme",
            "name": "Acme SE",
            "country": "DE",
            "currency": "CHF",
            "billing_email": "billing@acme.example",
            "billing_provider": "manual",
        },
    )
    updated = only(app, "organisation.update")
    assert (updated["before"], updated["after"]) == (
        {"name": "Acme GmbH", "currency": "EUR"},
        {"name": "Acme SE", "currency": "CHF"},
    )
    assert (updated["organisation_id"], updated["ip"]) == (org_id, COUNCIL_IP)

    # the council invites the first admin, who accepts from their own address
    form_post(
        council,
        "/council/organisations/acme/users/invite",
        {"email": "boss@acme.example", "role": "org_admin"},
        token_from="/council/organisations/acme",
        prefix="invite",
    )
    invited = only(app, "invitation.create")
    assert invited["after"] == {"email": "boss@acme.example", "role": "org_admin"}
    assert (invited["organisation_id"], invited["actor_user_id"]) == (org_id, council_id)
    assert invited["target_type"] == "invitation" and invited["target_label"] == "boss@acme.example"
    admin = from_ip(app.test_client(), ADMIN_IP)
    link = mail_link(mailbox[-1])
    post_form(admin, link, {"name": "Boss", "password": TEST_PASSWORD})
    accepted = only(app, "invitation.accept")
    with app.app_context():
        boss = db.session.scalar(sa.select(User).where(User.email == "boss@acme.example"))
        boss_id = boss.id
    assert (accepted["actor_user_id"], accepted["organisation_id"]) == (boss_id, org_id)
    assert accepted["target_id"] == str(boss_id)
    assert accepted["after"] == {"email": "boss@acme.example", "role": "org_admin"}
    assert accepted["ip"] == ADMIN_IP
    sign_ins = [e for e in events(app, "user.sign_in") if e["actor_user_id"] == boss_id]
    assert len(sign_ins) == 1 and sign_ins[0]["ip"] == ADMIN_IP

    # the org admin invites, withdraws, manages a member, and edits the profile
    form_post(
        admin,
        "/org/users/invite",
        {"email": "temp@acme.example", "role": "member"},
        token_from="/org/users",
        prefix="invite",
    )
    with app.app_context():
        invitation_id = db.session.scalar(
            sa.select(Invitation.id).where(Invitation.email == "temp@acme.example")
        )
    post_form(admin, f"/org/users/invitations/{invitation_id}/revoke", {}, token_from="/org/users")
    revoked = only(app, "invitation.revoke")
    assert (revoked["actor_user_id"], revoked["organisation_id"], revoked["ip"]) == (
        boss_id,
        org_id,
        ADMIN_IP,
    )
    assert (revoked["target_type"], revoked["target_id"]) == ("invitation", str(invitation_id))

    member = quick_user(app, "member", _org_ref(app, org_id))
    post_form(admin, f"/org/users/{member.id}/role", {"role": "org_admin"}, token_from="/org/users")
    role = only(app, "user.change_role")
    assert (role["before"], role["after"]) == ({"role": "member"}, {"role": "org_admin"})
    assert (role["target_type"], role["target_id"], role["target_label"]) == (
        "user",
        str(member.id),
        member.email,
    )
    assert (role["actor_user_id"], role["organisation_id"], role["ip"]) == (
        boss_id,
        org_id,
        ADMIN_IP,
    )
    post_form(
        admin, f"/org/users/{member.id}/deactivate", {"confirmed": "1"}, token_from="/org/users"
    )
    post_form(admin, f"/org/users/{member.id}/reactivate", {}, token_from="/org/users")
    deactivated, reactivated = only(app, "user.deactivate"), only(app, "user.reactivate")
    assert (deactivated["before"], deactivated["after"]) == (
        {"is_active": True},
        {"is_active": False},
    )
    assert (reactivated["before"], reactivated["after"]) == (
        {"is_active": False},
        {"is_active": True},
    )
    assert deactivated["target_id"] == reactivated["target_id"] == str(member.id)
    assert deactivated["organisation_id"] == reactivated["organisation_id"] == org_id

    post_form(
        admin,
        "/org/profile",
        {"name": "Acme Societas", "tax_id": "DE1", "billing_email": "billing@acme.example"},
    )
    own_update = [e for e in events(app, "organisation.update") if e["actor_user_id"] == boss_id]
    assert len(own_update) == 1
    assert own_update[0]["before"] == {"name": "Acme SE", "tax_id": None}
    assert own_update[0]["after"] == {"name": "Acme Societas", "tax_id": "DE1"}
    assert own_update[0]["ip"] == ADMIN_IP

    # one's own profile and password
    form_post(admin, "/profile", {"name": "The Boss"}, token_from="/profile", prefix="profile")
    profile = only(app, "user.update_profile")
    assert (profile["before"], profile["after"]) == ({"name": "Boss"}, {"name": "The Boss"})
    assert (profile["actor_user_id"], profile["target_id"], profile["organisation_id"]) == (
        boss_id,
        str(boss_id),
        org_id,
    )
    form_post(
        admin,
        "/profile/password",
        {"current_password": TEST_PASSWORD, "new_password": "a different passphrase"},
        token_from="/profile",
        prefix="password",
    )
    password = only(app, "user.change_password")
    assert (password["actor_user_id"], password["target_id"], password["ip"]) == (
        boss_id,
        str(boss_id),
        ADMIN_IP,
    )

    # a forgotten password, from somewhere else
    visitor = from_ip(app.test_client(), VISITOR_IP)
    post_form(visitor, "/password/forgot", {"email": "boss@acme.example"})
    requested = only(app, "user.request_password_reset")
    assert (requested["actor_label"], requested["target_id"], requested["ip"]) == (
        "boss@acme.example",
        str(boss_id),
        VISITOR_IP,
    )
    post_form(visitor, mail_link(mailbox[-1]), {"password": "the newest passphrase"})
    reset = only(app, "user.reset_password")
    assert (reset["actor_user_id"], reset["organisation_id"], reset["ip"]) == (
        boss_id,
        org_id,
        VISITOR_IP,
    )

    # the lifecycle, with reasons
    back = "/council/organisations/acme"
    post_form(council, f"{back}/status/suspend", {"reason": "Unpaid"}, token_from=back)
    post_form(council, f"{back}/status/reactivate", {}, token_from=back)
    post_form(council, f"{back}/status/close", {"reason": "Left"}, token_from=back)
    suspended = only(app, "organisation.suspend")
    assert (suspended["before"], suspended["after"]) == (
        {"status": "active", "status_reason": None},
        {"status": "suspended", "status_reason": "Unpaid"},
    )
    assert only(app, "organisation.reactivate")["after"] == {
        "status": "active",
        "status_reason": None,
    }
    closed = only(app, "organisation.close")
    assert closed["after"] == {"status": "closed", "status_reason": "Left"}
    for event in (suspended, closed):
        assert (event["actor_user_id"], event["organisation_id"], event["ip"]) == (
            council_id,
            org_id,
            COUNCIL_IP,
        )

    # no event carries a secret
    dump = json.dumps([{k: e[k] for k in ("before", "after")} for e in events(app)])
    assert "password" not in dump and "argon2" not in dump and link.split("/")[-1] not in dump
    by_people = [e for e in events(app) if e["actor_label"] != "test"]  # not the fixtures'
    assert all(e["occurred_at"] is not None and e["ip"] for e in by_people)


def test_applications_approvals_and_declines_are_audited(app, signed_in):
    visitor = from_ip(app.test_client(), VISITOR_IP)
    for slug in ("first", "second"):
        post_form(
            visitor,
            "/apply",
            {
                "slug": slug,
                "name": f"{slug.title()} Ltd",
                "country": "GB",
                "currency": "GBP",
                "billing_email": f"billing@{slug}.example",
                "applicant_name": "Ann",
                "applicant_email": f"ann@{slug}.example",
            },
        )
    applied = events(app, "organisation.apply")
    assert [e["target_label"] for e in applied] == ["first", "second"]
    assert all(e["actor_user_id"] is None and e["ip"] == VISITOR_IP for e in applied)
    assert applied[0]["after"]["status"] == "pending"
    council = from_ip(signed_in("council_admin"), COUNCIL_IP)
    post_form(council, "/council/organisations/first/status/approve", {}, token_from="/council")
    post_form(council, "/council/organisations/second/status/decline", {}, token_from="/council")
    approved, declined = only(app, "organisation.approve"), only(app, "organisation.decline")
    assert (approved["before"]["status"], approved["after"]["status"]) == ("pending", "active")
    assert (declined["before"]["status"], declined["after"]["status"]) == ("pending", "closed")
    assert approved["organisation_id"] == applied[0]["organisation_id"]
    assert only(app, "invitation.create")["organisation_id"] == applied[0]["organisation_id"]


def test_refused_changes_leave_no_event(app, make_org, signed_in):
    org = make_org()
    admin = signed_in("org_admin", org)
    before = len(events(app))
    post_form(
        admin, f"/org/users/{admin.user.id}/role", {"role": "member"}, token_from="/org/users"
    )
    post_form(
        admin,
        f"/org/users/{admin.user.id}/deactivate",
        {"confirmed": "1"},
        token_from="/org/users",
    )
    post_form(admin, "/org/profile", {"name": "", "billing_email": "x@example.com"})
    assert len(events(app)) == before


# ---------------------------------------------------------------- who sees what


def _org_ref(app, org_id: int):
    from portal.tenancy.models import Organisation
    from tests.conftest import OrgRef

    with app.app_context():
        org = db.session.get(Organisation, org_id)
        return OrgRef(org.id, org.slug, org.name)


def _shown_targets(response) -> list[str]:
    """The target cells of the audit table."""
    assert response.status_code == 200
    cells = re.findall(
        r"<td>(organisation|user|invitation) ([^<]*)</td>", response.get_data(as_text=True)
    )
    return [label for _, label in cells]


def _audit_scene(app, make_org):
    """Two organisations, each with something in its log, and a council-wide change."""
    alpha, bravo = make_org("alpha"), make_org("bravo")
    alpha_admin = client_for(app, "org_admin", alpha)
    quick_user(app, "member", alpha, email="alpha-person@example.com")
    quick_user(app, "member", bravo, email="bravo-person@example.com")
    quick_user(app, "finance", email="staff-person@example.com")
    return alpha, bravo, alpha_admin


def test_council_admins_see_every_event_and_can_filter_by_organisation(app, make_org):
    alpha, bravo, _ = _audit_scene(app, make_org)
    council = client_for(app, "council_admin")
    everything = _shown_targets(council.get("/audit"))
    for label in ("alpha", "bravo", "alpha-person@example.com", "bravo-person@example.com"):
        assert label in everything
    assert "staff-person@example.com" in everything  # council-wide events too

    only_bravo = _shown_targets(council.get("/audit?organisation=bravo"))
    assert "bravo-person@example.com" in only_bravo and "bravo" in only_bravo
    assert "alpha" not in only_bravo and "alpha-person@example.com" not in only_bravo
    assert "staff-person@example.com" not in only_bravo

    users_only = council.get("/audit?action=user.create").get_data(as_text=True)
    assert "organisation.create" not in users_only and "user.create" in users_only
    unknown = council.get("/audit?organisation=nobody")  # a message beside the box, not a 404
    assert unknown.status_code == 422 and "No organisation is named" in unknown.get_data(
        as_text=True
    )


def test_org_admins_see_only_their_own_organisations_events(app, make_org):
    alpha, bravo, alpha_admin = _audit_scene(app, make_org)
    for path in ("/audit", "/audit?organisation=bravo", "/audit?action=user."):
        shown = _shown_targets(alpha_admin.get(path))
        assert "alpha-person@example.com" in shown, path
        assert "bravo-person@example.com" not in shown, path
        assert "bravo" not in shown and "staff-person@example.com" not in shown, path
    page = alpha_admin.get("/audit?organisation=bravo").get_data(as_text=True)
    assert 'name="organisation"' not in page  # no organisation filter for org admins
    with app.app_context():
        alpha_events = db.session.scalar(
            sa.select(sa.func.count())
            .select_from(AuditEvent)
            .where(AuditEvent.organisation_id == alpha.id)
        )
    assert f"{alpha_events} events" in page


def test_members_and_finance_cannot_read_the_audit_log(app, make_org):
    org = make_org()
    for role, home in (("member", "/my"), ("finance", "/council")):
        client = client_for(app, role, org if role == "member" else None)
        assert client.get("/audit").status_code == 403
        assert client.get("/audit?organisation=" + org.slug).status_code == 403
        # not in the navigation (finance has the audit chain's page, not the log)
        assert 'href="/audit"' not in client.get(home).get_data(as_text=True)
    assert app.test_client().get("/audit").status_code == 302


def test_the_audit_log_pages_fifty_events_at_a_time(app, make_org):
    org = make_org("alpha")
    for n in range(55):
        quick_user(app, "member", org, email=f"p{n:02d}@alpha.example", password=False)
    council = client_for(app, "council_admin")
    first = council.get("/audit?organisation=alpha")
    assert len(_shown_targets(first)) == 50
    second = council.get("/audit?organisation=alpha&page=2")
    assert len(_shown_targets(second)) == 56 - 50  # 55 people and the organisation
    assert "organisation=alpha" in first.get_data(as_text=True)  # the pager keeps the filter
    newest = _shown_targets(first)[0]
    assert newest == "p54@alpha.example"
