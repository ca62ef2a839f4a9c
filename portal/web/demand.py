"""The demand board (issue 16): seat requests, waitlists, product requests and utilisation per
product; members and org admins asking for a product not in the catalogue.

Thin views over :mod:`portal.procurement.demand`: the service checks who may do what
(a member reads their organisation's requests only; another organisation's is not
found), these pages show and submit.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from flask import Blueprint, flash, g, redirect, render_template, request, url_for

from portal.catalogue.models import Product, Vendor
from portal.catalogue.selectors import vendors_list
from portal.charts import line_chart
from portal.db import db_session
from portal.forms import committed, submitted
from portal.identity import auth
from portal.kernel import policy
from portal.kernel.clock import now_utc
from portal.kernel.errors import NotFound
from portal.kernel.i18n import _
from portal.kernel.money import from_minor
from portal.kernel.policy import Action
from portal.procurement import demand as service
from portal.procurement.demand_forms import (
    AnswerForm,
    DemandDraftForm,
    LinkForm,
    MergeForm,
    ProductRequestForm,
)
from portal.procurement.models import ProductRequestState, request_state_name

bp = Blueprint("demand", __name__)

#: The service's field names as the draft form names them.
DRAFT_ALIASES = {"lines.0.seats": "seats", "lines.0.unit_cost": "unit_cost", "lines": "seats"}


@bp.app_template_filter("request_state")
def request_state(value: str) -> str:
    """A product request's state in the reader's language."""
    return request_state_name(value)


def _status() -> int:
    return 400 if request.method == "POST" else 200


# ---------------------------------------------------------------- the board (council staff)


@bp.get("/demand")
@auth.action_required(Action.DEMAND_READ)
def board():
    """Every product's demand, the most pressed first; the requests not in the catalogue."""
    session = db_session()
    sort = request.args.get("sort", "pressure")
    if sort not in service.SORTS:
        sort = "pressure"
    rows = service.demand_board(session, g.actor, sort=sort)
    sparks = {
        row.product.id: line_chart(
            {"reserved": row.trend}, row.trend_labels, width=96, height=28, pad=3
        )
        for row in rows
    }
    return render_template(
        "demand/board.html",
        rows=rows,
        sparks=sparks,
        sort=sort,
        sorts=service.SORTS,
        groups=service.waiting_request_groups(session, g.actor),
        may_draft=policy.may(g.actor, Action.PURCHASE_ORDER_DRAFT),
    )


# ---------------------------------------------------------------- product requests


@bp.get("/requests/products")
@auth.action_required(Action.PRODUCT_REQUEST_READ)
def requests():
    """Product requests: the organisation's own for its people, every one for the council."""
    session = db_session()
    state = request.args.get("state", "")
    if state not in {s.value for s in ProductRequestState}:
        state = ""
    listed = service.product_requests_page(
        session, g.actor, state=state or None, page=request.args.get("page", 1, type=int) or 1
    )
    return render_template(
        "demand/requests.html",
        requests=listed.items,
        listed=listed,
        answers=service.answers_of(session, listed.items),
        state=state,
        states=list(ProductRequestState),
        council=g.actor.organisation_id is None,
        may_ask=policy.may(g.actor, Action.PRODUCT_REQUEST_CREATE),
    )


@bp.route("/requests/products/new", methods=["GET", "POST"])
@auth.action_required(Action.PRODUCT_REQUEST_CREATE)
def request_product():
    """Ask the council for a product the catalogue does not have."""
    session = db_session()
    form = ProductRequestForm(vendors=vendors_list(session))
    if request.method == "GET" and request.args.get("name"):
        form.product_name.data = request.args["name"][:200]
    if submitted(form):
        with committed(form) as saved:
            created = service.product_request_create(session, g.actor, **form.service_data())
        if saved:
            flash(
                _(
                    "Your request for %(product)s is sent to the council.",
                    product=created.product_name,
                ),
                "success",
            )
            return redirect(url_for("demand.request_detail", request_id=created.id))
    return render_template("demand/request_new.html", form=form), _status()


def _detail(product_request, status: int = 200, **forms):
    session = db_session()
    actor = g.actor
    deciding = policy.allowed(actor, Action.PRODUCT_REQUEST_DECIDE)
    merged = service.merged_into(session, product_request) if deciding else []
    if deciding:
        others = [
            r
            for r in service.product_requests_list(session, actor)
            if r.id != product_request.id and r.state != ProductRequestState.MERGED
        ]
        products = list(
            session.scalars(sa.select(Product).join(Vendor).order_by(Product.name, Product.id))
        )
        forms.setdefault(
            "answer_form",
            AnswerForm(
                prefix="answer",
                data={"state": str(product_request.state), "reply": product_request.reply},
            )
            if product_request.state != ProductRequestState.MERGED
            else None,
        )
        forms.setdefault("merge_form", MergeForm(prefix="merge", requests=others))
        forms.setdefault(
            "link_form",
            LinkForm(
                prefix="link",
                products=products,
                data={"product_id": str(product_request.product_id or "")},
            ),
        )
    return (
        render_template(
            "demand/request_detail.html",
            r=product_request,
            answer=service.answers_of(session, [product_request])[product_request.id],
            merged=merged,
            deciding=deciding,
            may_draft=policy.may(actor, Action.PURCHASE_ORDER_DRAFT),
            **forms,
        ),
        status,
    )


