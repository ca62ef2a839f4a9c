"""Demand (issue 16, SPEC 8.3): requests for products not in the catalogue, and the demand
board per product.

**Product requests.** A member or an org admin asks for a product the catalogue does not
have: its name, its vendor (an existing vendor, or typed), seats and a note. The council
(council admins) answers a request (``open``, ``planned``, ``ordered``, ``declined``, with
a reply the requesters read), merges duplicates into one *primary* request (a merged
request is ``merged``, points at its primary, counts in the primary's demand and shows
the primary's answer), links a request to the catalogue product once the council has
created it, and drafts a purchase order from it (:func:`draft_from_demand`).

**The board.** Per catalogue product, council-wide: open seat requests, the waitlisted
seats and how long the oldest waiting subscription has waited, product requests linked
to it, utilisation (reserved ÷ capacity in force, assigned ÷ reserved) and the reserved
seats on the first day of each of the last three months and now (the trend). *Pressure*
is the seats asked for and not given: waitlisted + open seat requests + the seats of the
product requests still waiting; it is also the suggested seats of a purchase order. The
board reads a constant number of statements whatever the number of products.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy.orm import Session, aliased

from portal.audit.services import audit_record
from portal.catalogue.models import LicencePool, Product, Vendor
from portal.db import UTCDateTime, council_wide
from portal.kernel import policy
from portal.kernel.actor import Actor, ActorKind
from portal.kernel.clock import now_utc
from portal.kernel.errors import InvalidState, NotFound, ValidationFailed
from portal.kernel.i18n import _, _l
from portal.kernel.policy import Action
from portal.notifications.kinds import Group, Kind, register
from portal.notifications.services import notify, notify_council_staff
from portal.pagination import Page, paginate
from portal.procurement.models import (
    REQUEST_WAITING,
    ProductRequest,
    ProductRequestState,
    PurchaseOrder,
    request_state_name,
)
from portal.procurement.purchase_orders import MAX_SEATS, draft_purchase_order
from portal.seats.counts import seat_counts
from portal.seats.models import (
    SeatRequest,
    SeatRequestStatus,
    Subscription,
    SubscriptionChange,
    SubscriptionStatus,
)
from portal.validation import DbId, optional_text, parse

R = ProductRequestState

#: The answers the council gives (``merged`` is a merge's, not an answer).
ANSWERS = (R.OPEN, R.PLANNED, R.ORDERED, R.DECLINED)

#: How the board may be sorted.
SORTS = ("pressure", "utilisation", "waiting", "name")

#: Points of the trend: the first day of each of the last three months, and now.
TREND_MONTHS = 3

MAX_REQUEST_SEATS = 100_000

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


# ---------------------------------------------------------------- notifications

#: The requesters of a request (and of those merged into it) are told the council's answer.
REQUEST_ANSWERED = "product_request.answered"
#: Council admins are told of a new request.
REQUEST_CREATED = "product_request.created"

register(
    Kind(
        name=REQUEST_ANSWERED,
        group=Group.OPERATIONS,
        title=lambda p: _(
            "The council answered your request for %(product)s", product=p["product"]
        ),
        body=lambda p: " ".join(
            part
            for part in (
                _("State: %(state)s.", state=request_state_name(p["state"])),
                str(p.get("reply") or ""),
            )
            if part
        ),
    )
)
register(
    Kind(
        name=REQUEST_CREATED,
        group=Group.OPERATIONS,
        title=lambda p: _("A request for %(product)s", product=p["product"]),
        body=lambda p: _(
            "%(organisation)s asks for %(seats)s seats of %(product)s (%(vendor)s).", **p
        ),
    )
)


def _tell_requesters(session: Session, actor: Actor, request: ProductRequest) -> None:
    """Tell the people who asked (this request and the ones merged into it) its answer."""
    group = [request, *merged_into(session, request)]
    notify(
        session,
        user_ids=[r.requested_by_id for r in group if r.requested_by_id is not None],
        kind=REQUEST_ANSWERED,
        key=f"product_request:{request.id}:{request.state}:{request.answered_at:%Y%m%dT%H%M%S%f}",
        params={
            "product": request.product_name,
            "state": str(request.state),
            "reply": request.reply,
        },
        link=f"/requests/products/{request.id}",
        actor=actor,
    )


# ---------------------------------------------------------------- product requests


class _RequestFields(BaseModel):
    model_config = ConfigDict(extra="forbid")
    product_name: Name
    vendor_id: DbId | None = None
    vendor_name: optional_text(200) = None  # type: ignore[valid-type]
    seats: Annotated[int, Field(ge=1, le=MAX_REQUEST_SEATS)]
    note: optional_text(1000) = None  # type: ignore[valid-type]


class _AnswerFields(BaseModel):
    model_config = ConfigDict(extra="forbid")
    state: Literal["open", "planned", "ordered", "declined"]
    reply: optional_text(2000) = None  # type: ignore[valid-type]


def _key(value: Any, message: Any) -> int:
    """A database id from a path or form, or :class:`NotFound`."""
    try:
        key = int(value)
    except (TypeError, ValueError):
        raise NotFound(message) from None
    if not 1 <= key < 2**63:
        raise NotFound(message)
    return key


def _audit(
    session: Session, actor: Actor, request: ProductRequest, action: str, **after: Any
) -> None:
    audit_record(
        session,
        actor=actor,
        action=f"product_request.{action}",
        target_type="product_request",
        target_id=request.id,
        target_label=request.product_name,
        organisation_id=request.organisation_id,
        after={"state": str(request.state), **after},
    )


def product_request_create(
    session: Session,
    actor: Actor,
    *,
    product_name: Any,
    seats: Any,
    vendor_id: Any = None,
    vendor_name: Any = None,
    note: Any = None,
) -> ProductRequest:
    """The actor's organisation asks the council for a product not in the catalogue.

    The vendor is an existing vendor (``vendor_id``) or its name as typed
    (``vendor_name``): one of them is needed. A product the catalogue has by that name
    is refused (ask for seats of it instead).
    """
    organisation_id = actor.organisation_id
    policy.require(
        actor,
        Action.PRODUCT_REQUEST_CREATE,
        organisation_id=organisation_id,
        message=_l("Members and org admins ask for products."),
    )
    assert organisation_id is not None  # OWN_ORG reach: an organisation's person
    fields = parse(
        _RequestFields,
        {
            "product_name": product_name,
            "vendor_id": vendor_id if vendor_id not in ("", None) else None,
            "vendor_name": vendor_name,
            "seats": seats,
            "note": note,
        },
    )
    errors: dict[str, list[Any]] = {}
    vendor = session.get(Vendor, fields.vendor_id) if fields.vendor_id else None
    if fields.vendor_id and vendor is None:
        errors["vendor_id"] = [_l("No such vendor.")]
    if fields.vendor_id is None and not fields.vendor_name:
        errors["vendor_name"] = [_l("Choose a vendor or type its name.")]
    existing = session.scalar(
        sa.select(Product.name).where(sa.func.lower(Product.name) == fields.product_name.lower())
    )
    if existing is not None:
        errors["product_name"] = [
            _l("%(product)s is in the catalogue: ask for seats of it there.", product=existing)
        ]
    if errors:
        raise ValidationFailed(_l("Some fields need attention."), errors=errors)
    request = ProductRequest(
        organisation_id=organisation_id,
        requested_by_id=actor.user_id if actor.kind == ActorKind.PERSON else None,
        product_name=fields.product_name,
        vendor_id=vendor.id if vendor else None,
        vendor_name=vendor.name if vendor else (fields.vendor_name or ""),
        seats=fields.seats,
        note=fields.note or "",
        state=R.OPEN,
        reply="",
    )
    session.add(request)
    session.flush()
    _audit(session, actor, request, "create", vendor=request.vendor_name, seats=request.seats)
    notify_council_staff(
        session,
        kind=REQUEST_CREATED,
        key=f"product_request:{request.id}:created",
        params={
            "product": request.product_name,
            "vendor": request.vendor_name,
            "seats": request.seats,
            "organisation": request.organisation.name,
        },
        link=f"/requests/products/{request.id}",
        actor=actor,
    )
    return request


def product_request_get(session: Session, actor: Actor, request_id: Any) -> ProductRequest:
    """One request: the council reads any, an organisation's people their own (another
    organisation's, an unknown or malformed id: not found)."""
    policy.require_may(actor, Action.PRODUCT_REQUEST_READ)
    key = _key(request_id, _l("No such product request."))
    query = sa.select(ProductRequest).where(ProductRequest.id == key)
    if actor.organisation_id is not None:
        query = query.where(ProductRequest.organisation_id == actor.organisation_id)
    request = session.scalar(query)
    if request is None:
        raise NotFound(_l("No such product request."))
    policy.require(actor, Action.PRODUCT_REQUEST_READ, organisation_id=request.organisation_id)
    return request


