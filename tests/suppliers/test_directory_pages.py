"""The supplier directory's pages (issue 15): search and filters, a vendor's page with its
incidents, the service status badges, the council's controls, and compliance documents
through the pages (upload, refusals, download, who may see them)."""

from __future__ import annotations

import datetime as dt
import html
import io
import re

import pytest
import sqlalchemy as sa
from werkzeug.datastructures import FileStorage, MultiDict
from werkzeug.test import encode_multipart

from portal.catalogue.models import Vendor
from portal.db import db
from portal.kernel.actor import Actor
from portal.kernel.clock import now_utc
from portal.suppliers import services
from portal.suppliers.compliance import MAX_DOCUMENT_BYTES
from portal.suppliers.compliance_models import ComplianceDocument
from portal.suppliers.models import Incident
from tests.conftest import SYSTEM, csrf_token, login, post_form
from tests.suppliers.compliance_support import pdf_bytes, upload
from tests.support import count, db_rows, messages

COUNCIL = Actor.system("test:council")


def _text(response) -> str:
    return html.unescape(response.get_data(as_text=True))


def _client(app, user):
    client = app.test_client()
    assert login(client, user).status_code == 302
    return client


def _vendor_profile(app, slug: str, **fields) -> None:
    with app.app_context():
        vendor = db.session.scalar(sa.select(Vendor).where(Vendor.slug == slug))
        for key, value in fields.items():
            setattr(vendor, key, value)
        db.session.commit()


@pytest.fixture
def suppliers(app, make_product, make_org):
    make_product(sku="secure-mail", vendor="acme-soft", vendor_name="Acme Soft")
    make_product(sku="bi-studio", vendor="rival-soft", vendor_name="Rival Analytics")
    make_product(sku="cad-suite", vendor="nord-cad", vendor_name="Nord CAD")
    _vendor_profile(app, "acme-soft", country="DE", legal_name="Acme Soft GmbH")
    _vendor_profile(app, "rival-soft", country="FR", data_residency="EU (Paris)")
    _vendor_profile(app, "nord-cad", country="DE")
    with app.app_context():
        rival = db.session.scalar(sa.select(Vendor).where(Vendor.slug == "rival-soft"))
        services.set_service_status(db.session, COUNCIL, rival, "major_outage", "Reports down")
        incident = services.open_incident(
            db.session,
            COUNCIL,
            rival,
            title="Reports fail to load",
            impact="major",
            body="We are looking into it.",
        )
        services.add_incident_update(
            db.session, COUNCIL, incident, body="The cause is found.", state="identified"
        )
        db.session.commit()
        incident_id = incident.id
    return {"org": make_org("reader-org"), "incident": incident_id}


def _cards(response) -> list[str]:
    return re.findall(
        r'<article class="vendor-card" id="vendor-([a-z0-9-]+)"', response.get_data(as_text=True)
    )


def test_the_directory_searches_and_filters_without_javascript(app, suppliers, make_user):
    client = _client(app, make_user("member", suppliers["org"]))
    assert _cards(client.get("/suppliers")) == ["acme-soft", "nord-cad", "rival-soft"]
    assert _cards(client.get("/suppliers?country=de")) == ["acme-soft", "nord-cad"]
    assert _cards(client.get("/suppliers?status=major_outage")) == ["rival-soft"]
    assert _cards(client.get("/suppliers?product=cad-suite")) == ["nord-cad"]
    assert _cards(client.get("/suppliers?q=product+bi")) == ["rival-soft"]  # a product's name
    assert _cards(client.get("/suppliers?q=GMBH")) == ["acme-soft"]  # the legal name
    assert _cards(client.get("/suppliers?country=DE&q=nord")) == ["nord-cad"]
    page = client.get("/suppliers?status=operational&country=FR")
    assert _cards(page) == [] and "No supplier matches these filters." in _text(page)
    # The form keeps what was chosen.
    chosen = _text(client.get("/suppliers?status=major_outage&q=rival"))
    assert '<option value="major_outage" selected>' in chosen and 'value="rival"' in chosen


