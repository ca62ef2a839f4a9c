"""scim_tokens.expires_at: SCIM tokens expire, by default 90 days after they are made

Revision ID: 0037
Revises: 0036
Create Date: 2026-12-03 06:40:00

API tokens expire by default (issue 11); SCIM tokens did not. A new SCIM token now expires
after 90 days unless its organisation's admin chooses another term or "never"
(:func:`portal.scim.services.token_create`). Tokens made before this migration keep
working until revoked (NULL: never), as they were made: an identity provider's
provisioning must not stop because the portal was upgraded.
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0037"
down_revision = "0036"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("scim_tokens", sa.Column("expires_at", sa.DateTime(timezone=True)))


def downgrade():
    with op.batch_alter_table("scim_tokens") as batch:
        batch.drop_column("expires_at")
