"""Schemas shared by every API resource: problem details, list queries, path parameters.

The OpenAPI document says exactly what the server accepts. pydantic's JSON
schemas say what a field's type and constraints are, but not what the
portal's own validators (a slug, an email address, a country, a month…) or its
input guard (:mod:`portal.inputs`: no control characters) add. :class:`ApiSchema`
writes those into the document: every model the API reads a request into
derives from :class:`ApiModel` (bodies) or :class:`ApiParams` (query and path
parameters), whose JSON schema is built by it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from pydantic.json_schema import GenerateJsonSchema, JsonDict, JsonSchemaMode, JsonSchemaValue
from pydantic_core import core_schema

from portal import validation
from portal.catalogue import services as catalogue
from portal.kernel import iso

MAX_ID = 2**63 - 1

# What the input guard refuses (portal.inputs): C0 control characters; JSON text may
# hold tab, line feed and carriage return, a URL's query and path none at all.
TEXT = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f]*$"
PARAM = r"^[^\x00-\x1f]*$"
# Text that is stripped of surrounding blanks and then must not be empty.
TEXT_NOT_BLANK = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f]*[^\s\x00-\x1f][^\x00-\x08\x0b\x0c\x0e-\x1f]*$"
PARAM_NOT_BLANK = r"^[^\x00-\x1f]*[^\s\x00-\x1f][^\x00-\x1f]*$"

SLUG: JsonDict = {"pattern": r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$", "minLength": 3, "maxLength": 63}
KEY: JsonDict = {"pattern": r"^[a-z][a-z0-9_.-]*$", "minLength": 1, "maxLength": 63}
URL: JsonDict = {"pattern": r"^https?://[^\s\x00-\x1f/$.?#][^\s\x00-\x1f]+$", "maxLength": 500}
# Years 2000 to 9998 (validation.MIN_DATE … MAX_DATE), months 01 to 12.
YEAR = r"(2[0-9]{3}|[3-8][0-9]{3}|9[0-8][0-9]{2}|99[0-8][0-9]|999[0-8])"
PERIOD: JsonDict = {"pattern": rf"^{YEAR}-(0[1-9]|1[0-2])$", "minLength": 7, "maxLength": 7}
# Days that exist in every year (29 February is left out of the pattern, not refused).
DAY = r"((0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])|(0[13-9]|1[0-2])-(29|30)|(0[13578]|1[02])-31)"
DATE: JsonDict = {"pattern": rf"^{YEAR}-{DAY}$"}
EMAIL: JsonDict = {
    "format": "email",
    # What email-validator accepts, narrowed to plain ASCII: a dot-atom local part and a
    # domain of letters and digits with at least two labels.
    "pattern": (
        r"^[a-zA-Z0-9_+-]{1,20}(\.[a-zA-Z0-9_+-]{1,20}){0,2}@"
        r"([a-zA-Z0-9]{1,20}\.){1,3}[a-zA-Z]{2,20}$"
    ),
    "minLength": 6,
    "maxLength": 254,
}


def _validator_schemas() -> dict[Callable[..., Any], dict[str, Any]]:
    known: dict[Callable[..., Any], dict[str, Any]] = {
        validation.check_slug: SLUG,
        validation.check_email: EMAIL,
        validation.check_country: {"enum": list(iso.countries())},
        validation.check_currency: {"enum": list(iso.currencies())},
        catalogue.check_key: KEY,
        catalogue.check_url: URL,
    }
    for name, fragment in (("check_period", PERIOD), ("check_date", DATE)):
        check = getattr(validation, name, None)
        if check is not None:
            known[check] = fragment
    return known


# Rules across fields of a request model that JSON schema can state (if/then …), by model.
RULES: dict[type[BaseModel], dict[str, Any]] = {}


def document_rule(model: type[BaseModel], **fragment: Any) -> None:
    """State a rule of ``model`` across its fields in the document (the model checks it)."""
    RULES[model] = fragment


class ApiSchema(GenerateJsonSchema):
    """pydantic's JSON schema generator, told what the portal's validators accept.

    In validation mode (requests): a string without a pattern of its own gets one
    refusing control characters (:data:`TEXT`, or :data:`PARAM` for URL parameters),
    stripped text that must not be empty one that needs a non-blank character, and a
    value checked by a known validator (a slug, an email, a country …) that
    validator's pattern or list. Responses are described as pydantic does.
    """

    parameters: ClassVar[bool] = False
    _validators: ClassVar[dict[Callable[..., Any], dict[str, Any]] | None] = None

    @classmethod
    def validators(cls) -> dict[Callable[..., Any], dict[str, Any]]:
        if ApiSchema._validators is None:
            ApiSchema._validators = _validator_schemas()
        return ApiSchema._validators

    def _text(self, not_blank: bool) -> str:
        if self.parameters:
            return PARAM_NOT_BLANK if not_blank else PARAM
        return TEXT_NOT_BLANK if not_blank else TEXT

    def model_schema(self, schema: core_schema.ModelSchema) -> JsonSchemaValue:
        json_schema = super().model_schema(schema)
        if self.mode == "validation":
            for model, fragment in RULES.items():
                if issubclass(schema["cls"], model):
                    json_schema = {**json_schema, **fragment}
        return json_schema

    def str_schema(self, schema: core_schema.StringSchema) -> JsonSchemaValue:
        json_schema = super().str_schema(schema)
        if self.mode == "validation" and "pattern" not in json_schema:
            not_blank = bool(schema.get("strip_whitespace")) and schema.get("min_length", 0) > 0
            json_schema["pattern"] = self._text(not_blank)
        return json_schema

    def function_before_schema(
        self, schema: core_schema.BeforeValidatorFunctionSchema
    ) -> JsonSchemaValue:
        json_schema = super().function_before_schema(schema)
        stripped = schema["function"].get("function") is getattr(validation, "_strip", None)
        if self.mode == "validation" and stripped and json_schema.get("type") == "string":
            # Length limits wrap this schema; whether blank text is refused is settled
            # once the whole schema is built (generate).
            json_schema[_STRIPPED] = True
        return json_schema

    def generate(self, schema: core_schema.CoreSchema, mode: JsonSchemaMode = "validation"):
        json_schema = super().generate(schema, mode)
        _settle_stripped(json_schema)
        return json_schema

    def function_after_schema(
        self, schema: core_schema.AfterValidatorFunctionSchema
    ) -> JsonSchemaValue:
        json_schema = super().function_after_schema(schema)
        fragment = self.validators().get(schema["function"].get("function"))
        if self.mode == "validation" and fragment is not None:
            json_schema = {**json_schema, **fragment}
            if "enum" in fragment:
                json_schema.pop("pattern", None)
        return json_schema


_STRIPPED = "x-portal-stripped"


def _settle_stripped(node: Any) -> None:
    """Text stripped of blanks that must not be empty needs a non-blank character."""
    if isinstance(node, dict):
        if node.pop(_STRIPPED, False) and node.get("minLength", 0) > 0:
            if node.get("pattern") == TEXT:
                node["pattern"] = TEXT_NOT_BLANK
            elif node.get("pattern") == PARAM:
                node["pattern"] = PARAM_NOT_BLANK
        for value in node.values():
            _settle_stripped(value)
    elif isinstance(node, list):
        for value in node:
            _settle_stripped(value)


class ApiParamSchema(ApiSchema):
    """:class:`ApiSchema` for query and path parameters (no control character at all)."""

    parameters = True


class ApiModel(BaseModel):
    """A model the API reads a request body into; its JSON schema is :class:`ApiSchema`'s."""

    _schema_generator: ClassVar[type[GenerateJsonSchema]] = ApiSchema

    @classmethod
    def model_json_schema(
        cls,
        by_alias: bool | None = True,
        ref_template: str = "#/$defs/{model}",
        schema_generator: type[GenerateJsonSchema] | None = None,
        mode: JsonSchemaMode = "validation",
        **kwargs: Any,
    ) -> dict[str, Any]:
        return super().model_json_schema(
            by_alias=by_alias,
            ref_template=ref_template,
            schema_generator=schema_generator or cls._schema_generator,
            mode=mode,
            **kwargs,
        )


