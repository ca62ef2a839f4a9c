"""Single sign-on end to end against a real OpenID provider (npm oidc-provider).

The provider runs on 127.0.0.1 (tests/oidc/provider.mjs) with PKCE required;
its development login form is filled in with ``requests``, and its redirect
back is handed to the portal's test client, as a browser would.
"""

from __future__ import annotations

import html
from urllib.parse import parse_qs, urlsplit

from portal.identity.models import User
from tests.conftest import login, post_form
from tests.sso.conftest import account, begin_sso, finish_sso, live_sessions
from tests.support import count, messages


def _query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def test_first_sign_in_creates_a_member_just_in_time(app, sso_org, idp):
    acme = sso_org("acme")
    idp.add_account("ada", email="ada@acme.example", name="Ada Lovelace")
    client = app.test_client()

    response = begin_sso(client, "ada@acme.example")
    assert response.status_code == 302
    authorize = response.headers["Location"]
    assert authorize.startswith(idp.issuer + "/auth")
    params = _query(authorize)
    assert params["client_id"] == acme.client_id
    assert params["code_challenge_method"] == "S256" and len(params["code_challenge"]) == 43
    assert params["state"] and params["nonce"] and params["login_hint"] == "ada@acme.example"
    assert params["redirect_uri"] == acme.redirect_uri
    assert account(app, "ada@acme.example") is None

    back = idp.sign_in(authorize, "ada")
    assert back.startswith(acme.redirect_uri)
    landed = finish_sso(client, back)
    assert landed.status_code == 302 and landed.headers["Location"] == "/my"
    page = client.get("/my")
    assert page.status_code == 200 and "My software" in page.get_data(as_text=True)

    ada = account(app, "ada@acme.example")
    assert ada["role"] == "member" and ada["organisation_id"] == acme.org.id
    assert ada["name"] == "Ada Lovelace" and ada["password_hash"] is None
    assert ada["sso_subject"]
    assert live_sessions(app, "ada@acme.example") == 1


def test_returning_sign_in_reuses_the_account(app, sso_org, idp):
    sso_org("acme")
    idp.add_account("ada", email="ada@acme.example")
    for _ in range(2):
        client = app.test_client()
        back = idp.sign_in(begin_sso(client, "ada@acme.example").headers["Location"], "ada")
        assert finish_sso(client, back).status_code == 302
        assert client.get("/my").status_code == 200
    assert count(app, User, User.email == "ada@acme.example") == 1
    assert live_sessions(app, "ada@acme.example") == 2


def test_an_existing_password_account_can_sign_in_through_the_provider(app, sso_org, idp):
    acme = sso_org("acme")
    idp.add_account("boss", email=acme.admin.email)
    client = app.test_client()
    back = idp.sign_in(begin_sso(client, acme.admin.email).headers["Location"], "boss")
    landed = finish_sso(client, back)
    assert landed.headers["Location"] == "/org"  # the org admin's home: same account, same role


def test_password_accounts_still_sign_in_with_one_post(app, sso_org, make_org, make_user):
    sso_org("acme")
    other = make_user("member", make_org("plain"))
    client = app.test_client()
    assert login(client, other).status_code == 302
    # …and so does an account on a domain with SSO, while SSO is not enforced.
    admin = app.test_client()
    acme_admin = account(app, "admin@acme.example")
    response = post_form(
        admin, "/login", {"email": acme_admin["email"], "password": other.password}
    )
    assert response.status_code == 302


def test_an_email_alone_without_sso_is_asked_for_its_password(app, make_org, make_user):
    user = make_user("member", make_org("plain"))
    client = app.test_client()
    response = post_form(client, "/login", {"email": user.email, "password": ""})
    assert response.status_code == 400
    assert "Enter your password." in messages(response)
    assert 'name="password"' in response.get_data(as_text=True)


def test_realm_lookup_tells_the_sign_in_page_where_to_go(app, sso_org):
    sso_org("acme")
    client = app.test_client()
    assert client.get("/login/realm?email=x@acme.example").get_json() == {
        "sso": True,
        "label": "Org acme",
    }
    assert client.get("/login/realm?email=x@other.example").get_json() == {"sso": False}


def test_enforced_sso_refuses_passwords_but_not_the_break_glass_admin(app, sso_org, make_user, idp):
    acme = sso_org("acme")
    from tests.sso.conftest import connect

    connect(
        app,
        acme.org,
        {
            "issuer": acme.issuer,
            "client_id": acme.client_id,
            "enforce_sso": True,
            "break_glass_email": acme.admin.email,
        },
    )
    member = make_user("member", acme.org, email="mia@acme.example")
    client = app.test_client()
    refused = login(client, member)
    assert refused.status_code == 401
    assert "passwords are turned off" in messages(refused)[0]
    assert live_sessions(app, member.email) == 0

    assert login(app.test_client(), acme.admin).status_code == 302  # break-glass

    idp.add_account("mia", email=member.email)
    back = idp.sign_in(begin_sso(client, member.email).headers["Location"], "mia")
    assert finish_sso(client, back).status_code == 302
    assert live_sessions(app, member.email) == 1


def test_an_email_outside_the_verified_domains_is_refused(app, sso_org, idp):
    sso_org("acme")
    # The company's provider vouches for someone at another domain: not Acme's to sign in.
    idp.add_account("eve", email="eve@elsewhere.example")
    client = app.test_client()
    back = idp.sign_in(begin_sso(client, "ada@acme.example").headers["Location"], "eve")
    refused = finish_sso(client, back)
    assert refused.status_code == 403
    assert "not on an email domain verified for Org acme" in refused.get_data(as_text=True)
    assert account(app, "eve@elsewhere.example") is None
    assert client.get("/my").status_code == 302


def test_jit_can_require_a_group_claim(app, sso_org, idp):
    sso_org("acme", group_claim="groups", required_group="portal-users")
    idp.add_account("in", email="in@acme.example", groups=["staff", "portal-users"])
    idp.add_account("out", email="out@acme.example", groups=["staff"])
    client = app.test_client()
    back = idp.sign_in(begin_sso(client, "out@acme.example").headers["Location"], "out")
    refused = finish_sso(client, back)
    assert refused.status_code == 403 and "portal-users" in refused.get_data(as_text=True)
    assert account(app, "out@acme.example") is None

    back = idp.sign_in(begin_sso(client, "in@acme.example").headers["Location"], "in")
    assert finish_sso(client, back).status_code == 302
    assert account(app, "in@acme.example")["role"] == "member"


def test_without_jit_an_unknown_person_is_told_to_ask_their_admin(app, sso_org, idp):
    sso_org("acme", jit_enabled=False)
    idp.add_account("new", email="new@acme.example")
    client = app.test_client()
    back = idp.sign_in(begin_sso(client, "new@acme.example").headers["Location"], "new")
    refused = finish_sso(client, back)
    assert refused.status_code == 403
    assert "Ask your organisation's admin" in html.unescape(refused.get_data(as_text=True))
    assert account(app, "new@acme.example") is None
