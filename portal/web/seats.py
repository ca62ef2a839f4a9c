"""Seat pages: subscribing from the catalogue, an organisation's subscriptions and seats,
seat requests.

Org admins act for their own organisation only: every subscription and request
is looked up within it, so another organisation's id answers 404. Members ask
for seats from the catalogue; "My software" is :func:`portal.web.my_software`.
"""

from __future__ import annotations

from flask import Blueprint, flash, g, redirect, render_template, request, url_for
from flask_login import current_user

from portal.billing.preview import seat_cost_preview
from portal.catalogue import selectors as catalogue
from portal.db import db_session
from portal.forms import committed, confirmation_needed, show_errors
from portal.identity import auth
from portal.kernel.actor import Role
from portal.kernel.clock import now_utc
from portal.kernel.errors import DomainError
from portal.kernel.i18n import _, _n
from portal.kernel.scope import Scope
from portal.seats import figures, selectors, services
from portal.seats.forms import (
    BULK_MAX_EMAILS,
    AssignForm,
    BulkAssignForm,
    CancelForm,
    DecisionForm,
    ReleaseForm,
    ResizeForm,
    SeatRequestForm,
    SubscribeForm,
)

bp = Blueprint("seats", __name__)


def _outcome_message(outcome: services.Outcome, asked: int) -> str:
    """What a subscription request got, in words (whole sentences, plural forms per language)."""
    sub = outcome.subscription
    name = sub.product.name
    if outcome.result == "partial":
        return _n(
            "Only %(num)d seat was free of the %(asked)d you asked for; you now have %(num)d.",
            "Only %(num)d seats were free of the %(asked)d you asked for; you now have %(num)d.",
            sub.quantity,
            asked=asked,
        )
    if outcome.result == "waitlisted":
        waiting = _n(
            "%(num)d seat is waitlisted and will be added automatically, first come first "
            "served, as seats free up.",
            "%(num)d seats are waitlisted and will be added automatically, first come first "
            "served, as seats free up.",
            sub.waiting,
        )
        if not sub.quantity:
            return waiting
        now = _n(
            "You have %(num)d seat of %(product)s now.",
            "You have %(num)d seats of %(product)s now.",
            sub.quantity,
            product=name,
        )
        return f"{now} {waiting}"
    return _n(
        "You have %(num)d seat of %(product)s. Assign it to a person below.",
        "You have %(num)d seats of %(product)s. Assign them to people below.",
        sub.quantity,
        product=name,
    )


def _form_problems(form) -> str:
    """A refused small form's messages as one line for a flash."""
    problems = [
        _("%(field)s: %(message)s", field=field.label.text, message=message)
        if field.label.text
        else message
        for field in form
        for message in field.errors
    ]
    return " ".join(problems) or _("Nothing was changed.")


def _preview(org, product, quantity, subscription=None):
    """The cost preview for ``quantity`` seats, or None (no price, or no sane quantity)."""
    if not isinstance(quantity, int) or not 1 <= quantity <= services.MAX_QUANTITY:
        return None
    return seat_cost_preview(
        db_session(),
        organisation=org,
        product=product,
        quantity=quantity,
        now=now_utc(),
        subscription=subscription,
    )


# ---------------------------------------------------------------- from the catalogue


