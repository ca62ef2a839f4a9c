"""usage_last_use: the last day each person used each product, kept at ingest

Revision ID: 0033
Revises: 0032
Create Date: 2026-12-02 12:00:00

Idle seats (issue 13, docs/PERFORMANCE.md "Idle seats from the last day of use") asked,
for each of an organisation's open seats, whether its holder used the product since a
moment: one probe of ``usage_daily_people`` per seat (5,100 probes for ``scale-big``,
35 ms of the page at scale). This table holds one row per organisation, product and person
with the last UTC day of use, so the question is one pass over the organisation's rows
(a hash join), and only a holder whose last day is the first day of the idle window is
asked for the exact time.

Ingestion writes a row only when a batch brings a later day than the one stored
(``portal.metering.ingest``): once a day per person and product at most. The rows are
backfilled here from ``usage_daily_people``. On PostgreSQL the table gets the row-level
security of migrations 0011 and 0032 (both policies) and the application role's grants.
"""

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "0033"
down_revision = "0032"
branch_labels = None
depends_on = None

APP_ROLE = "portal_app"
COUNCIL_ROLE = "portal_council"
TABLE = "usage_last_use"
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

#: The rows of the people who used a product so far (``tests/metering/test_rollups.py``
#: runs it too and compares it with what ingestion keeps; ``benchmarks/scale.py`` after
#: its bulk load).
BACKFILL = (
    "INSERT INTO usage_last_use (organisation_id, product_id, user_email, last_day) "
    "SELECT organisation_id, product_id, user_email, max(day) FROM usage_daily_people "
    "GROUP BY organisation_id, product_id, user_email"
)


def _allows(column):
    # As in 0011: the settings are read once per statement, not once per row.
    return (
        "(SELECT current_setting('portal.scope', true)) = 'council' OR "
        f"{column} = (SELECT nullif(current_setting('portal.organisation_id', true), '')::bigint)"
    )


def upgrade():
    op.create_table(
        "usage_last_use",
        sa.Column("organisation_id", ID, nullable=False),
        sa.Column("product_id", ID, nullable=False),
        sa.Column("user_email", sa.String(length=254), nullable=False),
        sa.Column("last_day", sa.Date(), nullable=False),
        sa.ForeignKeyConstraint(
            ["organisation_id"],
            ["organisations.id"],
            name=op.f("fk_usage_last_use_organisation_id_organisations"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["product_id"],
            ["products.id"],
            name=op.f("fk_usage_last_use_product_id_products"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint(
            "organisation_id", "product_id", "user_email", name=op.f("pk_usage_last_use")
        ),
    )
    op.execute(BACKFILL)

    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    # The planner's figures for the rows just backfilled, before the first idle-seat page.
    op.execute(f"ANALYZE {TABLE}")
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {TABLE} TO {APP_ROLE}")
    op.execute(f"ALTER TABLE {TABLE} ENABLE ROW LEVEL SECURITY")
    op.execute(f"ALTER TABLE {TABLE} FORCE ROW LEVEL SECURITY")
    op.execute(
        f"CREATE POLICY tenant_isolation ON {TABLE} USING ({_allows('organisation_id')}) "
        f"WITH CHECK ({_allows('organisation_id')})"
    )
    op.execute(
        f"CREATE POLICY council_scope ON {TABLE} TO {COUNCIL_ROLE} USING (true) WITH CHECK (true)"
    )


def downgrade():
    # Dropping a table drops its policies and grants.
    op.drop_table("usage_last_use")
