"""An invoice run plans each batch's statements for the tables as they are now.

PostgreSQL keeps the plans of a connection's foreign-key checks for the connection's
lifetime. Planned while ``invoices`` was nearly empty (a worker's first run, or the run's
own first batches), the check of every line read the whole table: the run's time grew with
the square of its organisations, and a run through the queue took 3.6× the bare SQL
(2.4× with the plans made again; docs/FINANCE.md, "Plans made again per batch"). Each
batch now starts with ``DISCARD PLANS``. The effect is measured by ``make bench-billing``;
this checks the rule is kept.
"""

from __future__ import annotations

import sqlalchemy as sa

from portal.billing.jobs import invoice_run
from portal.billing.models import Invoice
from portal.db import db
from tests.billing.conftest import last_month
from tests.billing.factories import subscribe
from tests.conftest import SYSTEM


def test_each_batch_of_a_run_plans_afresh_on_postgresql(app, billed, make_org, monkeypatch):
    from portal.billing import jobs

    monkeypatch.setattr(jobs, "BATCH", 2)  # five organisations: three batches
    period, first = last_month()
    for slug in ("bolt", "cobalt", "dune", "ember"):
        org = make_org(slug)
        subscribe(app, org.id, billed["product"].id, 2, first)
    sent: list[str] = []

    def note(conn, cursor, statement, *args) -> None:
        sent.append(statement)

    with app.app_context():
        engine = db.engine
        sa.event.listen(engine, "before_cursor_execute", note)
        try:
            run = invoice_run(db.session, actor=SYSTEM, period=period)
        finally:
            sa.event.remove(engine, "before_cursor_execute", note)
        assert run.status == "done" and run.invoices_created == 5
        assert db.session.query(Invoice).filter_by(period=period).count() == 5
        discards = sum(1 for statement in sent if statement.strip() == "DISCARD PLANS")
        expected = 3 if engine.dialect.name == "postgresql" else 0
        assert discards == expected
