"""second factors: TOTP, recovery codes, organisation requirement

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 10:00:00

Owned by: issue 12, second factors (placeholder until filled in; an empty migration changes nothing).
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
