"""usage events' references checked once per statement instead of once per row

Revision ID: 0035
Revises: 0034
Create Date: 2026-12-02 19:00:00

PostgreSQL only (SQLite keeps its foreign keys). A foreign key is checked by a trigger per
row: each of a 10,000-event batch's rows locked its organisation, product and meter again
(``SELECT … FOR KEY SHARE``), and its key row's organisation once more. At scale those four
checks took 140 of the 255 ms of a batch's insert (docs/PERFORMANCE.md, "Usage
references checked per statement"). A batch names one to a few organisations, products and
meters, so this migration replaces the four foreign keys

    usage_events.organisation_id → organisations, usage_events.product_id → products,
    usage_events.meter_id → meters, usage_event_keys.organisation_id → organisations

with the same guarantee kept per statement:

* **insert**: an ``AFTER INSERT … FOR EACH STATEMENT`` trigger reads the statement's new
  rows (a transition table), locks each distinct organisation, product and meter they name
  ``FOR KEY SHARE`` (as the foreign key's check does, so none can be deleted until the
  batch commits) and fails with SQLSTATE 23503 (``foreign_key_violation``) when one is
  missing. A row deleted by a transaction that committed first is not locked (it is gone),
  so it counts as missing;
* **delete**: ``AFTER DELETE … FOR EACH STATEMENT`` triggers on organisations, products and
  meters fail with 23503 when an event (or a key) names a deleted row, as ``ON DELETE
  RESTRICT`` did. A delete waits for the batches that locked the row; the check then reads
  their committed events (READ COMMITTED, the portal's isolation: each statement of the
  function sees what committed before it);
* **update**: the three tables' ids are never changed (a row trigger refuses it).

The checks run with ``portal.scope = 'council'`` (a function setting, restored when they
return), so, like a foreign key's check, they see every row whatever the transaction's
row-level security scope. ``tests/metering/test_reference_checks.py`` proves each rule and
the race with a delete on two connections; ``tests/test_schema.py`` that exactly these four
of the models' foreign keys are missing on PostgreSQL
(``portal.metering.models.STATEMENT_CHECKED_REFERENCES``).
"""

from alembic import op

# revision identifiers, used by Alembic.
revision = "0035"
down_revision = "0034"
branch_labels = None
depends_on = None

#: (table, column, referenced table): the foreign keys this migration replaces.
REFERENCES = (
    ("usage_events", "organisation_id", "organisations"),
    ("usage_events", "product_id", "products"),
    ("usage_events", "meter_id", "meters"),
    ("usage_event_keys", "organisation_id", "organisations"),
)
#: Which referencing tables name each referenced table, and by which column.
REFERENCED = {
    "organisations": (("usage_events", "organisation_id"), ("usage_event_keys", "organisation_id")),
    "products": (("usage_events", "product_id"),),
    "meters": (("usage_events", "meter_id"),),
}

# Insert side, one function per referencing table (a function's cached plans are for one
# transition table's shape). The distinct ids are read in one pass; each lock statement's
# row count is the number of ids that exist.
_LOCK = """
    PERFORM 1 FROM public.{table} WHERE id = ANY({ids}) FOR KEY SHARE;
    GET DIAGNOSTICS found = ROW_COUNT;
    IF found < cardinality({ids}) THEN
        RAISE EXCEPTION 'insert into %: a {column} names no row of {table}', TG_TABLE_NAME
            USING ERRCODE = 'foreign_key_violation',
                  DETAIL = format('{column} in %s; {table} has %s of them', {ids}, found);
    END IF;"""

