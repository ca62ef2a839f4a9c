"""``/invoice-runs``, ``/invoices``, credit notes, invoice PDFs and the finance export.

Council tokens (the council's and finance's scripts) run months, read every
invoice, finalise and credit. Organisation tokens read their own
organisation's issued invoices, PDFs and export rows; another organisation's
invoice is invisible to them (404) and drafts are finance's working copies.
Vendor tokens are refused by scope (403).
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from flask import Response
from flask_openapi3 import Tag
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from portal.api import pagination
from portal.api.auth import COUNCIL, ORGANISATION, current_actor
from portal.api.framework import reply, route
from portal.api.schemas import PERIOD, SLUG, ApiModel, ApiParams, IdPath, ListQuery
from portal.api.selectors import organisation_named
from portal.billing import documents, exports, lifecycle, selectors
from portal.billing.models import CreditNote, Invoice, InvoiceRun
from portal.billing.operations import invoice_run_start
from portal.db import db_session
from portal.kernel.clock import now_utc
from portal.kernel.errors import Conflict, PermissionDenied
from portal.kernel.i18n import _l
from portal.kernel.periods import period_bounds
from portal.kernel.policy import Action
from portal.kernel.scope import Scope, scope_of
from portal.tenancy.models import Organisation

tag = Tag(
    name="Billing",
    description="Invoice runs, invoices, credit notes, invoice PDFs and the finance export.",
)

READERS = [COUNCIL, ORGANISATION]
# The server checks the month itself (portal.validation: years 2000 to 9998).
Period = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=7), Field(json_schema_extra=PERIOD)
]


# ---------------------------------------------------------------- bodies and queries


class InvoiceRunCreate(ApiModel):
    """Draft every organisation's invoice for a month (and optionally finalise them)."""

    model_config = ConfigDict(extra="forbid")
    period: Period = Field(description="The month, YYYY-MM (the current month or earlier)")
    finalize: bool = Field(
        default=False, description="Finalise the drafts too: numbers, PDFs and mail go out."
    )


class CreditNoteCreate(ApiModel):
    """Credit part or all of a finalised invoice's net amount; tax follows in proportion."""

    model_config = ConfigDict(extra="forbid")
    amount: int = Field(ge=1, description="Net amount to credit, in minor units")
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=1000)]


class InvoicePath(IdPath):
    pass


class InvoiceRunPath(IdPath):
    pass


class InvoiceQuery(ListQuery):
    period: Period | None = Field(default=None, description="The month, YYYY-MM")
    organisation: str | None = Field(
        default=None,
        max_length=63,
        description="An organisation's slug (council tokens)",
        json_schema_extra=SLUG,
    )
    status: Literal["draft", "open", "paid", "void", "uncollectible"] | None = None


class ExportQuery(ApiParams):
    period: Period = Field(description="The month, YYYY-MM")


# ---------------------------------------------------------------- responses


class InvoiceLineOut(BaseModel):
    kind: Literal["seat", "metered", "late_usage", "adjustment"]
    product: str | None = Field(description="The product's SKU")
    description: str
    quantity: str = Field(description="An exact decimal: seat-months or the meter's aggregate")
    unit_amount: int | None = Field(description="Minor units; null for tiered prices")
    amount: int = Field(description="Minor units")
    council_quantity: int | None = Field(
        default=None,
        description=(
            "Council volume pricing (a seat line): the council-wide average reserved seats "
            "of the product in the month, which chose the tier; null otherwise"
        ),
    )
    tier: int | None = Field(
        default=None,
        description="Council volume pricing: the tier (1, 2, …) the council-wide seats chose",
    )


class InvoiceOut(BaseModel):
    """An invoice; money in minor units of ``currency``."""

    id: int
    number: str | None = Field(description="Given at finalisation; null for a draft")
    organisation: str = Field(description="The organisation's slug")
    period: str = Field(description="YYYY-MM")
    currency: str
    status: Literal["draft", "open", "paid", "void", "uncollectible"]
    subtotal: int
    tax: int
    total: int
    tax_rate_bp: int
    reverse_charge: bool
    amount_paid: int
    amount_credited: int
    amount_due: int
    payment_reference: str | None
    finalised_at: dt.datetime | None
    due_on: dt.date | None
    lines: list[InvoiceLineOut]

    @classmethod
    def of(cls, invoice: Invoice, lines: Sequence[Any] | None = None) -> InvoiceOut:
        """The invoice as the API shows it; ``lines`` read apart (a list's), or its own."""
        return cls(
            id=invoice.id,
            number=invoice.number,
            organisation=invoice.organisation.slug,
            period=invoice.period,
            currency=invoice.currency,
            status=invoice.status,  # type: ignore[arg-type]
            subtotal=invoice.subtotal,
            tax=invoice.tax,
            total=invoice.total,
            tax_rate_bp=invoice.tax_rate_bp,
            reverse_charge=invoice.reverse_charge,
            amount_paid=invoice.amount_paid,
            amount_credited=invoice.amount_credited,
            amount_due=invoice.amount_due,
            payment_reference=invoice.payment_reference,
            finalised_at=invoice.finalised_at,
            due_on=invoice.due_on,
            lines=[
                InvoiceLineOut(
                    kind=line.kind,  # type: ignore[arg-type]
                    product=line.product_sku,
                    description=line.description,
                    quantity=line.quantity,
                    unit_amount=line.unit_amount,
                    amount=line.amount,
                    council_quantity=line.council_quantity,
                    tier=line.tier,
                )
                for line in (invoice.lines if lines is None else lines)
            ],
        )


