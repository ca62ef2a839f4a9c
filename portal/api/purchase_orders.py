"""``/purchase-orders``: the council's orders to vendors (SPEC 8.3).

Council tokens only (organisation and vendor tokens are refused by scope: 403). A
token drafts, reads, sends, confirms, receives and cancels, but does not approve:
approvals are people's (four eyes count two different people), so ``approve`` with a
token answers 403 ``approval_needs_person``; council admins and finance approve on
the order's page. A move the state machine does not allow from the order's state
answers 409 ``invalid_transition``.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from flask import Response
from flask_openapi3 import Tag
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from portal.api import pagination
from portal.api.auth import COUNCIL, current_actor
from portal.api.framework import reply, route
from portal.api.schemas import SLUG, ApiModel, IdPath, ListQuery
from portal.api.selectors import vendor_named
from portal.catalogue.models import Product
from portal.db import db_session
from portal.kernel.errors import NotFound, ValidationFailed
from portal.kernel.i18n import _l
from portal.kernel.policy import Action
from portal.procurement import purchase_orders as service
from portal.procurement.models import PurchaseOrder, PurchaseOrderState
from portal.validation import MAX_AMOUNT, Currency, SafeDate, Slug

tag = Tag(
    name="Purchase orders",
    description=(
        "The council's orders of seats from vendors: draft → approved → sent → confirmed → "
        "received, or cancelled. Numbers PO-YYYY-NNNNNN are given at approval."
    ),
)

States = Literal["draft", "approved", "sent", "confirmed", "received", "cancelled"]
Text = Annotated[str, StringConstraints(strip_whitespace=True, max_length=2000)]


# ---------------------------------------------------------------- bodies and queries


class LineCreate(ApiModel):
    model_config = ConfigDict(extra="forbid")
    product: Slug = Field(description="The product's SKU")
    seats: int = Field(ge=1, le=service.MAX_SEATS)
    unit_cost: int = Field(ge=0, le=MAX_AMOUNT, description="Minor units per seat-month")


class PurchaseOrderCreate(ApiModel):
    """A draft order to one vendor (its slug) for one term, in one currency."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "example": {
                "vendor": "acme-soft",
                "currency": "EUR",
                "starts_on": "2027-01-01",
                "ends_on": "2027-12-31",
                "lines": [{"product": "cad-suite", "seats": 20, "unit_cost": 1200}],
                "notes": "Renewal with 5 more seats",
            }
        },
    )
    vendor: Slug = Field(description="The vendor's slug")
    currency: Currency = Field(description="ISO 4217, the currency of every line")
    starts_on: SafeDate
    ends_on: SafeDate
    lines: list[LineCreate] = Field(min_length=1, max_length=service.MAX_LINES)
    notes: Text | None = None


class ConfirmBody(ApiModel):
    model_config = ConfigDict(extra="forbid")
    vendor_reference: (
        Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)] | None
    ) = Field(default=None, description="The vendor's own reference of its confirmation")


class CancelBody(ApiModel):
    model_config = ConfigDict(extra="forbid")
    reason: Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)] | None = None


class VendorInvoiceLineCreate(ApiModel):
    model_config = ConfigDict(extra="forbid")
    line_id: int = Field(ge=1, le=2**63 - 1, description="The order line's id")
    seats: int = Field(ge=0, le=service.MAX_SEATS)
    amount: int = Field(ge=0, le=MAX_AMOUNT, description="Minor units of the order's currency")


class VendorInvoiceCreate(ApiModel):
    """The vendor's invoice to the council against the order, per order line."""

    model_config = ConfigDict(extra="forbid")
    vendor_number: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)
    ]
    issued_on: SafeDate
    currency: Currency | None = Field(
        default=None, description="ISO 4217; if given, the order's currency"
    )
    lines: list[VendorInvoiceLineCreate] = Field(min_length=1, max_length=service.MAX_LINES)


class PurchaseOrderQuery(ListQuery):
    state: States | None = None
    vendor: str | None = Field(
        default=None, max_length=63, description="A vendor's slug", json_schema_extra=SLUG
    )


class PurchaseOrderPath(IdPath):
    pass


