"""invoice parties

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-01 13:00:00

Placeholder until filled in (seller details in council settings, buyer address and tax id on organisations (issue 14)); an empty migration changes nothing.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
