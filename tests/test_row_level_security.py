"""Tenant isolation in PostgreSQL: row-level security and the application's database role.

Migration 0011 forces row-level security on every tenant-owned table; the portal
connects as a role that cannot bypass it (the suite connects as
``portal_test_app``, a member of ``portal_app``; tests/conftest.py), and
``portal.db.bind_scope`` sets the transaction's scope. These tests run queries
that deliberately forget the scope and show the database answers with the
scope's rows only.
"""

from __future__ import annotations

import os

import pytest
import sqlalchemy as sa
from flask import request_finished
from sqlalchemy.orm import Session

from portal.audit.models import AuditEvent
from portal.audit.services import audit_record
from portal.db import bind_scope, bound_scope, council_wide, db, read_only, tenant_tables
from portal.kernel.scope import Scope
from portal.seats.models import Subscription
from portal.sso.models import EmailDomain
from tests.conftest import SYSTEM, TEST_APP_ROLE

postgres_only = pytest.mark.skipif(
    not (os.environ.get("PORTAL_TEST_DATABASE_URL") or "").startswith("postgresql"),
    reason="row-level security is PostgreSQL's; on SQLite the selectors' Scope is the isolation "
    "(run with PORTAL_TEST_DATABASE_URL=postgresql+psycopg://…, as .ci/run does)",
)

POLICY = "tenant_isolation"


@pytest.fixture
def tenants(app, make_org, make_product, make_user):
    """Two organisations, each with a member and a subscription; a council admin."""
    from portal.catalogue.models import Product
    from portal.seats.subscriptions import subscription_create
    from portal.tenancy.models import Organisation

    a, b = make_org("rls-a"), make_org("rls-b")
    product = make_product(capacity=20)
    users = {"a": make_user("member", a), "b": make_user("member", b)}
    users["council"] = make_user("council_admin")
    with app.app_context():
        for org in (a, b):
            subscription_create(
                db.session,
                actor=SYSTEM,
                organisation=db.session.get(Organisation, org.id),
                product=db.session.get(Product, product.id),
                quantity=3,
            )
        db.session.commit()
    return a, b, users


def scoped(scope: Scope | None) -> Session:
    """A session of the portal's engine (the application role) in ``scope``."""
    session = Session(bind=db.engine)
    bind_scope(session, scope)
    return session


# ------------------------------------------------------------------ the role


@postgres_only
def test_the_portal_connects_as_a_role_that_cannot_bypass_row_level_security(app):
    with app.app_context(), db.engine.connect() as conn:
        row = conn.execute(
            sa.text(
                "SELECT current_user AS name, rolsuper, rolbypassrls "
                "FROM pg_roles WHERE rolname = current_user"
            )
        ).one()
        assert row.name == TEST_APP_ROLE
        assert row.rolsuper is False
        assert row.rolbypassrls is False
        assert conn.scalar(sa.text("SELECT pg_has_role(current_user, 'portal_app', 'MEMBER')"))
        owners = set(
            conn.scalars(
                sa.text("SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'")
            )
        )
        assert TEST_APP_ROLE not in owners and "portal_app" not in owners
        for owner in owners:  # nor may it become the owner
            assert not conn.scalar(
                sa.text("SELECT pg_has_role(current_user, :owner, 'MEMBER')"), {"owner": owner}
            )


@postgres_only
def test_every_tenant_owned_table_forces_row_level_security_with_the_policy(app):
    with app.app_context(), db.engine.connect() as conn:
        covered = {
            row.relname: (row.relrowsecurity, row.relforcerowsecurity)
            for row in conn.execute(
                sa.text(
                    "SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity FROM pg_class c "
                    "JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND c.relrowsecurity"
                )
            )
        }
        policies = set(
            conn.scalars(
                sa.text("SELECT tablename FROM pg_policies WHERE policyname = :p"), {"p": POLICY}
            )
        )
    with_organisation = {t.name for t in db.metadata.sorted_tables if "organisation_id" in t.c}
    expected = with_organisation | {"organisations"}
    assert set(tenant_tables()) <= with_organisation  # the models' registry agrees
    assert set(covered) == expected, (
        "add the table to migration 0011's TENANT_TABLES (or a new migration)"
    )
    assert all(enabled and forced for enabled, forced in covered.values())
    assert policies == expected


