"""Usage events accepted, duplicate and rejected are counted in /metrics (portal.observability)."""

from __future__ import annotations

from portal.observability import USAGE_ACCEPTED, USAGE_DUPLICATES, USAGE_REJECTED
from tests.metering.conftest import event, ingest, metered  # noqa: F401


def _counts() -> tuple[float, float, float, float]:
    return (
        USAGE_ACCEPTED._value.get(),  # noqa: SLF001 (prometheus_client's value)
        USAGE_DUPLICATES._value.get(),  # noqa: SLF001
        USAGE_REJECTED.labels(code="invalid")._value.get(),  # noqa: SLF001
        USAGE_REJECTED.labels(code="no_subscription")._value.get(),  # noqa: SLF001
    )


def test_ingest_counts_accepted_duplicate_and_rejected_events(app, metered):  # noqa: F811
    before = _counts()
    again = event()
    result = ingest(
        app,
        [
            event(),
            again,
            dict(again),  # the same key twice in one batch: stored once
            event(quantity="-1"),  # invalid
            event(organisation="nobody"),  # invalid (unknown organisation)
        ],
    )
    assert result.accepted == 2 and result.duplicates == 1 and len(result.rejected) == 2
    ingest(app, [again])  # sent again later: a duplicate
    after = _counts()
    assert after[0] - before[0] == 2
    assert after[1] - before[1] == 2
    assert after[2] - before[2] == 2
    assert after[3] == before[3]


def test_the_metrics_page_shows_them(app, client, metered):  # noqa: F811
    ingest(app, [event()])
    text = client.get("/metrics").get_data(as_text=True)
    assert "portal_usage_events_accepted_total " in text
    assert 'portal_usage_events_rejected_total{code="not_organisation_person"}' in text
