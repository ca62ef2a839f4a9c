"""The drafting engine: a month's seats and usage rated into draft invoices.

One organisation's draft (:func:`invoice_draft_refresh`) and the invoice run's
batches (:func:`drafts_write`, driven by :mod:`portal.billing.jobs`) go the
same way: :func:`draft_inputs` loads what the month's drafts are computed from,
:func:`drafts_write` writes them with a few statements per batch, whatever its
size (``INSERT ... ON CONFLICT DO NOTHING`` per dialect, binary ``COPY`` of the
lines on PostgreSQL, an advisory lock on the month). Late usage of earlier,
finalised months is billed on the next draft. A draft is the only invoice this
module writes: a finalised one is never touched (invariant 4); state changes
after drafting live in :mod:`portal.billing.lifecycle`.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from dataclasses import dataclass
from typing import cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from portal import i18n
from portal.audit.services import audit_record
from portal.billing.access import FINANCE_ONLY
from portal.billing.charges import (
    Catalogue,
    Charge,
    catalogue_load,
    council_products,
    council_quantities_load,
    council_quantities_of,
    rate_charges,
    subscriptions_in,
)
from portal.billing.models import ISSUED, Invoice, InvoiceLine, InvoiceStatus
from portal.billing.rating import metered_amount, tax_amount
from portal.db import is_postgres
from portal.kernel import policy
from portal.kernel.actor import Actor
from portal.kernel.clock import now_utc
from portal.kernel.errors import DomainError, InvalidState, ValidationFailed
from portal.kernel.i18n import _l, _n
from portal.kernel.periods import period_bounds
from portal.kernel.policy import Action
from portal.kernel.scope import Scope
from portal.metering.models import UsageEvent
from portal.metering.selectors import Aggregate, usage_aggregates
from portal.settings.services import settings_get
from portal.tenancy.models import Organisation

# The tables, for Core statements (the ORM types ``__table__`` as any FROM clause).
INVOICES = cast(sa.Table, Invoice.__table__)
INVOICE_LINES = cast(sa.Table, InvoiceLine.__table__)
REVERSE_CHARGE_NOTE = _l(
    "Reverse charge: VAT is to be accounted for by the recipient of the services."
)


@functools.lru_cache(maxsize=8)
def _reverse_charge_note(language: str | None) -> str:
    """The note in the invoice's language (stored with the invoice, as drafted)."""
    with i18n.in_language(language):
        return str(REVERSE_CHARGE_NOTE)


