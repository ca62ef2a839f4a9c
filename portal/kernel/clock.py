"""The one clock the portal reads.

Every "now" in the portal comes from :func:`now_utc` (and every "today" from
:func:`today`), timezone-aware in UTC. Tests freeze it (the ``clock`` fixture in
``tests/conftest.py``) or run the whole suite from another instant
(``PORTAL_TEST_NOW``, see :func:`start_from`), so behaviour that depends on the
day of the month is tested on the days that break it: the first of a month
just after midnight, the 29th of February.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
from collections.abc import Mapping

_lock = threading.Lock()
# None: the real clock. Otherwise the frozen instant, or an offset from the real clock.
_frozen: dt.datetime | None = None
_offset = dt.timedelta(0)


def now_utc() -> dt.datetime:
    """The current time, timezone-aware in UTC."""
    frozen = _frozen
    if frozen is not None:
        return frozen
    return dt.datetime.now(dt.UTC) + _offset


def today() -> dt.date:
    """Today's date in UTC."""
    return now_utc().date()


def _aware(moment: dt.datetime) -> dt.datetime:
    if moment.tzinfo is None:
        raise ValueError("the clock is set with a timezone-aware datetime")
    return moment.astimezone(dt.UTC)


def freeze(moment: dt.datetime) -> None:
    """Stop the clock at ``moment`` (tests only) until :func:`thaw` or another ``freeze``."""
    global _frozen
    with _lock:
        _frozen = _aware(moment)


def advance(delta: dt.timedelta) -> None:
    """Move the clock on by ``delta``: a frozen clock stays frozen at the new instant."""
    global _frozen, _offset
    with _lock:
        if _frozen is not None:
            _frozen = _frozen + delta
        else:
            _offset += delta


def start_from(moment: dt.datetime) -> None:
    """Let the clock run on from ``moment`` (the suite at another date; tests only)."""
    global _frozen, _offset
    with _lock:
        _frozen = None
        _offset = _aware(moment) - dt.datetime.now(dt.UTC)


def set_offset(delta: dt.timedelta) -> None:
    """Run the clock ``delta`` away from the machine's (tests only; a frozen clock stays)."""
    global _offset
    with _lock:
        _offset = delta


# The test suite run from another instant (``PORTAL_TEST_NOW``) exports how far its clock
# is from the machine's, so the portal processes it starts (gunicorn, the CLI) agree.
OFFSET_VARIABLE = "PORTAL_CLOCK_OFFSET_SECONDS"


def offset_from_environment(environ: Mapping[str, str] | None = None) -> None:
    """Apply ``PORTAL_CLOCK_OFFSET_SECONDS`` if set (``create_app`` calls it in the test
    environment only; production ignores the variable)."""
    value = (os.environ if environ is None else environ).get(OFFSET_VARIABLE)
    if value:
        set_offset(dt.timedelta(seconds=float(value)))


def thaw() -> None:
    """Let a frozen clock run again, from where the offset set by :func:`start_from` puts it."""
    global _frozen
    with _lock:
        _frozen = None


def offset() -> dt.timedelta:
    """How far the running clock is from the machine's (zero outside tests)."""
    return _offset
