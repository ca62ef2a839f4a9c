"""jobs and recorded mail messages

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 10:00:00

Owned by: issue 13, jobs (placeholder until filled in; an empty migration changes nothing).
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
