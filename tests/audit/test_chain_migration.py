"""Migration 0009 chains the audit events recorded before it, so an upgraded database verifies."""

from __future__ import annotations

import datetime as dt
import json

import sqlalchemy as sa
from flask_migrate import downgrade, upgrade

from portal import create_app
from portal.audit import chain
from portal.audit.services import audit_record, audit_verify
from portal.db import db
from portal.kernel.actor import Actor
from tests.conftest import _database_url, _own_database

OLD_EVENTS = [
    # occurred_at, actor_label, action, target_label, before, after, ip
    (dt.datetime(2026, 3, 1, 9, 0, 0, tzinfo=dt.UTC), "cli", "organisation.create", "acme", None,
     {"slug": "acme", "name": "Acme “GmbH”"}, None),
    (dt.datetime(2026, 3, 1, 9, 0, 0, 5, tzinfo=dt.UTC), "admin@council.example",
     "organisation.update", "acme", {"name": "Acme", "seats": 3}, {"name": "Ácme", "seats": 4.5},
     "203.0.113.7"),
    (dt.datetime(2026, 2, 28, 23, 59, 59, 999999, tzinfo=dt.UTC), "token abc…", "usage.upload",
     None, None, {"rows": [1, 2, {"z": None, "a": True}]}, "2001:db8::1"),
]  # fmt: skip


def _url(tmp_path) -> str:
    url = _database_url(tmp_path)
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def test_upgrade_chains_existing_events_in_id_order(app, tmp_path):
    with _own_database(_url(tmp_path)) as url:
        old = create_app(
            {"TESTING": True, "SQLALCHEMY_DATABASE_URI": url, "RATELIMIT_STORAGE_URI": "memory://"}
        )
        with old.app_context():
            try:
                _check_upgrade(old)
            finally:
                db.session.remove()
                db.engine.dispose()


def _check_upgrade(old) -> None:
    upgrade(revision="0008")
    with db.engine.begin() as conn:
        for occurred_at, label, action, target, before, after, ip in OLD_EVENTS:
            conn.execute(
                sa.text(
                    "INSERT INTO audit_events (occurred_at, actor_label, action, target_type,"
                    " target_label, before, after, ip) VALUES (:occurred_at, :label, :action,"
                    " 'thing', :target, :before, :after, :ip)"
                ).bindparams(
                    sa.bindparam("occurred_at", type_=sa.DateTime(timezone=True)),
                    sa.bindparam("before", type_=sa.JSON()),
                    sa.bindparam("after", type_=sa.JSON()),
                ),
                {
                    "occurred_at": occurred_at
                    if conn.dialect.name == "postgresql"
                    else occurred_at.replace(tzinfo=None),
                    "label": label,
                    "action": action,
                    "target": target,
                    "before": before,
                    "after": after,
                    "ip": ip,
                },
            )

    upgrade(revision="0009")

    with db.engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT id, seq, prev_hash, hash FROM audit_events ORDER BY id")
        ).all()
        head = conn.execute(sa.text("SELECT id, seq, hash FROM audit_chain_head")).all()
    assert [r.seq for r in rows] == [1, 2, 3]  # id order, not time order
    assert rows[0].prev_hash == chain.GENESIS
    assert [r.prev_hash for r in rows[1:]] == [r.hash for r in rows[:-1]]
    assert [tuple(h) for h in head] == [(1, 3, rows[-1].hash)]
    report = audit_verify(db.session)
    assert report.intact and report.events == 3, report.describe()
    db.session.rollback()

    # The portal appends to the migrated chain.
    audit_record(db.session, actor=Actor.system("test"), action="after.upgrade", target_type="t")
    db.session.commit()
    report = audit_verify(db.session)
    assert report.intact and report.events == 4
    db.session.remove()  # SQLite: its transaction holds the write lock

    # And the upgraded rows are hashed as the portal hashes (the migration's frozen copy).
    with db.engine.connect() as conn:
        second = conn.execute(sa.text("SELECT * FROM audit_events WHERE seq = 2")).mappings().one()
    fields = {name: second[name] for name in chain.HASHED_FIELDS}
    for name in ("before", "after"):
        if isinstance(fields[name], str):  # SQLite's JSON comes back as text in raw SQL
            fields[name] = json.loads(fields[name])
    if isinstance(fields["occurred_at"], str):
        fields["occurred_at"] = dt.datetime.fromisoformat(fields["occurred_at"])
    assert chain.event_hash(**fields) == second["hash"]

    downgrade(revision="0008")
    with db.engine.connect() as conn:
        columns = {c["name"] for c in sa.inspect(conn).get_columns("audit_events")}
        assert not {"seq", "prev_hash", "hash"} & columns
        assert "audit_chain_head" not in sa.inspect(conn).get_table_names()
        assert conn.execute(sa.text("SELECT count(*) FROM audit_events")).scalar() == 4
