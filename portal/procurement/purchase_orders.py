"""Purchase orders (SPEC 8.3): drafting, four-eyes approval, sending, receiving into pools.

The states and every move between them are in one table, :data:`TRANSITIONS`
(``action → (states it is allowed from, state it leads to)``); any other move is
refused with :class:`~portal.kernel.errors.InvalidState` (``invalid_transition``,
409 in the API). Each move locks the order's row first (``SELECT … FOR UPDATE``;
SQLite's writers are serialised by ``BEGIN IMMEDIATE``) and checks the state under
that lock, so two people (or two API calls) acting at once cannot both make it.

* **approve**: by a person (tokens are not people: four eyes count people), a council
  admin or finance. A council admin's approval is always needed; above the council's
  threshold for the order's currency (setting ``purchase_order_finance_threshold``)
  finance's as well, and one person approves an order once (a unique row per
  person), so those are two different people. When the last needed approval is
  given the order becomes ``approved`` and takes the next gapless number
  ``PO-{YYYY}-{NNNNNN}`` of the approval's year, from the same locked counter as
  invoices (:func:`portal.billing.numbering.next_number`).
* **send**: renders the PDF (kept as sent) and mails it, attached, to the vendor's contact.
* **confirm**: the vendor confirmed; its reference is kept.
* **receive**: every line's seats go into a licence pool of the product for the
  order's term: a pool of the same product, term and unit cost is extended, otherwise
  one is created. It runs once: a second call finds the order ``received`` under the
  lock and is refused.
* **cancel**: from any state before ``received``; the number, if given, stays used.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy.orm import Session, selectinload

from portal.audit.services import audit_record
from portal.billing.numbering import next_number
from portal.catalogue.models import LicencePool, Product, Vendor
from portal.catalogue.services import lock_product
from portal.kernel import policy
from portal.kernel.actor import Actor, ActorKind, Role
from portal.kernel.clock import now_utc
from portal.kernel.errors import (
    Conflict,
    InvalidState,
    NotFound,
    PermissionDenied,
    ValidationFailed,
)
from portal.kernel.i18n import _l
from portal.kernel.policy import Action
from portal.procurement.models import (
    COMMITTED,
    PurchaseOrder,
    PurchaseOrderApproval,
    PurchaseOrderLine,
    PurchaseOrderState,
    VendorInvoice,
    VendorInvoiceLine,
    state_name,
)
from portal.settings.services import PURCHASE_ORDER_PREFIX, settings_get
from portal.signals import pool_capacity_changed
from portal.validation import MAX_AMOUNT, Currency, DbId, SafeDate, optional_text, parse

S = PurchaseOrderState

#: PO numbers: ``PO-{YYYY}-{NNNNNN}``, a counter of their own beside invoices' and credit notes'
#: (the council settings refuse it as an invoice or credit note prefix).
NUMBER_PREFIX = PURCHASE_ORDER_PREFIX

#: The one table of the state machine: action → (the states it is allowed from, where it leads).
TRANSITIONS: dict[str, tuple[frozenset[PurchaseOrderState], PurchaseOrderState]] = {
    "approve": (frozenset({S.DRAFT}), S.APPROVED),
    "send": (frozenset({S.APPROVED}), S.SENT),
    "confirm": (frozenset({S.SENT}), S.CONFIRMED),
    "receive": (frozenset({S.CONFIRMED}), S.RECEIVED),
    "cancel": (frozenset({S.DRAFT, S.APPROVED, S.SENT, S.CONFIRMED}), S.CANCELLED),
}

#: The policy action of each move.
ACTIONS: dict[str, Action] = {
    "approve": Action.PURCHASE_ORDER_APPROVE,
    "send": Action.PURCHASE_ORDER_SEND,
    "confirm": Action.PURCHASE_ORDER_CONFIRM,
    "receive": Action.PURCHASE_ORDER_RECEIVE,
    "cancel": Action.PURCHASE_ORDER_CANCEL,
}

#: The moves as button labels.
ACTION_LABELS = {
    "approve": _l("Approve"),
    "send": _l("Send to the vendor"),
    "confirm": _l("Record the vendor's confirmation"),
    "receive": _l("Receive into pools"),
    "cancel": _l("Cancel the order"),
}

#: The moves as words inside a sentence.
ACTION_NAMES = {
    "approve": _l("approve"),
    "send": _l("send"),
    "confirm": _l("confirm"),
    "receive": _l("receive"),
    "cancel": _l("cancel"),
}

#: States a vendor's invoice may be recorded in: the order went to the vendor.
INVOICEABLE = frozenset({S.SENT, S.CONFIRMED, S.RECEIVED})

SOURCES = ("manual", "demand", "forecast")
MAX_LINES = 50
MAX_SEATS = 1_000_000


def allowed_moves(state: PurchaseOrderState) -> list[str]:
    """The moves the table allows from ``state``, in the table's order."""
    return [action for action, (sources, _to) in TRANSITIONS.items() if state in sources]


