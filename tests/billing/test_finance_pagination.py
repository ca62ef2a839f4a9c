"""The finance page lists a month's invoices a page at a time (a council has one invoice per
organisation a month: issue 13's 10,000 organisations are not one page); the totals are the
whole month's."""

from __future__ import annotations

from portal.billing import selectors
from portal.billing.models import Invoice
from portal.db import db
from portal.kernel.scope import Scope
from tests.billing.factories import draft, subscribe


def _three_drafts(app, billed, make_org) -> list[int]:
    ids = [draft(app, billed["org"].id, billed["period"])]
    for slug in ("beta-co", "gamma-co"):
        org = make_org(slug, tax_rate_bp=1900)
        subscribe(app, org.id, billed["product"].id, 4, billed["first"])
        ids.append(draft(app, org.id, billed["period"]))
    assert all(ids)
    return [i for i in ids if i is not None]


def test_month_overview_pages_the_invoices_and_totals_the_whole_month(app, billed, make_org):
    ids = _three_drafts(app, billed, make_org)
    with app.app_context():
        session = db.session
        whole = selectors.month_overview(session, scope=Scope.council(), period=billed["period"])
        first = selectors.month_overview(
            session, scope=Scope.council(), period=billed["period"], page=1, per_page=2
        )
        second = selectors.month_overview(
            session, scope=Scope.council(), period=billed["period"], page=2, per_page=2
        )
        past = selectors.month_overview(
            session, scope=Scope.council(), period=billed["period"], page=9, per_page=2
        )
        expected = sum(session.get(Invoice, i).total for i in ids)
    assert whole.page is None and len(whole.invoices) == 3
    assert first.page is not None and first.page.total == 3 and first.page.pages == 2
    assert len(first.invoices) == 2 and len(second.invoices) == 1 and past.invoices == []
    paged = [i.id for i in first.invoices + second.invoices]
    assert paged == [i.id for i in whole.invoices]  # the same order, nothing twice
    assert first.totals == second.totals == whole.totals == {"EUR": expected}
    assert first.counts == whole.counts


def test_the_finance_page_links_to_the_next_page(app, billed, make_org, signed_in, monkeypatch):
    _three_drafts(app, billed, make_org)
    original = selectors.month_overview

    def two_per_page(*args, **kwargs):
        return original(*args, **{**kwargs, "per_page": 2})

    monkeypatch.setattr(selectors, "month_overview", two_per_page)
    finance = signed_in("finance")
    first = finance.get(f"/finance?period={billed['period']}").get_data(as_text=True)
    assert 'rel="next"' in first and "page=2" in first
    second = finance.get(f"/finance?period={billed['period']}&page=2")
    assert second.status_code == 200
    assert 'rel="prev"' in second.get_data(as_text=True)
    for bad in ("0", "-3", "x", "99999999999999999999"):
        assert finance.get(f"/finance?period={billed['period']}&page={bad}").status_code == 200


def test_a_status_filter_pages_and_totals_that_status_and_counts_every_one(app, billed, make_org):
    """The month's counts, totals and page count come from one grouped statement: with a
    status chosen, the totals and pages are that status's, the counts every status's."""
    from tests.billing.factories import finalize

    ids = _three_drafts(app, billed, make_org)
    finalize(app, ids[1])
    with app.app_context():
        session = db.session
        period = billed["period"]
        every = selectors.month_overview(session, scope=Scope.council(), period=period)
        final = {i.status for i in every.invoices} - {"draft"}
        assert len(final) == 1  # open, or paid when its total is zero
        (chosen,) = final
        for status in ("draft", chosen):
            whole = selectors.month_overview(
                session, scope=Scope.council(), period=period, status=status
            )
            paged = selectors.month_overview(
                session, scope=Scope.council(), period=period, status=status, page=1, per_page=1
            )
            listed = [i for i in every.invoices if i.status == status]
            assert [i.id for i in whole.invoices] == [i.id for i in listed]
            assert paged.page is not None and paged.page.total == len(listed)
            assert whole.totals == paged.totals == {"EUR": sum(i.total for i in listed)}
            assert whole.counts == paged.counts == every.counts
        assert every.counts["draft"] == 2 and every.counts[chosen] == 1