def _late_charges(
    session: Session,
    *,
    organisation_id: int,
    currency: str,
    before: str,
    now: dt.datetime,
    catalogue: Catalogue | None = None,
) -> list[Charge]:
    """Usage of earlier, already finalised months that arrived after their invoice counted usage.

    For each such month the charge is the month's rated usage with late events
    included minus the same without them, so tiers apply to the month's whole
    volume. ``source`` records the window of receipt, which is the watermark the
    next invoice starts from.
    """
    finalised = session.execute(
        sa.select(Invoice.period, Invoice.usage_counted_until).where(
            Invoice.organisation_id == organisation_id,
            Invoice.currency == currency,
            Invoice.period < before,
            Invoice.status.in_(ISSUED),
            Invoice.usage_counted_until.is_not(None),
        )
    ).all()
    if not finalised:
        return []
    watermarks: dict[str, dt.datetime] = {}
    for period, counted_until in finalised:
        if counted_until is not None:  # always (the query asks for it): for the type checker
            watermarks[period] = counted_until
    for (source,) in session.execute(
        sa.select(InvoiceLine.source)
        .join(Invoice, Invoice.id == InvoiceLine.invoice_id)
        .where(
            InvoiceLine.organisation_id == organisation_id,
            InvoiceLine.kind == "late_usage",
            Invoice.status.in_(ISSUED),
        )
    ):
        period = source.get("period")
        until = dt.datetime.fromisoformat(source["received_until"])
        if period in watermarks and until > watermarks[period]:
            watermarks[period] = until

    if catalogue is None:
        catalogue = catalogue_load(session, currency)
    prices = catalogue.metered.get(currency, {})
    charges: list[Charge] = []
    for period, watermark in sorted(watermarks.items()):
        start, end = period_bounds(period)
        late_exists = session.scalar(
            sa.select(sa.func.count())
            .select_from(UsageEvent)
            .where(
                UsageEvent.organisation_id == organisation_id,
                UsageEvent.occurred_at >= start,
                UsageEvent.occurred_at < end,
                UsageEvent.received_at > watermark,
                UsageEvent.received_at <= now,
            )
        )
        if not late_exists:
            continue
        with_late = {
            a.meter_id: a
            for a in usage_aggregates(
                session,
                start=start,
                end=end,
                scope=Scope.organisation(organisation_id),
                received_until=now,
            )
        }
        before_late = {
            a.meter_id: a
            for a in usage_aggregates(
                session,
                start=start,
                end=end,
                scope=Scope.organisation(organisation_id),
                received_until=watermark,
            )
        }
        for meter_id, aggregate in with_late.items():
            price = prices.get(meter_id)
            if price is None:
                continue

            def rate(quantity, price=price) -> int:
                return metered_amount(
                    quantity=quantity,
                    unit_amount=price.unit_amount,
                    tier_mode=price.tier_mode,
                    tiers=price.tiers,
                )

            old = before_late.get(meter_id)
            old_value = old.value if old else 0
            amount = rate(aggregate.value) - rate(old_value)
            extra_events = aggregate.events - (old.events if old else 0)
            if extra_events <= 0:
                continue
            sku, name = catalogue.products[aggregate.product_id]
            meter_key, meter_name = catalogue.meters[meter_id]
            charges.append(
                Charge(
                    kind="late_usage",
                    product_id=aggregate.product_id,
                    product_sku=sku,
                    description=_n(
                        "Late usage for %(period)s: %(product)s, %(meter)s "
                        "(%(num)d event received after that invoice)",
                        "Late usage for %(period)s: %(product)s, %(meter)s "
                        "(%(num)d events received after that invoice)",
                        extra_events,
                        period=period,
                        product=name,
                        meter=meter_name,
                    ),
                    quantity=aggregate.value - old_value,
                    unit_amount=None if price.tiers else price.unit_amount,
                    amount=max(0, amount),
                    currency=currency,
                    source={
                        "period": period,
                        "meter": meter_key,
                        "events": extra_events,
                        "received_after": watermark.isoformat(),
                        "received_until": now.isoformat(),
                    },
                )
            )
    return charges


@dataclass(frozen=True)
class Billed:
    """What a draft needs of its organisation (a snapshot: it outlives each commit)."""

    id: int
    slug: str
    currency: str
    tax_rate_bp: int | None
    reverse_charge: bool
    # The language its invoices speak (their lines' descriptions too); None: English.
    invoice_language: str | None = None

    @classmethod
    def of(cls, organisation: Organisation) -> Billed:
        return cls(
            organisation.id,
            organisation.slug,
            organisation.currency,
            organisation.tax_rate_bp,
            organisation.reverse_charge,
            organisation.invoice_language,
        )


@dataclass
class DraftInputs:
    """Everything a month's drafts are computed from, for one organisation or for all.

    An invoice run loads it once (a handful of queries, the month's usage in one
    grouped query) and then writes each organisation's draft from it; the rules
    are the same as for one draft refreshed on its own.
    """

    period: str
    start: dt.datetime
    end: dt.datetime
    now: dt.datetime
    default_tax_rate_bp: int
    catalogue: Catalogue
    subscriptions: dict[int, list[tuple[int, int]]]
    history: dict[int, list[tuple[dt.datetime, int]]]
    usage: dict[int, list[Aggregate]]
    # (organisation, currency) of the period's invoices that exist, when loaded for all:
    # the others are created without a first look (the unique constraint decides).
    existing: set[tuple[int, str]] | None = None
    # Organisations with finalised invoices of earlier months (only they can have late
    # usage), when loaded for all; None: look for each.
    finalised_before: set[tuple[int, str]] | None = None
    # The council-wide average reserved seats of each product with a council-basis seat
    # price (SPEC 8.3): product id -> seats.
    council_quantities: dict[int, int] | None = None


