"""SCIM resources in and out: the portal's rows as SCIM JSON, SCIM payloads as fields.

Inbound payloads are validated with scim2-models against the portal's own
models (:mod:`portal.scim.schema`: ``User``, ``Group``, and ``PatchOp`` of
them), whose errors become SCIM error bodies; PATCH on a
user is applied by scim2-models to the user as SCIM sees it, and the result
is read back into :class:`~portal.scim.services.UserFields`. Group membership
PATCHes are read here, since providers write them in several dialects (Entra
removes members with a value list, Okta with a filter in the path).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import ValidationError
from scim2_models import (
    Context,
    Error,
    PatchOp,
    Path,
    SCIMException,
)
from scim2_models.path import AttrPath, CompareOperator, Comparison, ValuePath

from portal.identity.models import User as Account
from portal.kernel.i18n import _l
from portal.scim.models import ScimGroup
from portal.scim.schema import LENIENT, STRICT, Group, User
from portal.scim.services import ScimProblem, UserFields, email_for

USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
LIST_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"
SEARCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"


def _time(value: Any) -> str:
    return value.isoformat().replace("+00:00", "Z")


def _with_version(body: dict[str, Any]) -> dict[str, Any]:
    """Set ``meta.version``: a weak ETag of everything but ``meta``, so it changes exactly
    when the representation does (a group's members, a person's groups included)."""
    content = json.dumps({k: v for k, v in body.items() if k != "meta"}, sort_keys=True)
    body["meta"]["version"] = f'W/"{hashlib.sha256(content.encode()).hexdigest()[:20]}"'
    return body


def user_resource(user: Account, *, base: str, groups: list[ScimGroup]) -> dict[str, Any]:
    """A portal account as a SCIM User (the attributes of :class:`portal.scim.schema.User`)."""
    name = {
        key: value
        for key, value in (("givenName", user.given_name), ("familyName", user.family_name))
        if value
    }
    body: dict[str, Any] = {
        "schemas": [USER_SCHEMA],
        "id": str(user.id),
        "userName": user.email,
        "active": user.is_active,
        "emails": [{"value": user.email, "type": "work", "primary": True}],
        "groups": [
            {"value": str(g.id), "$ref": f"{base}/Groups/{g.id}", "display": g.display_name}
            for g in groups
        ],
        "meta": {
            "resourceType": "User",
            "created": _time(user.created_at),
            "lastModified": _time(user.updated_at),
            "location": f"{base}/Users/{user.id}",
        },
    }
    if user.name:
        body["displayName"] = user.name
    if name:
        body["name"] = name
    if user.external_id:
        body["externalId"] = user.external_id
    return _with_version(body)


def group_resource(group: ScimGroup, *, base: str, members: list[Account]) -> dict[str, Any]:
    """A SCIM group with its members (people, each with ``type`` and ``$ref``)."""
    body: dict[str, Any] = {
        "schemas": [GROUP_SCHEMA],
        "id": str(group.id),
        "displayName": group.display_name,
        "members": [
            {"value": str(u.id), "$ref": f"{base}/Users/{u.id}", "type": "User"} for u in members
        ],
        "meta": {
            "resourceType": "Group",
            "created": _time(group.created_at),
            "lastModified": _time(group.updated_at),
            "location": f"{base}/Groups/{group.id}",
        },
    }
    if group.external_id:
        body["externalId"] = group.external_id
    return _with_version(body)


def project(body: dict[str, Any], attributes: str | None, excluded: str | None) -> dict[str, Any]:
    """Apply ``attributes`` / ``excludedAttributes`` to top-level attributes (RFC 7644 §3.9)."""
    always = {"schemas", "id", "meta"}
    if attributes:
        wanted = {a.strip().split(".")[0].lower() for a in attributes.split(",") if a.strip()}
        return {k: v for k, v in body.items() if k in always or k.lower() in wanted}
    if excluded:
        dropped = {a.strip().split(".")[0].lower() for a in excluded.split(",") if a.strip()}
        return {k: v for k, v in body.items() if k in always or k.lower() not in dropped}
    return body


def list_response(resources: list[dict], *, total: int, start_index: int) -> dict[str, Any]:
    return {
        "schemas": [LIST_SCHEMA],
        "totalResults": total,
        "startIndex": start_index,
        "itemsPerPage": len(resources),
        "Resources": resources,
    }


def error_body(status: int, detail: str, scim_type: str | None = None) -> dict[str, Any]:
    """An RFC 7644 §3.12 error body (scim2-models' ``Error``)."""
    error = Error(status=status, scim_type=scim_type, detail=detail)
    return error.model_dump(scim_ctx=Context.DEFAULT)


def invalid(exc: ValidationError | SCIMException) -> ScimProblem:
    if isinstance(exc, SCIMException):
        return ScimProblem(str(exc), scim_type=getattr(exc, "scim_type", None) or "invalidValue")
    first = Error.from_validation_errors(exc)[0]
    return ScimProblem(first.detail or "Invalid payload.", scim_type=first.scim_type)


# ---------------------------------------------------------------- users in


def _key(payload: dict[str, Any], name: str) -> str | None:
    """The key of ``payload`` naming attribute ``name`` (attribute names are case-insensitive)."""
    return next((k for k in payload if isinstance(k, str) and k.lower() == name.lower()), None)


def _raw_emails(payload: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """(value, type, primary) of the ``emails`` sent, read only to find the address when
    ``userName`` is not one (``emails`` is read-only: the portal keeps ``userName``)."""
    key = _key(payload, "emails")
    items = payload.get(key) if key else None
    if not isinstance(items, list):
        return []
    return [
        (str(e.get("value") or ""), str(e.get("type") or ""), e.get("primary") is True)
        for e in items
        if isinstance(e, dict)
    ]


def _formatted_name(payload: dict[str, Any]) -> str | None:
    key = _key(payload, "name")
    name = payload.get(key) if key else None
    if not isinstance(name, dict):
        return None
    formatted = name.get(_key(name, "formatted") or "formatted")
    return formatted.strip() or None if isinstance(formatted, str) else None


def user_fields(payload: Any, *, current: Account | None = None) -> UserFields:
    """The fields of a POST (``current`` None) or PUT ``/Users`` payload.

    Attributes the portal does not keep are dropped. Without ``active`` a new person is
    active and a replaced one keeps their state; without ``displayName`` the portal names
    the person from ``name`` (its ``formatted`` part, or given and family names).
    """
    if not isinstance(payload, dict):
        raise ScimProblem(_l("The body must be a JSON object."), scim_type="invalidSyntax")
    payload = {k: v for k, v in payload.items() if str(k).lower() not in ("id", "meta")}
    if _key(payload, "active") is None:
        payload["active"] = True if current is None else current.is_active
    context = (
        Context.RESOURCE_CREATION_REQUEST
        if current is None
        else Context.RESOURCE_REPLACEMENT_REQUEST
    )
    try:
        model = User.model_validate(payload, scim_ctx=context, scim_policy=LENIENT)
    except (ValidationError, SCIMException) as exc:
        raise invalid(exc) from exc
    name = model.name
    given = name.given_name if name else None
    family = name.family_name if name else None
    default_name = _formatted_name(payload) or " ".join(p for p in (given, family) if p)
    return UserFields(
        email=email_for(model.user_name, _raw_emails(payload)),
        external_id=model.external_id,
        given_name=given,
        family_name=family,
        display_name=model.display_name or default_name or None,
        active=model.active,
    )


# Standard attributes of a SCIM user (RFC 7643 §4.1 and the enterprise extension) that
# the portal does not keep. Identity providers send them with their default mappings
# (Entra: title, department, phone numbers, the work email); a PATCH naming them is
# applied to what the portal keeps and ignores them, exactly as POST and PUT do, so
# a routine profile update is never refused for them. None is advertised as stored.
# ``emails`` is derived from ``userName``. A path that is no standard attribute at all
# is still ``invalidPath``, and a read-only one the portal shows (``groups``) ``mutability``.
_USER_CORE_PREFIX = USER_SCHEMA.lower() + ":"
_ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:user"
_UNKEPT_USER_ATTRIBUTES = frozenset(
    a.lower()
    for a in (
        "nickName", "profileUrl", "title", "userType", "preferredLanguage", "locale",
        "timezone", "password", "emails", "phoneNumbers", "ims", "photos", "addresses",
        "entitlements", "roles", "x509Certificates",
    )
)  # fmt: skip
_UNKEPT_NAME_PARTS = frozenset(("formatted", "middlename", "honorificprefix", "honorificsuffix"))


def _unkept(path: str) -> bool:
    """Whether a PATCH path names a standard user attribute the portal does not keep."""
    lowered = path.strip().lower()
    if lowered.startswith(_ENTERPRISE):
        return True
    if lowered.startswith(_USER_CORE_PREFIX):
        lowered = lowered[len(_USER_CORE_PREFIX) :]
    root, _, rest = lowered.partition(".")
    root = root.split("[", 1)[0]
    if root == "name" and rest:
        return rest.split("[", 1)[0] in _UNKEPT_NAME_PARTS
    return root in _UNKEPT_USER_ATTRIBUTES


def _kept_operations(payload: dict[str, Any]) -> dict[str, Any]:
    """``payload`` without the operations (and path-less values' keys) on unkept attributes."""
    operations = payload.get("Operations")
    if not isinstance(operations, list):
        return payload
    kept: list[Any] = []
    for operation in operations:
        if not isinstance(operation, dict):
            kept.append(operation)
            continue
        path = operation.get("path")
        if isinstance(path, str) and path.strip():
            if not _unkept(path):
                kept.append(operation)
            continue
        value = operation.get("value")
        if isinstance(value, dict):
            trimmed = {k: v for k, v in value.items() if not (isinstance(k, str) and _unkept(k))}
            name = trimmed.get("name")
            if isinstance(name, dict):
                trimmed["name"] = {
                    k: v for k, v in name.items() if str(k).lower() not in _UNKEPT_NAME_PARTS
                }
            if not trimmed:
                continue
            operation = {**operation, "value": trimmed}
        kept.append(operation)
    return {**payload, "Operations": kept}


def patched_user_fields(user: Account, payload: Any) -> UserFields:
    """The user's fields after a PATCH, applied by scim2-models to the user as SCIM sees
    it. Operations on standard attributes the portal does not keep are ignored (as in
    POST and PUT); a path that is no attribute is ``invalidPath``, a read-only one
    ``mutability``."""
    if not isinstance(payload, dict):
        raise ScimProblem(_l("The body must be a JSON object."), scim_type="invalidSyntax")
    operations = payload.get("Operations")
    payload = _kept_operations(payload)
    ignored_all = bool(operations) and not payload["Operations"]
    current = User.model_validate(
        {
            k: v
            for k, v in user_resource(user, base="", groups=[]).items()
            if k not in ("groups", "meta")
        }
    )
    try:
        if not ignored_all:  # every operation named what the portal does not keep
            patch = PatchOp[User].model_validate(
                payload, scim_ctx=Context.RESOURCE_PATCH_REQUEST, scim_policy=STRICT
            )
            patch.patch(current, scim_policy=STRICT)
    except (ValidationError, SCIMException) as exc:
        raise invalid(exc) from exc
    name = current.name
    return UserFields(
        email=email_for(current.user_name, []),
        external_id=current.external_id,
        given_name=name.given_name if name else None,
        family_name=name.family_name if name else None,
        display_name=current.display_name,
        active=current.active,
    )


# ---------------------------------------------------------------- groups in


def group_fields(payload: Any) -> tuple[str | None, str | None, list[str] | None]:
    """(displayName, externalId, member ids or None) of a POST or PUT ``/Groups`` payload."""
    if not isinstance(payload, dict):
        raise ScimProblem(_l("The body must be a JSON object."), scim_type="invalidSyntax")
    payload = {k: v for k, v in payload.items() if str(k).lower() not in ("id", "meta")}
    try:
        model = Group.model_validate(
            payload, scim_ctx=Context.RESOURCE_CREATION_REQUEST, scim_policy=LENIENT
        )
    except (ValidationError, SCIMException) as exc:
        raise invalid(exc) from exc
    if model.members is None:
        return model.display_name, model.external_id, None
    for member in model.members:
        if member.type is not None and member.type != "User":
            raise ScimProblem(
                _l("Groups hold people: members are of type User."), scim_type="invalidValue"
            )
    return model.display_name, model.external_id, [str(m.value) for m in model.members if m.value]


def _member_values(value: Any) -> list[str]:
    items = value if isinstance(value, list) else [value]
    out = []
    for item in items:
        if isinstance(item, dict) and item.get("value") is not None:
            out.append(str(item["value"]))
        else:
            raise ScimProblem(_l('Members are given as [{"value": id}].'), scim_type="invalidValue")
    return out


def group_patch(payload: Any) -> dict[str, Any]:
    """A group PATCH as changes: ``display_name``, ``external_id``, ``add``, ``remove``,
    ``replace_members`` (a full list) — whichever the operations touch.

    Reads both providers' dialects: Okta removes ``members[value eq "id"]``,
    Entra sends ``{"op": "Remove", "path": "members", "value": [{"value": id}]}``,
    and either may replace attributes with a path-less ``{"op": "replace",
    "value": {...}}``.
    """
    if not isinstance(payload, dict) or "urn:ietf:params:scim:api:messages:2.0:PatchOp" not in (
        payload.get("schemas") or []
    ):
        raise ScimProblem(_l("A PATCH body must be a PatchOp message."), scim_type="invalidSyntax")
    operations = payload.get("Operations") or payload.get("operations")
    if not isinstance(operations, list) or not operations:
        raise ScimProblem(_l("A PATCH needs Operations."), scim_type="invalidSyntax")
    changes: dict[str, Any] = {"add": [], "remove": []}
    for operation in operations:
        if not isinstance(operation, dict):
            raise ScimProblem(_l("Each operation is an object."), scim_type="invalidSyntax")
        op = str(operation.get("op", "")).lower()
        if op not in ("add", "remove", "replace"):
            raise ScimProblem(
                _l("Unknown operation “%(get)s”.", get=operation.get("op")),
                scim_type="invalidSyntax",
            )
        raw_path = operation.get("path")
        value = operation.get("value")
        if not raw_path:
            if op == "remove" or not isinstance(value, dict):
                raise ScimProblem(_l("This operation needs a path."), scim_type="noTarget")
            for key, item in value.items():
                _group_attribute(changes, op, key.lower(), item)
            continue
        try:
            path = Path(str(raw_path)).ast
        except (SCIMException, ValueError) as exc:
            raise ScimProblem(
                _l("Invalid path “%(raw_path)s”.", raw_path=raw_path), scim_type="invalidPath"
            ) from exc
        if isinstance(path, ValuePath) and path.attr_path.attr.lower() == "members":
            filt = path.val_filter
            if op != "remove" or not (
                isinstance(filt, Comparison)
                and filt.attr_path.attr.lower() == "value"
                and filt.op == CompareOperator.eq
            ):
                raise ScimProblem(
                    _l('Only members[value eq "id"] with remove is supported.'),
                    scim_type="invalidPath",
                )
            changes["remove"].append(str(filt.value))
        elif isinstance(path, AttrPath) and not path.sub_attr:
            if op == "remove" and path.attr.lower() == "members":
                if value is None:
                    changes["replace_members"] = []
                else:  # Entra: remove with a list of values
                    changes["remove"] += _member_values(value)
            elif op == "remove" and path.attr.lower() == "displayname":
                raise ScimProblem(_l("displayName is required."), scim_type="mutability")
            elif op == "remove":
                _group_attribute(changes, "replace", path.attr.lower(), None)
            else:
                _group_attribute(changes, op, path.attr.lower(), value)
        else:
            raise ScimProblem(
                _l("Path “%(raw_path)s” is not supported on groups.", raw_path=raw_path),
                scim_type="invalidPath",
            )
    return changes


def _group_attribute(changes: dict[str, Any], op: str, key: str, value: Any) -> None:
    if key == "displayname":
        if not isinstance(value, str) or not value.strip():
            raise ScimProblem(
                _l("displayName must be a non-empty string."), scim_type="invalidValue"
            )
        changes["display_name"] = value
    elif key == "externalid":
        if value is not None and not isinstance(value, str):
            raise ScimProblem(_l("externalId must be a string."), scim_type="invalidValue")
        changes["external_id"] = value
    elif key == "members":
        members = _member_values(value) if value is not None else []
        if op == "add":
            changes["add"] += members
        else:
            changes["replace_members"] = members
            changes["add"], changes["remove"] = [], []
    elif key in ("id", "schemas", "meta"):
        return
    else:
        raise ScimProblem(
            _l("“%(key)s” is not an attribute of groups here.", key=key), scim_type="invalidPath"
        )
