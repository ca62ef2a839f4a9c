"""council pricing

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-01 16:20:00

Council volume pricing and renewal forecasts (issue 16, SPEC 8.3):

* ``prices.tier_basis`` (``organisation``, the default, or ``council``: a seat
  price's volume tier chosen by the council-wide average reserved seats of the
  product in the month);
* ``invoice_lines.council_quantity`` and ``invoice_lines.tier``: what chose the
  tier of a council-basis seat line (shown on the member's invoice);
* ``pool_reminders``: the renewal reminders sent to council staff, one per pool,
  kind and term end (council-wide; granted to the application role).
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0023'
down_revision = '0022'
branch_labels = None
depends_on = None


APP_ROLE = "portal_app"


def upgrade():
    with op.batch_alter_table('prices', schema=None) as batch_op:
        batch_op.add_column(sa.Column('tier_basis', sa.String(length=16), server_default='organisation', nullable=False))
        batch_op.create_check_constraint(
            op.f('ck_prices_tier_basis_known'), "tier_basis IN ('organisation', 'council')"
        )
        batch_op.create_check_constraint(
            op.f('ck_prices_council_basis_seat_volume'),
            "tier_basis = 'organisation' OR (model = 'seat' AND tier_mode = 'volume')",
        )
    with op.batch_alter_table('invoice_lines', schema=None) as batch_op:
        batch_op.add_column(sa.Column('council_quantity', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('tier', sa.Integer(), nullable=True))
    op.create_table('pool_reminders',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('pool_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('ends_on', sa.Date(), nullable=False),
    sa.Column('runs_out_on', sa.Date(), nullable=True),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("kind IN ('ends_in_60', 'ends_in_30', 'runs_out')", name=op.f('ck_pool_reminders_kind_known')),
    sa.ForeignKeyConstraint(['pool_id'], ['licence_pools.id'], name=op.f('fk_pool_reminders_pool_id_licence_pools'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_pool_reminders')),
    sa.UniqueConstraint('pool_id', 'kind', 'ends_on', name=op.f('uq_pool_reminders_pool_id'))
    )

    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON pool_reminders TO {APP_ROLE}")
    op.execute(f"GRANT USAGE, SELECT ON SEQUENCE pool_reminders_id_seq TO {APP_ROLE}")


def downgrade():
    op.drop_table('pool_reminders')
    with op.batch_alter_table('invoice_lines', schema=None) as batch_op:
        batch_op.drop_column('tier')
        batch_op.drop_column('council_quantity')
    with op.batch_alter_table('prices', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_prices_council_basis_seat_volume'), type_='check')
        batch_op.drop_constraint(op.f('ck_prices_tier_basis_known'), type_='check')
        batch_op.drop_column('tier_basis')