def product_requests_query(
    actor: Actor, *, state: str | None = None, before_id: int | None = None
) -> sa.Select | None:
    """The requests the actor may read, newest first (None: none at all): every
    organisation's for the council, the actor's organisation's for its people; optionally
    of one state, and older than ``before_id`` (an API cursor)."""
    policy.require_may(actor, Action.PRODUCT_REQUEST_READ)
    query = sa.select(ProductRequest).order_by(ProductRequest.id.desc())
    if not policy.allowed(actor, Action.PRODUCT_REQUEST_READ):  # not council-wide
        if actor.organisation_id is None:
            return None
        policy.require(actor, Action.PRODUCT_REQUEST_READ, organisation_id=actor.organisation_id)
        query = query.where(ProductRequest.organisation_id == actor.organisation_id)
    if state:
        try:
            query = query.where(ProductRequest.state == ProductRequestState(state))
        except ValueError:
            raise ValidationFailed(
                _l("Unknown state."), errors={"state": [_l("Choose one of the states listed.")]}
            ) from None
    if before_id is not None:
        query = query.where(ProductRequest.id < before_id)
    return query


def product_requests_list(
    session: Session,
    actor: Actor,
    *,
    state: str | None = None,
    limit: int | None = 200,
    before_id: int | None = None,
) -> list[ProductRequest]:
    """Requests, newest first, at most ``limit`` (None: all; see
    :func:`product_requests_query`)."""
    query = product_requests_query(actor, state=state, before_id=before_id)
    if query is None:
        return []
    if limit is not None:
        query = query.limit(limit)
    return list(session.scalars(query))