@bp.route("/catalogue/<sku>/subscribe", methods=["GET", "POST"])
@auth.role_required(Role.ORG_ADMIN)
def subscribe(sku: str):
    """Reserve seats of a product for the organisation, saying what to do on a shortage."""
    org = auth.current_organisation()
    entry = figures.member_catalogue_entry(
        db_session(),
        organisation_id=org.id,
        currency=org.currency,
        user_id=current_user.id,
        day=now_utc().date(),
        sku=sku,
    )
    form = SubscribeForm()
    if request.method == "GET":
        form.quantity.data = request.args.get("quantity", 1, type=int)
    preview_only = "preview" in request.form
    if preview_only:
        form.validate_on_submit()  # the messages of a bad quantity, no change
    elif form.validate_on_submit():
        # Not forms.committed: a pool_exhausted refusal also marks the on_shortage choice.
        try:
            outcome = services.subscription_create(
                db_session(),
                actor=g.actor,
                organisation=org,
                product=entry.product,
                quantity=form.quantity.data,
                on_shortage=form.on_shortage.data,
            )
        except DomainError as error:
            db_session().rollback()
            show_errors(form, error)
            if error.code == "pool_exhausted":
                form.on_shortage.errors = [
                    _("Choose to wait for the missing seats, or to take the free ones.")
                ]
        else:
            db_session().commit()
            category = "success" if outcome.complete else "info"
            flash(_outcome_message(outcome, form.quantity.data), category)
            return redirect(url_for("seats.subscription_detail", sub_id=outcome.subscription.id))
    status = 400 if request.method == "POST" and not (preview_only and not form.errors) else 200
    preview = None
    if entry.subscription is None and entry.unavailable is None:
        preview = _preview(org, entry.product, form.quantity.data)
    return render_template(
        "seats/subscribe.html", entry=entry, form=form, org=org, preview=preview
    ), status


@bp.post("/catalogue/<sku>/request")
@auth.role_required(Role.MEMBER)
def seat_request(sku: str):
    """A member asks their org admin for a seat of a product."""
    auth.current_organisation()
    product = catalogue.product_by_sku(db_session(), sku)
    form = SeatRequestForm()
    back = request.form.get("q", "")
    if not form.validate_on_submit():
        flash(_form_problems(form), "error")
    else:
        # Not forms.committed: the page redirects, so a refusal is flashed whole.
        try:
            services.seat_request_create(
                db_session(),
                actor=g.actor,
                user=current_user.user,
                product=product,
                note=form.note.data,
            )
        except DomainError as error:
            db_session().rollback()
            flash(error.detail, "error")
        else:
            db_session().commit()
            flash(
                _(
                    "Your request for %(product)s went to your organisation's admin.",
                    product=product.name,
                ),
                "success",
            )
    return redirect(url_for("catalogue.member_catalogue", q=back[:100] or None))


# ---------------------------------------------------------------- subscriptions


@bp.get("/org/subscriptions")
@auth.role_required(Role.ORG_ADMIN)
def subscriptions():
    """The organisation's subscriptions: seats reserved, waiting and assigned."""
    org = auth.current_organisation()
    rows = selectors.subscriptions_with_assigned(db_session(), organisation_id=org.id)
    return render_template("seats/subscriptions.html", rows=rows, org=org)


def _subscription_page(sub_id: int, status: int = 200, **forms):
    """The subscription page with the forms given (fresh ones for the others)."""
    org = auth.current_organisation()
    overview = selectors.subscription_overview(
        db_session(),
        organisation_id=org.id,
        subscription_id=sub_id,
        page=request.args.get("page", 1, type=int) or 1,
    )
    sub = overview.subscription
    if "resize_form" not in forms:
        forms["resize_form"] = ResizeForm(
            prefix="resize", data={"quantity": sub.requested_quantity}
        )
    preview = None
    if sub.status != "cancelled":
        preview = _preview(org, sub.product, forms["resize_form"].quantity.data, subscription=sub)
    forms.setdefault("cancel_form", CancelForm(prefix="cancel"))
    forms.setdefault("assign_form", AssignForm(prefix="assign"))
    forms.setdefault("bulk_form", BulkAssignForm(prefix="bulk"))
    forms.setdefault("bulk_results", None)
    return (
        render_template(
            "seats/subscription_detail.html",
            overview=overview,
            sub=sub,
            org=org,
            release_form=ReleaseForm(),
            bulk_max=BULK_MAX_EMAILS,
            preview=preview,
            **forms,
        ),
        status,
    )


def _subscription(sub_id: int):
    """The organisation's own subscription ``sub_id``; another organisation's is 404."""
    org = auth.current_organisation()
    return selectors.subscription_in_scope(
        db_session(), scope=Scope.organisation(org.id), subscription_id=sub_id
    )


@bp.get("/org/subscriptions/<int:sub_id>")
@auth.role_required(Role.ORG_ADMIN)
def subscription_detail(sub_id: int):
    """One subscription: change its seats, assign and release them, or cancel it."""
    return _subscription_page(sub_id)


