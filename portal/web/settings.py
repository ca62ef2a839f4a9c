"""The council settings page."""

from __future__ import annotations

from decimal import Decimal

from flask import Blueprint, flash, g, redirect, render_template, request, url_for

from portal.db import db_session
from portal.forms import committed, form_values, show_errors
from portal.identity import auth
from portal.kernel.errors import ValidationFailed
from portal.kernel.i18n import _, _l
from portal.kernel.policy import Action
from portal.settings.forms import CouncilSettingsForm, threshold_parse, threshold_text
from portal.settings.services import settings_errors, settings_get, settings_update

bp = Blueprint("settings", __name__)

FIELDS = (
    "idle_seat_days",
    "invoice_prefix",
    "credit_note_prefix",
    "payment_terms_days",
    "overdue_grace_days",
    "suspend_subscriptions_when_overdue",
    "bank_details",
    "seller_legal_name",
    "seller_address",
    "seller_tax_id",
    "seller_iban",
    "seller_bic",
    "compliance_review_on_expiry",
)
ALIASES = {"default_tax_rate_bp": "default_tax_rate_percent"}


def _values(form: CouncilSettingsForm) -> dict:
    """The submitted settings whose fields passed the form's own checks."""
    data = {k: v for k, v in form_values(form, *FIELDS).items() if not form[k].errors}
    threshold = form.purchase_order_finance_threshold
    if not threshold.errors and threshold.raw_data:  # left alone when not sent at all
        try:
            data["purchase_order_finance_threshold"] = threshold_parse(threshold.data)
        except ValueError as error:
            threshold.errors = [*threshold.errors, str(error)]
    rate = form.default_tax_rate_percent
    if not rate.errors and rate.data is not None:
        data["default_tax_rate_bp"] = int((rate.data * 100).to_integral_value())
    return data


@bp.route("/council/settings", methods=["GET", "POST"])
@auth.action_required(Action.SETTINGS_UPDATE)
def council_settings():
    """Tax default, idle-seat threshold, numbering, payment terms, the seller on invoices."""
    current = settings_get(db_session())
    form = CouncilSettingsForm(data=current.model_dump())
    if request.method == "GET":
        form.default_tax_rate_percent.data = Decimal(current.default_tax_rate_bp) / 100
        form.purchase_order_finance_threshold.data = threshold_text(
            current.purchase_order_finance_threshold
        )
    if form.validate_on_submit():
        with committed(form, aliases=ALIASES) as saved:
            # committed() keeps nothing when a field carries a message (the threshold's lines)
            settings_update(db_session(), actor=g.actor, data=_values(form))
        if saved:
            flash(_("Settings saved."), "success")
            return redirect(url_for("settings.council_settings"))
    elif request.method == "POST":
        # The form's checks failed: the service's checks of the other fields are shown too.
        errors = settings_errors(db_session(), data=_values(form))
        if errors:
            show_errors(
                form, ValidationFailed(_l("Some fields need attention."), errors=errors), ALIASES
            )
    status = 400 if request.method == "POST" else 200
    return render_template("settings/council.html", form=form), status
