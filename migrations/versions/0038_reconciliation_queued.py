"""provisioning_reconciliations.state 'queued': "reconcile now" is a job

Revision ID: 0038
Revises: 0037
Create Date: 2026-12-03 07:30:00

"Reconcile now" on the reconciliation pages and ``POST /api/v1/vendors/{slug}/provisioning/
reconciliations`` read every user of the vendor's application over SCIM inside the request.
They now record the run as ``queued`` and a worker runs it (the job
``provisioning.reconcile_run``, :mod:`portal.provisioning.reconcile`), as invoice runs are.
"""

from alembic import op

# revision identifiers, used by Alembic.
revision = "0038"
down_revision = "0037"
branch_labels = None
depends_on = None

TABLE = "provisioning_reconciliations"
NAME = f"ck_{TABLE}_state_known"


def upgrade():
    with op.batch_alter_table(TABLE) as batch:
        batch.drop_constraint(op.f(NAME), type_="check")
        batch.create_check_constraint(
            op.f(NAME), "state IN ('queued', 'running', 'done', 'failed')"
        )


def downgrade():
    # A run still queued never ran: it is recorded as failed, which the old states allow.
    op.execute(
        f"UPDATE {TABLE} SET state = 'failed', error = 'Not run: the portal was downgraded.' "  # noqa: S608
        "WHERE state = 'queued'"
    )
    with op.batch_alter_table(TABLE) as batch:
        batch.drop_constraint(op.f(NAME), type_="check")
        batch.create_check_constraint(op.f(NAME), "state IN ('running', 'done', 'failed')")
