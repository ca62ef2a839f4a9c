"""Fixtures for the API tests: tokens of each scope and a client that sends them."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest

from portal.db import db
from tests.conftest import SYSTEM, OrgRef, ProductRef


class VendorRef:
    def __init__(self, id: int, slug: str) -> None:
        self.id, self.slug = id, slug


@pytest.fixture
def make_vendor(app) -> Callable[..., VendorRef]:
    """Create a vendor directly (the catalogue's own tests cover its services)."""
    from portal.catalogue.models import Vendor

    counter = iter(range(1, 10_000))

    def make(slug: str | None = None, *, status: str = "active") -> VendorRef:
        slug = slug or f"vendor-{next(counter)}"
        with app.app_context():
            vendor = Vendor(slug=slug, name=f"Vendor {slug}", status=status)
            db.session.add(vendor)
            db.session.commit()
            return VendorRef(vendor.id, vendor.slug)

    return make


@pytest.fixture
def make_token(app) -> Callable[..., str]:
    """Create a token of ``scope`` (for ``org`` or ``vendor``) and return its plaintext."""
    from portal.api.services import token_create
    from portal.catalogue.models import Vendor
    from portal.tenancy.models import Organisation

    def make(
        scope: str = "council",
        *,
        org: OrgRef | None = None,
        vendor: VendorRef | None = None,
        name: str = "test token",
        expires_at: dt.datetime | None = None,
    ) -> str:
        with app.app_context():
            _, plaintext = token_create(
                db.session,
                actor=SYSTEM,
                scope=scope,
                organisation=db.session.get(Organisation, org.id) if org else None,
                vendor=db.session.get(Vendor, vendor.id) if vendor else None,
                name=name,
                expires_at=expires_at,
            )
            db.session.commit()
            return plaintext

    return make


class ApiClient:
    """A test client that sends a bearer token and JSON."""

    def __init__(self, client: Any, token: str | None) -> None:
        self.client = client
        self.token = token

    def _headers(self, headers: dict[str, str] | None) -> dict[str, str]:
        out = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        out.update(headers or {})
        return out

    def get(self, path: str, **kwargs: Any):
        return self.client.get(
            "/api/v1" + path, headers=self._headers(kwargs.pop("headers", None)), **kwargs
        )

    def post(self, path: str, json: Any = None, **kwargs: Any):
        return self.client.post(
            "/api/v1" + path,
            json=json,
            headers=self._headers(kwargs.pop("headers", None)),
            **kwargs,
        )

    def patch(self, path: str, json: Any = None, **kwargs: Any):
        return self.client.patch(
            "/api/v1" + path,
            json=json,
            headers=self._headers(kwargs.pop("headers", None)),
            **kwargs,
        )

    def delete(self, path: str, **kwargs: Any):
        return self.client.delete(
            "/api/v1" + path, headers=self._headers(kwargs.pop("headers", None)), **kwargs
        )


@pytest.fixture
def api(app, make_token) -> Callable[..., ApiClient]:
    """``api(scope, org=…, vendor=…)``: a client with a new token of that scope."""

    def make(scope: str | None = "council", **kwargs: Any) -> ApiClient:
        token = make_token(scope, **kwargs) if scope else None
        return ApiClient(app.test_client(), token)

    return make


def assert_problem(response, status: int, code: str | None = None) -> dict[str, Any]:
    """The response is an RFC 9457 problem with ``status`` (and ``code``); returns its body."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json", response.mimetype
    body = response.get_json()
    assert {"type", "title", "status", "detail"} <= set(body), body
    assert body["status"] == status
    if code is not None:
        assert body.get("code") == code, body
    return body


def miss_the_stored_answer_once(monkeypatch) -> list[str]:
    """The next ``Idempotency-Key`` look-up finds nothing, as when a request looks before an
    identical one racing it has stored its answer; later look-ups are real. Returns the keys
    looked up, in order."""
    from portal.api import idempotency

    real, looks = idempotency.selectors.idempotent_request_find, []

    def late_look(session, *, token_id, key):
        looks.append(key)
        return None if len(looks) == 1 else real(session, token_id=token_id, key=key)

    monkeypatch.setattr(idempotency.selectors, "idempotent_request_find", late_look)
    return looks


@pytest.fixture
def make_product(make_product) -> Callable[..., ProductRef]:  # noqa: F811 (tests/conftest.py's)
    """The API tests' product: an active vendor's, with a pool of ``capacity`` seats in force
    today, no meter, and a seat price in EUR (a product without one cannot be subscribed:
    issue 14) unless ``price=None``."""
    counter = iter(range(1, 10_000))

    def make(
        capacity: int = 10,
        *,
        sku: str | None = None,
        vendor: str = "api-soft",
        price: int | None = 1000,
    ) -> ProductRef:
        return make_product(
            capacity,
            sku=sku or f"api-product-{next(counter)}",
            vendor=vendor,
            vendor_name="API Soft",
            meters=False,
            price=price,
        )

    return make