@pytest.mark.parametrize(
    "query",
    [
        "page=-1",
        "page=99999999999999999999",
        "q=%ff%fe",
        "country=%E2%82%AC",
        "status=x" * 50,
        "product=" + "z" * 500,
        "page=abc&q=" + "a" * 5000,
    ],
)
def test_odd_directory_queries_answer_a_page(app, suppliers, make_user, query):
    client = _client(app, make_user("member", suppliers["org"]))
    assert client.get(f"/suppliers?{query}").status_code == 200


def test_a_nul_in_the_search_is_refused(app, suppliers, make_user):
    client = _client(app, make_user("member", suppliers["org"]))
    assert client.get("/suppliers?q=%00").status_code == 400  # the portal's rule for NUL


def test_the_directory_pages(app, suppliers, make_user, make_product):
    for n in range(22):
        make_product(sku=f"tool-{n}", vendor=f"vendor-{n:02d}", vendor_name=f"Vendor {n:02d}")
    client = _client(app, make_user("member", suppliers["org"]))
    first = client.get("/suppliers?q=vendor")
    assert len(_cards(first)) == 20 and "Page 1 of 2 (22 in all)" in _text(first)
    second = client.get("/suppliers?q=vendor&page=2")
    assert _cards(second) == ["vendor-20", "vendor-21"]
    assert 'href="/suppliers?page=1&amp;q=vendor"' in second.get_data(as_text=True)


def test_a_vendor_page_shows_profile_status_uptime_and_incidents(app, suppliers, make_user):
    client = _client(app, make_user("member", suppliers["org"]))
    page = _text(client.get("/suppliers/rival-soft"))
    for text in (
        "Rival Analytics",
        "EU (Paris)",
        "Product bi-studio",
        "Service: Major outage",
        "Reports down",
        "Reports fail to load",
        "We are looking into it.",
        "The cause is found.",
        "Uptime, 30 days",
        "Uptime, 90 days",
    ):
        assert text in page, text
    # Members see no council controls and no documents.
    assert "Set the service status" not in page and "Compliance documents" not in page
    assert client.get("/suppliers/no-such-vendor").status_code == 404


def test_a_stale_status_page_reading_is_shown_as_such(app, suppliers, make_user):
    _vendor_profile(
        app,
        "acme-soft",
        status_page_url="https://status.acme.example",
        status_polled_at=now_utc() - dt.timedelta(hours=2),
    )
    client = _client(app, make_user("member", suppliers["org"]))
    page = _text(client.get("/suppliers/acme-soft"))
    assert "reading out of date" in page and "may be out of date" in page
    assert "reading out of date" in _text(client.get("/suppliers?q=acme"))
    assert "reading out of date" not in _text(client.get("/suppliers/nord-cad"))


def test_badges_on_my_software_the_catalogue_and_the_council_vendors_page(
    app, suppliers, make_user
):
    from portal.catalogue.models import Product
    from portal.seats.services import seat_assign, subscription_create
    from portal.tenancy.models import Organisation

    member = make_user("member", suppliers["org"])
    with app.app_context():
        outcome = subscription_create(
            db.session,
            actor=SYSTEM,
            organisation=db.session.get(Organisation, suppliers["org"].id),
            product=db.session.scalar(sa.select(Product).where(Product.sku == "bi-studio")),
            quantity=1,
        )
        seat_assign(
            db.session, actor=SYSTEM, subscription=outcome.subscription, user_email=member.email
        )
        db.session.commit()
    mine = _text(_client(app, member).get("/my"))
    assert "Service: Major outage" in mine and 'href="/suppliers/rival-soft"' in mine
    catalogue = _text(_client(app, make_user("org_admin", suppliers["org"])).get("/catalogue"))
    assert "Service: Major outage" in catalogue and "Service: Operational" in catalogue
    council = _text(_client(app, make_user("finance")).get("/council/vendors"))
    assert "Major outage" in council and "Operational" in council


# ---------------------------------------------------------------- the council's controls