def product_requests_page(
    session: Session, actor: Actor, *, state: str | None = None, page: int = 1, per_page: int = 50
) -> Page[ProductRequest]:
    """One page of :func:`product_requests_query` (the requests page: a council has
    thousands over the years)."""
    query = product_requests_query(actor, state=state)
    if query is None:
        return Page(items=[], page=max(1, page), per_page=per_page, total=0)
    return paginate(session, query, page=page, per_page=per_page)


@dataclass
class Answer:
    """What the requesters read: the state and reply of the request, or of its primary."""

    state: str
    reply: str

    @property
    def state_name(self) -> str:
        return request_state_name(self.state)


def answers_of(session: Session, requests: list[ProductRequest]) -> dict[int, Answer]:
    """Each request's answer; a merged request shows its primary's (read council-wide: the
    primary may be another organisation's; only its state and reply leave)."""
    answers = {r.id: Answer(str(r.state), r.reply) for r in requests if r.state != R.MERGED}
    primaries = {r.merged_into_id for r in requests if r.merged_into_id is not None}
    if primaries:
        with council_wide(session):
            found = {
                id_: Answer(str(state), reply)
                for id_, state, reply in session.execute(
                    sa.select(ProductRequest.id, ProductRequest.state, ProductRequest.reply).where(
                        ProductRequest.id.in_(primaries)
                    )
                )
            }
        for r in requests:
            if r.merged_into_id in found:
                answers[r.id] = found[r.merged_into_id]
    return answers


def merged_into(session: Session, request: ProductRequest) -> list[ProductRequest]:
    """The requests merged into ``request`` (council-wide), oldest first."""
    return list(
        session.scalars(
            sa.select(ProductRequest)
            .where(ProductRequest.merged_into_id == request.id)
            .order_by(ProductRequest.id)
        )
    )


def _decide(actor: Actor) -> None:
    policy.require(
        actor,
        Action.PRODUCT_REQUEST_DECIDE,
        message=_l("Only council admins answer product requests."),
    )


def _lock(session: Session, request: ProductRequest) -> ProductRequest:
    return session.scalars(
        sa.select(ProductRequest)
        .where(ProductRequest.id == request.id)
        .with_for_update(of=ProductRequest)
        .execution_options(populate_existing=True)
    ).one()


