"""row-level security on tenant-owned tables; the application's database role

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01 10:00:00

PostgreSQL only (on SQLite this migration does nothing; the selectors' scope is the
isolation there). It

* creates the group role ``portal_app`` (NOLOGIN, NOSUPERUSER, NOBYPASSRLS) if the
  cluster has none, and grants it what the application needs: SELECT, INSERT,
  UPDATE, DELETE on the tables and USAGE on the sequences, except the audit log
  (``audit_events``: SELECT and INSERT only, so its rows are insert-only for the
  application) and ``alembic_version`` (SELECT only). Tables later migrations
  create get the same grants (default privileges of the role that migrates). The
  application connects as a login role that is a member of ``portal_app``
  (README: "PostgreSQL roles");
* enables and forces row-level security on every tenant-owned table, with one
  policy: a row is visible and writable when the transaction's ``portal.scope``
  is ``council``, or when its organisation is the transaction's
  ``portal.organisation_id`` (``portal.db.bind_scope`` sets both). No setting:
  no rows. Council staff rows (``organisation_id`` NULL: users, their sessions,
  council and vendor tokens, council-wide audit events) are seen in council scope only.

The tables are listed here, not read from the models: a migration must not import
application code. ``tests/test_row_level_security.py`` fails when a table with an
``organisation_id`` column is missing from the list.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


APP_ROLE = "portal_app"
POLICY = "tenant_isolation"

#: Tables whose rows belong to one organisation (``organisation_id``; NULL: the council's).
TENANT_TABLES = (
    # 0001 foundation
    "users",
    "user_sessions",
    "invitations",
    "audit_events",
    # 0002 catalogue, seats, API
    "subscriptions",
    "subscription_changes",
    "seat_assignments",
    "seat_requests",
    "api_tokens",
    "idempotent_requests",
    # 0003 metering
    "usage_events",
    "idle_seat_decisions",
    # 0004 SSO, SCIM
    "email_domains",
    "sso_connections",
    "scim_tokens",
    "scim_groups",
    "scim_group_members",
    "scim_group_products",
    # 0005 billing
    "invoices",
    "invoice_lines",
    "credit_notes",
    # 0006 payments
    "payment_accounts",
    "payment_collections",
    "payments",
    "stripe_events",
)

#: Tables of migrations written alongside this one (0007 second factors, 0008 passkeys,
#: 0010 jobs and mail); each is covered when it exists.
LATER_TENANT_TABLES = (
    "totp_factors",
    "recovery_codes",
    "passkeys",
    "mail_messages",
)

#: The organisations themselves, keyed on their own id.
ORGANISATIONS = "organisations"

#: Insert-only for the application: the audit log.
INSERT_ONLY = ("audit_events",)


def _allows(column):
    # The settings are read once per statement (an InitPlan), not once per row.
    return (
        "(SELECT current_setting('portal.scope', true)) = 'council' OR "
        f"{column} = (SELECT nullif(current_setting('portal.organisation_id', true), '')::bigint)"
    )


def _tables(bind):
    present = set(sa.inspect(bind).get_table_names())
    later = tuple(t for t in LATER_TENANT_TABLES if t in present)
    return [(t, "organisation_id") for t in TENANT_TABLES + later] + [(ORGANISATIONS, "id")]


def upgrade():
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    # Roles belong to the cluster, not the database: several databases (and test runs in
    # parallel) may race to create it.
    op.execute(
        f"""
        DO $$
        BEGIN
            IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN
                CREATE ROLE {APP_ROLE} NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
            END IF;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;
        END
        $$
        """
    )
    op.execute(f"GRANT USAGE ON SCHEMA public TO {APP_ROLE}")
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {APP_ROLE}")
    op.execute(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {APP_ROLE}")
    for table in INSERT_ONLY:
        op.execute(f"REVOKE UPDATE, DELETE, TRUNCATE ON {table} FROM {APP_ROLE}")
    op.execute(f"REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON alembic_version FROM {APP_ROLE}")
    op.execute(
        "ALTER DEFAULT PRIVILEGES IN SCHEMA public "
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {APP_ROLE}"
    )
    op.execute(
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO {APP_ROLE}"
    )
    for table, column in _tables(bind):
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY {POLICY} ON {table} USING ({_allows(column)}) "
            f"WITH CHECK ({_allows(column)})"
        )


def downgrade():
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    for table, _column in _tables(bind):
        op.execute(f"DROP POLICY IF EXISTS {POLICY} ON {table}")
        op.execute(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
    op.execute(
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE USAGE, SELECT ON SEQUENCES FROM {APP_ROLE}"
    )
    op.execute(
        "ALTER DEFAULT PRIVILEGES IN SCHEMA public "
        f"REVOKE SELECT, INSERT, UPDATE, DELETE ON TABLES FROM {APP_ROLE}"
    )
    op.execute(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {APP_ROLE}")
    op.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {APP_ROLE}")
    op.execute(f"REVOKE USAGE ON SCHEMA public FROM {APP_ROLE}")
    # The role stays: it belongs to the cluster, and other databases may use it.