# ---------------------------------------------------------------- responses


class LineOut(BaseModel):
    id: int
    product: str = Field(description="The product's SKU")
    seats: int
    unit_cost: int = Field(description="Minor units per seat-month")
    months: int = Field(description="Months of the term the line is priced for")
    amount: int = Field(description="Minor units: seats × unit cost × months")
    received_seats: int
    invoiced_seats: int
    invoiced_amount: int
    problems: list[
        Literal["over_invoiced", "seats_over_ordered", "seats_not_received", "price_differs"]
    ] = Field(description="What the vendor's invoices do not match")
    pool: int | None = Field(description="The pool the seats went into at receipt")


class ApprovalOut(BaseModel):
    user: str = Field(description="The approver's email")
    role: Literal["council_admin", "finance"]
    approved_at: dt.datetime


class VendorInvoiceOut(BaseModel):
    vendor_number: str
    issued_on: dt.date
    currency: str
    amount: int = Field(description="Minor units: the sum of its lines")
    recorded_at: dt.datetime


class PurchaseOrderOut(BaseModel):
    """A purchase order; money in minor units of ``currency``."""

    id: int
    number: str | None = Field(description="PO-YYYY-NNNNNN, given at approval; null for a draft")
    vendor: str = Field(description="The vendor's slug")
    state: States
    currency: str
    starts_on: SafeDate
    ends_on: SafeDate
    total: int
    notes: str
    source: Literal["manual", "demand", "forecast"]
    approvals: list[ApprovalOut]
    approvals_missing: list[Literal["council_admin", "finance"]] = Field(
        description="Whose approval a draft still waits for"
    )
    created_at: dt.datetime
    approved_at: dt.datetime | None
    sent_at: dt.datetime | None
    sent_to: str | None
    confirmed_at: dt.datetime | None
    vendor_reference: str | None
    received_at: dt.datetime | None
    cancelled_at: dt.datetime | None
    cancel_reason: str | None
    lines: list[LineOut]
    vendor_invoices: list[VendorInvoiceOut] = Field(
        description="The vendor's invoices recorded against the order"
    )

    @classmethod
    def of(cls, po: PurchaseOrder, thresholds: dict[str, int] | None = None) -> PurchaseOrderOut:
        matches = {match.line.id: match for match in service.match_lines(po)}
        missing = (
            service.approvals_missing(db_session(), po, thresholds)
            if po.state == PurchaseOrderState.DRAFT
            else []
        )
        return cls(
            id=po.id,
            number=po.number,
            vendor=po.vendor.slug,
            state=po.state,  # type: ignore[arg-type]
            currency=po.currency,
            starts_on=po.starts_on,
            ends_on=po.ends_on,
            total=po.total,
            notes=po.notes,
            source=po.source,  # type: ignore[arg-type]
            approvals=[
                ApprovalOut(user=a.user.email, role=a.role, approved_at=a.approved_at)  # type: ignore[arg-type]
                for a in po.approvals
            ],
            approvals_missing=[role.value for role in missing],  # type: ignore[misc]
            created_at=po.created_at,
            approved_at=po.approved_at,
            sent_at=po.sent_at,
            sent_to=po.sent_to,
            confirmed_at=po.confirmed_at,
            vendor_reference=po.vendor_reference,
            received_at=po.received_at,
            cancelled_at=po.cancelled_at,
            cancel_reason=po.cancel_reason,
            lines=[
                LineOut(
                    id=line.id,
                    product=line.product.sku,
                    seats=line.seats,
                    unit_cost=line.unit_cost,
                    months=line.months,
                    amount=line.amount,
                    received_seats=line.received_seats,
                    invoiced_seats=matches[line.id].invoiced_seats,
                    invoiced_amount=matches[line.id].invoiced_amount,
                    problems=matches[line.id].problems,  # type: ignore[arg-type]
                    pool=line.pool_id,
                )
                for line in po.lines
            ],
            vendor_invoices=[
                VendorInvoiceOut(
                    vendor_number=invoice.vendor_number,
                    issued_on=invoice.issued_on,
                    currency=invoice.currency,
                    amount=invoice.amount,
                    recorded_at=invoice.recorded_at,
                )
                for invoice in po.vendor_invoices
            ],
        )


