"""Renewal forecasts (issue 16): each pool's projected reserved seats, run-out date and
recommended capacity.

``/council/forecasts`` lists the pools in force, the ones running out first; a pool's
page draws its history and projection (server-rendered SVG) beside the figures, and lets
a council admin draft the renewal purchase order. How the forecast is made:
:mod:`portal.procurement.forecast` and docs/FORECAST.md.
"""

from __future__ import annotations

from typing import Any

from babel.dates import format_date
from flask import Blueprint, current_app, flash, g, redirect, render_template, url_for
from werkzeug.routing import BuildError

from portal.charts import line_chart
from portal.db import db_session
from portal.forms import committed
from portal.i18n import language
from portal.identity import auth
from portal.identity.forms import ConfirmForm
from portal.kernel import policy
from portal.kernel.i18n import _
from portal.kernel.policy import Action, Reach
from portal.procurement import forecast as forecasting
from portal.procurement.purchase_orders import draft_purchase_order

bp = Blueprint("forecasts", __name__)

#: Weeks of history drawn before the projection.
CHART_HISTORY_WEEKS = 12


@bp.get("/council/forecasts")
@auth.action_required(Action.POOL_READ, Reach.ANY)
def index():
    """Every pool in force with its forecast: running out first, then ending first."""
    rows = forecasting.forecasts_list(db_session(), actor=g.actor)
    return render_template(
        "forecasts/index.html",
        rows=rows,
        soon=forecasting.RUN_OUT_SOON,
        method=_method(),
    )


def _method() -> dict[str, int]:
    return {
        "window": forecasting.WINDOW_DAYS,
        "headroom": forecasting.HEADROOM_PERCENT,
        "past": forecasting.PAST_END_DAYS,
        "min_days": forecasting.MIN_FIT_DAYS,
    }


def _chart(result: forecasting.Forecast):
    """History (weekly, the last 12 weeks) then the projection, with the product's capacity."""
    history = [p for p in result.history if (result.today - p.day).days % 7 == 0]
    history = history[-CHART_HISTORY_WEEKS:]
    future = [p for p in result.projection if p.day > result.today]
    days = [p.day for p in history] + [p.day for p in future]
    labels = [format_date(day, "d MMM yy", locale=language()) for day in days]
    projected = [p.seats for p in history] + [p.seats for p in future]
    so_far = [p.seats for p in history]
    capacity = [result.capacity_on(day) for day in days]
    series = {
        _("Reserved, then projected"): projected,
        _("Reserved so far"): so_far,
        _("Capacity"): capacity,
    }
    return line_chart(series, labels), list(zip(days, projected, capacity, strict=True))


@bp.get("/council/forecasts/<int:pool_id>")
@auth.action_required(Action.POOL_READ, Reach.ANY)
def detail(pool_id: int):
    """A pool's forecast: chart, figures, the recommendation and its reminders."""
    return _detail_page(pool_id)


def _detail_page(pool_id: int, form: ConfirmForm | None = None, status: int = 200):
    session = db_session()
    pool, result = forecasting.pool_forecast(session, actor=g.actor, pool_id=pool_id)
    chart, table = _chart(result)
    reminders = forecasting.reminders_of(session, pool_id=pool.id)
    return (
        render_template(
            "forecasts/detail.html",
            pool=pool,
            f=result,
            chart=chart,
            table=table,
            reminders=reminders,
            reminder_names=REMINDER_NAMES,
            form=form or ConfirmForm(),
            may_draft=policy.may(g.actor, Action.PURCHASE_ORDER_DRAFT),
            method=_method(),
        ),
        status,
    )


#: What each reminder kind is called on the page.
REMINDER_NAMES = {
    "ends_in_60": lambda: _("60 days before the end"),
    "ends_in_30": lambda: _("30 days before the end"),
    "runs_out": lambda: _("forecast to run out within 30 days"),
}


@bp.post("/council/forecasts/<int:pool_id>/renewal")
@auth.action_required(Action.PURCHASE_ORDER_DRAFT, Reach.ANY)
def draft_renewal(pool_id: int):
    """Draft the renewal purchase order: the recommended seats for the next term, at the
    pool's unit cost, to the product's vendor (approvals follow on the order's page)."""
    form = ConfirmForm()
    if not form.validate_on_submit():
        return _detail_page(pool_id, form, 400)
    session = db_session()
    pool, result = forecasting.pool_forecast(session, actor=g.actor, pool_id=pool_id)
    if result.recommended_capacity < 1:
        flash(_("The forecast recommends no seats to renew: nothing to order."), "error")
        return _detail_page(pool_id, form, 409)
    with committed(form) as saved:
        order = draft_purchase_order(
            session,
            g.actor,
            vendor_id=pool.product.vendor_id,
            lines=[
                {
                    "product_id": pool.product_id,
                    "seats": result.recommended_capacity,
                    "unit_cost": pool.unit_cost_amount,
                }
            ],
            currency=pool.unit_cost_currency,
            starts_on=result.next_term_starts_on,
            ends_on=result.next_term_ends_on,
            source="forecast",
            notes=_(
                "Renewal of pool %(pool)s (%(product)s), as the forecast of %(day)s recommends.",
                pool=pool.id,
                product=pool.product.name,
                day=result.today.isoformat(),
            ),
        )
    if not saved:
        return _detail_page(pool_id, form, 422)
    flash(
        _("A draft purchase order for %(seats)s seats is made.", seats=result.recommended_capacity),
        "success",
    )
    # The order's page (issue 16's purchase orders) when it is there; else back here.
    candidates: tuple[tuple[str, dict[str, Any]], ...] = (
        ("procurement.purchase_order", {"po_id": order.id}),
        ("procurement.purchase_order", {"order_id": order.id}),
        ("procurement.purchase_order", {"id": order.id}),
        ("procurement.purchase_orders", {}),
    )
    for endpoint, args in candidates:
        if endpoint in current_app.view_functions:
            try:
                return redirect(url_for(endpoint, **args))
            except BuildError:
                continue
    return redirect(url_for("forecasts.detail", pool_id=pool_id))
