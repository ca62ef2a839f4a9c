"""audit log hash chain

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 10:00:00

Owned by: issue 12, audit chain (placeholder until filled in; an empty migration changes nothing).
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
