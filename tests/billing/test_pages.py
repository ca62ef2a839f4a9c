"""Finance pages and an organisation's invoice pages: roles, tenancy, every form's bad input."""

from __future__ import annotations

import datetime as dt
import html
import json
import re

import pytest
import sqlalchemy as sa

from portal.billing.models import CreditNote, Invoice, InvoiceRun, Payment
from portal.db import db
from portal.jobs.models import Job
from portal.kernel.clock import now_utc
from tests.billing.conftest import last_month, this_month
from tests.billing.factories import counts, draft, finalize, invoice_of, subscribe
from tests.conftest import csrf_token, flashes, post_form


def _text(response) -> str:
    return html.unescape(response.get_data(as_text=True))


def _plain(response) -> str:
    """The page's text without tags, spaces collapsed."""
    return " ".join(re.sub(r"<[^>]+>", " ", _text(response)).split())


def _messages(response) -> list[str]:
    return [html.unescape(m).strip() for m in flashes(response)]


def _post(client, path: str, data: dict, page: str):
    return post_form(client, path, data, token_from=page)


# ---------------------------------------------------------------- who sees what


FINANCE_PAGES = ["/finance", "/finance/exports", "/finance/overdue", "/finance/bank-import"]


def test_finance_pages_are_for_finance_and_council_admins(app, signed_in, make_org):
    org = make_org()
    finance, council = signed_in("finance"), signed_in("council_admin")
    org_admin, member = signed_in("org_admin", org), signed_in("member", org)
    anonymous = app.test_client()
    for path in FINANCE_PAGES:
        assert finance.get(path).status_code == 200, path
        assert council.get(path).status_code == 200, path
        assert org_admin.get(path).status_code == 403, path
        assert member.get(path).status_code == 403, path
        response = anonymous.get(path)
        assert response.status_code == 302 and "/login" in response.headers["Location"]
    # the navigation leads there
    assert 'href="/finance"' in _text(finance.get("/finance/exports"))
    assert 'href="/org/invoices"' in _text(org_admin.get("/org/invoices"))


def test_an_org_admin_sees_only_its_own_issued_invoices(
    app, issued, make_org, make_user, signed_in
):
    other = make_org("other-co")
    subscribe(app, other.id, issued["product"].id, 2, issued["first"])
    other_id = draft(app, other.id, issued["period"])
    finalize(app, other_id)
    own_draft = draft(app, issued["org"].id, this_month())
    admin = signed_in("org_admin", issued["org"])

    listing = _text(admin.get("/org/invoices"))
    assert issued["number"] in listing and "other-co" not in listing.lower()
    page = admin.get(f"/org/invoices/{issued['invoice_id']}")
    assert page.status_code == 200
    text = _plain(page)
    assert issued["number"] in text and "€357.00" in text
    # acme is billed manually: the council's bank details and the payment reference
    assert "IBAN" in text and f"quoting the payment reference {issued['number']}" in text
    pdf = admin.get(f"/org/invoices/{issued['invoice_id']}.pdf")
    assert pdf.status_code == 200 and pdf.data.startswith(b"%PDF")

    for path in (f"/org/invoices/{other_id}", f"/org/invoices/{other_id}.pdf"):
        assert admin.get(path).status_code == 404
    # a draft is finance's working copy
    assert admin.get(f"/org/invoices/{own_draft}").status_code == 404
    # and finance pages stay closed
    assert admin.get(f"/finance/invoices/{issued['invoice_id']}").status_code == 403
    assert admin.get(f"/finance/invoices/{issued['invoice_id']}.pdf").status_code == 403
    assert signed_in("member", issued["org"]).get("/org/invoices").status_code == 403
    assert signed_in("finance").get("/org/invoices").status_code == 403


def test_a_missing_invoice_is_404(app, signed_in):
    finance = signed_in("finance")
    assert finance.get("/finance/invoices/999999").status_code == 404
    assert finance.get("/finance/invoices/999999.pdf").status_code == 404


# ---------------------------------------------------------------- runs


def test_a_run_started_on_the_page_is_queued_until_a_worker_takes_it(app, billed, signed_in):
    finance = signed_in("finance")
    response = _post(
        finance,
        "/finance/runs",
        {"period": billed["period"]},
        f"/finance?period={billed['period']}",
    )
    assert response.status_code == 302
    page = _text(finance.get(response.headers["Location"]))
    assert '<meta http-equiv="refresh" content="2">' in page
    assert "queued" in page and "Waiting for a worker" in page
    assert "attempt 0 of 3" in page
    with app.app_context():
        run = db.session.scalars(sa.select(InvoiceRun)).one()
        job = db.session.get(Job, run.job_id)
        assert (run.status, job.state, job.name) == ("queued", "queued", "billing.invoice_run")
        assert job.arguments == {"run_id": run.id} and job.enqueued_by
        assert db.session.scalars(sa.select(Invoice)).all() == []


