"""The reconciliation pages (issue 17): council admins for every vendor, a vendor admin for
their own; reconcile now (with or without fixing) and test the SCIM connection, against a
real SCIM 2.0 server."""

from __future__ import annotations

import sqlalchemy as sa

from portal.db import db
from tests.conftest import csrf_token, flashes, login
from tests.provisioning import scim_world as world
from tests.support import db_rows

vendor_server = world.vendor_server
scim_world = world.scim_world

PAGE = "/vendor/provisioning/reconciliation"


def _client(app, user):
    client = app.test_client()
    assert login(client, user).status_code == 302
    return client


def _post(client, path: str, data: dict, token_from: str):
    return client.post(path, data={**data, "csrf_token": csrf_token(client, token_from)})


def test_a_vendor_admin_reconciles_and_fixes_their_own_vendor(
    app, make_user, scim_world, vendor_server, jobs_inline
):
    vendor_server.add_user("stranger@vendor.example")
    client = _client(app, make_user("vendor_admin", vendor=world.VENDOR))

    page = client.get(PAGE)
    assert page.status_code == 200
    assert "No reconciliation yet." in page.get_data(as_text=True)

    listed = _post(client, PAGE, {}, PAGE)
    assert listed.status_code == 302 and "?run=" in listed.headers["Location"]
    shown = client.get(listed.headers["Location"])
    assert flashes(shown) == [
        "The reconciliation of Scim-E2E is queued: this page shows it when it is done."
    ]
    text = shown.get_data(as_text=True)  # the worker ran it (here: as the request committed)
    assert "Differences: 1." in text and "Fixed:" not in text
    assert 'http-equiv="refresh"' not in text
    assert vendor_server.user("stranger@vendor.example")["active"] is True  # not fixed

    fixed = _post(client, PAGE, {"fix": "y"}, PAGE)
    assert fixed.status_code == 302
    shown = client.get(fixed.headers["Location"])
    text = shown.get_data(as_text=True)
    assert "Differences: 1. Fixed: 1." in " ".join(text.split())
    assert "stranger@vendor.example" in text
    assert "Active at the vendor without a seat" in text and "deactivated" in text
    assert vendor_server.user("stranger@vendor.example")["active"] is False

    tested = _post(client, "/vendor/provisioning/scim-test", {}, PAGE)
    assert tested.status_code == 302
    assert "The SCIM connection works." in flashes(client.get(tested.headers["Location"]))


def test_another_vendors_run_is_not_found_and_others_are_refused(
    app, make_user, make_product, scim_world, vendor_server, jobs_inline, signed_in, make_org
):
    from portal.catalogue.models import Vendor
    from portal.provisioning.reconcile import reconcile_vendor
    from tests.conftest import SYSTEM

    with app.app_context():
        vendor = db.session.scalars(sa.select(Vendor).where(Vendor.slug == world.VENDOR)).one()
        run_id = reconcile_vendor(db.session, actor=SYSTEM, vendor=vendor).id
        db.session.commit()
    make_product(sku="other-app", vendor="other")
    stranger = _client(app, make_user("vendor_admin", vendor="other"))
    assert stranger.get(f"{PAGE}?run={run_id}").status_code == 404
    assert stranger.get(f"/council/vendors/{world.VENDOR}/reconciliation").status_code == 403

    before = db_rows(app)
    refused = stranger.post(
        f"/council/vendors/{world.VENDOR}/reconciliation",
        data={"csrf_token": csrf_token(stranger, PAGE)},
    )
    assert refused.status_code == 403
    assert db_rows(app) == before
    member = signed_in("member", make_org())
    assert member.get(PAGE).status_code == 403
    assert member.get("/council/provisioning/reconciliation").status_code == 403


def test_the_council_sees_every_vendor_and_runs_one(
    app, signed_in, scim_world, vendor_server, jobs_inline
):
    admin = signed_in("council_admin")
    overview = admin.get("/council/provisioning/reconciliation")
    assert overview.status_code == 200
    assert f"/council/vendors/{world.VENDOR}/reconciliation" in overview.get_data(as_text=True)

    path = f"/council/vendors/{world.VENDOR}/reconciliation"
    assert admin.get(path).status_code == 200
    done = _post(admin, path, {}, path)
    assert done.status_code == 302
    assert "Differences: 0." in admin.get(done.headers["Location"]).get_data(as_text=True)

    vendor_server.down()
    tested = _post(admin, f"/council/vendors/{world.VENDOR}/scim-test", {}, path)
    assert "could not be reached" in " ".join(flashes(admin.get(tested.headers["Location"])))
    failed = _post(admin, path, {}, path)
    assert failed.status_code == 302
    assert "could not be read" in admin.get(failed.headers["Location"]).get_data(as_text=True)


def test_bad_requests_change_nothing(app, signed_in, scim_world, vendor_server, jobs_inline):
    admin = signed_in("council_admin")
    path = f"/council/vendors/{world.VENDOR}/reconciliation"
    before = db_rows(app)
    assert admin.post(path, data={"fix": "y"}).status_code == 400  # no CSRF token
    assert admin.get(f"{path}?run=abc").status_code == 200  # not a run: the latest
    assert admin.get(f"{path}?run=99999999").status_code == 404
    assert admin.get("/council/vendors/nobody/reconciliation").status_code == 404
    assert db_rows(app) == before