def draft_inputs(session: Session, *, period: str, now: dt.datetime, scope: Scope) -> DraftInputs:
    """Load what the period's drafts need, for the organisations in ``scope``."""
    start, end = period_bounds(period)
    if start >= now:
        raise ValidationFailed(
            _l("%(period)s has not started; invoice a month that has.", period=period),
            errors={"period": [_l("Choose the current month or an earlier one.")]},
        )
    first = start.date()
    last = (end - dt.timedelta(microseconds=1)).date()
    subscriptions, history = subscriptions_in(
        session, first=first, last=last, until=end, scope=scope
    )
    usage: dict[int, list[Aggregate]] = {}
    for aggregate in usage_aggregates(
        session, start=start, end=end, scope=scope, received_until=now
    ):
        usage.setdefault(aggregate.organisation_id, []).append(aggregate)
    inputs = DraftInputs(
        period=period,
        start=start,
        end=end,
        now=now,
        default_tax_rate_bp=settings_get(session).default_tax_rate_bp,
        catalogue=catalogue_load(session),
        subscriptions=subscriptions,
        history=history,
        usage=usage,
    )
    if scope.is_council:
        # Every organisation's subscriptions are loaded already: no second read.
        inputs.council_quantities = council_quantities_of(
            products=council_products(inputs.catalogue),
            period_start=start,
            subscriptions=subscriptions,
            history=history,
        )
    else:
        inputs.council_quantities = council_quantities_load(
            session, catalogue=inputs.catalogue, period_start=start
        )
    if scope.is_council:
        inputs.existing = {
            (org_id, currency)
            for org_id, currency in session.execute(
                sa.select(Invoice.organisation_id, Invoice.currency).where(Invoice.period == period)
            )
        }
        inputs.finalised_before = {
            (org_id, currency)
            for org_id, currency in session.execute(
                sa.select(Invoice.organisation_id, Invoice.currency)
                .where(
                    Invoice.period < period,
                    Invoice.status.in_(ISSUED),
                    Invoice.usage_counted_until.is_not(None),
                )
                .distinct()
            )
        }
    return inputs


_INSERT_DRAFT: dict[str, sa.Insert] = {}
_INVOICE_DRAFTS_LOCK = 0x1A5E  # pg_advisory_xact_lock(this, YYYYMM): drafts of one month


def _insert_drafts(session: Session, rows: list[dict]) -> dict[int, int]:
    """INSERT the drafts unless their (organisation, period, currency) one exists.

    One statement for all rows; returns {organisation id: new invoice id} for the
    rows inserted (a row that met an existing invoice is left out).
    """
    dialect = session.get_bind().dialect.name
    statement = _INSERT_DRAFT.get(dialect)
    if statement is None:  # built once per dialect (ON CONFLICT is written per dialect)
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        table = INVOICES
        statement = _INSERT_DRAFT[dialect] = (
            insert(table)
            .on_conflict_do_nothing(index_elements=["organisation_id", "period", "currency"])
            .returning(table.c.organisation_id, table.c.id)
        )
    return dict(session.execute(statement, rows).all())


def _lock_drafts(
    session: Session, organisations: list[Billed], period: str
) -> dict[int, tuple[int, str]]:
    """The period's invoices of the organisations: {organisation id: (id, status)}, locked.

    Rows are locked in organisation order, so runs that meet wait for each other
    rather than deadlock.
    """
    if not organisations:
        return {}
    currency_of = {o.id: o.currency for o in organisations}
    rows = session.execute(
        sa.select(Invoice.organisation_id, Invoice.currency, Invoice.id, Invoice.status)
        .where(Invoice.period == period, Invoice.organisation_id.in_(currency_of))
        .order_by(Invoice.organisation_id, Invoice.id)
        .with_for_update()
    )
    return {
        org_id: (invoice_id, status)
        for org_id, currency, invoice_id, status in rows
        if currency_of[org_id] == currency
    }