class ApiParams(ApiModel):
    """A model the API reads query or path parameters into."""

    _schema_generator: ClassVar[type[GenerateJsonSchema]] = ApiParamSchema


# ---------------------------------------------------------------- shared schemas


class Problem(BaseModel):
    """An RFC 9457 problem details body (``application/problem+json``)."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "type": "https://portal.example/problems/validation_failed",
                "title": "Validation failed",
                "status": 422,
                "detail": "Some fields need attention.",
                "code": "validation_failed",
                "errors": {"slug": ["This field is required."]},
            }
        }
    )

    type: str = Field(description="A URI naming the kind of problem.")
    title: str
    status: int
    detail: str
    code: str | None = Field(
        default=None, description="A stable code (`pool_exhausted`, `no_free_seat` …)."
    )
    errors: dict[str, list[str]] | None = Field(
        default=None, description="Messages per field, for validation problems."
    )


# A cursor is the last id of a page, 8 bytes big-endian in unpadded base64url: every
# string of this form is a cursor (the first character keeps the id below 2^63).
CURSOR_PATTERN = r"^[A-Za-f][A-Za-z0-9_-]{9}[AEIMQUYcgkosw048]$"


class ListQuery(ApiParams):
    """Cursor pagination: pass back ``next_cursor`` as ``cursor`` until it is null."""

    limit: int = Field(default=50, ge=1, le=200, description="Items per page (at most 200).")
    cursor: str | None = Field(
        default=None,
        max_length=200,
        description="The `next_cursor` of the previous page; omit for the first page.",
        json_schema_extra={"pattern": CURSOR_PATTERN},
    )


class IdempotencyHeader(ApiParams):
    """The optional ``Idempotency-Key`` of a creating POST."""

    model_config = ConfigDict(populate_by_name=False)

    idempotency_key: Annotated[str, StringConstraints(min_length=1, max_length=255)] | None = Field(
        default=None,
        alias="Idempotency-Key",
        description=(
            "Any unique string (a UUID, say). Sending the same key and body again returns "
            "the first response; the same key with another body is refused with 409 "
            "`idempotency_key_reused`."
        ),
        # Visible ASCII without surrounding blanks: what survives an HTTP header intact.
        json_schema_extra={"pattern": r"^[!-~]([ -~]*[!-~])?$"},
    )


class SlugPath(ApiParams):
    """A resource named by its slug."""

    slug: Annotated[str, StringConstraints(min_length=1, max_length=63)] = Field(
        json_schema_extra=SLUG
    )


class IdPath(ApiParams):
    """A resource named by its id."""

    id: int = Field(ge=1, le=MAX_ID)