@bp.get("/requests/products/<int:request_id>")
@auth.action_required(Action.PRODUCT_REQUEST_READ)
def request_detail(request_id: int):
    """One request with its answer; the council's answer, merge and link forms."""
    return _detail(service.product_request_get(db_session(), g.actor, request_id))


@bp.post("/requests/products/<int:request_id>/answer")
@auth.action_required(Action.PRODUCT_REQUEST_DECIDE)
def request_answer(request_id: int):
    session = db_session()
    found = service.product_request_get(session, g.actor, request_id)
    form = AnswerForm(prefix="answer")
    if submitted(form):
        with committed(form) as saved:
            service.product_request_answer(
                session, g.actor, found, state=form.state.data, reply=form.reply.data
            )
        if saved:
            flash(_("The answer is saved; the requesters see it."), "success")
            return redirect(url_for("demand.request_detail", request_id=request_id))
    return _detail(service.product_request_get(session, g.actor, request_id), 400, answer_form=form)


@bp.post("/requests/products/<int:request_id>/merge")
@auth.action_required(Action.PRODUCT_REQUEST_DECIDE)
def request_merge(request_id: int):
    session = db_session()
    found = service.product_request_get(session, g.actor, request_id)
    others = [r for r in service.product_requests_list(session, g.actor) if r.id != request_id]
    form = MergeForm(prefix="merge", requests=others)
    if submitted(form):
        with committed(form) as saved:
            primary = service.product_request_merge(session, g.actor, found, into=form.into.data)
        if saved:
            flash(_("The request is merged; it counts in this one's demand."), "success")
            return redirect(url_for("demand.request_detail", request_id=primary.id))
    return _detail(service.product_request_get(session, g.actor, request_id), 400, merge_form=form)


@bp.post("/requests/products/<int:request_id>/link")
@auth.action_required(Action.PRODUCT_REQUEST_DECIDE)
def request_link(request_id: int):
    session = db_session()
    found = service.product_request_get(session, g.actor, request_id)
    products = list(session.scalars(sa.select(Product).join(Vendor).order_by(Product.name)))
    form = LinkForm(prefix="link", products=products)
    if submitted(form):
        with committed(form) as saved:
            service.product_request_link(session, g.actor, found, product_id=form.product_id.data)
        if saved:
            flash(_("The request is linked to the catalogue product."), "success")
            return redirect(url_for("demand.request_detail", request_id=request_id))
    return _detail(service.product_request_get(session, g.actor, request_id), 400, link_form=form)


# ---------------------------------------------------------------- drafting from demand


def _row_of(product_id: int) -> service.DemandRow:
    rows = service.demand_board(db_session(), g.actor)
    row = next((r for r in rows if r.product.id == product_id), None)
    if row is None:
        raise NotFound(_("No such product."))
    return row


@bp.route("/demand/products/<int:product_id>/draft", methods=["GET", "POST"])
@auth.action_required(Action.PURCHASE_ORDER_DRAFT)
def draft(product_id: int):
    """A purchase order of the product's seats: the suggested seats (waitlisted +
    requested), the latest pool's unit cost, a year's term from today (all editable)."""
    session = db_session()
    row = _row_of(product_id)
    request_id = request.values.get("request", type=int)
    product_request = (
        service.product_request_get(session, g.actor, request_id) if request_id else None
    )
    form = DemandDraftForm()
    if request.method == "GET":
        today = now_utc().date()
        seats = row.suggested_seats
        if product_request is not None:
            group = [product_request, *service.merged_into(session, product_request)]
            seats = max(seats, sum(r.seats for r in group))
        form.seats.data = seats or 1
        if row.unit_cost is not None and row.currency:
            form.unit_cost.data = from_minor(row.unit_cost, row.currency)
        form.currency.data = row.currency or ""
        form.starts_on.data = today
        form.ends_on.data = dt.date(today.year + 1, today.month, 1) - dt.timedelta(days=1)
    if submitted(form):
        with committed(form, aliases=DRAFT_ALIASES) as saved:
            po = service.draft_from_demand(
                session,
                g.actor,
                product_id=product_id,
                request_id=request_id,
                **form.service_data(),
            )
        if saved:
            flash(_("The draft is saved. It needs approval before it is sent."), "success")
            return redirect(url_for("procurement.purchase_order_detail", po_id=po.id))
    return (
        render_template("demand/draft.html", form=form, row=row, product_request=product_request),
        _status(),
    )
