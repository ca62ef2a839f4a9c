"""Billing months: ``YYYY-MM``, the one parser of them, and their bounds in UTC."""

from __future__ import annotations

import calendar
import datetime as dt
import re

from portal.kernel.errors import ValidationFailed
from portal.kernel.i18n import _

PERIOD_PATTERN = r"^[0-9]{4}-(0[1-9]|1[0-2])$"
_PERIOD_RE = re.compile(PERIOD_PATTERN)
FIRST_YEAR, LAST_YEAR = 2000, 9998


def check_period(value: str) -> str:
    """A month written ``YYYY-MM`` between 2000-01 and 9998-12 (``2026-5`` is refused)."""
    if not isinstance(value, str) or not _PERIOD_RE.fullmatch(value):
        raise ValueError(_("Use the form YYYY-MM, e.g. 2026-05."))
    if not FIRST_YEAR <= int(value[:4]) <= LAST_YEAR:
        raise ValueError(
            _(
                "Give a month from %(first)s-01 to %(last)s-12 (YYYY-MM).",
                first=FIRST_YEAR,
                last=LAST_YEAR,
            )
        )
    return value


def period_bounds(period: str) -> tuple[dt.datetime, dt.datetime]:
    """``YYYY-MM`` as [first instant, first instant of the next month) in UTC.

    The one parser of months: the form ``YYYY-MM`` exactly, years 2000 to 9998,
    else :class:`~portal.kernel.errors.ValidationFailed`.
    """
    try:
        check_period(period)
    except ValueError as exc:
        raise ValidationFailed(str(exc), errors={"period": [str(exc)]}) from exc
    year, month = int(period[:4]), int(period[5:7])
    start = dt.datetime(year, month, 1, tzinfo=dt.UTC)
    days = calendar.monthrange(year, month)[1]
    return start, start + dt.timedelta(days=days)


def period_of(moment: dt.datetime | dt.date) -> str:
    """The month a moment or a day falls in, as ``YYYY-MM``."""
    return f"{moment.year:04d}-{moment.month:02d}"
