"""usage report health

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-01 16:30:00

The vendor portal's usage-reporting health (issue 15, SPEC 8.1): ``usage_report_days``,
one row per vendor and UTC day counting its usage batches and their events accepted,
duplicate and rejected by code, kept by ingestion (``portal.metering.ingest``) with one
upsert per vendor-token batch. Council-wide (no organisation: counts only), so no
row-level security; on PostgreSQL the application role gets its grants.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0027'
down_revision = '0026'
branch_labels = None
depends_on = None

APP_ROLE = "portal_app"
ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade():
    op.create_table('usage_report_days',
    sa.Column('vendor_id', ID, nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('batches', sa.BigInteger(), nullable=False),
    sa.Column('accepted', sa.BigInteger(), nullable=False),
    sa.Column('duplicates', sa.BigInteger(), nullable=False),
    sa.Column('rejected_invalid', sa.BigInteger(), nullable=False),
    sa.Column('rejected_no_subscription', sa.BigInteger(), nullable=False),
    sa.Column('rejected_not_organisation_person', sa.BigInteger(), nullable=False),
    sa.Column('last_batch_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['vendor_id'], ['vendors.id'], name=op.f('fk_usage_report_days_vendor_id_vendors'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('vendor_id', 'day', name=op.f('pk_usage_report_days'))
    )
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    role = bind.execute(sa.text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": APP_ROLE}).first()
    if role is not None:  # default privileges (0011) grant it too; said here once more
        op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON usage_report_days TO {APP_ROLE}")


def downgrade():
    op.drop_table('usage_report_days')