def test_a_run_whose_job_is_cancelled_says_so_and_a_retry_runs_it(
    app, billed, signed_in, jobs_inline
):
    app.extensions["celery"].conf.task_always_eager = False  # queued first: no worker yet
    finance = signed_in("finance")
    response = _post(finance, "/finance/runs", {"period": billed["period"]}, "/finance")
    run_page = response.headers["Location"]
    with app.app_context():
        job_id = db.session.scalars(sa.select(InvoiceRun.job_id)).one()
    admin = signed_in("council_admin")
    token = csrf_token(admin, "/council/jobs")
    assert (
        admin.post(f"/council/jobs/{job_id}/cancel", data={"csrf_token": token}).status_code == 302
    )
    page = _text(finance.get(run_page))
    assert "failed" in page and f"The run stopped: cancelled by {admin.user.email}" in page
    assert 'http-equiv="refresh"' not in page
    app.extensions["celery"].conf.task_always_eager = True  # a worker takes the retry
    assert (
        admin.post(f"/council/jobs/{job_id}/retry", data={"csrf_token": token}).status_code == 302
    )
    page = _text(finance.get(run_page))
    assert "The run is done" in page and "1 created" in page and "Problems" not in page


def test_a_run_started_on_the_page_runs_as_a_job(app, billed, make_org, signed_in, jobs_inline):
    make_org("quiet")
    finance = signed_in("finance")
    response = _post(
        finance,
        "/finance/runs",
        {"period": billed["period"]},
        f"/finance?period={billed['period']}",
    )
    assert response.status_code == 302
    run_page = response.headers["Location"]
    assert run_page.startswith("/finance/runs/")
    done = finance.get(run_page)
    text = _text(done)
    assert done.status_code == 200 and 'http-equiv="refresh"' not in text
    assert "The run is done" in text and "2 of 2 organisations" in text
    assert "1 created" in text and "succeeded, attempt 1 of 3" in text
    with app.app_context():
        invoice = db.session.scalars(sa.select(Invoice)).one()
        assert (invoice.status, invoice.period) == ("draft", billed["period"])
    month = _text(finance.get(f"/finance?period={billed['period']}"))
    assert "Org acme" in month and "Finalise all 1 draft" in month


def test_a_running_run_page_refreshes_itself_until_the_run_ends(app, signed_in):
    finance = signed_in("finance")
    with app.app_context():
        running = InvoiceRun(period=last_month()[0], started_by="x", organisations_total=10)
        failed = InvoiceRun(
            period=last_month()[0],
            started_by="x",
            organisations_total=10,
            status="failed",
            error="The run stopped: RuntimeError: boom",
            started_at=now_utc() - dt.timedelta(hours=2),
            finished_at=now_utc() - dt.timedelta(hours=1),
        )
        db.session.add_all([running, failed])
        db.session.commit()
        running_id, failed_id = running.id, failed.id
    page = _text(finance.get(f"/finance/runs/{running_id}"))
    assert '<meta http-equiv="refresh" content="2">' in page
    assert "0 of 10 organisations" in page and "<progress" in page
    old = _text(finance.get(f"/finance/runs/{failed_id}"))
    assert 'http-equiv="refresh"' not in old and "RuntimeError: boom" in old
    assert finance.get("/finance/runs/999999").status_code == 404


@pytest.mark.parametrize(
    ("period", "message"),
    [
        ("", "This field is required."),
        ("2026-13", "YYYY-MM"),
        ("2026-5", "YYYY-MM"),
        ("next month", "YYYY-MM"),
        (f"{now_utc().year + 1}-01", "Choose the current month or an earlier one."),
    ],
)
def test_bad_run_input_is_shown_and_starts_nothing(app, signed_in, period, message):
    finance = signed_in("finance")
    before = counts(app)
    response = _post(finance, "/finance/runs", {"period": period}, "/finance")
    assert response.status_code == 400
    assert message in _text(response)
    assert counts(app) == before


def test_a_form_without_its_csrf_token_changes_nothing(app, issued, signed_in):
    finance = signed_in("finance")
    before = counts(app)
    response = finance.post("/finance/runs", data={"period": issued["period"]})
    assert response.status_code == 400
    response = finance.post(
        f"/finance/invoices/{issued['invoice_id']}/credit-notes",
        data={"credit-amount": "1", "credit-reason": "x"},
    )
    assert response.status_code == 400
    assert counts(app) == before


