"""The provisioning pages: the council's log and a vendor's settings, a vendor admin's own
pages; another vendor's delivery is not found; a secret shown once; bad input answered
beside its field with nothing changed."""

from __future__ import annotations

import re

import sqlalchemy as sa

from portal.db import db
from portal.provisioning.models import Delivery, VendorProvisioning
from tests.conftest import csrf_token, login
from tests.support import messages


def _client(app, user):
    client = app.test_client()
    assert login(client, user).status_code == 302
    return client


def _deliver_one(app, world):
    from tests.provisioning.test_webhooks import _assign

    with app.app_context():
        _assign(world, "pat@buyer.example")
        return db.session.scalar(sa.select(Delivery.id).where(Delivery.event == "seat.assigned"))


def test_the_council_sees_every_vendor_and_filters_the_log(app, world, make_user, jobs_inline):
    delivery_id = _deliver_one(app, world)
    client = _client(app, make_user("council_admin"))
    page = client.get("/council/provisioning/deliveries")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "pat@buyer.example" in text and "Hooked" in text
    only = client.get(
        "/council/provisioning/deliveries?vendor=hooked&state=delivered&event=seat.assigned&person=pat"
    ).get_data(as_text=True)
    assert (
        "pat@buyer.example" in only
        and "Subscription changed"
        not in only.split("Delivery log")[-1].split("</table>")[0].split("<tbody>")[-1]
    )
    nothing = client.get("/council/provisioning/deliveries?person=nobody").get_data(as_text=True)
    assert "No deliveries." in nothing
    odd = client.get("/council/provisioning/deliveries?vendor=nope&state=lost&page=x")
    assert odd.status_code == 200 and "No such vendor." in odd.get_data(as_text=True)
    detail = client.get(f"/council/provisioning/deliveries/{delivery_id}")
    assert detail.status_code == 200
    body = detail.get_data(as_text=True)
    assert "HTTP 200" in body and "webhook-id:" in body and world.secret not in body


def test_redeliver_posts_and_is_audited(app, world, make_user, jobs_inline):
    from portal.audit.models import AuditEvent

    delivery_id = _deliver_one(app, world)
    client = _client(app, make_user("council_admin"))
    path = f"/council/provisioning/deliveries/{delivery_id}"
    token = csrf_token(client, path)
    answer = client.post(f"{path}/redeliver", data={"csrf_token": token})
    assert answer.status_code == 302
    with app.app_context():
        row = db.session.get(Delivery, delivery_id)
        assert row.state == "delivered" and row.attempts == 2
        assert (
            db.session.scalar(
                sa.select(sa.func.count()).where(AuditEvent.action == "provisioning.redeliver")
            )
            == 1
        )
    # without the CSRF token nothing happens
    client.post(f"{path}/redeliver", data={})
    with app.app_context():
        assert db.session.get(Delivery, delivery_id).attempts == 2


def test_a_vendor_admin_sees_its_own_and_not_anothers(
    app, world, make_user, make_product, jobs_inline
):
    make_product(sku="other-app", vendor="other")
    delivery_id = _deliver_one(app, world)
    mine = _client(app, make_user("vendor_admin", vendor="hooked"))
    theirs = _client(app, make_user("vendor_admin", vendor="other"))
    assert "pat@buyer.example" in mine.get("/vendor/provisioning/deliveries").get_data(as_text=True)
    assert mine.get(f"/vendor/provisioning/deliveries/{delivery_id}").status_code == 200
    log = theirs.get("/vendor/provisioning/deliveries").get_data(as_text=True)
    assert "pat@buyer.example" not in log
    assert theirs.get(f"/vendor/provisioning/deliveries/{delivery_id}").status_code == 404
    token = csrf_token(theirs, "/vendor/provisioning")
    answer = theirs.post(
        f"/vendor/provisioning/deliveries/{delivery_id}/redeliver", data={"csrf_token": token}
    )
    assert answer.status_code == 404
    # the council's pages are closed to vendor admins
    assert theirs.get("/council/provisioning/deliveries").status_code == 403
    assert theirs.get("/council/vendors/hooked/provisioning").status_code == 403


def test_a_vendor_admin_sets_its_settings_and_sees_the_secret_once(app, world, make_user):
    client = _client(app, make_user("vendor_admin", vendor="hooked"))
    token = csrf_token(client, "/vendor/provisioning")
    answer = client.post(
        "/vendor/provisioning",
        data={
            "csrf_token": token,
            "scim_base_url": "http://127.0.0.1:9/scim/v2",
            "scim_token": "tok-123",
            "on_release": "delete",
            "webhook_url": "http://127.0.0.1:9/hooks",
        },
    )
    assert answer.status_code == 302, messages(answer)
    with app.app_context():
        row = db.session.scalar(sa.select(VendorProvisioning))
        assert row.on_release == "delete" and row.scim_token() == "tok-123"
    page = client.get("/vendor/provisioning").get_data(as_text=True)
    assert "tok-123" not in page and "A token is stored." in page
    shown = client.post("/vendor/provisioning/webhook-secret", data={"csrf_token": token})
    assert shown.status_code == 200 and shown.headers["Cache-Control"] == "no-store"
    secret = re.search(r'value="(whsec_[^"]+)"', shown.get_data(as_text=True)).group(1)
    again = client.get("/vendor/provisioning").get_data(as_text=True)
    assert secret not in again and "The previous secret signs as well" in again


def test_bad_settings_are_shown_beside_their_field_and_nothing_changes(app, world, make_user):
    client = _client(app, make_user("council_admin"))
    path = "/council/vendors/hooked/provisioning"
    token = csrf_token(client, path)
    with app.app_context():
        before = db.session.scalar(sa.select(VendorProvisioning.webhook_url))
    for url in ("ftp://x.example/", "https://a:b@x.example/", "https://", "x" * 600):
        answer = client.post(
            path, data={"csrf_token": token, "webhook_url": url, "on_release": "deactivate"}
        )
        assert answer.status_code == 400, url
        assert 'aria-invalid="true"' in answer.get_data(as_text=True)
    answer = client.post(path, data={"csrf_token": token, "on_release": "archive"})
    assert answer.status_code == 400
    with app.app_context():
        assert db.session.scalar(sa.select(VendorProvisioning.webhook_url)) == before