def product_request_answer(
    session: Session, actor: Actor, request: ProductRequest, *, state: Any, reply: Any = None
) -> ProductRequest:
    """The council's answer: a state (open, planned, ordered, declined) and a reply."""
    _decide(actor)
    fields = parse(_AnswerFields, {"state": state, "reply": reply})
    request = _lock(session, request)
    if request.state == R.MERGED:
        raise InvalidState(
            _l("This request is merged into another: answer that one."), code="request_merged"
        )
    before = str(request.state)
    request.state = ProductRequestState(fields.state)
    request.reply = fields.reply or ""
    request.answered_at = now_utc()
    request.answered_by_id = actor.user_id if actor.kind == ActorKind.PERSON else None
    session.flush()
    _audit(session, actor, request, "answer", before=before, reply=request.reply)
    _tell_requesters(session, actor, request)
    return request


def product_request_merge(
    session: Session, actor: Actor, request: ProductRequest, *, into: Any
) -> ProductRequest:
    """Merge ``request`` into the primary request ``into`` (a duplicate of it); the
    requests merged into ``request`` move to the primary too. Returns the primary."""
    _decide(actor)
    key = _key(into, _l("No such product request."))
    if key == request.id:
        raise ValidationFailed(
            _l("A request cannot be merged into itself."),
            errors={"into": [_l("Choose another request.")]},
        )
    primary = session.get(ProductRequest, key)
    if primary is None:
        raise ValidationFailed(
            _l("No such product request."), errors={"into": [_l("No such product request.")]}
        )
    # Both rows locked, in id order (two merges at once cannot cross).
    first, second = sorted((request, primary), key=lambda r: r.id)
    first, second = _lock(session, first), _lock(session, second)
    request, primary = (first, second) if first.id == request.id else (second, first)
    if request.state == R.MERGED:
        raise InvalidState(_l("This request is merged already."), code="request_merged")
    if primary.state == R.MERGED:
        raise InvalidState(
            _l("That request is merged into another: merge into that one."),
            code="request_merged",
        )
    for child in merged_into(session, request):
        child.merged_into_id = primary.id
        if primary.product_id and child.product_id is None:
            child.product_id = primary.product_id
    if primary.product_id is None and request.product_id is not None:
        primary.product_id = request.product_id
    request.state = R.MERGED
    request.merged_into_id = primary.id
    request.product_id = primary.product_id
    session.flush()
    _audit(session, actor, request, "merge", into=primary.id)
    return primary


def product_request_link(
    session: Session, actor: Actor, request: ProductRequest, *, product_id: Any
) -> ProductRequest:
    """The catalogue product ``request`` asked for (and the requests merged into it)."""
    _decide(actor)
    key = _key(product_id, _l("No such product."))
    product = session.get(Product, key)
    if product is None:
        raise ValidationFailed(
            _l("No such product."), errors={"product_id": [_l("No such product.")]}
        )
    request = _lock(session, request)
    if request.state == R.MERGED:
        raise InvalidState(
            _l("This request is merged into another: link that one."), code="request_merged"
        )
    request.product_id = product.id
    for child in merged_into(session, request):
        child.product_id = product.id
    session.flush()
    _audit(session, actor, request, "link", product=product.sku)
    return request


# ---------------------------------------------------------------- the board


@dataclass
class DemandRow:
    """One product's demand figures (council-wide)."""

    product: Product
    capacity: int = 0
    reserved: int = 0
    assigned: int = 0
    waitlisted: int = 0
    oldest_waiting_at: dt.datetime | None = None
    waiting_days: int | None = None
    seat_requests: int = 0
    product_requests: int = 0
    requested_seats: int = 0
    #: reserved seats on the first day of each of the last three months, and now
    trend: list[int] = field(default_factory=list)
    trend_labels: list[str] = field(default_factory=list)
    #: the latest pool's unit cost per seat-month and currency (a draft's defaults)
    unit_cost: int | None = None
    currency: str | None = None

    @property
    def pressure(self) -> int:
        """Seats asked for and not given."""
        return self.waitlisted + self.seat_requests + self.requested_seats

    @property
    def suggested_seats(self) -> int:
        """A purchase order's seats: waitlisted + requested."""
        return self.pressure

    @property
    def reserved_percent(self) -> int | None:
        return round(100 * self.reserved / self.capacity) if self.capacity else None

    @property
    def assigned_percent(self) -> int | None:
        return round(100 * self.assigned / self.reserved) if self.reserved else None

    @property
    def direction(self) -> Literal["up", "down", "flat"]:
        """The trend from its first point to now."""
        if len(self.trend) < 2 or self.trend[-1] == self.trend[0]:
            return "flat"
        return "up" if self.trend[-1] > self.trend[0] else "down"


