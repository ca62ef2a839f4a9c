"""Signing people in and out of the web pages, and role checks for views.

The Flask session cookie holds only the random token of a server-side
:class:`~portal.identity.models.UserSession`. Flask-Login loads the user from
that token on every request, so revoking the row (sign-out, deactivation,
suspension, password reset) ends the session even for a copied cookie.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any
from urllib.parse import urlsplit

from flask import (
    Flask,
    abort,
    flash,
    g,
    has_request_context,
    redirect,
    request,
    session,
    url_for,
)
from flask_login import LoginManager, current_user, login_user, logout_user

from portal.db import bind_scope, bound_scope, db_session
from portal.identity.factors import (
    AMR_PASSWORD,
    AMR_SSO,
    SECOND_FACTOR_METHODS,
    second_factor_required,
    user_has_second_factor,
)
from portal.identity.models import User
from portal.identity.sign_in import (
    session_lookup,
    session_revoke,
    session_start,
    session_touch,
    sign_in_refusal,
)
from portal.kernel import policy
from portal.kernel.actor import Actor, ActorKind, Role
from portal.kernel.clock import now_utc
from portal.kernel.errors import PermissionDenied
from portal.kernel.i18n import _
from portal.kernel.policy import Action, Reach
from portal.kernel.scope import Scope, scope_of


class SignedInUser:
    """Flask-Login's view of a :class:`User` signed in through one session token."""

    is_authenticated = True
    is_anonymous = False

    def __init__(self, user: User, token: str, amr: str | None = None) -> None:
        self.user = user
        self.token = token
        self.amr = amr  # how this session was authenticated (user_sessions.amr)

    @property
    def is_active(self) -> bool:
        return self.user.is_active

    def get_id(self) -> str:
        return self.token

    def __getattr__(self, name: str) -> Any:
        return getattr(self.user, name)


def init_app(app: Flask, login_manager: LoginManager) -> None:
    """Wire Flask-Login to the server-side sessions."""
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message = "Please sign in to see that page."
    login_manager.login_message_category = "info"
    login_manager.session_protection = None  # the server-side session row is the protection

    @login_manager.user_loader
    def load_user(token: str) -> SignedInUser | None:
        database = db_session()
        idle = not database.in_transaction()
        # The token names a person of any organisation: it is looked up council-wide, and
        # the request then runs in that person's scope (row-level security on PostgreSQL).
        previous = bound_scope(database)
        bind_scope(database, Scope.council())
        row = session_lookup(database, token)
        if row is None:
            bind_scope(database, previous)
            return None
        user = row.user
        # "Last use" on the sessions page: written at most once a minute. Committed at
        # once only when the loader opened the transaction (it is the request's first
        # read), so no other change of the request is committed with it.
        if session_touch(row) and idle:
            database.commit()
        council_wide_page = has_request_context() and request.endpoint in COUNCIL_WIDE_ENDPOINTS
        bind_scope(database, previous if council_wide_page else person_scope(user))
        return SignedInUser(user, token, row.amr)

    app.before_request(bind_request_scope)  # first: every later hook and view has its scope
    app.before_request(_second_factor_guard)


#: Pages that run before anyone is signed in and must find people, invitations, email
#: domains and organisations across the council to sign someone in (or take a membership
#: application, or a provider's webhook): their requests run council-wide, explicitly.
#: Every other page runs in the signed-in person's scope, or in none (no rows on PostgreSQL).
COUNCIL_WIDE_ENDPOINTS = frozenset(
    {
        "auth.login",
        "auth.second_factor",
        "passkeys.sign_in_options",  # the second step with a passkey (portal/web/passkeys.py)
        "passkeys.sign_in",
        "auth.accept_invitation",
        "auth.forgot_password",
        "auth.reset_password",
        "sso.realm",
        "sso.council_start",
        "sso.org_callback",
        "sso.council_callback",
        "tenancy.apply",
        "payments.stripe_webhook",
    }
)

#: Blueprints that authenticate a bearer token and bind that token's scope themselves.
TOKEN_BLUEPRINTS = frozenset({"api", "scim_api"})