@postgres_only
def test_every_table_under_row_level_security_lets_the_council_role_see_everything(app):
    """Migration 0032: a second policy, for ``portal_council`` only, on every such table."""
    with app.app_context(), db.engine.connect() as conn:
        secured = set(
            conn.scalars(
                sa.text(
                    "SELECT c.relname FROM pg_class c JOIN pg_namespace n "
                    "ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relrowsecurity"
                )
            )
        )
        council = {
            row.tablename: (tuple(row.roles), row.qual, row.with_check, row.permissive)
            for row in conn.execute(
                sa.text(
                    "SELECT tablename, roles::text[] AS roles, qual, with_check, permissive "
                    "FROM pg_policies WHERE policyname = 'council_scope'"
                )
            )
        }
    assert secured and set(council) == secured, "a new table needs migration 0032's policy too"
    assert set(council.values()) == {(("portal_council",), "true", "true", "PERMISSIVE")}


@postgres_only
def test_the_login_role_may_switch_to_the_council_role_but_does_not_hold_it(app):
    with app.app_context(), db.engine.connect() as conn:
        member, holds = conn.execute(
            sa.text(
                "SELECT pg_has_role(session_user, 'portal_council', 'MEMBER'), "
                "pg_has_role(session_user, 'portal_council', 'USAGE')"
            )
        ).one()
        assert member is True  # through portal_council_members (tests/conftest.py)
        assert holds is False  # portal_council_members is NOINHERIT: its policy is not ours
        assert conn.scalar(sa.text("SELECT count(*) FROM subscriptions")) == 0  # no scope


def _plan(session: Session) -> str:
    rows = session.execute(sa.text("EXPLAIN (VERBOSE) SELECT id FROM invoices ORDER BY id LIMIT 5"))
    return "\n".join(rows.scalars())


@postgres_only
def test_council_wide_transactions_run_as_the_council_role_and_narrow_back(app, tenants):
    a, b, _ = tenants
    orgs = sa.select(Subscription.organisation_id).distinct()
    role = sa.text("SELECT current_user")
    with app.app_context():
        council = scoped(Scope.council())
        try:
            assert council.scalar(role) == "portal_council"
            assert {a.id, b.id} <= set(council.scalars(orgs))
            # The planner sees no policy filter at all (the point of the role) ...
            assert "portal.scope" not in _plan(council)
            council.commit()
            assert council.scalar(role) == "portal_council"  # every transaction of the session
        finally:
            council.close()
        session = scoped(Scope.organisation(a.id))
        try:
            assert session.scalar(role) == TEST_APP_ROLE
            assert "portal.scope" in _plan(session)  # ... which an organisation's has
            with council_wide(session):
                assert session.scalar(role) == "portal_council"
                assert {a.id, b.id} <= set(session.scalars(orgs))
            assert session.scalar(role) == TEST_APP_ROLE  # narrowed back in the same transaction
            assert set(session.scalars(orgs)) == {a.id}
            bind_scope(session, None)
            assert session.scalar(role) == TEST_APP_ROLE
            assert session.scalar(sa.select(sa.func.count()).select_from(Subscription)) == 0
        finally:
            session.close()


@postgres_only
def test_a_login_role_holding_the_council_role_itself_does_not_isolate(app, tenants):
    """Granted ``portal_council`` directly (not through the NOINHERIT
    ``portal_council_members``), a login role would see every organisation in every
    transaction: ``/readyz``'s check says so. The role is this test's own, dropped after."""
    import uuid

    from portal.db import database_role_isolates
    from tests.conftest import owner_engine

    name = f"portal_test_always_council_{uuid.uuid4().hex[:12]}"
    with app.app_context():
        owner = owner_engine(app)
        with owner.connect() as conn:
            conn.execute(sa.text(f"CREATE ROLE {name} LOGIN PASSWORD '{name}' NOSUPERUSER"))
            conn.execute(sa.text(f"GRANT portal_council TO {name}"))
            conn.commit()
        always = sa.create_engine(
            db.engine.url.set(username=name, password=name), poolclass=sa.pool.NullPool
        )
        try:
            with always.connect() as conn:  # no scope set, yet every organisation
                seen = set(conn.scalars(sa.text("SELECT organisation_id FROM users")))
                assert {tenants[0].id, tenants[1].id} <= seen
            assert database_role_isolates(always) is False
            assert database_role_isolates(db.engine) is True
        finally:
            always.dispose()
            with owner.connect() as conn:
                conn.execute(sa.text(f"DROP ROLE {name}"))
                conn.commit()


