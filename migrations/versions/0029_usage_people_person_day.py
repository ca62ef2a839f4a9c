"""usage_daily_people: a seat holder's use by day

Revision ID: 0029
Revises: 0028
Create Date: 2026-12-01 20:00:00

``ix_usage_daily_people_person_day`` on ``usage_daily_people (organisation_id,
product_id, user_email, day)`` (issue 13, docs/PERFORMANCE.md "Issue 13: usage pages at
any volume"): idle seats and the seats with usage of a period ask, for each seat, whether
its holder used the product from a day on. The primary key puts the meter before the day,
so that question read every row of the holder's history (meters × days, for 5,100 seats
per page read); this index answers it with one probe per seat. The rollup is kept at
ingest, so the index needs no backfill beyond its build.
"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '0029'
down_revision = '0028'
branch_labels = None
depends_on = None


def upgrade():
    op.create_index(
        "ix_usage_daily_people_person_day",
        "usage_daily_people",
        ["organisation_id", "product_id", "user_email", "day"],
    )


def downgrade():
    op.drop_index("ix_usage_daily_people_person_day", table_name="usage_daily_people")
