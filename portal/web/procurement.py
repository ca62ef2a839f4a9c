"""Purchase orders (issue 16, SPEC 8.3): drafting, approvals, sending, receiving, vendor invoices
matched.

Council staff only: council admins draft and move orders; finance and council admins
approve (four eyes above the council's threshold) and record the vendor's invoices;
both read every order and the mismatches. The rules are the service's
(:mod:`portal.procurement.purchase_orders`); these views are thin.
"""

from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint, Response, abort, flash, g, redirect, render_template, request, url_for
from flask_wtf import FlaskForm

from portal.catalogue.models import Product, Vendor
from portal.catalogue.selectors import vendors_list
from portal.db import db_session
from portal.identity import auth
from portal.kernel import policy
from portal.kernel.errors import DomainError
from portal.kernel.i18n import _
from portal.kernel.money import from_minor
from portal.kernel.policy import Action
from portal.procurement import purchase_orders as service
from portal.procurement.documents import document_context, pdf_filename, purchase_order_pdf
from portal.procurement.forms import CancelForm, ConfirmForm, DraftForm, MoveForm, VendorInvoiceForm
from portal.procurement.models import PurchaseOrder, PurchaseOrderState, state_name

bp = Blueprint("procurement", __name__)

#: What each move says when it was made.
DONE = {
    "approve": lambda po: (
        _("Purchase order %(number)s is approved.", number=po.number)
        if po.number
        else _("Your approval is recorded; the order waits for another approval.")
    ),
    "send": lambda po: _(
        "Purchase order %(number)s is sent to %(email)s.", number=po.number, email=po.sent_to
    ),
    "confirm": lambda po: _(
        "The vendor's confirmation of %(number)s is recorded.", number=po.number
    ),
    "receive": lambda po: _(
        "Purchase order %(number)s is received: its seats are in the pools.", number=po.number
    ),
    "cancel": lambda po: _("Purchase order %(label)s is cancelled.", label=po.label),
}


@bp.app_template_filter("po_state")
def po_state(value: str) -> str:
    """A purchase order's state in the reader's language."""
    return state_name(value)


@bp.context_processor
def _subnav() -> dict:
    """Whether the reader may draft (the sub-navigation's "New draft")."""
    actor = getattr(g, "actor", None)
    return {"may_draft": actor is not None and policy.may(actor, Action.PURCHASE_ORDER_DRAFT)}


def _order(po_id: int) -> PurchaseOrder:
    return service.purchase_order_get(db_session(), g.actor, po_id)


@bp.get("/council/purchase-orders")
@auth.action_required(Action.PURCHASE_ORDER_READ)
def purchase_orders():
    """Every order, newest first, filtered by state and vendor."""
    session = db_session()
    state = request.args.get("state", "")
    if state not in {s.value for s in PurchaseOrderState}:
        state = ""
    vendors = vendors_list(session)
    vendor_slug = request.args.get("vendor", "")
    vendor = next((v for v in vendors if v.slug == vendor_slug), None)
    before = request.args.get("before", type=int)
    rows = service.purchase_orders_list(
        session,
        g.actor,
        state=state or None,
        vendor_id=vendor.id if vendor else None,
        limit=51,
        after_id=before if before and before > 0 else None,
    )
    return render_template(
        "procurement/purchase_orders.html",
        orders=rows[:50],
        more=rows[49].id if len(rows) > 50 else None,
        state=state,
        states=list(PurchaseOrderState),
        vendors=vendors,
        vendor=vendor.slug if vendor else "",
        mismatched=len(service.mismatches(session, g.actor)),
    )


def _draft_form(po: PurchaseOrder | None = None) -> DraftForm:
    """The draft form; for ``po`` (a GET of its edit page), filled with what it says."""
    session = db_session()
    products = list(
        session.scalars(sa.select(Product).join(Vendor).order_by(Vendor.name, Product.name))
    )
    data = None
    if po is not None and request.method == "GET":
        data = {
            "vendor": str(po.vendor_id),
            "currency": po.currency,
            "starts_on": po.starts_on,
            "ends_on": po.ends_on,
            "notes": po.notes,
            "lines": [
                {
                    "product": str(line.product_id),
                    "seats": line.seats,
                    "unit_cost": from_minor(line.unit_cost, po.currency),
                }
                for line in po.lines
            ],
        }
    return DraftForm(vendors=vendors_list(session), products=products, data=data)


@bp.route("/council/purchase-orders/<int:po_id>/edit", methods=["GET", "POST"])
@auth.action_required(Action.PURCHASE_ORDER_DRAFT)
def purchase_order_edit(po_id: int):
    """Change a draft; approvals it had are withdrawn (they approved what it said then)."""
    po = _order(po_id)
    if po.state != PurchaseOrderState.DRAFT:
        flash(_("Only a draft is changed."), "error")
        return redirect(url_for("procurement.purchase_order_detail", po_id=po_id))
    form = _draft_form(po)
    form.submit.label.text = _("Save the changes")
    if request.method == "POST":
        valid = form.validate_on_submit()
        try:
            service.update_draft(db_session(), g.actor, po, **form.service_data())
        except DomainError as error:
            db_session().rollback()
            form.show_errors(error)
        else:
            if valid and not form.has_errors():
                db_session().commit()
                flash(_("The draft is saved."), "success")
                return redirect(url_for("procurement.purchase_order_detail", po_id=po_id))
            db_session().rollback()
    status = 400 if request.method == "POST" else 200
    return render_template("procurement/purchase_order_new.html", form=form, po=po), status