# ------------------------------------------------------------------ isolation


@postgres_only
def test_an_unscoped_query_in_an_organisations_transaction_sees_that_organisation_only(
    app, tenants
):
    a, b, users = tenants
    with app.app_context():
        session = scoped(Scope.organisation(a.id))
        try:
            # Deliberately no WHERE: the database adds the organisation.
            subscriptions = session.execute(sa.select(Subscription)).scalars().all()
            assert subscriptions and {s.organisation_id for s in subscriptions} == {a.id}
            people = session.execute(sa.text("SELECT organisation_id FROM users")).scalars().all()
            assert set(people) == {a.id}  # not b's, not council staff (no organisation)
            assert session.execute(sa.text("SELECT id FROM organisations")).scalars().all() == [
                a.id
            ]
            assert not session.scalar(
                sa.select(sa.func.count())
                .select_from(Subscription)
                .where(Subscription.organisation_id == b.id)
            )
        finally:
            session.close()


@postgres_only
def test_council_scope_sees_every_organisation_and_council_staff(app, tenants):
    a, b, users = tenants
    with app.app_context():
        session = scoped(Scope.council())
        try:
            orgs = set(session.scalars(sa.select(Subscription.organisation_id)))
            assert {a.id, b.id} <= orgs
            people = set(session.execute(sa.text("SELECT organisation_id FROM users")).scalars())
            assert {a.id, b.id, None} <= people
        finally:
            session.close()


@postgres_only
def test_no_scope_means_no_rows(app, tenants):
    with app.app_context():
        session = scoped(None)
        try:
            for table in (
                "subscriptions",
                "users",
                "organisations",
                "user_sessions",
                "audit_events",
            ):
                assert session.scalar(sa.text(f"SELECT count(*) FROM {table}")) == 0, table  # noqa: S608
        finally:
            session.close()
        # Nor a connection used without a session at all.
        with db.engine.connect() as conn:
            assert conn.scalar(sa.text("SELECT count(*) FROM subscriptions")) == 0
            assert conn.scalar(sa.text("SELECT count(*) FROM users")) == 0


@postgres_only
def test_writing_another_organisations_row_is_refused(app, tenants):
    a, b, _ = tenants
    with app.app_context():
        session = scoped(Scope.organisation(a.id))
        try:
            session.add(EmailDomain(domain="rls-b.example", organisation_id=b.id))
            with pytest.raises(sa.exc.ProgrammingError, match="row-level security"):
                session.flush()
            session.rollback()
            with pytest.raises(sa.exc.ProgrammingError, match="row-level security"):
                session.execute(
                    sa.update(Subscription)
                    .where(Subscription.organisation_id == a.id)
                    .values(organisation_id=b.id)
                )
            session.rollback()
            # Another organisation's rows cannot be changed or deleted: they are not there.
            changed = session.execute(
                sa.text("UPDATE subscriptions SET quantity = 1 WHERE organisation_id = :b"),
                {"b": b.id},
            )
            assert changed.rowcount == 0
            gone = session.execute(
                sa.text("DELETE FROM seat_assignments WHERE organisation_id = :b"), {"b": b.id}
            )
            assert gone.rowcount == 0
            session.rollback()
            # Its own rows it may write.
            session.add(EmailDomain(domain="rls-a.example", organisation_id=a.id))
            session.flush()
            session.rollback()
        finally:
            session.close()


# ------------------------------------------------------------------ what the role may not do


