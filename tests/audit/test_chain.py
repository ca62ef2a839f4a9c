"""The audit log's hash chain: appends link up, `portal audit verify` finds the first broken
link (an edited, re-hashed or deleted event), the chain page, and no forks under concurrency."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.audit import chain
from portal.audit.models import AuditChainHead, AuditEvent
from portal.audit.services import audit_chain_check, audit_record, audit_verify
from portal.db import bind_scope, db
from portal.kernel.actor import Actor, Role
from portal.kernel.errors import PermissionDenied
from portal.kernel.scope import Scope
from tests.conftest import flashes, owner_engine, post_form

SYSTEM = Actor.system("test")


def record(app, n: int, *, organisation_id: int | None = None, actor: Actor = SYSTEM) -> None:
    """``n`` events with varied fields (unicode, numbers, nesting, nulls), committed."""
    with app.app_context():
        for i in range(n):
            audit_record(
                db.session,
                actor=actor,
                action=f"test.event_{i % 3}",
                target_type="thing",
                target_id=i,
                target_label=f"Thing “{i}” – Zürich",
                organisation_id=organisation_id,
                before={"n": i, "ratio": i / 7, "tags": ("a", "b")} if i % 2 else None,
                after={"n": i + 1, "nested": {"z": [1, None, True], "a": "ü"}, "cents": 10**15},
            )
        db.session.commit()


def rows(app) -> list[AuditEvent]:
    with app.app_context():
        found = list(db.session.scalars(sa.select(AuditEvent).order_by(AuditEvent.seq)))
        db.session.expunge_all()
        return found


def as_owner(app, statement: str, **params) -> None:
    """Change the table behind the portal's back, as its owner (the app role may not)."""
    with app.app_context(), owner_engine(app).begin() as conn:
        conn.execute(sa.text(statement), params)


def verify(runner):
    return runner.invoke(args=["audit", "verify"])


# ------------------------------------------------------------------ appending


def test_events_link_into_one_chain(app):
    record(app, 25)
    found = rows(app)
    assert [e.seq for e in found] == list(range(1, 26))
    assert found[0].prev_hash == chain.GENESIS
    for previous, event in zip(found, found[1:], strict=False):
        assert event.prev_hash == previous.hash
    for event in found:  # each hash is the canonical form's, recomputed from what was read back
        fields = {name: getattr(event, name) for name in chain.HASHED_FIELDS}
        assert event.hash == chain.event_hash(**fields)
    assert found[1].before == {"n": 1, "ratio": 1 / 7, "tags": ["a", "b"]}  # stored as read back
    with app.app_context():
        head = db.session.get(AuditChainHead, 1)
        assert (head.seq, head.hash) == (25, found[-1].hash)
        report = audit_verify(db.session)
    assert report.intact and report.events == 25 and report.last_hash == found[-1].hash


def test_hash_covers_every_field_and_the_link():
    fields = {
        "seq": 3,
        "occurred_at": chain.dt.datetime(2027, 1, 1, 12, 0, 0, 123456, tzinfo=chain.dt.UTC),
        "actor_user_id": 7,
        "actor_label": "a@example.org",
        "organisation_id": 2,
        "action": "x.y",
        "target_type": "t",
        "target_id": "1",
        "target_label": "T",
        "before": {"b": 1, "a": 2},
        "after": None,
        "ip": "192.0.2.1",
        "prev_hash": "ab" * 32,
    }
    digest = chain.event_hash(**fields)
    assert len(digest) == 64
    # key order in before/after does not matter; a naive time is UTC (as SQLite stores it)
    same = {**fields, "before": {"a": 2, "b": 1}, "occurred_at": fields["occurred_at"]}
    same["occurred_at"] = fields["occurred_at"].replace(tzinfo=None)
    assert chain.event_hash(**same) == digest
    for name, other in [
        ("seq", 4),
        ("occurred_at", fields["occurred_at"] + chain.dt.timedelta(microseconds=1)),
        ("actor_user_id", None),
        ("actor_label", "b@example.org"),
        ("organisation_id", 3),
        ("action", "x.z"),
        ("target_type", "u"),
        ("target_id", "2"),
        ("target_label", "U"),
        ("before", {"a": 2, "b": "1"}),
        ("after", {}),
        ("ip", None),
        ("prev_hash", "cd" * 32),
    ]:
        assert chain.event_hash(**{**fields, name: other}) != digest, name


