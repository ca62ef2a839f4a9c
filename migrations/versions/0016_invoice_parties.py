"""invoice parties

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-01 13:00:00

The buyer on an invoice (issue 14): ``organisations.billing_address`` (the postal
address printed under the name; the tax id was there already) and
``organisations.invoice_language`` (``en`` or ``ru``: the language of the invoice PDF,
its mail and its lines; none: English). The seller's legal name, address, tax id and
bank account are council settings (rows of ``council_settings``: no column needed).
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('organisations') as batch:
        batch.add_column(sa.Column('billing_address', sa.Text(), nullable=True))
        batch.add_column(sa.Column('invoice_language', sa.String(length=8), nullable=True))


def downgrade():
    with op.batch_alter_table('organisations') as batch:
        batch.drop_column('invoice_language')
        batch.drop_column('billing_address')