@bp.post("/org/subscriptions/<int:sub_id>/resize")
@auth.role_required(Role.ORG_ADMIN)
def subscription_resize(sub_id: int):
    """Change the seats reserved; shrinking below the assigned seats is refused."""
    sub = _subscription(sub_id)
    form = ResizeForm(prefix="resize")
    if "preview" in request.form:
        # Only the cost of the quantity typed: nothing changes.
        status = 200 if form.validate_on_submit() else 400
        return _subscription_page(sub_id, status, resize_form=form)
    if form.validate_on_submit():
        # Not forms.committed: a refusal with field messages is flashed too (the form sits
        # low on a long page).
        try:
            outcome = services.subscription_resize(
                db_session(),
                actor=g.actor,
                subscription=sub,
                quantity=form.quantity.data,
                on_shortage=form.on_shortage.data,
            )
        except DomainError as error:
            db_session().rollback()
            if error.errors:
                flash(error.detail, "error")
            show_errors(form, error)
        else:
            db_session().commit()
            category = "success" if outcome.complete else "info"
            flash(_outcome_message(outcome, form.quantity.data), category)
            return redirect(url_for("seats.subscription_detail", sub_id=sub_id))
    return _subscription_page(sub_id, 400, resize_form=form)


@bp.post("/org/subscriptions/<int:sub_id>/cancel")
@auth.role_required(Role.ORG_ADMIN)
def subscription_cancel(sub_id: int):
    """End the subscription; its seats go back to the pool."""
    sub = _subscription(sub_id)
    form = CancelForm(prefix="cancel")
    if form.validate_on_submit():
        with committed(form) as saved:
            services.subscription_cancel(db_session(), actor=g.actor, subscription=sub)
        if saved:
            flash(
                _("The subscription to %(product)s is cancelled.", product=sub.product.name),
                "success",
            )
            return redirect(url_for("seats.subscriptions"))
    return _subscription_page(sub_id, 400, cancel_form=form)


# ---------------------------------------------------------------- seats


@bp.post("/org/subscriptions/<int:sub_id>/seats")
@auth.role_required(Role.ORG_ADMIN)
def seat_assign(sub_id: int):
    """Give one person a seat; an email without an account gets an invitation."""
    sub = _subscription(sub_id)
    form = AssignForm(prefix="assign")
    if form.validate_on_submit():
        with committed(form) as saved:
            services.seat_assign(
                db_session(), actor=g.actor, subscription=sub, user_email=form.user_email.data
            )
        if saved:
            flash(
                _(
                    "%(email)s has a seat of %(product)s.",
                    email=form.user_email.data.strip(),
                    product=sub.product.name,
                ),
                "success",
            )
            return redirect(url_for("seats.subscription_detail", sub_id=sub_id, _anchor="seats"))
    return _subscription_page(sub_id, 400, assign_form=form)


@bp.post("/org/subscriptions/<int:sub_id>/seats/bulk")
@auth.role_required(Role.ORG_ADMIN)
def seat_assign_many(sub_id: int):
    """Give seats to several people at once; each email succeeds or fails on its own."""
    sub = _subscription(sub_id)
    form = BulkAssignForm(prefix="bulk")
    if form.validate_on_submit():
        emails = form.email_list()
        if not emails:
            form.emails.errors = [_("Give at least one email address.")]
        elif len(emails) > BULK_MAX_EMAILS:
            form.emails.errors = [
                _("Give at most %(max)d email addresses at once.", max=BULK_MAX_EMAILS)
            ]
        else:
            with committed(form) as saved:
                results = services.seat_assign_many(
                    db_session(), actor=g.actor, subscription=sub, emails=emails
                )
            if saved:
                done = sum(1 for r in results if r.ok)
                flash(
                    _n(
                        "%(num)d seat assigned; %(refused)d refused.",
                        "%(num)d seats assigned; %(refused)d refused.",
                        done,
                        refused=len(results) - done,
                    ),
                    "success" if done == len(results) else "info",
                )
                fresh = BulkAssignForm(prefix="bulk", formdata=None)
                return _subscription_page(sub_id, 200, bulk_results=results, bulk_form=fresh)
    return _subscription_page(sub_id, 400, bulk_form=form)