# ---------------------------------------------------------------- review and finalising


def test_a_draft_review_shows_sources_and_last_month(app, issued, signed_in):
    current = draft(app, issued["org"].id, this_month())
    finance = signed_in("finance")
    page = finance.get(f"/finance/invoices/{current}")
    text = " ".join(_text(page).split())
    assert page.status_code == 200
    assert "Draft invoice" in text and "Finalise and send" in text
    assert "What produced each line" in text and "seat days:" in text and "subscription:" in text
    assert f"Against {issued['number']} for {issued['period']}" in text
    assert "cad-suite" in text and "€300.00" in text  # last month's seat line
    # the preview PDF of a draft is rendered on the fly
    preview = finance.get(f"/finance/invoices/{current}.pdf")
    assert (
        preview.data.startswith(b"%PDF") and "draft-acme-" in preview.headers["Content-Disposition"]
    )


def test_finalising_on_the_page_numbers_stores_the_pdf_and_mails_it(
    app, billed, signed_in, mailbox
):
    invoice_id = draft(app, billed["org"].id, billed["period"])
    finance = signed_in("finance")
    page = f"/finance/invoices/{invoice_id}"
    response = _post(finance, f"{page}/finalize", {}, page)
    assert response.status_code == 302
    shown = finance.get(page)
    invoice = invoice_of(app, invoice_id)
    assert invoice.status == "open" and invoice.number.endswith("-000001")
    assert f"Invoice {invoice.number} issued" in " ".join(_messages(shown))
    assert invoice.pdf.startswith(b"%PDF")
    assert finance.get(f"{page}.pdf").data == invoice.pdf
    [message] = [m for m in mailbox if m["To"] == "billing@acme.example"]
    assert invoice.number in message["Subject"]
    [attachment] = list(message.iter_attachments())
    assert attachment.get_content_type() == "application/pdf"
    assert attachment.get_content() == invoice.pdf
    # finalising again is refused with a message and changes nothing
    again = _post(finance, f"{page}/finalize", {}, page)
    assert "already open" in " ".join(_messages(finance.get(again.headers["Location"])))
    assert invoice_of(app, invoice_id).number == invoice.number


def test_refreshing_a_draft_on_the_page(app, billed, signed_in):
    invoice_id = draft(app, billed["org"].id, billed["period"])
    finance = signed_in("finance")
    page = f"/finance/invoices/{invoice_id}"
    response = _post(finance, f"{page}/refresh", {}, page)
    assert response.headers["Location"].endswith(page)
    assert "up to date" in " ".join(_messages(finance.get(page)))


def test_finalise_all_drafts_of_the_month(app, billed, make_org, signed_in, mailbox):
    other = make_org("beta")
    subscribe(app, other.id, billed["product"].id, 3, billed["first"])
    ids = [draft(app, org.id, billed["period"]) for org in (billed["org"], other)]
    finance = signed_in("finance")
    month = f"/finance?period={billed['period']}"
    data = {"period": billed["period"], "confirmed": "1"}
    response = _post(finance, "/finance/finalize-all", data, month)
    assert response.status_code == 302
    numbers = sorted(invoice_of(app, i).number for i in ids)
    year = now_utc().year
    assert numbers == [f"INV-{year}-000001", f"INV-{year}-000002"]
    assert "2 invoices finalised" in " ".join(_messages(finance.get(month)))
    assert len(mailbox) == 2
    # nothing left to finalise
    again = _post(finance, "/finance/finalize-all", data, month)
    assert "no drafts" in " ".join(_messages(finance.get(again.headers["Location"])))


def test_finalise_all_with_a_bad_month_finalises_nothing(app, billed, signed_in):
    draft(app, billed["org"].id, billed["period"])
    finance = signed_in("finance")
    response = _post(finance, "/finance/finalize-all", {"period": "2026-99"}, "/finance")
    assert _messages(finance.get(response.headers["Location"])) == [
        "Nothing was finalised: Use the form YYYY-MM, e.g. 2026-05."
    ]
    with app.app_context():
        assert db.session.scalar(sa.select(Invoice.status)) == "draft"


def test_the_status_filter_lists_the_month(app, issued, make_org, signed_in):
    other = make_org("beta")
    subscribe(app, other.id, issued["product"].id, 3, issued["first"])
    draft(app, other.id, issued["period"])
    finance = signed_in("finance")
    drafts = _text(finance.get(f"/finance?period={issued['period']}&status=draft"))
    assert "Org beta" in drafts and "Org acme" not in drafts
    opened = _text(finance.get(f"/finance?period={issued['period']}&status=open"))
    assert "Org acme" in opened and "Org beta" not in opened
    bad = finance.get("/finance?period=soon")
    assert bad.status_code == 422