@dataclass
class Drafted:
    """What :func:`drafts_write` did for one organisation."""

    organisation: Billed
    invoice_id: int | None
    outcome: str  # created, refreshed, unchanged, empty, failed
    error: DomainError | None = None


def drafts_write(
    session: Session, *, actor: Actor, organisations: list[Billed], inputs: DraftInputs
) -> list[Drafted]:
    """Create or refresh the organisations' drafts from ``inputs``, in one transaction.

    Outcomes as :func:`invoice_draft_refresh`, or ``failed`` with the domain
    error that stopped one organisation's charges (the others are written). The
    organisations' existing invoices are locked first; a finalised one is never
    touched. New drafts are inserted in one statement with ``ON CONFLICT DO
    NOTHING``: one that another run created a moment ago is locked and
    refreshed. On PostgreSQL a transaction-scoped advisory lock on the month
    makes concurrent runs take turns, a batch at a time. Every write is one
    statement for the whole batch (inserts, deletes and updates as executemany),
    so a batch costs a few round trips however many organisations it holds.
    """
    policy.require_may(actor, Action.INVOICE_DRAFT, message=FINANCE_ONLY)
    period = inputs.period
    if is_postgres(session):
        session.execute(
            sa.select(
                sa.func.pg_advisory_xact_lock(_INVOICE_DRAFTS_LOCK, int(period[:4] + period[5:]))
            )
        )
    found = _lock_drafts(
        session,
        [
            o
            for o in organisations
            if inputs.existing is None or (o.id, o.currency) in inputs.existing
        ],
        period,
    )
    results: list[Drafted] = []
    to_write: list[tuple[Drafted, list[Charge], dict]] = []
    to_delete: list[int] = []
    for organisation in organisations:
        existing = found.get(organisation.id)
        if existing is not None and existing[1] != InvoiceStatus.DRAFT:
            results.append(Drafted(organisation, existing[0], "unchanged"))
            continue
        try:
            charges = _draft_charges(session, organisation, inputs)
        except DomainError as error:
            results.append(Drafted(organisation, None, "failed", error))
            continue
        if not charges:
            if existing is not None:
                to_delete.append(existing[0])
            results.append(Drafted(organisation, None, "empty"))
            continue
        drafted = Drafted(
            organisation, existing[0] if existing else None, "refreshed" if existing else "created"
        )
        results.append(drafted)
        to_write.append((drafted, charges, _draft_values(organisation, charges, inputs)))

    new = [(d, values) for d, _, values in to_write if d.invoice_id is None]
    if new:
        inserted = _insert_drafts(
            session,
            [
                {
                    "organisation_id": d.organisation.id,
                    "period": period,
                    "currency": d.organisation.currency,
                    "status": InvoiceStatus.DRAFT,
                    **values,
                }
                for d, values in new
            ],
        )
        for d, _ in new:
            d.invoice_id = inserted.get(d.organisation.id)
        # Another run created these a moment ago: refresh theirs (or leave a finalised one).
        raced = _lock_drafts(
            session, [d.organisation for d, _ in new if d.invoice_id is None], period
        )
        for d, _ in new:
            if d.invoice_id is None:
                invoice_id, status = raced[d.organisation.id]
                d.invoice_id = invoice_id
                d.outcome = "refreshed" if status == InvoiceStatus.DRAFT else "unchanged"
        to_write = [w for w in to_write if w[0].outcome != "unchanged"]

    refreshed = [(d, values) for d, _, values in to_write if d.outcome == "refreshed"]
    stale = to_delete + [d.invoice_id for d, _ in refreshed]
    if stale:
        session.execute(sa.delete(InvoiceLine).where(InvoiceLine.invoice_id.in_(stale)))
    if to_delete:
        session.execute(sa.delete(Invoice).where(Invoice.id.in_(to_delete)))
    if refreshed:
        invoices = INVOICES
        session.execute(
            sa.update(invoices)
            .where(invoices.c.id == sa.bindparam("invoice_id"))
            .values({name: sa.bindparam(f"new_{name}") for name in refreshed[0][1]}),
            [
                {"invoice_id": d.invoice_id, **{f"new_{k}": v for k, v in values.items()}}
                for d, values in refreshed
            ],
        )
    if to_write:
        _insert_lines(
            session,
            [
                _line_row(d.organisation.id, d.invoice_id, position, charge)
                for d, charges, _ in to_write
                for position, charge in enumerate(charges)
            ],
        )
    for d, charges, values in to_write:
        audit_record(
            session,
            actor=actor,
            action=f"invoice.draft_{d.outcome}",
            target_type="invoice",
            target_id=d.invoice_id,
            target_label=f"{d.organisation.slug} {period}",
            organisation_id=d.organisation.id,
            after={
                "subtotal": values["subtotal"],
                "tax": values["tax"],
                "total": values["total"],
                "lines": len(charges),
            },
        )
    return results


