"""purchase orders

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-01 16:20:00

Purchase orders to vendors, their lines, approvals and the vendors' invoices against
them (issue 16, SPEC 8.3; portal.procurement.models). Council-wide tables: no
organisation, no row-level security; on PostgreSQL the application role is granted
them (the default privileges of 0011 do too; said here once more).
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0022'
down_revision = '0021'
branch_labels = None
depends_on = None

APP_ROLE = "portal_app"
TABLES = (
    "purchase_orders",
    "purchase_order_lines",
    "purchase_order_approvals",
    "vendor_invoices",
    "vendor_invoice_lines",
)
ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade():
    op.create_table('purchase_orders',
    sa.Column('id', ID, nullable=False),
    sa.Column('vendor_id', ID, nullable=False),
    sa.Column('number', sa.String(length=32), nullable=True),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('starts_on', sa.Date(), nullable=False),
    sa.Column('ends_on', sa.Date(), nullable=False),
    sa.Column('total', sa.BigInteger(), nullable=False),
    sa.Column('notes', sa.Text(), nullable=False),
    sa.Column('source', sa.String(length=20), nullable=False),
    sa.Column('created_by_id', ID, nullable=True),
    sa.Column('approved_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('sent_to', sa.String(length=254), nullable=True),
    sa.Column('confirmed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('vendor_reference', sa.String(length=200), nullable=True),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('cancelled_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('cancel_reason', sa.String(length=500), nullable=True),
    sa.Column('pdf', sa.LargeBinary(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("state IN ('draft', 'approved', 'sent', 'confirmed', 'received', 'cancelled')", name=op.f('ck_purchase_orders_state_known')),
    sa.CheckConstraint('ends_on >= starts_on', name=op.f('ck_purchase_orders_term_ordered')),
    sa.CheckConstraint('total >= 0', name=op.f('ck_purchase_orders_total_not_negative')),
    sa.CheckConstraint("number IS NOT NULL OR state IN ('draft', 'cancelled')", name=op.f('ck_purchase_orders_numbered_once_approved')),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_purchase_orders_created_by_id_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['vendor_id'], ['vendors.id'], name=op.f('fk_purchase_orders_vendor_id_vendors'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_purchase_orders')),
    sa.UniqueConstraint('number', name=op.f('uq_purchase_orders_number'))
    )
    with op.batch_alter_table('purchase_orders', schema=None) as batch_op:
        batch_op.create_index('ix_purchase_orders_state_vendor', ['state', 'vendor_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_purchase_orders_vendor_id'), ['vendor_id'], unique=False)

    op.create_table('purchase_order_lines',
    sa.Column('id', ID, nullable=False),
    sa.Column('purchase_order_id', ID, nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('product_id', ID, nullable=False),
    sa.Column('seats', sa.Integer(), nullable=False),
    sa.Column('unit_cost', sa.BigInteger(), nullable=False),
    sa.Column('months', sa.Integer(), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('received_seats', sa.Integer(), nullable=False),
    sa.Column('pool_id', ID, nullable=True),
    sa.CheckConstraint('seats > 0', name=op.f('ck_purchase_order_lines_seats_positive')),
    sa.CheckConstraint('unit_cost >= 0', name=op.f('ck_purchase_order_lines_unit_cost_not_negative')),
    sa.CheckConstraint('amount >= 0', name=op.f('ck_purchase_order_lines_amount_not_negative')),
    sa.CheckConstraint('received_seats >= 0', name=op.f('ck_purchase_order_lines_received_not_negative')),
    sa.ForeignKeyConstraint(['pool_id'], ['licence_pools.id'], name=op.f('fk_purchase_order_lines_pool_id_licence_pools'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['product_id'], ['products.id'], name=op.f('fk_purchase_order_lines_product_id_products'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['purchase_order_id'], ['purchase_orders.id'], name=op.f('fk_purchase_order_lines_purchase_order_id_purchase_orders'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_purchase_order_lines')),
    sa.UniqueConstraint('purchase_order_id', 'position', name='uq_purchase_order_lines_position')
    )
    with op.batch_alter_table('purchase_order_lines', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_purchase_order_lines_product_id'), ['product_id'], unique=False)

    op.create_table('purchase_order_approvals',
    sa.Column('id', ID, nullable=False),
    sa.Column('purchase_order_id', ID, nullable=False),
    sa.Column('user_id', ID, nullable=False),
    sa.Column('role', sa.String(length=20), nullable=False),
    sa.Column('approved_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['purchase_order_id'], ['purchase_orders.id'], name=op.f('fk_purchase_order_approvals_purchase_order_id_purchase_orders'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_purchase_order_approvals_user_id_users'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_purchase_order_approvals')),
    sa.UniqueConstraint('purchase_order_id', 'user_id', name='uq_purchase_order_approvals_person')
    )
    with op.batch_alter_table('purchase_order_approvals', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_purchase_order_approvals_user_id'), ['user_id'], unique=False)

    op.create_table('vendor_invoices',
    sa.Column('id', ID, nullable=False),
    sa.Column('purchase_order_id', ID, nullable=False),
    sa.Column('vendor_number', sa.String(length=100), nullable=False),
    sa.Column('issued_on', sa.Date(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('recorded_by_id', ID, nullable=True),
    sa.Column('recorded_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('amount >= 0', name=op.f('ck_vendor_invoices_amount_not_negative')),
    sa.ForeignKeyConstraint(['purchase_order_id'], ['purchase_orders.id'], name=op.f('fk_vendor_invoices_purchase_order_id_purchase_orders'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['recorded_by_id'], ['users.id'], name=op.f('fk_vendor_invoices_recorded_by_id_users'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_vendor_invoices')),
    sa.UniqueConstraint('purchase_order_id', 'vendor_number', name='uq_vendor_invoices_vendor_number')
    )

    op.create_table('vendor_invoice_lines',
    sa.Column('id', ID, nullable=False),
    sa.Column('vendor_invoice_id', ID, nullable=False),
    sa.Column('purchase_order_line_id', ID, nullable=False),
    sa.Column('seats', sa.Integer(), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.CheckConstraint('seats >= 0', name=op.f('ck_vendor_invoice_lines_seats_not_negative')),
    sa.CheckConstraint('amount >= 0', name=op.f('ck_vendor_invoice_lines_amount_not_negative')),
    sa.ForeignKeyConstraint(['purchase_order_line_id'], ['purchase_order_lines.id'], name=op.f('fk_vendor_invoice_lines_purchase_order_line_id_purchase_order_lines'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['vendor_invoice_id'], ['vendor_invoices.id'], name=op.f('fk_vendor_invoice_lines_vendor_invoice_id_vendor_invoices'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_vendor_invoice_lines')),
    sa.UniqueConstraint('vendor_invoice_id', 'purchase_order_line_id', name='uq_vendor_invoice_lines_po_line')
    )
    with op.batch_alter_table('vendor_invoice_lines', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_vendor_invoice_lines_purchase_order_line_id'), ['purchase_order_line_id'], unique=False)

    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    role = bind.execute(sa.text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": APP_ROLE}).first()
    if role is None:
        return
    for table in TABLES:
        op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {APP_ROLE}")
        op.execute(f"GRANT USAGE, SELECT ON SEQUENCE {table}_id_seq TO {APP_ROLE}")


def downgrade():
    # Dropping a table drops its grants.
    with op.batch_alter_table('vendor_invoice_lines', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_vendor_invoice_lines_purchase_order_line_id'))
    op.drop_table('vendor_invoice_lines')
    op.drop_table('vendor_invoices')
    with op.batch_alter_table('purchase_order_approvals', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_purchase_order_approvals_user_id'))
    op.drop_table('purchase_order_approvals')
    with op.batch_alter_table('purchase_order_lines', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_purchase_order_lines_product_id'))
    op.drop_table('purchase_order_lines')
    with op.batch_alter_table('purchase_orders', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_purchase_orders_vendor_id'))
        batch_op.drop_index('ix_purchase_orders_state_vendor')
    op.drop_table('purchase_orders')
