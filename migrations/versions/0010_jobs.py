"""jobs: every job the portal enqueues (portal.jobs.models.Job)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 10:00:00

Owned by: issue 13, jobs. Council-wide (no organisation_id): the Jobs page is the
council's. Recorded mail messages are not part of this revision.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('jobs',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('arguments', sa.JSON(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('max_attempts', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('dedupe_key', sa.String(length=200), nullable=True),
    sa.Column('enqueued_by', sa.String(length=254), nullable=False),
    sa.Column('request_id', sa.String(length=64), nullable=True),
    sa.Column('enqueued_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('dispatched_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('retry_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')", name=op.f('ck_jobs_state_known')),
    sa.CheckConstraint('attempts >= 0', name=op.f('ck_jobs_attempts_not_negative')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_jobs')),
    sa.UniqueConstraint('dedupe_key', name=op.f('uq_jobs_dedupe_key'))
    )
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.create_index('ix_jobs_state_enqueued_at', ['state', 'enqueued_at'], unique=False)

    # An invoice run executed by a job (page and API) names it; the CLI's runs have none.
    with op.batch_alter_table('invoice_runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('job_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True))
        batch_op.create_index(batch_op.f('ix_invoice_runs_job_id'), ['job_id'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_invoice_runs_job_id_jobs'), 'jobs', ['job_id'], ['id'], ondelete='SET NULL')


def downgrade():
    with op.batch_alter_table('invoice_runs', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_invoice_runs_job_id_jobs'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_invoice_runs_job_id'))
        batch_op.drop_column('job_id')
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_index('ix_jobs_state_enqueued_at')
    op.drop_table('jobs')
