"""Finance pages (invoice runs, review, finalising, credit notes, payments, bank statements,
overdue invoices, exports and council economics) and an organisation's own invoices.

Council admins and finance see every organisation's invoices; an org admin sees
only its own organisation's issued invoices (another's answers 404). Each view
parses its input, calls one service or selector and renders; the request
commits once. An invoice run is recorded with its job (``billing.invoice_run``,
:mod:`portal.jobs`) and executed by a worker; the run page shows its progress
and its job's attempts, refreshing itself until the run ends.
"""

from __future__ import annotations

import datetime as dt
import io
from decimal import Decimal, InvalidOperation

from flask import (
    Blueprint,
    Response,
    flash,
    g,
    redirect,
    render_template,
    request,
    url_for,
)

from portal import i18n
from portal.billing import documents, exports, lifecycle, selectors
from portal.billing.bank_import import MAX_CHARACTERS, bank_statement_upload
from portal.billing.drafting import draft_recompute
from portal.billing.economics import (
    ECONOMICS_COLUMNS,
    ECONOMICS_LABELS,
    council_economics,
    economics_rows,
)
from portal.billing.forms import (
    BankImportForm,
    CreditNoteForm,
    PaymentForm,
    ReasonForm,
    RunForm,
    amount_minor,
)
from portal.billing.models import Invoice, InvoiceStatus, status_name
from portal.billing.operations import (
    drafts_finalize,
    drafts_finalize_preview,
    invoice_run_start,
)
from portal.billing.overdue import past_due_page
from portal.csvutil import csv_text, localised_header
from portal.db import db_session
from portal.forms import committed, confirmation_needed
from portal.identity import auth
from portal.identity.forms import ConfirmForm
from portal.jobs.selectors import job_by_id
from portal.kernel.actor import Role
from portal.kernel.clock import now_utc
from portal.kernel.errors import DomainError
from portal.kernel.i18n import _, _l, _n
from portal.kernel.periods import period_bounds, period_of
from portal.kernel.scope import Scope, scope_of
from portal.mail import selectors as mail_selectors
from portal.procurement.purchase_orders import committed_in_period
from portal.settings.services import settings_get

#: Seconds between the run page's reloads while its run is queued or running.
RUN_REFRESH_SECONDS = 2

bp = Blueprint("billing", __name__)

FINANCE = (Role.COUNCIL_ADMIN, Role.FINANCE)


#: How billing providers read ("manual": the organisation pays by bank transfer).
BILLING_PROVIDERS = {"manual": _l("manual"), "stripe": "Stripe"}


@bp.app_template_filter("quantity")
def quantity(value: str | None) -> str:
    """An exact decimal in the reader's locale: ``"11.6000"`` → ``11.6`` / ``11,6``, never
    ``12.0000`` nor an exponent (a line's quantity has 4 decimals)."""
    try:
        number = Decimal(value or "0")
    except InvalidOperation:
        return value or ""
    return i18n.number(number, 4)


@bp.app_template_filter("invoice_status")
def invoice_status(value: str) -> str:
    """An invoice status in the reader's language."""
    return status_name(value)


@bp.app_template_filter("billing_provider")
def billing_provider(value: str) -> str:
    """How an organisation pays, in the reader's language."""
    return str(BILLING_PROVIDERS.get(value, value))


# ---------------------------------------------------------------- helpers


def _last_month() -> str:
    return period_of(now_utc().date().replace(day=1) - dt.timedelta(days=1))


def _period_arg() -> str:
    """The ``period`` query argument (default: last month), checked."""
    period = (request.args.get("period") or "").strip() or _last_month()
    period_bounds(period)
    return period


def _periods() -> list[str]:
    return selectors.recent_periods(now_utc().date(), 6)


def _pdf(invoice: Invoice) -> Response:
    return Response(
        documents.invoice_pdf(db_session(), invoice),
        mimetype="application/pdf",
        headers={"Content-Disposition": f'inline; filename="{documents.pdf_filename(invoice)}"'},
    )


