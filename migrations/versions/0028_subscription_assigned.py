"""subscriptions.assigned: the count of a subscription's active seats

Revision ID: 0028
Revises: 0027
Create Date: 2026-12-01 19:55:00

Kept by every seat write in the statement that checks the capacity
(``UPDATE subscriptions SET assigned = assigned + 1 WHERE id = … AND assigned <
quantity``, :mod:`portal.seats.writes`), so a seat assignment needs no count of the
seat rows and the catalogue sums counters instead of counting a million seats.
Backfilled here from the active seats.
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0028"
down_revision = "0027"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("subscriptions") as batch:
        batch.add_column(sa.Column("assigned", sa.Integer(), nullable=False, server_default="0"))
    op.execute(
        "UPDATE subscriptions SET assigned = (SELECT count(*) FROM seat_assignments s "
        "WHERE s.subscription_id = subscriptions.id AND s.released_at IS NULL)"
    )


def downgrade():
    with op.batch_alter_table("subscriptions") as batch:
        batch.drop_column("assigned")
