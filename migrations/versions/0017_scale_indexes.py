"""scale indexes

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-01 13:00:00

Placeholder until filled in (indexes the pages at scale need (issue 13)); an empty migration changes nothing.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