EVENTS_FUNCTION = f"""
CREATE FUNCTION public.usage_events_references_exist() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp SET portal.scope = 'council' AS $fn$
DECLARE
    org_ids bigint[];
    product_ids bigint[];
    meter_ids bigint[];
    found bigint;
BEGIN
    SELECT array_agg(DISTINCT organisation_id), array_agg(DISTINCT product_id),
           array_agg(DISTINCT meter_id)
      INTO org_ids, product_ids, meter_ids FROM new_rows;
    IF org_ids IS NULL THEN
        RETURN NULL;
    END IF;
    {_LOCK.format(table="organisations", ids="org_ids", column="organisation_id")}
    {_LOCK.format(table="products", ids="product_ids", column="product_id")}
    {_LOCK.format(table="meters", ids="meter_ids", column="meter_id")}
    RETURN NULL;
END
$fn$
"""

KEYS_FUNCTION = f"""
CREATE FUNCTION public.usage_event_keys_references_exist() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp SET portal.scope = 'council' AS $fn$
DECLARE
    org_ids bigint[];
    found bigint;
BEGIN
    SELECT array_agg(DISTINCT organisation_id) INTO org_ids FROM new_rows;
    IF org_ids IS NULL THEN
        RETURN NULL;
    END IF;
    {_LOCK.format(table="organisations", ids="org_ids", column="organisation_id")}
    RETURN NULL;
END
$fn$
"""


def _deleted_function(table):
    checks = "\n".join(
        f"""
    IF EXISTS (SELECT 1 FROM public.{referencing} r
               WHERE r.{column} IN (SELECT id FROM old_rows)) THEN
        RAISE EXCEPTION 'delete from {table}: {referencing} still names a deleted row'
            USING ERRCODE = 'foreign_key_violation';
    END IF;"""
        for referencing, column in REFERENCED[table]
    )
    return f"""
CREATE FUNCTION public.{table}_usage_references_kept() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp SET portal.scope = 'council' AS $fn$
BEGIN
    {checks}
    RETURN NULL;
END
$fn$
"""


ID_FIXED_FUNCTION = """
CREATE FUNCTION public.usage_referenced_id_fixed() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
    IF NEW.id IS DISTINCT FROM OLD.id THEN
        RAISE EXCEPTION 'update of %: an id never changes (usage events name it)', TG_TABLE_NAME
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NEW;
END
$fn$
"""


def upgrade():
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, column, referenced in REFERENCES:
        op.execute(f"ALTER TABLE {table} DROP CONSTRAINT fk_{table}_{column}_{referenced}")
    op.execute(EVENTS_FUNCTION)
    op.execute(KEYS_FUNCTION)
    for table in ("usage_events", "usage_event_keys"):
        op.execute(
            f"CREATE TRIGGER {table}_references_exist AFTER INSERT ON {table} "
            "REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT "
            f"EXECUTE FUNCTION public.{table}_references_exist()"
        )
    op.execute(ID_FIXED_FUNCTION)
    for table in REFERENCED:
        op.execute(_deleted_function(table))
        op.execute(
            f"CREATE TRIGGER {table}_usage_references_kept AFTER DELETE ON {table} "
            "REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT "
            f"EXECUTE FUNCTION public.{table}_usage_references_kept()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_id_fixed BEFORE UPDATE OF id ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION public.usage_referenced_id_fixed()"
        )


def downgrade():
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in REFERENCED:
        op.execute(f"DROP TRIGGER {table}_id_fixed ON {table}")
        op.execute(f"DROP TRIGGER {table}_usage_references_kept ON {table}")
        op.execute(f"DROP FUNCTION public.{table}_usage_references_kept()")
    op.execute("DROP FUNCTION public.usage_referenced_id_fixed()")
    for table in ("usage_events", "usage_event_keys"):
        op.execute(f"DROP TRIGGER {table}_references_exist ON {table}")
        op.execute(f"DROP FUNCTION public.{table}_references_exist()")
    for table, column, referenced in REFERENCES:
        op.execute(
            f"ALTER TABLE {table} ADD CONSTRAINT fk_{table}_{column}_{referenced} "
            f"FOREIGN KEY ({column}) REFERENCES {referenced} (id) ON DELETE RESTRICT"
        )
