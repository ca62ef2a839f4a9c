"""user locale

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-01 13:00:00

Placeholder until filled in (users.locale, the reader's chosen language (issue 14)); an empty migration changes nothing.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
