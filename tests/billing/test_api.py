"""The billing API: invoice runs, invoices, finalising, credit notes, PDFs and the export."""

from __future__ import annotations

import csv
import io

import pytest
import sqlalchemy as sa

from portal.billing.models import CreditNote, Invoice, InvoiceRun
from portal.db import db
from portal.kernel.clock import now_utc
from tests.api.conftest import ApiClient, assert_problem, miss_the_stored_answer_once
from tests.billing.factories import count, draft, finalize, subscribe
from tests.conftest import OrgRef


@pytest.fixture
def api(app):
    """``api(scope, org=…)``: a client with a new token of that scope (None: no token)."""
    from portal.api.services import token_create
    from portal.tenancy.models import Organisation
    from tests.conftest import SYSTEM

    def make(scope: str | None = "council", org: OrgRef | None = None, vendor=None) -> ApiClient:
        if scope is None:
            return ApiClient(app.test_client(), None)
        with app.app_context():
            if scope == "vendor":
                from portal.catalogue.models import Vendor

                vendor = db.session.scalars(sa.select(Vendor)).first()
            _, plaintext = token_create(
                db.session,
                actor=SYSTEM,
                scope=scope,
                organisation=db.session.get(Organisation, org.id) if org else None,
                vendor=vendor,
                name="test token",
                expires_at=None,
            )
            db.session.commit()
        return ApiClient(app.test_client(), plaintext)

    return make


def test_an_invoice_run_returns_at_once_queued_with_the_run_to_poll(app, billed, api):
    council = api("council")
    response = council.post("/invoice-runs", {"period": billed["period"]})
    assert response.status_code == 201, response.get_json()
    run = response.get_json()
    assert (run["status"], run["organisations_done"], run["finished_at"]) == ("queued", 0, None)
    assert response.headers["Location"] == f"/api/v1/invoice-runs/{run['id']}"
    polled = council.get(f"/invoice-runs/{run['id']}")
    assert polled.status_code == 200 and polled.get_json()["status"] == "queued"
    assert count(app, Invoice) == 0  # no worker ran it (the test broker is in memory)
    assert_problem(council.get("/invoice-runs/999999"), 404)


def test_an_invoice_run_drafts_and_can_finalise(app, billed, make_org, api, jobs_inline):
    make_org("quiet")
    council = api("council")
    response = council.post("/invoice-runs", {"period": billed["period"]})
    assert response.status_code == 201, response.get_json()
    run = council.get(f"/invoice-runs/{response.get_json()['id']}").get_json()
    assert {k: run[k] for k in ("period", "status", "finalize", "invoices_created")} == {
        "period": billed["period"],
        "status": "done",
        "finalize": False,
        "invoices_created": 1,
    }
    assert run["organisations_done"] == run["organisations_total"] == 2
    again = council.post("/invoice-runs", {"period": billed["period"], "finalize": True})
    assert again.status_code == 201
    done = council.get(f"/invoice-runs/{again.get_json()['id']}").get_json()
    assert (done["status"], done["invoices_refreshed"], done["invoices_finalised"]) == (
        "done",
        1,
        1,
    )
    assert count(app, Invoice) == 1


def test_an_invoice_run_replays_its_idempotency_key(app, billed, api):
    council = api("council")
    headers = {"Idempotency-Key": "run-october"}
    first = council.post("/invoice-runs", {"period": billed["period"]}, headers=headers)
    second = council.post("/invoice-runs", {"period": billed["period"]}, headers=headers)
    assert second.get_json() == first.get_json()
    assert second.headers["Idempotent-Replayed"] == "true"
    assert count(app, InvoiceRun) == 1


def test_two_starts_with_one_key_that_race_make_one_run(app, billed, api, monkeypatch):
    """Both starts miss the stored answer (the second looks before the first has stored
    it); the run and the stored answer are committed together, so the second's insert of
    the key fails, its run is rolled back and it replays the first's answer."""
    council = api("council")
    headers = {"Idempotency-Key": "run-raced"}
    first = council.post("/invoice-runs", {"period": billed["period"]}, headers=headers)
    assert first.status_code == 201, first.get_json()
    looks = miss_the_stored_answer_once(monkeypatch)
    second = council.post("/invoice-runs", {"period": billed["period"]}, headers=headers)
    assert len(looks) == 2  # missed it, then found it after the failed insert
    assert second.status_code == 201 and second.get_json() == first.get_json()
    assert second.headers["Idempotent-Replayed"] == "true"
    assert count(app, InvoiceRun) == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "period"),
        ({"period": "2026-13"}, "period"),
        ({"period": "2026-5"}, "period"),
        ({"period": "2026-05", "extra": 1}, "extra"),
        ({"period": "2026-05", "finalize": "maybe"}, "finalize"),
    ],
)
def test_bad_invoice_runs_are_refused(app, billed, api, body, field):
    response = api("council").post("/invoice-runs", body)
    problem = assert_problem(response, 422, "validation_failed")
    assert field in problem["errors"]
    assert count(app, InvoiceRun) == 0


