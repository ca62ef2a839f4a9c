"""Callbacks that must not sign anyone in: state, replays, the wrong provider, a provider down.

Every case checks that no sign-in session exists afterwards and that the
client is still signed out.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlencode, urlsplit

from tests.oidc.peer import free_port
from tests.sso.conftest import begin_sso, connect, finish_sso, live_sessions
from tests.support import messages


def _with(url: str, **changes: str | None) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    for key, value in changes.items():
        if value is None:
            query.pop(key, None)
        else:
            query[key] = value
    return f"{parts.scheme}://{parts.netloc}{parts.path}?{urlencode(query)}"


def _refused(app, client, response, email: str, status: int = 400) -> str:
    assert response.status_code == status, response.get_data(as_text=True)[:500]
    assert live_sessions(app, email) == 0
    assert client.get("/my").status_code == 302  # still signed out
    return response.get_data(as_text=True)


def test_a_callback_without_state_is_refused(app, sso_org, idp):
    sso_org("acme")
    idp.add_account("ada", email="ada@acme.example")
    client = app.test_client()
    back = idp.sign_in(begin_sso(client, "ada@acme.example").headers["Location"], "ada")
    page = _refused(app, client, finish_sso(client, _with(back, state=None)), "ada@acme.example")
    assert "Nobody was signed in" in page


def test_a_callback_with_a_tampered_state_is_refused(app, sso_org, idp):
    sso_org("acme")
    idp.add_account("ada", email="ada@acme.example")
    client = app.test_client()
    back = idp.sign_in(begin_sso(client, "ada@acme.example").headers["Location"], "ada")
    state = parse_qs(urlsplit(back).query)["state"][0]
    tampered = _with(back, state=state[:-2] + ("AA" if not state.endswith("AA") else "BB"))
    _refused(app, client, finish_sso(client, tampered), "ada@acme.example")


def test_a_callback_in_another_browser_is_refused(app, sso_org, idp):
    sso_org("acme")
    idp.add_account("ada", email="ada@acme.example")
    started = app.test_client()
    back = idp.sign_in(begin_sso(started, "ada@acme.example").headers["Location"], "ada")
    attacker = app.test_client()
    attacker.get("/login")
    _refused(app, attacker, finish_sso(attacker, back), "ada@acme.example")


def test_a_replayed_callback_is_refused(app, sso_org, idp):
    sso_org("acme")
    idp.add_account("ada", email="ada@acme.example")
    client = app.test_client()
    back = idp.sign_in(begin_sso(client, "ada@acme.example").headers["Location"], "ada")
    assert finish_sso(client, back).status_code == 302
    post_logout = client
    post_logout.post("/logout", data={"csrf_token": _token(client)})
    assert live_sessions(app, "ada@acme.example") == 0
    _refused(app, client, finish_sso(client, back), "ada@acme.example")


def _token(client) -> str:
    from tests.conftest import csrf_token

    return csrf_token(client, "/my")


def test_a_replayed_code_with_a_fresh_state_is_refused_by_the_provider(app, sso_org, idp):
    sso_org("acme")
    idp.add_account("ada", email="ada@acme.example")
    first = app.test_client()
    used = idp.sign_in(begin_sso(first, "ada@acme.example").headers["Location"], "ada")
    assert finish_sso(first, used).status_code == 302

    thief = app.test_client()
    fresh = begin_sso(thief, "ada@acme.example").headers["Location"]
    state = parse_qs(urlsplit(fresh).query)["state"][0]
    replay = _with(used, state=state)
    before = live_sessions(app, "ada@acme.example")
    response = finish_sso(thief, replay)
    assert response.status_code == 400
    assert "already used" in response.get_data(as_text=True)
    assert live_sessions(app, "ada@acme.example") == before
    assert thief.get("/my").status_code == 302


def test_the_providers_error_is_shown_and_nobody_signed_in(app, sso_org):
    acme = sso_org("acme")
    client = app.test_client()
    started = begin_sso(client, "ada@acme.example").headers["Location"]
    state = parse_qs(urlsplit(started).query)["state"][0]
    denied = f"{acme.redirect_uri}?error=access_denied&error_description=Cancelled&state={state}"
    page = _refused(app, client, finish_sso(client, denied), "ada@acme.example")
    assert "did not sign you in: Cancelled" in page


def test_two_organisations_cannot_sign_in_through_each_others_provider(app, sso_org, idp, idp_b):
    acme = sso_org("acme", provider=idp)
    bolt = sso_org("bolt", provider=idp_b)
    idp.add_account("ada", email="ada@acme.example")
    idp_b.add_account("bob", email="bob@bolt.example")
    # Acme's provider vouching for a Bolt address signs nobody in.
    idp.add_account("fake-bob", email="bob@bolt.example")
    client = app.test_client()
    acme_start = begin_sso(client, "ada@acme.example").headers["Location"]
    assert acme_start.startswith(idp.issuer)
    back = idp.sign_in(acme_start, "fake-bob")
    _refused(app, client, finish_sso(client, back), "bob@bolt.example", status=403)

    # An Acme response delivered to Bolt's callback is refused (mix-up).
    client = app.test_client()
    back = idp.sign_in(begin_sso(client, "ada@acme.example").headers["Location"], "ada")
    crossed = back.replace(acme.redirect_uri, bolt.redirect_uri)
    page = _refused(app, client, finish_sso(client, crossed), "ada@acme.example")
    assert "another organisation" in page

    # A code from Bolt's provider, spliced into an Acme sign-in, is refused by Acme's provider.
    bolt_client = app.test_client()
    bolt_back = idp_b.sign_in(begin_sso(bolt_client, "bob@bolt.example").headers["Location"], "bob")
    client = app.test_client()
    acme_state = parse_qs(urlsplit(begin_sso(client, "ada@acme.example").headers["Location"]).query)
    spliced = _with(
        bolt_back.replace(bolt.redirect_uri, acme.redirect_uri),
        state=acme_state["state"][0],
        iss=None,
    )
    _refused(app, client, finish_sso(client, spliced), "bob@bolt.example")

    # And each still signs in through its own.
    assert finish_sso(bolt_client, bolt_back).status_code == 302
    assert live_sessions(app, "bob@bolt.example") == 1


def test_a_provider_that_is_down_gives_a_clear_page(app, sso_org):
    acme = sso_org("acme")
    connect(
        app,
        acme.org,
        {"issuer": f"http://127.0.0.1:{free_port()}", "client_id": acme.client_id},
    )
    client = app.test_client()
    response = begin_sso(client, "ada@acme.example")
    page = _refused(app, client, response, "ada@acme.example", status=502)
    assert "could not be reached" in page and "Org acme" in page


def test_a_wrong_client_secret_is_reported_as_client_authentication(app, sso_org, idp):
    acme = sso_org("acme")
    connect(
        app,
        acme.org,
        {"issuer": acme.issuer, "client_id": acme.client_id, "client_secret": "not the secret"},
    )
    idp.add_account("ada", email="ada@acme.example")
    client = app.test_client()
    back = idp.sign_in(begin_sso(client, "ada@acme.example").headers["Location"], "ada")
    page = _refused(app, client, finish_sso(client, back), "ada@acme.example", status=502)
    assert "client id or secret" in page


def test_the_continue_button_without_sso_asks_for_a_password(app, make_org, make_user):
    user = make_user("member", make_org("plain"))
    from tests.conftest import post_form

    client = app.test_client()
    response = post_form(client, "/login", {"email": user.email, "password": "", "sso": "1"})
    assert response.status_code == 400
    assert any("No single sign-on" in m for m in messages(response))
