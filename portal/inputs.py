"""One input layer for hostile input (SPEC invariant 9), before any view runs.

Whatever a client sends, malformed input gets a 4xx with a clear reason and
changes nothing; it never reaches the database, where it would fail as a 500
(PostgreSQL refuses NUL bytes in text, SQLite and PostgreSQL integers stop at
2^63 − 1). Registered by :func:`init_app` (and :func:`guard_commands`):

* The ``int`` URL converter is replaced app-wide by one bounded to
  ``0 … 2^63 − 1``: a larger id matches no route and answers 404, as a missing
  object does. It must be installed before any blueprint registers its rules.
* A ``before_request`` hook, run before every other one, refuses control
  characters (C0 except tab, line feed and carriage return; NUL above all) in
  the path, the query string, form fields (names and values) and JSON bodies
  (keys and strings, at any depth), and JSON nested more than
  :data:`MAX_JSON_DEPTH` deep (Python's parser would fail it with a
  ``RecursionError``). The API answers 422 problem+json naming the field, SCIM
  its own error body (400, ``invalidValue``), pages a 400 page in the layout.
  It is cheap where it matters (about 2 µs for a GET): the raw path, query
  string and body are tested for what could decode to a control character,
  and only then parsed.
* :func:`guard_commands` makes every option of the ``portal`` commands refuse a
  control character with a one-line error before the command runs.

Numbers, months and dates have bounded types in :mod:`portal.validation`
(``DbId``, ``Amount``, ``Period``, ``SafeDate``, ``SafeDateTime``) for the
services' models; :func:`portal.kernel.periods.period_bounds` is the one
month parser.

Endpoints whose JSON body reports its own problems item by item (the usage
batch: one bad event must not sink the others) are listed in
:data:`OWN_BODY_CHECKS`; their path and query string are still checked.
"""

from __future__ import annotations

import builtins
import copy
import functools
import json
import re
from collections.abc import Iterator
from typing import Any

import click
from flask import Flask, request
from werkzeug.routing import IntegerConverter

from portal.kernel.errors import ValidationFailed
from portal.kernel.i18n import _l

# The largest value a BIGINT (PostgreSQL) or INTEGER (SQLite) column holds.
MAX_DB_INT = 2**63 - 1

# C0 control characters a text field must not hold; tab, LF and CR are text.
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
# The same rule as a JSON-schema pattern, for documents (OpenAPI) to state it.
TEXT_PATTERN = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f]*$"
# In a JSON document: a \u0000–\u001F escape, or \b or \f (raw control characters
# inside JSON strings are invalid JSON, refused by the parser as such).
_JSON_CONTROL = re.compile(rb"\\(?:u00[01][0-9a-fA-F]|[bf])", re.IGNORECASE)

# Arrays and objects nested deeper than this are refused (no request needs it).
MAX_JSON_DEPTH = 64
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_BRACKET = re.compile(rb"[\[\]{}]")

_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
_BODY_METHODS = ("POST", "PUT", "PATCH", "DELETE")

# Endpoints that check their JSON body themselves: ``api.usage_report`` rejects a
# bad event by its index and still counts the others (invariants 8 and 9); the
# Stripe webhook's body is signed by Stripe and read raw for the signature.
OWN_BODY_CHECKS: set[str] = {"api.usage_report", "payments.stripe_webhook"}


class UnsafeInput(ValidationFailed):
    """A control character (a NUL byte …) where text was expected, or JSON nested
    too deep: refused before any view, so nothing was read or changed."""

    code = "validation_failed"

    def __init__(self, field: str, detail: str, message: str, status: int) -> None:
        super().__init__(detail, errors={field: [message]})
        self.status = status
        self.title = _l("Validation failed") if status == 422 else _l("Bad request")


def _at_most(limit: int) -> str:
    """A regular expression for the decimal numbers 0 … ``limit`` (leading zeros allowed)."""
    digits = str(limit)
    last = len(digits) - 1
    alternatives = [rf"\d{{1,{last}}}"] if last else []
    for i, digit in enumerate(digits):
        if digit != "0":
            rest = rf"\d{{{last - i}}}" if last - i else ""
            alternatives.append(f"{digits[:i]}[0-{int(digit) - 1}]{rest}")
    alternatives.append(digits)
    return f"0*(?:{'|'.join(alternatives)})"


class SafeIntConverter(IntegerConverter):
    """``<int:…>`` bounded to what a database integer holds; beyond it, no route (404).

    The bound is in the converter's regular expression, not only in its
    conversion: werkzeug chooses the rule (and a 405 for another method) by the
    expression, so a number the expression does not match is plainly not found.
    """

    regex = _at_most(MAX_DB_INT)

    def __init__(self, map: Any, *args: Any, **kwargs: Any) -> None:  # noqa: A002 (werkzeug's name)
        super().__init__(map, *args, **kwargs)
        self.max = MAX_DB_INT if self.max is None else builtins.min(self.max, MAX_DB_INT)
        if self.signed:
            low = -MAX_DB_INT - 1
            self.min = low if self.min is None else builtins.max(self.min, low)


def has_control(text: str) -> bool:
    """Whether ``text`` holds a control character other than tab, LF or CR."""
    # isprintable() is one pass in C and true for nearly all text.
    return not text.isprintable() and CONTROL.search(text) is not None


def unsafe_query_string(raw: str | bytes) -> bool:
    """Whether a raw query string may decode to a control character (a quick test:
    a percent escape ``%00``–``%1F``, or a raw byte that is not printable)."""
    if isinstance(raw, bytes):
        raw = raw.decode("latin-1")
    return "%0" in raw or "%1" in raw or not raw.isprintable()


