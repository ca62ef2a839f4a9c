"""SCIM test fixtures: an organisation with a verified domain and a SCIM client for it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from portal.db import db
from tests.conftest import SYSTEM, OrgRef
from tests.sso.conftest import _portal_address, verify_domain  # noqa: F401  (autouse)

SCIM = "application/scim+json"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"


class ScimClient:
    """A test client that speaks SCIM with a bearer token, as an identity provider does."""

    def __init__(self, app, token: str, org: OrgRef) -> None:
        self.client = app.test_client()
        self.token = token
        self.org = org

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", "Accept": SCIM}

    def get(self, path: str, **params: Any):
        return self.client.get("/scim/v2" + path, headers=self._headers(), query_string=params)

    def send(self, method: str, path: str, body: Any):
        return self.client.open(
            "/scim/v2" + path,
            method=method,
            headers={**self._headers(), "Content-Type": SCIM},
            json=body,
        )

    def post(self, path: str, body: Any):
        return self.send("POST", path, body)

    def put(self, path: str, body: Any):
        return self.send("PUT", path, body)

    def patch(self, path: str, *operations: dict[str, Any]):
        return self.send("PATCH", path, {"schemas": [PATCH_OP], "Operations": list(operations)})

    def delete(self, path: str):
        return self.client.delete("/scim/v2" + path, headers=self._headers())


def scim_token_for(app, org: OrgRef) -> str:
    from portal.scim.services import token_create
    from portal.tenancy.models import Organisation

    with app.app_context():
        _, plaintext = token_create(
            db.session, actor=SYSTEM, organisation=db.session.get(Organisation, org.id), name="IdP"
        )
        db.session.commit()
        db.session.remove()
    return plaintext


@pytest.fixture
def scim_org(app, make_org) -> Callable[..., ScimClient]:
    """An active organisation with ``<slug>.example`` verified, and a SCIM client for it."""

    def make(slug: str = "acme") -> ScimClient:
        org = make_org(slug)
        verify_domain(app, org, f"{slug}.example")
        return ScimClient(app, scim_token_for(app, org), org)

    return make


def assert_scim_error(response, status: int, scim_type: str | None = None) -> dict:
    """The response is an RFC 7644 §3.12 error body with this status (and scimType)."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == SCIM
    body = response.get_json()
    assert body["schemas"] == [ERROR_SCHEMA]
    assert body["status"] == str(status)
    assert body["detail"]
    if scim_type is not None:
        assert body.get("scimType") == scim_type, body
    return body
