"""The SCIM 2.0 service provider at ``/scim/v2`` (RFC 7644), one per organisation by token.

Each request carries ``Authorization: Bearer scim_…``; the token decides the
organisation, so a client only ever sees its own organisation's people and
groups. Views parse the request, call one service, commit once and answer
``application/scim+json``; every error (domain errors, unknown routes, wrong
methods, a crash) is an RFC 7644 §3.12 error body. The blueprint is exempt
from CSRF: it is authenticated by bearer tokens, never by cookies.
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from flask import Blueprint, Response, current_app, g, request
from scim2_models import (
    AuthenticationScheme,
    Bulk,
    ChangePassword,
    Context,
    EnterpriseUser,
    ETag,
    Filter,
    Group,
    Patch,
    ResourceType,
    ServiceProviderConfig,
    Sort,
    User,
)

from portal.db import db
from portal.errors import DomainError, NotFound, ValidationFailed, register_error_renderer
from portal.extensions import csrf
from portal.identity.models import User as Account
from portal.scim import resources, selectors, services
from portal.scim.filters import FilterProblem, where_clause
from portal.scim.models import ScimGroup
from portal.tenancy.models import Organisation

bp = Blueprint("scim_api", __name__, url_prefix="/scim/v2")
csrf.exempt(bp)

MEDIA_TYPE = "application/scim+json"
MAX_RESULTS = 200


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
    return _json(resources.error_body(status, detail or title, _scim_type(error)), status, headers)


register_error_renderer("/scim/", render_error)


def _base() -> str:
    return current_app.config["PORTAL_BASE_URL"] + "/scim/v2"


def _org() -> Organisation:
    return g.scim_organisation


@bp.before_request
def authenticate() -> Response | None:
    """Resolve the bearer token to its organisation, or answer 401."""
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    token = (
        services.token_authenticate(db.session, credentials.strip())
        if scheme.lower() == "bearer" and credentials.strip()
        else None
    )
    if token is None:
        db.session.rollback()
        return render_error(
            401, "Unauthorized", "Send a valid SCIM token: Authorization: Bearer <token>.", None
        )
    g.scim_token = token
    g.scim_organisation = token.organisation
    g.actor = services.actor_for_token(token, request.remote_addr)
    db.session.commit()  # the last-used time, whatever the request does next
    return None


def _body() -> Any:
    payload = request.get_json(force=True, silent=True)
    if payload is None:
        raise services.ScimProblem("The body is not JSON.", scim_type="invalidSyntax")
    return payload


def _paging() -> tuple[int, int]:
    def number(name: str, default: int) -> int:
        raw = request.args.get(name)
        if raw is None or raw == "":
            return default
        try:
            return int(raw)
        except ValueError as exc:
            raise services.ScimProblem(
                f"{name} must be a whole number.", scim_type="invalidValue"
            ) from exc

    start = max(1, number("startIndex", 1))
    count = min(MAX_RESULTS, max(0, number("count", 100)))
    return start, count


def _where(resource: str) -> Any:
    text = request.args.get("filter")
    if not text:
        return None
    try:
        return where_clause(text, resource=resource)
    except FilterProblem as exc:
        raise services.ScimProblem(str(exc), scim_type="invalidFilter") from exc


def _projected(body: dict[str, Any]) -> dict[str, Any]:
    return resources.project(
        body, request.args.get("attributes"), request.args.get("excludedAttributes")
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
        etag=ETag(supported=False),
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
    for model in (User[EnterpriseUser], Group):
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
    raise NotFound(f"No resource type {name}.")


def _schemas() -> list[dict[str, Any]]:
    out = []
    for model in (User, EnterpriseUser, Group):
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
    raise NotFound(f"No schema {urn}.")


# ---------------------------------------------------------------- users


def _user_body(user: Account) -> dict[str, Any]:
    groups = selectors.groups_of_users(db.session, [user.id])[user.id]
    return resources.user_resource(user, base=_base(), groups=groups)


def _user_answer(user: Account, status: int = 200) -> Response:
    body = _projected(_user_body(user))
    return _json(
        body, status, {"Location": body["meta"]["location"], "ETag": body["meta"]["version"]}
    )


@bp.get("/Users")
def users_list():
    """Users of the organisation, filtered (``userName eq "…"``) and paged."""
    start, count = _paging()
    query = selectors.scim_users_query(_org().id)
    where = _where("User")
    if where is not None:
        query = query.where(where)
    total, rows = selectors.page(db.session, query, start_index=start, count=count)
    groups = selectors.groups_of_users(db.session, [u.id for u in rows])
    found = [
        _projected(resources.user_resource(u, base=_base(), groups=groups[u.id])) for u in rows
    ]
    return _json(resources.list_response(found, total=total, start_index=start))


@bp.post("/Users")
def user_create():
    fields = resources.user_fields(_body())
    user = services.scim_user_create(db.session, actor=g.actor, organisation=_org(), fields=fields)
    db.session.commit()
    return _user_answer(user, 201)


@bp.get("/Users/<resource_id>")
def user_get(resource_id: str):
    return _user_answer(
        selectors.scim_user(db.session, organisation_id=_org().id, resource_id=resource_id)
    )


@bp.put("/Users/<resource_id>")
def user_replace(resource_id: str):
    user = selectors.scim_user(db.session, organisation_id=_org().id, resource_id=resource_id)
    fields = resources.user_fields(_body(), replacing=True)
    services.scim_user_update(
        db.session, actor=g.actor, organisation=_org(), user=user, fields=fields
    )
    db.session.commit()
    return _user_answer(user)


@bp.patch("/Users/<resource_id>")
def user_patch(resource_id: str):
    user = selectors.scim_user(db.session, organisation_id=_org().id, resource_id=resource_id)
    fields = resources.patched_user_fields(user, _body())
    services.scim_user_update(
        db.session, actor=g.actor, organisation=_org(), user=user, fields=fields
    )
    db.session.commit()
    return _user_answer(user)


@bp.delete("/Users/<resource_id>")
def user_delete(resource_id: str):
    user = selectors.scim_user(db.session, organisation_id=_org().id, resource_id=resource_id)
    services.scim_user_delete(db.session, actor=g.actor, user=user)
    db.session.commit()
    return Response(status=204)


# ---------------------------------------------------------------- groups


def _group_answer(group: ScimGroup, status: int = 200) -> Response:
    members = selectors.members_of(db.session, [group.id])[group.id]
    body = _projected(resources.group_resource(group, base=_base(), members=members))
    return _json(
        body, status, {"Location": body["meta"]["location"], "ETag": body["meta"]["version"]}
    )


@bp.get("/Groups")
def groups_list():
    start, count = _paging()
    query = sa.select(ScimGroup).where(ScimGroup.organisation_id == _org().id)
    where = _where("Group")
    if where is not None:
        query = query.where(where)
    total, rows = selectors.page(db.session, query, start_index=start, count=count)
    members = selectors.members_of(db.session, [grp.id for grp in rows])
    found = [
        _projected(resources.group_resource(grp, base=_base(), members=members[grp.id]))
        for grp in rows
    ]
    return _json(resources.list_response(found, total=total, start_index=start))


@bp.post("/Groups")
def group_create():
    name, external_id, members = resources.group_fields(_body())
    group, _ = services.scim_group_create(
        db.session,
        actor=g.actor,
        organisation=_org(),
        display_name=name,
        external_id=external_id,
        member_ids=members or [],
    )
    db.session.commit()
    return _group_answer(group, 201)


@bp.get("/Groups/<resource_id>")
def group_get(resource_id: str):
    return _group_answer(
        selectors.scim_group(db.session, organisation_id=_org().id, resource_id=resource_id)
    )


@bp.put("/Groups/<resource_id>")
def group_replace(resource_id: str):
    group = selectors.scim_group(db.session, organisation_id=_org().id, resource_id=resource_id)
    name, external_id, members = resources.group_fields(_body())
    services.scim_group_update(
        db.session,
        actor=g.actor,
        group=group,
        display_name=name,
        external_id=external_id,
        member_ids=members if members is not None else [],
    )
    db.session.commit()
    return _group_answer(group)


@bp.patch("/Groups/<resource_id>")
def group_patch(resource_id: str):
    group = selectors.scim_group(db.session, organisation_id=_org().id, resource_id=resource_id)
    changes = resources.group_patch(_body())
    if "display_name" in changes or "external_id" in changes:
        services.scim_group_update(
            db.session,
            actor=g.actor,
            group=group,
            display_name=changes.get("display_name", group.display_name),
            external_id=changes.get("external_id", group.external_id),
            member_ids=None,
        )
    if "replace_members" in changes:
        services.scim_group_update(
            db.session,
            actor=g.actor,
            group=group,
            display_name=group.display_name,
            external_id=group.external_id,
            member_ids=changes["replace_members"],
        )
    if changes["add"] or changes["remove"]:
        services.scim_group_change_members(
            db.session, actor=g.actor, group=group, add=changes["add"], remove=changes["remove"]
        )
    db.session.commit()
    if request.args.get("attributes") or request.args.get("excludedAttributes"):
        return _group_answer(group)
    return Response(status=204)


@bp.delete("/Groups/<resource_id>")
def group_delete(resource_id: str):
    group = selectors.scim_group(db.session, organisation_id=_org().id, resource_id=resource_id)
    services.scim_group_delete(db.session, actor=g.actor, group=group)
    db.session.commit()
    return Response(status=204)
