"""invoice_product_totals: a month's issued invoice lines summed per product and currency

Revision ID: 0034
Revises: 0033
Create Date: 2026-12-02 12:40:00

The council's economics (the exports page, its CSV) summed the lines of every issued
invoice of a month per product: 100,000 lines at scale, and a scan of every month's lines
(docs/PERFORMANCE.md, "Billed per product, kept at finalisation"). An issued invoice's
lines never change and it leaves the issued statuses only by being voided, so the sums
are kept when an invoice is finalised or voided (``portal.billing.lifecycle``) and read as
they are. Backfilled here from the issued invoices so far. Council-wide (no organisation):
no row-level security; the application role's grants on PostgreSQL.
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0034"
down_revision = "0033"
branch_labels = None
depends_on = None

APP_ROLE = "portal_app"
TABLE = "invoice_product_totals"
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

#: The sums of the invoices issued so far (``tests/billing/test_product_totals.py`` runs it
#: too and compares it with what finalising and voiding keep; ``benchmarks/scale.py`` after
#: its bulk load).
BACKFILL = (
    "INSERT INTO invoice_product_totals (period, product_id, currency, amount, lines) "
    "SELECT i.period, l.product_id, i.currency, sum(l.amount), count(*) "
    "FROM invoice_lines l JOIN invoices i ON i.id = l.invoice_id "
    "WHERE i.status IN ('open', 'paid', 'uncollectible') AND l.product_id IS NOT NULL "
    "GROUP BY i.period, l.product_id, i.currency"
)


def upgrade():
    op.create_table(
        "invoice_product_totals",
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("product_id", ID, nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("lines", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["product_id"],
            ["products.id"],
            name=op.f("fk_invoice_product_totals_product_id_products"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint(
            "period", "product_id", "currency", name=op.f("pk_invoice_product_totals")
        ),
    )
    op.execute(BACKFILL)
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    role = bind.execute(
        sa.text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": APP_ROLE}
    ).first()
    if role is not None:  # default privileges (0011) grant it too; said here once more
        op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {TABLE} TO {APP_ROLE}")


def downgrade():
    op.drop_table("invoice_product_totals")