class InvoiceList(BaseModel):
    """One page of invoices."""

    data: list[InvoiceOut]
    next_cursor: str | None


class InvoiceRunOut(BaseModel):
    """An invoice run and what it did."""

    id: int
    period: str
    status: Literal["queued", "running", "done", "failed"] = Field(
        description="queued (waiting for a worker), running, done, or failed"
    )
    finalize: bool
    organisations_total: int
    organisations_done: int
    invoices_created: int
    invoices_refreshed: int
    invoices_finalised: int
    error: str | None = Field(description="Organisations the run could not invoice, and why")
    started_at: dt.datetime
    finished_at: dt.datetime | None

    @classmethod
    def of(cls, run: InvoiceRun) -> InvoiceRunOut:
        return cls.model_validate(run, from_attributes=True)


class CreditNoteOut(BaseModel):
    """A credit note; money in minor units of ``currency``."""

    id: int
    number: str
    invoice: int = Field(description="The invoice's id")
    invoice_number: str
    currency: str
    subtotal: int
    tax: int
    total: int
    reason: str
    created_at: dt.datetime

    @classmethod
    def of(cls, note: CreditNote, invoice: Invoice) -> CreditNoteOut:
        return cls(
            id=note.id,
            number=note.number,
            invoice=invoice.id,
            invoice_number=invoice.number or "",
            currency=note.currency,
            subtotal=note.subtotal,
            tax=note.tax,
            total=note.total,
            reason=note.reason,
            created_at=note.created_at,
        )


def _file_response(media_type: str, description: str, schema: dict) -> dict:
    return {"description": description, "content": {media_type: {"schema": schema}}}


PDF_RESPONSE = _file_response(
    "application/pdf",
    "The invoice as an A4 PDF (the one stored and sent at finalisation)",
    {"type": "string", "format": "binary"},
)
CSV_RESPONSE = _file_response(
    "text/csv",
    "One row per invoice line (credit notes as negative rows), spreadsheet-safe",
    {"type": "string"},
)


# ---------------------------------------------------------------- scope


def _scope() -> Scope:
    """Whose invoices the token reads: its organisation's, or (council) every one's."""
    return scope_of(current_actor())


def _organisation_filter(slug: str | None) -> Scope:
    """The token's scope, narrowed to the organisation named in the query."""
    own = _scope()
    if slug is None:
        return own
    if own.organisation_id is not None:
        organisation = db_session().get(Organisation, own.organisation_id)
        if organisation is None or slug.lower() != organisation.slug:
            raise PermissionDenied(
                _l("This token reads only its own organisation's invoices."),
                errors={"organisation": [_l("Leave out, or give this token's own organisation.")]},
            )
        return own
    return Scope.organisation(organisation_named(db_session(), slug).id)


def _invoice(invoice_id: int) -> Invoice:
    own = _scope()
    return selectors.invoice_in_scope(
        db_session(), scope=own, invoice_id=invoice_id, issued_only=not own.is_council
    )


# ---------------------------------------------------------------- views


@route(
    "post",
    "/invoice-runs",
    scopes=[COUNCIL],
    tag=tag,
    action=Action.INVOICE_RUN,
    responses={201: InvoiceRunOut},
    creates=True,
)
def invoice_run_create(body: InvoiceRunCreate) -> Response:
    """Start a month's invoicing; returns the run at once, to poll at `GET /invoice-runs/{id}`.

    The run is `queued` until a worker takes it, then `running`, then `done` or
    `failed`. It drafts one invoice per organisation and currency (re-running
    refreshes the drafts and never duplicates them; finalised invoices never
    change). With `finalize`, the drafts are finalised too. Organisations that
    could not be invoiced are listed in `error` (and `status` is `failed`); the
    others are done. A month that has not begun is refused with 409
    `period_not_started`.
    """
    actor = current_actor()
    start, _ = period_bounds(body.period)
    if start > now_utc():
        raise Conflict(
            _l(
                "%(period)s has not started; invoice the current month or an earlier one.",
                period=body.period,
            ),
            code="period_not_started",
            errors={"period": [_l("Choose the current month or an earlier one.")]},
        )
    run = invoice_run_start(db_session(), actor=actor, period=body.period, finalize=body.finalize)
    # As recorded: queued (an inline job may run at commit). The commit is the creating
    # route's (portal.api.idempotency.run): with an Idempotency-Key, the stored answer is
    # committed with the run, so a resent start never makes a second one.
    out = InvoiceRunOut.of(run)
    response = reply(out, 201)
    response.headers["Location"] = f"/api/v1/invoice-runs/{run.id}"
    return response


