"""The ``portal`` command line."""

import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa

from portal.db import db
from portal.identity.models import User
from portal.tenancy.models import Organisation


def test_create_admin_creates_a_council_admin(runner, app):
    result = runner.invoke(
        args=[
            "create-admin",
            "--email",
            "Boss@Council.example",
            "--password",
            "long enough password",
        ]
    )
    assert result.exit_code == 0, result.output
    with app.app_context():
        user = db.session.scalar(sa.select(User).where(User.email == "boss@council.example"))
        assert user is not None and user.role == "council_admin" and user.organisation_id is None


def test_create_admin_bad_input_exits_non_zero_with_one_line(runner, app):
    for args in (
        ["--email", "not-an-email", "--password", "long enough password"],
        ["--email", "a@b.example", "--password", "short"],
    ):
        result = runner.invoke(args=["create-admin", *args])
        assert result.exit_code != 0
        assert len(result.output.strip().splitlines()) == 1, result.output
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(User)) == 0


def test_create_admin_refuses_a_taken_email(runner, make_user):
    user = make_user("council_admin")
    result = runner.invoke(args=["create-admin", "--email", user.email, "--password", "x" * 12])
    assert result.exit_code == 1
    assert "already has an account" in result.output


def test_demo_loads_once_and_meets_the_spec_minimums(runner, app, jobs_inline):
    from portal.catalogue.models import LicencePool, Price, Product, Vendor
    from portal.metering.models import UsageEvent
    from portal.seats.models import SeatAssignment, Subscription

    first = runner.invoke(args=["demo"])
    assert first.exit_code == 0, first.output
    assert "admin@council.example" in first.output

    def count(model) -> int:
        return db.session.scalar(sa.select(sa.func.count()).select_from(model))

    with app.app_context():
        orgs = db.session.scalars(sa.select(Organisation)).all()
        users = count(User)
        assert len(orgs) >= 5
        assert len({o.currency for o in orgs}) >= 3
        assert {o.status for o in orgs} >= {"active", "pending", "suspended"}
        assert count(Vendor) >= 4 and count(Product) >= 6 and count(LicencePool) >= 6
        assert len(set(db.session.scalars(sa.select(Price.currency)))) >= 3
        assert count(Subscription) >= 5 and count(SeatAssignment) >= 5
        # Russian-speaking people (issue 14): their pages and mail are in Russian.
        russian = db.session.scalars(sa.select(User).where(User.locale == "ru")).all()
        assert len(russian) >= 3 and any(u.role == "org_admin" for u in russian)
        assert all(any("а" <= ch <= "я" for ch in u.name.lower()) for u in russian)
        first_event, last_event = db.session.execute(
            sa.select(sa.func.min(UsageEvent.occurred_at), sa.func.max(UsageEvent.occurred_at))
        ).one()
    assert first_event is not None
    # three months of usage: from the first of the month two months back until now
    assert str(last_event)[:7] != str(first_event)[:7]
    # the two past months invoiced and finalised; some paid by bank transfer, some open
    from portal.billing.models import Invoice, Payment

    with app.app_context():
        invoices = db.session.scalars(sa.select(Invoice)).all()
        assert len({i.period for i in invoices}) == 2
        assert {i.status for i in invoices} == {"open", "paid"}
        assert all(i.number and i.pdf for i in invoices)
        assert {p.method for p in db.session.scalars(sa.select(Payment))} == {"bank_transfer"}
    second = runner.invoke(args=["demo"])
    assert second.exit_code == 0
    assert "already loaded" in second.output
    with app.app_context():
        assert count(User) == users


def test_console_script_and_flask_app_give_the_same_commands(tmp_path):
    env = {"PORTAL_ENV": "test", "PORTAL_INSTANCE_PATH": str(tmp_path), "PATH": ""}
    portal = Path(sys.executable).parent / "portal"
    for argv in (
        [str(portal), "--help"],
        [sys.executable, "-m", "flask", "--app", "portal", "--help"],
    ):
        result = subprocess.run(argv, capture_output=True, text=True, check=False, env=env)
        assert result.returncode == 0, result.stderr
        for command in ("create-admin", "demo", "db"):
            assert command in result.stdout
