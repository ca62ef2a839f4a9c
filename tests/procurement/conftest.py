"""Fixtures of the procurement tests: council people, a vendor with a contact and products."""

from __future__ import annotations

import pytest

from tests.procurement.po_support import person, vendor_with_contact


@pytest.fixture
def people(make_user):
    """Two council admins and a finance officer, as the actors their pages make."""
    return {
        "admin": person(make_user("council_admin", second_factor=False)),
        "admin2": person(make_user("council_admin", second_factor=False)),
        "finance": person(make_user("finance", second_factor=False)),
    }


@pytest.fixture
def supplier(app, make_product):
    """The vendor ``acme-soft`` (contact orders@acme-soft.example) and two of its products
    (cad-suite with a pool of 5 seats, secure-mail of 1)."""
    cad = make_product(5, sku="cad-suite")
    mail = make_product(1, sku="secure-mail")
    return {"vendor_id": vendor_with_contact(app), "cad": cad, "mail": mail}


@pytest.fixture
def council_api(app):
    """An API client with a new council token."""
    from portal.api.services import token_create
    from portal.db import db
    from tests.api.conftest import ApiClient
    from tests.conftest import SYSTEM

    with app.app_context():
        _, plaintext = token_create(
            db.session, actor=SYSTEM, scope="council", name="procurement script"
        )
        db.session.commit()
    return ApiClient(app.test_client(), plaintext)