class PurchaseOrderList(BaseModel):
    """One page of purchase orders, newest first."""

    data: list[PurchaseOrderOut]
    next_cursor: str | None


# ---------------------------------------------------------------- views


def _order(po_id: int) -> PurchaseOrder:
    return service.purchase_order_get(db_session(), current_actor(), po_id)


def _draft_data(body: PurchaseOrderCreate) -> dict[str, Any]:
    """The service's arguments from the body: slugs and SKUs to ids, each miss named."""
    session = db_session()
    vendor_id = vendor_named(session, body.vendor).id
    skus = {line.product.lower() for line in body.lines}
    products = {p.sku: p.id for p in session.query(Product).filter(Product.sku.in_(skus))}
    lines, unknown = [], {}
    for index, line in enumerate(body.lines):
        product_id = products.get(line.product.lower())
        if product_id is None:
            unknown[f"lines.{index}.product"] = [_l("No such product.")]
        lines.append({"product_id": product_id, "seats": line.seats, "unit_cost": line.unit_cost})
    if unknown:
        # As everywhere in the API, a SKU the body names that does not exist is a 404.
        raise NotFound(_l("No such product."), errors=unknown)
    return {
        "vendor_id": vendor_id,
        "lines": lines,
        "currency": body.currency,
        "starts_on": body.starts_on,
        "ends_on": body.ends_on,
        "notes": body.notes,
    }


def _renamed(error: ValidationFailed) -> ValidationFailed:
    """The service's field names as the API's body names them (``vendor``, ``lines.N.product``)."""
    errors = {
        key.replace("vendor_id", "vendor").replace("product_id", "product"): messages
        for key, messages in error.errors.items()
    }
    return ValidationFailed(error.detail, errors=errors)


@route(
    "post",
    "/purchase-orders",
    scopes=[COUNCIL],
    tag=tag,
    action=Action.PURCHASE_ORDER_DRAFT,
    responses={201: PurchaseOrderOut},
    errors=[404],
    creates=True,
)
def purchase_order_create(body: PurchaseOrderCreate) -> Response:
    """Draft a purchase order with its lines.

    Each line's amount is seats × unit cost (per seat-month) × the months of the term
    (a started month counts whole). Every product must be the vendor's, each once.
    """
    try:
        po = service.draft_purchase_order(db_session(), current_actor(), **_draft_data(body))
    except ValidationFailed as error:
        raise _renamed(error) from None
    out = PurchaseOrderOut.of(po)  # committed by the creating route, with its stored answer
    response = reply(out, 201)
    response.headers["Location"] = f"/api/v1/purchase-orders/{po.id}"
    return response


@route(
    "get",
    "/purchase-orders",
    scopes=[COUNCIL],
    tag=tag,
    action=Action.PURCHASE_ORDER_READ,
    responses={200: PurchaseOrderList},
    errors=[404],
)
def purchase_orders_index(query: PurchaseOrderQuery) -> Response:
    """Purchase orders, newest first; filter by state and vendor."""
    session = db_session()
    vendor_id = None
    if query.vendor:
        vendor_id = vendor_named(session, query.vendor).id
    thresholds = service.finance_thresholds(session)  # once for the page's drafts
    rows = service.purchase_orders_list(
        session,
        current_actor(),
        state=query.state,
        vendor_id=vendor_id,
        limit=query.limit + 1,
        after_id=pagination.decode_cursor(query.cursor),
    )
    return reply(
        pagination.page(
            rows,
            limit=query.limit,
            serialise=lambda po: PurchaseOrderOut.of(po, thresholds).model_dump(mode="json"),
            key=lambda p: p.id,
        )
    )


@route(
    "get",
    "/purchase-orders/<int:id>",
    scopes=[COUNCIL],
    tag=tag,
    action=Action.PURCHASE_ORDER_READ,
    responses={200: PurchaseOrderOut},
    errors=[404],
)
def purchase_order_show(path: PurchaseOrderPath) -> Response:
    """One purchase order, its lines matched against the vendor's invoices."""
    return reply(PurchaseOrderOut.of(_order(path.id)))


