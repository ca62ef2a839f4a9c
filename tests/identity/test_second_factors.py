"""Second factors, the services (issue 12): TOTP, recovery codes, reset, the rules."""

from __future__ import annotations

import datetime as dt

import pyotp
import pytest
import sqlalchemy as sa

from portal.audit.models import AuditEvent
from portal.identity import factors
from portal.identity.models import RecoveryCode, TotpFactor, User, UserSession
from portal.identity.sign_in import session_start, session_user
from portal.kernel.actor import Actor
from portal.kernel.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from portal.tenancy.models import Organisation

MOMENT = dt.datetime(2026, 11, 3, 9, 0, 10, tzinfo=dt.UTC)  # 10 s into a 30 s step
ISSUER = "Test Council portal"


def _user(db_session, ref) -> User:
    return db_session.get(User, ref.id)


def _enrol(db_session, user: User, clock) -> tuple[str, list[str]]:
    """Set up and confirm an authenticator app; the secret and the recovery codes."""
    actor = Actor.person(user)
    setup = factors.totp_begin(db_session, actor=actor, user=user, issuer=ISSUER)
    codes = factors.totp_confirm(
        db_session, actor=actor, user=user, code=pyotp.TOTP(setup.secret).at(clock.now)
    )
    db_session.commit()
    return setup.secret, codes


def _actions(db_session) -> list[str]:
    return list(db_session.scalars(sa.select(AuditEvent.action).order_by(AuditEvent.id)))


# ---------------------------------------------------------------- TOTP


def test_totp_confirmed_with_the_right_code_gives_recovery_codes(
    db_session, clock, make_org, make_user
):
    clock.freeze(MOMENT)
    user = _user(db_session, make_user("member", make_org()))
    actor = Actor.person(user)
    setup = factors.totp_begin(db_session, actor=actor, user=user, issuer=ISSUER)
    assert setup.uri.startswith("otpauth://totp/") and "secret=" + setup.secret in setup.uri
    assert "<svg" in setup.qr_svg() and "<script" not in setup.qr_svg()
    assert not factors.user_has_second_factor(db_session, user)  # not confirmed yet
    codes = factors.totp_confirm(
        db_session, actor=actor, user=user, code=pyotp.TOTP(setup.secret).at(MOMENT)
    )
    db_session.commit()
    assert len(codes) == 10 and len(set(codes)) == 10
    assert factors.user_has_second_factor(db_session, user)
    assert factors.recovery_codes_left(db_session, user.id) == 10
    assert _actions(db_session)[-2:] == ["user.totp_enrol", "user.recovery_codes_generate"]
    # no secret or code in the audit log
    dumped = " ".join(
        str(row) for row in db_session.execute(sa.select(AuditEvent.before, AuditEvent.after))
    )
    assert setup.secret not in dumped and not any(code in dumped for code in codes)


def test_totp_wrong_code_is_refused(db_session, clock, make_org, make_user):
    clock.freeze(MOMENT)
    user = _user(db_session, make_user("member", make_org()))
    actor = Actor.person(user)
    setup = factors.totp_begin(db_session, actor=actor, user=user, issuer=ISSUER)
    right = pyotp.TOTP(setup.secret).at(MOMENT)
    wrong = f"{(int(right) + 1) % 1_000_000:06d}"
    for code in (wrong, "", "abcdef", "12345", right + "0"):
        with pytest.raises(ValidationFailed) as refused:
            factors.totp_confirm(db_session, actor=actor, user=user, code=code)
        assert "code" in refused.value.errors
    assert not factors.user_has_second_factor(db_session, user)


def test_totp_code_one_step_early_or_late_is_accepted_two_steps_not(
    db_session, clock, make_org, make_user
):
    clock.freeze(MOMENT)
    user = _user(db_session, make_user("member", make_org()))
    secret, _ = _enrol(db_session, user, clock)
    totp = pyotp.TOTP(secret)
    clock.advance(dt.timedelta(minutes=5))
    late = totp.at(clock.now - dt.timedelta(seconds=30))
    assert factors.verify_second_factor(db_session, user=user, code=late) == factors.AMR_TOTP
    clock.advance(dt.timedelta(minutes=5))
    expired = totp.at(clock.now - dt.timedelta(seconds=60))
    with pytest.raises(factors.SecondFactorRefused):
        factors.verify_second_factor(db_session, user=user, code=expired)
    early = totp.at(clock.now + dt.timedelta(seconds=30))
    assert factors.verify_second_factor(db_session, user=user, code=early) == factors.AMR_TOTP


