"""Explicit tenant scope (issue 12): selectors require a Scope, and it limits their rows.

Two organisations each get a row of every main kind (subscription and seat, invoice,
usage, people and invitations, API token, email domain, audit event). A selector in one
organisation's scope never returns the other's rows and finds the other's objects "not
found"; council scope returns both. Selectors called without a scope are a TypeError:
"every organisation" is never what a missing argument means. The ``TenantMixin``
registry (``portal.db.tenant_tables``) is the schema's map of tenant-owned tables.
"""

from __future__ import annotations

import datetime as dt
import importlib
import inspect
import pkgutil
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa

import portal
from portal.db import (
    MixedTenantMixin,
    TenantMixin,
    db,
    required_tenant_tables,
    tenant_tables,
)
from portal.kernel.actor import Actor, ActorKind, Role
from portal.kernel.clock import now_utc
from portal.kernel.errors import NotFound, PermissionDenied
from portal.kernel.periods import period_of
from portal.kernel.scope import Scope, scope_of
from portal.models import MIXED, TABLE_SCOPES, TENANT
from portal.seats import counts
from tests.conftest import SYSTEM

# ------------------------------------------------------------------ the Scope value


def test_scope_values_say_whose_rows():
    assert Scope.council().is_council and Scope.council().covers(7)
    assert Scope.council().covers(None)
    own = Scope.organisation(7)
    assert not own.is_council
    assert own.covers(7) and not own.covers(8) and not own.covers(None)
    with pytest.raises(TypeError):
        Scope.organisation(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Scope.organisation(True)


def test_scope_of_an_actor():
    assert scope_of(Actor.system("cron")) == Scope.council()
    assert scope_of(Actor.system("job", organisation_id=3)) == Scope.organisation(3)
    staff = Actor(label="a", kind=ActorKind.PERSON, role=Role.FINANCE)
    assert scope_of(staff) == Scope.council()
    member = Actor(label="m", kind=ActorKind.PERSON, role=Role.MEMBER, organisation_id=4)
    assert scope_of(member) == Scope.organisation(4)
    for refused in (
        Actor.anonymous(),
        Actor(label="x", kind=ActorKind.PERSON, role="pirate", organisation_id=4),
        Actor(label="x", kind=ActorKind.PERSON, role=Role.ORG_ADMIN),  # no organisation
    ):
        with pytest.raises(PermissionDenied):
            scope_of(refused)


# ------------------------------------------------------------------ the mixin's registry


def test_tenant_tables_are_the_tables_of_the_mixins(app):
    assert set(tenant_tables()) == {n for n, s in TABLE_SCOPES.items() if s in (TENANT, MIXED)}
    assert set(required_tenant_tables()) == {n for n, s in TABLE_SCOPES.items() if s == TENANT}
    assert tenant_tables() == sorted(tenant_tables())


def test_every_organisation_id_column_comes_from_a_tenant_mixin(app):
    """A model that declares ``organisation_id`` by hand is a tenant table the RLS policies miss."""
    for mapper in db.Model.registry.mappers:
        table = mapper.local_table
        if "organisation_id" not in table.columns:
            continue
        assert issubclass(mapper.class_, TenantMixin | MixedTenantMixin), (
            f"{mapper.class_.__name__} has organisation_id: use TenantMixin or MixedTenantMixin"
        )
        column = table.columns["organisation_id"]
        assert column.nullable == issubclass(mapper.class_, MixedTenantMixin)
        assert {fk.column.table.name for fk in column.foreign_keys} == {"organisations"}


# ------------------------------------------------------------------ no scope, no rows


# The main selectors of tenant-owned rows, with their arguments other than the scope.
def _selectors() -> list[tuple[str, Any, dict[str, Any]]]:
    from portal.api import selectors as api
    from portal.audit import selectors as audit
    from portal.billing import exports, overdue
    from portal.billing import selectors as billing
    from portal.identity import selectors as identity
    from portal.metering import reports
    from portal.metering import selectors as metering
    from portal.payments import selectors as payments
    from portal.seats import selectors as seats
    from portal.sso import selectors as sso

    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    end = dt.datetime(2026, 2, 1, tzinfo=dt.UTC)
    return [
        ("seats.subscriptions_list", seats.subscriptions_list, {}),
        ("seats.subscription_in_scope", seats.subscription_in_scope, {"subscription_id": 1}),
        ("seats.active_seats", seats.active_seats, {"subscription_id": 1}),
        ("billing.invoices_list", billing.invoices_list, {}),
        ("billing.invoice_in_scope", billing.invoice_in_scope, {"invoice_id": 1}),
        ("billing.invoice_detail", billing.invoice_detail, {"invoice_id": 1}),
        ("billing.month_overview", billing.month_overview, {"period": "2026-01"}),
        ("billing.export_rows", exports.export_rows, {"period": "2026-01"}),
        ("billing.past_due_invoices", overdue.past_due_invoices, {"today": start.date()}),
        ("billing.overdue_invoices", overdue.overdue_invoices, {"today": start.date()}),
        ("metering.usage_aggregates", metering.usage_aggregates, {"start": start, "end": end}),
        ("metering.usage_rows", reports.usage_rows, {"start": start, "end": end}),
        ("identity.users_list", identity.users_list, {}),
        ("identity.user_in_scope", identity.user_in_scope, {"user_id": 1}),
        ("identity.invitations_pending", identity.invitations_pending, {}),
        ("identity.invitation_in_scope", identity.invitation_in_scope, {"invitation_id": 1}),
        ("api.tokens_list", api.tokens_list, {}),
        ("api.token_in_scope", api.token_in_scope, {"token_id": 1}),
        ("sso.domain_in_scope", sso.domain_in_scope, {"domain_id": 1}),
        ("audit.audit_events_list", audit.audit_events_list, {}),
        ("payments.collection_for_invoice", payments.collection_for_invoice, {"invoice_id": 1}),
        ("payments.collections_needing_attention", payments.collections_needing_attention, {}),
    ]


@pytest.mark.parametrize("name", [name for name, _, _ in _selectors()])
def test_a_selector_called_without_a_scope_is_a_type_error(app, name):
    _, selector, arguments = next(s for s in _selectors() if s[0] == name)
    with app.app_context():
        with pytest.raises(TypeError, match="scope"):
            selector(db.session, **arguments)
        # Nor does the old spelling still work.
        with pytest.raises(TypeError):
            selector(db.session, organisation_id=None, **arguments)


def _reading_modules() -> list[Any]:
    modules = []
    for info in pkgutil.walk_packages(portal.__path__, "portal."):
        leaf = info.name.rsplit(".", 1)[-1]
        if leaf in ("selectors", "reports", "exports", "overdue", "charges", "drafting"):
            modules.append(importlib.import_module(info.name))
    return modules


def test_no_reader_takes_an_optional_organisation_or_a_default_scope(app):
    """``organisation_id: int | None`` was "every organisation" in some places and "council
    staff" in others; readers take a required ``scope`` instead."""
    modules = _reading_modules()
    assert {"portal.seats.selectors", "portal.identity.selectors"} <= {m.__name__ for m in modules}
    offenders = []
    for module in modules:
        for name, function in inspect.getmembers(module, inspect.isfunction):
            if function.__module__ != module.__name__:
                continue
            parameters = inspect.signature(function).parameters
            scope = parameters.get("scope")
            if scope is not None and scope.default is not inspect.Parameter.empty:
                offenders.append(f"{module.__name__}.{name}: scope has a default")
            organisation = parameters.get("organisation_id")
            if organisation is not None and "None" in str(organisation.annotation):
                offenders.append(f"{module.__name__}.{name}: organisation_id may be None")
    assert offenders == []


# ------------------------------------------------------------------ rows of two tenants


@dataclass
class Tenant:
    id: int
    subscription: int
    seat_holder: str
    invoice: int
    user: int
    invitation: int
    token: int
    domain: int


@pytest.fixture
def two_tenants(app, make_org, make_user, make_product) -> tuple[Tenant, Tenant, int]:
    """Organisations A and B with one row of every main kind each; and a council admin's id."""
    from portal.api.services import token_create
    from portal.audit.services import audit_record
    from portal.billing.models import Invoice
    from portal.catalogue.models import Meter, Product
    from portal.identity.invitations import invitation_create
    from portal.identity.models import Invitation
    from portal.metering.models import UsageDaily, UsageEvent
    from portal.seats.assignments import seat_assign
    from portal.seats.models import Subscription
    from portal.sso.models import EmailDomain
    from portal.tenancy.models import Organisation

    product = make_product(20)
    staff = make_user("council_admin")
    tenants = []
    today = now_utc().date()
    for n, slug in enumerate(("tenant-a", "tenant-b"), start=1):
        org = make_org(slug)
        holder = make_user("member", org=org)
        with app.app_context():
            session = db.session
            organisation = session.get(Organisation, org.id)
            subscription = Subscription(
                organisation_id=org.id,
                product_id=product.id,
                quantity=5,
                requested_quantity=5,
                starts_on=today,
                status="active",
            )
            session.add(subscription)
            session.flush()
            counts.count_reservation(session, subscription, (0, 0))  # as the services keep it
            seat_assign(session, actor=SYSTEM, subscription=subscription, user_email=holder.email)
            invoice = Invoice(organisation_id=org.id, period=period_of(today), currency="EUR")
            session.add(invoice)
            meter = session.scalar(sa.select(Meter).where(Meter.product_id == product.id))
            assert meter is not None and session.get(Product, product.id) is not None
            session.add(
                UsageEvent(
                    organisation_id=org.id,
                    product_id=product.id,
                    meter_id=meter.id,
                    idempotency_key=f"e-{n}",
                    quantity_micros=n * 1_000_000,
                    occurred_at=now_utc() - dt.timedelta(minutes=1),
                )
            )
            # Its rollup, as ingestion would keep it (the usage pages read rollups).
            session.add(
                UsageDaily(
                    organisation_id=org.id,
                    product_id=product.id,
                    meter_id=meter.id,
                    day=(now_utc() - dt.timedelta(minutes=1)).date(),
                    quantity_micros=n * 1_000_000,
                    max_micros=n * 1_000_000,
                    events=1,
                )
            )
            invitation_create(
                session,
                actor=SYSTEM,
                email=f"new@{slug}.example",
                role=Role.MEMBER,
                organisation=organisation,
            )
            token, _ = token_create(
                session,
                actor=SYSTEM,
                scope="organisation",
                organisation=organisation,
                name=f"token {slug}",
                expires_at=None,
            )
            domain = EmailDomain(organisation_id=org.id, domain=f"{slug}.example")
            session.add(domain)
            audit_record(
                session,
                actor=SYSTEM,
                action="test.tenant_row",
                target_type="organisation",
                target_id=org.id,
                organisation_id=org.id,
            )
            session.commit()
            invitation_id = session.scalar(
                sa.select(Invitation.id).where(Invitation.organisation_id == org.id)
            )
            assert invitation_id is not None
            tenants.append(
                Tenant(
                    id=org.id,
                    subscription=subscription.id,
                    seat_holder=holder.email,
                    invoice=invoice.id,
                    user=holder.id,
                    invitation=invitation_id,
                    token=token.id,
                    domain=domain.id,
                )
            )
    with app.app_context():
        audit_record(
            db.session,
            actor=SYSTEM,
            action="test.council_row",
            target_type="settings",
            organisation_id=None,
        )
        invitation_create(
            db.session,
            actor=SYSTEM,
            email="staff@council.example",
            role=Role.FINANCE,
            organisation=None,
        )
        token_create(
            db.session, actor=SYSTEM, scope="council", name="council token", expires_at=None
        )
        db.session.commit()
    a, b = tenants
    return a, b, staff.id


def _lists(session: Any, scope: Scope) -> dict[str, set[int]]:
    """The organisations whose rows each main list selector returns in ``scope``."""
    from portal.api import selectors as api
    from portal.audit import selectors as audit
    from portal.billing import selectors as billing
    from portal.identity import selectors as identity
    from portal.metering import selectors as metering
    from portal.seats import selectors as seats

    start = now_utc() - dt.timedelta(days=1)
    end = now_utc() + dt.timedelta(days=1)
    return {
        "subscriptions": {
            s.organisation_id for s in seats.subscriptions_list(session, scope=scope)
        },
        "invoices": {i.organisation_id for i in billing.invoices_list(session, scope=scope)},
        "usage": {
            a.organisation_id
            for a in metering.usage_aggregates(session, start=start, end=end, scope=scope)
        },
        "people": {
            u.organisation_id for u in identity.users_list(session, scope=scope, per_page=200).items
        },
        "invitations": {
            i.organisation_id for i in identity.invitations_pending(session, scope=scope)
        },
        "tokens": {t.organisation_id for t in api.tokens_list(session, scope=scope)},
        "audit": {
            e.organisation_id
            for e in audit.audit_events_list(session, scope=scope, per_page=200).items
            if e.action.startswith("test.")
        },
    }


def test_an_organisation_scope_returns_that_organisation_s_rows_only(app, two_tenants):
    a, b, _ = two_tenants
    with app.app_context():
        for own in (a, b):
            seen = _lists(db.session, Scope.organisation(own.id))
            assert seen == dict.fromkeys(seen, {own.id}), seen


def test_council_scope_returns_every_organisation_s_rows_and_the_council_s(app, two_tenants):
    a, b, _ = two_tenants
    with app.app_context():
        seen = _lists(db.session, Scope.council())
    both = {a.id, b.id}
    assert seen["subscriptions"] == seen["invoices"] == seen["usage"] == both
    # Mixed tables: the council's own rows (no organisation) are in council scope only.
    assert seen["people"] == seen["invitations"] == seen["tokens"] == seen["audit"] == both | {None}


def test_another_organisation_s_object_is_not_found_in_an_organisation_scope(app, two_tenants):
    from portal.api import selectors as api
    from portal.billing import selectors as billing
    from portal.identity import selectors as identity
    from portal.seats import selectors as seats
    from portal.sso import selectors as sso

    a, b, _ = two_tenants
    lookups = [
        (seats.subscription_in_scope, "subscription_id", "subscription"),
        (billing.invoice_in_scope, "invoice_id", "invoice"),
        (billing.invoice_detail, "invoice_id", "invoice"),
        (identity.user_in_scope, "user_id", "user"),
        (identity.invitation_in_scope, "invitation_id", "invitation"),
        (api.token_in_scope, "token_id", "token"),
        (sso.domain_in_scope, "domain_id", "domain"),
    ]
    with app.app_context():
        for lookup, argument, field in lookups:
            own = lookup(
                db.session, scope=Scope.organisation(a.id), **{argument: getattr(a, field)}
            )
            assert own is not None
            with pytest.raises(NotFound):
                lookup(db.session, scope=Scope.organisation(a.id), **{argument: getattr(b, field)})
            # The council reaches both.
            lookup(db.session, scope=Scope.council(), **{argument: getattr(b, field)})
        # Seats of B's subscription are not listed in A's scope, even by B's subscription's id.
        assert (
            seats.active_seats(
                db.session, scope=Scope.organisation(a.id), subscription_id=b.subscription
            )
            == []
        )
        [seat] = seats.active_seats(
            db.session, scope=Scope.council(), subscription_id=b.subscription
        )
        assert seat.user.email == b.seat_holder


def test_billing_exports_and_overdue_follow_the_scope(app, two_tenants):
    from portal.billing import exports, overdue
    from portal.billing import selectors as billing
    from portal.billing.models import Invoice, InvoiceLine, InvoiceStatus

    a, b, _ = two_tenants
    today = now_utc().date()
    with app.app_context():
        # Issue both invoices without the whole finalisation (no lines needed here).
        db.session.execute(
            sa.update(Invoice)
            .where(Invoice.id.in_([a.invoice, b.invoice]))
            .values(
                status=InvoiceStatus.OPEN,
                number=sa.case((Invoice.id == a.invoice, "T-1"), else_="T-2"),
                due_on=today - dt.timedelta(days=60),
            )
        )
        for tenant in (a, b):
            db.session.add(
                InvoiceLine(
                    organisation_id=tenant.id,
                    invoice_id=tenant.invoice,
                    position=0,
                    kind="adjustment",
                    description="Test line",
                    quantity="1",
                    amount=100,
                )
            )
        db.session.commit()
        period = db.session.get(Invoice, a.invoice).period
        numbers = {a.invoice: "T-1", b.invoice: "T-2"}
        for scope, expected in (
            (Scope.organisation(a.id), {a.invoice}),
            (Scope.organisation(b.id), {b.invoice}),
            (Scope.council(), {a.invoice, b.invoice}),
        ):
            late = overdue.past_due_invoices(db.session, scope=scope, today=today)
            assert {p.invoice.id for p in late} == expected
            assert {
                i.id for i in overdue.overdue_invoices(db.session, scope=scope, today=today)
            } == (expected)
            rows = list(exports.export_rows(db.session, scope=scope, period=period))
            assert {row[2] for row in rows} == {numbers[i] for i in expected}
            overview = billing.month_overview(db.session, scope=scope, period=period)
            assert {i.id for i in overview.invoices} == expected


def test_council_staff_are_named_explicitly_not_by_a_missing_organisation(app, two_tenants):
    from portal.identity import selectors as identity

    a, _, staff_id = two_tenants
    with app.app_context():
        staff = identity.users_list(db.session, scope=Scope.council(), staff_only=True).items
        assert [u.id for u in staff] == [staff_id]
        assert (
            identity.user_in_scope(
                db.session, scope=Scope.council(), staff_only=True, user_id=staff_id
            ).id
            == staff_id
        )
        invited = identity.invitations_pending(db.session, scope=Scope.council(), staff_only=True)
        assert [i.email for i in invited] == ["staff@council.example"]
        # An organisation's member is not council staff; staff are in no organisation's scope.
        with pytest.raises(NotFound):
            identity.user_in_scope(
                db.session, scope=Scope.council(), staff_only=True, user_id=a.user
            )
        with pytest.raises(NotFound):
            identity.user_in_scope(db.session, scope=Scope.organisation(a.id), user_id=staff_id)
        assert (
            identity.users_list(db.session, scope=Scope.organisation(a.id), staff_only=True).items
            == []
        )