@postgres_only
def test_audit_events_are_insert_only_for_the_application(app, tenants):
    with app.app_context():
        session = scoped(Scope.council())
        try:
            audit_record(
                session, actor=SYSTEM, action="rls.test", target_type="test", target_label="x"
            )
            session.commit()
            assert session.scalar(sa.select(sa.func.count()).select_from(AuditEvent)) >= 1
            for statement in (
                "UPDATE audit_events SET action = 'forged'",
                "DELETE FROM audit_events",
                "TRUNCATE audit_events",
            ):
                with pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
                    session.execute(sa.text(statement))
                session.rollback()
        finally:
            session.close()


@postgres_only
@pytest.mark.parametrize(
    "statement",
    [
        "ALTER TABLE subscriptions DISABLE ROW LEVEL SECURITY",
        "ALTER TABLE subscriptions NO FORCE ROW LEVEL SECURITY",
        "DROP POLICY tenant_isolation ON subscriptions",
        "CREATE POLICY everything ON subscriptions USING (true)",
        "SET ROLE postgres",
        "ALTER ROLE portal_test_app BYPASSRLS",
    ],
)
def test_the_application_role_cannot_switch_row_level_security_off(app, tenants, statement):
    with app.app_context():
        session = scoped(Scope.organisation(tenants[0].id))
        try:
            with pytest.raises(
                sa.exc.DBAPIError, match="must be owner|permission denied|must be superuser"
            ):
                session.execute(sa.text(statement))
        finally:
            session.close()


@postgres_only
def test_row_security_off_does_not_show_more_rows(app, tenants):
    """``SET row_security = off`` makes a query that RLS would filter fail; it never bypasses."""
    with app.app_context():
        session = scoped(Scope.organisation(tenants[0].id))
        try:
            session.execute(sa.text("SET LOCAL row_security = off"))
            with pytest.raises(sa.exc.ProgrammingError, match="row-level security"):
                session.execute(sa.text("SELECT count(*) FROM subscriptions"))
        finally:
            session.close()


# ------------------------------------------------------------------ bind_scope and council_wide


@postgres_only
def test_the_scope_holds_for_every_transaction_of_the_session_and_changes_at_once(app, tenants):
    a, b, _ = tenants
    count = sa.select(sa.func.count(sa.distinct(Subscription.organisation_id)))
    orgs = sa.select(Subscription.organisation_id).distinct()
    with app.app_context():
        session = scoped(Scope.organisation(a.id))
        try:
            assert set(session.scalars(orgs)) == {a.id}
            session.commit()
            assert set(session.scalars(orgs)) == {a.id}  # the next transaction too
            bind_scope(session, Scope.organisation(b.id))  # inside an open transaction: at once
            assert set(session.scalars(orgs)) == {b.id}
            with council_wide(session):
                assert session.scalar(count) == 2
                assert bound_scope(session) == Scope.council()
            assert set(session.scalars(orgs)) == {b.id}
            assert bound_scope(session) == Scope.organisation(b.id)
            bind_scope(session, None)
            assert session.scalar(count) == 0
        finally:
            session.close()


@postgres_only
def test_a_read_in_autocommit_is_scoped_and_its_connection_goes_back_clear(app, tenants):
    """``read_only`` reads in autocommit (no transaction to hold a setting): the scope is set
    on the connection and cleared when the connection returns to the pool."""
    a, _, _ = tenants
    with app.app_context():
        engine = sa.create_engine(db.engine.url, pool_size=1, max_overflow=0)
        try:
            session = Session(bind=engine)
            bind_scope(session, Scope.organisation(a.id))
            read_only(session)
            assert set(session.scalars(sa.select(Subscription.organisation_id).distinct())) == {
                a.id
            }
            session.close()
            with engine.connect() as conn:  # the same (only) connection
                assert conn.scalar(sa.text("SELECT current_setting('portal.scope', true)")) in (
                    "",
                    None,
                )
                assert conn.scalar(sa.text("SELECT count(*) FROM subscriptions")) == 0
            session = Session(bind=engine)  # council-wide: as portal_council, for the connection
            bind_scope(session, Scope.council())
            read_only(session)
            assert session.scalar(sa.text("SELECT current_user")) == "portal_council"
            session.close()
            with engine.connect() as conn:  # back as the login role, seeing nothing
                assert conn.scalar(sa.text("SELECT current_user")) == TEST_APP_ROLE
                assert conn.scalar(sa.text("SELECT count(*) FROM subscriptions")) == 0
        finally:
            engine.dispose()