def term_months(starts_on: dt.date, ends_on: dt.date) -> int:
    """Calendar months the term ``starts_on``..``ends_on`` (inclusive) covers, a started one
    counting whole: 2027-01-01..2027-12-31 is 12, 2027-01-15..2028-01-14 is 12,
    2027-01-01..2027-01-10 is 1."""
    after = ends_on + dt.timedelta(days=1)
    months = (after.year - starts_on.year) * 12 + after.month - starts_on.month
    if after.day > starts_on.day:
        months += 1
    return max(months, 1)


def _refuse(po: PurchaseOrder, action: str) -> InvalidState:
    return InvalidState(
        _l(
            "Purchase order %(label)s is %(state)s; you cannot %(action)s it.",
            label=po.label,
            state=state_name(po.state),
            action=ACTION_NAMES.get(action, action),
        ),
        code="invalid_transition",
        extra={"state": str(po.state), "action": action},
    )


def _lock(session: Session, po: PurchaseOrder) -> PurchaseOrder:
    """The order's row, locked for this transaction and read afresh."""
    locked = session.scalars(
        sa.select(PurchaseOrder)
        .where(PurchaseOrder.id == po.id)
        .with_for_update(of=PurchaseOrder)
        .execution_options(populate_existing=True)
    ).one()
    return locked


def _move(session: Session, actor: Actor, po: PurchaseOrder, action: str) -> PurchaseOrder:
    """Check ``actor`` may make ``action``, lock the order and check the table allows it."""
    policy.require(
        actor,
        ACTIONS[action],
        message=_l("You may not %(action)s purchase orders.", action=ACTION_NAMES[action]),
    )
    locked = _lock(session, po)
    if locked.state not in TRANSITIONS[action][0]:
        raise _refuse(locked, action)
    return locked


def _snapshot(po: PurchaseOrder) -> dict[str, Any]:
    return {"state": str(po.state), "number": po.number, "total": po.total, "currency": po.currency}


def _record(
    session: Session,
    actor: Actor,
    po: PurchaseOrder,
    action: str,
    before: dict[str, Any],
    **after: Any,
) -> None:
    audit_record(
        session,
        actor=actor,
        action=f"purchase_order.{action}",
        target_type="purchase_order",
        target_id=po.id,
        target_label=po.label,
        before=before,
        after={**_snapshot(po), **after},
    )


# ---------------------------------------------------------------- reading


def purchase_order_get(session: Session, actor: Actor, po_id: Any) -> PurchaseOrder:
    """One order (any state); an unknown or malformed id is not found."""
    policy.require(actor, Action.PURCHASE_ORDER_READ)
    try:
        key = int(po_id)
    except (TypeError, ValueError):
        raise NotFound(_l("No such purchase order.")) from None
    if not 1 <= key < 2**63:
        raise NotFound(_l("No such purchase order."))
    po = session.get(PurchaseOrder, key)
    if po is None:
        raise NotFound(_l("No such purchase order."))
    return po