@route(
    "get",
    "/invoice-runs/<int:id>",
    scopes=[COUNCIL],
    tag=tag,
    action=Action.INVOICE_RUN,
    responses={200: InvoiceRunOut},
    errors=[404],
)
def invoice_run_get(path: InvoiceRunPath) -> Response:
    """One invoice run: its status and progress (poll it until `done` or `failed`)."""
    return reply(InvoiceRunOut.of(selectors.run_by_id(db_session(), path.id)))


@route(
    "get",
    "/invoices",
    scopes=READERS,
    tag=tag,
    action=Action.INVOICE_READ,
    responses={200: InvoiceList},
    errors=[404],
)
def invoices_list(query: InvoiceQuery) -> Response:
    """List invoices, oldest first, by month, organisation and status.

    Organisation tokens see their own organisation's issued invoices only.
    """
    own = _scope()
    rows = selectors.invoices_list(
        db_session(),
        scope=_organisation_filter(query.organisation),
        period=query.period,
        status=query.status,
        issued_only=not own.is_council,
        after_id=pagination.decode_cursor(query.cursor),
        limit=query.limit + 1,
    )
    lines = selectors.invoice_lines(db_session(), [invoice.id for invoice in rows[: query.limit]])
    return reply(
        pagination.page(
            rows,
            limit=query.limit,
            serialise=lambda i: InvoiceOut.of(i, lines[i.id]).model_dump(mode="json"),
            key=_id,
        )
    )


@route(
    "get",
    "/invoices/<int:id>",
    scopes=READERS,
    tag=tag,
    action=Action.INVOICE_READ,
    responses={200: InvoiceOut},
    errors=[404],
)
def invoice_get(path: InvoicePath) -> Response:
    """One invoice with its lines."""
    return reply(InvoiceOut.of(_invoice(path.id)))


@route(
    "post",
    "/invoices/<int:id>/finalize",
    scopes=[COUNCIL],
    tag=tag,
    action=Action.INVOICE_FINALIZE,
    responses={200: InvoiceOut},
    errors=[404, 409],
)
def invoice_finalize(path: InvoicePath) -> Response:
    """Finalise a draft: it gets the next number, becomes final, and its PDF is stored and mailed.

    409 `not_draft` when it is final already.
    """
    invoice = lifecycle.invoice_finalize(
        db_session(), actor=current_actor(), invoice=_invoice(path.id)
    )
    return reply(InvoiceOut.of(invoice))


@route(
    "post",
    "/invoices/<int:id>/credit-notes",
    scopes=[COUNCIL],
    tag=tag,
    action=Action.CREDIT_NOTE_CREATE,
    responses={201: CreditNoteOut},
    errors=[404, 409],
    creates=True,
)
def credit_note_create(path: InvoicePath, body: CreditNoteCreate) -> Response:
    """Credit part or all of a finalised invoice (409 `not_creditable` for a draft or void one)."""
    invoice = _invoice(path.id)
    note = lifecycle.credit_note_create(
        db_session(), actor=current_actor(), invoice=invoice, amount=body.amount, reason=body.reason
    )
    return reply(CreditNoteOut.of(note, invoice), 201)


@route(
    "get",
    "/invoices/<int:id>.pdf",
    scopes=READERS,
    tag=tag,
    action=Action.INVOICE_READ,
    responses={200: PDF_RESPONSE},  # type: ignore[dict-item]
    errors=[404],
)
def invoice_pdf(path: InvoicePath) -> Response:
    """The invoice as a PDF (a finalised invoice's is the one sent; a draft's is a preview)."""
    invoice = _invoice(path.id)
    return Response(
        documents.invoice_pdf(db_session(), invoice),
        mimetype="application/pdf",
        headers={"Content-Disposition": f'inline; filename="{documents.pdf_filename(invoice)}"'},
    )


@route(
    "get",
    "/exports/invoices.csv",
    scopes=READERS,
    tag=tag,
    action=Action.INVOICE_READ,
    responses={200: CSV_RESPONSE},  # type: ignore[dict-item]
)
def invoices_export(query: ExportQuery) -> Response:
    """A month's issued invoices, one CSV row per line (credit notes as negative rows).

    Organisation tokens get their own organisation's rows.
    """
    out = io.StringIO()
    exports.write_csv(exports.export_rows(db_session(), scope=_scope(), period=query.period), out)
    return Response(
        out.getvalue(),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="invoices-{query.period}.csv"'},
    )


def _id(invoice: Invoice) -> int:
    return invoice.id
