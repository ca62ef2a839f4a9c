"""a role for council-wide transactions, whose policy the planner can see through

Revision ID: 0032
Revises: 0031
Create Date: 2026-12-02 02:30:00

PostgreSQL only. Under the one policy of migration 0011 (``tenant_isolation``) a
council-wide query carries ``(SELECT current_setting('portal.scope')) = 'council' OR
organisation_id = (SELECT …)``. The planner cannot know the setting when it plans, and
estimates the filter at 0.5 % of the rows: the finance month sorted every invoice of the
month instead of walking an index (docs/PERFORMANCE.md, "Row-level security's estimate").

This migration

* creates the group role ``portal_council`` (NOLOGIN, NOSUPERUSER, NOBYPASSRLS), a
  member of ``portal_app``, so it has exactly the application's privileges (the audit log
  stays insert-only), those later migrations grant included;
* creates ``portal_council_members`` (NOLOGIN, **NOINHERIT**), a member of
  ``portal_council``. A login role granted it may ``SET ROLE portal_council`` but does not
  hold ``portal_council``'s privileges or policies itself (a NOINHERIT role passes none
  on). ``portal.db`` switches to ``portal_council`` for council-wide transactions only,
  on connections whose login role can (README, "PostgreSQL roles"); without the grant
  the portal works as before;
* adds to every table under row-level security a second permissive policy,
  ``council_scope``, for ``portal_council`` only: ``USING (true) WITH CHECK (true)``.
  Permissive policies are OR-ed, ``true OR …`` folds to ``true``, and a council-wide
  query is planned with no filter at all.

``tests/test_row_level_security.py`` fails when a table under row-level security lacks
either policy, and when the application's login role holds ``portal_council``'s
privileges without switching to it.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0032'
down_revision = '0031'
branch_labels = None
depends_on = None


APP_ROLE = "portal_app"
COUNCIL_ROLE = "portal_council"
MEMBERS_ROLE = "portal_council_members"
POLICY = "council_scope"

# Roles belong to the cluster, not the database: several databases (and test runs in
# parallel) may race to create them or grant the memberships.
_ROLES = f"""
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{COUNCIL_ROLE}') THEN
        CREATE ROLE {COUNCIL_ROLE} NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{MEMBERS_ROLE}') THEN
        CREATE ROLE {MEMBERS_ROLE} NOLOGIN NOINHERIT NOSUPERUSER NOBYPASSRLS NOCREATEDB
            NOCREATEROLE;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END
$$
"""
_MEMBERSHIPS = f"""
DO $$
BEGIN
    IF NOT pg_has_role('{COUNCIL_ROLE}', '{APP_ROLE}', 'MEMBER') THEN
        GRANT {APP_ROLE} TO {COUNCIL_ROLE};
    END IF;
    IF NOT pg_has_role('{MEMBERS_ROLE}', '{COUNCIL_ROLE}', 'MEMBER') THEN
        GRANT {COUNCIL_ROLE} TO {MEMBERS_ROLE};
    END IF;
EXCEPTION WHEN unique_violation OR internal_error THEN
    NULL;
END
$$
"""


def _secured_tables(bind):
    return list(
        bind.execute(
            sa.text(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = 'public' AND c.relrowsecurity ORDER BY c.relname"
            )
        ).scalars()
    )


def upgrade():
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    op.execute(_ROLES)
    op.execute(_MEMBERSHIPS)
    for table in _secured_tables(bind):
        op.execute(f"DROP POLICY IF EXISTS {POLICY} ON {table}")
        op.execute(
            f"CREATE POLICY {POLICY} ON {table} TO {COUNCIL_ROLE} USING (true) WITH CHECK (true)"
        )


def downgrade():
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    for table in _secured_tables(bind):
        op.execute(f"DROP POLICY IF EXISTS {POLICY} ON {table}")
    # The roles belong to the cluster, which other databases may share: they stay.
