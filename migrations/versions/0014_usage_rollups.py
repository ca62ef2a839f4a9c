"""usage rollups: usage_daily and usage_daily_people, kept at ingest

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-01 10:30:00

Two tables of one organisation's rows each, written by ingestion in the transaction
that stores the events, from the events actually stored (``portal.metering.ingest``):

* ``usage_daily``: per organisation, product, meter and UTC day, the sum and the
  largest of the quantities and the number of events (``sum``, ``max``, ``count``
  meters);
* ``usage_daily_people``: per organisation, product, person (``user_email``), meter
  and UTC day, the events and the last time (people with usage, ``unique_count``
  meters counting people, idle seats).

The existing events are rolled up here (backfill). On PostgreSQL both tables get
the row-level security of migration 0011 (enabled, forced, the same policy) and the
application role's grants.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None

APP_ROLE = "portal_app"
POLICY = "tenant_isolation"
TABLES = ("usage_daily", "usage_daily_people")

ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def _allows(column):
    # As migration 0011: the settings are read once per statement.
    return (
        "(SELECT current_setting('portal.scope', true)) = 'council' OR "
        f"{column} = (SELECT nullif(current_setting('portal.organisation_id', true), '')::bigint)"
    )


def backfill_statements(postgres):
    """The events stored so far, rolled up (``tests/metering/test_rollups.py`` runs these too
    and compares them with what ingestion keeps)."""
    # The UTC day of an event (SQLite stores naive UTC text).
    day = "(occurred_at AT TIME ZONE 'UTC')::date" if postgres else "date(occurred_at)"
    return (
        "INSERT INTO usage_daily (organisation_id, product_id, meter_id, day, quantity_micros, "
        "max_micros, events) "
        f"SELECT organisation_id, product_id, meter_id, {day}, sum(quantity_micros), "
        "max(quantity_micros), count(*) FROM usage_events "
        f"GROUP BY organisation_id, product_id, meter_id, {day}",
        "INSERT INTO usage_daily_people (organisation_id, product_id, user_email, meter_id, day, "
        "last_occurred_at, events) "
        f"SELECT organisation_id, product_id, user_email, meter_id, {day}, max(occurred_at), "
        "count(*) FROM usage_events WHERE user_email IS NOT NULL "
        f"GROUP BY organisation_id, product_id, user_email, meter_id, {day}",
    )


def upgrade():
    op.create_table('usage_daily',
    sa.Column('organisation_id', ID, nullable=False),
    sa.Column('product_id', ID, nullable=False),
    sa.Column('meter_id', ID, nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('quantity_micros', sa.BigInteger().with_variant(sa.Numeric(38, 0), 'postgresql'), nullable=False),
    sa.Column('max_micros', sa.BigInteger(), nullable=False),
    sa.Column('events', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['meter_id'], ['meters.id'], name=op.f('fk_usage_daily_meter_id_meters'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['organisation_id'], ['organisations.id'], name=op.f('fk_usage_daily_organisation_id_organisations'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['product_id'], ['products.id'], name=op.f('fk_usage_daily_product_id_products'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('organisation_id', 'product_id', 'meter_id', 'day', name=op.f('pk_usage_daily'))
    )
    op.create_table('usage_daily_people',
    sa.Column('organisation_id', ID, nullable=False),
    sa.Column('product_id', ID, nullable=False),
    sa.Column('user_email', sa.String(length=254), nullable=False),
    sa.Column('meter_id', ID, nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('last_occurred_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('events', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['meter_id'], ['meters.id'], name=op.f('fk_usage_daily_people_meter_id_meters'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['organisation_id'], ['organisations.id'], name=op.f('fk_usage_daily_people_organisation_id_organisations'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['product_id'], ['products.id'], name=op.f('fk_usage_daily_people_product_id_products'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('organisation_id', 'product_id', 'user_email', 'meter_id', 'day', name=op.f('pk_usage_daily_people'))
    )
    with op.batch_alter_table('usage_daily_people', schema=None) as batch_op:
        batch_op.create_index('ix_usage_daily_people_product_day', ['product_id', 'day'], unique=False)

    bind = op.get_bind()
    postgres = bind.dialect.name == "postgresql"
    for statement in backfill_statements(postgres):
        op.execute(statement)

    if not postgres:
        return
    role = bind.execute(sa.text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": APP_ROLE}).first()
    for table in TABLES:
        if role is not None:  # default privileges (0011) grant it too; said here once more
            op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {APP_ROLE}")
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY {POLICY} ON {table} USING ({_allows('organisation_id')}) "
            f"WITH CHECK ({_allows('organisation_id')})"
        )


def downgrade():
    with op.batch_alter_table('usage_daily_people', schema=None) as batch_op:
        batch_op.drop_index('ix_usage_daily_people_product_day')
    # Dropping a table drops its policy and grants.
    op.drop_table('usage_daily_people')
    op.drop_table('usage_daily')