def _draft_charges(session: Session, organisation: Billed, inputs: DraftInputs) -> list[Charge]:
    """The organisation's charges for the month, with late usage of earlier months.

    Their descriptions are written in the organisation's invoice language, whoever asks.
    """
    with i18n.in_language(organisation.invoice_language):
        return _charges_in_language(session, organisation, inputs)


def _charges_in_language(
    session: Session, organisation: Billed, inputs: DraftInputs
) -> list[Charge]:
    charges = rate_charges(
        currency=organisation.currency,
        period_start=inputs.start,
        until=inputs.end,
        catalogue=inputs.catalogue,
        subscriptions=inputs.subscriptions.get(organisation.id, []),
        history=inputs.history,
        aggregates=inputs.usage.get(organisation.id, []),
        council_quantities=inputs.council_quantities,
    )
    if (
        inputs.finalised_before is None
        or (organisation.id, organisation.currency) in inputs.finalised_before
    ):
        charges += _late_charges(
            session,
            organisation_id=organisation.id,
            currency=organisation.currency,
            before=inputs.period,
            now=inputs.now,
            catalogue=inputs.catalogue,
        )
    return charges


def _draft_values(organisation: Billed, charges: list[Charge], inputs: DraftInputs) -> dict:
    """The draft's money fields from its charges and the organisation's tax."""
    rate_bp = (
        organisation.tax_rate_bp
        if organisation.tax_rate_bp is not None
        else inputs.default_tax_rate_bp
    )
    subtotal = sum(c.amount for c in charges)
    tax = tax_amount(net=subtotal, rate_bp=rate_bp, reverse_charge=organisation.reverse_charge)
    return {
        "subtotal": subtotal,
        "reverse_charge": organisation.reverse_charge,
        "tax_rate_bp": 0 if organisation.reverse_charge else rate_bp,
        "tax": tax,
        "total": subtotal + tax,
        "note": (
            _reverse_charge_note(organisation.invoice_language)
            if organisation.reverse_charge
            else None
        ),
        "usage_counted_until": inputs.now,
    }


LINE_COLUMNS = (
    "organisation_id",
    "invoice_id",
    "position",
    "kind",
    "product_id",
    "product_sku",
    "description",
    "quantity",
    "unit_amount",
    "amount",
    "source",
    "council_quantity",
    "tier",
)
# PostgreSQL types of LINE_COLUMNS in invoice_lines (migration 0005), for binary COPY;
# ``text`` for the varchar and json columns: their binary form is their text.
LINE_PG_TYPES = (
    "int8",
    "int8",
    "int4",
    "text",
    "int8",
    "text",
    "text",
    "text",
    "int8",
    "int8",
    "text",
    "int8",
    "int4",
)


