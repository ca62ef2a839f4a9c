"""Input validation shared by pages, the API and the CLI.

Services validate what they are given with pydantic models, so the rules live
in one place whoever calls. :func:`parse` turns pydantic's errors into a
:class:`~portal.errors.ValidationFailed` whose ``errors`` map field names to
messages a person can act on.
"""

from __future__ import annotations

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

from portal import iso
from portal.errors import ValidationFailed

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
        raise ValueError("Use at most 254 characters.")
    try:
        result = validate_email(value, check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValueError(f"Enter a valid email address ({exc}).") from exc
    return result.normalized.lower()


def check_slug(value: str) -> str:
    """Lower-case letters, digits and single hyphens, 3–63 characters, starting with a letter."""
    value = value.lower()
    if not 3 <= len(value) <= 63:
        raise ValueError("Use 3 to 63 characters.")
    if not SLUG_RE.match(value):
        raise ValueError(
            "Use lower-case letters, digits and single hyphens, starting with a letter."
        )
    return value


def check_country(value: str) -> str:
    """An ISO 3166-1 alpha-2 country code."""
    value = value.upper()
    if not iso.is_country(value):
        raise ValueError("Choose a country (ISO 3166-1 two-letter code, e.g. DE).")
    return value


def check_currency(value: str) -> str:
    """An ISO 4217 currency code the portal bills in."""
    value = value.upper()
    if not iso.is_currency(value):
        raise ValueError("Choose a currency (ISO 4217 code, e.g. EUR).")
    return value


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


_MESSAGES = {
    "missing": "This field is required.",
    "string_too_short": "This field is required.",
    "string_too_long": "Use at most {max_length} characters.",
    "int_parsing": "Enter a whole number.",
    "bool_parsing": "Enter true or false.",
    "literal_error": "Choose one of: {expected}.",
    "enum": "Choose one of: {expected}.",
    "greater_than_equal": "Enter {ge} or more.",
    "less_than_equal": "Enter {le} or less.",
    "extra_forbidden": "This field is not accepted.",
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
        return f"Use at least {ctx['min_length']} characters."
    template = _MESSAGES.get(kind)
    if template:
        try:
            return template.format(**ctx)
        except (KeyError, IndexError):
            return template
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
        raise ValidationFailed("Some fields need attention.", errors=errors_from(exc)) from exc
