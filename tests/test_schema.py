"""The schema: tenant scope is structural, and the migrations match the models."""

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from portal.db import db
from portal.metering.models import STATEMENT_CHECKED_REFERENCES
from portal.models import COUNCIL, MIXED, TABLE_SCOPES, TENANT


def test_every_table_declares_its_tenant_scope(app):
    tables = set(db.metadata.tables)
    assert tables == set(TABLE_SCOPES), (
        f"classify these tables in portal.models.TABLE_SCOPES: {tables ^ set(TABLE_SCOPES)}"
    )


def test_tenant_owned_tables_have_a_required_organisation_id(app):
    for name, scope in TABLE_SCOPES.items():
        table = db.metadata.tables[name]
        column = table.columns.get("organisation_id")
        if scope == COUNCIL:
            continue
        assert column is not None, f"{name} is {scope} but has no organisation_id"
        targets = {fk.column.table.name for fk in column.foreign_keys}
        assert targets == {"organisations"}, f"{name}.organisation_id must reference organisations"
        if scope == TENANT:
            assert not column.nullable, f"{name}.organisation_id must be NOT NULL"
        else:
            assert scope == MIXED


def _statement_checked(change: object) -> bool:
    """A foreign key that PostgreSQL keeps by statement triggers (migration 0035)."""
    if not (isinstance(change, tuple) and change[0] == "add_fk"):
        return False
    constraint = change[1]
    return all(
        (constraint.parent.name, column) in STATEMENT_CHECKED_REFERENCES
        for column in constraint.column_keys
    )


def test_migrations_create_exactly_the_models_schema(app):
    with app.app_context(), db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, db.metadata)
        postgres = conn.dialect.name == "postgresql"
    if postgres:
        # Exactly the references kept per statement are not constraints there (and
        # tests/metering/test_reference_checks.py proves the triggers keep them).
        replaced = [change for change in diff if _statement_checked(change)]
        assert len(replaced) == len(STATEMENT_CHECKED_REFERENCES), replaced
        diff = [change for change in diff if not _statement_checked(change)]
    assert diff == [], f"models and migrations differ; add a migration: {diff}"


def test_timestamps_come_back_timezone_aware(app, make_org):
    from portal.tenancy.models import Organisation

    org = make_org()
    with app.app_context():
        row = db.session.get(Organisation, org.id)
        assert row.created_at.tzinfo is not None
        assert row.created_at.utcoffset().total_seconds() == 0


def test_naive_datetimes_are_refused(app, make_org):
    import datetime as dt

    import pytest

    from portal.tenancy.models import Organisation

    org = make_org()
    with app.app_context():
        row = db.session.get(Organisation, org.id)
        row.created_at = dt.datetime(2026, 1, 1)  # noqa: DTZ001  (naive on purpose)
        with pytest.raises(sa.exc.StatementError):
            db.session.flush()
        db.session.rollback()