# ---------------------------------------------------------------- credit notes


@pytest.mark.parametrize(
    ("amount", "reason", "message"),
    [
        ("", "Two seats unused", "This field is required."),
        ("twelve", "Two seats unused", "Enter an amount such as 12.50."),
        ("12.345", "Two seats unused", "EUR has 2 decimals"),
        ("0", "Two seats unused", "Enter an amount from €0.01 to €300.00."),
        ("-5", "Two seats unused", "Enter an amount from €0.01 to €300.00."),
        ("300.01", "Two seats unused", "Enter an amount from €0.01 to €300.00."),
        ("10", "", "This field is required."),
        ("10", "   ", "Give a reason"),
        ("10", "x" * 1001, "1000 characters"),
    ],
)
def test_bad_credit_note_input_is_shown_and_changes_nothing(
    app, issued, signed_in, amount, reason, message
):
    finance = signed_in("finance")
    page = f"/finance/invoices/{issued['invoice_id']}"
    before = counts(app)
    response = _post(
        finance, f"{page}/credit-notes", {"credit-amount": amount, "credit-reason": reason}, page
    )
    assert response.status_code == 400
    assert message in _text(response)
    assert counts(app) == before
    assert invoice_of(app, issued["invoice_id"]).amount_credited == 0


def test_a_credit_note_in_major_units(app, issued, signed_in):
    finance = signed_in("finance")
    page = f"/finance/invoices/{issued['invoice_id']}"
    response = _post(
        finance,
        f"{page}/credit-notes",
        {"credit-amount": "12.50", "credit-reason": "One seat unused half a month"},
        page,
    )
    assert response.status_code == 302
    shown = finance.get(page)
    assert "Credit note CN-" in " ".join(_messages(shown))
    with app.app_context():
        note = db.session.scalars(sa.select(CreditNote)).one()
        assert (note.subtotal, note.tax, note.total) == (1250, 238, 1488)
    assert "One seat unused half a month" in _text(shown)
    assert invoice_of(app, issued["invoice_id"]).amount_due == 35700 - 1488


def test_a_credit_note_for_a_draft_is_refused(app, billed, signed_in):
    invoice_id = draft(app, billed["org"].id, billed["period"])
    finance = signed_in("finance")
    page = f"/finance/invoices/{invoice_id}"
    response = _post(
        finance, f"{page}/credit-notes", {"credit-amount": "1", "credit-reason": "x"}, page
    )
    assert response.status_code == 400
    assert "Credit notes are for finalised invoices" in _text(response)


# ---------------------------------------------------------------- payments


@pytest.mark.parametrize(
    ("amount", "received_on", "message"),
    [
        ("", "today", "This field is required."),
        ("1.001", "today", "EUR has 2 decimals"),
        ("357.01", "today", "Enter an amount from €0.01 to €357.00."),
        ("0", "today", "Enter an amount from €0.01 to €357.00."),
        ("100", "tomorrow", "cannot be received in the future"),
        ("100", "", "This field is required."),
        ("100", "31/12/2025", "Not a valid date value."),
    ],
)
def test_bad_payment_input_is_shown_and_changes_nothing(
    app, issued, signed_in, amount, received_on, message
):
    today = now_utc().date()
    day = {"today": today, "tomorrow": today + dt.timedelta(days=1)}.get(received_on, received_on)
    finance = signed_in("finance")
    page = f"/finance/invoices/{issued['invoice_id']}"
    before = counts(app)
    response = _post(
        finance,
        f"{page}/payments",
        {
            "payment-amount": amount,
            "payment-received_on": str(day),
            "payment-method": "bank_transfer",
        },
        page,
    )
    assert response.status_code == 400
    assert message in _text(response)
    assert counts(app) == before


def test_part_then_full_payment(app, issued, signed_in):
    finance = signed_in("finance")
    page = f"/finance/invoices/{issued['invoice_id']}"
    today = str(now_utc().date())
    form = {"payment-received_on": today, "payment-method": "bank_transfer"}
    _post(finance, f"{page}/payments", {**form, "payment-amount": "100"}, page)
    assert "€257.00 is still due" in " ".join(_messages(finance.get(page)))
    _post(
        finance,
        f"{page}/payments",
        {**form, "payment-amount": "257.00", "payment-reference": issued["number"]},
        page,
    )
    assert "the invoice is paid" in " ".join(_messages(finance.get(page)))
    invoice = invoice_of(app, issued["invoice_id"])
    assert (invoice.status, invoice.amount_paid) == ("paid", 35700)
    with app.app_context():
        assert [p.amount for p in db.session.scalars(sa.select(Payment).order_by(Payment.id))] == [
            10000,
            25700,
        ]


