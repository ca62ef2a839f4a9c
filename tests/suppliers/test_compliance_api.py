"""Compliance documents over the API (issue 15): a council token reads every vendor's, a vendor
token its own only (404 for another's), an organisation token none (403)."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from portal.catalogue.models import Vendor
from portal.db import db
from portal.kernel.clock import now_utc
from tests.conftest import SYSTEM
from tests.suppliers.compliance_support import upload


def _token(app, scope: str, *, vendor: str | None = None, org=None) -> dict[str, str]:
    from portal.api.services import token_create
    from portal.tenancy.models import Organisation

    with app.app_context():
        _, plaintext = token_create(
            db.session,
            actor=SYSTEM,
            scope=scope,
            organisation=db.session.get(Organisation, org.id) if org else None,
            vendor=(
                db.session.scalar(sa.select(Vendor).where(Vendor.slug == vendor))
                if vendor
                else None
            ),
            name=f"{scope} token",
        )
        db.session.commit()
    return {"Authorization": f"Bearer {plaintext}"}


@pytest.fixture
def documents(app, make_product):
    make_product(sku="mail", vendor="acme-soft")
    make_product(sku="crm", vendor="rival-soft")
    today = now_utc().date()
    return {
        "expiring": upload(
            app,
            "acme-soft",
            title="ISO cert",
            issued_on=today - dt.timedelta(days=300),
            expires_on=today + dt.timedelta(days=12),
            required=True,
        ),
        "dpa": upload(app, "acme-soft", kind="dpa", title="DPA", issued_on=today, expires_on=None),
        "rival": upload(
            app,
            "rival-soft",
            kind="soc2",
            title="SOC 2",
            issued_on=today,
            expires_on=today + dt.timedelta(days=200),
        ),
    }


def test_a_council_token_lists_and_downloads_documents(app, client, documents):
    headers = _token(app, "council")
    response = client.get("/api/v1/vendors/acme-soft/documents", headers=headers)
    assert response.status_code == 200
    rows = {row["title"]: row for row in response.get_json()["data"]}
    assert set(rows) == {"ISO cert", "DPA"}
    assert (rows["ISO cert"]["expiring"], rows["ISO cert"]["required"]) == (True, True)
    assert (rows["DPA"]["expires_on"], rows["DPA"]["expiring"]) == (None, False)
    pdf = client.get(rows["ISO cert"]["download"], headers=headers)
    assert pdf.status_code == 200 and pdf.mimetype == "application/pdf"
    assert pdf.data.startswith(b"%PDF-")
    assert pdf.headers["Content-Disposition"].startswith("attachment;")


def test_a_vendor_token_reads_only_its_own_vendors_documents(app, client, documents):
    headers = _token(app, "vendor", vendor="acme-soft")
    own = client.get("/api/v1/vendors/acme-soft/documents", headers=headers)
    assert own.status_code == 200 and len(own.get_json()["data"]) == 2
    assert client.get(
        f"/api/v1/vendors/acme-soft/documents/{documents['dpa']}.pdf", headers=headers
    ).data.startswith(b"%PDF-")
    # Another vendor's list and document are not there for it; nor is its document under
    # its own vendor's address.
    for path in (
        "/api/v1/vendors/rival-soft/documents",
        f"/api/v1/vendors/rival-soft/documents/{documents['rival']}.pdf",
        f"/api/v1/vendors/acme-soft/documents/{documents['rival']}.pdf",
    ):
        response = client.get(path, headers=headers)
        assert response.status_code == 404, path
        assert response.mimetype == "application/problem+json"


def test_an_organisation_token_and_no_token_are_refused(app, client, documents, make_org):
    org = make_org("reader-org")
    headers = _token(app, "organisation", org=org)
    response = client.get("/api/v1/vendors/acme-soft/documents", headers=headers)
    assert response.status_code == 403
    assert response.mimetype == "application/problem+json"
    assert client.get("/api/v1/vendors/acme-soft/documents").status_code == 401


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/vendors/no-such-vendor/documents",
        "/api/v1/vendors/acme-soft/documents/999999.pdf",
        "/api/v1/vendors/acme-soft/documents/99999999999999999999999.pdf",
        "/api/v1/vendors/acme-soft/documents/0.pdf",
    ],
)
def test_bad_addresses_are_clear_problems(app, client, documents, path):
    response = client.get(path, headers=_token(app, "council"))
    assert response.status_code in (404, 422), response.status_code
    assert response.mimetype == "application/problem+json"


def test_the_openapi_document_has_the_document_routes(app, client):
    spec = client.get("/api/v1/openapi.json").get_json()
    assert "/api/v1/vendors/{slug}/documents" in spec["paths"]
    pdf = spec["paths"]["/api/v1/vendors/{slug}/documents/{id}.pdf"]["get"]
    assert "application/pdf" in pdf["responses"]["200"]["content"]
