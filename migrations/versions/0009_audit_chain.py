"""audit log hash chain

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 10:00:00

Owned by: issue 12, audit chain. Every audit event gets a sequence number, the
previous event's hash and its own (SHA-256 over a canonical form of its fields,
see portal/audit/chain.py); the events already recorded are chained here in id
order, so an upgraded database verifies. ``audit_chain_head`` holds the last
link (one row), which appends lock. The foreign keys become ON DELETE RESTRICT (were SET NULL):
deleting a user or an organisation would otherwise rewrite hashed events.
"""
import datetime as dt
import hashlib
import json

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

GENESIS = "0" * 64
BATCH = 2000

_events = sa.table(
    'audit_events',
    sa.column('id', sa.BigInteger()),
    sa.column('seq', sa.BigInteger()),
    sa.column('prev_hash', sa.String(64)),
    sa.column('hash', sa.String(64)),
    sa.column('occurred_at', sa.DateTime(timezone=True)),
    sa.column('actor_user_id', sa.BigInteger()),
    sa.column('actor_label', sa.String(254)),
    sa.column('organisation_id', sa.BigInteger()),
    sa.column('action', sa.String(80)),
    sa.column('target_type', sa.String(40)),
    sa.column('target_id', sa.String(80)),
    sa.column('target_label', sa.String(254)),
    sa.column('before', sa.JSON()),
    sa.column('after', sa.JSON()),
    sa.column('ip', sa.String(64)),
)
_head = sa.table(
    'audit_chain_head',
    sa.column('id', sa.Integer()),
    sa.column('seq', sa.BigInteger()),
    sa.column('hash', sa.String(64)),
)


def _event_hash(row, seq, prev_hash):
    """Format 1 of portal.audit.chain.canonical, frozen here (it must not change)."""
    moment = row.occurred_at
    if moment.tzinfo is None:  # SQLite keeps UTC without a zone
        moment = moment.replace(tzinfo=dt.timezone.utc)
    document = {
        "v": 1,
        "seq": seq,
        "occurred_at": moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "actor_user_id": row.actor_user_id,
        "actor_label": row.actor_label,
        "organisation_id": row.organisation_id,
        "action": row.action,
        "target_type": row.target_type,
        "target_id": row.target_id,
        "target_label": row.target_label,
        "before": row.before,
        "after": row.after,
        "ip": row.ip,
        "prev_hash": prev_hash,
    }
    text = json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    )
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def _chain_existing_rows(conn):
    """Give every event its link, in id order, in batches (bounded memory)."""
    seq, prev_hash, last_id = 0, GENESIS, None
    columns = [c for c in _events.c if c.name not in ('seq', 'prev_hash', 'hash')]
    while True:
        query = sa.select(*columns).order_by(_events.c.id).limit(BATCH)
        if last_id is not None:
            query = query.where(_events.c.id > last_id)
        rows = conn.execute(query).all()
        if not rows:
            break
        updates = []
        for row in rows:
            seq += 1
            digest = _event_hash(row, seq, prev_hash)
            updates.append({"row_id": row.id, "seq": seq, "prev_hash": prev_hash, "hash": digest})
            prev_hash, last_id = digest, row.id
        conn.execute(
            _events.update()
            .where(_events.c.id == sa.bindparam("row_id"))
            .values(seq=sa.bindparam("seq"), prev_hash=sa.bindparam("prev_hash"),
                    hash=sa.bindparam("hash")),
            updates,
        )
    conn.execute(_head.insert().values(id=1, seq=seq, hash=prev_hash))


def upgrade():
    conn = op.get_bind()
    if conn.dialect.name == 'postgresql':
        # Nothing may record an event while the existing ones are chained.
        op.execute('LOCK TABLE audit_events IN EXCLUSIVE MODE')
    op.create_table('audit_chain_head',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.CheckConstraint('id = 1', name=op.f('ck_audit_chain_head_single_row')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_chain_head'))
    )
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('seq', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('prev_hash', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('hash', sa.String(length=64), nullable=True))

    _chain_existing_rows(conn)

    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.alter_column('seq', existing_type=sa.BigInteger(), nullable=False)
        batch_op.alter_column('prev_hash', existing_type=sa.String(length=64), nullable=False)
        batch_op.alter_column('hash', existing_type=sa.String(length=64), nullable=False)
        batch_op.create_unique_constraint(batch_op.f('uq_audit_events_seq'), ['seq'])
        batch_op.drop_constraint('fk_audit_events_actor_user_id_users', type_='foreignkey')
        batch_op.drop_constraint('fk_audit_events_organisation_id_organisations', type_='foreignkey')
        batch_op.create_foreign_key(batch_op.f('fk_audit_events_actor_user_id_users'), 'users', ['actor_user_id'], ['id'], ondelete='RESTRICT')
        batch_op.create_foreign_key(batch_op.f('fk_audit_events_organisation_id_organisations'), 'organisations', ['organisation_id'], ['id'], ondelete='RESTRICT')


def downgrade():
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.drop_constraint('fk_audit_events_organisation_id_organisations', type_='foreignkey')
        batch_op.drop_constraint('fk_audit_events_actor_user_id_users', type_='foreignkey')
        batch_op.create_foreign_key(batch_op.f('fk_audit_events_actor_user_id_users'), 'users', ['actor_user_id'], ['id'], ondelete='SET NULL')
        batch_op.create_foreign_key(batch_op.f('fk_audit_events_organisation_id_organisations'), 'organisations', ['organisation_id'], ['id'], ondelete='SET NULL')
        batch_op.drop_constraint(batch_op.f('uq_audit_events_seq'), type_='unique')
        batch_op.drop_column('hash')
        batch_op.drop_column('prev_hash')
        batch_op.drop_column('seq')

    op.drop_table('audit_chain_head')
