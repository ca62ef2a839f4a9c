"""compliance documents

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-01 16:20:00

Compliance documents of vendors (issue 15; portal.suppliers.compliance_models): the PDFs
of certificates and agreements the council keeps per vendor, with their issue and expiry
dates, stored in the table itself. Council-wide (no organisation): on PostgreSQL the
application role gets its grants, as 0012 and 0016's tables do, and no row-level policy.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0020'
down_revision = '0019'
branch_labels = None
depends_on = None


APP_ROLE = "portal_app"
TABLE = "compliance_documents"


def upgrade():
    op.create_table('compliance_documents',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('vendor_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('title', sa.String(length=200), nullable=False),
    sa.Column('issued_on', sa.Date(), nullable=False),
    sa.Column('expires_on', sa.Date(), nullable=True),
    sa.Column('required', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column('filename', sa.String(length=200), nullable=False),
    sa.Column('size_bytes', sa.Integer(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('content', sa.LargeBinary(), nullable=False),
    sa.Column('uploaded_by_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('review_for_expiry', sa.Date(), nullable=True),
    sa.Column('reviewed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("kind IN ('iso27001', 'soc2', 'dpa', 'other')", name=op.f('ck_compliance_documents_kind_known')),
    sa.CheckConstraint('expires_on IS NULL OR expires_on >= issued_on', name=op.f('ck_compliance_documents_expiry_after_issue')),
    sa.CheckConstraint('size_bytes > 0', name=op.f('ck_compliance_documents_size_positive')),
    sa.ForeignKeyConstraint(['uploaded_by_id'], ['users.id'], name=op.f('fk_compliance_documents_uploaded_by_id_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['vendor_id'], ['vendors.id'], name=op.f('fk_compliance_documents_vendor_id_vendors'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_compliance_documents'))
    )
    with op.batch_alter_table('compliance_documents', schema=None) as batch_op:
        batch_op.create_index('ix_compliance_documents_vendor_kind', ['vendor_id', 'kind'], unique=False)
        batch_op.create_index('ix_compliance_documents_expires_on', ['expires_on'], unique=False)

    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {TABLE} TO {APP_ROLE}")
    op.execute(f"GRANT USAGE, SELECT ON SEQUENCE {TABLE}_id_seq TO {APP_ROLE}")


def downgrade():
    with op.batch_alter_table('compliance_documents', schema=None) as batch_op:
        batch_op.drop_index('ix_compliance_documents_expires_on')
        batch_op.drop_index('ix_compliance_documents_vendor_kind')
    op.drop_table('compliance_documents')