def test_a_month_that_has_not_begun_is_a_conflict(app, billed, api):
    response = api("council").post("/invoice-runs", {"period": f"{now_utc().year + 1}-01"})
    problem = assert_problem(response, 409, "period_not_started")
    assert "period" in problem["errors"]
    assert count(app, InvoiceRun) == 0


def test_invoices_list_get_and_cursor(app, billed, make_org, api):
    orgs = [billed["org"]] + [make_org(f"member-{i}") for i in range(4)]
    for org in orgs[1:]:
        subscribe(app, org.id, billed["product"].id, 2, billed["first"])
    ids = [draft(app, org.id, billed["period"]) for org in orgs]
    council = api("council")
    seen, cursor = [], None
    while True:
        query = f"/invoices?period={billed['period']}&limit=2" + (
            f"&cursor={cursor}" if cursor else ""
        )
        page = council.get(query).get_json()
        seen += [invoice["id"] for invoice in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(ids)
    one = council.get(f"/invoices/{ids[0]}").get_json()
    assert set(one) >= {
        "id",
        "number",
        "organisation",
        "period",
        "currency",
        "status",
        "subtotal",
        "tax",
        "total",
        "lines",
    }
    assert (one["organisation"], one["status"], one["number"], one["total"]) == (
        "acme",
        "draft",
        None,
        35700,
    )
    assert one["lines"] == [
        {
            "kind": "seat",
            "product": "cad-suite",
            "description": one["lines"][0]["description"],
            "quantity": "10.0000",
            "unit_amount": 3000,
            "amount": 30000,
            "council_quantity": None,  # an organisation-basis price (council volume: SPEC 8.3)
            "tier": None,
        }
    ]
    # A list shows each invoice as the invoice's own answer does, its lines included.
    listed = council.get(f"/invoices?period={billed['period']}").get_json()["data"]
    assert sorted(invoice["id"] for invoice in listed) == sorted(ids)
    for invoice in listed:
        assert invoice["lines"] and invoice == council.get(f"/invoices/{invoice['id']}").get_json()
    mine = council.get("/invoices?organisation=acme&status=draft").get_json()["data"]
    assert [i["id"] for i in mine] == [ids[0]]
    assert council.get("/invoices?status=paid").get_json()["data"] == []
    assert_problem(council.get("/invoices?organisation=nobody"), 404, "not_found")
    assert_problem(council.get("/invoices?period=May"), 422, "validation_failed")
    assert_problem(council.get("/invoices?cursor=garbage"), 422, "validation_failed")
    assert_problem(council.get("/invoices/999999"), 404, "not_found")


def test_finalize_and_credit_notes(app, billed, api, mailbox):
    invoice_id = draft(app, billed["org"].id, billed["period"])
    council = api("council")
    response = council.post(f"/invoices/{invoice_id}/finalize")
    assert response.status_code == 200
    invoice = response.get_json()
    assert invoice["status"] == "open" and invoice["number"] == f"INV-{now_utc().year}-000001"
    assert invoice["payment_reference"] == invoice["number"] and invoice["due_on"]
    assert len(mailbox) == 1
    assert_problem(council.post(f"/invoices/{invoice_id}/finalize"), 409, "not_draft")

    note = council.post(
        f"/invoices/{invoice_id}/credit-notes",
        {"amount": 10000, "reason": "Two seats unused"},
        headers={"Idempotency-Key": "cn-1"},
    )
    assert note.status_code == 201, note.get_json()
    body = note.get_json()
    assert (body["number"], body["subtotal"], body["tax"], body["total"]) == (
        f"CN-{now_utc().year}-000001",
        10000,
        1900,
        11900,
    )
    assert body["invoice"] == invoice_id and body["invoice_number"] == invoice["number"]
    replay = council.post(
        f"/invoices/{invoice_id}/credit-notes",
        {"amount": 10000, "reason": "Two seats unused"},
        headers={"Idempotency-Key": "cn-1"},
    )
    assert replay.get_json() == body and count(app, CreditNote) == 1
    assert council.get(f"/invoices/{invoice_id}").get_json()["amount_due"] == 35700 - 11900

    too_much = council.post(
        f"/invoices/{invoice_id}/credit-notes", {"amount": 20001, "reason": "x"}
    )
    assert "amount" in assert_problem(too_much, 422, "validation_failed")["errors"]
    for bad in ({"amount": 0, "reason": "x"}, {"amount": 1}, {"amount": 1, "reason": " "}):
        assert_problem(council.post(f"/invoices/{invoice_id}/credit-notes", bad), 422)
    assert count(app, CreditNote) == 1


def test_credit_notes_need_a_finalised_invoice(app, billed, api):
    invoice_id = draft(app, billed["org"].id, billed["period"])
    response = api("council").post(
        f"/invoices/{invoice_id}/credit-notes", {"amount": 1, "reason": "x"}
    )
    assert_problem(response, 409, "not_creditable")


def test_pdf_and_export(app, jobs_inline, issued, api):
    council = api("council")
    pdf = council.get(f"/invoices/{issued['invoice_id']}.pdf")
    assert pdf.status_code == 200 and pdf.mimetype == "application/pdf"
    assert pdf.data.startswith(b"%PDF")
    with app.app_context():
        assert pdf.data == db.session.get(Invoice, issued["invoice_id"]).pdf
    export = council.get(f"/exports/invoices.csv?period={issued['period']}")
    assert export.status_code == 200 and export.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(export.get_data(as_text=True))))
    # Money columns say their unit: whole minor units beside the currency (issue 14).
    assert [(r["invoice_number"], r["gross_minor"], r["currency"]) for r in rows] == [
        (issued["number"], "35700", "EUR")
    ]
    assert_problem(council.get("/exports/invoices.csv"), 422, "validation_failed")
    assert_problem(council.get(f"/invoices/{issued['invoice_id'] + 999}.pdf"), 404)


