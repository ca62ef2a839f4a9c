"""The demand pages: a member asks from the catalogue and reads the council's answer; the
council's board, answer, merge, link and a purchase order drafted from the board; who may
open what (another organisation's request is 404, members never see the board); bad
forms answer 400 and keep nothing."""

from __future__ import annotations

import sqlalchemy as sa

from portal.db import db
from portal.procurement.models import ProductRequest, PurchaseOrder
from tests.procurement.demand_support import build
from tests.procurement.po_support import term
from tests.support import client_for, count, follow_messages, form_post, messages


def _requests(app):
    with app.app_context():
        rows = list(db.session.scalars(sa.select(ProductRequest).order_by(ProductRequest.id)))
        db.session.expunge_all()
        return rows


def test_a_member_asks_from_the_catalogue_and_reads_the_answer(app, make_org, make_product):
    make_product(5, sku="cad-suite")
    org = make_org("org-a")
    member = client_for(app, "member", org)
    catalogue = member.get("/catalogue?q=atlas").get_data(as_text=True)
    assert "/requests/products/new?name=atlas" in catalogue
    form = member.get("/requests/products/new?name=atlas").get_data(as_text=True)
    assert 'value="atlas"' in form
    response = form_post(
        member,
        "/requests/products/new",
        {
            "product_name": "Atlas GIS",
            "vendor_id": "",
            "vendor_name": "Atlas Inc.",
            "seats": "12",
            "note": "Planning",
        },
        token_from="/requests/products/new",
    )
    assert any("Atlas GIS" in m for m in follow_messages(member, response))
    (request,) = _requests(app)
    assert (request.organisation_id, request.seats, str(request.state)) == (org.id, 12, "open")

    council = client_for(app, "council_admin")
    board = council.get("/demand").get_data(as_text=True)
    assert "Atlas GIS" in board
    response = form_post(
        council,
        f"/requests/products/{request.id}/answer",
        {"state": "planned", "reply": "We ask Atlas for a quote."},
        token_from=f"/requests/products/{request.id}",
        prefix="answer",
    )
    assert response.status_code == 302
    page = member.get("/requests/products").get_data(as_text=True)
    assert "We ask Atlas for a quote." in page and "planned" in page
    # the member reads it but has no council forms
    detail = member.get(f"/requests/products/{request.id}").get_data(as_text=True)
    assert "We ask Atlas for a quote." in detail and "/answer" not in detail


def test_who_may_open_what(app, make_org, make_product):
    make_product(5, sku="cad-suite")
    a, b = make_org("org-a"), make_org("org-b")
    member_a = client_for(app, "member", a)
    form_post(
        member_a,
        "/requests/products/new",
        {"product_name": "Atlas GIS", "vendor_name": "Atlas", "seats": "2"},
        token_from="/requests/products/new",
    )
    (request,) = _requests(app)
    path = f"/requests/products/{request.id}"
    assert member_a.get(path).status_code == 200
    assert client_for(app, "org_admin", a).get(path).status_code == 200
    admin_b = client_for(app, "org_admin", b)
    assert admin_b.get(path).status_code == 404
    assert "Atlas GIS" not in admin_b.get("/requests/products").get_data(as_text=True)
    assert admin_b.get("/requests/products/999999999").status_code == 404
    assert member_a.get("/demand").status_code == 403
    assert admin_b.get("/demand").status_code == 403
    assert member_a.get("/demand/products/1/draft").status_code == 403
    finance = client_for(app, "finance")
    assert finance.get("/demand").status_code == 200
    assert finance.get(path).status_code == 200
    assert finance.get("/requests/products/new").status_code == 403
    assert finance.get("/demand/products/1/draft").status_code == 403
    # an org admin cannot answer (no such page for them)
    response = form_post(
        client_for(app, "org_admin", a),
        f"{path}/answer",
        {"state": "declined", "reply": "no"},
        token_from=path,
        prefix="answer",
    )
    assert response.status_code == 403
    assert str(_requests(app)[0].state) == "open"


def test_bad_forms_answer_400_and_keep_nothing(app, make_org, make_product):
    make_product(5, sku="cad-suite")
    member = client_for(app, "member", make_org("org-a"))
    for data in (
        {"product_name": "", "vendor_name": "Atlas", "seats": "2"},
        {"product_name": "Atlas", "vendor_name": "", "vendor_id": "", "seats": "2"},
        {"product_name": "Atlas", "vendor_name": "Atlas", "seats": "-3"},
        {"product_name": "Atlas", "vendor_name": "Atlas", "seats": "lots"},
        {"product_name": "Atlas", "vendor_id": "99999", "seats": "1"},
        {"product_name": "Product cad-suite", "vendor_name": "Acme", "seats": "1"},
        {"product_name": "A" * 500, "vendor_name": "Atlas", "seats": "1"},
        {"product_name": "Atlas", "vendor_name": "Atlas", "seats": "9" * 30},
        {"product_name": "Atlas", "vendor_id": "9" * 30, "seats": "1"},
    ):
        response = form_post(
            member, "/requests/products/new", data, token_from="/requests/products/new"
        )
        assert response.status_code == 400, data
        assert messages(response), data
    # a control character: the input guard's 400 page, before any view
    nul = {"product_name": "Atlas\x00", "vendor_name": "Atlas", "seats": "1"}
    path = "/requests/products/new"
    assert form_post(member, path, nul, token_from=path).status_code == 400
    assert count(app, ProductRequest) == 0
    assert member.get("/requests/products/" + "9" * 30).status_code == 404


