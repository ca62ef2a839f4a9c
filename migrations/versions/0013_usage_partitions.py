"""usage partitions: usage_events partitioned by month on PostgreSQL; usage_event_keys

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01 10:30:00

PostgreSQL (issue 13):

* ``usage_events`` becomes a table ``PARTITION BY RANGE (occurred_at)``: one partition a
  UTC month (``usage_partitions.usage_events_YYYY_MM``, in a schema of their own so that
  the application's schema lists one table) and a DEFAULT partition
  (``usage_partitions.usage_events_default``) for any month without one, so an event is
  never refused for want of a partition. The existing rows are moved: a new partitioned
  table is created, filled from the old one, and takes its name; its check, foreign keys,
  index, row-level security (migration 0011: enabled, forced, ``tenant_isolation``) and
  the application role's grants are made again. Partitions are made for every month the
  stored events span and for the database's current month and the three after it.
* A unique index of a partitioned table must contain the partition key, so the rule
  "one event per (organisation, idempotency key)" (invariant 3) can no longer be the
  events' primary key: it is the primary key of ``usage_event_keys`` (organisation,
  key), which ingestion inserts into with ``ON CONFLICT DO NOTHING`` in the same
  statement that inserts the events whose keys were new (``portal.metering.ingest``).
  It is filled here from the stored events.
* ``usage_partition_ensure(month date)``: makes the partition of a month if it is
  missing, moving that month's rows out of the default partition, and says whether it
  made one. ``SECURITY DEFINER`` (only the tables' owner may add partitions) and granted
  to ``portal_app`` alone, so the scheduled job ``metering.usage_partitions`` and
  ``portal usage partitions`` create months ahead while connected as the application.
  ``usage_partition_default_months()`` (the same) names the months that have events in
  the default partition, which the job then gives partitions of their own.

SQLite: ``usage_events`` is unchanged (its primary key stays the rule);
``usage_event_keys`` is created too (one schema for both databases) and stays empty.

Downgrade: one plain table again, with its primary key (organisation, key).
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None

APP_ROLE = "portal_app"
POLICY = "tenant_isolation"
SCHEMA = "usage_partitions"
DEFAULT_PARTITION = "usage_events_default"
ENSURE = "usage_partition_ensure"
DEFAULT_MONTHS = "usage_partition_default_months"
#: Months made ahead of the database's current month by the migration (the job keeps it so).
AHEAD = 3

COLUMNS = (
    "organisation_id, product_id, meter_id, idempotency_key, quantity_micros, occurred_at, "
    "received_at, user_email, properties, source_token_id"
)
FOREIGN_KEYS = (
    ("organisation_id", "organisations"),
    ("product_id", "products"),
    ("meter_id", "meters"),
)
INDEX = "ix_usage_events_org_product_meter_time"
INDEX_COLUMNS = "organisation_id, product_id, meter_id, occurred_at"

ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def _allows(column):
    # As migration 0011: the settings are read once per statement.
    return (
        "(SELECT current_setting('portal.scope', true)) = 'council' OR "
        f"{column} = (SELECT nullif(current_setting('portal.organisation_id', true), '')::bigint)"
    )


# Makes the partition of ``month`` (any day of it) unless it exists; true when it made one.
# One caller at a time (an advisory lock); rows of that month already in the default
# partition (sent before the partition existed) are moved into the new one under an
# exclusive lock of the default partition, then the table is attached (which checks the
# bounds, clones the foreign keys and builds the index). Everything is schema-qualified:
# the function runs as its owner with an empty search path.
ENSURE_FUNCTION = f"""
CREATE FUNCTION public.{ENSURE}(month date) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    first_day date := date_trunc('month', month)::date;
    lower_bound timestamptz := first_day::timestamp AT TIME ZONE 'UTC';
    upper_bound timestamptz := (first_day + interval '1 month')::timestamp AT TIME ZONE 'UTC';
    part text := 'usage_events_' || to_char(first_day, 'YYYY_MM');
BEGIN
    IF month IS NULL THEN
        RAISE EXCEPTION 'usage_partition_ensure: no month given';
    END IF;
    IF to_regclass(format('{SCHEMA}.%I', part)) IS NOT NULL THEN
        RETURN false;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('portal.{ENSURE}'));
    IF to_regclass(format('{SCHEMA}.%I', part)) IS NOT NULL THEN
        RETURN false;
    END IF;
    LOCK TABLE {SCHEMA}.{DEFAULT_PARTITION} IN ACCESS EXCLUSIVE MODE;
    EXECUTE format(
        'CREATE TABLE {SCHEMA}.%I (LIKE public.usage_events INCLUDING DEFAULTS INCLUDING CONSTRAINTS)',
        part);
    EXECUTE format(
        'WITH moved AS (DELETE FROM {SCHEMA}.{DEFAULT_PARTITION} '
        'WHERE occurred_at >= $1 AND occurred_at < $2 RETURNING *) '
        'INSERT INTO {SCHEMA}.%I SELECT * FROM moved', part)
        USING lower_bound, upper_bound;
    EXECUTE format(
        'ALTER TABLE public.usage_events ATTACH PARTITION {SCHEMA}.%I FOR VALUES FROM (%L) TO (%L)',
        part,
        to_char(first_day, 'YYYY-MM-DD') || ' 00:00:00+00',
        to_char(first_day + interval '1 month', 'YYYY-MM-DD') || ' 00:00:00+00');
    RETURN true;