def purchase_orders_list(
    session: Session,
    actor: Actor,
    *,
    state: str | None = None,
    vendor_id: int | None = None,
    limit: int = 100,
    after_id: int | None = None,
) -> list[PurchaseOrder]:
    """Orders, newest first, optionally of one state and one vendor (``after_id``: paging)."""
    policy.require(actor, Action.PURCHASE_ORDER_READ)
    query = (
        sa.select(PurchaseOrder)
        .options(
            selectinload(PurchaseOrder.lines),
            selectinload(PurchaseOrder.approvals),
            selectinload(PurchaseOrder.vendor_invoices).selectinload(VendorInvoice.lines),
        )
        .order_by(PurchaseOrder.id.desc())
        .limit(limit)
    )
    if state:
        try:
            query = query.where(PurchaseOrder.state == PurchaseOrderState(state))
        except ValueError:
            raise ValidationFailed(
                _l("Unknown state."), errors={"state": [_l("Choose one of the states listed.")]}
            ) from None
    if vendor_id is not None:
        query = query.where(PurchaseOrder.vendor_id == vendor_id)
    if after_id is not None:
        query = query.where(PurchaseOrder.id < after_id)
    return list(session.scalars(query))


# ---------------------------------------------------------------- drafting


class LineFields(BaseModel):
    model_config = ConfigDict(extra="forbid")
    product_id: DbId
    seats: Annotated[int, Field(ge=1, le=MAX_SEATS)]
    unit_cost: Annotated[int, Field(ge=0, le=MAX_AMOUNT)]  # minor units per seat-month


class DraftFields(BaseModel):
    model_config = ConfigDict(extra="forbid")
    vendor_id: DbId
    currency: Currency
    starts_on: SafeDate
    ends_on: SafeDate
    lines: Annotated[list[LineFields], Field(min_length=1, max_length=MAX_LINES)]
    source: Literal["manual", "demand", "forecast"] = "manual"
    notes: optional_text(2000) = None  # type: ignore[valid-type]

    @model_validator(mode="after")
    def _term_ordered(self) -> DraftFields:
        if self.ends_on < self.starts_on:
            raise ValueError(_l("The term must end on or after the day it starts."))
        return self


def _check_lines(session: Session, fields: DraftFields) -> tuple[Vendor, list[dict[str, Any]]]:
    """The vendor and the lines priced, or every problem at once (``lines.N.field``)."""
    errors: dict[str, list[Any]] = {}
    vendor = session.get(Vendor, fields.vendor_id)
    if vendor is None:
        errors["vendor_id"] = [_l("No such vendor.")]
    months = term_months(fields.starts_on, fields.ends_on)
    products = {
        p.id: p
        for p in session.scalars(
            sa.select(Product).where(Product.id.in_({line.product_id for line in fields.lines}))
        )
    }
    seen: set[int] = set()
    priced: list[dict[str, Any]] = []
    total = 0
    for index, line in enumerate(fields.lines):
        product = products.get(line.product_id)
        key = f"lines.{index}.product_id"
        if product is None:
            errors[key] = [_l("No such product.")]
            continue
        if vendor is not None and product.vendor_id != vendor.id:
            errors[key] = [_l("This product is not the vendor's.")]
            continue
        if line.product_id in seen:
            errors[key] = [_l("Each product once per order: add the seats to its line.")]
            continue
        seen.add(line.product_id)
        amount = line.seats * line.unit_cost * months
        total += amount
        if amount > MAX_AMOUNT:
            errors[f"lines.{index}.unit_cost"] = [_l("The line's amount is too large.")]
        priced.append({**line.model_dump(), "months": months, "amount": amount})
    if not errors and total > MAX_AMOUNT:
        errors["lines"] = [_l("The order's total is too large.")]
    if errors:
        raise ValidationFailed(_l("Some fields need attention."), errors=errors)
    assert vendor is not None
    return vendor, priced


