"""The SCIM 2.0 service provider at ``/scim/v2`` (RFC 7644), one per organisation by token.

Each request carries ``Authorization: Bearer scim_…``; the token decides the
organisation, so a client only ever sees its own organisation's people and
groups. Views parse the request, call one service, commit once and answer
``application/scim+json``; every error (domain errors, unknown routes, wrong
methods, a crash) is an RFC 7644 §3.12 error body. The blueprint is exempt
from CSRF: it is authenticated by bearer tokens, never by cookies.

Discovery is generated from :mod:`portal.scim.schema`, the models of what is
stored. Every resource carries a weak ETag of its representation; PUT, PATCH
and DELETE honour ``If-Match`` (412 otherwise) with the row locked until the
commit. ``POST …/.search`` takes the same query as GET, in a SearchRequest.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from flask import Blueprint, Response, current_app, g, request
from pydantic import ValidationError
from scim2_models import (
    AuthenticationScheme,
    Bulk,
    ChangePassword,
    Context,
    ETag,
    Filter,
    Patch,
    ResourceType,
    SCIMException,
    SearchRequest,
    ServiceProviderConfig,
    Sort,
)

from portal.db import bind_scope, db_session
from portal.errors import register_error_renderer
from portal.extensions import csrf
from portal.identity.models import User as Account
from portal.kernel import policy
from portal.kernel.errors import DomainError, NotFound, ValidationFailed
from portal.kernel.i18n import _l
from portal.kernel.policy import Action
from portal.kernel.scope import Scope
from portal.scim import resources, selectors, services
from portal.scim.filters import FilterProblem, where_clause
from portal.scim.models import ScimGroup
from portal.scim.schema import Group, User
from portal.tenancy.models import Organisation

bp = Blueprint("scim_api", __name__, url_prefix="/scim/v2")
csrf.exempt(bp)

MEDIA_TYPE = "application/scim+json"
MAX_RESULTS = 200
DEFAULT_COUNT = 100
SEARCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    response = Response(json.dumps(body), status=status, mimetype=MEDIA_TYPE)
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def _scim_type(error: DomainError | None) -> str | None:
    if error is None:
        return None
    if isinstance(error, services.ScimProblem):
        return error.scim_type
    if error.code in ("email_taken", "uniqueness"):
        return "uniqueness"
    if isinstance(error, ValidationFailed):
        return "invalidValue"
    return None


def render_error(status: int, title: str, detail: str, error: DomainError | None) -> Response:
    """Every error under ``/scim/`` as a SCIM error body (registered with portal.errors)."""
    if isinstance(error, ValidationFailed) and error.errors:
        detail = f"{detail} " + " ".join(
            f"{field}: {' '.join(messages)}" for field, messages in error.errors.items()
        )
    headers = {}
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="scim"'
    return _json(
        resources.error_body(status, str(detail or title), _scim_type(error)), status, headers
    )


register_error_renderer("/scim/", render_error)


def _base() -> str:
    return current_app.config["PORTAL_BASE_URL"] + "/scim/v2"


def _org() -> Organisation:
    return g.scim_organisation


@bp.before_request
def authenticate() -> Response | None:
    """Resolve the bearer token to its organisation, or answer 401."""
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    # The token may be any organisation's: looked up council-wide; the request then runs in
    # the token's organisation (row-level security on PostgreSQL).
    bind_scope(db_session(), Scope.council())
    token = (
        services.token_authenticate(db_session(), credentials.strip())
        if scheme.lower() == "bearer" and credentials.strip()
        else None
    )
    if token is None:
        db_session().rollback()
        bind_scope(db_session(), None)
        return render_error(
            401, "Unauthorized", "Send a valid SCIM token: Authorization: Bearer <token>.", None
        )
    bind_scope(db_session(), Scope.organisation(token.organisation_id))
    g.scim_token = token
    g.scim_organisation = token.organisation
    g.actor = services.actor_for_token(token, request.remote_addr)
    db_session().commit()  # the last-used time, whatever the request does next
    if not policy.allowed(g.actor, Action.SCIM_PROVISION, organisation_id=token.organisation_id):
        return render_error(403, "Forbidden", "This token may not provision people.", None)
    return None


def _body() -> Any:
    payload = request.get_json(force=True, silent=True)
    if payload is None:
        raise services.ScimProblem(_l("The body is not JSON."), scim_type="invalidSyntax")
    return payload


@dataclass
class _Query:
    """A list request's filter, page and projection (from the URL or a SearchRequest)."""

    filter: str | None = None
    start: int = 1
    count: int = DEFAULT_COUNT
    attributes: str | None = None
    excluded: str | None = None

    def __post_init__(self) -> None:
        self.start = max(1, self.start)
        self.count = min(MAX_RESULTS, max(0, self.count))