@pytest.mark.parametrize(
    "tricky",
    [
        {},
        # a key of the link's name, and the marker itself, inside the values
        {"before": {"prev_hash": "", "seq": 0}, "after": {'"prev_hash":"","seq":0,': 1}},
        {"target_label": '"prev_hash":"","seq":0,', "target_id": None, "ip": None},
        {"actor_label": 'x","seq":0,"prev_hash":"', "before": None, "after": []},
    ],
)
def test_the_document_around_the_link_is_the_whole_document(tricky):
    """What the lean seat path hashes in PostgreSQL (before + prev_hash + between + seq + after)
    is canonical() of the linked event, whatever the values hold."""
    fields = {
        "occurred_at": chain.dt.datetime(2027, 1, 1, 12, 0, 0, 123456, tzinfo=chain.dt.UTC),
        "actor_user_id": 7,
        "actor_label": "a@example.org",
        "organisation_id": 2,
        "action": "seat.assign",
        "target_type": "seat",
        "target_id": "1",
        "target_label": "suite → a@example.org",
        "before": {"b": 1},
        "after": {"a": "ü"},
        "ip": "192.0.2.1",
    } | tricky
    before, between, after = chain.canonical_around_link(**fields)
    for seq, prev_hash in ((1, chain.GENESIS), (987654321012, "ab" * 32)):
        whole = chain.canonical(seq=seq, prev_hash=prev_hash, **fields)
        assert (before + prev_hash + between + str(seq) + after).encode("ascii") == whole


def test_an_empty_log_verifies(app, runner):
    result = verify(runner)
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1] == "OK: 0 events, chain intact"


def test_events_of_one_transaction_and_of_savepoints_chain_in_order(app):
    with app.app_context():
        audit_record(db.session, actor=SYSTEM, action="a.one", target_type="t")
        with db.session.no_autoflush:  # the head moves at once, flushed or not
            audit_record(db.session, actor=SYSTEM, action="a.two", target_type="t")
        savepoint = db.session.begin_nested()
        audit_record(db.session, actor=SYSTEM, action="a.dropped", target_type="t")
        savepoint.rollback()
        audit_record(db.session, actor=SYSTEM, action="a.three", target_type="t")
        db.session.commit()
        assert audit_verify(db.session).intact
    assert [(e.seq, e.action) for e in rows(app)] == [(1, "a.one"), (2, "a.two"), (3, "a.three")]


def test_a_transaction_reads_and_moves_the_head_once_however_many_events(app):
    record(app, 1)
    statements: list[str] = []

    def note(conn, cursor, statement, *args):
        if "audit_chain_head" in statement:
            statements.append(statement.split()[0].upper())

    with app.app_context():
        sa.event.listen(db.engine, "before_cursor_execute", note)
        try:
            for i in range(10):
                audit_record(
                    db.session, actor=SYSTEM, action="a.many", target_type="t", target_id=i
                )
            db.session.commit()
        finally:
            sa.event.remove(db.engine, "before_cursor_execute", note)
        assert audit_verify(db.session).intact
    assert statements == ["SELECT", "UPDATE"]
    assert [e.seq for e in rows(app)] == list(range(1, 12))


def test_audit_events_cannot_be_changed_or_deleted_through_the_orm(app):
    record(app, 2)
    with app.app_context():
        event = db.session.scalars(sa.select(AuditEvent)).first()
        event.action = "rewritten"
        with pytest.raises(RuntimeError, match="insert-only"):
            db.session.flush()
        db.session.rollback()
        db.session.delete(db.session.scalars(sa.select(AuditEvent)).first())
        with pytest.raises(RuntimeError, match="insert-only"):
            db.session.flush()
        db.session.rollback()


def test_nothing_in_the_portal_updates_or_deletes_audit_rows():
    """A source check: no UPDATE or DELETE statement names the audit events' table or model."""
    import pathlib
    import re

    root = pathlib.Path(__file__).resolve().parents[2] / "portal"
    pattern = re.compile(
        r"(update|delete)\(\s*AuditEvent|AuditEvent\.__table__\.(update|delete)"
        r"|(UPDATE|DELETE\s+FROM)\s+audit_events",
        re.IGNORECASE,
    )
    offenders = [
        f"{path.relative_to(root.parent)}:{n}"
        for path in root.rglob("*.py")
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if pattern.search(line)
    ]
    assert offenders == []


