"""user locale

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-01 13:00:00

``users.locale``: the language a person chose for the portal's pages and mail (``en`` or
``ru``; none: the browser's ``Accept-Language``). Issue 14, SPEC section 8.6.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('users') as batch:
        batch.add_column(sa.Column('locale', sa.String(length=8), nullable=True))


def downgrade():
    with op.batch_alter_table('users') as batch:
        batch.drop_column('locale')
