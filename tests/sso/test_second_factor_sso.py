"""Single sign-on and second factors (issue 12): an SSO session is recorded as such
(with the provider's ``amr``/``acr`` claims when it sends them) and is not asked for a
portal second factor, even where the organisation requires one of password accounts."""

from __future__ import annotations

import sqlalchemy as sa

from portal.db import db
from portal.identity.models import User, UserSession
from portal.tenancy.models import Organisation
from tests.conftest import login
from tests.sso.conftest import begin_sso, finish_sso


def test_sso_session_is_recorded_and_not_asked_for_a_portal_factor(app, sso_org, idp, make_user):
    acme = sso_org("acme")
    with app.app_context():
        db.session.get(Organisation, acme.org.id).require_second_factor = True
        db.session.commit()
    idp.add_account("ada", email="ada@acme.example", name="Ada Lovelace")
    client = app.test_client()
    back = idp.sign_in(begin_sso(client, "ada@acme.example").headers["Location"], "ada")
    assert finish_sso(client, back).headers["Location"] == "/my"
    assert client.get("/my").status_code == 200  # not sent to enrol
    with app.app_context():
        row = db.session.scalars(
            sa.select(UserSession)
            .join(User, User.id == UserSession.user_id)
            .where(User.email == "ada@acme.example")
        ).one()
        assert row.amr == "sso"
    # a password account of the same organisation must set one up
    bob = make_user("member", acme.org, email="bob@other.example")
    password = app.test_client()
    login(password, bob)
    assert password.get("/my").headers["Location"] == "/account/security"