# ------------------------------------------------------------------ tampering


def test_editing_one_event_makes_verify_fail_at_that_event(app, runner):
    record(app, 12)
    target = rows(app)[6]  # seq 7
    assert verify(runner).exit_code == 0

    as_owner(
        app, "UPDATE audit_events SET target_label = 'nothing to see' WHERE id = :id", id=target.id
    )
    result = verify(runner)
    assert result.exit_code == 1, result.output
    line = result.output.strip().splitlines()[-1]
    assert f"event id {target.id}, seq 7" in line
    assert target.action in line
    assert chain.utc_text(target.occurred_at) in line
    assert "hash mismatch" in line


def test_editing_the_json_of_one_event_is_found(app):
    record(app, 5)
    target = rows(app)[3]
    as_owner(
        app,
        "UPDATE audit_events SET after = :after WHERE id = :id",
        after='{"n": 999, "nested": {"z": [1, null, true], "a": "ü"}, "cents": 1000000000000000}',
        id=target.id,
    )
    with app.app_context():
        report = audit_verify(db.session)
    assert report.broken and report.broken.id == target.id
    assert report.broken.problem == chain.HASH_MISMATCH
    assert report.events == 3  # the three before it hold


def test_an_edited_event_given_a_fresh_hash_breaks_the_next_link(app, runner):
    record(app, 6)
    found = rows(app)
    target, following = found[2], found[3]
    fields = {name: getattr(target, name) for name in chain.HASHED_FIELDS}
    fields["ip"] = "10.0.0.1"
    as_owner(
        app,
        "UPDATE audit_events SET ip = '10.0.0.1', hash = :hash WHERE id = :id",
        hash=chain.event_hash(**fields),
        id=target.id,
    )
    result = verify(runner)
    assert result.exit_code == 1
    assert f"event id {following.id}, seq 4" in result.output
    assert "prev_hash does not match" in result.output


def test_a_deleted_event_is_a_gap(app, runner):
    record(app, 6)
    found = rows(app)
    as_owner(app, "DELETE FROM audit_events WHERE id = :id", id=found[2].id)
    result = verify(runner)
    assert result.exit_code == 1
    line = result.output.strip().splitlines()[-1]
    assert f"event id {found[3].id}, seq 4" in line
    assert "gap in sequence: expected seq 3, found 4" in line


def test_deleted_first_and_last_events_are_found(app):
    record(app, 4)
    found = rows(app)
    as_owner(app, "DELETE FROM audit_events WHERE id = :id", id=found[-1].id)
    with app.app_context():
        report = audit_verify(db.session)
    assert report.broken.problem == chain.TRUNCATED and report.broken.seq == 3
    assert "head records seq 4" in report.broken.detail

    as_owner(app, "DELETE FROM audit_events WHERE id = :id", id=found[0].id)
    with app.app_context():
        report = audit_verify(db.session)
    assert report.broken.problem == chain.SEQUENCE_GAP and report.broken.seq == 2
    assert report.events == 0


def test_a_head_moved_back_is_found(app, runner):
    record(app, 5)
    found = rows(app)
    as_owner(app, "UPDATE audit_chain_head SET seq = 3, hash = :hash", hash=found[2].hash)
    result = verify(runner)
    assert result.exit_code == 1
    line = result.output.strip().splitlines()[-1]
    assert f"event id {found[3].id}, seq 4" in line
    assert "is not in the chain: its head records seq 3" in line


def test_verify_reads_in_batches_and_checks_only_up_to_the_head(app):
    record(app, 23)
    with app.app_context():
        statements = []

        def count(conn, cursor, statement, *args):
            if "FROM audit_events" in statement:
                statements.append(statement)

        sa.event.listen(db.engine, "before_cursor_execute", count)
        try:
            report = audit_verify(db.session, batch=5)
        finally:
            sa.event.remove(db.engine, "before_cursor_execute", count)
    assert report.intact and report.events == 23
    # five batches of at most five, the empty one that ends, and the check past the head
    assert len(statements) == 7


# ------------------------------------------------------------------ recorded checks, the page