def draft_purchase_order(
    session: Session,
    actor: Actor,
    *,
    vendor_id: int,
    lines: list[dict[str, Any]],
    currency: str,
    starts_on: dt.date | str,
    ends_on: dt.date | str,
    source: str = "manual",
    notes: str | None = None,
) -> PurchaseOrder:
    """A new draft order to ``vendor_id`` for the term ``starts_on``..``ends_on``.

    ``lines``: ``[{"product_id": int, "seats": int, "unit_cost": int}]``, the unit cost in
    minor units of ``currency`` per seat-month (as a pool's); each line's amount is
    ``seats × unit_cost × months of the term`` (:func:`term_months`). ``source`` says
    where it was drafted: ``manual``, ``demand`` (the demand board) or ``forecast``.
    Bad input raises :class:`ValidationFailed` (``lines.N.field`` for a line's problem).
    """
    policy.require(
        actor, Action.PURCHASE_ORDER_DRAFT, message=_l("Only council admins draft purchase orders.")
    )
    fields = parse(
        DraftFields,
        {
            "vendor_id": vendor_id,
            "currency": currency,
            "starts_on": starts_on,
            "ends_on": ends_on,
            "lines": lines,
            "source": source,
            "notes": notes,
        },
    )
    vendor, priced = _check_lines(session, fields)
    po = PurchaseOrder(
        vendor_id=vendor.id,
        state=S.DRAFT,
        currency=fields.currency,
        starts_on=fields.starts_on,
        ends_on=fields.ends_on,
        notes=fields.notes or "",
        source=fields.source,
        created_by_id=actor.user_id if actor.kind == ActorKind.PERSON else None,
        total=sum(line["amount"] for line in priced),
    )
    po.lines = [
        PurchaseOrderLine(position=i + 1, received_seats=0, **line) for i, line in enumerate(priced)
    ]
    session.add(po)
    session.flush()
    _record(
        session, actor, po, "draft", {}, vendor=vendor.slug, source=fields.source, lines=len(priced)
    )
    return po


def update_draft(
    session: Session,
    actor: Actor,
    po: PurchaseOrder,
    *,
    vendor_id: int,
    lines: list[dict[str, Any]],
    currency: str,
    starts_on: dt.date | str,
    ends_on: dt.date | str,
    notes: str | None = None,
) -> PurchaseOrder:
    """Change a draft (its vendor, term, currency, lines and notes) as
    :func:`draft_purchase_order` takes them. Approvals given to the draft before are
    withdrawn: they approved what it said then."""
    policy.require(
        actor, Action.PURCHASE_ORDER_DRAFT, message=_l("Only council admins draft purchase orders.")
    )
    fields = parse(
        DraftFields,
        {
            "vendor_id": vendor_id,
            "currency": currency,
            "starts_on": starts_on,
            "ends_on": ends_on,
            "lines": lines,
            "source": po.source,
            "notes": notes,
        },
    )
    locked = _lock(session, po)
    if locked.state != S.DRAFT:
        raise InvalidState(
            _l(
                "Purchase order %(label)s is %(state)s; only a draft is changed.",
                label=locked.label,
                state=state_name(locked.state),
            ),
            code="invalid_transition",
            extra={"state": str(locked.state), "action": "update"},
        )
    vendor, priced = _check_lines(session, fields)
    before = {**_snapshot(locked), "lines": len(locked.lines)}
    withdrawn = [approval.user_id for approval in locked.approvals]
    locked.approvals.clear()
    locked.lines.clear()
    session.flush()  # the old lines' positions are free before the new ones take them
    locked.vendor_id = vendor.id
    locked.currency = fields.currency
    locked.starts_on = fields.starts_on
    locked.ends_on = fields.ends_on
    locked.notes = fields.notes or ""
    locked.total = sum(line["amount"] for line in priced)
    locked.lines = [
        PurchaseOrderLine(position=i + 1, received_seats=0, **line) for i, line in enumerate(priced)
    ]
    session.flush()
    session.refresh(locked, ["vendor"])
    _record(
        session,
        actor,
        locked,
        "update",
        before,
        vendor=vendor.slug,
        lines=len(priced),
        approvals_withdrawn=len(withdrawn),
    )
    return locked


# ---------------------------------------------------------------- approval (four eyes)


def finance_thresholds(session: Session) -> dict[str, int]:
    """The council's threshold per currency, above which finance approves too."""
    return settings_get(session).purchase_order_finance_threshold


def finance_needed(
    session: Session, po: PurchaseOrder, thresholds: dict[str, int] | None = None
) -> bool:
    """Whether the order needs finance's approval too: above its currency's threshold, or
    in a currency the council set no threshold for (``thresholds``: read once for many)."""
    if thresholds is None:
        thresholds = finance_thresholds(session)
    threshold = thresholds.get(po.currency)
    return threshold is None or po.total > threshold