def _moved(po: PurchaseOrder) -> Response:
    db_session().flush()
    return reply(PurchaseOrderOut.of(po))


@route(
    "post",
    "/purchase-orders/<int:id>/approve",
    scopes=[COUNCIL],
    tag=tag,
    action=Action.PURCHASE_ORDER_APPROVE,
    responses={200: PurchaseOrderOut},
    errors=[404, 409],
)
def purchase_order_approve(path: PurchaseOrderPath) -> Response:
    """Approve a draft: refused to tokens (403 `approval_needs_person`).

    Approvals are people's: a council admin's, and above the council's threshold
    finance's as well, by two different people. They approve on the order's page.
    """
    po = _order(path.id)
    return _moved(service.approve(db_session(), current_actor(), po))


@route(
    "post",
    "/purchase-orders/<int:id>/send",
    scopes=[COUNCIL],
    tag=tag,
    action=Action.PURCHASE_ORDER_SEND,
    responses={200: PurchaseOrderOut},
    errors=[404, 409],
)
def purchase_order_send(path: PurchaseOrderPath) -> Response:
    """Send an approved order: its PDF is kept and mailed to the vendor's contact.

    409 `vendor_without_contact` when the vendor has no contact email.
    """
    po = _order(path.id)
    return _moved(service.send(db_session(), current_actor(), po))


@route(
    "post",
    "/purchase-orders/<int:id>/confirm",
    scopes=[COUNCIL],
    tag=tag,
    action=Action.PURCHASE_ORDER_CONFIRM,
    responses={200: PurchaseOrderOut},
    errors=[404, 409],
)
def purchase_order_confirm(path: PurchaseOrderPath, body: ConfirmBody) -> Response:
    """Record the vendor's confirmation of a sent order (`{}` or its reference)."""
    po = _order(path.id)
    return _moved(
        service.confirm(db_session(), current_actor(), po, vendor_reference=body.vendor_reference)
    )


@route(
    "post",
    "/purchase-orders/<int:id>/receive",
    scopes=[COUNCIL],
    tag=tag,
    action=Action.PURCHASE_ORDER_RECEIVE,
    responses={200: PurchaseOrderOut},
    errors=[404, 409],
)
def purchase_order_receive(path: PurchaseOrderPath) -> Response:
    """Receive a confirmed order: its seats go into pools, once.

    A pool of the same product, term and unit cost is extended; otherwise one is
    created. A second call answers 409 `invalid_transition` and changes nothing.
    """
    po = _order(path.id)
    return _moved(service.receive(db_session(), current_actor(), po))


@route(
    "post",
    "/purchase-orders/<int:id>/cancel",
    scopes=[COUNCIL],
    tag=tag,
    action=Action.PURCHASE_ORDER_CANCEL,
    responses={200: PurchaseOrderOut},
    errors=[404, 409],
)
def purchase_order_cancel(path: PurchaseOrderPath, body: CancelBody) -> Response:
    """Cancel an order not yet received (`{}` or a reason); a number given stays used."""
    po = _order(path.id)
    return _moved(service.cancel(db_session(), current_actor(), po, reason=body.reason))


@route(
    "post",
    "/purchase-orders/<int:id>/vendor-invoices",
    scopes=[COUNCIL],
    tag=tag,
    action=Action.VENDOR_INVOICE_RECORD,
    responses={201: PurchaseOrderOut},
    errors=[404, 409],
)
def purchase_order_vendor_invoice(path: PurchaseOrderPath, body: VendorInvoiceCreate) -> Response:
    """Record the vendor's invoice against a sent, confirmed or received order.

    The answer is the order, each line with what was invoiced and what does not match.
    409 `vendor_invoice_recorded` when that vendor number is recorded on it already.
    """
    po = _order(path.id)
    service.vendor_invoice_record(
        db_session(), current_actor(), po, data=body.model_dump(mode="json")
    )
    db_session().refresh(po)
    return reply(PurchaseOrderOut.of(po), 201)