def test_totp_code_is_not_taken_twice(db_session, clock, make_org, make_user):
    clock.freeze(MOMENT)
    user = _user(db_session, make_user("member", make_org()))
    secret, _ = _enrol(db_session, user, clock)
    clock.advance(dt.timedelta(minutes=1))
    code = pyotp.TOTP(secret).at(clock.now)
    assert factors.verify_second_factor(db_session, user=user, code=code) == factors.AMR_TOTP
    db_session.commit()
    with pytest.raises(factors.SecondFactorRefused):  # the same code again, same step
        factors.verify_second_factor(db_session, user=user, code=code)
    # nor an older one still inside the window
    previous = pyotp.TOTP(secret).at(clock.now - dt.timedelta(seconds=30))
    with pytest.raises(factors.SecondFactorRefused):
        factors.verify_second_factor(db_session, user=user, code=previous)
    clock.advance(dt.timedelta(seconds=30))  # the next step's code works
    next_code = pyotp.TOTP(secret).at(clock.now)
    assert factors.verify_second_factor(db_session, user=user, code=next_code) == "pwd+otp"


def test_totp_secret_is_encrypted_at_rest(db_session, clock, make_org, make_user):
    clock.freeze(MOMENT)
    user = _user(db_session, make_user("member", make_org()))
    secret, _ = _enrol(db_session, user, clock)
    stored = db_session.execute(sa.text("SELECT secret_encrypted FROM totp_factors")).scalar_one()
    assert secret not in stored and secret.lower() not in stored.lower()
    from portal.crypto import decrypt_secret

    assert decrypt_secret(stored) == secret


def test_confirmed_totp_must_be_removed_before_another(db_session, clock, make_org, make_user):
    clock.freeze(MOMENT)
    user = _user(db_session, make_user("member", make_org()))
    _enrol(db_session, user, clock)
    with pytest.raises(Conflict):
        factors.totp_begin(db_session, actor=Actor.person(user), user=user, issuer=ISSUER)


def test_totp_removed_with_a_code_or_the_password_not_without(
    db_session, clock, make_org, make_user
):
    clock.freeze(MOMENT)
    ref = make_user("member", make_org())
    user = _user(db_session, ref)
    actor = Actor.person(user)
    secret, _ = _enrol(db_session, user, clock)
    with pytest.raises(ValidationFailed):
        factors.totp_remove(db_session, actor=actor, user=user, code="000000", password="nope")
    with pytest.raises(ValidationFailed):
        factors.totp_remove(db_session, actor=actor, user=user)
    factors.totp_remove(db_session, actor=actor, user=user, password=ref.password)
    db_session.commit()
    assert not factors.user_has_second_factor(db_session, user)
    assert factors.recovery_codes_left(db_session, user.id) == 0  # no factor left for them
    assert _actions(db_session)[-1] == "user.totp_remove"
    # and again, with a code this time
    secret, _ = _enrol(db_session, user, clock)
    clock.advance(dt.timedelta(seconds=30))
    factors.totp_remove(db_session, actor=actor, user=user, code=pyotp.TOTP(secret).at(clock.now))
    assert db_session.scalar(sa.select(sa.func.count()).select_from(TotpFactor)) == 0


def test_only_the_person_manages_their_factors(db_session, clock, make_org, make_user):
    clock.freeze(MOMENT)
    org = make_org()
    refs = [make_user("member", org), make_user("org_admin", org), make_user("council_admin")]
    user, admin, council = (_user(db_session, ref) for ref in refs)
    for actor in (
        Actor.person(admin),
        Actor.person(council),
        Actor.system("job"),
        Actor.anonymous(),
        Actor(label="forged", user_id=user.id),  # no kind: anonymous
    ):
        with pytest.raises(PermissionDenied):
            factors.totp_begin(db_session, actor=actor, user=user, issuer=ISSUER)
        with pytest.raises(PermissionDenied):
            factors.recovery_codes_generate(db_session, actor=actor, user=user)


