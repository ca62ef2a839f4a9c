"""subscriptions: the waiting ones by product and place in the waitlist

Revision ID: 0040
Revises: 0039
Create Date: 2026-12-04 12:30:00

``ix_subscriptions_waiting`` on ``subscriptions (product_id, waitlisted_at, id)`` for the
subscriptions still waiting for seats (``requested_quantity > quantity``), a partial index
on both databases. The waitlist is filled first come first served per product
(``portal.seats.waitlist``) and the council's demand board shows each product's oldest
waiting subscription: both read the waiting subscriptions only, which are few, where
before they read every subscription of the product (50,015 in all at the scale of
docs/PERFORMANCE.md) to find them.
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0040"
down_revision = "0039"
branch_labels = None
depends_on = None

WAITING = "requested_quantity > quantity"


def upgrade():
    op.create_index(
        "ix_subscriptions_waiting",
        "subscriptions",
        ["product_id", "waitlisted_at", "id"],
        postgresql_where=sa.text(WAITING),
        sqlite_where=sa.text(WAITING),
    )


def downgrade():
    op.drop_index("ix_subscriptions_waiting", table_name="subscriptions")
