"""SCIM filters (RFC 7644 §3.4.2.2) as SQL: scim2-models parses, this module translates.

:func:`where_clause` parses a ``filter`` parameter with scim2-models'
:class:`~scim2_models.ScimFilter` and walks its syntax tree with a
:class:`~scim2_models.path.FilterVisitor`, producing a SQLAlchemy condition
on the portal's tables. Only the attributes the portal stores can be filtered
on; anything else is an ``invalidFilter`` error, as the RFC asks.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from scim2_models import InvalidFilterException, ScimFilter
from scim2_models.path import (
    CompareOperator,
    Comparison,
    FilterVisitor,
    LogicalExpr,
    LogicalOperator,
    Not,
    Present,
    ValuePath,
)

from portal.identity.models import User
from portal.scim.models import ScimGroup, ScimGroupMember

CORE_URNS = (
    "urn:ietf:params:scim:schemas:core:2.0:user",
    "urn:ietf:params:scim:schemas:core:2.0:group",
)


class FilterProblem(ValueError):
    """The filter cannot be evaluated (``invalidFilter``)."""


# An attribute is (column expression, kind): kind is "ci" (case-insensitive string),
# "exact" (case-exact string), "bool", "id" (a resource id), "time", or a callable that
# builds the condition itself (group membership).
Attribute = tuple[Any, str]


def _membership(column_of_user: bool) -> Callable[[CompareOperator, Any], Any]:
    """``members.value`` on groups, ``groups.value`` on users."""

    def build(op: CompareOperator | None, value: Any) -> Any:
        if op is None:  # "pr": has any membership
            if column_of_user:
                return User.id.in_(sa.select(ScimGroupMember.user_id))
            return ScimGroup.id.in_(sa.select(ScimGroupMember.group_id))
        if op != CompareOperator.eq or not isinstance(value, str) or not value.isdigit():
            raise FilterProblem("Membership can only be filtered with eq and an id.")
        if column_of_user:
            inner = sa.select(ScimGroupMember.user_id).where(ScimGroupMember.group_id == int(value))
            return User.id.in_(inner)
        inner = sa.select(ScimGroupMember.group_id).where(ScimGroupMember.user_id == int(value))
        return ScimGroup.id.in_(inner)

    return build


USER_ATTRIBUTES: dict[str, Attribute] = {
    "id": (User.id, "id"),
    "username": (User.email, "ci"),
    "externalid": (User.external_id, "exact"),
    "displayname": (User.name, "ci"),
    "name.givenname": (User.given_name, "ci"),
    "name.familyname": (User.family_name, "ci"),
    "emails": (User.email, "ci"),
    "emails.value": (User.email, "ci"),
    "active": (User.is_active, "bool"),
    "meta.created": (User.created_at, "time"),
    "meta.lastmodified": (User.updated_at, "time"),
    "groups": (_membership(True), "call"),
    "groups.value": (_membership(True), "call"),
}
# Inside emails[...]: the portal keeps one work address, which is primary.
USER_VALUE_PATHS: dict[str, dict[str, Attribute]] = {
    "emails": {
        "value": (User.email, "ci"),
        "type": (sa.literal("work"), "ci"),
        "primary": (sa.true(), "bool"),
    },
}
GROUP_ATTRIBUTES: dict[str, Attribute] = {
    "id": (ScimGroup.id, "id"),
    "displayname": (ScimGroup.display_name, "ci"),
    "externalid": (ScimGroup.external_id, "exact"),
    "members": (_membership(False), "call"),
    "members.value": (_membership(False), "call"),
    "meta.created": (ScimGroup.created_at, "time"),
    "meta.lastmodified": (ScimGroup.updated_at, "time"),
}
GROUP_VALUE_PATHS: dict[str, dict[str, Attribute]] = {
    "members": {"value": (_membership(False), "call")},
}


class _ToSql(FilterVisitor[Any]):
    def __init__(self, attributes: dict[str, Attribute], value_paths: dict[str, dict]) -> None:
        self.attributes = attributes
        self.value_paths = value_paths

    def _attribute(self, attr_path: Any) -> Attribute:
        if attr_path.uri and attr_path.uri.lower() not in CORE_URNS:
            raise FilterProblem(f"Filtering on {attr_path} is not supported.")
        key = attr_path.attr.lower()
        if attr_path.sub_attr:
            key += "." + attr_path.sub_attr.lower()
        found = self.attributes.get(key)
        if found is None:
            raise FilterProblem(f"Filtering on {attr_path} is not supported.")
        return found

    def visit_comparison(self, node: Comparison) -> Any:
        column, kind = self._attribute(node.attr_path)
        return _compare(column, kind, node.op, node.value)

    def visit_present(self, node: Present) -> Any:
        column, kind = self._attribute(node.attr_path)
        if kind == "call":
            return column(None, None)
        if kind in ("ci", "exact"):
            return sa.and_(column.is_not(None), column != "")
        return column.is_not(None)

    def visit_not(self, node: Not) -> Any:
        return sa.not_(self.visit(node.expr))

    def visit_logical_expr(self, node: LogicalExpr) -> Any:
        terms = [self.visit(term) for term in node.terms]
        return sa.and_(*terms) if node.op == LogicalOperator.and_ else sa.or_(*terms)

    def visit_value_path(self, node: ValuePath) -> Any:
        inner = self.value_paths.get(node.attr_path.attr.lower())
        if inner is None or node.attr_path.sub_attr:
            raise FilterProblem(f"Filtering inside {node.attr_path} is not supported.")
        return _ToSql(inner, {}).visit(node.val_filter)


def _compare(column: Any, kind: str, op: CompareOperator, value: Any) -> Any:
    if kind == "call":
        return column(op, value)
    if value is None:
        if op == CompareOperator.eq:
            return column.is_(None)
        if op == CompareOperator.ne:
            return column.is_not(None)
        raise FilterProblem("null can only be compared with eq or ne.")
    if kind == "bool":
        if not isinstance(value, bool) or op not in (CompareOperator.eq, CompareOperator.ne):
            raise FilterProblem("A boolean attribute is compared with eq or ne and true/false.")
        return column == value if op == CompareOperator.eq else column != value
    if kind == "id":
        if op not in (CompareOperator.eq, CompareOperator.ne):
            raise FilterProblem("An id is compared with eq or ne.")
        matches = column == int(value) if str(value).isdigit() else sa.false()
        return matches if op == CompareOperator.eq else sa.not_(matches)
    if kind == "time":
        if op not in (
            CompareOperator.gt,
            CompareOperator.ge,
            CompareOperator.lt,
            CompareOperator.le,
        ):
            raise FilterProblem("A time is compared with gt, ge, lt or le.")
        try:
            when = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError as exc:
            raise FilterProblem(f"{value!r} is not a date and time.") from exc
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        return {
            CompareOperator.gt: column > when,
            CompareOperator.ge: column >= when,
            CompareOperator.lt: column < when,
            CompareOperator.le: column <= when,
        }[op]
    if not isinstance(value, str):
        raise FilterProblem("A string attribute is compared with a string.")
    target = sa.func.lower(column) if kind == "ci" else column
    text = value.lower() if kind == "ci" else value
    if op == CompareOperator.eq:
        return target == text
    if op == CompareOperator.ne:
        return sa.or_(target != text, column.is_(None))
    if op == CompareOperator.co:
        return target.contains(text, autoescape=True)
    if op == CompareOperator.sw:
        return target.startswith(text, autoescape=True)
    if op == CompareOperator.ew:
        return target.endswith(text, autoescape=True)
    return {
        CompareOperator.gt: target > text,
        CompareOperator.ge: target >= text,
        CompareOperator.lt: target < text,
        CompareOperator.le: target <= text,
    }[op]


def where_clause(text: str, *, resource: str) -> Any:
    """A SQLAlchemy condition for a SCIM ``filter`` on ``Users`` or ``Groups``.

    Raises :class:`FilterProblem` for a filter that does not parse or names
    something the portal does not filter on.
    """
    try:
        parsed: ScimFilter[Any] = ScimFilter(text)
    except (InvalidFilterException, ValueError) as exc:
        raise FilterProblem(f"The filter does not parse: {exc}") from exc
    if resource == "User":
        return _ToSql(USER_ATTRIBUTES, USER_VALUE_PATHS).visit(parsed.ast)
    return _ToSql(GROUP_ATTRIBUTES, GROUP_VALUE_PATHS).visit(parsed.ast)