# ---------------------------------------------------------------- recovery codes


def test_recovery_code_works_once(db_session, clock, make_org, make_user):
    clock.freeze(MOMENT)
    user = _user(db_session, make_user("member", make_org()))
    _, codes = _enrol(db_session, user, clock)
    # typed with capitals, spaces and without the dash still counts
    typed = " " + codes[3].upper().replace("-", " ") + " "
    assert factors.verify_second_factor(db_session, user=user, code=typed) == "pwd+recovery"
    db_session.commit()
    assert factors.recovery_codes_left(db_session, user.id) == 9
    with pytest.raises(factors.SecondFactorRefused):
        factors.verify_second_factor(db_session, user=user, code=codes[3])
    assert "user.recovery_code_used" in _actions(db_session)


def test_recovery_codes_are_hashed_at_rest(db_session, clock, make_org, make_user):
    clock.freeze(MOMENT)
    user = _user(db_session, make_user("member", make_org()))
    _, codes = _enrol(db_session, user, clock)
    stored = [row[0] for row in db_session.execute(sa.text("SELECT code_hash FROM recovery_codes"))]
    assert len(stored) == 10
    everything = " ".join(stored)
    for code in codes:
        assert code not in everything and code.replace("-", "") not in everything


def test_another_persons_recovery_code_is_refused(db_session, clock, make_org, make_user):
    clock.freeze(MOMENT)
    org = make_org()
    refs = [make_user("member", org), make_user("member", org)]
    alice, bob = (_user(db_session, ref) for ref in refs)
    _, alice_codes = _enrol(db_session, alice, clock)
    _enrol(db_session, bob, clock)
    with pytest.raises(factors.SecondFactorRefused):
        factors.verify_second_factor(db_session, user=bob, code=alice_codes[0])


def test_new_recovery_codes_replace_the_old(db_session, clock, make_org, make_user):
    clock.freeze(MOMENT)
    user = _user(db_session, make_user("member", make_org()))
    _, old = _enrol(db_session, user, clock)
    new = factors.recovery_codes_generate(db_session, actor=Actor.person(user), user=user)
    db_session.commit()
    assert not set(old) & set(new)
    with pytest.raises(factors.SecondFactorRefused):
        factors.verify_second_factor(db_session, user=user, code=old[0])
    assert factors.verify_second_factor(db_session, user=user, code=new[0]) == "pwd+recovery"


def test_recovery_codes_need_a_factor_first(db_session, make_org, make_user):
    user = _user(db_session, make_user("member", make_org()))
    with pytest.raises(Conflict):
        factors.recovery_codes_generate(db_session, actor=Actor.person(user), user=user)


# ---------------------------------------------------------------- lost factors


def _signed_in(db_session, user: User) -> str:
    token = session_start(db_session, user=user, ip="192.0.2.1", user_agent="test", amr="pwd+otp")
    db_session.commit()
    return token


def test_reset_by_another_council_admin(db_session, clock, make_user):
    clock.freeze(MOMENT)
    refs = [make_user("finance", second_factor=False), make_user("council_admin")]
    finance, admin = (_user(db_session, ref) for ref in refs)
    _enrol(db_session, finance, clock)
    token = _signed_in(db_session, finance)
    factors.factors_reset(db_session, actor=Actor.person(admin, "192.0.2.9"), user=finance)
    db_session.commit()
    assert not factors.user_has_second_factor(db_session, finance)
    assert db_session.scalar(sa.select(sa.func.count()).select_from(RecoveryCode)) == 0
    assert session_user(db_session, token) is None  # signed out everywhere
    event = db_session.scalars(
        sa.select(AuditEvent).where(AuditEvent.action == "user.second_factor_reset")
    ).one()
    assert event.actor_user_id == admin.id and event.target_id == str(finance.id)
    assert event.before == {"totp": True, "recovery_codes_left": 10}
    assert event.after["sessions_ended"] == 1


