"""scale indexes

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-01 13:00:00

Indexes the pages at scale need (issue 13; ``benchmarks/scale.py``, docs/PERFORMANCE.md
"After issue 13: pages at scale and the soak"):

* ``ix_seat_assignments_product_active`` on ``seat_assignments (product_id,
  organisation_id) WHERE released_at IS NULL``: the catalogue's seats held per product,
  summed council-wide for every role's catalogue page, read from the index alone instead
  of every seat row (1,000,000 at scale). ``organisation_id`` is in the index because
  the row-level security policy reads it.
* ``ix_organisations_name`` on ``organisations (name, id)``: the organisations list, by
  name a page at a time, without sorting every organisation.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None


def upgrade():
    op.create_index(
        "ix_seat_assignments_product_active",
        "seat_assignments",
        ["product_id", "organisation_id"],
        sqlite_where=sa.text("released_at IS NULL"),
        postgresql_where=sa.text("released_at IS NULL"),
    )
    op.create_index("ix_organisations_name", "organisations", ["name", "id"])


def downgrade():
    op.drop_index("ix_organisations_name", table_name="organisations")
    op.drop_index("ix_seat_assignments_product_active", table_name="seat_assignments")