def trend_instants(now: dt.datetime) -> list[dt.datetime]:
    """The first day (00:00 UTC) of each of the last :data:`TREND_MONTHS` months before
    this one, then ``now``."""
    out = []
    year, month = now.year, now.month
    for back in range(TREND_MONTHS, 0, -1):
        y, m = divmod(year * 12 + month - 1 - back, 12)
        out.append(dt.datetime(y, m + 1, 1, tzinfo=dt.UTC))
    return [*out, now]


def _sort(rows: list[DemandRow], sort: str) -> list[DemandRow]:
    if sort == "name":
        return sorted(rows, key=lambda r: (r.product.name.lower(), r.product.id))
    if sort == "utilisation":
        return sorted(
            rows, key=lambda r: (-(r.reserved_percent or 0), -r.pressure, r.product.name.lower())
        )
    if sort == "waiting":
        return sorted(
            rows, key=lambda r: (-(r.waiting_days or -1), -r.pressure, r.product.name.lower())
        )
    return sorted(
        rows, key=lambda r: (-r.pressure, -(r.reserved_percent or 0), r.product.name.lower())
    )


def demand_board(
    session: Session,
    actor: Actor,
    *,
    sort: str = "pressure",
    after_id: int | None = None,
    limit: int | None = None,
) -> list[DemandRow]:
    """Every product's demand, sorted by ``sort`` (:data:`SORTS`; unknown: pressure).

    With ``after_id``/``limit`` (the API's pages) the products are in id order from
    ``after_id`` on. Nine statements whatever the number of products.
    """
    policy.require(actor, Action.DEMAND_READ, message=_l("Only council staff see demand."))
    now = now_utc()
    today = now.date()
    query = sa.select(Product).join(Vendor).order_by(Product.id)
    if after_id is not None:
        query = query.where(Product.id > after_id)
    if limit is not None:
        query = query.limit(limit)
    with council_wide(session):
        products = list(session.scalars(query))
        rows = {p.id: DemandRow(product=p) for p in products}
        ids = list(rows)
        if not ids:
            return []
        _pools(session, rows, ids, today)
        _subscriptions(session, rows, ids, now)
        for product_id, count in session.execute(
            sa.select(SeatRequest.product_id, sa.func.count())
            .where(
                SeatRequest.product_id.in_(ids),
                SeatRequest.status == SeatRequestStatus.PENDING,
            )
            .group_by(SeatRequest.product_id)
        ):
            rows[product_id].seat_requests = int(count)
        for product_id, count, seats in _waiting_requests(session, ids):
            rows[product_id].product_requests = int(count)
            rows[product_id].requested_seats = int(seats or 0)
        _trend(session, rows, ids, now)
    result = list(rows.values())
    return result if limit is not None else _sort(result, sort if sort in SORTS else "pressure")


def _pools(session: Session, rows: dict[int, DemandRow], ids: list[int], today: dt.date) -> None:
    """Capacity in force today; the latest pool's unit cost and currency."""
    for product_id, capacity, starts_on, ends_on, cost, currency in session.execute(
        sa.select(
            LicencePool.product_id,
            LicencePool.capacity,
            LicencePool.starts_on,
            LicencePool.ends_on,
            LicencePool.unit_cost_amount,
            LicencePool.unit_cost_currency,
        )
        .where(LicencePool.product_id.in_(ids))
        .order_by(LicencePool.ends_on, LicencePool.id)
    ):
        row = rows[product_id]
        if starts_on <= today <= ends_on:
            row.capacity += capacity
        row.unit_cost, row.currency = cost, currency  # the last-ending pool's, in the end


