"""The reconciliation API (issue 17): ``/api/v1/vendors/{slug}/provisioning/reconciliations``
and ``…/scim-test``, against a real SCIM 2.0 server; who may, and bad input."""

from __future__ import annotations

import pytest

from portal.db import db
from tests.conftest import SYSTEM
from tests.provisioning import scim_world as world
from tests.support import db_rows

vendor_server = world.vendor_server
scim_world = world.scim_world

RUNS = f"/api/v1/vendors/{world.VENDOR}/provisioning/reconciliations"
TEST = f"/api/v1/vendors/{world.VENDOR}/provisioning/scim-test"


def _token(app, scope: str, **kwargs) -> dict[str, str]:
    from portal.api.services import token_create
    from portal.catalogue.selectors import vendor_by_slug
    from portal.tenancy.models import Organisation

    with app.app_context():
        if "vendor" in kwargs:
            kwargs["vendor"] = vendor_by_slug(db.session, kwargs["vendor"])
        if "org" in kwargs:
            kwargs["organisation"] = db.session.get(Organisation, kwargs.pop("org"))
        _, plaintext = token_create(db.session, actor=SYSTEM, scope=scope, name="t", **kwargs)
        db.session.commit()
        return {"Authorization": f"Bearer {plaintext}"}


def _state(app) -> dict:
    """Every table but the tokens' own (a token's use is stamped on it)."""
    return {k: v for k, v in db_rows(app).items() if k != "api_tokens"}


@pytest.fixture
def tokens(app, make_product, scim_world):
    make_product(sku="other-app", vendor="other")
    return {
        "council": _token(app, "council"),
        "own": _token(app, "vendor", vendor=world.VENDOR),
        "other": _token(app, "vendor", vendor="other"),
        "org": _token(app, "organisation", org=scim_world.org.id),
    }


def test_a_vendor_reconciles_over_the_api(app, client, tokens, vendor_server, jobs_inline):
    vendor_server.add_user("stranger@vendor.example")
    made = client.post(RUNS, headers=tokens["own"], json={"fix": True})
    assert made.status_code == 201, made.get_data(as_text=True)
    assert made.json["state"] == "queued"  # a worker runs it (here: as the request commits)
    location = made.headers["Location"]
    assert location == f"{RUNS}/{made.json['id']}"
    polled = client.get(location, headers=tokens["own"])
    assert polled.status_code == 200
    run = polled.json
    assert (run["state"], run["fix"], run["drift"], run["fixed"]) == ("done", True, 1, 1)
    assert run["findings"] == [
        {
            "kind": "active_without_seat",
            "person": "stranger@vendor.example",
            "vendor_resource_id": vendor_server.user("stranger@vendor.example")["id"],
            "fix": "deactivated",
            "fix_error": None,
        }
    ]
    listed = client.get(RUNS, headers=tokens["council"])
    assert listed.status_code == 200 and [r["id"] for r in listed.json["data"]] == [run["id"]]

    checked = client.post(TEST, headers=tokens["own"])
    assert checked.status_code == 200
    assert checked.json["ok"] is True and checked.json["patch"] is True


def test_only_the_council_and_that_vendor(app, client, tokens, jobs_inline):
    before = _state(app)
    assert client.get(RUNS, headers=tokens["other"]).status_code == 404
    assert client.post(RUNS, headers=tokens["other"], json={"fix": True}).status_code == 404
    assert client.post(TEST, headers=tokens["other"]).status_code == 404
    assert client.get(RUNS, headers=tokens["org"]).status_code == 403
    assert client.post(RUNS, headers=tokens["org"], json={"fix": False}).status_code == 403
    assert client.get(RUNS).status_code == 401
    assert _state(app) == before


@pytest.mark.parametrize(
    "body",
    [None, {}, {"fix": "yes"}, {"fix": 1}, {"fix": True, "more": 1}, [True], "fix"],
)
def test_bad_bodies_are_422_and_change_nothing(app, client, tokens, body, jobs_inline):
    before = _state(app)
    answer = client.post(RUNS, headers=tokens["council"], json=body)
    assert answer.status_code == 422, answer.get_data(as_text=True)
    assert answer.content_type.startswith("application/problem+json")
    assert _state(app) == before


def test_a_vendor_without_scim_is_a_conflict(app, client, tokens, jobs_inline):
    answer = client.post(
        "/api/v1/vendors/other/provisioning/reconciliations",
        headers=tokens["council"],
        json={"fix": False},
    )
    assert answer.status_code == 409
    assert answer.json["code"] == "scim_not_configured"
    assert (
        client.post(
            "/api/v1/vendors/other/provisioning/scim-test", headers=tokens["council"]
        ).status_code
        == 409
    )
    assert (
        client.get(
            "/api/v1/vendors/nobody/provisioning/reconciliations", headers=tokens["council"]
        ).status_code
        == 404
    )
