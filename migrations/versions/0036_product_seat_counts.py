"""product_seat_counts: each product's seats reserved, waiting and assigned, kept as they change

Revision ID: 0036
Revises: 0035
Create Date: 2026-12-03 03:40:00

The catalogue summed the reserved, waiting and assigned seats of every live subscription
of its products on each read: 50,015 subscriptions at scale, a sequential scan and a hash
aggregate of 8–16 ms per page (docs/PERFORMANCE.md, "Seat figures kept as seats change").
Every change now adds a row of differences (``portal.seats.counts``), folded into one row
per product every minute; the catalogue sums a few rows per product. Backfilled here with
one row per product from the live subscriptions. Council-wide (no organisation): no
row-level security; the application role's grants on PostgreSQL.
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0036"
down_revision = "0035"
branch_labels = None
depends_on = None

APP_ROLE = "portal_app"
TABLE = "product_seat_counts"
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

#: One row per product of the live subscriptions' sums (``benchmarks/scale.py`` runs it
#: after its bulk load too).
BACKFILL = (
    "INSERT INTO product_seat_counts (product_id, reserved, waiting, assigned) "
    "SELECT product_id, sum(quantity), sum(requested_quantity - quantity), sum(assigned) "
    "FROM subscriptions WHERE status <> 'cancelled' GROUP BY product_id"
)


def upgrade():
    op.create_table(
        TABLE,
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("product_id", ID, nullable=False),
        sa.Column("reserved", sa.BigInteger(), nullable=False),
        sa.Column("waiting", sa.BigInteger(), nullable=False),
        sa.Column("assigned", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["product_id"],
            ["products.id"],
            name=op.f("fk_product_seat_counts_product_id_products"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_product_seat_counts")),
    )
    op.create_index(
        "ix_product_seat_counts_product",
        TABLE,
        ["product_id", "reserved", "waiting", "assigned"],
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
        op.execute(f"GRANT USAGE, SELECT ON SEQUENCE {TABLE}_id_seq TO {APP_ROLE}")


def downgrade():
    op.drop_index("ix_product_seat_counts_product", table_name=TABLE)
    op.drop_table(TABLE)