def test_a_council_admin_sets_the_status_and_runs_an_incident_from_the_vendor_page(
    app, suppliers, make_user
):
    client = _client(app, make_user("council_admin"))
    page = "/suppliers/acme-soft"
    assert "Set the service status" in _text(client.get(page))
    response = post_form(
        client,
        f"{page}/service-status",
        {"status-service_status": "degraded", "status-message": "Slow exports"},
        token_from=page,
    )
    assert response.status_code == 302
    assert "Service: Degraded performance" in _text(client.get(page))
    response = post_form(
        client,
        f"{page}/incidents",
        {"incident-title": "Exports slow", "incident-impact": "minor", "incident-body": "On it."},
        token_from=page,
    )
    assert response.status_code == 302
    with app.app_context():
        incident = db.session.scalar(sa.select(Incident).where(Incident.title == "Exports slow"))
        incident_id = incident.id
    response = post_form(
        client,
        f"{page}/incidents/{incident_id}/updates",
        {
            f"update-{incident_id}-body": "Fixed.",
            f"update-{incident_id}-state": "resolved",
            f"update-{incident_id}-impact": "",
        },
        token_from=page,
    )
    assert response.status_code == 302
    assert "Exports slow" in _text(client.get(page)).split("Recently resolved")[1]
    # An incident of another vendor is not this vendor's.
    other = suppliers["incident"]
    response = post_form(
        client,
        f"{page}/incidents/{other}/updates",
        {f"update-{other}-body": "x"},
        token_from=page,
    )
    assert response.status_code == 404
    # A bad status page address is refused beside its field, nothing changed.
    before = db_rows(app)
    response = post_form(
        client, f"{page}/status-page", {"page-status_page_url": "ftp://x"}, token_from=page
    )
    assert response.status_code == 400 and "status page's address" in " ".join(messages(response))
    assert db_rows(app) == before


def test_members_and_finance_cannot_use_the_council_controls(app, suppliers, make_user):
    users = (
        make_user("member", suppliers["org"]),
        make_user("finance"),
        make_user("vendor_admin", vendor="acme-soft"),  # changes its own on its portal
    )
    for user in users:
        client = _client(app, user)
        before = db_rows(app)
        for path, data in (
            ("/suppliers/acme-soft/service-status", {"status-service_status": "major_outage"}),
            ("/suppliers/acme-soft/incidents", {"incident-title": "x"}),
            ("/suppliers/acme-soft/status-page", {"page-status_page_url": "https://x.example"}),
        ):
            data["csrf_token"] = csrf_token(client, "/suppliers")
            assert client.post(path, data=data).status_code == 403, (user.role, path)
        assert client.get("/suppliers/acme-soft/documents/new").status_code == 403
        assert db_rows(app) == before


# ---------------------------------------------------------------- compliance documents


def _upload_form(client, slug: str, content: bytes, **fields):
    path = f"/suppliers/{slug}/documents/new"
    data = {
        "kind": "iso27001",
        "title": "ISO 27001 certificate",
        "issued_on": "2026-01-15",
        "expires_on": "2029-01-14",
        "csrf_token": csrf_token(client, path),
        "file": FileStorage(io.BytesIO(content), "cert 2026.pdf", content_type="application/pdf"),
        **fields,
    }
    # Encoded here, in memory: the test client would spool a large body to a temporary file
    # that nobody closes.
    boundary, body = encode_multipart(MultiDict(list(data.items())))
    return client.post(path, data=body, content_type=f"multipart/form-data; boundary={boundary}")


