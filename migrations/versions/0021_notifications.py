"""notifications

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-01 16:20:00

Notifications (issue 15; portal.notifications.models): ``notifications`` (one event told
to one person, as a kind and params, once per ``(user_id, key)``), people's choices of what
is mailed (``notification_preferences``, one row per person who changed the defaults) and
the org admins' daily digests (``notification_digests``, once per person and day).

Mixed tenancy like ``users`` (``notifications``, ``notification_preferences``: council
staff's and vendor admins' rows have no organisation) and tenant-owned
(``notification_digests``). On PostgreSQL each gets the row-level security policy and the
grants migration 0011 gives the tenant-owned tables.
"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0021'
down_revision = '0020'
branch_labels = None
depends_on = None


APP_ROLE = "portal_app"
POLICY = "tenant_isolation"
ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
TABLES = ("notifications", "notification_preferences", "notification_digests")
#: The tables with an ``id`` sequence.
SEQUENCES = ("notifications", "notification_digests")


def _allows(column):
    # As in 0011: the settings are read once per statement, not once per row.
    return (
        "(SELECT current_setting('portal.scope', true)) = 'council' OR "
        f"{column} = (SELECT nullif(current_setting('portal.organisation_id', true), '')::bigint)"
    )


def upgrade():
    op.create_table('notifications',
    sa.Column('id', ID, nullable=False),
    sa.Column('user_id', ID, nullable=False),
    sa.Column('kind', sa.String(length=60), nullable=False),
    sa.Column('key', sa.String(length=200), nullable=False),
    sa.Column('params', sa.JSON(), nullable=False),
    sa.Column('link', sa.String(length=500), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('read_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('organisation_id', ID, nullable=True),
    sa.ForeignKeyConstraint(['organisation_id'], ['organisations.id'], name=op.f('fk_notifications_organisation_id_organisations'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_notifications_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_notifications')),
    sa.UniqueConstraint('user_id', 'key', name='uq_notifications_user_key')
    )
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_notifications_organisation_id'), ['organisation_id'], unique=False)
        batch_op.create_index('ix_notifications_user_created', ['user_id', 'created_at'], unique=False)
        batch_op.create_index('ix_notifications_user_unread', ['user_id'], unique=False, sqlite_where=sa.text('read_at IS NULL'), postgresql_where=sa.text('read_at IS NULL'))
        batch_op.create_index('ix_notifications_org_created', ['organisation_id', 'created_at'], unique=False)

    op.create_table('notification_preferences',
    sa.Column('user_id', ID, nullable=False),
    sa.Column('mail_incidents', sa.Boolean(), nullable=False),
    sa.Column('mail_standing', sa.Boolean(), nullable=False),
    sa.Column('mail_operations', sa.Boolean(), nullable=False),
    sa.Column('digest', sa.Boolean(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('organisation_id', ID, nullable=True),
    sa.ForeignKeyConstraint(['organisation_id'], ['organisations.id'], name=op.f('fk_notification_preferences_organisation_id_organisations'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_notification_preferences_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('user_id', name=op.f('pk_notification_preferences'))
    )
    with op.batch_alter_table('notification_preferences', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_notification_preferences_organisation_id'), ['organisation_id'], unique=False)

    op.create_table('notification_digests',
    sa.Column('id', ID, nullable=False),
    sa.Column('user_id', ID, nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('events', sa.Integer(), nullable=False),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('organisation_id', ID, nullable=False),
    sa.ForeignKeyConstraint(['organisation_id'], ['organisations.id'], name=op.f('fk_notification_digests_organisation_id_organisations'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_notification_digests_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_notification_digests')),
    sa.UniqueConstraint('user_id', 'day', name='uq_notification_digests_user_day')
    )
    with op.batch_alter_table('notification_digests', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_notification_digests_organisation_id'), ['organisation_id'], unique=False)

    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    for table in TABLES:
        op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {APP_ROLE}")
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY {POLICY} ON {table} USING ({_allows('organisation_id')}) "
            f"WITH CHECK ({_allows('organisation_id')})"
        )
    for table in SEQUENCES:
        op.execute(f"GRANT USAGE, SELECT ON SEQUENCE {table}_id_seq TO {APP_ROLE}")


def downgrade():
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        for table in TABLES:
            op.execute(f"DROP POLICY IF EXISTS {POLICY} ON {table}")
    with op.batch_alter_table('notification_digests', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_notification_digests_organisation_id'))
    op.drop_table('notification_digests')
    with op.batch_alter_table('notification_preferences', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_notification_preferences_organisation_id'))
    op.drop_table('notification_preferences')
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.drop_index('ix_notifications_org_created')
        batch_op.drop_index('ix_notifications_user_unread')
        batch_op.drop_index('ix_notifications_user_created')
        batch_op.drop_index(batch_op.f('ix_notifications_organisation_id'))
    op.drop_table('notifications')
