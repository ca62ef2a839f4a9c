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
    assert "API calls" not in past and 'rel="prev"' not in past  # one page only
    for bad in ("0", "-1", "x", "99999999999999999999"):
        assert council.get(f"/council/usage?page={bad}").status_code == 200
    csv_text = council.get("/council/usage?format=csv&page=2").get_data(as_text=True)
    assert "acme,cad-suite,api_calls,sum,5," in csv_text