def _subscriptions(
    session: Session, rows: dict[int, DemandRow], ids: list[int], now: dt.datetime
) -> None:
    """Reserved, waitlisted and held seats from the figures kept as seats change
    (:func:`portal.seats.counts.seat_counts`), not a sum over every subscription; the
    oldest waiting subscription from the waiting ones alone (``ix_subscriptions_waiting``)."""
    for product_id, (reserved, waitlisted, assigned) in seat_counts(session, ids).items():
        row = rows[product_id]
        row.reserved, row.waitlisted, row.assigned = reserved, waitlisted, assigned
    for product_id, oldest in session.execute(
        sa.select(
            Subscription.product_id,
            sa.type_coerce(sa.func.min(Subscription.waitlisted_at), UTCDateTime()),
        )
        .where(
            Subscription.product_id.in_(ids),
            Subscription.requested_quantity > Subscription.quantity,
            Subscription.status != SubscriptionStatus.CANCELLED,
        )
        .group_by(Subscription.product_id)
    ):
        row = rows[product_id]
        if oldest is not None and row.waitlisted:
            row.oldest_waiting_at = oldest
            row.waiting_days = max(0, (now - oldest).days)


def _waiting_requests(session: Session, ids: list[int]) -> list[Any]:
    """Per product: the product requests still waiting (open or planned, or merged into one
    that is) and their seats."""
    primary = aliased(ProductRequest)
    own_state = ProductRequest.state.in_(REQUEST_WAITING)
    merged_waiting = sa.and_(ProductRequest.state == R.MERGED, primary.state.in_(REQUEST_WAITING))
    return list(
        session.execute(
            sa.select(
                ProductRequest.product_id,
                sa.func.count(),
                sa.func.sum(ProductRequest.seats),
            )
            .outerjoin(primary, primary.id == ProductRequest.merged_into_id)
            .where(ProductRequest.product_id.in_(ids), sa.or_(own_state, merged_waiting))
            .group_by(ProductRequest.product_id)
        )
    )


def _trend(session: Session, rows: dict[int, DemandRow], ids: list[int], now: dt.datetime) -> None:
    """Reserved seats of each product at each of :func:`trend_instants`, from the
    subscriptions' histories (one statement)."""
    instants = trend_instants(now)
    # Per subscription: its quantity at each instant (the last change at or before it).
    at: dict[int, list[int]] = {}
    product_of: dict[int, int] = {}
    for sub_id, product_id, effective_at, quantity in session.execute(
        sa.select(
            SubscriptionChange.subscription_id,
            Subscription.product_id,
            SubscriptionChange.effective_at,
            SubscriptionChange.quantity,
        )
        .join(Subscription, Subscription.id == SubscriptionChange.subscription_id)
        .where(Subscription.product_id.in_(ids), SubscriptionChange.effective_at <= now)
        .order_by(SubscriptionChange.effective_at, SubscriptionChange.id)
    ):
        product_of[sub_id] = product_id
        values = at.setdefault(sub_id, [0] * len(instants))
        for i, instant in enumerate(instants):
            if effective_at <= instant:
                values[i] = quantity
    totals: dict[int, list[int]] = defaultdict(lambda: [0] * len(instants))
    for sub_id, values in at.items():
        total = totals[product_of[sub_id]]
        for i, value in enumerate(values):
            total[i] += value
    labels = [instant.strftime("%Y-%m-%d") for instant in instants]
    for product_id, row in rows.items():
        row.trend = list(totals.get(product_id, [0] * len(instants)))
        row.trend_labels = labels


def waiting_requests_of(
    session: Session, actor: Actor, product_ids: list[int]
) -> dict[int, list[ProductRequest]]:
    """The product requests linked to each of ``product_ids`` that still wait (open or
    planned, or merged into one that is), oldest first: one statement."""
    policy.require(actor, Action.DEMAND_READ, message=_l("Only council staff see demand."))
    if not product_ids:
        return {}
    primary = aliased(ProductRequest)
    out: dict[int, list[ProductRequest]] = defaultdict(list)
    with council_wide(session):
        for r in session.scalars(
            sa.select(ProductRequest)
            .outerjoin(primary, primary.id == ProductRequest.merged_into_id)
            .where(
                ProductRequest.product_id.in_(product_ids),
                sa.or_(
                    ProductRequest.state.in_(REQUEST_WAITING),
                    sa.and_(ProductRequest.state == R.MERGED, primary.state.in_(REQUEST_WAITING)),
                ),
            )
            .order_by(ProductRequest.id)
        ):
            out[r.product_id].append(r)  # type: ignore[index]
    return dict(out)