def test_a_check_is_recorded_and_needs_council_staff(app, make_org):
    org = make_org()
    record(app, 3)
    with app.app_context():
        for actor in (
            Actor.anonymous(),
            Actor.system("org job", organisation_id=org.id),
            Actor(label="x", kind="person", role="org_admin", organisation_id=org.id),
            Actor(label="x", kind="person", role="pirate"),
            Actor.api_token("token", role=Role.ORG_ADMIN, organisation_id=org.id),
        ):
            with pytest.raises(PermissionDenied):
                audit_chain_check(db.session, actor=actor)
        report = audit_chain_check(db.session, actor=Actor.system("cli"))
        db.session.commit()
    assert report.intact
    last = rows(app)[-1]
    assert last.action == chain.CHAIN_VERIFIED
    assert last.after == {"intact": True, "events": 4, "last_seq": 4, "broken": None}


def test_chain_page_for_council_staff_only(app, make_org, signed_in):
    org = make_org()
    for role in ("org_admin", "member"):
        client = signed_in(role, org)
        assert client.get("/audit/chain").status_code == 403
        assert (
            post_form(client, "/audit/chain/verify", {}, token_from="/profile").status_code == 403
        )
    anonymous = app.test_client()
    assert anonymous.get("/audit/chain").status_code == 302

    for role in ("council_admin", "finance"):
        client = signed_in(role)
        page = client.get("/audit/chain")
        assert page.status_code == 200
        assert "Verify now" in page.get_data(as_text=True)


def test_verify_now_shows_intact_then_the_broken_link(app, make_org, signed_in):
    finance = signed_in("finance")
    page = finance.get("/audit/chain").get_data(as_text=True)
    assert "not verified yet" in page

    response = post_form(finance, "/audit/chain/verify", {}, token_from="/audit/chain")
    assert response.status_code == 302
    assert any(m.startswith("Chain intact:") for m in flashes(finance.get("/audit/chain")))
    page = finance.get("/audit/chain").get_data(as_text=True)
    assert "<strong>intact</strong>" in page and finance.user.email in page

    target = rows(app)[0]  # the events recorded so far (the account's creation, the check)
    as_owner(app, "UPDATE audit_events SET action = 'user.tampered' WHERE id = :id", id=target.id)
    post_form(finance, "/audit/chain/verify", {}, token_from="/audit/chain")
    page = finance.get("/audit/chain").get_data(as_text=True)
    assert "<strong>broken</strong>" in page
    assert f"event id {target.id}, seq {target.seq}" in page
    assert "hash mismatch" in page


def test_verify_without_the_form_token_checks_nothing(app, signed_in):
    client = signed_in("council_admin")
    before = len(rows(app))
    response = client.post("/audit/chain/verify", data={})
    assert response.status_code in (302, 400)
    assert len(rows(app)) == before


def test_audit_log_links_to_the_chain_for_council_admins(app, make_org, signed_in):
    council = signed_in("council_admin")
    assert 'href="/audit/chain"' in council.get("/audit").get_data(as_text=True)
    org_admin = signed_in("org_admin", make_org())
    assert 'href="/audit/chain"' not in org_admin.get("/audit").get_data(as_text=True)


# ------------------------------------------------------------------ concurrency


def test_concurrent_transactions_append_one_chain(app):
    """Real parallel connections, each committing events: one chain, no fork, no gap."""
    with app.app_context():  # PostgreSQL: the head's row lock; SQLite: BEGIN IMMEDIATE
        engine = db.engine
    threads, per_thread, events_each = 8, 5, 3
    start = threading.Barrier(threads)
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            start.wait()
            for t in range(per_thread):
                with Session(engine) as session:
                    bind_scope(session, Scope.council())
                    for e in range(events_each):
                        audit_record(
                            session,
                            actor=Actor.system(f"thread {n}"),
                            action="test.parallel",
                            target_type="thing",
                            target_id=f"{n}-{t}-{e}",
                        )
                    session.commit()
        except BaseException as exc:  # reported below
            errors.append(exc)

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []
    found = rows(app)
    total = threads * per_thread * events_each
    assert [e.seq for e in found] == list(range(1, total + 1))
    assert len({e.prev_hash for e in found}) == total  # no two events share a predecessor
    # the events of one transaction are consecutive: its appends held the head throughout
    by_transaction: dict[str, list[int]] = {}
    for event in found:
        by_transaction.setdefault(event.target_id.rsplit("-", 1)[0], []).append(event.seq)
    for seqs in by_transaction.values():
        assert seqs == list(range(seqs[0], seqs[0] + events_each))
    with app.app_context():
        assert audit_verify(db.session).intact