@bp.route("/council/purchase-orders/new", methods=["GET", "POST"])
@auth.action_required(Action.PURCHASE_ORDER_DRAFT)
def purchase_order_new():
    """A new draft: a vendor, a term, a currency and up to five lines."""
    form = _draft_form()
    if request.method == "GET":
        wanted = request.args.get("vendor", "")
        form.vendor.data = next(
            (str(v.id) for v in vendors_list(db_session()) if v.slug == wanted), ""
        )
    if request.method == "POST":
        # The service is asked even when a field's own check failed, so every message shows
        # on the first submit; only a draft without any problem is kept.
        valid = form.validate_on_submit()
        try:
            po = service.draft_purchase_order(db_session(), g.actor, **form.service_data())
        except DomainError as error:
            db_session().rollback()
            form.show_errors(error)
        else:
            if valid and not form.has_errors():
                db_session().commit()
                flash(_("The draft is saved. It needs approval before it is sent."), "success")
                return redirect(url_for("procurement.purchase_order_detail", po_id=po.id))
            db_session().rollback()
    status = 400 if request.method == "POST" else 200
    return render_template("procurement/purchase_order_new.html", form=form), status


@bp.get("/council/purchase-orders/<int:po_id>")
@auth.action_required(Action.PURCHASE_ORDER_READ)
def purchase_order_detail(po_id: int):
    """One order: the document, its approvals, the moves the reader may make, the matching."""
    return _detail(_order(po_id))


def _detail(po: PurchaseOrder, *, invoice_form: VendorInvoiceForm | None = None, status: int = 200):
    session = db_session()
    actor = g.actor
    moves = [
        (move, service.ACTION_LABELS[move])
        for move in service.allowed_moves(po.state)
        if move not in ("confirm", "cancel")
        and policy.may(actor, service.ACTIONS[move])
        and (move != "approve" or service.may_approve(session, actor, po))
    ]
    may_record = po.state in service.INVOICEABLE and policy.may(actor, Action.VENDOR_INVOICE_RECORD)
    if invoice_form is None and may_record:
        invoice_form = VendorInvoiceForm(order_lines=po.lines, formdata=None)
    return render_template(
        "procurement/purchase_order_detail.html",
        moves=moves,
        move_form=MoveForm(),
        confirm_form=ConfirmForm(formdata=None)
        if "confirm" in service.allowed_moves(po.state)
        and policy.may(actor, Action.PURCHASE_ORDER_CONFIRM)
        else None,
        cancel_form=CancelForm(formdata=None)
        if "cancel" in service.allowed_moves(po.state)
        and policy.may(actor, Action.PURCHASE_ORDER_CANCEL)
        else None,
        invoice_form=invoice_form if may_record else None,
        missing=service.approvals_missing(session, po) if po.state == "draft" else [],
        finance_needed=service.finance_needed(session, po),
        matches=service.match_lines(po),
        problems=service.PROBLEMS,
        **document_context(session, po),
    ), status


@bp.post("/council/purchase-orders/<int:po_id>/<move>")
@auth.action_required(Action.PURCHASE_ORDER_READ)
def purchase_order_move(po_id: int, move: str):
    """Approve, send, confirm, receive or cancel: the result is flashed on the order's page."""
    if move not in service.TRANSITIONS:
        abort(404)
    if not policy.may(g.actor, service.ACTIONS[move]):
        abort(403)
    po = _order(po_id)
    form: FlaskForm = {"confirm": ConfirmForm, "cancel": CancelForm}.get(move, MoveForm)()
    if not form.validate_on_submit():
        flash(_("The form expired or was incomplete; nothing was changed. Try again."), "error")
        return redirect(url_for("procurement.purchase_order_detail", po_id=po_id))
    kwargs = {}
    if isinstance(form, ConfirmForm):
        kwargs["vendor_reference"] = form.vendor_reference.data
    elif isinstance(form, CancelForm):
        kwargs["reason"] = form.reason.data
    try:
        moved = getattr(service, move)(db_session(), g.actor, po, **kwargs)
    except DomainError as error:
        db_session().rollback()
        flash(error.detail, "error")
    else:
        db_session().commit()
        flash(DONE[move](moved), "success")
    return redirect(url_for("procurement.purchase_order_detail", po_id=po_id))


@bp.post("/council/purchase-orders/<int:po_id>/vendor-invoices")
@auth.action_required(Action.VENDOR_INVOICE_RECORD)
def vendor_invoice_new(po_id: int):
    """Record the vendor's invoice against the order, line by line."""
    po = _order(po_id)
    form = VendorInvoiceForm(order_lines=po.lines)
    valid = form.validate_on_submit()
    try:
        service.vendor_invoice_record(
            db_session(), g.actor, po, data=form.service_data(po.currency)
        )
    except DomainError as error:
        db_session().rollback()
        form.show_errors(error)
    else:
        if valid and not form.has_errors():
            db_session().commit()
            flash(_("The vendor invoice is recorded."), "success")
            return redirect(url_for("procurement.purchase_order_detail", po_id=po_id))
    db_session().rollback()
    return _detail(_order(po_id), invoice_form=form, status=400)


@bp.get("/council/purchase-orders/<int:po_id>.pdf")
@auth.action_required(Action.PURCHASE_ORDER_READ)
def purchase_order_pdf_download(po_id: int):
    """The order as sent (or, before it was sent, as it would be)."""
    po = _order(po_id)
    return Response(
        purchase_order_pdf(db_session(), po),
        mimetype="application/pdf",
        headers={"Content-Disposition": f'inline; filename="{pdf_filename(po)}"'},
    )


@bp.get("/council/purchase-orders/mismatches")
@auth.action_required(Action.PURCHASE_ORDER_READ)
def mismatches():
    """Vendor invoices that do not match what was ordered or received, line by line."""
    return render_template(
        "procurement/mismatches.html",
        found=service.mismatches(db_session(), g.actor),
        problems=service.PROBLEMS,
    )