def _query_from_args() -> _Query:
    """RFC 7644 §3.4.2's query parameters of a GET on a collection."""

    def number(name: str, default: int) -> int:
        raw = request.args.get(name)
        if raw is None or raw == "":
            return default
        try:
            return int(raw)
        except ValueError as exc:
            raise services.ScimProblem(
                _l("%(name)s must be a whole number.", name=name), scim_type="invalidValue"
            ) from exc

    return _Query(
        filter=request.args.get("filter") or None,
        start=number("startIndex", 1),
        count=number("count", DEFAULT_COUNT),
        attributes=request.args.get("attributes") or None,
        excluded=request.args.get("excludedAttributes") or None,
    )


def _query_from_search() -> _Query:
    """The same from a ``POST …/.search`` SearchRequest body (RFC 7644 §3.4.3)."""
    payload = _body()
    if not isinstance(payload, dict) or SEARCH_SCHEMA not in (payload.get("schemas") or []):
        raise services.ScimProblem(
            _l(
                "A search body is a SearchRequest message (%(search_schema)s).",
                search_schema=SEARCH_SCHEMA,
            ),
            scim_type="invalidSyntax",
        )
    try:
        search: SearchRequest[Any] = SearchRequest.model_validate(
            payload, scim_ctx=Context.SEARCH_REQUEST
        )
    except (ValidationError, SCIMException) as exc:
        raise resources.invalid(exc) from exc

    def joined(paths: list[Any] | None) -> str | None:
        return ",".join(str(p) for p in paths) if paths else None

    return _Query(
        filter=str(search.filter) if search.filter is not None else None,
        start=search.start_index or 1,
        count=DEFAULT_COUNT if search.count is None else search.count,
        attributes=joined(search.attributes),
        excluded=joined(search.excluded_attributes),
    )


def _where(query: _Query, resource: str) -> Any:
    if not query.filter:
        return None
    try:
        return where_clause(query.filter, resource=resource)
    except FilterProblem as exc:
        raise services.ScimProblem(str(exc), scim_type="invalidFilter") from exc


def _projected(body: dict[str, Any], query: _Query | None = None) -> dict[str, Any]:
    if query is None:
        return resources.project(
            body, request.args.get("attributes"), request.args.get("excludedAttributes")
        )
    return resources.project(body, query.attributes, query.excluded)


def _check_if_match(body: dict[str, Any]) -> None:
    """Refuse a change whose ``If-Match`` names another version (412, RFC 7644 §3.14).

    Versions are weak ETags, so they are compared weakly: ``W/"x"`` matches ``"x"``.
    """
    if "If-Match" not in request.headers:
        return
    wanted = request.if_match
    version = body["meta"]["version"]
    if wanted.star_tag or wanted.contains_weak(version.removeprefix("W/").strip('"')):
        return
    raise services.ScimProblem(
        _l(
            "The resource has changed: its version is %(version)s. Read it again and retry.",
            version=version,
        ),
        status=412,
    )


def _not_modified(body: dict[str, Any]) -> bool:
    """Whether a GET's ``If-None-Match`` names the resource's current version."""
    if "If-None-Match" not in request.headers:
        return False
    wanted = request.if_none_match
    return bool(
        wanted.star_tag
        or wanted.contains_weak(body["meta"]["version"].removeprefix("W/").strip('"'))
    )


# ---------------------------------------------------------------- discovery


@bp.get("/ServiceProviderConfig")
def service_provider_config():
    """What this service provider supports (RFC 7643 §5)."""
    config = ServiceProviderConfig(
        documentation_uri=None,
        patch=Patch(supported=True),
        bulk=Bulk(supported=False, max_operations=0, max_payload_size=0),
        filter=Filter(supported=True, max_results=MAX_RESULTS),
        change_password=ChangePassword(supported=False),
        sort=Sort(supported=False),
        etag=ETag(supported=True),
        authentication_schemes=[
            AuthenticationScheme(
                type=AuthenticationScheme.Type.oauthbearertoken,
                name="Bearer token",
                description="A SCIM token created by the organisation's admin in the portal.",
                primary=True,
            )
        ],
    )
    body = config.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE)
    body["meta"] = {
        "resourceType": "ServiceProviderConfig",
        "location": f"{_base()}/ServiceProviderConfig",
    }
    return _json(body)


def _resource_types() -> list[dict[str, Any]]:
    out = []
    for model in (User, Group):
        body = ResourceType.from_resource(model).model_dump(
            scim_ctx=Context.RESOURCE_QUERY_RESPONSE
        )
        body["meta"] = {
            "resourceType": "ResourceType",
            "location": f"{_base()}/ResourceTypes/{body['id']}",
        }
        out.append(body)
    return out


