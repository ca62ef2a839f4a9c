"""product requests

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-01 16:20:00

Reserved for requests for products not in the catalogue, the demand board (issue 16).
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0026'
down_revision = '0025'
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
