"""Input validation shared by pages, the API and the CLI.

Services validate what they are given with pydantic models, so the rules live
in one place whoever calls. :func:`parse` turns pydantic's errors into a
:class:`~portal.errors.ValidationFailed` whose ``errors`` map field names to
messages a person can act on.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any, TypeVar

from email_validator import EmailNotValidError, validate_email
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    Field,
    StringConstraints,
    ValidationError,
)

from portal.kernel import iso
from portal.kernel.clock import now_utc
from portal.kernel.errors import ValidationFailed
from portal.kernel.i18n import _, _l
from portal.kernel.periods import check_period

M = TypeVar("M", bound=BaseModel)

SLUG_RE = re.compile(r"^[a-z][a-z0-9]*(?:-[a-z0-9]+)*$")


def _strip(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


def _blank_to_none(value: Any) -> Any:
    value = _strip(value)
    return None if value == "" else value


def check_email(value: str) -> str:
    """A syntactically valid address, normalised to lower case."""
    if len(value) > 254:
        raise ValueError(_("Use at most %(num)d characters.", num=254))
    try:
        result = validate_email(value, check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValueError(_("Enter a valid email address (%(reason)s).", reason=exc)) from exc
    return result.normalized.lower()


def check_slug(value: str) -> str:
    """Lower-case letters, digits and single hyphens, 3–63 characters, starting with a letter."""
    value = value.lower()
    if not 3 <= len(value) <= 63:
        raise ValueError(_("Use %(low)d to %(high)d characters.", low=3, high=63))
    if not SLUG_RE.match(value):
        raise ValueError(
            _("Use lower-case letters, digits and single hyphens, starting with a letter.")
        )
    return value


def check_country(value: str) -> str:
    """An ISO 3166-1 alpha-2 country code."""
    value = value.upper()
    if not iso.is_country(value):
        raise ValueError(_("Choose a country (ISO 3166-1 two-letter code, e.g. DE)."))
    return value


def check_currency(value: str) -> str:
    """An ISO 4217 currency code the portal bills in."""
    value = value.upper()
    if not iso.is_currency(value):
        raise ValueError(_("Choose a currency (ISO 4217 code, e.g. EUR)."))
    return value


# ---------------------------------------------------------------- bounds (SPEC invariant 9)

# The largest value a database integer (BIGINT, SQLite INTEGER) holds.
MAX_DB_INT = 2**63 - 1
# Money in minor units, tier limits, counts a person types: far below MAX_DB_INT, so
# sums of many of them still fit (10^15 cents is ten trillion euros).
MAX_AMOUNT = 10**15
# Dates and months the portal works with: date arithmetic (a day, a month, a year
# later; a month's end) stays inside Python's and PostgreSQL's ranges.
MIN_DATE = dt.date(2000, 1, 1)
MAX_DATE = dt.date(9998, 12, 31)
_DATE_RANGE = {"first": MIN_DATE.isoformat(), "last": MAX_DATE.isoformat()}


def check_date(value: dt.date) -> dt.date:
    """A date inside :data:`MIN_DATE` … :data:`MAX_DATE`."""
    if not MIN_DATE <= value <= MAX_DATE:
        raise ValueError(_("Give a date between %(first)s and %(last)s.", **_DATE_RANGE))
    return value


def check_datetime(value: dt.datetime) -> dt.datetime:
    """A moment with a time zone, inside the date range once turned into UTC."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(_("Give a time zone, e.g. 2026-05-01T12:00:00Z."))
    try:
        utc = value.astimezone(dt.UTC)
    except OverflowError as exc:
        raise ValueError(_("Give a moment between %(first)s and %(last)s.", **_DATE_RANGE)) from exc
    if not MIN_DATE <= utc.date() <= MAX_DATE:
        raise ValueError(_("Give a moment between %(first)s and %(last)s.", **_DATE_RANGE))
    return utc


# Whole numbers a database column holds: ids, and quantities past which nothing is sane.
DbInt = Annotated[int, Field(ge=-MAX_DB_INT - 1, le=MAX_DB_INT)]
DbId = Annotated[int, Field(ge=1, le=MAX_DB_INT)]
Amount = Annotated[int, Field(ge=0, le=MAX_AMOUNT)]
Period = Annotated[str, BeforeValidator(_strip), AfterValidator(check_period)]
SafeDate = Annotated[dt.date, AfterValidator(check_date)]
SafeDateTime = Annotated[dt.datetime, AfterValidator(check_datetime)]


def _in_future(value: dt.datetime) -> dt.datetime:
    if value <= now_utc():
        raise ValueError(_("Choose a time in the future."))
    return value


#: A time after now, with its time zone (a token's expiry).
FutureDateTime = Annotated[SafeDateTime, AfterValidator(_in_future)]

Stripped = BeforeValidator(_strip)
Email = Annotated[str, Stripped, AfterValidator(check_email)]
Slug = Annotated[str, Stripped, AfterValidator(check_slug)]
Country = Annotated[str, Stripped, AfterValidator(check_country)]
Currency = Annotated[str, Stripped, AfterValidator(check_currency)]
OptionalText = BeforeValidator(_blank_to_none)


def optional_text(max_length: int) -> Any:
    """Optional free text up to ``max_length``; blank input becomes ``None``."""
    return Annotated[Annotated[str, StringConstraints(max_length=max_length)] | None, OptionalText]


def optional_int(ge: int, le: int) -> Any:
    """An optional whole number in ``[ge, le]``; blank input becomes ``None``."""
    return Annotated[Annotated[int, Field(ge=ge, le=le)] | None, OptionalText]


# Pydantic's errors in the reader's language; placeholders from the error's ``ctx``.
_MESSAGES = {
    "missing": _l("This field is required."),
    "string_too_short": _l("This field is required."),
    "string_too_long": _l("Use at most %(max_length)s characters."),
    "int_parsing": _l("Enter a whole number."),
    "bool_parsing": _l("Enter true or false."),
    "literal_error": _l("Choose one of: %(expected)s."),
    "enum": _l("Choose one of: %(expected)s."),
    "greater_than_equal": _l("Enter %(ge)s or more."),
    "less_than_equal": _l("Enter %(le)s or less."),
    "extra_forbidden": _l("This field is not accepted."),
}


def _message(error: dict[str, Any]) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind in ("too_short", "too_long") and isinstance(error.get("input"), str):
        # A length constraint after a before-validator (stripped text) reports the
        # generic sequence error; it is a string all the same.
        kind = f"string_{kind}"
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    if kind == "string_too_short" and ctx.get("min_length", 1) > 1:
        return _("Use at least %(num)d characters.", num=int(ctx["min_length"]))
    template = _MESSAGES.get(kind)
    if template is not None:
        text = str(template)
        try:
            return text % ctx if "%(" in text else text
        except (KeyError, TypeError, ValueError):
            return text
    return error["msg"]


def errors_from(exc: ValidationError) -> dict[str, list[str]]:
    """Pydantic errors as ``{"field.path": ["message", …]}``."""
    errors: dict[str, list[str]] = {}
    for error in exc.errors():
        field = ".".join(str(part) for part in error["loc"]) or "_"
        errors.setdefault(field, []).append(_message(error))  # type: ignore[arg-type]
    return errors


def parse(model: type[M], data: dict[str, Any]) -> M:
    """Validate ``data`` into ``model`` or raise :class:`ValidationFailed`."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ValidationFailed(_l("Some fields need attention."), errors=errors_from(exc)) from exc