@bp.get("/ResourceTypes")
def resource_types():
    found = _resource_types()
    return _json(resources.list_response(found, total=len(found), start_index=1))


@bp.get("/ResourceTypes/<name>")
def resource_type(name: str):
    for body in _resource_types():
        if body["id"] == name:
            return _json(body)
    raise NotFound(_l("No resource type %(name)s.", name=name))


def _schemas() -> list[dict[str, Any]]:
    out = []
    for model in (User, Group):
        body = model.to_schema().model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE)
        body["meta"] = {"resourceType": "Schema", "location": f"{_base()}/Schemas/{body['id']}"}
        out.append(body)
    return out


@bp.get("/Schemas")
def schemas():
    found = _schemas()
    return _json(resources.list_response(found, total=len(found), start_index=1))


@bp.get("/Schemas/<path:urn>")
def schema(urn: str):
    for body in _schemas():
        if body["id"] == urn:
            return _json(body)
    raise NotFound(_l("No schema %(urn)s.", urn=urn))


# ---------------------------------------------------------------- users


def _user_body(user: Account) -> dict[str, Any]:
    groups = selectors.groups_of_users(db_session(), [user.id])[user.id]
    return resources.user_resource(user, base=_base(), groups=groups)


def _answer(body: dict[str, Any], status: int = 200) -> Response:
    projected = _projected(body)
    return _json(
        projected, status, {"Location": body["meta"]["location"], "ETag": body["meta"]["version"]}
    )


def _user_to_change(resource_id: str) -> Account:
    """The user a PUT, PATCH or DELETE changes, locked, after its ``If-Match`` check."""
    user = selectors.scim_user(
        db_session(), organisation_id=_org().id, resource_id=resource_id, for_update=True
    )
    _check_if_match(_user_body(user))
    return user


def _users(query: _Query, where: Any) -> tuple[int, list[dict[str, Any]]]:
    select = selectors.scim_users_query(_org().id)
    if where is not None:
        select = select.where(where)
    total, rows = selectors.page(db_session(), select, start_index=query.start, count=query.count)
    groups = selectors.groups_of_users(db_session(), [u.id for u in rows])
    return total, [
        _projected(resources.user_resource(u, base=_base(), groups=groups[u.id]), query)
        for u in rows
    ]


@bp.get("/Users")
def users_list():
    """Users of the organisation, filtered (``userName eq "…"``) and paged."""
    query = _query_from_args()
    total, found = _users(query, _where(query, "User"))
    return _json(resources.list_response(found, total=total, start_index=query.start))


@bp.post("/Users/.search")
def users_search():
    """The same as ``GET /Users``, the query in a SearchRequest body."""
    query = _query_from_search()
    total, found = _users(query, _where(query, "User"))
    return _json(resources.list_response(found, total=total, start_index=query.start))


@bp.post("/Users")
def user_create():
    fields = resources.user_fields(_body())
    user = services.scim_user_create(
        db_session(), actor=g.actor, organisation=_org(), fields=fields
    )
    db_session().commit()
    return _answer(_user_body(user), 201)


@bp.get("/Users/<resource_id>")
def user_get(resource_id: str):
    user = selectors.scim_user(db_session(), organisation_id=_org().id, resource_id=resource_id)
    body = _user_body(user)
    if _not_modified(body):
        return Response(status=304, headers={"ETag": body["meta"]["version"]})
    return _answer(body)


@bp.put("/Users/<resource_id>")
def user_replace(resource_id: str):
    user = _user_to_change(resource_id)
    fields = resources.user_fields(_body(), current=user)
    services.scim_user_update(
        db_session(), actor=g.actor, organisation=_org(), user=user, fields=fields
    )
    db_session().commit()
    return _answer(_user_body(user))


@bp.patch("/Users/<resource_id>")
def user_patch(resource_id: str):
    user = _user_to_change(resource_id)
    fields = resources.patched_user_fields(user, _body())
    services.scim_user_update(
        db_session(), actor=g.actor, organisation=_org(), user=user, fields=fields
    )
    db_session().commit()
    return _answer(_user_body(user))


@bp.delete("/Users/<resource_id>")
def user_delete(resource_id: str):
    user = _user_to_change(resource_id)
    services.scim_user_delete(db_session(), actor=g.actor, user=user)
    db_session().commit()
    return Response(status=204)


# ---------------------------------------------------------------- groups


def _group_body(group: ScimGroup) -> dict[str, Any]:
    members = selectors.members_of(db_session(), [group.id])[group.id]
    return resources.group_resource(group, base=_base(), members=members)