def _download(text: str, filename: str, mimetype: str = "text/csv") -> Response:
    return Response(
        text,
        mimetype=mimetype,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


# ---------------------------------------------------------------- the month


@bp.get("/finance")
@auth.role_required(*FINANCE)
def finance():
    """A month's invoice runs and invoices, with a status filter."""
    period = _period_arg()
    status = request.args.get("status") or None
    if status not in (None, *selectors.STATUSES):
        status = None
    return _finance_page(period, status, RunForm(period=period))


def _finance_page(period: str, status: str | None, form: RunForm, code: int = 200):
    overview = selectors.month_overview(
        db_session(),
        scope=_scope(),
        period=period,
        status=status,
        page=request.args.get("page", 1, type=int) or 1,
        per_page=50,
    )
    return (
        render_template(
            "billing/finance.html",
            overview=overview,
            period=period,
            periods=_periods(),
            status=status,
            statuses=selectors.STATUSES,
            form=form,
            confirm=ConfirmForm(),
        ),
        code,
    )


@bp.post("/finance/runs")
@auth.role_required(*FINANCE)
def run_start():
    """Start the invoice run of a month; a worker executes it (the run page shows how far)."""
    form = RunForm()
    period = (form.period.data or "").strip()
    if form.validate_on_submit():
        with committed(form) as saved:
            run = invoice_run_start(
                db_session(), actor=g.actor, period=period, finalize=form.finalize.data
            )
        if saved:
            return redirect(url_for("billing.run_detail", run_id=run.id))
    try:
        period_bounds(period)
    except DomainError:
        period = _last_month()
    return _finance_page(period, None, form, 400)


@bp.get("/finance/runs/<int:run_id>")
@auth.role_required(*FINANCE)
def run_detail(run_id: int):
    """A run's progress; the page refreshes itself while the run is going."""
    run = selectors.run_by_id(db_session(), run_id)
    return render_template(
        "billing/run.html",
        run=run,
        job=job_by_id(db_session(), run.job_id) if run.job_id else None,
        refresh_seconds=RUN_REFRESH_SECONDS,
    )


def _confirm_finalize_all(period: str):
    """The confirm step of "Finalise all drafts": how many invoices, numbers, PDFs and mails."""
    try:
        preview = drafts_finalize_preview(db_session(), scope=_scope(), period=period)
    except DomainError:
        return None  # a bad month: drafts_finalize refuses it and says why
    if preview.empty or preview.numbers is None:
        return None  # nothing to finalise: the page says so
    count = preview.drafts
    totals = ", ".join(i18n.money(total, currency) for currency, total in preview.totals.items())
    recipients = preview.recipients
    if len(recipients) > 5:
        who = _n(
            "%(addresses)s and %(num)d other",
            "%(addresses)s and %(num)d others",
            len(recipients) - 3,
            addresses=", ".join(recipients[:3]),
        )
    else:
        who = ", ".join(recipients)
    first, last = preview.numbers
    consequences = [
        _n(
            "%(num)d invoice is issued to %(organisations)s, for %(totals)s.",
            "%(num)d invoices are issued to %(organisations)s, for %(totals)s in all.",
            count,
            organisations=_n(
                "%(num)d organisation", "%(num)d organisations", preview.organisations
            ),
            totals=totals,
        ),
        _("It takes the number %(first)s; a number taken is never given back.", first=first)
        if count == 1
        else _(
            "They take the numbers %(first)s to %(last)s, in order; a number taken is never "
            "given back.",
            first=first,
            last=last,
        ),
        _n(
            "Its PDF is stored and %(num)d mail is sent, to %(recipients)s.",
            "Their PDFs are stored and %(num)d mails are sent, to %(recipients)s.",
            preview.mails,
            recipients=who,
        ),
    ]
    if preview.card_charges:
        consequences.append(
            _n(
                "%(num)d invoice is charged to its organisation's card.",
                "%(num)d invoices are charged to their organisations' cards.",
                preview.card_charges,
            )
        )
    consequences.append(
        _("An issued invoice never changes again: it can only be credited or voided.")
    )
    return confirmation_needed(
        title=_n(
            "Finalise %(num)d draft of %(period)s?",
            "Finalise all %(num)d drafts of %(period)s?",
            count,
            period=period,
        ),
        consequences=consequences,
        confirm_label=_n("Finalise %(num)d invoice", "Finalise %(num)d invoices", count),
        cancel_url=url_for("billing.finance", period=period),
    )


@bp.post("/finance/finalize-all")
@auth.role_required(*FINANCE)
def finalize_all():
    """Finalise every draft of a month at once (all or none)."""
    period = (request.form.get("period") or "").strip()
    form = ConfirmForm()
    if not form.validate_on_submit():
        flash(_("The form expired; nothing was finalised. Try again."), "error")
        return redirect(url_for("billing.finance", period=period or None))
    if (page := _confirm_finalize_all(period)) is not None:
        return page  # the confirm step: nothing is finalised until it is confirmed
    with committed(form) as saved:  # a refusal says "Nothing was finalised: ..."
        finalised = drafts_finalize(db_session(), actor=g.actor, period=period)
    if saved:
        if finalised:
            flash(
                _n(
                    "%(num)d invoice finalised (%(first)s – %(last)s); "
                    "PDFs stored, their mail queued.",
                    "%(num)d invoices finalised (%(first)s – %(last)s); "
                    "PDFs stored, their mail queued.",
                    len(finalised),
                    first=finalised[0].number,
                    last=finalised[-1].number,
                ),
                "success",
            )
        else:
            flash(_("There were no drafts for %(period)s to finalise.", period=period), "info")
    return redirect(url_for("billing.finance", period=period or None))


# ---------------------------------------------------------------- one invoice


def _scope() -> Scope:
    """Whose invoices the signed-in person reads (finance and council admins: all)."""
    return scope_of(auth.current_actor())


def _invoice_page(invoice_id: int, code: int = 200, **forms):
    detail = selectors.invoice_detail(
        db_session(), scope=_scope(), invoice_id=invoice_id, compare=True
    )
    context = documents.document_context(db_session(), detail.invoice)
    forms.setdefault("credit_form", CreditNoteForm(formdata=None, prefix="credit"))
    forms.setdefault(
        "payment_form",
        PaymentForm(formdata=None, prefix="payment", received_on=now_utc().date()),
    )
    forms.setdefault("void_form", ReasonForm(formdata=None, prefix="void"))
    forms.setdefault("write_off_form", ReasonForm(formdata=None, prefix="writeoff"))
    return (
        render_template(
            "billing/invoice.html",
            detail=detail,
            actions=lifecycle.invoice_actions(detail.invoice),
            # The invoice's own mail (to the billing contact), as it truly stands.
            invoice_mail=mail_selectors.messages_about(
                db_session(),
                scope=_scope(),
                related_type="invoice",
                related_ids=[detail.invoice.id],
                kind="invoice_issued",
            ).get(detail.invoice.id),
            confirm=ConfirmForm(),
            **context,
            **forms,
        ),
        code,
    )


@bp.get("/finance/invoices/<int:invoice_id>")
@auth.role_required(*FINANCE)
def invoice_review(invoice_id: int):
    """An invoice as the organisation sees it, what produced each line, last period beside it."""
    return _invoice_page(invoice_id)


@bp.get("/finance/invoices/<int:invoice_id>.pdf")
@auth.role_required(*FINANCE)
def invoice_pdf(invoice_id: int):
    """The invoice's PDF (the stored one once finalised; a preview of a draft)."""
    invoice = selectors.invoice_in_scope(db_session(), scope=_scope(), invoice_id=invoice_id)
    return _pdf(invoice)


@bp.post("/finance/invoices/<int:invoice_id>/finalize")
@auth.role_required(*FINANCE)
def invoice_finalize(invoice_id: int):
    """Give a draft its number, store its PDF and mail it to the billing contact."""
    invoice = selectors.invoice_in_scope(db_session(), scope=_scope(), invoice_id=invoice_id)
    form = ConfirmForm()
    if not form.validate_on_submit():
        flash(_("The form expired; the invoice was not finalised. Try again."), "error")
        return redirect(url_for("billing.invoice_review", invoice_id=invoice_id))
    with committed(form) as saved:
        lifecycle.invoice_finalize(db_session(), actor=g.actor, invoice=invoice)
        number, email = invoice.number, invoice.organisation.billing_email
    if saved:
        flash(
            _(
                "Invoice %(number)s issued; the PDF is stored and its mail to %(email)s is queued.",
                number=number,
                email=email,
            ),
            "success",
        )
    return redirect(url_for("billing.invoice_review", invoice_id=invoice_id))


@bp.post("/finance/invoices/<int:invoice_id>/refresh")
@auth.role_required(*FINANCE)
def invoice_refresh(invoice_id: int):
    """Recompute a draft from the seats and usage recorded now."""
    invoice = selectors.invoice_in_scope(db_session(), scope=_scope(), invoice_id=invoice_id)
    period, name = invoice.period, invoice.organisation.name
    form = ConfirmForm()
    if not form.validate_on_submit():
        flash(_("The form expired; the draft was not refreshed. Try again."), "error")
        return redirect(url_for("billing.invoice_review", invoice_id=invoice_id))
    with committed(form) as saved:
        refreshed, _outcome = draft_recompute(db_session(), actor=g.actor, invoice=invoice)
        refreshed_id = refreshed.id if refreshed is not None else None
    if not saved:
        return redirect(url_for("billing.invoice_review", invoice_id=invoice_id))
    if refreshed_id is None:
        flash(
            _(
                "%(name)s owes nothing for %(period)s; the draft was removed.",
                name=name,
                period=period,
            ),
            "info",
        )
        return redirect(url_for("billing.finance", period=period))
    flash(_("The draft is up to date with the seats and usage recorded now."), "success")
    return redirect(url_for("billing.invoice_review", invoice_id=refreshed_id))


def _amount_in_units(form, low: int, high: int, currency: str) -> None:
    """A service's amount message (in minor units) in the units people typed."""
    if form.amount.errors:
        form.amount.errors = [
            _(
                "Enter an amount from %(low)s to %(high)s.",
                low=i18n.money(low, currency),
                high=i18n.money(high, currency),
            )
            if high >= low
            else _("Nothing is left to credit or to pay on this invoice.")
        ]


@bp.post("/finance/invoices/<int:invoice_id>/credit-notes")
@auth.role_required(*FINANCE)
def credit_note_create(invoice_id: int):
    """Issue a credit note against a finalised invoice."""
    detail = selectors.invoice_detail(db_session(), scope=_scope(), invoice_id=invoice_id)
    invoice = detail.invoice
    form = CreditNoteForm(prefix="credit")
    if form.validate_on_submit():
        amount = amount_minor(form, invoice.currency)
        if amount is not None:
            creditable = lifecycle.invoice_creditable(db_session(), invoice)
            with committed(form) as saved:
                note = lifecycle.credit_note_create(
                    db_session(),
                    actor=g.actor,
                    invoice=invoice,
                    amount=amount,
                    reason=form.reason.data or "",
                )
                number, total = note.number, note.total
            if not saved:
                _amount_in_units(form, 1, creditable, invoice.currency)
            else:
                flash(
                    _(
                        "Credit note %(number)s issued for %(total)s (tax included).",
                        number=number,
                        total=i18n.money(total, invoice.currency),
                    ),
                    "success",
                )
                return redirect(url_for("billing.invoice_review", invoice_id=invoice_id))
    return _invoice_page(invoice_id, 400, credit_form=form)


@bp.post("/finance/invoices/<int:invoice_id>/payments")
@auth.role_required(*FINANCE)
def payment_create(invoice_id: int):
    """Record money received against an open invoice (in full or in part)."""
    invoice = selectors.invoice_in_scope(db_session(), scope=_scope(), invoice_id=invoice_id)
    form = PaymentForm(prefix="payment")
    if form.validate_on_submit():
        amount = amount_minor(form, invoice.currency)
        if amount is not None:
            due = invoice.amount_due
            with committed(form) as saved:
                lifecycle.payment_record(
                    db_session(),
                    actor=g.actor,
                    invoice=invoice,
                    amount=amount,
                    method=form.method.data,
                    received_on=form.received_on.data,
                    reference=form.reference.data,
                )
                status, left = invoice.status, invoice.amount_due
            if not saved:
                _amount_in_units(form, 1, due, invoice.currency)
            else:
                flash(
                    _("Payment recorded; the invoice is paid.")
                    if status == InvoiceStatus.PAID
                    else _(
                        "Part payment recorded; %(left)s is still due.",
                        left=i18n.money(left, invoice.currency),
                    ),
                    "success",
                )
                return redirect(url_for("billing.invoice_review", invoice_id=invoice_id))
    return _invoice_page(invoice_id, 400, payment_form=form)


@bp.post("/finance/invoices/<int:invoice_id>/<any(void, uncollectible):action>")
@auth.role_required(*FINANCE)
def invoice_close(invoice_id: int, action: str):
    """Void an open invoice nothing was paid on, or write it off as uncollectible."""
    invoice = selectors.invoice_in_scope(db_session(), scope=_scope(), invoice_id=invoice_id)
    prefix = "void" if action == "void" else "writeoff"
    form = ReasonForm(prefix=prefix)
    if form.validate_on_submit():
        if action == "void":
            change = lifecycle.invoice_void
        else:
            change = lifecycle.invoice_mark_uncollectible
        with committed(form) as saved:
            change(db_session(), actor=g.actor, invoice=invoice, reason=form.reason.data or "")
            number = invoice.number
        if saved:
            flash(
                _("Invoice %(number)s is void; its number stays used.", number=number)
                if action == "void"
                else _("Invoice %(number)s is written off as uncollectible.", number=number),
                "success",
            )
            return redirect(url_for("billing.invoice_review", invoice_id=invoice_id))
    key = "void_form" if action == "void" else "write_off_form"
    return _invoice_page(invoice_id, 400, **{key: form})


# ---------------------------------------------------------------- bank statements, overdue


@bp.route("/finance/bank-import", methods=["GET", "POST"])
@auth.role_required(*FINANCE)
def bank_import():
    """Import a bank statement (CSV) and match the transfers to invoices by reference."""
    form = BankImportForm()
    result = None
    code = 200
    if request.method == "POST":
        code = 400
        if form.validate_on_submit():
            data = form.file.data.read(MAX_CHARACTERS + 1)
            with committed(form) as saved:
                result = bank_statement_upload(db_session(), actor=g.actor, data=data)
            if saved:
                code = 200
    return render_template("billing/bank_import.html", form=form, result=result), code


@bp.get("/finance/overdue")
@auth.role_required(*FINANCE)
def overdue():
    """Open invoices past their due date; those past the grace period too are overdue."""
    settings = settings_get(db_session())
    listed = past_due_page(
        db_session(),
        scope=_scope(),
        today=now_utc().date(),
        page=request.args.get("page", 1, type=int) or 1,
    )
    return render_template(
        "billing/overdue.html", rows=listed.rows, listed=listed, settings=settings
    )


# ---------------------------------------------------------------- exports and economics


@bp.get("/finance/exports")
@auth.role_required(*FINANCE)
def exports_page():
    """Totals per currency, the downloads, and the council's cost against billing."""
    period = _period_arg()
    return render_template(
        "billing/exports.html",
        period=period,
        periods=_periods(),
        summary=exports.export_summary(db_session(), scope=_scope(), period=period),
        economics=council_economics(db_session(), period=period, today=now_utc().date()),
        # committed cost from purchase orders (issue 16): procurement sits above billing,
        # so the page asks it beside billing's figures
        committed=committed_in_period(db_session(), period=period),
    )


@bp.get("/finance/exports/invoices.<any(csv, json):fmt>")
@auth.role_required(*FINANCE)
def export_invoices(fmt: str):
    """One row per invoice line (and credit note) of a month's issued invoices."""
    period = _period_arg()
    out = io.StringIO()
    rows = exports.export_rows(db_session(), scope=_scope(), period=period)
    (exports.write_csv if fmt == "csv" else exports.write_json)(rows, out)
    mimetype = "text/csv" if fmt == "csv" else "application/json"
    return _download(out.getvalue(), f"invoices-{period}.{fmt}", mimetype)


@bp.get("/finance/exports/economics.csv")
@auth.role_required(*FINANCE)
def export_economics():
    """The council economics of a month as CSV."""
    period = _period_arg()
    economics = council_economics(db_session(), period=period, today=now_utc().date())
    return _download(
        csv_text(localised_header(ECONOMICS_COLUMNS, ECONOMICS_LABELS), economics_rows(economics)),
        f"economics-{period}.csv",
    )


# ---------------------------------------------------------------- an organisation's invoices


@bp.get("/org/invoices")
@auth.role_required(Role.ORG_ADMIN)
def org_invoices():
    """The organisation's issued invoices, newest first."""
    org = auth.current_organisation()
    return render_template(
        "billing/org_invoices.html",
        org=org,
        invoices=selectors.organisation_invoices(db_session(), organisation_id=org.id),
    )


@bp.get("/org/invoices/<int:invoice_id>")
@auth.role_required(Role.ORG_ADMIN)
def org_invoice(invoice_id: int):
    """One of the organisation's invoices, with payments and credit notes against it."""
    org = auth.current_organisation()
    detail = selectors.invoice_detail(
        db_session(), scope=Scope.organisation(org.id), invoice_id=invoice_id, issued_only=True
    )
    return render_template(
        "billing/org_invoice.html",
        detail=detail,
        **documents.document_context(db_session(), detail.invoice),
    )


@bp.get("/org/invoices/<int:invoice_id>.pdf")
@auth.role_required(Role.ORG_ADMIN)
def org_invoice_pdf(invoice_id: int):
    """The PDF the organisation was sent."""
    org = auth.current_organisation()
    invoice = selectors.invoice_in_scope(
        db_session(), scope=Scope.organisation(org.id), invoice_id=invoice_id, issued_only=True
    )
    return _pdf(invoice)