def test_a_council_admin_uploads_a_pdf_and_people_who_may_download_it(app, suppliers, make_user):
    client = _client(app, make_user("council_admin"))
    content = pdf_bytes(pages=2)
    response = _upload_form(client, "acme-soft", content, required="y")
    assert response.status_code == 302, messages(response)
    with app.app_context():
        document = db.session.scalar(sa.select(ComplianceDocument))
        document_id, filename, required = document.id, document.filename, document.required
    assert (filename, required) == ("cert-2026.pdf", True)
    download = client.get(f"/suppliers/acme-soft/documents/{document_id}")
    assert download.status_code == 200 and download.data == content
    assert download.mimetype == "application/pdf"
    assert download.headers["Content-Disposition"] == 'attachment; filename="cert-2026.pdf"'
    # Finance reads them; the vendor's own admin too; another vendor's admin gets 404.
    finance = _client(app, make_user("finance"))
    assert finance.get(f"/suppliers/acme-soft/documents/{document_id}").status_code == 200
    own = _client(app, make_user("vendor_admin", vendor="acme-soft"))
    assert own.get(f"/suppliers/acme-soft/documents/{document_id}").data == content
    assert "ISO 27001 certificate" in _text(own.get("/suppliers/acme-soft"))
    rival = _client(app, make_user("vendor_admin", vendor="rival-soft"))
    assert rival.get(f"/suppliers/acme-soft/documents/{document_id}").status_code == 404
    assert rival.get(f"/suppliers/rival-soft/documents/{document_id}").status_code == 404
    assert "Compliance documents" not in _text(rival.get("/suppliers/acme-soft"))
    member = _client(app, make_user("member", suppliers["org"]))
    assert member.get(f"/suppliers/acme-soft/documents/{document_id}").status_code == 403


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"PK\x03\x04 not a pdf", "This file is not a PDF."),
        (b"%PDF-1.4 and then nonsense", "This PDF is damaged and cannot be opened."),
        (b"%PDF-" + b"0" * MAX_DOCUMENT_BYTES, "The file is larger than 10 MB."),
    ],
    ids=["not-pdf", "damaged", "oversize"],
)
def test_a_file_that_is_no_good_pdf_is_refused_beside_the_field(
    app, suppliers, make_user, content, message
):
    client = _client(app, make_user("council_admin"))
    before = db_rows(app)
    response = _upload_form(client, "acme-soft", content)
    assert response.status_code == 400
    assert message in messages(response)
    assert db_rows(app) == before


def test_bad_fields_are_all_shown_at_once(app, suppliers, make_user):
    client = _client(app, make_user("council_admin"))
    response = _upload_form(
        client,
        "acme-soft",
        b"nope",
        kind="passport",
        title="",
        issued_on="2026-13-40",
        expires_on="yesterday",
    )
    assert response.status_code == 400
    found = " ".join(messages(response))
    assert "This file is not a PDF." in found and "Not a valid choice" in found
    assert count(app, ComplianceDocument) == 0


def test_a_member_cannot_upload(app, suppliers, make_user):
    client = _client(app, make_user("org_admin", suppliers["org"]))
    response = _upload_form(client, "acme-soft", pdf_bytes())
    assert response.status_code in (400, 403)  # no CSRF token from a page it may not see
    path = "/suppliers/acme-soft/documents/new"
    data = {
        "csrf_token": csrf_token(client, "/suppliers"),
        "file": (io.BytesIO(pdf_bytes()), "a.pdf"),
    }
    assert client.post(path, data=data, content_type="multipart/form-data").status_code == 403
    assert count(app, ComplianceDocument) == 0


def test_expiring_documents_are_flagged_on_the_vendor_and_vendors_pages(app, suppliers, make_user):
    today = now_utc().date()
    upload(
        app,
        "acme-soft",
        title="ISO cert",
        issued_on=today - dt.timedelta(days=300),
        expires_on=today + dt.timedelta(days=20),
    )
    upload(app, "acme-soft", kind="dpa", title="DPA", issued_on=today, expires_on=None)
    upload(
        app,
        "nord-cad",
        kind="soc2",
        title="SOC 2",
        issued_on=today,
        expires_on=today + dt.timedelta(days=31),
    )
    client = _client(app, make_user("council_admin"))
    page = _text(client.get("/suppliers/acme-soft"))
    assert "expires in 20 days" in page and "does not expire" in page
    assert "expires in" not in _text(client.get("/suppliers/nord-cad"))
    vendors = _text(client.get("/council/vendors"))
    assert "“ISO cert” expires on" in vendors and "SOC 2" not in vendors


def test_a_council_admin_removes_a_document_after_confirming(app, suppliers, make_user):
    today = now_utc().date()
    document_id = upload(app, "acme-soft", issued_on=today, expires_on=None)
    client = _client(app, make_user("council_admin"))
    path = f"/suppliers/acme-soft/documents/{document_id}/delete"
    first = post_form(client, path, {}, token_from="/suppliers/acme-soft")
    assert first.status_code == 200 and "Remove the document" in _text(first)
    assert count(app, ComplianceDocument) == 1
    done = post_form(client, path, {"confirmed": "1"}, token_from="/suppliers/acme-soft")
    assert done.status_code == 302
    assert count(app, ComplianceDocument) == 0
