"""ID tokens that must be refused: wrong nonce, issuer or audience, expired, forged.

The tokens are crafted by the test and signed with its own key, served by
:class:`~tests.sso.misbehaving_provider.MisbehavingProvider` (a real provider
would never issue them). The portal's whole callback runs: code exchange with
PKCE, JWKS fetch, signature and claim checks. Each refusal leaves no session
and creates no account.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
from joserfc.jwk import RSAKey

from tests.sso.conftest import begin_sso, connect, finish_sso, live_sessions, verify_domain
from tests.sso.misbehaving_provider import MisbehavingProvider
from tests.support import count


@pytest.fixture
def rogue() -> Iterator[MisbehavingProvider]:
    provider = MisbehavingProvider()
    yield provider
    provider.stop()


@pytest.fixture
def acme(app, make_org, rogue):
    org = make_org("acme")
    verify_domain(app, org, "acme.example")
    connect(
        app,
        org,
        {
            "issuer": rogue.issuer,
            "client_id": rogue.client_id,
            "client_secret": rogue.client_secret,
        },
    )
    return org


def _sign_in(app, rogue: MisbehavingProvider):
    client = app.test_client()
    authorize = begin_sso(client, "ada@acme.example").headers["Location"]
    query = {k: v[0] for k, v in parse_qs(urlsplit(authorize).query).items()}
    rogue.remember_authorisation(query)
    callback = f"http://portal.test/sso/org/acme/callback?code=c0de&state={query['state']}"
    return client, finish_sso(client, callback)


def _refused(app, client, response, phrase: str) -> None:
    from portal.identity.models import User

    page = response.get_data(as_text=True)
    assert response.status_code == 400, page[:400]
    assert phrase in page
    assert "Nobody was signed in" in page
    assert live_sessions(app, "ada@acme.example") == 0
    assert count(app, User, User.email == "ada@acme.example") == 0
    assert client.get("/my").status_code == 302


def test_a_good_token_signs_in(app, acme, rogue):
    client, response = _sign_in(app, rogue)
    assert response.status_code == 302 and response.headers["Location"] == "/my"
    assert rogue.token_requests == 1
    assert live_sessions(app, "ada@acme.example") == 1


def test_a_wrong_nonce_is_refused(app, acme, rogue):
    rogue.claims = lambda c: {**c, "nonce": "another-sign-in"}
    _refused(app, *_sign_in(app, rogue), "nonce differs")


def test_a_missing_nonce_is_refused(app, acme, rogue):
    rogue.claims = lambda c: {k: v for k, v in c.items() if k != "nonce"}
    _refused(app, *_sign_in(app, rogue), "nonce differs")


def test_a_wrong_issuer_is_refused(app, acme, rogue):
    rogue.claims = lambda c: {**c, "iss": "https://evil.example"}
    _refused(app, *_sign_in(app, rogue), "not by your provider")


def test_a_wrong_audience_is_refused(app, acme, rogue):
    rogue.claims = lambda c: {**c, "aud": "another-client"}
    _refused(app, *_sign_in(app, rogue), "not issued to the portal")


def test_an_extra_audience_with_another_authorised_party_is_refused(app, acme, rogue):
    rogue.claims = lambda c: {**c, "aud": [rogue.client_id, "other"], "azp": "other"}
    _refused(app, *_sign_in(app, rogue), "issued to another party")


def test_an_expired_token_is_refused(app, acme, rogue):
    now = int(time.time())
    rogue.claims = lambda c: {**c, "iat": now - 900, "exp": now - 300}
    _refused(app, *_sign_in(app, rogue), "has expired")


def test_a_token_from_the_future_is_refused(app, acme, rogue):
    now = int(time.time())
    rogue.claims = lambda c: {**c, "iat": now + 600, "exp": now + 900}
    _refused(app, *_sign_in(app, rogue), "dated in the future")


def test_clock_skew_within_the_allowance_is_accepted(app, acme, rogue):
    now = int(time.time())
    rogue.claims = lambda c: {**c, "iat": now + 30, "exp": now - 30}  # both within 60 s
    client, response = _sign_in(app, rogue)
    assert response.status_code == 302


def test_a_token_signed_with_another_key_is_refused(app, acme, rogue):
    rogue.sign_with = RSAKey.generate_key(2048, parameters={"kid": "test-key"})
    _refused(app, *_sign_in(app, rogue), "signature does not verify")
