"""usage rollups

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-01 10:30:00

Placeholder until filled in (issue 13); an empty migration changes nothing.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
