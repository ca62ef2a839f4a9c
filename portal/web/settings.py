"""The council settings page."""

from __future__ import annotations

from decimal import Decimal

from flask import Blueprint, flash, g, redirect, render_template, request, url_for

from portal.db import db_session
from portal.forms import committed, form_values
from portal.identity import auth
from portal.kernel.policy import Action
from portal.settings.forms import CouncilSettingsForm
from portal.settings.services import settings_get, settings_update

bp = Blueprint("settings", __name__)


@bp.route("/council/settings", methods=["GET", "POST"])
@auth.action_required(Action.SETTINGS_UPDATE)
def council_settings():
    """Tax default, idle-seat threshold, numbering, payment terms, bank details."""
    current = settings_get(db_session())
    form = CouncilSettingsForm(data=current.model_dump())
    if request.method == "GET":
        form.default_tax_rate_percent.data = Decimal(current.default_tax_rate_bp) / 100
    if form.validate_on_submit():
        data = form_values(
            form,
            "idle_seat_days",
            "invoice_prefix",
            "credit_note_prefix",
            "payment_terms_days",
            "overdue_grace_days",
            "suspend_subscriptions_when_overdue",
            "bank_details",
        )
        data["default_tax_rate_bp"] = int(
            (form.default_tax_rate_percent.data * 100).to_integral_value()
        )
        with committed(form, aliases={"default_tax_rate_bp": "default_tax_rate_percent"}) as saved:
            settings_update(db_session(), actor=g.actor, data=data)
        if saved:
            flash("Settings saved.", "success")
            return redirect(url_for("settings.council_settings"))
    status = 400 if request.method == "POST" else 200
    return render_template("settings/council.html", form=form), status
