"""reconciliation: runs that compare a vendor's users with the portal's seats, and drift

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-01 16:20:00

Issue 17 (SPEC 8.4), portal.provisioning.reconcile_models:

* ``provisioning_reconciliations``: one reading of a vendor's users over SCIM (state,
  whether drift was to be fixed, counts, the error of a failed read);
* ``provisioning_drift``: each person the vendor and the portal disagree about (active at
  the vendor without a seat, missing there, inactive there) and what was done about it.

Both are council-wide (a run covers every organisation's people; an extra person at the
vendor may be nobody in the portal): no row-level security; on PostgreSQL the application
role gets its grants (0011's default privileges would too; said once more).
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0025'
down_revision = '0024'
branch_labels = None
depends_on = None


APP_ROLE = "portal_app"
ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
TABLES = ("provisioning_reconciliations", "provisioning_drift")


def upgrade():
    op.create_table('provisioning_reconciliations',
    sa.Column('id', ID, nullable=False),
    sa.Column('vendor_id', ID, nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('fix', sa.Boolean(), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('requested_by', sa.String(length=254), nullable=False),
    sa.Column('vendor_users', sa.Integer(), nullable=False),
    sa.Column('seated_people', sa.Integer(), nullable=False),
    sa.Column('drift_count', sa.Integer(), nullable=False),
    sa.Column('fixed_count', sa.Integer(), nullable=False),
    sa.Column('error', sa.String(length=500), nullable=True),
    sa.CheckConstraint("state IN ('running', 'done', 'failed')", name=op.f('ck_provisioning_reconciliations_state_known')),
    sa.ForeignKeyConstraint(['vendor_id'], ['vendors.id'], name=op.f('fk_provisioning_reconciliations_vendor_id_vendors'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_provisioning_reconciliations'))
    )
    with op.batch_alter_table('provisioning_reconciliations', schema=None) as batch_op:
        batch_op.create_index('ix_provisioning_reconciliations_vendor_id_id', ['vendor_id', 'id'], unique=False)

    op.create_table('provisioning_drift',
    sa.Column('id', ID, nullable=False),
    sa.Column('run_id', ID, nullable=False),
    sa.Column('kind', sa.String(length=24), nullable=False),
    sa.Column('user_id', ID, nullable=True),
    sa.Column('user_name', sa.String(length=254), nullable=False),
    sa.Column('vendor_resource_id', sa.String(length=255), nullable=True),
    sa.Column('fix', sa.String(length=16), nullable=True),
    sa.Column('fix_error', sa.String(length=500), nullable=True),
    sa.CheckConstraint("kind IN ('active_without_seat', 'missing', 'inactive')", name=op.f('ck_provisioning_drift_kind_known')),
    sa.CheckConstraint("fix IS NULL OR fix IN ('deactivated', 'created', 'activated', 'in_flight', 'failed')", name=op.f('ck_provisioning_drift_fix_known')),
    sa.ForeignKeyConstraint(['run_id'], ['provisioning_reconciliations.id'], name=op.f('fk_provisioning_drift_run_id_provisioning_reconciliations'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_provisioning_drift_user_id_users'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_provisioning_drift'))
    )
    with op.batch_alter_table('provisioning_drift', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_provisioning_drift_run_id'), ['run_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_provisioning_drift_user_id'), ['user_id'], unique=False)

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
    op.drop_table('provisioning_drift')
    op.drop_table('provisioning_reconciliations')
