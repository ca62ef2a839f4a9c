"""vendor admins

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-01 16:20:00

The ``vendor_admin`` role (SPEC 8.1): a supplier's staff, invited by a council admin, who
belong to no organisation and exactly one vendor. ``users.vendor_id`` and
``invitations.vendor_id``; the role checks admit the new role only with a vendor, and
every other role only without one.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0018'
down_revision = '0017'
branch_labels = None
depends_on = None

_KNOWN_NEW = "role IN ('council_admin', 'finance', 'org_admin', 'member', 'vendor_admin')"
_MATCH_NEW = (
    "(role IN ('council_admin', 'finance') AND organisation_id IS NULL AND vendor_id IS NULL) OR "
    "(role IN ('org_admin', 'member') AND organisation_id IS NOT NULL AND vendor_id IS NULL) OR "
    "(role = 'vendor_admin' AND organisation_id IS NULL AND vendor_id IS NOT NULL)"
)
_KNOWN_OLD = "role IN ('council_admin', 'finance', 'org_admin', 'member')"
_MATCH_OLD = (
    "(role IN ('council_admin', 'finance') AND organisation_id IS NULL) OR "
    "(role IN ('org_admin', 'member') AND organisation_id IS NOT NULL)"
)


def upgrade():
    for table, ondelete in (('users', 'RESTRICT'), ('invitations', 'CASCADE')):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column('vendor_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True))
            batch.create_foreign_key(
                op.f(f'fk_{table}_vendor_id_vendors'), 'vendors', ['vendor_id'], ['id'],
                ondelete=ondelete,
            )
            batch.drop_constraint(op.f(f'ck_{table}_role_known'), type_='check')
            batch.drop_constraint(op.f(f'ck_{table}_role_matches_organisation'), type_='check')
            batch.create_check_constraint(op.f(f'ck_{table}_role_known'), _KNOWN_NEW)
            batch.create_check_constraint(
                op.f(f'ck_{table}_role_matches_organisation'), _MATCH_NEW
            )
    with op.batch_alter_table('users') as batch:
        batch.create_index(op.f('ix_users_vendor_id'), ['vendor_id'], unique=False)


def downgrade():
    op.execute("DELETE FROM invitations WHERE role = 'vendor_admin'")
    with op.batch_alter_table('users') as batch:
        batch.drop_index(op.f('ix_users_vendor_id'))
    for table in ('users', 'invitations'):
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(op.f(f'ck_{table}_role_known'), type_='check')
            batch.drop_constraint(op.f(f'ck_{table}_role_matches_organisation'), type_='check')
            batch.drop_constraint(op.f(f'fk_{table}_vendor_id_vendors'), type_='foreignkey')
            batch.drop_column('vendor_id')
            batch.create_check_constraint(op.f(f'ck_{table}_role_known'), _KNOWN_OLD)
            batch.create_check_constraint(
                op.f(f'ck_{table}_role_matches_organisation'), _MATCH_OLD
            )
