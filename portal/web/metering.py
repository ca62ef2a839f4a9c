"""Usage pages: an organisation's usage, seats and cost so far; the council's view; uploads."""

from __future__ import annotations

import datetime as dt

from flask import (
    Blueprint,
    Response,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    url_for,
)

from portal.billing.charges import charges_for
from portal.catalogue.selectors import product_by_sku
from portal.charts import line_chart
from portal.csvutil import csv_text
from portal.db import db_session
from portal.forms import committed
from portal.identity import auth
from portal.identity.forms import ConfirmForm
from portal.kernel.actor import Role
from portal.kernel.clock import now_utc
from portal.kernel.errors import DomainError
from portal.kernel.periods import period_bounds, period_of
from portal.kernel.scope import Scope, scope_of
from portal.metering import selectors, services
from portal.metering.forms import KeepSeatForm, UsageUploadForm
from portal.metering.reports import usage_rows
from portal.seats.selectors import seat_in_scope
from portal.settings.services import settings_get
from portal.tenancy.selectors import organisation_by_slug

bp = Blueprint("metering", __name__)

COUNCIL = (Role.COUNCIL_ADMIN, Role.FINANCE)


def _period() -> tuple[str, dt.datetime, dt.datetime]:
    period = request.args.get("period") or period_of(now_utc())
    start, end = period_bounds(period)
    return period, start, end


def _recent_periods(count: int = 4) -> list[str]:
    today = now_utc().date().replace(day=1)
    out = []
    for _ in range(count):
        out.append(period_of(today))
        today = (today - dt.timedelta(days=1)).replace(day=1)
    return out


@bp.get("/org/usage")
@auth.role_required(Role.ORG_ADMIN)
def org_usage():
    """Usage by product and meter, seats held/assigned/active, and cost so far, for a month."""
    org = auth.current_organisation()
    period, start, end = _period()
    until = min(end, now_utc())
    return render_template(
        "metering/org_usage.html",
        org=org,
        period=period,
        periods=_recent_periods(),
        rows=usage_rows(db_session(), scope=Scope.organisation(org.id), start=start, end=end),
        seats=selectors.seat_utilisation(
            db_session(), organisation_id=org.id, start=start, end=end
        ),
        charges=charges_for(db_session(), organisation=org, period_start=start, until=until)
        if until > start
        else [],
        until=until,
    )


@bp.get("/org/usage.csv")
@auth.role_required(Role.ORG_ADMIN)
def org_usage_csv():
    """The month's usage aggregates as CSV."""
    org = auth.current_organisation()
    period, start, end = _period()
    rows = usage_rows(db_session(), scope=Scope.organisation(org.id), start=start, end=end)
    return _csv(rows, f"usage-{org.slug}-{period}.csv")


def _csv(rows, filename: str) -> Response:
    text = csv_text(
        ["organisation", "product", "meter", "aggregation", "value", "unit", "events"],
        (
            [r.organisation, r.product, r.meter, r.aggregation, str(r.value), r.unit, r.events]
            for r in rows
        ),
    )
    return Response(
        text,
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@bp.get("/org/idle-seats")
@auth.role_required(Role.ORG_ADMIN)
def idle_seats():
    """Seats with no usage for the council's idle threshold: keep or release each."""
    org = auth.current_organisation()
    days = settings_get(db_session()).idle_seat_days
    flagged = selectors.idle_seats(
        db_session(), organisation_id=org.id, idle_days=days, now=now_utc()
    )
    return render_template(
        "metering/idle_seats.html",
        seats=flagged,
        idle_days=days,
        keep_form=KeepSeatForm(),
        confirm_form=ConfirmForm(),
    )


@bp.post("/org/idle-seats/<int:seat_id>/<any(keep, release):decision>")
@auth.role_required(Role.ORG_ADMIN)
def idle_seat_decide(seat_id: int, decision: str):
    """Keep an idle seat for a while, or release it back to the council's pool."""
    org = auth.current_organisation()
    seat = seat_in_scope(db_session(), organisation_id=org.id, seat_id=seat_id)
    form = KeepSeatForm() if decision == "keep" else ConfirmForm()
    if not form.validate_on_submit():
        flash("The form expired or the number of days is not 1 to 365; nothing changed.", "error")
        return redirect(url_for("metering.idle_seats"))
    # Not forms.committed: the page redirects, so a refusal is flashed whole.
    try:
        if decision == "keep":
            services.idle_seat_keep(db_session(), actor=g.actor, seat=seat, days=form.days.data)
        else:
            services.idle_seat_release(db_session(), actor=g.actor, seat=seat)
    except DomainError as error:
        db_session().rollback()
        flash(error.detail, "error")
    else:
        email, product = seat.user.email, seat.subscription.product.name
        db_session().commit()
        flash(
            f"{email} keeps the seat of {product}."
            if decision == "keep"
            else f"The seat of {product} is released and back in the council's pool.",
            "success",
        )
    return redirect(url_for("metering.idle_seats"))


@bp.get("/council/usage")
@auth.role_required(*COUNCIL)
def council_usage():
    """Usage across organisations for a month, and pool utilisation charts."""
    period, start, end = _period()
    slug = request.args.get("organisation", "").strip()
    org = organisation_by_slug(db_session(), slug) if slug else None
    scope = Scope.organisation(org.id) if org else scope_of(auth.current_actor())
    rows = usage_rows(db_session(), scope=scope, start=start, end=end)
    if request.args.get("format") == "csv":
        return _csv(rows, f"usage-{org.slug if org else 'all'}-{period}.csv")
    return render_template(
        "metering/council_usage.html",
        rows=rows,
        period=period,
        periods=_recent_periods(),
        org=org,
    )


@bp.get("/council/utilisation/<sku>")
@auth.role_required(*COUNCIL)
def utilisation(sku: str):
    """A product's capacity, reserved, assigned and active seats per day (90 days)."""
    product = product_by_sku(db_session(), sku)
    last = now_utc().date()
    first = last - dt.timedelta(days=89)
    labels, series = selectors.pool_utilisation_series(
        db_session(), product_id=product.id, first=first, last=last
    )
    chart = line_chart(series, labels)
    table = list(zip(labels, *series.values(), strict=True))[-14:]
    return render_template(
        "metering/utilisation.html", product=product, chart=chart, series=series, table=table
    )


@bp.route("/council/usage/upload", methods=["GET", "POST"])
@auth.role_required(Role.COUNCIL_ADMIN)
def upload():
    """Council staff upload a vendor's usage file (same rules as the API)."""
    form = UsageUploadForm()
    result = None
    if form.validate_on_submit():
        try:
            text = form.file.data.read().decode("utf-8-sig")
        except UnicodeDecodeError:
            form.file.errors = ["The file must be UTF-8 text."]
        else:
            with committed(form):
                result = services.usage_ingest_csv(
                    db_session(),
                    actor=g.actor,
                    text=text,
                    vendor_id=None,
                    max_age_days=current_app.config["PORTAL_USAGE_MAX_AGE_DAYS"],
                )
    status = 400 if request.method == "POST" and result is None else 200
    return render_template("metering/upload.html", form=form, result=result), status