# ------------------------------------------------------------------ the portal's own paths


class Seen:
    """The scope and the visible organisations of each request, noted as it finishes."""

    def __init__(self, app) -> None:
        self.app, self.scopes, self.orgs = app, [], []

    def _note(self, sender, response, **_) -> None:
        self.scopes.append(bound_scope(db.session))
        self.orgs.append(
            set(db.session.scalars(sa.select(Subscription.organisation_id).distinct()))
        )

    def __enter__(self) -> Seen:
        request_finished.connect(self._note, self.app)
        return self

    def __exit__(self, *exc) -> None:
        request_finished.disconnect(self._note, self.app)


@postgres_only
def test_a_page_request_runs_in_the_signed_in_persons_scope(app, tenants):
    from tests.conftest import login

    a, _, users = tenants
    client = app.test_client()
    assert login(client, users["a"]).status_code == 302
    with Seen(app) as seen:
        assert client.get("/my").status_code == 200
        client.get("/login")  # an authentication page: explicitly council-wide (redirects)
        app.test_client().get("/")  # nobody signed in: no scope
    assert seen.scopes == [Scope.organisation(a.id), Scope.council(), None]
    assert seen.orgs[0] == {a.id}
    assert seen.orgs[2] == set()


@postgres_only
def test_an_organisation_tokens_api_request_runs_in_its_organisations_scope(app, tenants):
    from portal.api import services as api_services
    from portal.tenancy.models import Organisation

    a, b, _ = tenants
    with app.app_context():
        _, plaintext = api_services.token_create(
            db.session,
            actor=SYSTEM,
            scope="organisation",
            organisation=db.session.get(Organisation, a.id),
            name="rls",
        )
        db.session.commit()
    with Seen(app) as seen:
        response = app.test_client().get(
            "/api/v1/subscriptions", headers={"Authorization": f"Bearer {plaintext}"}
        )
    assert response.status_code == 200, response.get_data(as_text=True)
    assert seen.scopes == [Scope.organisation(a.id)]
    assert seen.orgs == [{a.id}]


@postgres_only
def test_command_line_work_is_council_wide(app, tenants, runner):
    result = runner.invoke(args=["token", "create", "--scope", "organisation", "--org", "rls-b"])
    # The command found the organisation: its session was bound council-wide (in a command,
    # test code's own default does not apply; without a scope it would see no organisation).
    assert result.exit_code == 0, result.output
    assert "for rls-b" in result.output


def test_the_council_wide_pages_exist(app):
    """Every endpoint named council-wide is a real one (a renamed view would fail closed, and
    this says why)."""
    from portal.identity.auth import COUNCIL_WIDE_ENDPOINTS

    assert set(app.view_functions) >= COUNCIL_WIDE_ENDPOINTS


@postgres_only
def test_production_is_not_ready_on_a_role_that_bypasses_row_level_security(
    app, monkeypatch, tmp_path
):
    from cryptography.fernet import Fernet

    from portal import create_app
    from tests.conftest import owner_engine

    monkeypatch.setenv("PORTAL_ENV", "production")
    monkeypatch.setenv("PORTAL_SECRET_KEY", Fernet.generate_key().decode())
    monkeypatch.setenv("PORTAL_ENCRYPTION_KEY", Fernet.generate_key().decode())
    monkeypatch.setenv("PORTAL_INSTANCE_PATH", str(tmp_path))
    monkeypatch.setenv("PORTAL_SINGLE_PROCESS", "1")
    with app.app_context():
        owner_url = owner_engine(app).url.render_as_string(hide_password=False)
    answers = {}
    for name, url in (
        ("app role", app.config["SQLALCHEMY_DATABASE_URI"]),
        ("owner", owner_url),
    ):
        prod = create_app({"SQLALCHEMY_DATABASE_URI": url})
        response = prod.test_client().get("/readyz")
        answers[name] = (response.status_code, response.get_json()["checks"].get("database_role"))
        with prod.app_context():
            db.engine.dispose()
    assert answers["app role"][1] == "ok"  # (other checks may fail here: no broker, say)
    assert answers["owner"][0] == 503 and answers["owner"][1] == "failing"
