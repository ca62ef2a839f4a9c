"""mail messages: every mail the portal sends, recorded and sent by a job

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01 10:30:00

Owned by: issue 13, mail (portal.mail.models.MailMessage). Mixed tenancy: a
message concerning an organisation carries its ``organisation_id``; council
staff's mail has none. On PostgreSQL the table gets the same row-level security
policy and grants as migration 0011 gives the tenant-owned tables (0011 lists its
tables explicitly, so a later table says so itself).
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


APP_ROLE = "portal_app"
POLICY = "tenant_isolation"
TABLE = "mail_messages"


def _allows(column):
    # As in 0011: the settings are read once per statement, not once per row.
    return (
        "(SELECT current_setting('portal.scope', true)) = 'council' OR "
        f"{column} = (SELECT nullif(current_setting('portal.organisation_id', true), '')::bigint)"
    )


def upgrade():
    op.create_table('mail_messages',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('recipient', sa.String(length=254), nullable=False),
    sa.Column('subject', sa.String(length=300), nullable=False),
    sa.Column('kind', sa.String(length=60), nullable=False),
    sa.Column('related_type', sa.String(length=40), nullable=True),
    sa.Column('related_id', sa.BigInteger(), nullable=True),
    sa.Column('sealed', sa.Text(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('sends', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('job_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('queued_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_attempt_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('retry_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('organisation_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.CheckConstraint("state IN ('queued', 'sent', 'failed')", name=op.f('ck_mail_messages_state_known')),
    sa.CheckConstraint('attempts >= 0', name=op.f('ck_mail_messages_attempts_not_negative')),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], name=op.f('fk_mail_messages_job_id_jobs'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['organisation_id'], ['organisations.id'], name=op.f('fk_mail_messages_organisation_id_organisations'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_mail_messages'))
    )
    with op.batch_alter_table('mail_messages', schema=None) as batch_op:
        batch_op.create_index('ix_mail_messages_related', ['related_type', 'related_id'], unique=False)
        batch_op.create_index('ix_mail_messages_state_queued_at', ['state', 'queued_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_mail_messages_organisation_id'), ['organisation_id'], unique=False)

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
    with op.batch_alter_table('mail_messages', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_mail_messages_organisation_id'))
        batch_op.drop_index('ix_mail_messages_state_queued_at')
        batch_op.drop_index('ix_mail_messages_related')
    op.drop_table('mail_messages')
