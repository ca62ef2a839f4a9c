"""provisioning: vendors' settings, the delivery outbox and its attempts

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-01 16:20:00

Issue 17 (SPEC 8.4), portal.provisioning.models:

* ``vendor_provisioning``: one row per vendor (council-wide): the SCIM base URL and sealed
  token, the webhook URL and sealed signing secrets (the previous one until its overlap
  ends), ``on_release``, group push, reconcile fixes, and delivery health;
* ``provisioning_deliveries``: the outbox, one row per change, vendor and channel, written
  in the change's transaction (tenant-owned: the person's or subscription's organisation);
* ``provisioning_delivery_attempts``: every try at a delivery (tenant-owned).

On PostgreSQL the two tenant-owned tables get 0011's row-level security policy, and all
three the application role's grants.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0024'
down_revision = '0023'
branch_labels = None
depends_on = None


APP_ROLE = "portal_app"
POLICY = "tenant_isolation"
ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
TABLES = ("vendor_provisioning", "provisioning_deliveries", "provisioning_delivery_attempts")
TENANT_TABLES = ("provisioning_deliveries", "provisioning_delivery_attempts")


def _allows(column):
    # As in 0011: the settings are read once per statement, not once per row.
    return (
        "(SELECT current_setting('portal.scope', true)) = 'council' OR "
        f"{column} = (SELECT nullif(current_setting('portal.organisation_id', true), '')::bigint)"
    )


def upgrade():
    op.create_table('vendor_provisioning',
    sa.Column('id', ID, nullable=False),
    sa.Column('vendor_id', ID, nullable=False),
    sa.Column('scim_base_url', sa.String(length=500), nullable=True),
    sa.Column('scim_token_sealed', sa.Text(), nullable=True),
    sa.Column('webhook_url', sa.String(length=500), nullable=True),
    sa.Column('webhook_secret_sealed', sa.Text(), nullable=True),
    sa.Column('webhook_secret_created_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('previous_secret_sealed', sa.Text(), nullable=True),
    sa.Column('previous_secret_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('on_release', sa.String(length=16), nullable=False),
    sa.Column('group_push', sa.Boolean(), nullable=False),
    sa.Column('reconcile_fix', sa.Boolean(), nullable=False),
    sa.Column('failing_since', sa.DateTime(timezone=True), nullable=True),
    sa.Column('failing_reported_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_success_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("on_release IN ('deactivate', 'delete')", name=op.f('ck_vendor_provisioning_on_release_known')),
    sa.ForeignKeyConstraint(['vendor_id'], ['vendors.id'], name=op.f('fk_vendor_provisioning_vendor_id_vendors'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_vendor_provisioning')),
    sa.UniqueConstraint('vendor_id', name=op.f('uq_vendor_provisioning_vendor_id'))
    )

    op.create_table('provisioning_deliveries',
    sa.Column('id', ID, nullable=False),
    sa.Column('vendor_id', ID, nullable=False),
    sa.Column('channel', sa.String(length=8), nullable=False),
    sa.Column('event', sa.String(length=40), nullable=False),
    sa.Column('sequence_key', sa.String(length=40), nullable=False),
    sa.Column('user_id', ID, nullable=True),
    sa.Column('product_id', ID, nullable=True),
    sa.Column('message_id', sa.String(length=40), nullable=False),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('lease_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('leased_by', sa.String(length=64), nullable=True),
    sa.Column('last_attempt_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_status', sa.Integer(), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('delivered_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('redelivered_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('organisation_id', ID, nullable=False),
    sa.CheckConstraint("state IN ('pending', 'delivered', 'failed')", name=op.f('ck_provisioning_deliveries_state_known')),
    sa.CheckConstraint("channel IN ('scim', 'webhook')", name=op.f('ck_provisioning_deliveries_channel_known')),
    sa.CheckConstraint('attempts >= 0', name=op.f('ck_provisioning_deliveries_attempts_not_negative')),
    sa.ForeignKeyConstraint(['vendor_id'], ['vendors.id'], name=op.f('fk_provisioning_deliveries_vendor_id_vendors'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_provisioning_deliveries_user_id_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['product_id'], ['products.id'], name=op.f('fk_provisioning_deliveries_product_id_products'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['organisation_id'], ['organisations.id'], name=op.f('fk_provisioning_deliveries_organisation_id_organisations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_provisioning_deliveries')),
    sa.UniqueConstraint('message_id', name=op.f('uq_provisioning_deliveries_message_id'))
    )
    with op.batch_alter_table('provisioning_deliveries', schema=None) as batch_op:
        # Pending deliveries only (portal.provisioning.delivery.due_heads).
        batch_op.create_index('ix_provisioning_deliveries_sequence', ['vendor_id', 'channel', 'sequence_key', 'id'], unique=False, sqlite_where=sa.text("state = 'pending'"), postgresql_where=sa.text("state = 'pending'"))
        batch_op.create_index('ix_provisioning_deliveries_due', ['state', 'next_attempt_at'], unique=False)
        batch_op.create_index('ix_provisioning_deliveries_vendor_id_id', ['vendor_id', 'id'], unique=False)
        batch_op.create_index(batch_op.f('ix_provisioning_deliveries_user_id'), ['user_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_provisioning_deliveries_organisation_id'), ['organisation_id'], unique=False)

    op.create_table('provisioning_delivery_attempts',
    sa.Column('id', ID, nullable=False),
    sa.Column('delivery_id', ID, nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('outcome', sa.String(length=16), nullable=False),
    sa.Column('status', sa.Integer(), nullable=True),
    sa.Column('request', sa.Text(), nullable=False),
    sa.Column('response', sa.Text(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('duration_ms', sa.Integer(), nullable=False),
    sa.Column('organisation_id', ID, nullable=False),
    sa.ForeignKeyConstraint(['delivery_id'], ['provisioning_deliveries.id'], name=op.f('fk_provisioning_delivery_attempts_delivery_id_provisioning_deliveries'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['organisation_id'], ['organisations.id'], name=op.f('fk_provisioning_delivery_attempts_organisation_id_organisations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_provisioning_delivery_attempts'))
    )
    with op.batch_alter_table('provisioning_delivery_attempts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_provisioning_delivery_attempts_delivery_id'), ['delivery_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_provisioning_delivery_attempts_organisation_id'), ['organisation_id'], unique=False)

    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    role = bind.execute(sa.text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": APP_ROLE}).first()
    if role is not None:
        for table in TABLES:
            op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {APP_ROLE}")
            op.execute(f"GRANT USAGE, SELECT ON SEQUENCE {table}_id_seq TO {APP_ROLE}")
    for table in TENANT_TABLES:
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY {POLICY} ON {table} USING ({_allows('organisation_id')}) "
            f"WITH CHECK ({_allows('organisation_id')})"
        )


def downgrade():
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        for table in TENANT_TABLES:
            op.execute(f"DROP POLICY IF EXISTS {POLICY} ON {table}")
    # Dropping a table drops its indexes and grants.
    op.drop_table('provisioning_delivery_attempts')
    op.drop_table('provisioning_deliveries')
    op.drop_table('vendor_provisioning')
