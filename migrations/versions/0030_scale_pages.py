"""scale pages: partial indexes for the council's economics and the past-due invoices

Revision ID: 0030
Revises: 0029
Create Date: 2026-12-01 20:30:00

Issue 13, docs/PERFORMANCE.md "Issue 13: pages at scale, every page":

* ``ix_seat_assignments_product_recent`` on ``seat_assignments (product_id, assigned_at,
  organisation_id) WHERE released_at IS NULL`` and ``ix_seat_assignments_product_released``
  on ``seat_assignments (product_id, released_at, assigned_at, organisation_id) WHERE
  released_at IS NOT NULL``: the finance exports page's assigned seat-days of a month
  (``portal.billing.economics.seat_days``) read only the seats assigned or released since
  the month began, the rest coming from the subscriptions' ``assigned`` counters, instead
  of every seat row (1,000,000 at scale). ``organisation_id`` is in both for the
  row-level security policy (index-only reads).
* ``ix_invoices_open_due`` on ``invoices (due_on, id) WHERE status = 'open'``: the
  past-due invoices, oldest due first, a page at a time.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0030'
down_revision = '0029'
branch_labels = None
depends_on = None


def upgrade():
    op.create_index(
        "ix_seat_assignments_product_recent",
        "seat_assignments",
        ["product_id", "assigned_at", "organisation_id"],
        sqlite_where=sa.text("released_at IS NULL"),
        postgresql_where=sa.text("released_at IS NULL"),
    )
    op.create_index(
        "ix_seat_assignments_product_released",
        "seat_assignments",
        ["product_id", "released_at", "assigned_at", "organisation_id"],
        sqlite_where=sa.text("released_at IS NOT NULL"),
        postgresql_where=sa.text("released_at IS NOT NULL"),
    )
    op.create_index(
        "ix_invoices_open_due",
        "invoices",
        ["due_on", "id"],
        sqlite_where=sa.text("status = 'open'"),
        postgresql_where=sa.text("status = 'open'"),
    )


def downgrade():
    op.drop_index("ix_invoices_open_due", table_name="invoices")
    op.drop_index("ix_seat_assignments_product_released", table_name="seat_assignments")
    op.drop_index("ix_seat_assignments_product_recent", table_name="seat_assignments")