def test_organisation_tokens_read_only_their_own_issued_invoices(app, issued, make_org, api):
    other = make_org("other-co")
    subscribe(app, other.id, issued["product"].id, 2, issued["first"])
    theirs = draft(app, other.id, issued["period"])
    finalize(app, theirs)
    own_draft = draft(app, issued["org"].id, now_utc().strftime("%Y-%m"))
    mine = api("organisation", org=issued["org"])

    listed = mine.get("/invoices").get_json()["data"]
    assert [i["id"] for i in listed] == [issued["invoice_id"]]  # no draft, no other org
    assert mine.get(f"/invoices/{issued['invoice_id']}").status_code == 200
    assert mine.get(f"/invoices/{issued['invoice_id']}.pdf").data.startswith(b"%PDF")
    for path in (f"/invoices/{theirs}", f"/invoices/{theirs}.pdf", f"/invoices/{own_draft}"):
        assert_problem(mine.get(path), 404, "not_found")
    assert_problem(mine.get("/invoices?organisation=other-co"), 403, "forbidden")
    assert mine.get("/invoices?organisation=acme").status_code == 200
    rows = mine.get(f"/exports/invoices.csv?period={issued['period']}").get_data(as_text=True)
    assert issued["number"] in rows and "other-co" not in rows
    # organisation tokens do not run, finalise or credit
    assert_problem(mine.post("/invoice-runs", {"period": issued["period"]}), 403, "scope_forbidden")
    assert_problem(mine.post(f"/invoices/{own_draft}/finalize"), 403, "scope_forbidden")
    assert_problem(
        mine.post(f"/invoices/{issued['invoice_id']}/credit-notes", {"amount": 1, "reason": "x"}),
        403,
        "scope_forbidden",
    )
    with app.app_context():
        assert db.session.get(Invoice, own_draft).status == "draft"


def test_vendor_tokens_and_no_token_are_refused(app, issued, api):
    vendor = api("vendor")
    for path in ("/invoices", f"/invoices/{issued['invoice_id']}.pdf"):
        assert_problem(vendor.get(path), 403, "scope_forbidden")
    assert_problem(vendor.post("/invoice-runs", {"period": issued["period"]}), 403)
    anonymous = api(None)
    assert_problem(anonymous.get("/invoices"), 401, "unauthorized")
    assert_problem(anonymous.get(f"/exports/invoices.csv?period={issued['period']}"), 401)


def test_the_openapi_document_lists_the_billing_endpoints(app, client):
    paths = client.get("/api/v1/openapi.json").get_json()["paths"]
    assert {
        "/api/v1/invoice-runs",
        "/api/v1/invoices",
        "/api/v1/invoices/{id}",
        "/api/v1/invoices/{id}/finalize",
        "/api/v1/invoices/{id}/credit-notes",
        "/api/v1/invoices/{id}.pdf",
        "/api/v1/exports/invoices.csv",
    } <= set(paths)
    pdf = paths["/api/v1/invoices/{id}.pdf"]["get"]
    assert "application/pdf" in pdf["responses"]["200"]["content"]
