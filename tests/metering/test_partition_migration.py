"""Migration 0013 on a database with events: PostgreSQL's usage_events becomes partitioned by
month with every row kept (in the partition of its UTC month), its keys in usage_event_keys,
row-level security and grants made again; 0014's backfill still reads it; the downgrade
gives one plain table back with the same rows. SQLite: usage_events is left as it was."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from flask_migrate import downgrade, upgrade

from portal import create_app
from portal.db import db
from tests.conftest import _database_url, _own_database

UTC = dt.UTC
#: (organisation, key, time, quantity): two organisations share a key; the last instant of
#: August and the first of September; a month long before the others.
EVENTS = [
    (0, "dup", dt.datetime(2026, 8, 31, 23, 59, 59, 999999, tzinfo=UTC), 1_000_000),
    (1, "dup", dt.datetime(2026, 9, 1, 0, 0, tzinfo=UTC), 2_000_000),
    (0, "early", dt.datetime(2019, 5, 17, 8, 30, tzinfo=UTC), 3_500_000),
    (1, "late", dt.datetime(2026, 9, 30, 23, 0, tzinfo=UTC), 4_000_000),
]


def _url(tmp_path) -> str:
    url = _database_url(tmp_path)
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def _insert(conn, table_name: str, /, **given) -> int | None:
    """A row of ``name`` with ``given`` values and something for every other required column."""
    table = sa.Table(table_name, sa.MetaData(), autoload_with=conn)
    now = dt.datetime(2026, 1, 1, tzinfo=UTC)
    values = dict(given)
    for column in table.columns:
        if column.name in values or column.nullable or column.name == "id":
            continue
        python = column.type.python_type
        values[column.name] = (
            now
            if python is dt.datetime
            else False
            if python is bool
            else 0
            if python is int
            else "x"
        )
    result = conn.execute(table.insert().values(**values))
    return result.inserted_primary_key[0] if "id" in table.columns else None


def _events(conn) -> list[tuple]:
    rows = conn.execute(
        sa.text(
            "SELECT organisation_id, idempotency_key, occurred_at, quantity_micros "
            "FROM usage_events"
        )
    )
    out = []
    for org, key, at, micros in rows:
        if isinstance(at, str):  # SQLite: naive UTC text
            at = dt.datetime.fromisoformat(at)
        naive = at if at.tzinfo is None else at.astimezone(UTC).replace(tzinfo=None)
        out.append((org, key, naive, micros))
    return sorted(out)


def test_upgrade_keeps_every_event_in_its_months_partition_and_downgrade_gives_one_table(
    app, tmp_path
):
    with _own_database(_url(tmp_path)) as url:
        old = create_app(
            {"TESTING": True, "SQLALCHEMY_DATABASE_URI": url, "RATELIMIT_STORAGE_URI": "memory://"}
        )
        with old.app_context():
            try:
                _check(old)
            finally:
                db.session.remove()
                db.engine.dispose()


def _check(old) -> None:
    upgrade(revision="0012")
    with db.engine.begin() as conn:
        postgres = conn.dialect.name == "postgresql"
        orgs = [
            _insert(
                conn,
                "organisations",
                slug=slug,
                name=slug,
                status="active",
                currency="EUR",
                country="DE",
                billing_provider="manual",
            )
            for slug in ("acme", "globex")
        ]
        vendor = _insert(conn, "vendors", slug="v", name="V", status="active")
        product = _insert(conn, "products", vendor_id=vendor, sku="p", name="P", description="")
        meter = _insert(
            conn, "meters", product_id=product, key="m", name="m", unit="u", aggregation="sum"
        )
        for org, key, at, micros in EVENTS:
            _insert(
                conn,
                "usage_events",
                organisation_id=orgs[org],
                product_id=product,
                meter_id=meter,
                idempotency_key=key,
                quantity_micros=micros,
                occurred_at=at,
                received_at=at,
            )
        before = _events(conn)
    assert len(before) == len(EVENTS)

    upgrade(revision="0014")
    with db.engine.connect() as conn:
        assert _events(conn) == before
        daily = conn.execute(sa.text("SELECT sum(events), sum(quantity_micros) FROM usage_daily"))
        assert tuple(map(int, daily.one())) == (4, 10_500_000)  # 0014's backfill read them all
        keys = sorted(
            conn.execute(
                sa.text("SELECT organisation_id, idempotency_key FROM usage_event_keys")
            ).all()
        )
        if not postgres:
            assert keys == []  # SQLite: the events' primary key stays the rule
            assert (
                conn.execute(
                    sa.text(
                        "SELECT 1 FROM sqlite_master WHERE name = 'usage_events' "
                        "AND sql LIKE '%PRIMARY KEY%'"
                    )
                ).first()
                is not None
            )
        else:
            assert keys == sorted((orgs[o], k) for o, k, _, _ in EVENTS)
            placed = dict(
                conn.execute(
                    sa.text(
                        "SELECT e.idempotency_key || '@' || e.organisation_id, c.relname "
                        "FROM usage_events e JOIN pg_class c ON c.oid = e.tableoid"
                    )
                ).all()
            )
            assert placed == {
                f"dup@{orgs[0]}": "usage_events_2026_08",
                f"dup@{orgs[1]}": "usage_events_2026_09",
                f"early@{orgs[0]}": "usage_events_2019_05",
                f"late@{orgs[1]}": "usage_events_2026_09",
            }
            # The database's current month and three ahead exist too; the default partition.
            names = set(
                conn.scalars(
                    sa.text(
                        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                        "WHERE i.inhparent = 'public.usage_events'::regclass"
                    )
                )
            )
            this_month = conn.scalar(sa.text("SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY_MM')"))
            assert {"usage_events_default", f"usage_events_{this_month}"} <= names
            assert len(names) == 1 + len(
                {"2019_05", "2026_08", "2026_09"}
                | {
                    conn.scalar(
                        sa.text(
                            "SELECT to_char(now() AT TIME ZONE 'UTC' "
                            f"+ interval '{n} month', 'YYYY_MM')"
                        )
                    )
                    for n in range(4)
                }
            )
            for table in ("usage_events", "usage_event_keys"):
                assert conn.execute(
                    sa.text(
                        "SELECT relrowsecurity, relforcerowsecurity FROM pg_class "
                        "WHERE oid = CAST(:t AS regclass)"
                    ),
                    {"t": table},
                ).one() == (True, True)
                assert (
                    conn.scalar(
                        sa.text(
                            "SELECT count(*) FROM pg_policies WHERE tablename = :t "
                            "AND policyname = 'tenant_isolation'"
                        ),
                        {"t": table},
                    )
                    == 1
                )
                assert conn.scalar(
                    sa.text("SELECT has_table_privilege('portal_app', :t, 'INSERT')"), {"t": table}
                )
            for function in ("usage_partition_ensure(date)", "usage_partition_default_months()"):
                assert conn.scalar(
                    sa.text("SELECT has_function_privilege('portal_app', :f, 'EXECUTE')"),
                    {"f": f"public.{function}"},
                )
                assert not conn.scalar(
                    sa.text("SELECT has_function_privilege('public', :f, 'EXECUTE')"),
                    {"f": f"public.{function}"},
                )
            # The unique rule is the keys', not a (month-local) index of the events.
            assert (
                conn.scalar(
                    sa.text(
                        "SELECT count(*) FROM pg_index "
                        "WHERE indrelid = 'public.usage_events'::regclass AND indisunique"
                    )
                )
                == 0
            )

    downgrade(revision="0012")
    with db.engine.connect() as conn:
        assert _events(conn) == before
        assert "usage_event_keys" not in sa.inspect(conn).get_table_names()
        if postgres:
            assert conn.execute(
                sa.text(
                    "SELECT relkind, relrowsecurity, relforcerowsecurity FROM pg_class "
                    "WHERE oid = 'public.usage_events'::regclass"
                )
            ).one() == ("r", True, True)
            assert sa.inspect(conn).get_pk_constraint("usage_events")["constrained_columns"] == [
                "organisation_id",
                "idempotency_key",
            ]
            assert (
                conn.scalar(
                    sa.text("SELECT count(*) FROM pg_namespace WHERE nspname = 'usage_partitions'")
                )
                == 0
            )
    # And up again: the downgrade left nothing in the way.
    upgrade(revision="0013")
    with db.engine.connect() as conn:
        assert _events(conn) == before