@dataclass
class RequestGroup:
    """A primary request still waiting, with the requests merged into it."""

    request: ProductRequest
    merged: list[ProductRequest]

    @property
    def count(self) -> int:
        return 1 + len(self.merged)

    @property
    def seats(self) -> int:
        return self.request.seats + sum(r.seats for r in self.merged)

    @property
    def organisations(self) -> int:
        return len({self.request.organisation_id, *(r.organisation_id for r in self.merged)})


def waiting_request_groups(session: Session, actor: Actor) -> list[RequestGroup]:
    """The product requests the council has not settled (open or planned), each with its
    merged duplicates, the most wanted first (two statements)."""
    policy.require(actor, Action.DEMAND_READ, message=_l("Only council staff see demand."))
    with council_wide(session):
        primaries = list(
            session.scalars(
                sa.select(ProductRequest)
                .where(ProductRequest.state.in_(REQUEST_WAITING))
                .order_by(ProductRequest.id)
            )
        )
        merged: dict[int, list[ProductRequest]] = defaultdict(list)
        if primaries:
            for r in session.scalars(
                sa.select(ProductRequest)
                .where(ProductRequest.merged_into_id.in_([p.id for p in primaries]))
                .order_by(ProductRequest.id)
            ):
                merged[r.merged_into_id].append(r)  # type: ignore[index]
    groups = [RequestGroup(p, merged.get(p.id, [])) for p in primaries]
    return sorted(groups, key=lambda g: (-g.seats, g.request.id))


# ---------------------------------------------------------------- drafting from demand


def draft_from_demand(
    session: Session,
    actor: Actor,
    *,
    product_id: Any,
    seats: Any,
    unit_cost: Any,
    currency: Any,
    starts_on: Any,
    ends_on: Any,
    request_id: Any = None,
) -> PurchaseOrder:
    """A draft purchase order of one product's seats (``source = demand``), through
    :func:`~portal.procurement.purchase_orders.draft_purchase_order`. From a product
    request (``request_id``): the request must be linked to that product; it becomes
    ``ordered`` and points at the draft."""
    policy.require(
        actor, Action.PURCHASE_ORDER_DRAFT, message=_l("Only council admins draft purchase orders.")
    )
    key = _key(product_id, _l("No such product."))
    product = session.get(Product, key)
    if product is None:
        raise NotFound(_l("No such product."))
    request = None
    if request_id not in (None, ""):
        request = product_request_get(session, actor, request_id)
        if request.state == R.MERGED or request.product_id != product.id:
            raise InvalidState(
                _l("Link the request to this product before ordering it."),
                code="request_not_linked",
            )
    try:
        seats_int = int(seats)
    except (TypeError, ValueError):
        seats_int = seats
    po = draft_purchase_order(
        session,
        actor,
        vendor_id=product.vendor_id,
        lines=[{"product_id": product.id, "seats": seats_int, "unit_cost": unit_cost}],
        currency=currency,
        starts_on=starts_on,
        ends_on=ends_on,
        source="demand",
        notes=str(_l("Drafted from the demand board.")),
    )
    if request is not None:
        request = _lock(session, request)
        request.state = R.ORDERED
        request.purchase_order_id = po.id
        request.answered_at = now_utc()
        request.answered_by_id = actor.user_id if actor.kind == ActorKind.PERSON else None
        session.flush()
        _audit(session, actor, request, "order", purchase_order=po.id)
        _tell_requesters(session, actor, request)
    return po


__all__ = [
    "ANSWERS",
    "MAX_SEATS",
    "SORTS",
    "Answer",
    "DemandRow",
    "RequestGroup",
    "answers_of",
    "demand_board",
    "draft_from_demand",
    "merged_into",
    "product_request_answer",
    "product_request_create",
    "product_request_get",
    "product_request_link",
    "product_request_merge",
    "product_requests_list",
    "product_requests_page",
    "product_requests_query",
    "trend_instants",
    "waiting_request_groups",
    "waiting_requests_of",
]
