"""The fast path counts checks in the token's limit in reservations (``fastpath.Reservations``).

A token asking often gets several counts added to its bucket in one round trip
and spends them on its next checks; no more checks are answered than the limit
allows, and counts not spent within ``RESERVATION_SECONDS`` are forgotten.
"""

from __future__ import annotations

from limits import parse

from portal.api.fastpath import MAX_RESERVATION, RESERVATION_SECONDS, Reservations
from portal.extensions import limiter
from portal.identity.security import token_digest
from portal.ratelimit import API_SCOPE, token_key
from tests.api.conftest import assert_problem
from tests.api.test_rate_limits import CHECK, _vendor_check


class Bucket:
    """A token limit of ``limit`` counts that records each round trip's cost."""

    def __init__(self, limit: int) -> None:
        self.limit, self.used, self.calls = limit, 0, []

    def __call__(self, app, digest: str, *, cost: int = 1) -> bool:
        self.calls.append(cost)
        if self.used + cost > self.limit:
            return False
        self.used += cost
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_busy_token_reserves_counts_ahead_in_fewer_round_trips():
    bucket, clock = Bucket(10_000), Clock()
    reservations = Reservations(bucket, clock=clock)
    answered = sum(reservations.allow(None, "d") for _ in range(500))
    assert answered == 500
    assert len(bucket.calls) < 500 / 10  # about one round trip per MAX_RESERVATION checks
    assert max(bucket.calls) == MAX_RESERVATION
    assert bucket.calls[:4] == [1, 2, 4, 8]  # grows while each reservation is spent in time
    # Every check answered was counted, and at most one reservation's worth more.
    assert 500 <= bucket.used < 500 + MAX_RESERVATION


def test_never_more_answers_than_the_limit_and_exact_at_the_edge():
    bucket, clock = Bucket(37), Clock()
    reservations = Reservations(bucket, clock=clock)
    answers = [reservations.allow(None, "d") for _ in range(60)]
    assert answers == [True] * 37 + [False] * 23
    assert bucket.used == 37
    assert bucket.calls[-1] == 1  # refused one at a time once a reservation did not fit


def test_unspent_counts_lapse_and_a_rare_token_reserves_one_at_a_time():
    bucket, clock = Bucket(1_000), Clock()
    reservations = Reservations(bucket, clock=clock)
    for _ in range(16):  # a burst: reservations of 1, 2, 4, 8, 16 …
        assert reservations.allow(None, "d")
    used_after_burst = bucket.used
    clock.now += RESERVATION_SECONDS + 0.01  # the counts left lapse
    calls = len(bucket.calls)
    assert reservations.allow(None, "d")
    assert len(bucket.calls) == calls + 1  # a new round trip: the lapsed counts are not spent
    for _ in range(5):  # then one check every two seconds: one count each
        clock.now += 2 * RESERVATION_SECONDS
        assert reservations.allow(None, "d")
    assert bucket.calls[-3:] == [1, 1, 1]
    assert bucket.used <= used_after_burst + 16 + 6


def test_tokens_have_their_own_reservations():
    bucket, clock = Bucket(3), Clock()
    reservations = Reservations(bucket, clock=clock)
    assert [reservations.allow(None, "a") for _ in range(3)] == [True] * 3
    assert reservations.allow(None, "b") is False  # one shared bucket here: nothing left
    other = Bucket(3)
    assert Reservations(other, clock=clock).allow(None, "b") is True


def test_through_the_app_the_checks_answered_stop_at_the_limit(
    app, make_org, make_product, make_token, monkeypatch
):
    """The first check goes to Flask (it notes the token's use); the fast path answers
    the rest from reservations in Redis's bucket; the limit's next check gets Flask's 429."""
    monkeypatch.setitem(app.config, "PORTAL_API_RATE_LIMIT", "20 per minute")
    query, headers = _vendor_check(app, make_org, make_product, make_token)
    client = app.test_client()
    statuses = [
        client.get(CHECK, query_string=query, headers=headers).status_code for _ in range(25)
    ]
    assert statuses == [200] * 20 + [429] * 5
    assert_problem(client.get(CHECK, query_string=query, headers=headers), 429)
    token = headers["Authorization"].split(" ", 1)[1]
    args = [app.config["RATELIMIT_KEY_PREFIX"], token_key(token_digest(token)), API_SCOPE]
    stats = limiter.limiter.get_window_stats(parse("20 per minute"), *args)
    assert stats.remaining == 0
