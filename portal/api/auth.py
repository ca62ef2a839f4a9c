"""Bearer-token authentication and scope checks for ``/api/v1``.

:func:`authenticate` runs before every API view (and before its request is
validated): it resolves ``Authorization: Bearer <token>`` to an
:class:`~portal.api.models.ApiToken`, stores it and its
:class:`~portal.audit.services.Actor` on :data:`flask.g`, and answers 401 for a
missing or bad token and 403 when the view does not accept the token's scope.
"""

from __future__ import annotations

from flask import Response, current_app, g, request
from sqlalchemy.exc import OperationalError

from portal.api import services
from portal.api.models import ApiToken, TokenScope
from portal.db import bind_scope, db_session, is_postgres, read_only
from portal.errors import problem
from portal.kernel import policy
from portal.kernel.actor import Actor, Role
from portal.kernel.scope import Scope

COUNCIL = TokenScope.COUNCIL
ORGANISATION = TokenScope.ORGANISATION
VENDOR = TokenScope.VENDOR
ANY_SCOPE = frozenset({COUNCIL, ORGANISATION, VENDOR})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

# The role a token's actor carries into services: council tokens act as a council
# admin, organisation tokens as that organisation's admin, vendor tokens as that
# vendor's admin (SPEC 8.1), which no organisation or council rule accepts.
ROLE_OF_SCOPE = {
    COUNCIL: Role.COUNCIL_ADMIN,
    ORGANISATION: Role.ORG_ADMIN,
    VENDOR: Role.VENDOR_ADMIN,
}


def actor_for_token(token: ApiToken, ip: str | None = None) -> Actor:
    """The :class:`Actor` a token acts as, labelled by its visible prefix for the audit log."""
    return Actor.api_token(
        f"token {token.prefix}…",
        role=ROLE_OF_SCOPE[token.scope],
        organisation_id=token.organisation_id,
        vendor_id=token.vendor_id,
        ip=ip,
    )


def token_scope(token: ApiToken) -> Scope | None:
    """The rows a token's requests may touch in the database.

    An organisation token: its organisation's. Council tokens: every organisation's. Vendor
    tokens report and check usage across the organisations holding their products, so
    their requests run council-wide too; what a vendor may see is the views' and
    services' rule (``vendor_id``), as it is on SQLite.
    """
    if token.scope == ORGANISATION:
        if token.organisation_id is None:
            return None  # cannot be (a CHECK constraint); if it were: no rows
        return Scope.organisation(token.organisation_id)
    if token.scope in (COUNCIL, VENDOR):
        return Scope.council()
    return None


def _unauthorized(detail: str, *, invalid: bool) -> Response:
    response = problem(401, "Unauthorized", detail, code="unauthorized")
    challenge = 'Bearer realm="portal"'
    if invalid:
        challenge += ', error="invalid_token"'
    response.headers["WWW-Authenticate"] = challenge
    return response


def authenticate() -> Response | None:
    """Resolve the bearer token and check the view's scopes (a ``before_request`` hook)."""
    header = request.headers.get("Authorization", "")
    scheme, _, credentials = header.partition(" ")
    credentials = credentials.strip()
    if scheme.lower() != "bearer" or not credentials:
        return _unauthorized("Send an API token: Authorization: Bearer <token>.", invalid=False)
    # The token may be any organisation's: it is looked up council-wide, and the request
    # then runs in the token's scope (row-level security on PostgreSQL).
    bind_scope(db_session(), Scope.council())
    if request.method in SAFE_METHODS:
        # Views answering GET change nothing: no write lock, no BEGIN/ROLLBACK round trips.
        read_only(db_session())
    token = services.token_authenticate(db_session(), credentials)
    if token is None:
        db_session().rollback()
        bind_scope(db_session(), None)
        return _unauthorized("The token is unknown, revoked or expired.", invalid=True)
    if db_session().dirty:
        # The time of last use changed (at most once a minute): commit it now, the
        # view's own transaction may roll back. Otherwise the view carries on in
        # the transaction the lookup began, without a commit and a second lookup.
        _commit_time_of_use()
    bind_scope(db_session(), token_scope(token))
    g.api_token = token
    g.actor = actor_for_token(token, request.remote_addr)
    view = current_app.view_functions.get(request.endpoint or "")
    allowed = getattr(view, "api_scopes", ANY_SCOPE)
    if token.scope not in allowed:
        wanted = " or ".join(sorted(allowed))
        return problem(
            403,
            "Forbidden",
            f"This needs a {wanted} token; this token's scope is {token.scope}.",
            code="scope_forbidden",
        )
    action = getattr(view, "api_action", None)
    if action is not None and not policy.may(g.actor, action):
        return problem(403, "Forbidden", "This token may not do this.", code="forbidden")
    return None


def _commit_time_of_use() -> None:
    try:
        db_session().commit()
    except OperationalError:
        # A SQLite read (deferred) transaction cannot write once another writer has
        # committed since it began. The time of last use is advisory; the next
        # request notes it.
        if is_postgres(db_session()):
            raise
        db_session().rollback()


def current_token() -> ApiToken:
    """The token of the current API request."""
    return g.api_token


def current_actor() -> Actor:
    """The actor of the current API request."""
    return g.actor
