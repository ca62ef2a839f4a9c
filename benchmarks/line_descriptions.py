"""Invoice line descriptions in the invoice's language, beside the bare f-string (issue 14).

An invoice run writes one description per line (15,000 in ``make bench-billing``). Since
issue 14 they are written in the organisation's invoice language: a catalogue pattern
chosen by count (Russian has three plural forms) and the days of the month in the
language's format. This times, in one process and alternating, the portal's way
(:func:`portal.billing.charges.ngettext` and ``_day``: cached per language and count)
in English and in Russian beside the bare f-string the portal used before (English
only, ``strftime``), and Flask-Babel's own ``ngettext`` with Babel's ``format_date``
uncached (what a plain ``_n(...)`` per line would cost).

    .venv/bin/python -m benchmarks.line_descriptions [--lines 15000] [--runs 5]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import time


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=15_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    from babel.dates import format_date
    from flask_babel import ngettext as babel_ngettext

    from portal import create_app, i18n
    from portal.billing.charges import _day, ngettext

    app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": "sqlite://"})
    first, last = dt.date(2026, 11, 1), dt.date(2026, 11, 30)
    counts = [(n * 7) % 900 + 1 for n in range(args.lines)]  # seat-days of 1-30 seats
    singular = "%(product)s: %(num)d seat-day (%(first)s–%(last)s) of %(days)s"
    plural = "%(product)s: %(num)d seat-days (%(first)s–%(last)s) of %(days)s"

    def bare() -> None:
        for n in counts:
            f"CAD Suite: {n} seat-days ({first:%d %b}–{last:%d %b}) of 30"

    def portal(language: str) -> None:
        for n in counts:
            ngettext(singular, plural, n, language) % {
                "product": "CAD Suite",
                "num": n,
                "first": _day(first, language),
                "last": _day(last, language),
                "days": 30,
            }

    def uncached(language: str) -> None:
        for n in counts:
            babel_ngettext(
                singular,
                plural,
                n,
                product="CAD Suite",
                first=format_date(first, format="dd MMM", locale=language),
                last=format_date(last, format="dd MMM", locale=language),
                days=30,
            )

    cases = {
        "bare f-string (before issue 14, English only)": bare,
        "portal, English": lambda: portal("en"),
        "portal, Russian": lambda: portal("ru"),
        "uncached _n + format_date, Russian": lambda: uncached("ru"),
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    with app.app_context():
        for run in range(args.runs + 1):  # the first round warms up and is not counted
            for name, case in cases.items():
                language = "ru" if "Russian" in name else "en"
                with i18n.in_language(language):
                    started = time.perf_counter()
                    case()
                    if run:
                        times[name].append(time.perf_counter() - started)
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"{args.lines:,} descriptions, median of {args.runs} runs; load average {load}")
    baseline = statistics.median(times["bare f-string (before issue 14, English only)"])
    for name, measured in times.items():
        median = statistics.median(measured)
        per_line = median / args.lines * 1e6
        print(
            f"  {name:48} {median * 1000:8.1f} ms  {per_line:6.2f} µs/line"
            f"  {median / baseline:5.2f}× bare"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