def _confirm_seat_release(sub, email: str):
    """The confirm step of a seat release: whose seat, of what, and that it stays reserved."""
    holders = selectors.subscription_overview(
        db_session(), organisation_id=sub.organisation_id, subscription_id=sub.id
    ).seats
    holder = next((s.user for s in holders if s.user.email.lower() == (email or "").lower()), None)
    person = f"{holder.name} ({holder.email})" if holder is not None and holder.name else email
    return confirmation_needed(
        title=_("Release the seat of %(person)s?", person=person),
        consequences=[
            _(
                "%(person)s loses the seat of %(product)s at once and can no longer use it.",
                person=person,
                product=sub.product.name,
            ),
            _n(
                "The seat stays reserved for your organisation: the subscription keeps its "
                "%(num)d seat and its charge. Assign the seat to someone else, or reduce the "
                "subscription to stop paying for it.",
                "The seat stays reserved for your organisation: the subscription keeps its "
                "%(num)d seats and its charge. Assign the seat to someone else, or reduce the "
                "subscription to stop paying for it.",
                sub.quantity,
            ),
        ],
        confirm_label=_("Release the seat"),
        cancel_url=url_for("seats.subscription_detail", sub_id=sub.id, _anchor="seats"),
    )


@bp.post("/org/subscriptions/<int:sub_id>/seats/release")
@auth.role_required(Role.ORG_ADMIN)
def seat_release(sub_id: int):
    """Take a seat back from a person; it stays reserved for the organisation."""
    sub = _subscription(sub_id)
    form = ReleaseForm()
    if not form.validate_on_submit():
        flash(_form_problems(form), "error")
    elif (page := _confirm_seat_release(sub, form.user_email.data)) is not None:
        return page  # the confirm step: nothing is released until it is confirmed
    else:
        # Not forms.committed: the page redirects, so a refusal is flashed whole.
        try:
            services.seat_release(
                db_session(), actor=g.actor, subscription=sub, user_email=form.user_email.data
            )
        except DomainError as error:
            db_session().rollback()
            flash(error.detail, "error")
        else:
            db_session().commit()
            flash(_("The seat of %(email)s is released.", email=form.user_email.data), "success")
    return redirect(url_for("seats.subscription_detail", sub_id=sub_id, _anchor="seats"))


# ---------------------------------------------------------------- seat requests


@bp.get("/org/seat-requests")
@auth.role_required(Role.ORG_ADMIN)
def seat_requests():
    """People's pending requests for seats, oldest first."""
    org = auth.current_organisation()
    pending = selectors.seat_requests_overview(db_session(), organisation_id=org.id)
    return render_template(
        "seats/seat_requests.html", pending=pending, org=org, form=DecisionForm()
    )


@bp.post("/org/seat-requests/<int:request_id>/<any(approve, decline):decision>")
@auth.role_required(Role.ORG_ADMIN)
def seat_request_decide(request_id: int, decision: str):
    """Approve (assigns a seat from the subscription) or decline a request."""
    org = auth.current_organisation()
    seat_request = selectors.seat_request_in_scope(
        db_session(), organisation_id=org.id, request_id=request_id
    )
    form = DecisionForm()
    if not form.validate_on_submit():
        flash(_form_problems(form), "error")
    else:
        # Not forms.committed: the page redirects, so a refusal is flashed whole.
        try:
            services.seat_request_decide(
                db_session(),
                actor=g.actor,
                request=seat_request,
                approve=decision == "approve",
                note=form.note.data,
            )
        except DomainError as error:
            db_session().rollback()
            flash(error.detail, "error")
        else:
            db_session().commit()
            who, what = seat_request.user.email, seat_request.product.name
            if decision == "approve":
                flash(_("%(email)s has a seat of %(product)s.", email=who, product=what), "success")
            else:
                flash(
                    _(
                        "The request of %(email)s for %(product)s is declined.",
                        email=who,
                        product=what,
                    ),
                    "success",
                )
    return redirect(url_for("seats.seat_requests"))
