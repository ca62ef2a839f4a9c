"""suppliers

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-01 16:20:00

Suppliers online (issue 15): the vendor's profile (``legal_name``, ``country``,
``support_contact``, ``data_residency``) and its service status now
(``service_status``, its message, source and time; ``status_page_url`` and the poller's
last reading or failure), and three council-wide tables: ``vendor_status_intervals``
(the status history as intervals, one open per vendor), ``incidents`` and
``incident_updates``. Council-wide tables have no row-level security; on PostgreSQL the
application role gets its grants (0011's default privileges would too; said once more).
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0019'
down_revision = '0018'
branch_labels = None
depends_on = None

APP_ROLE = "portal_app"
ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
TABLES = ("vendor_status_intervals", "incidents", "incident_updates")

_STATUSES = "'operational', 'degraded', 'partial_outage', 'major_outage', 'maintenance'"
_SOURCES = "'vendor', 'council', 'statuspage'"
_IMPACTS = "'none', 'minor', 'major', 'critical'"
_STATES = "'investigating', 'identified', 'monitoring', 'resolved'"


def upgrade():
    with op.batch_alter_table('vendors') as batch:
        batch.add_column(sa.Column('legal_name', sa.String(length=200), nullable=True))
        batch.add_column(sa.Column('country', sa.String(length=2), nullable=True))
        batch.add_column(sa.Column('support_contact', sa.String(length=254), nullable=True))
        batch.add_column(sa.Column('data_residency', sa.String(length=200), nullable=True))
        batch.add_column(sa.Column('service_status', sa.String(length=16), server_default='operational', nullable=False))
        batch.add_column(sa.Column('service_status_message', sa.String(length=500), nullable=True))
        batch.add_column(sa.Column('service_status_source', sa.String(length=16), nullable=True))
        batch.add_column(sa.Column('service_status_at', sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column('status_page_url', sa.String(length=500), nullable=True))
        batch.add_column(sa.Column('status_polled_at', sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column('status_poll_failed_at', sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column('status_poll_error', sa.String(length=500), nullable=True))
        batch.create_check_constraint(op.f('ck_vendors_service_status_known'), f"service_status IN ({_STATUSES})")
        batch.create_check_constraint(
            op.f('ck_vendors_service_status_source_known'),
            f"service_status_source IS NULL OR service_status_source IN ({_SOURCES})",
        )
        batch.create_check_constraint(op.f('ck_vendors_country_iso3166'), "country IS NULL OR length(country) = 2")

    op.create_table('vendor_status_intervals',
    sa.Column('id', ID, nullable=False),
    sa.Column('vendor_id', ID, nullable=False),
    sa.Column('service_status', sa.String(length=16), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('message', sa.String(length=500), nullable=True),
    sa.CheckConstraint(f"service_status IN ({_STATUSES})", name=op.f('ck_vendor_status_intervals_service_status_known')),
    sa.CheckConstraint(f"source IN ({_SOURCES})", name=op.f('ck_vendor_status_intervals_source_known')),
    sa.CheckConstraint('ended_at IS NULL OR ended_at >= started_at', name=op.f('ck_vendor_status_intervals_ordered')),
    sa.ForeignKeyConstraint(['vendor_id'], ['vendors.id'], name=op.f('fk_vendor_status_intervals_vendor_id_vendors'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_vendor_status_intervals'))
    )
    with op.batch_alter_table('vendor_status_intervals', schema=None) as batch_op:
        batch_op.create_index('ix_vendor_status_intervals_vendor_started', ['vendor_id', 'started_at'], unique=False)
        batch_op.create_index(
            'uq_vendor_status_intervals_open', ['vendor_id'], unique=True,
            sqlite_where=sa.text('ended_at IS NULL'), postgresql_where=sa.text('ended_at IS NULL'),
        )

    op.create_table('incidents',
    sa.Column('id', ID, nullable=False),
    sa.Column('vendor_id', ID, nullable=False),
    sa.Column('title', sa.String(length=200), nullable=False),
    sa.Column('impact', sa.String(length=16), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('opened_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('external_id', sa.String(length=100), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint(f"impact IN ({_IMPACTS})", name=op.f('ck_incidents_impact_known')),
    sa.CheckConstraint(f"state IN ({_STATES})", name=op.f('ck_incidents_state_known')),
    sa.CheckConstraint(f"source IN ({_SOURCES})", name=op.f('ck_incidents_source_known')),
    sa.CheckConstraint("(state = 'resolved') = (resolved_at IS NOT NULL)", name=op.f('ck_incidents_resolved_has_time')),
    sa.ForeignKeyConstraint(['vendor_id'], ['vendors.id'], name=op.f('fk_incidents_vendor_id_vendors'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_incidents')),
    sa.UniqueConstraint('vendor_id', 'external_id', name='uq_incidents_vendor_external')
    )
    with op.batch_alter_table('incidents', schema=None) as batch_op:
        batch_op.create_index('ix_incidents_vendor_opened', ['vendor_id', 'opened_at'], unique=False)
        batch_op.create_index('ix_incidents_state', ['state'], unique=False)

    op.create_table('incident_updates',
    sa.Column('id', ID, nullable=False),
    sa.Column('incident_id', ID, nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('impact', sa.String(length=16), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('author', sa.String(length=254), nullable=False),
    sa.Column('external_id', sa.String(length=100), nullable=True),
    sa.CheckConstraint(f"impact IN ({_IMPACTS})", name=op.f('ck_incident_updates_impact_known')),
    sa.CheckConstraint(f"state IN ({_STATES})", name=op.f('ck_incident_updates_state_known')),
    sa.ForeignKeyConstraint(['incident_id'], ['incidents.id'], name=op.f('fk_incident_updates_incident_id_incidents'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_incident_updates')),
    sa.UniqueConstraint('incident_id', 'external_id', name='uq_incident_updates_external')
    )
    with op.batch_alter_table('incident_updates', schema=None) as batch_op:
        batch_op.create_index('ix_incident_updates_incident_created', ['incident_id', 'created_at'], unique=False)

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
    op.drop_table('incident_updates')
    op.drop_table('incidents')
    op.drop_table('vendor_status_intervals')
    with op.batch_alter_table('vendors') as batch:
        batch.drop_constraint(op.f('ck_vendors_country_iso3166'), type_='check')
        batch.drop_constraint(op.f('ck_vendors_service_status_source_known'), type_='check')
        batch.drop_constraint(op.f('ck_vendors_service_status_known'), type_='check')
        for column in (
            'status_poll_error', 'status_poll_failed_at', 'status_polled_at', 'status_page_url',
            'service_status_at', 'service_status_source', 'service_status_message',
            'service_status', 'data_residency', 'support_contact', 'country', 'legal_name',
        ):
            batch.drop_column(column)