def person_scope(user: Any) -> Scope | None:
    """The scope a signed-in person's requests run in; None (no rows) for an unknown role.

    A vendor admin belongs to no organisation: like a vendor's API token
    (``portal.api.auth.token_scope``) their requests run council-wide in the database,
    and what they may see is the policy's ``OWN_VENDOR`` rule in the services (their
    vendor's products, pools and seat counts; never an organisation's invoices or people).
    ``scope_of`` still refuses them every organisation-scoped reader (fails closed).
    """
    if Role(user.role) == Role.VENDOR_ADMIN:
        return Scope.council() if getattr(user, "vendor_id", None) is not None else None
    try:
        return scope_of(Actor.person(user))
    except PermissionDenied:
        return None


def bind_request_scope() -> None:
    """Give the request's database session its scope before the view (a ``before_request``).

    Authentication pages: council-wide. Token APIs: their own hook binds the token's scope.
    Other pages: the signed-in person's (bound by the user loader, which runs here), or none.
    """
    if request.blueprint in TOKEN_BLUEPRINTS:
        return
    if request.endpoint in COUNCIL_WIDE_ENDPOINTS:
        bind_scope(db_session(), Scope.council())
    _ = current_user.is_authenticated  # loads the signed-in person, binding their scope


def client_ip() -> str | None:
    """The client's address: behind a proxy named in ``PORTAL_TRUSTED_PROXIES`` the one it
    forwarded for, otherwise the socket peer (``portal.ratelimit.TrustedProxies``)."""
    return request.remote_addr


def current_actor() -> Actor:
    """The signed-in person as an :class:`Actor` for services and the audit log."""
    if not current_user.is_authenticated:
        return Actor.anonymous(client_ip())
    return Actor.person(current_user.user, client_ip())


def current_organisation() -> Any:
    """The signed-in person's own organisation; 403 for council staff."""
    org = current_user.organisation if current_user.is_authenticated else None
    if org is None:
        abort(403)
    return org


def sign_in(
    user: User,
    *,
    amr: str = AMR_PASSWORD,
    sso_amr: str | None = None,
    sso_acr: str | None = None,
) -> None:
    """Start a fresh session for ``user``: old session data is dropped (no fixation).

    ``amr`` records how the person was authenticated (see :func:`session_start`).
    """
    session.clear()
    token = session_start(
        db_session(),
        user=user,
        ip=client_ip(),
        user_agent=request.headers.get("User-Agent"),
        amr=amr,
        sso_amr=sso_amr,
        sso_acr=sso_acr,
    )
    bind_scope(db_session(), person_scope(user))  # signed in: the rest runs in their scope
    session.permanent = True
    login_user(SignedInUser(user, token, amr), remember=False, fresh=True)


# ---------------------------------------------------------------- the second step

#: How long the password step stays good while the second factor is asked (SPEC 8.1).
PENDING_SECOND_FACTOR_SECONDS = 5 * 60
_PENDING = "second_factor_pending"


def begin_second_factor(user: User, next_url: str | None = None) -> None:
    """The password was right and the account has a second factor: remember that (the
    user's id and the time, for :data:`PENDING_SECOND_FACTOR_SECONDS`) in a fresh
    Flask session, without signing anyone in."""
    session.clear()
    session[_PENDING] = {
        "user_id": user.id,
        "at": int(now_utc().timestamp()),
        "next": next_url or "",
    }


def clear_second_factor() -> None:
    """Forget a pending second step (any new sign-in starts over)."""
    session.pop(_PENDING, None)


def _pending() -> dict[str, Any] | None:
    data = session.get(_PENDING)
    if not isinstance(data, dict):
        return None
    at = data.get("at")
    if not isinstance(at, int) or not isinstance(data.get("user_id"), int):
        clear_second_factor()
        return None
    age = now_utc().timestamp() - at
    if age < 0 or age > PENDING_SECOND_FACTOR_SECONDS:
        clear_second_factor()
        return None
    return data


def pending_second_factor_user_id() -> int | None:
    """The pending person's id, without a database read (for rate-limit keys)."""
    data = _pending()
    return data["user_id"] if data is not None else None


def pending_second_factor_user() -> User | None:
    """The person whose password was checked in this browser within the last five
    minutes and who is asked for a second factor now; ``None`` if there is none, it
    expired, or the account may no longer sign in."""
    data = _pending()
    if data is None:
        return None
    user = db_session().get(User, data["user_id"])
    if user is None or sign_in_refusal(user) is not None:
        clear_second_factor()
        return None
    return user


