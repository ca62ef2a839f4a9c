"""Passkeys (WebAuthn) as a second factor: the service, with a software authenticator.

Every answer here is a real WebAuthn attestation or assertion (EC P-256, "none"
attestation) made by :class:`SoftAuthenticator` and verified by py_webauthn, so
these tests fail if the portal accepts what a browser would not have signed.
The test app's ``PORTAL_BASE_URL`` is ``http://portal.test``: RP ID ``portal.test``.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest
import sqlalchemy as sa

from portal.audit.models import AuditEvent
from portal.identity import passkeys
from portal.identity.models import Passkey, User
from portal.kernel.actor import Actor
from portal.kernel.errors import (
    Conflict,
    InvalidState,
    NotFound,
    PermissionDenied,
    ValidationFailed,
)
from tests.identity.soft_authenticator import SoftAuthenticator, b64url

ORIGIN = "http://portal.test"


@pytest.fixture
def ctx(monkeypatch):
    """The browser's Flask session, where the ceremony's challenge lives, as a plain dict
    (tests/identity/test_passkey_pages.py goes through the real one)."""
    cookie: dict = {}
    monkeypatch.setattr(passkeys, "flask_session", cookie)
    return cookie


def _user(db_session, make_user, make_org, role="member") -> User:
    db_session.commit()  # SQLite: the factories write from their own session
    ref = make_user(role, make_org() if role in ("member", "org_admin") else None)
    return db_session.get(User, ref.id)


def _register(db_session, user: User, authenticator: SoftAuthenticator, **kwargs) -> Passkey:
    actor = Actor.person(user)
    options = passkeys.registration_options(db_session, actor=actor, user=user)
    answer = authenticator.create(options, origin=ORIGIN)
    passkey = passkeys.passkey_register(
        db_session, actor=actor, user=user, credential=json.dumps(answer), **kwargs
    )
    db_session.commit()
    return passkey


def _sign_in(db_session, user: User, authenticator: SoftAuthenticator, **kwargs) -> Passkey:
    options = passkeys.authentication_options(db_session, user=user)
    answer = authenticator.get(options, **{"origin": ORIGIN, **kwargs})
    return passkeys.passkey_authenticate(db_session, user=user, credential=answer)


# ---------------------------------------------------------------- registration


def test_registration_keeps_the_credential_and_is_audited(ctx, db_session, make_user, make_org):
    user = _user(db_session, make_user, make_org)
    authenticator = SoftAuthenticator()
    passkey = _register(db_session, user, authenticator, name="Laptop")

    assert passkey.name == "Laptop"
    assert passkey.public_key and passkey.sign_count == 0
    assert passkey.transports == "internal,hybrid"
    assert passkey.organisation_id == user.organisation_id
    assert passkeys.passkey_count(db_session, user.id) == 1
    event = db_session.scalar(sa.select(AuditEvent).where(AuditEvent.action == "passkey.register"))
    assert event.target_id == str(user.id)
    assert event.after == {"passkey_id": passkey.id, "name": "Laptop"}
    # Unnamed ones are numbered.
    second = _register(db_session, user, SoftAuthenticator())
    assert second.name == "Passkey 2"


def test_registration_options_name_the_relying_party_and_exclude_known_credentials(
    ctx, db_session, make_user, make_org
):
    user = _user(db_session, make_user, make_org)
    authenticator = SoftAuthenticator()
    _register(db_session, user, authenticator)
    options = json.loads(
        passkeys.registration_options(db_session, actor=Actor.person(user), user=user)
    )
    assert options["rp"]["id"] == "portal.test"
    assert options["user"]["name"] == user.email
    assert user.email not in options["user"]["id"]  # an opaque handle
    assert [c["id"] for c in options["excludeCredentials"]] == [b64url(authenticator.credential_id)]


def test_registration_for_another_origin_or_challenge_is_refused(
    ctx, db_session, make_user, make_org
):
    user = _user(db_session, make_user, make_org)
    actor = Actor.person(user)

    options = passkeys.registration_options(db_session, actor=actor, user=user)
    answer = SoftAuthenticator().create(options, origin="https://evil.example")
    with pytest.raises(passkeys.PasskeyRefused) as refused:
        passkeys.passkey_register(db_session, actor=actor, user=user, credential=answer)
    assert refused.value.code == "passkey_invalid"

    options = json.loads(passkeys.registration_options(db_session, actor=actor, user=user))
    options["challenge"] = b64url(b"not the challenge we sent")
    answer = SoftAuthenticator().create(options, origin=ORIGIN)
    with pytest.raises(passkeys.PasskeyRefused) as refused:
        passkeys.passkey_register(db_session, actor=actor, user=user, credential=answer)
    assert refused.value.code == "passkey_invalid"

    options = passkeys.registration_options(db_session, actor=actor, user=user)
    answer = SoftAuthenticator().create(options, origin=ORIGIN, rp_id="evil.example")
    with pytest.raises(passkeys.PasskeyRefused):
        passkeys.passkey_register(db_session, actor=actor, user=user, credential=answer)
    assert passkeys.passkey_count(db_session, user.id) == 0


def test_a_registration_challenge_is_single_use_and_expires(
    ctx, db_session, make_user, make_org, clock
):
    user = _user(db_session, make_user, make_org)
    actor = Actor.person(user)
    authenticator = SoftAuthenticator()
    options = passkeys.registration_options(db_session, actor=actor, user=user)
    answer = authenticator.create(options, origin=ORIGIN)
    passkeys.passkey_register(db_session, actor=actor, user=user, credential=answer)
    db_session.commit()
    # The same answer again: its challenge is gone.
    with pytest.raises(passkeys.PasskeyRefused) as refused:
        passkeys.passkey_register(db_session, actor=actor, user=user, credential=answer)
    assert refused.value.code == "passkey_no_challenge"

    clock.freeze(clock.now)
    options = passkeys.registration_options(db_session, actor=actor, user=user)
    answer = SoftAuthenticator().create(options, origin=ORIGIN)
    clock.advance(passkeys.CHALLENGE_LIFETIME + dt.timedelta(seconds=1))
    with pytest.raises(passkeys.PasskeyRefused) as refused:
        passkeys.passkey_register(db_session, actor=actor, user=user, credential=answer)
    assert refused.value.code == "passkey_challenge_expired"
    assert passkeys.passkey_count(db_session, user.id) == 1


def test_the_same_authenticator_cannot_be_registered_twice(ctx, db_session, make_user, make_org):
    user = _user(db_session, make_user, make_org)
    authenticator = SoftAuthenticator()
    _register(db_session, user, authenticator)
    other = _user(db_session, make_user, make_org)
    with pytest.raises(Conflict) as refused:
        _register(db_session, other, authenticator)
    assert refused.value.code == "passkey_exists"


def test_only_the_owner_registers_and_sso_accounts_cannot(
    ctx, app, db_session, make_user, make_org
):
    user = _user(db_session, make_user, make_org)
    admin = _user(db_session, make_user, make_org, role="council_admin")
    for actor in (Actor.person(admin), Actor.anonymous(), Actor.system("test")):
        with pytest.raises(PermissionDenied):
            passkeys.registration_options(db_session, actor=actor, user=user)
        with pytest.raises(PermissionDenied):
            passkeys.passkey_register(db_session, actor=actor, user=user, credential="{}")
    user.password_hash = None  # an SSO account
    db_session.commit()
    with pytest.raises(InvalidState) as refused:
        passkeys.registration_options(db_session, actor=Actor.person(user), user=user)
    assert refused.value.code == "passkey_not_for_sso"


def test_an_ip_address_portal_has_no_passkeys(app, db_session, make_user, make_org):
    user = _user(db_session, make_user, make_org)
    before = app.config["PORTAL_BASE_URL"]
    try:
        app.config["PORTAL_BASE_URL"] = "http://127.0.0.1:5000"
        with app.app_context():
            assert not passkeys.passkeys_available()
            with pytest.raises(InvalidState) as refused:
                passkeys.registration_options(db_session, actor=Actor.person(user), user=user)
            assert refused.value.code == "passkeys_unavailable"
        app.config["PORTAL_BASE_URL"] = "https://portal.example:443/"
        with app.app_context():
            rp = passkeys.relying_party()
            assert (rp.id, rp.origin) == ("portal.example", "https://portal.example")
        app.config["PORTAL_BASE_URL"] = "http://localhost:8123"
        with app.app_context():
            rp = passkeys.relying_party()
            assert (rp.id, rp.origin) == ("localhost", "http://localhost:8123")
    finally:
        app.config["PORTAL_BASE_URL"] = before


@pytest.mark.parametrize(
    "credential",
    ["", "not json", "[]", '{"id": 5}', json.dumps({"id": "x", "response": {}}), "{" * 70_000],
)
def test_garbage_answers_are_refused_cleanly(ctx, db_session, make_user, make_org, credential):
    user = _user(db_session, make_user, make_org)
    actor = Actor.person(user)
    passkeys.registration_options(db_session, actor=actor, user=user)
    with pytest.raises(passkeys.PasskeyRefused) as refused:
        passkeys.passkey_register(db_session, actor=actor, user=user, credential=credential)
    assert refused.value.status == 400


# ---------------------------------------------------------------- authentication


def test_sign_in_with_a_registered_passkey(ctx, db_session, make_user, make_org, clock):
    user = _user(db_session, make_user, make_org, role="council_admin")
    authenticator = SoftAuthenticator()
    registered = _register(db_session, user, authenticator)
    options = json.loads(passkeys.authentication_options(db_session, user=user))
    assert options["rpId"] == "portal.test"
    assert [c["id"] for c in options["allowCredentials"]] == [registered.credential_id]

    passkey = passkeys.passkey_authenticate(
        db_session, user=user, credential=json.dumps(authenticator.get(options, origin=ORIGIN))
    )
    assert passkey.id == registered.id
    assert passkey.sign_count == 1
    assert passkey.last_used_at is not None
    db_session.commit()
    clock.advance(dt.timedelta(seconds=1))
    assert _sign_in(db_session, user, authenticator).sign_count == 2


def test_sign_in_with_a_wrong_challenge_is_refused(ctx, db_session, make_user, make_org):
    user = _user(db_session, make_user, make_org)
    authenticator = SoftAuthenticator()
    _register(db_session, user, authenticator)
    options = json.loads(passkeys.authentication_options(db_session, user=user))
    options["challenge"] = b64url(b"a challenge the portal never made")
    with pytest.raises(passkeys.PasskeyRefused) as refused:
        passkeys.passkey_authenticate(
            db_session, user=user, credential=authenticator.get(options, origin=ORIGIN)
        )
    assert refused.value.code == "passkey_invalid"
    # Without options first (no challenge in the session) nothing is accepted either.
    answer = authenticator.get(options, origin=ORIGIN)
    with pytest.raises(passkeys.PasskeyRefused) as refused:
        passkeys.passkey_authenticate(db_session, user=user, credential=answer)
    assert refused.value.code == "passkey_no_challenge"


def test_sign_in_from_another_origin_is_refused(ctx, db_session, make_user, make_org):
    user = _user(db_session, make_user, make_org)
    authenticator = SoftAuthenticator()
    _register(db_session, user, authenticator)
    for kwargs in ({"origin": "https://phish.example"}, {"rp_id": "phish.example"}):
        with pytest.raises(passkeys.PasskeyRefused) as refused:
            _sign_in(db_session, user, authenticator, **kwargs)
        assert refused.value.code == "passkey_invalid"


def test_a_bad_signature_is_refused(ctx, db_session, make_user, make_org):
    user = _user(db_session, make_user, make_org)
    authenticator = SoftAuthenticator()
    _register(db_session, user, authenticator)
    impostor = SoftAuthenticator()
    impostor.credential_id = authenticator.credential_id  # same id, another key
    with pytest.raises(passkeys.PasskeyRefused) as refused:
        _sign_in(db_session, user, impostor)
    assert refused.value.code == "passkey_invalid"


def test_sign_count_regression_is_refused(ctx, db_session, make_user, make_org, clock):
    user = _user(db_session, make_user, make_org)
    authenticator = SoftAuthenticator()
    _register(db_session, user, authenticator)
    assert _sign_in(db_session, user, authenticator, sign_count=5).sign_count == 5
    db_session.commit()
    for count in (5, 3, 0):  # a copy of the key that was used less, or keeps no counter
        clock.advance(dt.timedelta(seconds=1))
        with pytest.raises(passkeys.PasskeyRefused) as refused:
            _sign_in(db_session, user, authenticator, sign_count=count)
        assert refused.value.code == passkeys.SIGN_COUNT_REFUSED
    assert db_session.get(Passkey, db_session.scalar(sa.select(Passkey.id))).sign_count == 5


def test_a_passkey_without_a_counter_signs_in_every_time(
    ctx, db_session, make_user, make_org, clock
):
    user = _user(db_session, make_user, make_org)
    authenticator = SoftAuthenticator(counter=False)
    _register(db_session, user, authenticator)
    for _ in range(2):
        clock.advance(dt.timedelta(seconds=1))
        assert _sign_in(db_session, user, authenticator).sign_count == 0
        db_session.commit()


def test_a_replayed_answer_is_refused(ctx, app, db_session, make_user, make_org, clock):
    """A copy of the old session cookie (its challenge) with the old answer: refused,
    even for a passkey without a counter."""
    user = _user(db_session, make_user, make_org)
    authenticator = SoftAuthenticator(counter=False)
    _register(db_session, user, authenticator)
    options = passkeys.authentication_options(db_session, user=user)
    stolen_cookie = dict(ctx)
    answer = authenticator.get(options, origin=ORIGIN)
    passkeys.passkey_authenticate(db_session, user=user, credential=answer)
    db_session.commit()
    clock.advance(dt.timedelta(seconds=30))
    ctx.update(stolen_cookie)
    with pytest.raises(passkeys.PasskeyRefused) as refused:
        passkeys.passkey_authenticate(db_session, user=user, credential=answer)
    assert refused.value.code == "passkey_replayed"


def test_another_users_credential_is_refused(ctx, db_session, make_user, make_org, clock):
    alice = _user(db_session, make_user, make_org)
    bob = _user(db_session, make_user, make_org)
    alices_key = SoftAuthenticator()
    _register(db_session, alice, alices_key)
    _register(db_session, bob, SoftAuthenticator())
    # Bob's password was accepted; Alice's passkey (a valid signature) does not finish it.
    options = passkeys.authentication_options(db_session, user=bob)
    with pytest.raises(passkeys.PasskeyRefused) as refused:
        passkeys.passkey_authenticate(
            db_session, user=bob, credential=alices_key.get(options, origin=ORIGIN)
        )
    assert refused.value.code == "passkey_unknown"
    # A challenge made for Alice is not Bob's either.
    options = passkeys.authentication_options(db_session, user=alice)
    with pytest.raises(passkeys.PasskeyRefused) as refused:
        passkeys.passkey_authenticate(
            db_session, user=bob, credential=alices_key.get(options, origin=ORIGIN)
        )
    assert refused.value.code == "passkey_no_challenge"


def test_a_registration_challenge_does_not_sign_in(ctx, db_session, make_user, make_org):
    user = _user(db_session, make_user, make_org)
    authenticator = SoftAuthenticator()
    _register(db_session, user, authenticator)
    options = json.loads(
        passkeys.registration_options(db_session, actor=Actor.person(user), user=user)
    )
    answer = authenticator.get(
        {"challenge": options["challenge"], "rpId": "portal.test"}, origin=ORIGIN
    )
    with pytest.raises(passkeys.PasskeyRefused) as refused:
        passkeys.passkey_authenticate(db_session, user=user, credential=answer)
    assert refused.value.code == "passkey_no_challenge"


def test_no_passkey_no_sign_in_options(ctx, db_session, make_user, make_org):
    user = _user(db_session, make_user, make_org)
    with pytest.raises(InvalidState):
        passkeys.authentication_options(db_session, user=user)


# ---------------------------------------------------------------- rename and remove


def test_owner_renames_and_removes_audited(ctx, db_session, make_user, make_org):
    user = _user(db_session, make_user, make_org)
    passkey = _register(db_session, user, SoftAuthenticator(), name="Old")
    actor = Actor.person(user)
    passkeys.passkey_rename(db_session, actor=actor, user=user, passkey_id=passkey.id, name=" New ")
    assert passkey.name == "New"
    with pytest.raises(ValidationFailed):
        passkeys.passkey_rename(db_session, actor=actor, user=user, passkey_id=passkey.id, name=" ")
    with pytest.raises(ValidationFailed):
        passkeys.passkey_rename(
            db_session, actor=actor, user=user, passkey_id=passkey.id, name="x" * 101
        )
    passkeys.passkey_remove(db_session, actor=actor, user=user, passkey_id=passkey.id)
    db_session.commit()
    assert passkeys.passkey_count(db_session, user.id) == 0
    actions = db_session.scalars(sa.select(AuditEvent.action).order_by(AuditEvent.id)).all()
    assert actions[-2:] == ["passkey.rename", "passkey.remove"]


def test_nobody_else_renames_or_removes(ctx, db_session, make_user, make_org):
    org = make_org()
    user = db_session.get(User, make_user("member", org).id)
    passkey = _register(db_session, user, SoftAuthenticator())
    colleague = db_session.get(User, make_user("org_admin", org).id)
    db_session.commit()
    stranger = _user(db_session, make_user, make_org)  # another organisation
    admin = _user(db_session, make_user, make_org, role="council_admin")
    refusals = (
        (Actor.person(colleague), PermissionDenied),
        (Actor.person(admin), PermissionDenied),
        (Actor.anonymous(), PermissionDenied),
        (Actor.system("job"), PermissionDenied),
        (Actor.person(stranger), NotFound),  # another organisation's person: not there
    )
    for actor, refusal in refusals:
        with pytest.raises(refusal):
            passkeys.passkey_remove(db_session, actor=actor, user=user, passkey_id=passkey.id)
        with pytest.raises(refusal):
            passkeys.passkey_rename(
                db_session, actor=actor, user=user, passkey_id=passkey.id, name="Mine"
            )
        with pytest.raises(refusal):
            passkeys.passkeys_list(db_session, actor=actor, user=user)
    other = stranger
    # The other person names their own account and Alice's passkey id: not found.
    with pytest.raises(NotFound):
        passkeys.passkey_remove(
            db_session, actor=Actor.person(other), user=other, passkey_id=passkey.id
        )
    assert passkeys.passkey_count(db_session, user.id) == 1


def test_remove_all_for_lost_factor_recovery(ctx, db_session, make_user, make_org):
    user = _user(db_session, make_user, make_org)
    other = _user(db_session, make_user, make_org)
    _register(db_session, user, SoftAuthenticator())
    _register(db_session, user, SoftAuthenticator())
    _register(db_session, other, SoftAuthenticator())
    assert passkeys.passkeys_remove_all(db_session, user.id) == 2
    assert passkeys.passkey_count(db_session, user.id) == 0
    assert passkeys.passkey_count(db_session, other.id) == 1