def test_the_council_merges_links_and_drafts_from_the_board(app, make_org, make_product):
    world = build(app, make_org, make_product)
    council = client_for(app, "council_admin")
    board = council.get("/demand")
    assert board.status_code == 200
    html = board.get_data(as_text=True)
    assert html.index('id="demand-cad-suite"') < html.index('id="demand-secure-mail"')
    assert "Atlas GIS" in html and "<svg" in html
    assert council.get("/demand?sort=name").status_code == 200
    assert council.get("/demand?sort=bogus").status_code == 200

    # #4 (Atlas GIS) merged into #1 (CAD Suite): one group of three requests
    detail = f"/requests/products/{world.r4}"
    response = form_post(
        council, f"{detail}/merge", {"into": str(world.r1)}, token_from=detail, prefix="merge"
    )
    assert response.headers["Location"].endswith(f"/requests/products/{world.r1}")
    bad = form_post(
        council, f"{detail}/merge", {"into": str(world.r1)}, token_from=detail, prefix="merge"
    )
    assert bad.status_code == 400  # merged already
    bad = form_post(
        council,
        f"/requests/products/{world.r1}/link",
        {"product_id": "nope"},
        token_from=detail,
        prefix="link",
    )
    assert bad.status_code == 400

    # the board's "draft a purchase order": the suggested seats, the pool's unit cost
    draft = council.get(f"/demand/products/{world.cad.id}/draft?request={world.r1}")
    page = draft.get_data(as_text=True)
    assert draft.status_code == 200
    assert 'name="seats"' in page and 'value="16"' in page  # 2 waitlisted + 1 + 4 + 3 + 6
    assert 'value="5.00"' in page
    starts_on, ends_on = term()
    form = {
        "seats": "16",
        "unit_cost": "5.00",
        "currency": "EUR",
        "starts_on": starts_on.isoformat(),
        "ends_on": ends_on.isoformat(),
        "request": str(world.r1),
    }
    path = f"/demand/products/{world.cad.id}/draft"
    for change in ({"seats": "0"}, {"unit_cost": "-1"}, {"currency": ""}, {"ends_on": "x"}):
        bad = form_post(council, path, {**form, **change}, token_from=path)
        assert bad.status_code == 400, change
    assert council.get("/demand/products/999999/draft").status_code == 404
    assert count(app, PurchaseOrder) == 0
    response = form_post(council, path, form, token_from=path)
    assert response.status_code == 302
    with app.app_context():
        po = db.session.scalars(sa.select(PurchaseOrder)).one()
        assert (po.source, po.lines[0].seats, po.lines[0].unit_cost) == ("demand", 16, 500)
        request = db.session.get(ProductRequest, world.r1)
        assert (str(request.state), request.purchase_order_id) == ("ordered", po.id)
        db.session.remove()
    assert response.headers["Location"].endswith(f"/council/purchase-orders/{po.id}")
    assert council.get(response.headers["Location"]).status_code == 200


def test_the_requests_page_comes_a_page_at_a_time(app, make_org):
    """Years of requests: fifty a page, newest first, with a pager; each organisation's
    people page through their own only; the CLI lists every one."""
    from portal.procurement.models import ProductRequestState

    a, b = make_org("org-a"), make_org("org-b")
    with app.app_context():
        for n in range(55):
            db.session.add(
                ProductRequest(
                    organisation_id=a.id,
                    product_name=f"Tool {n:02d}",
                    vendor_name="Acme-Soft",
                    seats=1,
                    note="",
                    reply="",
                    state=ProductRequestState.OPEN,
                )
            )
        db.session.add(
            ProductRequest(
                organisation_id=b.id,
                product_name="Other Tool",
                vendor_name="Acme-Soft",
                seats=1,
                note="",
                reply="",
                state=ProductRequestState.DECLINED,
            )
        )
        db.session.commit()
    council = client_for(app, "council_admin")
    first = council.get("/requests/products").get_data(as_text=True)
    assert first.count("<tr>") - 1 == 50  # the header's row, and fifty
    assert "Other Tool" in first and "Tool 54" in first and "Tool 05" not in first
    assert "Page 1 of 2 (56 in all)" in first and 'rel="next"' in first
    second = council.get("/requests/products?page=2").get_data(as_text=True)
    assert "Tool 05" in second and "Tool 00" in second and "Tool 54" not in second
    declined = council.get("/requests/products?state=declined").get_data(as_text=True)
    assert "Other Tool" in declined and "Tool 00" not in declined and "Page 1" not in declined
    own = client_for(app, "org_admin", b).get("/requests/products").get_data(as_text=True)
    assert "Other Tool" in own and "Tool" not in own.replace("Other Tool", "")
    for bad in ("0", "-3", "x", "99999999999999999999"):
        assert council.get(f"/requests/products?page={bad}").status_code == 200
    listed = app.test_cli_runner().invoke(args=["demand", "requests"])
    assert listed.exit_code == 0 and listed.output.count("\n") == 56
