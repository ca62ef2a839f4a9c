"""Usage pages: an organisation's usage, seats and cost so far; the council's view; uploads."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from babel.dates import format_date
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

from portal.billing.charges import Charge, charges_for
from portal.catalogue.models import Product
from portal.catalogue.selectors import product_by_sku
from portal.charts import line_chart
from portal.csvutil import csv_text, localised_header
from portal.db import db_session
from portal.forms import committed, confirmation_needed
from portal.i18n import language
from portal.identity import auth
from portal.identity.forms import ConfirmForm
from portal.kernel.actor import Role
from portal.kernel.clock import now_utc
from portal.kernel.errors import DomainError
from portal.kernel.i18n import _, _l, _n
from portal.kernel.periods import period_bounds, period_of
from portal.kernel.scope import Scope, scope_of
from portal.metering import selectors, services
from portal.metering.forms import KeepSeatForm, UsageUploadForm
from portal.metering.problems import problem_text
from portal.metering.quantities import aggregation_label, plain, quantity
from portal.metering.reports import OrganisationPage, UsageRow, usage_rows, usage_rows_page
from portal.pagination import Page
from portal.seats.selectors import seat_in_scope
from portal.settings.services import settings_get
from portal.web.lookups import (
    organisation_named,
    organisation_suggestions,
    product_named,
    product_suggestions,
)

bp = Blueprint("metering", __name__)
bp.add_app_template_filter(quantity, "usage_quantity")
bp.add_app_template_filter(aggregation_label, "usage_aggregation")
bp.add_app_template_filter(problem_text, "usage_problem")

#: Series of the pool chart (keys of selectors.pool_utilisation_series) as people read them.
SERIES = {
    "Capacity": lambda: _("Capacity"),
    "Reserved": lambda: _("Reserved"),
    "Assigned": lambda: _("Assigned"),
    "People with usage": lambda: _("People with usage"),
}
TIER_MODES = {"graduated": lambda: _("graduated tiers"), "volume": lambda: _("volume tiers")}

COUNCIL = (Role.COUNCIL_ADMIN, Role.FINANCE)


def _period() -> tuple[str, dt.datetime, dt.datetime]:
    period = request.args.get("period") or period_of(now_utc())
    start, end = period_bounds(period)
    return period, start, end


def _recent_periods(count: int = 4) -> list[str]:
    today = now_utc().date().replace(day=1)
    out = []
    for _step in range(count):
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
    product = product_named(db_session(), request.args.get("product"))
    rows = (
        []
        if product.error
        else usage_rows(
            db_session(),
            scope=Scope.organisation(org.id),
            start=start,
            end=end,
            product_id=product.found.id if product.found else None,
        )
    )
    charges = (
        charges_for(db_session(), organisation=org, period_start=start, until=until)
        if until > start
        else []
    )
    names = dict(
        db_session()
        .execute(
            sa.select(Product.id, Product.name).where(
                Product.id.in_({c.product_id for c in charges})
            )
        )
        .all()
    )
    page = render_template(
        "metering/org_usage.html",
        org=org,
        period=period,
        periods=_recent_periods(),
        rows=rows,
        product=product,
        products=product_suggestions(db_session()),
        seats=selectors.seat_utilisation(
            db_session(), organisation_id=org.id, start=start, end=end
        ),
        charges=[_charge_line(c, rows, names) for c in charges],
        total=sum(c.amount for c in charges),
        until=until,
    )
    return page, 422 if product.error else 200


def _charge_line(charge: Charge, rows: list[UsageRow], names: dict[int, str]) -> dict:
    """A charge of "cost so far" as the page shows it, in the reader's language."""
    source = charge.source
    product_name = names.get(charge.product_id, charge.product_sku)
    if charge.kind == "seat":
        days = int(source.get("seat_days", 0))
        label = _n(
            "%(product)s: %(num)d reserved seat-day",
            "%(product)s: %(num)d reserved seat-days",
            days,
            product=product_name,
        )
        if charge.council_quantity is not None:  # council volume pricing (SPEC 8.3)
            label += "; " + _n(
                "council volume: %(num)d seat → tier %(tier)d",
                "council volume: %(num)d seats → tier %(tier)d",
                charge.council_quantity,
                tier=charge.tier,
            )
        shown = quantity(charge.quantity, "seat-month", "sum")
    else:
        meter = next(
            (r for r in rows if r.product == charge.product_sku and r.meter == source.get("meter")),
            None,
        )
        events = int(source.get("events", 0))
        label = _n(
            "%(product)s: %(meter)s (%(num)d event)", "%(product)s: %(meter)s (%(num)d events)",
            events, product=product_name, meter=meter.meter_name if meter else source.get("meter"),
        )  # fmt: skip
        shown = quantity(charge.quantity, meter.unit if meter else None, source.get("aggregation"))
    tiers = TIER_MODES.get(source.get("tier_mode") or "")
    return {
        "description": label,
        "quantity": shown,
        "unit_amount": charge.unit_amount,
        "tiers": tiers() if tiers else None,
        "amount": charge.amount,
        "currency": charge.currency,
    }