def pending_second_factor_next() -> str:
    """Where to go once the second step is done: the page asked for, or the person's home."""
    data = _pending()
    user = pending_second_factor_user()
    default = home_for(user) if user is not None else url_for("auth.login")
    return safe_next((data or {}).get("next"), default)


def complete_second_factor(user: User, method: str) -> None:
    """Sign in the pending ``user`` after their second factor was verified by ``method``
    ("pwd+otp", "pwd+recovery" or "pwd+passkey"), recorded as the session's amr."""
    if method not in SECOND_FACTOR_METHODS:
        raise ValueError(f"not a second-factor method: {method!r}")
    pending = pending_second_factor_user()
    if pending is None or pending.id != user.id:
        abort(403)
    sign_in(user, amr=method)


# ---------------------------------------------------------------- enforcement

#: Paths a person who must enrol a second factor may still reach: enrolment (TOTP and
#: passkeys), the second sign-in step, signing out, static files; and everything that
#: does not use the sign-in cookie (API, SCIM, probes).
_ENROLMENT_OPEN = (
    "/account/security",
    "/login/passkey",
    "/login/second-factor",
    "/logout",
    "/language",  # the language switcher (portal/web/language.py)
    "/static/",
    "/api/",
    "/scim/",
    "/healthz",
    "/readyz",
    "/metrics",
)


def _second_factor_guard() -> Any:
    """Send a person whose role (or organisation) requires a second factor and who has
    none to enrol one, from every other page. Single sign-on sessions rely on the
    provider; API and SCIM tokens are not affected."""
    if request.path.startswith(_ENROLMENT_OPEN) or request.endpoint == "static":
        return None
    if not current_user.is_authenticated:
        return None
    amr = getattr(current_user, "amr", None)
    if amr == AMR_SSO or amr in SECOND_FACTOR_METHODS:
        return None
    user = current_user.user
    if not second_factor_required(user) or user_has_second_factor(db_session(), user):
        return None
    flash(
        _(
            "Your account must sign in with a second factor. Set up an "
            "authenticator app or a passkey to continue."
        ),
        "info",
    )
    return redirect(url_for("account.security"))


def sign_out() -> None:
    """End the current session server-side and clear the cookie."""
    if current_user.is_authenticated:
        session_revoke(db_session(), current_user.token)
    logout_user()
    session.clear()


def safe_next(target: str | None, default: str) -> str:
    """``target`` if it is a path on this site, else ``default`` (no open redirects)."""
    if not target:
        return default
    target = target.strip()
    if "\\" in target or any(ord(ch) < 32 for ch in target):
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return default
    return target


def role_required(*roles: Role) -> Callable:
    """Let the view run only for signed-in users with one of ``roles``."""
    allowed = {Role(r).value for r in roles}
    return _guard(lambda actor: actor.role is not None and actor.role.value in allowed)


def action_required(action: Action, reach: Reach | None = None) -> Callable:
    """Let the view run only for signed-in people whose role may do ``action``
    (:mod:`portal.kernel.policy`); with ``reach``, only with that reach (``Reach.ANY``:
    a page over every organisation). Which object it is, the service checks."""

    def may(actor: Actor) -> bool:
        found = policy.reach_of(actor, action)
        return found is not None and (reach is None or found == reach)

    return _guard(may)


def _guard(may: Callable[[Actor], bool]) -> Callable:
    def decorator(view: Callable) -> Callable:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if not current_user.is_authenticated:
                flash(_("Please sign in to see that page."), "info")
                # Only a page can be gone back to; a form's POST address would answer 405.
                back = request.full_path.rstrip("?") if request.method == "GET" else None
                return redirect(url_for("auth.login", next=back))
            actor = current_actor()
            if actor.kind != ActorKind.PERSON or not may(actor):
                abort(403)
            g.actor = actor
            return view(*args, **kwargs)

        return wrapper

    return decorator


def home_for(user: Any) -> str:
    """Where a person lands after signing in."""
    role = Role(user.role)
    if role == Role.COUNCIL_ADMIN:
        return url_for("tenancy.council_dashboard")
    if role == Role.FINANCE:
        return url_for("tenancy.council_dashboard")
    if role == Role.ORG_ADMIN:
        return url_for("tenancy.org_dashboard")
    if role == Role.VENDOR_ADMIN:
        return url_for("vendor_portal.home")
    return url_for("web.my_software")
