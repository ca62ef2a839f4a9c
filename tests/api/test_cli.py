"""``portal token create``: the new token alone on the last line; bad input is one line."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from portal.api.models import ApiToken
from portal.db import db
from portal.identity.security import token_digest
from portal.kernel.clock import now_utc
from tests.api.conftest import ApiClient

NINETY_DAYS = dt.timedelta(days=90)  # the default, written out rather than imported


def _last_line(output: str) -> str:
    return output.rstrip("\n").splitlines()[-1]


@pytest.mark.parametrize("scope", ["council", "organisation", "vendor"])
def test_token_create_prints_a_working_token_last(app, runner, make_org, make_vendor, scope):
    args = ["token", "create", "--scope", scope, "--name", "from the shell"]
    if scope == "organisation":
        args += ["--org", make_org("acme").slug]
    if scope == "vendor":
        args += ["--vendor", make_vendor("draftworks").slug]
    before = now_utc()
    result = runner.invoke(args=args)
    after = now_utc()
    assert result.exit_code == 0, result.output
    token = _last_line(result.output)
    assert token.startswith(f"pk_{scope[0]}_") and " " not in token
    with app.app_context():
        row = db.session.scalar(
            sa.select(ApiToken).where(ApiToken.token_hash == token_digest(token))
        )
        assert row is not None and row.scope == scope and row.name == "from the shell"
        # No --expires-in-days: 90 days, not "never".
        assert before + NINETY_DAYS <= row.expires_at <= after + NINETY_DAYS
    assert f"expires {row.expires_at:%Y-%m-%d %H:%M} UTC" in result.output
    assert ApiClient(app.test_client(), token).get("/catalogue").status_code == 200


def test_token_create_with_an_expiry_and_a_default_name(app, runner):
    before = now_utc()
    result = runner.invoke(
        args=["token", "create", "--scope", "council", "--expires-in-days", "30"]
    )
    after = now_utc()
    assert result.exit_code == 0, result.output
    with app.app_context():
        row = db.session.scalar(
            sa.select(ApiToken).where(
                ApiToken.token_hash == token_digest(_last_line(result.output))
            )
        )
        assert "council" in row.name
        thirty = dt.timedelta(days=30)
        assert before + thirty <= row.expires_at <= after + thirty


def test_token_create_never_expires_only_when_asked(app, runner):
    result = runner.invoke(args=["token", "create", "--scope", "council", "--never-expires"])
    assert result.exit_code == 0, result.output
    assert "never expires" in result.output
    token = _last_line(result.output)
    with app.app_context():
        row = db.session.scalar(
            sa.select(ApiToken).where(ApiToken.token_hash == token_digest(token))
        )
        assert row.expires_at is None
    assert ApiClient(app.test_client(), token).get("/catalogue").status_code == 200


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--scope", "admin"],
        ["--scope", "organisation"],
        ["--scope", "organisation", "--org", "nobody"],
        ["--scope", "vendor"],
        ["--scope", "vendor", "--vendor", "nobody"],
        ["--scope", "council", "--org", "acme"],
        ["--scope", "organisation", "--org", "acme", "--vendor", "draftworks"],
        ["--scope", "council", "--expires-in-days", "0"],
        ["--scope", "council", "--expires-in-days", "soon"],
        ["--scope", "council", "--expires-in-days", "30", "--never-expires"],
        ["--scope", "council", "--name", "x" * 201],
    ],
)
def test_token_create_bad_input_exits_non_zero_with_one_line(app, runner, make_org, args):
    make_org("acme")
    result = runner.invoke(args=["token", "create", *args])
    assert result.exit_code != 0
    assert len(result.output.strip().splitlines()) == 1, result.output
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(ApiToken)) == 0


def test_token_create_refuses_a_suspended_organisation(app, runner, make_org):
    make_org("sleepy", status="suspended")
    result = runner.invoke(args=["token", "create", "--scope", "organisation", "--org", "sleepy"])
    assert result.exit_code == 1
    assert "suspended" in result.output