@bp.get("/org/usage.csv")
@auth.role_required(Role.ORG_ADMIN)
def org_usage_csv():
    """The month's usage aggregates as CSV."""
    org = auth.current_organisation()
    period, start, end = _period()
    product = product_named(db_session(), request.args.get("product"))
    if product.error:
        return Response(product.error, status=422, mimetype="text/plain")
    rows = usage_rows(
        db_session(),
        scope=Scope.organisation(org.id),
        start=start,
        end=end,
        product_id=product.found.id if product.found else None,
    )
    return _csv(rows, f"usage-{org.slug}-{period}.csv")


USAGE_CSV_COLUMNS = ("organisation", "product", "meter", "aggregation", "value", "unit", "events")
#: The usage CSV's header for a reader of another language than English (portal.csvutil).
USAGE_CSV_LABELS = {
    "organisation": _l("Organisation"),
    "product": _l("Product"),
    "meter": _l("Meter"),
    "aggregation": _l("Aggregation"),
    "value": _l("Value"),
    "unit": _l("Unit"),
    "events": _l("Events"),
}


def _csv(rows, filename: str) -> Response:
    text = csv_text(
        localised_header(USAGE_CSV_COLUMNS, USAGE_CSV_LABELS),
        (
            [r.organisation, r.product, r.meter, r.aggregation, plain(r.value), r.unit, r.events]
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
    flagged = selectors.idle_seats_page(
        db_session(),
        organisation_id=org.id,
        idle_days=days,
        now=now_utc(),
        page=request.args.get("page", 1, type=int) or 1,
    )
    return render_template(
        "metering/idle_seats.html",
        seats=flagged.items,
        page=flagged,
        idle_days=days,
    )


def _confirm_idle_release(seat):
    """The confirm step of an idle seat's release: whose seat, and how the subscription shrinks."""
    sub = seat.subscription
    person = seat.user.display_name
    if seat.user.display_name != seat.user.email:
        person = f"{seat.user.display_name} ({seat.user.email})"
    consequences = [
        _(
            "%(person)s loses the seat of %(product)s at once.",
            person=person,
            product=sub.product.name,
        ),
        _("The seat goes back to the council's pool; organisations on the waitlist get it first."),
    ]
    if sub.quantity > 1:
        consequences.append(
            _n(
                "Your subscription shrinks from %(num)d seat to %(after)d, and its charge with it.",
                "Your subscription shrinks from %(num)d seats to %(after)d, "
                "and its charge with it.",
                sub.quantity,
                after=sub.quantity - 1,
            )
        )
    else:
        consequences.append(
            _(
                "It is the subscription's only seat: the subscription of %(product)s is cancelled.",
                product=sub.product.name,
            )
        )
    return confirmation_needed(
        title=_("Release the idle seat of %(person)s?", person=person),
        consequences=consequences,
        confirm_label=_("Release the seat"),
        cancel_url=url_for("metering.idle_seats"),
    )


@bp.post("/org/idle-seats/<int:seat_id>/<any(keep, release):decision>")
@auth.role_required(Role.ORG_ADMIN)
def idle_seat_decide(seat_id: int, decision: str):
    """Keep an idle seat for a while, or release it back to the council's pool."""
    org = auth.current_organisation()
    seat = seat_in_scope(db_session(), organisation_id=org.id, seat_id=seat_id)
    form = KeepSeatForm() if decision == "keep" else ConfirmForm()
    if not form.validate_on_submit():
        flash(
            _("The form expired or the number of days is not 1 to 365; nothing changed."), "error"
        )
        return redirect(url_for("metering.idle_seats"))
    if decision == "release" and (page := _confirm_idle_release(seat)) is not None:
        return page  # the confirm step: nothing is released until it is confirmed
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
            _("%(email)s keeps the seat of %(product)s.", email=email, product=product)
            if decision == "keep"
            else _(
                "The seat of %(product)s is released and back in the council's pool.",
                product=product,
            ),
            "success",
        )
    return redirect(url_for("metering.idle_seats"))


@bp.get("/council/usage")
@auth.role_required(*COUNCIL)
def council_usage():
    """Usage across organisations for a month, and pool utilisation charts."""
    period, start, end = _period()
    organisation = organisation_named(db_session(), request.args.get("organisation"))
    product = product_named(db_session(), request.args.get("product"))
    org = organisation.found
    refused = organisation.error or product.error
    if refused and request.args.get("format") == "csv":
        return Response(refused, status=422, mimetype="text/plain")
    scope = Scope.organisation(org.id) if org else scope_of(auth.current_actor())
    number = max(1, request.args.get("page", 1, type=int) or 1)
    product_id = product.found.id if product.found else None
    if request.args.get("format") == "csv":
        rows = (
            []
            if refused
            else usage_rows(db_session(), scope=scope, start=start, end=end, product_id=product_id)
        )
        name = "-".join(
            [org.slug if org else "all", *([product.found.sku] if product.found else []), period]
        )
        return _csv(rows, f"usage-{name}.csv")
    listed: Page[Any] | OrganisationPage
    if refused:
        rows, listed = [], Page(items=[], page=number, per_page=100, total=0)
    elif org is None and scope.is_council:
        # Council-wide: 25 organisations a page, their rows computed alone (10,000
        # organisations give tens of thousands of rows a month; the CSV above has them all).
        rows, listed = usage_rows_page(
            db_session(), start=start, end=end, product_id=product_id, page=number
        )
    else:
        rows = usage_rows(db_session(), scope=scope, start=start, end=end, product_id=product_id)
        listed = Page(items=[], page=number, per_page=100, total=len(rows))
        offset = (listed.page - 1) * listed.per_page
        rows = rows[offset : offset + listed.per_page] if offset < len(rows) else []
    page = render_template(
        "metering/council_usage.html",
        rows=rows,
        # Written once a page, not once a row (a page of 25 organisations shows a hundred
        # rows or more): each aggregation's word and each product's chart link shown.
        aggregation_words={a: aggregation_label(a) for a in {r.aggregation for r in rows}},
        chart_urls={
            sku: url_for("metering.utilisation", sku=sku) for sku in {r.product for r in rows}
        },
        listed=listed,
        period=period,
        periods=_recent_periods(),
        org=org,
        organisation=organisation,
        product=product,
        organisations=organisation_suggestions(db_session(), organisation.near),
        products=product_suggestions(db_session()),
    )
    return page, 422 if refused else 200


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
    days = [first + dt.timedelta(days=n) for n in range(len(labels))]
    labels = [format_date(day, "d MMM", locale=language()) for day in days]
    series = {(SERIES[k]() if k in SERIES else k): v for k, v in series.items()}
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
            form.file.errors = [_("The file must be UTF-8 text.")]
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