def _group_to_change(resource_id: str) -> ScimGroup:
    """The group a PUT, PATCH or DELETE changes, locked, after its ``If-Match`` check."""
    group = selectors.scim_group(
        db_session(), organisation_id=_org().id, resource_id=resource_id, for_update=True
    )
    _check_if_match(_group_body(group))
    return group


def _groups(query: _Query, where: Any) -> tuple[int, list[dict[str, Any]]]:
    select = sa.select(ScimGroup).where(ScimGroup.organisation_id == _org().id)
    if where is not None:
        select = select.where(where)
    total, rows = selectors.page(db_session(), select, start_index=query.start, count=query.count)
    members = selectors.members_of(db_session(), [grp.id for grp in rows])
    return total, [
        _projected(resources.group_resource(grp, base=_base(), members=members[grp.id]), query)
        for grp in rows
    ]


@bp.get("/Groups")
def groups_list():
    query = _query_from_args()
    total, found = _groups(query, _where(query, "Group"))
    return _json(resources.list_response(found, total=total, start_index=query.start))


@bp.post("/Groups/.search")
def groups_search():
    """The same as ``GET /Groups``, the query in a SearchRequest body."""
    query = _query_from_search()
    total, found = _groups(query, _where(query, "Group"))
    return _json(resources.list_response(found, total=total, start_index=query.start))


@bp.post("/Groups")
def group_create():
    name, external_id, members = resources.group_fields(_body())
    group, _ = services.scim_group_create(
        db_session(),
        actor=g.actor,
        organisation=_org(),
        display_name=name,
        external_id=external_id,
        member_ids=members or [],
    )
    db_session().commit()
    return _answer(_group_body(group), 201)


@bp.get("/Groups/<resource_id>")
def group_get(resource_id: str):
    group = selectors.scim_group(db_session(), organisation_id=_org().id, resource_id=resource_id)
    body = _group_body(group)
    if _not_modified(body):
        return Response(status=304, headers={"ETag": body["meta"]["version"]})
    return _answer(body)


@bp.put("/Groups/<resource_id>")
def group_replace(resource_id: str):
    group = _group_to_change(resource_id)
    name, external_id, members = resources.group_fields(_body())
    services.scim_group_update(
        db_session(),
        actor=g.actor,
        group=group,
        display_name=name,
        external_id=external_id,
        member_ids=members if members is not None else [],
    )
    db_session().commit()
    return _answer(_group_body(group))


@bp.patch("/Groups/<resource_id>")
def group_patch(resource_id: str):
    group = _group_to_change(resource_id)
    changes = resources.group_patch(_body())
    if "display_name" in changes or "external_id" in changes:
        services.scim_group_update(
            db_session(),
            actor=g.actor,
            group=group,
            display_name=changes.get("display_name", group.display_name),
            external_id=changes.get("external_id", group.external_id),
            member_ids=None,
        )
    if "replace_members" in changes:
        services.scim_group_update(
            db_session(),
            actor=g.actor,
            group=group,
            display_name=group.display_name,
            external_id=group.external_id,
            member_ids=changes["replace_members"],
        )
    if changes["add"] or changes["remove"]:
        services.scim_group_change_members(
            db_session(), actor=g.actor, group=group, add=changes["add"], remove=changes["remove"]
        )
    db_session().commit()
    body = _group_body(group)
    if request.args.get("attributes") or request.args.get("excludedAttributes"):
        return _answer(body)
    return Response(status=204, headers={"ETag": body["meta"]["version"]})


@bp.delete("/Groups/<resource_id>")
def group_delete(resource_id: str):
    group = _group_to_change(resource_id)
    services.scim_group_delete(db_session(), actor=g.actor, group=group)
    db_session().commit()
    return Response(status=204)


# ---------------------------------------------------------------- search at the root


@bp.post("/.search")
def root_search():
    """Users then groups matching a SearchRequest (RFC 7644 §3.4.3). A filter naming an
    attribute only one resource type has matches nothing of the other type."""
    query = _query_from_search()
    problems: list[services.ScimProblem] = []
    kinds = []
    for resource, lister in (("User", _users), ("Group", _groups)):
        try:
            kinds.append((lister, _where(query, resource)))
        except services.ScimProblem as problem:
            problems.append(problem)
    if not kinds:
        raise problems[0]
    total, found = 0, list[dict[str, Any]]()
    for lister, where in kinds:
        # This type's page: what is left of the window once the earlier types are counted.
        start = max(1, query.start - total)
        wanted = max(0, query.count - len(found))
        count, rows = lister(_Query(start=start, count=wanted, **_shape(query)), where)
        total += count
        found += rows
    return _json(resources.list_response(found, total=total, start_index=query.start))


def _shape(query: _Query) -> dict[str, Any]:
    return {"filter": query.filter, "attributes": query.attributes, "excluded": query.excluded}
