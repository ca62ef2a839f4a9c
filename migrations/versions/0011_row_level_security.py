"""row-level security on tenant-owned tables; the application's database role

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01 10:00:00

Owned by: issue 12, RLS (placeholder until filled in; an empty migration changes nothing).
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