def approvals_missing(
    session: Session, po: PurchaseOrder, thresholds: dict[str, int] | None = None
) -> list[Role]:
    """The roles whose approval the order still waits for (none: it may be approved)."""
    roles = {approval.role for approval in po.approvals}
    missing = []
    if Role.COUNCIL_ADMIN.value not in roles:
        missing.append(Role.COUNCIL_ADMIN)
    if finance_needed(session, po, thresholds) and Role.FINANCE.value not in roles:
        missing.append(Role.FINANCE)
    return missing


def may_approve(session: Session, actor: Actor, po: PurchaseOrder) -> bool:
    """Whether ``actor``'s approval would count now (a page shows the button)."""
    if po.state != S.DRAFT or actor.kind != ActorKind.PERSON or actor.user_id is None:
        return False
    if not policy.may(actor, Action.PURCHASE_ORDER_APPROVE):
        return False
    if any(approval.user_id == actor.user_id for approval in po.approvals):
        return False
    return actor.role in approvals_missing(session, po)


def approve(session: Session, actor: Actor, po: PurchaseOrder) -> PurchaseOrder:
    """Record ``actor``'s approval; the last one needed approves the order and numbers it."""
    policy.require(
        actor,
        Action.PURCHASE_ORDER_APPROVE,
        message=_l("Only council admins and finance approve purchase orders."),
    )
    if actor.kind != ActorKind.PERSON or actor.user_id is None or actor.role is None:
        raise PermissionDenied(
            _l("A purchase order is approved by a person signed in, not by a token."),
            code="approval_needs_person",
        )
    locked = _move(session, actor, po, "approve")
    session.refresh(locked, ["approvals"])
    if any(approval.user_id == actor.user_id for approval in locked.approvals):
        raise Conflict(
            _l("You have approved this order already; another person must approve it."),
            code="already_approved",
        )
    missing = approvals_missing(session, locked)
    if actor.role not in missing:
        raise Conflict(
            _l(
                "The order waits for another role's approval: %(roles)s.",
                roles=", ".join(role.label for role in missing),
            ),
            code="approval_not_needed",
        )
    before = _snapshot(locked)
    locked.approvals.append(
        PurchaseOrderApproval(user_id=actor.user_id, role=actor.role.value, approved_at=now_utc())
    )
    session.flush()
    if not approvals_missing(session, locked):
        now = now_utc()
        locked.number = next_number(session, prefix=NUMBER_PREFIX, year=now.year)
        locked.state = S.APPROVED
        locked.approved_at = now
        session.flush()
    _record(session, actor, locked, "approve", before, role=actor.role.value)
    return locked


# ---------------------------------------------------------------- send, confirm, cancel


def send(session: Session, actor: Actor, po: PurchaseOrder) -> PurchaseOrder:
    """Render the order's PDF, keep it, and mail it to the vendor's contact."""
    from portal.procurement.documents import purchase_order_mail_queue, purchase_order_pdf_render

    locked = _move(session, actor, po, "send")
    recipient = locked.vendor.contact_email
    if not recipient:
        raise InvalidState(
            _l(
                "%(vendor)s has no contact email; add one to the vendor first.",
                vendor=locked.vendor.name,
            ),
            code="vendor_without_contact",
        )
    before = _snapshot(locked)
    locked.state = S.SENT
    locked.sent_at = now_utc()
    locked.sent_to = recipient
    session.flush()
    locked.pdf = purchase_order_pdf_render(session, locked)
    purchase_order_mail_queue(session, locked, actor=actor)
    session.flush()
    _record(session, actor, locked, "send", before, sent_to=recipient)
    return locked


class _ConfirmFields(BaseModel):
    model_config = ConfigDict(extra="forbid")
    vendor_reference: optional_text(200) = None  # type: ignore[valid-type]


def confirm(
    session: Session, actor: Actor, po: PurchaseOrder, *, vendor_reference: str | None = None
) -> PurchaseOrder:
    """The vendor confirmed the order (its own reference kept, if it gave one)."""
    fields = parse(_ConfirmFields, {"vendor_reference": vendor_reference})
    locked = _move(session, actor, po, "confirm")
    before = _snapshot(locked)
    locked.state = S.CONFIRMED
    locked.confirmed_at = now_utc()
    locked.vendor_reference = fields.vendor_reference
    session.flush()
    _record(session, actor, locked, "confirm", before, vendor_reference=fields.vendor_reference)
    return locked