def _line_row(organisation_id: int, invoice_id: int | None, position: int, charge: Charge) -> tuple:
    source = {
        k: (v if v is None or isinstance(v, (int, str)) else str(v))
        for k, v in charge.source.items()
    }
    return (
        organisation_id,
        invoice_id,
        position,
        charge.kind,
        charge.product_id,
        charge.product_sku,
        charge.description[:500],
        str(charge.quantity),
        charge.unit_amount,
        charge.amount,
        source,
        charge.council_quantity,
        charge.tier,
    )


def _insert_lines(session: Session, rows: list[tuple]) -> None:
    """Insert invoice lines (tuples of :data:`LINE_COLUMNS`) in one go.

    PostgreSQL: one binary ``COPY`` into a temporary table and one ``INSERT …
    SELECT`` (no statement per row to parse, bind and run). SQLite: one Core
    executemany (the ORM's bulk insert would split the rows into one statement per
    set of NULL columns).
    """
    connection = session.connection()
    if connection.dialect.name != "postgresql":
        connection.execute(
            sa.insert(INVOICE_LINES),
            [dict(zip(LINE_COLUMNS, row, strict=True)) for row in rows],
        )
        return
    cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    dumps = json.dumps
    cols = ", ".join(LINE_COLUMNS)
    try:
        # Row-level security refuses COPY into invoice_lines itself: the rows go to a
        # temporary table of this connection, then in with one INSERT (which the
        # policy checks).
        cursor.execute(
            "CREATE TEMP TABLE IF NOT EXISTS invoice_line_stage "
            "(LIKE invoice_lines INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        )
        cursor.execute("TRUNCATE invoice_line_stage")
        with cursor.copy(f"COPY invoice_line_stage ({cols}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(LINE_PG_TYPES)
            for row in rows:
                copy.write_row((*row[:10], dumps(row[10]), *row[11:]))
        cursor.execute(
            f"INSERT INTO invoice_lines ({cols}) SELECT {cols} FROM invoice_line_stage"  # noqa: S608 (constant columns)
        )
    finally:
        cursor.close()


def invoice_draft_refresh(
    session: Session,
    *,
    actor: Actor,
    organisation: Organisation,
    period: str,
    now: dt.datetime | None = None,
) -> tuple[Invoice | None, str]:
    """Create or refresh the organisation's draft for ``period``.

    Returns the invoice and what happened: ``created``, ``refreshed``,
    ``unchanged`` (already finalised: never touched), or ``empty`` (nothing to
    bill; a stale draft is removed). Concurrent runs meet on the unique
    (organisation, period, currency) constraint and the row lock, so each
    organisation gets one invoice however many runs start (invariant 5).
    """
    policy.require(
        actor, Action.INVOICE_DRAFT, organisation_id=organisation.id, message=FINANCE_ONLY
    )
    inputs = draft_inputs(
        session, period=period, now=now or now_utc(), scope=Scope.organisation(organisation.id)
    )
    (drafted,) = drafts_write(
        session, actor=actor, organisations=[Billed.of(organisation)], inputs=inputs
    )
    if drafted.error is not None:
        raise drafted.error
    invoice_id, outcome = drafted.invoice_id, drafted.outcome
    if invoice_id is None:
        return None, outcome
    # The rows were written with plain statements: load them afresh.
    session.flush()
    return session.get(Invoice, invoice_id, populate_existing=True), outcome


def draft_recompute(
    session: Session, *, actor: Actor, invoice: Invoice
) -> tuple[Invoice | None, str]:
    """Recompute a draft from the seats and usage recorded now (a finalised one never changes).

    As :func:`invoice_draft_refresh` for the draft's organisation and month.
    """
    policy.require(
        actor, Action.INVOICE_DRAFT, organisation_id=invoice.organisation_id, message=FINANCE_ONLY
    )
    if invoice.status != InvoiceStatus.DRAFT:
        raise InvalidState(
            _l("Invoice %(number)s is final; it never changes.", number=invoice.number),
            code="not_draft",
        )
    return invoice_draft_refresh(
        session, actor=actor, organisation=invoice.organisation, period=invoice.period
    )