def _json_strings(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """Every (field path, text) in a JSON document: object keys and string values."""
    if isinstance(value, str):
        yield path or "_", value
    elif isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            yield where, str(key)
            yield from _json_strings(item, where)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _json_strings(item, f"{path}.{index}" if path else str(index))


def json_too_deep(raw: bytes) -> bool:
    """Whether a JSON document nests arrays and objects deeper than :data:`MAX_JSON_DEPTH`.

    Python's parser fails such a document with a ``RecursionError`` (a 500); here it
    is counted instead, on the brackets outside strings, and only when there are
    enough brackets to matter.
    """
    if raw.count(b"[") + raw.count(b"{") <= MAX_JSON_DEPTH:
        return False
    depth = 0
    for bracket in _BRACKET.findall(_JSON_STRING.sub(b"", raw)):
        if bracket in (b"[", b"{"):
            depth += 1
            if depth > MAX_JSON_DEPTH:
                return True
        else:
            depth -= 1
    return False


def unsafe_json_field(raw: bytes) -> str | None:
    """The path of the first JSON key or string holding a control character, if any."""
    if b"\\" not in raw or not _JSON_CONTROL.search(raw):
        return None  # no escape at all: raw control characters are not JSON
    try:
        document = json.loads(raw)
    except ValueError:  # not JSON at all: the view's own parsing refuses it
        return None
    for field, text in _json_strings(document):
        if has_control(text):
            return field
    return None


def _label(name: str) -> str:
    """A field's name as it can be shown (its own control characters escaped)."""
    return repr(name)[1:-1] if has_control(name) else name


def _unsafe() -> tuple[str, str] | None:
    """(where, field) of the first control character in the request, or None."""
    req = request._get_current_object()  # type: ignore[attr-defined]  # one proxy lookup
    environ = req.environ
    # WSGI gives the path and query string as latin-1 text of the raw bytes: the
    # quick tests run on them before anything is decoded or parsed.
    if has_control(environ.get("PATH_INFO", "")):
        return "address", "path"
    if unsafe_query_string(environ.get("QUERY_STRING", "")):
        for name, value in req.args.items(multi=True):
            if has_control(name) or has_control(value):
                return "query string", _label(name)
    if environ.get("REQUEST_METHOD") not in _BODY_METHODS:
        return None
    mimetype = req.mimetype
    if mimetype in _FORM_TYPES:
        for name, value in req.form.items(multi=True):
            if has_control(name) or has_control(value):
                return "form", _label(name)
        for name, upload in req.files.items(multi=True):
            if has_control(name) or has_control(upload.filename or ""):
                return "form", _label(name)
    elif req.is_json and req.endpoint not in OWN_BODY_CHECKS:
        raw = req.get_data(cache=True)
        if json_too_deep(raw):
            raise _refusal(
                "_",
                _l(
                    "The JSON body nests arrays and objects more than %(depth)d deep.",
                    depth=MAX_JSON_DEPTH,
                ),
                _l("Nest at most %(depth)d levels deep.", depth=MAX_JSON_DEPTH),
            )
        field = unsafe_json_field(raw)
        if field is not None:
            return "JSON body", _label(field)
    return None


def refuse_control_characters() -> None:
    """The ``before_request`` hook: raise :class:`UnsafeInput` on a control character."""
    found = _unsafe()
    if found is None:
        return
    where, field = found
    raise _refusal(
        field,
        _l(
            "The form holds a control character (such as a NUL byte) in “%(field)s”; "
            "remove it and send again.",
            field=field,
        )
        if where == "form"
        else _l(
            "The JSON body holds a control character (such as a NUL byte) in “%(field)s”; "
            "remove it and send again.",
            field=field,
        ),
        _l("Remove the control character (such as a NUL byte)."),
    )


def _refusal(field: str, detail: str, message: str) -> UnsafeInput:
    """422 problem+json for the API, 400 for SCIM (its own body) and pages."""
    return UnsafeInput(field, detail, message, 422 if request.path.startswith("/api/") else 400)


def guard_commands(command: click.Command) -> None:
    """Make every option and argument of ``command`` and its subcommands refuse a
    control character (a NUL byte …) with a one-line reason, before its own type
    (a path, a choice …) or the command sees the value.

    The command line's side of the layer: such a value would otherwise reach the
    database (PostgreSQL refuses NUL in text) or the file system, as a traceback.
    """
    for param in command.params:
        kind = type(param.type)
        if not issubclass(kind, _Guarded):
            guarded = copy.copy(param.type)  # types may be shared (click.STRING): a copy
            guarded.__class__ = _guarded(kind)
            param.type = guarded
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            guard_commands(sub)


class _Guarded(click.ParamType):
    """Marks a parameter type made to refuse control characters by :func:`guard_commands`."""


@functools.cache
def _guarded(kind: type[click.ParamType]) -> type[click.ParamType]:
    def convert(self: Any, value: Any, param: click.Parameter | None, ctx: Any) -> Any:
        if isinstance(value, str) and has_control(value):
            names = [*(param.opts if param else []), param.name if param else None, "A value"]
            name = next((n for n in names if n and n.startswith("--")), None) or next(
                n for n in names if n
            )
            # ClickException: one line ("Error: …"), not a usage message.
            raise click.ClickException(
                f"{name} holds a control character (such as a NUL byte); remove it."
            )
        return kind.convert(self, value, param, ctx)

    return type(kind.__name__, (kind, _Guarded), {"convert": convert})


def install_converters(app: Flask) -> None:
    """The bounded ``int`` converter; call before any blueprint registers."""
    app.url_map.converters["int"] = SafeIntConverter


def init_app(app: Flask) -> None:
    """Install the converter and the hook (the hook first of all ``before_request``)."""
    install_converters(app)
    app.before_request_funcs.setdefault(None, []).insert(0, refuse_control_characters)
