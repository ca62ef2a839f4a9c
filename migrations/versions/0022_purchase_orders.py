"""purchase orders

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-01 16:20:00

Reserved for purchase orders, their lines, approvals and vendor invoices (issue 16).
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0022'
down_revision = '0021'
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
