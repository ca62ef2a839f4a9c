"""product requests

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-01 16:20:00

Requests for products not in the catalogue (issue 16, SPEC 8.3;
portal.procurement.models.ProductRequest): a member or org admin asks for a product by
name, vendor and seats; the council answers, merges duplicates into a primary request,
links the product once it is in the catalogue and drafts a purchase order from it.
Tenant-owned (the requester's organisation): on PostgreSQL the row-level security policy
and the grants of migration 0011.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0026'
down_revision = '0025'
branch_labels = None
depends_on = None

APP_ROLE = "portal_app"
POLICY = "tenant_isolation"
TABLE = "product_requests"
ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def _allows(column):
    # As in 0011: the settings are read once per statement, not once per row.
    return (
        "(SELECT current_setting('portal.scope', true)) = 'council' OR "
        f"{column} = (SELECT nullif(current_setting('portal.organisation_id', true), '')::bigint)"
    )


def upgrade():
    op.create_table('product_requests',
    sa.Column('id', ID, nullable=False),
    sa.Column('requested_by_id', ID, nullable=True),
    sa.Column('product_name', sa.String(length=200), nullable=False),
    sa.Column('vendor_name', sa.String(length=200), nullable=False),
    sa.Column('vendor_id', ID, nullable=True),
    sa.Column('seats', sa.Integer(), nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('reply', sa.Text(), nullable=False),
    sa.Column('answered_by_id', ID, nullable=True),
    sa.Column('answered_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('merged_into_id', ID, nullable=True),
    sa.Column('product_id', ID, nullable=True),
    sa.Column('purchase_order_id', ID, nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('organisation_id', ID, nullable=False),
    sa.CheckConstraint("state IN ('open', 'planned', 'ordered', 'declined', 'merged')", name=op.f('ck_product_requests_state_known')),
    sa.CheckConstraint('seats > 0', name=op.f('ck_product_requests_seats_positive')),
    sa.CheckConstraint("(state = 'merged') = (merged_into_id IS NOT NULL)", name=op.f('ck_product_requests_merged_has_primary')),
    sa.CheckConstraint('merged_into_id IS NULL OR merged_into_id != id', name=op.f('ck_product_requests_not_merged_into_self')),
    sa.ForeignKeyConstraint(['answered_by_id'], ['users.id'], name=op.f('fk_product_requests_answered_by_id_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['merged_into_id'], ['product_requests.id'], name=op.f('fk_product_requests_merged_into_id_product_requests')),
    sa.ForeignKeyConstraint(['organisation_id'], ['organisations.id'], name=op.f('fk_product_requests_organisation_id_organisations'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['product_id'], ['products.id'], name=op.f('fk_product_requests_product_id_products'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['purchase_order_id'], ['purchase_orders.id'], name=op.f('fk_product_requests_purchase_order_id_purchase_orders'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['requested_by_id'], ['users.id'], name=op.f('fk_product_requests_requested_by_id_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['vendor_id'], ['vendors.id'], name=op.f('fk_product_requests_vendor_id_vendors'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_product_requests'))
    )
    with op.batch_alter_table('product_requests', schema=None) as batch_op:
        batch_op.create_index('ix_product_requests_state_created', ['state', 'created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_product_requests_merged_into_id'), ['merged_into_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_product_requests_organisation_id'), ['organisation_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_product_requests_product_id'), ['product_id'], unique=False)

    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {TABLE} TO {APP_ROLE}")
    op.execute(f"GRANT USAGE, SELECT ON SEQUENCE {TABLE}_id_seq TO {APP_ROLE}")
    op.execute(f"ALTER TABLE {TABLE} ENABLE ROW LEVEL SECURITY")
    op.execute(f"ALTER TABLE {TABLE} FORCE ROW LEVEL SECURITY")
    op.execute(
        f"CREATE POLICY {POLICY} ON {TABLE} USING ({_allows('organisation_id')}) "
        f"WITH CHECK ({_allows('organisation_id')})"
    )


def downgrade():
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute(f"DROP POLICY IF EXISTS {POLICY} ON {TABLE}")
    with op.batch_alter_table('product_requests', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_product_requests_product_id'))
        batch_op.drop_index(batch_op.f('ix_product_requests_organisation_id'))
        batch_op.drop_index(batch_op.f('ix_product_requests_merged_into_id'))
        batch_op.drop_index('ix_product_requests_state_created')
    op.drop_table('product_requests')