def test_reset_of_oneself_is_refused(db_session, clock, make_user):
    clock.freeze(MOMENT)
    admin = _user(db_session, make_user("council_admin"))
    with pytest.raises(PermissionDenied) as refused:
        factors.factors_reset(db_session, actor=Actor.person(admin), user=admin)
    assert refused.value.code == "reset_self"
    assert factors.user_has_second_factor(db_session, admin)


@pytest.mark.parametrize("role", ["org_admin", "finance", "member"])
def test_reset_by_anyone_but_a_council_admin_is_refused(db_session, make_org, make_user, role):
    org = make_org()
    refs = [
        make_user("member", org, second_factor=True),
        make_user(role, org if role != "finance" else None),
    ]
    target, other = (_user(db_session, ref) for ref in refs)
    for actor in (Actor.person(other), Actor.system("cli"), Actor.anonymous()):
        with pytest.raises(PermissionDenied):
            factors.factors_reset(db_session, actor=actor, user=target)
    assert factors.user_has_second_factor(db_session, target)


# ---------------------------------------------------------------- who must have one


def test_second_factor_required_by_role_or_organisation(db_session, make_org, make_user):
    org = make_org()
    refs = [
        make_user("council_admin"),
        make_user("finance"),
        make_user("org_admin", org),
        make_user("member", org),
    ]
    council, finance, admin, member = (_user(db_session, ref) for ref in refs)
    assert factors.second_factor_required(council) and factors.second_factor_required(finance)
    assert not factors.second_factor_required(admin)
    assert not factors.second_factor_required(member)
    organisation = db_session.get(Organisation, org.id)
    factors.second_factor_requirement_set(
        db_session, actor=Actor.person(admin), organisation=organisation, required=True
    )
    db_session.commit()
    assert factors.second_factor_required(member) and factors.second_factor_required(admin)
    event = db_session.scalars(
        sa.select(AuditEvent).where(AuditEvent.action == "organisation.require_second_factor")
    ).one()
    assert event.after == {"require_second_factor": True} and event.organisation_id == org.id


def test_only_the_organisations_admin_sets_the_requirement(db_session, make_org, make_user):
    org, other = make_org(), make_org()
    refs = [make_user("member", org), make_user("org_admin", other), make_user("finance")]
    organisation = db_session.get(Organisation, org.id)
    for actor in (
        *(Actor.person(_user(db_session, ref)) for ref in refs),
        Actor.anonymous(),
    ):
        # Another organisation's admin is told it does not exist (invariant 10).
        with pytest.raises(NotFound if actor.organisation_id == other.id else PermissionDenied):
            factors.second_factor_requirement_set(
                db_session, actor=actor, organisation=organisation, required=True
            )
    assert organisation.require_second_factor is False


def test_sso_claims_recorded(db_session, make_org, make_user):
    assert factors.provider_amr_acr(
        {"amr": ["pwd", "mfa"], "acr": "urn:mace:incommon:iap:silver"}
    ) == (
        "pwd mfa",
        "urn:mace:incommon:iap:silver",
    )
    assert factors.provider_amr_acr({}) == (None, None)
    assert factors.provider_amr_acr({"amr": "otp", "acr": 2}) == ("otp", "2")
    user = _user(db_session, make_user("member", make_org()))
    session_start(
        db_session, user=user, ip=None, user_agent=None, amr="sso", sso_amr="pwd mfa", sso_acr="1"
    )
    db_session.commit()
    row = db_session.scalars(sa.select(UserSession)).one()
    assert (row.amr, row.sso_amr, row.sso_acr) == ("sso", "pwd mfa", "1")


def test_a_recovery_code_of_digits_only_is_not_mistaken_for_an_app_code(
    db_session, clock, make_org, make_user, monkeypatch
):
    clock.freeze(MOMENT)
    user = _user(db_session, make_user("member", make_org()))
    made = iter([f"{n}2345-67892" for n in range(2, 10)] + ["22222-33333", "44444-55555"])
    monkeypatch.setattr(factors, "_new_recovery_code", lambda: next(made))
    _, codes = _enrol(db_session, user, clock)
    assert codes[0] == "22345-67892"
    assert factors.verify_second_factor(db_session, user=user, code="2234567892") == "pwd+recovery"