END
$fn$
"""


# The months (first days) of the events in the default partition, which the application
# role may not read directly; the default partition is small (the job keeps it so).
DEFAULT_MONTHS_FUNCTION = f"""
CREATE FUNCTION public.{DEFAULT_MONTHS}() RETURNS SETOF date
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
    SELECT DISTINCT (date_trunc('month', occurred_at AT TIME ZONE 'UTC'))::date
    FROM {SCHEMA}.{DEFAULT_PARTITION} ORDER BY 1
$fn$
"""


def _app_role_exists(bind):
    return bind.execute(
        sa.text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": APP_ROLE}
    ).first() is not None


def _secure(table, role):
    """Row-level security of migration 0011 and the application role's grants."""
    if role:
        op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {APP_ROLE}")
    op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
    op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
    op.execute(
        f"CREATE POLICY {POLICY} ON {table} USING ({_allows('organisation_id')}) "
        f"WITH CHECK ({_allows('organisation_id')})"
    )


def upgrade():
    op.create_table('usage_event_keys',
    sa.Column('organisation_id', ID, nullable=False),
    sa.Column('idempotency_key', sa.String(length=255), nullable=False),
    sa.ForeignKeyConstraint(['organisation_id'], ['organisations.id'], name=op.f('fk_usage_event_keys_organisation_id_organisations'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('organisation_id', 'idempotency_key', name=op.f('pk_usage_event_keys'))
    )
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    role = _app_role_exists(bind)
    _secure("usage_event_keys", role)

    # The old table steps aside (its index-backed names would clash with the new table's).
    op.execute("ALTER TABLE usage_events RENAME TO usage_events_unpartitioned")
    op.execute(
        "ALTER TABLE usage_events_unpartitioned "
        "RENAME CONSTRAINT pk_usage_events TO pk_usage_events_unpartitioned"
    )
    op.execute(f"ALTER INDEX {INDEX} RENAME TO ix_usage_events_unpartitioned_time")

    op.execute(
        "CREATE TABLE usage_events (LIKE usage_events_unpartitioned "
        "INCLUDING DEFAULTS INCLUDING CONSTRAINTS) PARTITION BY RANGE (occurred_at)"
    )
    for column, target in FOREIGN_KEYS:
        op.execute(
            f"ALTER TABLE usage_events ADD CONSTRAINT fk_usage_events_{column}_{target} "
            f"FOREIGN KEY ({column}) REFERENCES {target} (id) ON DELETE RESTRICT"
        )
    op.execute(f"CREATE SCHEMA {SCHEMA}")
    op.execute(f"REVOKE ALL ON SCHEMA {SCHEMA} FROM PUBLIC")
    op.execute(f"CREATE TABLE {SCHEMA}.{DEFAULT_PARTITION} PARTITION OF usage_events DEFAULT")
    op.execute(ENSURE_FUNCTION)
    op.execute(DEFAULT_MONTHS_FUNCTION)
    for function in (f"{ENSURE}(date)", f"{DEFAULT_MONTHS}()"):
        op.execute(f"REVOKE ALL ON FUNCTION public.{function} FROM PUBLIC")
        if role:
            op.execute(f"GRANT EXECUTE ON FUNCTION public.{function} TO {APP_ROLE}")
    # Every month the stored events span, and the current month and AHEAD after it.
    op.execute(
        f"SELECT public.{ENSURE}(month) FROM ("
        "SELECT DISTINCT (date_trunc('month', occurred_at AT TIME ZONE 'UTC'))::date AS month "
        "FROM usage_events_unpartitioned "
        "UNION SELECT (date_trunc('month', now() AT TIME ZONE 'UTC') "
        f"+ make_interval(months => n))::date FROM generate_series(0, {AHEAD}) AS n"
        ") AS months ORDER BY month"
    )
    op.execute(
        "INSERT INTO usage_event_keys (organisation_id, idempotency_key) "
        "SELECT organisation_id, idempotency_key FROM usage_events_unpartitioned"
    )
    op.execute(
        f"INSERT INTO usage_events ({COLUMNS}) SELECT {COLUMNS} FROM usage_events_unpartitioned"
    )
    op.execute("DROP TABLE usage_events_unpartitioned")  # its policy and grants go with it
    # On the partitioned table: every partition gets it (and every partition attached later).
    op.execute(f"CREATE INDEX {INDEX} ON usage_events ({INDEX_COLUMNS})")
    _secure("usage_events", role)


def downgrade():
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        role = _app_role_exists(bind)
        op.execute(
            "CREATE TABLE usage_events_unpartitioned (LIKE usage_events "
            "INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
        )
        op.execute(
            f"INSERT INTO usage_events_unpartitioned ({COLUMNS}) "
            f"SELECT {COLUMNS} FROM usage_events"
        )
        op.execute("DROP TABLE usage_events")  # the partitions, policy and grants go with it
        op.execute(f"DROP FUNCTION public.{ENSURE}(date)")
        op.execute(f"DROP FUNCTION public.{DEFAULT_MONTHS}()")
        op.execute(f"DROP SCHEMA {SCHEMA}")
        op.execute("ALTER TABLE usage_events_unpartitioned RENAME TO usage_events")
        op.execute(
            "ALTER TABLE usage_events ADD CONSTRAINT pk_usage_events "
            "PRIMARY KEY (organisation_id, idempotency_key)"
        )
        for column, target in FOREIGN_KEYS:
            op.execute(
                f"ALTER TABLE usage_events ADD CONSTRAINT fk_usage_events_{column}_{target} "
                f"FOREIGN KEY ({column}) REFERENCES {target} (id) ON DELETE RESTRICT"
            )
        op.execute(f"CREATE INDEX {INDEX} ON usage_events ({INDEX_COLUMNS})")
        _secure("usage_events", role)
    op.drop_table('usage_event_keys')