class _CancelFields(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: optional_text(500) = None  # type: ignore[valid-type]


def cancel(
    session: Session, actor: Actor, po: PurchaseOrder, *, reason: str | None = None
) -> PurchaseOrder:
    """Cancel an order not yet received; a number given stays used (numbers have no gaps)."""
    fields = parse(_CancelFields, {"reason": reason})
    locked = _move(session, actor, po, "cancel")
    before = _snapshot(locked)
    locked.state = S.CANCELLED
    locked.cancelled_at = now_utc()
    locked.cancel_reason = fields.reason
    session.flush()
    _record(session, actor, locked, "cancel", before, reason=fields.reason)
    return locked


# ---------------------------------------------------------------- receive


def _pool_for(session: Session, po: PurchaseOrder, line: PurchaseOrderLine) -> LicencePool | None:
    """A pool the line's seats extend: same product, term, unit cost and currency."""
    return session.scalars(
        sa.select(LicencePool)
        .where(
            LicencePool.product_id == line.product_id,
            LicencePool.starts_on == po.starts_on,
            LicencePool.ends_on == po.ends_on,
            LicencePool.unit_cost_amount == line.unit_cost,
            LicencePool.unit_cost_currency == po.currency,
        )
        .order_by(LicencePool.id)
        .limit(1)
        .with_for_update(of=LicencePool)
    ).first()


def receive(session: Session, actor: Actor, po: PurchaseOrder) -> PurchaseOrder:
    """Put the ordered seats into pools, once: extend a pool of the same product, term and
    unit cost, or create one (its reference: the order's number)."""
    locked = _move(session, actor, po, "receive")
    before = _snapshot(locked)
    products: list[Product] = []
    # The products' rows in one order (by id), so two orders received at once never wait
    # on each other's products crosswise.
    for product_id in sorted({line.product_id for line in locked.lines}):
        lock_product(session, product_id)
    for line in locked.lines:
        pool = _pool_for(session, locked, line)
        if pool is None:
            pool = LicencePool(
                product_id=line.product_id,
                capacity=line.seats,
                starts_on=locked.starts_on,
                ends_on=locked.ends_on,
                unit_cost_amount=line.unit_cost,
                unit_cost_currency=locked.currency,
                reference=locked.number,
            )
            session.add(pool)
            session.flush()
            audit_record(
                session,
                actor=actor,
                action="pool.create",
                target_type="pool",
                target_id=pool.id,
                target_label=line.product.sku,
                after={"capacity": pool.capacity, "purchase_order": locked.number},
            )
        else:
            old = pool.capacity
            pool.capacity = old + line.seats
            session.flush()
            audit_record(
                session,
                actor=actor,
                action="pool.update",
                target_type="pool",
                target_id=pool.id,
                target_label=line.product.sku,
                before={"capacity": old},
                after={"capacity": pool.capacity, "purchase_order": locked.number},
            )
        line.pool_id = pool.id
        line.received_seats = line.seats
        products.append(line.product)
    locked.state = S.RECEIVED
    locked.received_at = now_utc()
    session.flush()
    _record(
        session, actor, locked, "receive", before, seats=sum(line.seats for line in locked.lines)
    )
    for product in products:
        pool_capacity_changed.send(product, session=session, actor=actor)
    return locked


# ---------------------------------------------------------------- vendor invoices, matching


class _InvoiceLineFields(BaseModel):
    model_config = ConfigDict(extra="forbid")
    line_id: DbId
    seats: Annotated[int, Field(ge=0, le=MAX_SEATS)]
    amount: Annotated[int, Field(ge=0, le=MAX_AMOUNT)]


class _InvoiceFields(BaseModel):
    model_config = ConfigDict(extra="forbid")
    vendor_number: Annotated[str, Field(min_length=1, max_length=100)]
    issued_on: SafeDate
    currency: Currency | None = None
    lines: Annotated[list[_InvoiceLineFields], Field(min_length=1, max_length=MAX_LINES)]

    @model_validator(mode="before")
    @classmethod
    def _strip(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("vendor_number"), str):
            data = {**data, "vendor_number": data["vendor_number"].strip()}
        return data


def vendor_invoice_record(
    session: Session, actor: Actor, po: PurchaseOrder, *, data: dict[str, Any]
) -> VendorInvoice:
    """Record the vendor's invoice against the order: ``{vendor_number, issued_on,
    [currency], lines: [{line_id, seats, amount}]}`` (amounts in the order's currency)."""
    policy.require(
        actor,
        Action.VENDOR_INVOICE_RECORD,
        message=_l("Only finance and council admins record vendor invoices."),
    )
    fields = parse(_InvoiceFields, data)
    locked = _lock(session, po)
    if locked.state not in INVOICEABLE:
        raise InvalidState(
            _l(
                "Purchase order %(label)s is %(state)s; "
                "a vendor invoice is recorded once it was sent.",
                label=locked.label,
                state=state_name(locked.state),
            ),
            code="invalid_transition",
        )
    errors: dict[str, list[Any]] = {}
    if fields.currency is not None and fields.currency != locked.currency:
        errors["currency"] = [_l("The order is in %(currency)s.", currency=locked.currency)]
    own = {line.id for line in locked.lines}
    seen: set[int] = set()
    for index, line in enumerate(fields.lines):
        if line.line_id not in own:
            errors[f"lines.{index}.line_id"] = [_l("No such line on this order.")]
        elif line.line_id in seen:
            errors[f"lines.{index}.line_id"] = [_l("Each line of the order once.")]
        seen.add(line.line_id)
    if session.scalar(
        sa.select(VendorInvoice.id).where(
            VendorInvoice.purchase_order_id == locked.id,
            VendorInvoice.vendor_number == fields.vendor_number,
        )
    ):
        raise Conflict(
            _l(
                "Vendor invoice %(number)s is recorded on this order already.",
                number=fields.vendor_number,
            ),
            code="vendor_invoice_recorded",
            errors={"vendor_number": [_l("Recorded already.")]},
        )
    if errors:
        raise ValidationFailed(_l("Some fields need attention."), errors=errors)
    invoice = VendorInvoice(
        purchase_order_id=locked.id,
        vendor_number=fields.vendor_number,
        issued_on=fields.issued_on,
        currency=locked.currency,
        amount=sum(line.amount for line in fields.lines),
        recorded_by_id=actor.user_id if actor.kind == ActorKind.PERSON else None,
        recorded_at=now_utc(),
        lines=[
            VendorInvoiceLine(
                purchase_order_line_id=line.line_id, seats=line.seats, amount=line.amount
            )
            for line in fields.lines
            if line.seats or line.amount
        ],
    )
    if invoice.amount > MAX_AMOUNT:
        raise ValidationFailed(
            _l("The invoice's total is too large."),
            errors={"lines": [_l("The invoice's total is too large.")]},
        )
    session.add(invoice)
    session.flush()
    audit_record(
        session,
        actor=actor,
        action="purchase_order.vendor_invoice_record",
        target_type="purchase_order",
        target_id=locked.id,
        target_label=locked.label,
        after={
            "vendor_number": invoice.vendor_number,
            "amount": invoice.amount,
            "currency": invoice.currency,
        },
    )
    return invoice


#: What a mismatch of a line is, as people read it.
PROBLEMS = {
    "over_invoiced": _l("invoiced more than ordered"),
    "seats_over_ordered": _l("more seats invoiced than ordered"),
    "seats_not_received": _l("seats invoiced that were not received"),
    "price_differs": _l("invoiced at another unit cost"),
}


@dataclass
class LineMatch:
    """One order line: ordered, received and invoiced, and what does not match."""

    line: PurchaseOrderLine
    received_seats: int
    invoiced_seats: int = 0
    invoiced_amount: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ordered_seats(self) -> int:
        return self.line.seats

    @property
    def ordered_amount(self) -> int:
        return self.line.amount


def match_lines(po: PurchaseOrder) -> list[LineMatch]:
    """Each line of ``po``, ordered vs received vs invoiced (all its vendor invoices)."""
    matches = {
        line.id: LineMatch(line=line, received_seats=line.received_seats) for line in po.lines
    }
    for invoice in po.vendor_invoices:
        for invoiced in invoice.lines:
            match = matches.get(invoiced.purchase_order_line_id)
            if match is not None:
                match.invoiced_seats += invoiced.seats
                match.invoiced_amount += invoiced.amount
    for match in matches.values():
        line = match.line
        if match.invoiced_amount > line.amount:
            match.problems.append("over_invoiced")
        if match.invoiced_seats > line.seats:
            match.problems.append("seats_over_ordered")
        if match.invoiced_seats > match.received_seats:
            match.problems.append("seats_not_received")
        if (
            match.invoiced_seats
            and match.invoiced_amount != match.invoiced_seats * line.unit_cost * line.months
        ):
            match.problems.append("price_differs")
    return list(matches.values())


def mismatches(session: Session, actor: Actor) -> list[tuple[PurchaseOrder, list[LineMatch]]]:
    """Orders with a vendor invoice whose lines do not match what was ordered or received."""
    policy.require(actor, Action.PURCHASE_ORDER_READ)
    invoiced = session.scalars(
        sa.select(PurchaseOrder)
        .where(PurchaseOrder.id.in_(sa.select(VendorInvoice.purchase_order_id)))
        .options(
            selectinload(PurchaseOrder.lines),
            selectinload(PurchaseOrder.vendor_invoices).selectinload(VendorInvoice.lines),
        )
        .order_by(PurchaseOrder.id)
    )
    found = []
    for po in invoiced:
        wrong = [match for match in match_lines(po) if match.problems]
        if wrong:
            found.append((po, wrong))
    return found


# ---------------------------------------------------------------- committed cost


def committed_cost(session: Session, *, start: dt.date, end: dt.date) -> dict[int, dict[str, int]]:
    """What committed orders (approved or later, not cancelled) cost in the days
    ``start``..``end`` (inclusive), per product and currency: each line's amount prorated
    by the days of its term that fall inside, rounded half-up once per line."""
    from fractions import Fraction

    from portal.billing.rating import round_half_up

    rows = session.execute(
        sa.select(
            PurchaseOrderLine,
            PurchaseOrder.starts_on,
            PurchaseOrder.ends_on,
            PurchaseOrder.currency,
        )
        .join(PurchaseOrder, PurchaseOrder.id == PurchaseOrderLine.purchase_order_id)
        .where(
            PurchaseOrder.state.in_(COMMITTED),
            PurchaseOrder.starts_on <= end,
            PurchaseOrder.ends_on >= start,
        )
    ).all()
    cost: dict[int, dict[str, int]] = {}
    for line, starts_on, ends_on, currency in rows:
        term_days = (ends_on - starts_on).days + 1
        inside = (min(end, ends_on) - max(start, starts_on)).days + 1
        share = round_half_up(Fraction(line.amount * inside, term_days))
        per_currency = cost.setdefault(line.product_id, {})
        per_currency[currency] = per_currency.get(currency, 0) + share
    return cost


@dataclass
class CommittedRow:
    """One product's committed cost in one currency, for a month."""

    sku: str
    name: str
    currency: str
    amount: int


@dataclass
class Committed:
    """A month's committed cost from purchase orders: per currency and per product."""

    totals: dict[str, int]
    rows: list[CommittedRow]


def committed_in_period(session: Session, *, period: str) -> Committed:
    """:func:`committed_cost` of the calendar month ``period`` (``YYYY-MM``), for the council
    economics page beside what members were billed (billing does not import procurement:
    the page asks both)."""
    from portal.kernel.periods import period_bounds

    start, end = period_bounds(period)
    first, last = start.date(), (end - dt.timedelta(days=1)).date()
    cost = committed_cost(session, start=first, end=last)
    products = {
        p.id: p for p in session.scalars(sa.select(Product).where(Product.id.in_(list(cost))))
    }
    rows = sorted(
        (
            CommittedRow(products[pid].sku, products[pid].name, currency, amount)
            for pid, per_currency in cost.items()
            for currency, amount in per_currency.items()
        ),
        key=lambda row: (row.name, row.currency),
    )
    totals: dict[str, int] = {}
    for row in rows:
        totals[row.currency] = totals.get(row.currency, 0) + row.amount
    return Committed(totals=dict(sorted(totals.items())), rows=rows)