def test_stripe_organisations_get_no_manual_payment_form(app, issued, signed_in):
    with app.app_context():
        from portal.tenancy.models import Organisation

        db.session.get(Organisation, issued["org"].id).billing_provider = "stripe"
        db.session.commit()
    finance = signed_in("finance")
    text = _text(finance.get(f"/finance/invoices/{issued['invoice_id']}"))
    assert "pays through Stripe" in text and "Record payment" not in text


# ---------------------------------------------------------------- void and write-off


def test_void_needs_a_reason_and_an_unpaid_invoice(app, issued, signed_in):
    finance = signed_in("finance")
    page = f"/finance/invoices/{issued['invoice_id']}"
    response = _post(finance, f"{page}/void", {"void-reason": ""}, page)
    assert response.status_code == 400 and "This field is required." in _text(response)
    assert invoice_of(app, issued["invoice_id"]).status == "open"
    response = _post(finance, f"{page}/void", {"void-reason": "Issued to the wrong company"}, page)
    assert response.status_code == 302
    assert "is void" in " ".join(_messages(finance.get(page)))
    assert invoice_of(app, issued["invoice_id"]).status == "void"
    again = _post(finance, f"{page}/void", {"void-reason": "again"}, page)
    assert again.status_code == 400 and "Only an open invoice" in _text(again)


def test_writing_off_and_a_late_payment(app, issued, signed_in):
    finance = signed_in("finance")
    page = f"/finance/invoices/{issued['invoice_id']}"
    response = _post(finance, f"{page}/uncollectible", {"writeoff-reason": ""}, page)
    assert response.status_code == 400
    _post(finance, f"{page}/uncollectible", {"writeoff-reason": "Company in liquidation"}, page)
    assert invoice_of(app, issued["invoice_id"]).status == "uncollectible"
    again = _post(finance, f"{page}/uncollectible", {"writeoff-reason": "again"}, page)
    assert again.status_code == 400 and "Only an open invoice can be written off" in _text(again)
    _post(
        finance,
        f"{page}/payments",
        {
            "payment-amount": "357",
            "payment-received_on": str(now_utc().date()),
            "payment-method": "bank_transfer",
        },
        page,
    )
    assert invoice_of(app, issued["invoice_id"]).status == "paid"


# ---------------------------------------------------------------- exports


def test_exports_page_and_downloads(app, issued, signed_in):
    finance = signed_in("finance")
    period = issued["period"]
    page = _text(finance.get(f"/finance/exports?period={period}"))
    assert "€300.00" in page and "€357.00" in page  # net and gross of the month
    assert "Council economics" in page and "Product cad-suite" in page
    csv_text = finance.get(f"/finance/exports/invoices.csv?period={period}")
    assert csv_text.mimetype == "text/csv"
    assert f"invoices-{period}.csv" in csv_text.headers["Content-Disposition"]
    lines = csv_text.get_data(as_text=True).splitlines()
    assert lines[0].startswith("organisation,") and issued["number"] in lines[1]
    header = lines[0].split(",")
    assert [c for c in header if c.endswith("_minor")] == [
        "unit_amount_minor",
        "net_minor",
        "tax_minor",
        "gross_minor",
    ] and not {"net", "tax", "gross", "unit_amount"} & set(header)
    document = json.loads(finance.get(f"/finance/exports/invoices.json?period={period}").data)
    assert document["summary"][0] == {
        "currency": "EUR",
        "invoices": 1,
        "net": 30000,
        "tax": 5700,
        "gross": 35700,
    }
    economics = finance.get(f"/finance/exports/economics.csv?period={period}")
    rows = economics.get_data(as_text=True).splitlines()
    assert rows[0].startswith("period,product,product_name,row,pool")
    assert "unit_cost_minor" in rows[0] and ",amount_minor," in rows[0]
    assert any(",billed,,EUR," in row and row.endswith(",30000,,,,") for row in rows)
    assert finance.get("/finance/exports?period=May").status_code == 422
    assert finance.get("/finance/exports/invoices.xml").status_code == 404


def test_last_month_is_the_default(app, signed_in):
    finance = signed_in("finance")
    assert f"Finance · {last_month()[0]}" in _text(finance.get("/finance"))
