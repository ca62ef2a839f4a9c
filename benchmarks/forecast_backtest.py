"""Backtest of the renewal forecast on the demo council's history (issue 16, docs/FORECAST.md).

Loads the demo (``portal demo``) into a fresh SQLite database, reads each product's daily
reserved seats (every organisation's) from its first subscription to today, and for every
month k+1 that has at least four weeks of history before it: fits the forecast on the days
up to the end of month k (as if that day were today) and compares its projection of each
day of month k+1 (up to today, for the current month) with what was reserved. Beside it,
the naive forecast (the seats of the last day, held flat).

Prints one row per product and month (mean absolute error in seats, the error as a share
of the mean seats, the bias: projected minus actual) and the totals.

    .venv/bin/python -m benchmarks.forecast_backtest
"""

from __future__ import annotations

import datetime as dt
import tempfile
from dataclasses import dataclass
from fractions import Fraction

import sqlalchemy as sa

from benchmarks.common import Database, migrated_app, portal_env

DAY = dt.timedelta(days=1)
MIN_HISTORY_DAYS = 28


@dataclass
class Row:
    sku: str
    month: str
    days: int
    mean_actual: Fraction
    mae: Fraction
    bias: Fraction
    naive_mae: Fraction

    @property
    def share(self) -> Fraction:
        return self.mae / self.mean_actual if self.mean_actual else Fraction(0)


def backtest(history: list[int], first: dt.date, *, capacity: int, sku: str) -> list[Row]:
    """The rows of one product whose daily ``history`` starts on ``first`` (the last is today)."""
    from portal.procurement.forecast import fit

    rows = []
    today = first + dt.timedelta(days=len(history) - 1)
    month = (first.replace(day=1) + dt.timedelta(days=32)).replace(day=1)
    while month <= today:
        cut = (month - first).days  # history[:cut] ends on the last day of month k
        if cut >= MIN_HISTORY_DAYS:
            trend = fit(history[:cut], capacity=capacity)
            nxt = (month + dt.timedelta(days=32)).replace(day=1)
            last = min(nxt - DAY, today)
            actual = history[cut : cut + (last - month).days + 1]
            projected = [trend.at(d) for d in range(1, len(actual) + 1)]
            naive = history[cut - 1]
            n = len(actual)
            rows.append(
                Row(
                    sku=sku,
                    month=f"{month:%Y-%m}",
                    days=n,
                    mean_actual=Fraction(sum(actual), n),
                    mae=sum(
                        (abs(p - a) for p, a in zip(projected, actual, strict=True)), Fraction(0)
                    )
                    / n,
                    bias=sum((p - a for p, a in zip(projected, actual, strict=True)), Fraction(0))
                    / n,
                    naive_mae=Fraction(sum(abs(naive - a) for a in actual), n),
                )
            )
        month = (month + dt.timedelta(days=32)).replace(day=1)
    return rows


def main() -> None:
    from portal.catalogue.models import LicencePool, Product
    from portal.db import db
    from portal.demo import load_demo
    from portal.kernel.clock import now_utc
    from portal.procurement.forecast import product_history
    from portal.seats.models import Subscription

    with tempfile.TemporaryDirectory(prefix="portal-backtest-") as tmp:
        database = Database("sqlite", f"sqlite:///{tmp}/backtest.sqlite3")
        env = portal_env(database, tmp)
        env.pop("PORTAL_REDIS_URL", None)
        env["PORTAL_SINGLE_PROCESS"] = "1"  # one process, no server: no Redis needed
        app = migrated_app(env)
        with app.app_context():
            load_demo(db.session)
            db.session.commit()
            today = now_utc().date()
            rows: list[Row] = []
            for product in db.session.scalars(sa.select(Product).order_by(Product.sku)):
                first = db.session.scalar(
                    sa.select(sa.func.min(Subscription.starts_on)).where(
                        Subscription.product_id == product.id
                    )
                )
                if first is None:
                    continue
                capacity = max(
                    db.session.scalars(
                        sa.select(LicencePool.capacity).where(LicencePool.product_id == product.id)
                    ).all(),
                    default=0,
                )
                history = product_history(
                    db.session, product_id=product.id, first=first, last=today
                )
                rows += backtest(history, first, capacity=capacity, sku=product.sku)
    print(f"Backtest on the demo history, as of {today}: forecast from months 1..k, month k+1")
    print()
    print("| product | month k+1 | days | mean seats | MAE (seats) | MAE % | bias | naive MAE |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r.sku} | {r.month} | {r.days} | {float(r.mean_actual):.1f} | "
            f"{float(r.mae):.2f} | {float(r.share) * 100:.1f} | {float(r.bias):+.2f} | "
            f"{float(r.naive_mae):.2f} |"
        )
    if rows:
        days = sum(r.days for r in rows)
        mae = sum(r.mae * r.days for r in rows) / days
        naive = sum(r.naive_mae * r.days for r in rows) / days
        mean = sum(r.mean_actual * r.days for r in rows) / days
        print(
            f"| all | | {days} | {float(mean):.1f} | {float(mae):.2f} | "
            f"{float(mae / mean) * 100 if mean else 0:.1f} | | {float(naive):.2f} |"
        )


if __name__ == "__main__":
    main()
