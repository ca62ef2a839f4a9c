"""The council's usage page shows its rows a page at a time (issue 13: 10,000 organisations
give tens of thousands of rows a month); the CSV has every row."""

from __future__ import annotations

from tests.metering.conftest import event, ingest, person


def test_council_usage_rows_come_a_page_at_a_time(mid_month, app, metered, signed_in, make_org):
    ingest(app, [event(quantity="5", user_email=person(app, "acme", "a@acme.example"))])
    council = signed_in("council_admin")
    first = council.get("/council/usage").get_data(as_text=True)
    assert "acme" in first and "API calls" in first
    past = council.get("/council/usage?page=2").get_data(as_text=True)
    assert "API calls" not in past and 'rel="next"' not in past  # one page only
    for bad in ("0", "-1", "x", "99999999999999999999"):
        assert council.get(f"/council/usage?page={bad}").status_code == 200
    csv_text = council.get("/council/usage?format=csv&page=2").get_data(as_text=True)
    assert "acme,cad-suite,api_calls,sum,5," in csv_text


def test_council_usage_pages_are_organisations_read_alone(mid_month, app, metered, make_org):
    """Council-wide, a page is a page of the organisations with usage (by slug), each
    one's rows computed for those organisations only: the pages together are every row
    of the month, in order, and an organisation without usage is on none."""
    from portal.db import db
    from portal.kernel.clock import now_utc
    from portal.kernel.periods import period_bounds, period_of
    from portal.kernel.scope import Scope
    from portal.metering.reports import usage_rows, usage_rows_page
    from tests.metering.conftest import subscribe

    for slug in ("beta", "gamma", "delta", "idle-org"):
        make_org(slug)
        subscribe(app, slug, "cad-suite", quantity=1)
    events = []
    for n, slug in enumerate(("acme", "beta", "gamma", "delta")):
        who = person(app, slug, f"p{n}@{slug}.example")
        events += [
            event(organisation=slug, quantity=str(n + 1), user_email=who),
            event(organisation=slug, meter="active_users", user_email=who),
            event(organisation=slug, meter="regions", properties={"region": f"r{n}"}),
        ]
    ingest(app, events)
    start, end = period_bounds(period_of(now_utc()))
    with app.app_context():
        every = usage_rows(db.session, scope=Scope.council(), start=start, end=end)
        pages = [
            usage_rows_page(db.session, start=start, end=end, page=n, per_page=3) for n in (1, 2, 3)
        ]
        # One organisation a page: the walk reads the slugs in batches of 4, then 8.
        singles = [
            usage_rows_page(db.session, start=start, end=end, page=n, per_page=1)
            for n in range(1, 6)
        ]
        product_id = metered["product"].id
        one_product = usage_rows_page(
            db.session, start=start, end=end, product_id=product_id, per_page=10
        )
    assert [r for rows, _ in pages for r in rows] == every
    assert [r for rows, _ in singles for r in rows] == every
    assert [len(listed.items) for _, listed in singles] == [1, 1, 1, 1, 0]
    assert [listed.has_next for _, listed in singles] == [True, True, True, False, False]
    assert [(listed.has_prev, listed.has_next) for _, listed in pages] == [
        (False, True),
        (True, False),
        (True, False),
    ]
    assert [len(listed.items) for _, listed in pages] == [3, 1, 0]
    assert "idle-org" not in {r.organisation for r in every}
    assert one_product[0] == every
